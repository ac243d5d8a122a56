//! Batched idempotency look-ups: every message asks "which destinations already have
//! this?"; questions queued together are answered by one `IN (...)` query, so a busy
//! gateway does not pay a database round trip per message.

use std::collections::HashMap;

use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::shaped_chunks;
use crate::error::Result;

pub(super) struct Lookup {
    pub flow: String,
    pub message_id: String,
    pub reply: oneshot::Sender<Result<Vec<String>>>,
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
                let answer = delivered(&pool, &flow, ids).await;
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

/// message id → destinations it was delivered to.
async fn delivered(
    pool: &AnyPool,
    flow: &str,
    ids: &[String],
) -> Result<HashMap<String, Vec<String>>> {
    let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT message_id, destination FROM deliveries \
         WHERE flow = $1 AND state = 'delivered' AND message_id IN ({})",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(flow);
    for id in ids {
        q = q.bind(id.as_str());
    }
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for row in q.fetch_all(pool).await? {
        out.entry(row.try_get(0)?)
            .or_default()
            .push(row.try_get(1)?);
    }
    Ok(out)
}
