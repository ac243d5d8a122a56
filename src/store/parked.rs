//! Parked messages kept by the store: listed and replayed from here, so an operator
//! never has to read (and so disturb) the parking queue. One row per parking: a message
//! parked again after a replay is a new row.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{AuditEntry, Store, Write, now_ms};
use crate::error::{GatewayError, Result, Stage};
use crate::model::Headers;
use crate::model::state::AuditAction;

pub const PARKED: &str = "parked";
pub const REPLAYED: &str = "replayed";
pub const DISMISSED: &str = "dismissed";

/// A parked message as it is recorded: why, and what it takes to send it again.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedRecord {
    pub flow: String,
    pub message_id: String,
    pub stage: String,
    pub error_class: String,
    pub field: Option<String>,
    /// Names fields and rules, never patient values.
    pub reason: String,
    pub attempts: i64,
    pub mapping: Option<String>,
    /// `amqp`, or `spool:<file name in failed/>`.
    pub origin: String,
    pub headers: Headers,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl ParkedRecord {
    /// The same parking (same headers, same body) always has the same key, so a copy
    /// recorded twice (a crash between the insert and the ack) is one row.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.flow.as_bytes());
        for (k, v) in &self.headers {
            h.update([0]);
            h.update(k.as_bytes());
            h.update([1]);
            h.update(v.as_bytes());
        }
        h.update([2]);
        h.update(self.origin.as_bytes());
        h.update([3]);
        h.update(&self.body);
        hex::encode(h.finalize())
    }
}

/// A parked message as listed: everything but its body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedRow {
    pub key: String,
    pub flow: String,
    pub message_id: String,
    pub stage: String,
    pub error_class: String,
    pub field: Option<String>,
    pub reason: String,
    pub attempts: i64,
    pub mapping: Option<String>,
    pub origin: String,
    pub body_bytes: i64,
    pub state: String,
    pub parked_at: i64,
    pub replayed_at: Option<i64>,
    pub replayed_by: Option<String>,
}

/// What a replay needs of a parked message.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedBody {
    pub headers: Headers,
    pub content_type: Option<String>,
    /// None once retention removed it.
    pub body: Option<Vec<u8>>,
}

const COLUMNS: &str = "parked_key, flow, message_id, stage, error_class, field, reason, attempts, \
                       mapping, origin, body_bytes, state, parked_at, replayed_at, replayed_by";

fn row(r: &sqlx::any::AnyRow) -> Result<ParkedRow> {
    Ok(ParkedRow {
        key: r.try_get(0)?,
        flow: r.try_get(1)?,
        message_id: r.try_get(2)?,
        stage: r.try_get(3)?,
        error_class: r.try_get(4)?,
        field: r.try_get(5)?,
        reason: r.try_get(6)?,
        attempts: r.try_get(7)?,
        mapping: r.try_get(8)?,
        origin: r.try_get(9)?,
        body_bytes: r.try_get(10)?,
        state: r.try_get(11)?,
        parked_at: r.try_get(12)?,
        replayed_at: r.try_get(13)?,
        replayed_by: r.try_get(14)?,
    })
}

impl Store {
    /// Records a parked message; true when it is new (a second copy changes nothing).
    pub async fn park(&self, p: &ParkedRecord) -> Result<bool> {
        let headers = serde_json::to_string(&p.headers)
            .map_err(|e| GatewayError::permanent(Stage::Store, format!("parked headers: {e}")))?;
        let done = sqlx::query(
            "INSERT INTO parked (parked_key, flow, message_id, stage, error_class, field, reason, \
             attempts, mapping, origin, headers, content_type, body, body_bytes, state, parked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (parked_key) DO NOTHING",
        )
        .bind(p.key())
        .bind(p.flow.clone())
        .bind(p.message_id.clone())
        .bind(p.stage.clone())
        .bind(p.error_class.clone())
        .bind(p.field.clone())
        .bind(p.reason.clone())
        .bind(p.attempts)
        .bind(p.mapping.clone())
        .bind(p.origin.clone())
        .bind(headers)
        .bind(p.content_type.clone())
        // No body: nothing to send again (e.g. a practice's final refusal of what MESH
        // delivered); a replay says so.
        .bind((!p.body.is_empty()).then(|| B64.encode(&p.body)))
        .bind(p.body.len() as i64)
        .bind(PARKED)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Parked messages of a flow (all flows when None) in a state (all when None),
    /// oldest first.
    pub async fn parked(
        &self,
        flow: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ParkedRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM parked WHERE ($1 IS NULL OR flow = $1) \
             AND ($2 IS NULL OR state = $2) ORDER BY parked_at, parked_key LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(flow.map(str::to_string))
            .bind(state.map(str::to_string))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row).collect()
    }

