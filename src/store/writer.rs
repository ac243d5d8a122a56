//! The single writer: takes queued writes, commits up to `batch_max` of them in one
//! transaction, and answers each caller once its write is durable.

use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::mpsc;

use super::{AuditEntry, Job, now_ms, shaped_chunks};
use crate::engine::{DeliveryState, MessageState};
use crate::error::Result;

#[derive(Debug, Clone)]
pub enum Write {
    /// A message arrived (or arrived again): record it as received unless it is settled.
    Received {
        flow: String,
        message_id: String,
        source: String,
        body_sha256: String,
    },
    /// The outcome of one processing attempt.
    Outcome {
        flow: String,
        message_id: String,
        state: MessageState,
        attempts: i64,
        error: Option<ErrorSummary>,
        deliveries: Vec<DeliveryUpdate>,
        audit: Vec<AuditEntry>,
    },
    Audit(AuditEntry),
}

#[derive(Debug, Clone)]
pub struct ErrorSummary {
    pub class: String,
    pub stage: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub destination: String,
    pub state: DeliveryState,
    pub idempotency_key: String,
    pub response_status: Option<i64>,
    pub last_error: Option<String>,
}

pub(super) async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Job>, batch_max: usize) {
    let mut batch = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut batch, batch_max).await > 0 {
        let writes: Vec<&Write> = batch.iter().map(|j| &j.write).collect();
        match commit(&pool, &writes).await {
            Ok(()) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Ok(()));
                }
            }
            Err(_) if batch.len() > 1 => {
                // One bad write must not fail its neighbours: retry each on its own.
                for job in batch.drain(..) {
                    let r = commit(&pool, &[&job.write]).await;
                    let _ = job.reply.send(r);
                }
            }
            Err(e) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A bound value: the store uses only text and integers.
#[derive(Debug, Clone)]
enum Param {
    Text(Option<String>),
    Int(Option<i64>),
}

fn text(s: &str) -> Param {
    Param::Text(Some(s.to_string()))
}

/// One statement's worth of rows for a table.
struct Table {
    insert: &'static str,
    columns: usize,
    /// Text after VALUES (...): the upsert rule.
    conflict: &'static str,
}

const RECEIVED: Table = Table {
    insert: "INSERT INTO messages (flow, message_id, state, attempts, source, body_sha256, received_at, updated_at)",
    columns: 8,
    conflict: "ON CONFLICT (flow, message_id) DO UPDATE SET updated_at = excluded.updated_at",
};

const OUTCOME: Table = Table {
    insert: "INSERT INTO messages (flow, message_id, state, attempts, error_class, error_stage, last_error, received_at, updated_at)",
    columns: 9,
    conflict: "ON CONFLICT (flow, message_id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts, \
               error_class = excluded.error_class, error_stage = excluded.error_stage, \
               last_error = excluded.last_error, updated_at = excluded.updated_at",
};

const DELIVERY: Table = Table {
    insert: "INSERT INTO deliveries (flow, message_id, destination, state, attempts, idempotency_key, \
             response_status, last_error, delivered_at, updated_at)",
    columns: 10,
    conflict: "ON CONFLICT (flow, message_id, destination) DO UPDATE SET state = excluded.state, \
               attempts = deliveries.attempts + 1, response_status = excluded.response_status, \
               last_error = excluded.last_error, delivered_at = excluded.delivered_at, \
               updated_at = excluded.updated_at",
};

const AUDIT: Table = Table {
    insert: "INSERT INTO audit_log (id, at, actor, action, flow, message_id, destination, fields, agreement, detail)",
    columns: 10,
    conflict: "",
};

/// Rows of every table for a set of writes.
#[derive(Default)]
struct Rows {
    received: Vec<Vec<Param>>,
    outcome: Vec<Vec<Param>>,
    delivery: Vec<Vec<Param>>,
    audit: Vec<Vec<Param>>,
}

