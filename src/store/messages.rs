//! Reading a message back: its row, its deliveries, its audit trail, its programme and
//! counts by state (for `status`, the console and tests).

use sqlx::Row;

use super::{AuditEntry, AuditRow, DeliveryRow, MessageRow, Store};
use crate::error::{GatewayError, Result, Stage};
use crate::model::state::AuditAction;

impl Store {
    /// The programme a message belongs to, when the store knows it: a referral's own, or
    /// an event's through the referral it was linked to. None for what never got that far.
    pub async fn programme_of(&self, flow: &str, message_id: &str) -> Result<Option<String>> {
        let sql = if flow == crate::model::Flow::Referral.as_str() {
            "SELECT programme FROM referrals WHERE message_id = $1"
        } else {
            "SELECT r.programme FROM referral_events e JOIN referrals r \
             ON r.message_id = e.referral_id WHERE e.event_message_id = $1"
        };
        let row = sqlx::query(sql)
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    pub async fn message(&self, flow: &str, message_id: &str) -> Result<Option<MessageRow>> {
        let row = sqlx::query(
            "SELECT flow, message_id, state, attempts, source, error_class, error_stage, last_error, \
             received_at, updated_at FROM messages WHERE flow = $1 AND message_id = $2",
        )
        .bind(flow)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<MessageRow> {
            Ok(MessageRow {
                flow: r.try_get(0)?,
                message_id: r.try_get(1)?,
                state: r.try_get(2)?,
                attempts: r.try_get(3)?,
                source: r.try_get(4)?,
                error_class: r.try_get(5)?,
                error_stage: r.try_get(6)?,
                last_error: r.try_get(7)?,
                received_at: r.try_get(8)?,
                updated_at: r.try_get(9)?,
            })
        })
        .transpose()
    }

    /// Finds messages by id in any flow (for `status`).
    pub async fn find_message(&self, message_id: &str) -> Result<Vec<MessageRow>> {
        let flows: Vec<String> = sqlx::query("SELECT flow FROM messages WHERE message_id = $1")
            .bind(message_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for f in flows {
            out.extend(self.message(&f, message_id).await?);
        }
        Ok(out)
    }

    pub async fn deliveries(&self, flow: &str, message_id: &str) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT destination, state, attempts, idempotency_key, response_status, last_error, delivered_at \
             FROM deliveries WHERE flow = $1 AND message_id = $2 ORDER BY destination",
        )
        .bind(flow)
        .bind(message_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRow {
                    destination: r.try_get(0)?,
                    state: r.try_get(1)?,
                    attempts: r.try_get(2)?,
                    idempotency_key: r.try_get(3)?,
                    response_status: r.try_get(4)?,
                    last_error: r.try_get(5)?,
                    delivered_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    pub async fn audit(&self, flow: &str, message_id: &str) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, destination, fields, agreement, detail FROM audit_log \
             WHERE flow = $1 AND message_id = $2 ORDER BY at, id",
        )
        .bind(flow)
        .bind(message_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let fields: Option<String> = r.try_get(4)?;
                let action: String = r.try_get(2)?;
                Ok(AuditRow {
                    at: r.try_get(0)?,
                    entry: AuditEntry {
                        actor: r.try_get(1)?,
                        action: AuditAction::parse(&action).ok_or_else(|| {
                            GatewayError::permanent(
                                Stage::Store,
                                format!("audit_log holds an unknown action {action:?}"),
                            )
                        })?,
                        flow: flow.to_string(),
                        message_id: message_id.to_string(),
                        destination: r.try_get(3)?,
                        fields: fields
                            .map(|f| {
                                f.split(',')
                                    .filter(|s| !s.is_empty())
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default(),
                        agreement: r.try_get(5)?,
                        detail: r.try_get(6)?,
                    },
                })
            })
            .collect()
    }

    /// Counts messages per state (for `status` with no id, and tests).
    pub async fn count_by_state(&self, flow: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) FROM messages WHERE flow = $1 GROUP BY state ORDER BY state",
        )
        .bind(flow)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
