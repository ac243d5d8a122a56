//! The store (sqlx; SQLite by default, PostgreSQL by URL): message state, per-destination
//! idempotency and the audit log. Writes go through one writer task that groups them into
//! transactions (group commit), so many in-flight messages share one fsync.

mod access;
mod config;
mod connect;
pub mod dataset;
mod effects;
mod inbox;
mod lifecycle;
mod lookup;
mod messages;
mod parked;
mod purge;
mod referrals;
mod retention;
mod rows;
pub mod timeline;
mod writer;
pub mod writer_types {
    pub use super::writer::{Claim, DeliveryUpdate, EffectRecord, ErrorSummary};
}

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

pub use config::StoreConfig;
pub use connect::{Timeouts, verified_tls};
pub use retention::RetentionConfig;

use crate::error::{GatewayError, Result, Stage};
use crate::model::state::AuditAction;
pub use inbox::{Awaiting, KeptRow};
pub use lifecycle::{Ended, Unanswered, VersionRow};
pub use lookup::Known;
pub use parked::{PARKED, ParkedBody, ParkedRecord, ParkedRow, REPLAYED};
pub use referrals::{EventRow, ReferralRecord, derived_state};
pub use writer::Write;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub flow: String,
    pub message_id: String,
    pub state: String,
    pub attempts: i64,
    pub source: Option<String>,
    pub error_class: Option<String>,
    pub error_stage: Option<String>,
    pub last_error: Option<String>,
    pub received_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub destination: String,
    pub state: String,
    pub attempts: i64,
    pub idempotency_key: String,
    pub response_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub actor: String,
    pub action: AuditAction,
    pub flow: String,
    pub message_id: String,
    pub destination: Option<String>,
    /// Field names only, never values.
    pub fields: Vec<String>,
    pub agreement: Option<String>,
    pub detail: Option<String>,
}

impl AuditEntry {
    /// What the gateway itself noted about a message (no destination, no agreement).
    pub fn note(
        action: AuditAction,
        flow: crate::model::Flow,
        message_id: &str,
        fields: Vec<String>,
        detail: String,
    ) -> AuditEntry {
        AuditEntry {
            actor: "clw-gateway".into(),
            action,
            flow: flow.as_str().into(),
            message_id: message_id.into(),
            destination: None,
            fields,
            agreement: None,
            detail: Some(detail),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub at: i64,
    pub entry: AuditEntry,
}

struct Job {
    write: Write,
    /// What the write took (a claim's destinations), once committed.
    reply: oneshot::Sender<Result<Vec<String>>>,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    writer: mpsc::Sender<Job>,
    lookups: mpsc::Sender<lookup::Lookup>,
}

/// Splits `items` into chunks of a few fixed sizes (largest first). Statements are
/// cached by their SQL text, so a handful of shapes keeps every multi-row statement
/// prepared once instead of re-parsed for each batch size.
pub(crate) fn shaped_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    const SHAPES: [usize; 5] = [128, 32, 8, 2, 1];
    std::iter::from_fn(move || {
        let size = SHAPES.into_iter().find(|&s| s <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

impl Store {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Queues a write and waits until it is committed.
    pub async fn write(&self, write: Write) -> Result<()> {
        self.commit(write).await.map(drop)
    }

    async fn commit(&self, write: Write) -> Result<Vec<String>> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job { write, reply })
            .await
            .map_err(|_| GatewayError::transient(Stage::Store, "store writer has stopped"))?;
        rx.await
            .map_err(|_| GatewayError::transient(Stage::Store, "store writer has stopped"))?
    }

    /// Claims effects before they happen (see [`Write::Claim`]); the destinations taken.
    /// Committed before this returns, so another instance sharing the store sees it.
    pub async fn claim(&self, claim: writer::Claim) -> Result<Vec<String>> {
        self.commit(Write::Claim(claim)).await
    }

    /// Queues a write without waiting for its commit. Writes commit in queue order, so a
    /// later awaited write makes this one durable too. For bookkeeping that nothing is
    /// acknowledged on (the "received" mark), so it adds no latency to a message.
    pub async fn write_nowait(&self, write: Write) -> Result<()> {
        let (reply, _) = oneshot::channel();
        self.writer
            .send(Job { write, reply })
            .await
            .map_err(|_| GatewayError::transient(Stage::Store, "store writer has stopped"))
    }

    /// What the store knows of `message_id` (first digest, each destination's state),
    /// answered in batches with other messages' look-ups.
    pub async fn known(&self, flow: &str, message_id: &str) -> Result<Known> {
        let (reply, rx) = oneshot::channel();
        let stopped = || GatewayError::transient(Stage::Store, "store reader has stopped");
        self.lookups
            .send(lookup::Lookup {
                flow: flow.to_string(),
                message_id: message_id.to_string(),
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::shaped_chunks;

    #[test]
    fn shaped_chunks_cover_every_item_in_order_with_few_shapes() {
        for n in 0..300usize {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = shaped_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "n = {n}");
            assert!(chunks.iter().all(|c| [128, 32, 8, 2, 1].contains(&c.len())));
        }
        assert_eq!(
            shaped_chunks(&[0u8; 200])
                .map(<[u8]>::len)
                .collect::<Vec<_>>(),
            [128, 32, 32, 8]
        );
    }
}