    pub async fn parked_row(&self, key: &str) -> Result<Option<ParkedRow>> {
        let sql = format!("SELECT {COLUMNS} FROM parked WHERE parked_key = $1");
        let r = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(row).transpose()
    }

    pub async fn parked_body(&self, key: &str) -> Result<Option<ParkedBody>> {
        let r = sqlx::query("SELECT headers, content_type, body FROM parked WHERE parked_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = r else { return Ok(None) };
        let bad = |what: &str| {
            GatewayError::permanent(Stage::Store, format!("parked message {key}: bad {what}"))
        };
        let headers: String = r.try_get(0)?;
        let body: Option<String> = r.try_get(2)?;
        Ok(Some(ParkedBody {
            headers: serde_json::from_str(&headers).map_err(|_| bad("headers"))?,
            content_type: r.try_get(1)?,
            body: body
                .map(|b| B64.decode(b).map_err(|_| bad("body")))
                .transpose()?,
        }))
    }

    /// Marks a parked message replayed (after it was sent again) and audits who did it.
    /// False when it was not parked (already replayed by someone else).
    pub async fn replayed(&self, key: &str, actor: &str, detail: String) -> Result<bool> {
        self.close_parked(key, actor, REPLAYED, AuditAction::Replayed, detail)
            .await
    }

    /// Closes a parked message that must not be replayed, with the reason audited. False
    /// when it was not parked.
    pub async fn dismiss(&self, key: &str, actor: &str, reason: &str) -> Result<bool> {
        let detail = format!("dismissed, not replayed: {reason}");
        self.close_parked(key, actor, DISMISSED, AuditAction::Dismissed, detail)
            .await
    }

    /// Moves a parked record to `state` by `actor`, audited, if it is still parked.
    async fn close_parked(
        &self,
        key: &str,
        actor: &str,
        state: &str,
        action: AuditAction,
        detail: String,
    ) -> Result<bool> {
        let Some(p) = self.parked_row(key).await? else {
            return Ok(false);
        };
        let changed = sqlx::query(
            "UPDATE parked SET state = $1, replayed_at = $2, replayed_by = $3 \
             WHERE parked_key = $4 AND state = $5",
        )
        .bind(state)
        .bind(now_ms())
        .bind(actor)
        .bind(key)
        .bind(PARKED)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        self.write(Write::Audit(AuditEntry {
            actor: actor.to_string(),
            action,
            flow: p.flow,
            message_id: p.message_id,
            destination: None,
            fields: Vec::new(),
            agreement: None,
            detail: Some(detail),
        }))
        .await?;
        Ok(true)
    }

    /// Parked messages waiting for a person, per flow.
    pub async fn parked_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT flow, COUNT(*) FROM parked WHERE state = $1 GROUP BY flow ORDER BY flow",
        )
        .bind(PARKED)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Per flow, the age in seconds of the oldest message received and not yet settled
    /// (still received or waiting for a retry).
    pub async fn oldest_unsettled(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT flow, MIN(received_at) FROM messages WHERE state IN ('received', 'retrying') \
             GROUP BY flow ORDER BY flow",
        )
        .fetch_all(&self.pool)
        .await?;
        let now = now_ms();
        rows.iter()
            .map(|r| {
                let oldest: i64 = r.try_get(1)?;
                Ok((r.try_get(0)?, ((now - oldest) / 1000).max(0)))
            })
            .collect()
    }
}