impl Rows {
    fn add(&mut self, w: &Write, now: i64) {
        match w {
            Write::Received {
                flow,
                message_id,
                source,
                body_sha256,
            } => self.received.push(vec![
                text(flow),
                text(message_id),
                text("received"),
                Param::Int(Some(0)),
                text(source),
                text(body_sha256),
                Param::Int(Some(now)),
                Param::Int(Some(now)),
            ]),
            Write::Outcome {
                flow,
                message_id,
                state,
                attempts,
                error,
                deliveries,
                audit,
            } => {
                self.outcome.push(vec![
                    text(flow),
                    text(message_id),
                    text(state.as_str()),
                    Param::Int(Some(*attempts)),
                    Param::Text(error.as_ref().map(|e| e.class.clone())),
                    Param::Text(error.as_ref().map(|e| e.stage.clone())),
                    Param::Text(error.as_ref().map(|e| e.reason.clone())),
                    Param::Int(Some(now)),
                    Param::Int(Some(now)),
                ]);
                for d in deliveries {
                    self.delivery.push(vec![
                        text(flow),
                        text(message_id),
                        text(&d.destination),
                        text(d.state.as_str()),
                        Param::Int(Some(1)),
                        text(&d.idempotency_key),
                        Param::Int(d.response_status),
                        Param::Text(d.last_error.clone()),
                        Param::Int((d.state == DeliveryState::Delivered).then_some(now)),
                        Param::Int(Some(now)),
                    ]);
                }
                for a in audit {
                    self.audit.push(audit_row(a, now));
                }
            }
            Write::Audit(a) => self.audit.push(audit_row(a, now)),
        }
    }

    /// Whether one upsert statement would touch the same key twice (PostgreSQL refuses).
    fn has_repeated_keys(&self) -> bool {
        fn repeated(rows: &[Vec<Param>], key_len: usize) -> bool {
            let mut seen = std::collections::HashSet::new();
            rows.iter().any(|r| {
                let key: Vec<Option<&str>> = r[..key_len]
                    .iter()
                    .map(|p| match p {
                        Param::Text(t) => t.as_deref(),
                        Param::Int(_) => None,
                    })
                    .collect();
                !seen.insert(key)
            })
        }
        repeated(&self.received, 2) || repeated(&self.outcome, 2) || repeated(&self.delivery, 3)
    }

    async fn insert(self, tx: &mut Transaction<'_, Any>) -> Result<()> {
        insert(tx, &RECEIVED, &self.received).await?;
        insert(tx, &OUTCOME, &self.outcome).await?;
        insert(tx, &DELIVERY, &self.delivery).await?;
        insert(tx, &AUDIT, &self.audit).await
    }
}

fn audit_row(a: &AuditEntry, now: i64) -> Vec<Param> {
    vec![
        text(&uuid::Uuid::new_v4().to_string()),
        Param::Int(Some(now)),
        text(&a.actor),
        text(a.action.as_str()),
        text(&a.flow),
        text(&a.message_id),
        Param::Text(a.destination.clone()),
        Param::Text((!a.fields.is_empty()).then(|| a.fields.join(","))),
        Param::Text(a.agreement.clone()),
        Param::Text(a.detail.clone()),
    ]
}

/// Multi-row INSERT (in chunks), numbering placeholders $1.. in order of appearance,
/// which both PostgreSQL and SQLite read positionally.
async fn insert(tx: &mut Transaction<'_, Any>, table: &Table, rows: &[Vec<Param>]) -> Result<()> {
    for chunk in shaped_chunks(rows) {
        let mut sql = String::with_capacity(
            table.insert.len() + chunk.len() * table.columns * 5 + table.conflict.len(),
        );
        sql.push_str(table.insert);
        sql.push_str(" VALUES ");
        let mut n = 0;
        for (i, _) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for c in 0..table.columns {
                n += 1;
                sql.push_str(if c == 0 { "$" } else { ", $" });
                sql.push_str(&n.to_string());
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(table.conflict);
        let mut q = sqlx::query(&sql);
        for row in chunk {
            for p in row {
                q = match p {
                    Param::Text(v) => q.bind(v.clone()),
                    Param::Int(v) => q.bind(*v),
                };
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Commits `writes` in one transaction: one multi-row statement per table when no key
/// repeats, else write by write in order.
async fn commit(pool: &AnyPool, writes: &[&Write]) -> Result<()> {
    let now = now_ms();
    let mut all = Rows::default();
    for w in writes {
        all.add(w, now);
    }
    let mut tx = pool.begin().await?;
    if all.has_repeated_keys() {
        for w in writes {
            let mut one = Rows::default();
            one.add(w, now);
            one.insert(&mut tx).await?;
        }
    } else {
        all.insert(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
