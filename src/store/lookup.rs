//! Batched idempotency look-ups: every message asks "what do you know of this id?";
//! questions queued together are answered by one `IN (...)` query, so a busy gateway
//! does not pay a database round trip per message.

use std::collections::HashMap;

use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::shaped_chunks;
use crate::error::Result;
use crate::model::state::DeliveryState;

pub(super) struct Lookup {
    pub flow: String,
    pub message_id: String,
    pub reply: oneshot::Sender<Result<Known>>,
}

/// What the store knows of one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Known {
    /// SHA-256 of the bytes it was first received with.
    pub digest: Option<String>,
    /// Each destination's delivery state.
    pub deliveries: HashMap<String, DeliveryState>,
}

impl Known {
    pub fn state(&self, destination: &str) -> Option<DeliveryState> {
        self.deliveries.get(destination).copied()
    }
}

pub(super) async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Lookup>, batch_max: usize) {
    let mut batch = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut batch, batch_max).await > 0 {
        let mut by_flow: HashMap<String, Vec<Lookup>> = HashMap::new();
        for l in batch.drain(..) {
            by_flow.entry(l.flow.clone()).or_default().push(l);
        }
        for (flow, lookups) in by_flow {
            let mut lookups = lookups.into_iter();
            let ids: Vec<String> = lookups
                .as_slice()
                .iter()
                .map(|l| l.message_id.clone())
                .collect();
            for ids in shaped_chunks(&ids) {
                let answer = known(&pool, &flow, ids).await;
                for l in lookups.by_ref().take(ids.len()) {
                    let r = match &answer {
                        Ok(map) => Ok(map.get(&l.message_id).cloned().unwrap_or_default()),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = l.reply.send(r);
                }
            }
        }
    }
}

/// message id → what is known of it.
async fn known(pool: &AnyPool, flow: &str, ids: &[String]) -> Result<HashMap<String, Known>> {
    let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let list = placeholders.join(", ");
    let sql = format!(
        "SELECT message_id, body_sha256, NULL, NULL FROM messages WHERE flow = $1 AND message_id IN ({list}) \
         UNION ALL \
         SELECT message_id, NULL, destination, state FROM deliveries WHERE flow = $1 AND message_id IN ({list})"
    );
    let mut q = sqlx::query(&sql).bind(flow);
    for id in ids {
        q = q.bind(id.as_str());
    }
    let mut out: HashMap<String, Known> = HashMap::new();
    for row in q.fetch_all(pool).await? {
        let k = out.entry(row.try_get(0)?).or_default();
        let digest: Option<String> = row.try_get(1)?;
        if digest.is_some() {
            k.digest = digest;
        }
        let destination: Option<String> = row.try_get(2)?;
        let state: Option<String> = row.try_get(3)?;
        if let (Some(d), Some(s)) = (destination, state.as_deref().and_then(DeliveryState::parse)) {
            k.deliveries.insert(d, s);
        }
    }
    Ok(out)
}
