//! What destinations keep in the store beyond a delivery's row: the journal of keyless
//! effects (and a person's answer when one's outcome is unknown), and how far each file
//! a destination appends to is written. Kinds reach these through their handles
//! (`deliver::Journal`, `deliver::Appends`); the store names no kind.

use sqlx::Row;

use super::{AuditEntry, Store, Write, now_ms};
use crate::error::{GatewayError, Result, Stage};
use crate::model::state::{AuditAction, DeliveryState};

impl Store {
    /// One step of a keyless effect, as the journal has it.
    pub async fn effect(
        &self,
        flow: &str,
        message_id: &str,
        destination: &str,
        step: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        let row = sqlx::query(
            "SELECT state, value FROM effects WHERE flow = $1 AND message_id = $2 \
             AND destination = $3 AND step = $4",
        )
        .bind(flow)
        .bind(message_id)
        .bind(destination)
        .bind(step)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// The (flow, message id) whose effect at `destination` produced `value` (a record
    /// id the destination gave), if one did.
    pub async fn effect_by_value(
        &self,
        destination: &str,
        value: &str,
    ) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT flow, message_id FROM effects WHERE destination = $1 AND value = $2 \
             AND state = 'done' ORDER BY updated_at LIMIT 1",
        )
        .bind(destination)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// A file a destination appends to: its committed (bytes, rows), if the store knows
    /// it. (The table is named for its first user, the CSV sheets.)
    pub async fn appended_file(&self, destination: &str, file: &str) -> Result<Option<(i64, i64)>> {
        let row = sqlx::query(
            "SELECT committed_bytes, rows_written FROM sheet_files WHERE destination = $1 AND file = $2",
        )
        .bind(destination)
        .bind(file)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// The newest file a destination appends to: (file, rows).
    pub async fn latest_appended_file(&self, destination: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT file, rows_written FROM sheet_files WHERE destination = $1 \
             ORDER BY file DESC LIMIT 1",
        )
        .bind(destination)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// A person's answer for an effect whose outcome was unknown: it arrived
    /// (`delivered`), or it did not and may be sent again. Its journalled steps follow
    /// (started steps become done, or free to run again), and the audit log says who.
    /// Errors when the delivery is not waiting on a person.
    pub async fn resolve(
        &self,
        flow: &str,
        message_id: &str,
        destination: &str,
        delivered: bool,
        actor: &str,
    ) -> Result<()> {
        let now = now_ms();
        let (state, step_state) = if delivered {
            (DeliveryState::Delivered, "done")
        } else {
            (DeliveryState::Retrying, "refused")
        };
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE deliveries SET state = $1, updated_at = $2, delivered_at = $3, claimed_by = NULL, \
             claim_expires_at = NULL, last_error = $4 \
             WHERE flow = $5 AND message_id = $6 AND destination = $7 AND state = 'unknown'",
        )
        .bind(state.as_str())
        .bind(now)
        .bind(delivered.then_some(now))
        .bind(format!("resolved by {actor}"))
        .bind(flow)
        .bind(message_id)
        .bind(destination)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(GatewayError::invalid(
                Stage::Store,
                "destination",
                format!(
                    "no delivery of this message to {destination} is waiting on a person (its outcome is not unknown)"
                ),
            ));
        }
        sqlx::query(
            "UPDATE effects SET state = $1, updated_at = $2 \
             WHERE flow = $3 AND message_id = $4 AND destination = $5 AND state = 'started'",
        )
        .bind(step_state)
        .bind(now)
        .bind(flow)
        .bind(message_id)
        .bind(destination)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.write(Write::Audit(AuditEntry {
            actor: actor.to_string(),
            action: AuditAction::Resolved,
            flow: flow.to_string(),
            message_id: message_id.to_string(),
            destination: Some(destination.to_string()),
            fields: Vec::new(),
            agreement: None,
            detail: Some(if delivered {
                "checked at the destination: it arrived; recorded as delivered".into()
            } else {
                "checked at the destination: it did not arrive; free to send again".into()
            }),
        }))
        .await
    }
}
