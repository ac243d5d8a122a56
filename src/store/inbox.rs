//! What the gateway keeps of a destination's inbox: messages it did not understand (or
//! that named nothing it sent), kept whole for a person; and the sends still waiting
//! for an acknowledgement, found from the effect journal.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;

/// A kept inbox message as listed (without its body).
#[derive(Debug, Clone, PartialEq)]
pub struct KeptRow {
    pub destination: String,
    pub inbox_id: String,
    pub workflow: Option<String>,
    pub reason: String,
    pub body_bytes: i64,
    pub kept_at: i64,
}

/// A send with no acknowledgement of some level yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Awaiting {
    pub flow: String,
    pub message_id: String,
    /// When the send was recorded (ms).
    pub sent_at: i64,
    /// The practice of the referral the event is about, if known.
    pub practice: Option<String>,
    /// A person was already told it is overdue.
    pub told: bool,
}

/// The words for an acknowledgement recorded as `outcome code meaning`.
fn ack_words(value: &str) -> String {
    let (outcome, rest) = value.split_once(' ').unwrap_or((value, ""));
    let label = match outcome {
        "received" => "received by the practice",
        "filed" => "filed at the practice",
        "rejected" => "rejected by the practice",
        other => other,
    };
    format!("{label} ({rest})")
}

impl Store {
    /// Records in the dataset's facts of an event what the practice acknowledged of its
    /// record entry (`received`, `filed`, `rejected`): a final answer is never replaced
    /// by `received`. Nothing when the dataset holds no facts for the event.
    pub async fn dataset_event_acknowledged(
        &self,
        event_message_id: &str,
        outcome: &str,
    ) -> Result<()> {
        let facts: Option<String> =
            sqlx::query_scalar("SELECT facts FROM dataset_events WHERE event_message_id = $1")
                .bind(event_message_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let Some(mut facts) =
            facts.and_then(|f| serde_json::from_str::<serde_json::Value>(&f).ok())
        else {
            return Ok(());
        };
        let had = facts
            .get("practice_ack")
            .and_then(serde_json::Value::as_str);
        if had.is_some_and(|h| h != "received") || had == Some(outcome) {
            return Ok(());
        }
        facts["practice_ack"] = serde_json::Value::String(outcome.to_string());
        sqlx::query("UPDATE dataset_events SET facts = $1 WHERE event_message_id = $2")
            .bind(facts.to_string())
            .bind(event_message_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A delivery's acknowledgement sub-state in words, for writers whose sends are
    /// acknowledged (MESH): accepted by MESH → received by the practice → filed or
    /// rejected. None for any other writer.
    pub async fn ack_state(
        &self,
        flow: &str,
        message_id: &str,
        destination: &str,
    ) -> Result<Option<String>> {
        let done = |r: Option<(String, Option<String>)>| {
            r.filter(|(state, _)| state == "done").and_then(|(_, v)| v)
        };
        // The MESH writer's send step (`deliver::mesh`), the only writer acknowledged today.
        if done(
            self.effect(flow, message_id, destination, "mesh-send")
                .await?,
        )
        .is_none()
        {
            return Ok(None);
        }
        for step in ["ack-business", "ack-infrastructure"] {
            if let Some(v) = done(self.effect(flow, message_id, destination, step).await?) {
                return Ok(Some(ack_words(&v)));
            }
        }
        Ok(Some("accepted by MESH, no acknowledgement yet".into()))
    }

    /// Keeps an inbox message; true when new (the same message kept twice is one row).
    pub async fn keep_inbox(
        &self,
        destination: &str,
        inbox_id: &str,
        workflow: Option<&str>,
        reason: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO inbox_kept (destination, inbox_id, workflow, reason, headers, body, \
             body_bytes, kept_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (destination, inbox_id) DO NOTHING",
        )
        .bind(destination.to_string())
        .bind(inbox_id.to_string())
        .bind(workflow.map(str::to_string))
        .bind(reason.to_string())
        .bind(serde_json::to_string(headers).unwrap_or_else(|_| "[]".into()))
        .bind(B64.encode(body))
        .bind(body.len() as i64)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a journal step done unless it is already there: true for the one caller
    /// (on any instance) that recorded it — so something is told once however many
    /// readers see it at the same moment.
    pub async fn first_to_record(
        &self,
        flow: &str,
        message_id: &str,
        destination: &str,
        step: &str,
        value: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO effects (flow, message_id, destination, step, state, value, updated_at) \
             VALUES ($1, $2, $3, $4, 'done', $5, $6) \
             ON CONFLICT (flow, message_id, destination, step) DO NOTHING",
        )
        .bind(flow.to_string())
        .bind(message_id.to_string())
        .bind(destination.to_string())
        .bind(step.to_string())
        .bind(value.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Kept inbox messages, newest first.
    pub async fn inbox_kept(&self, limit: i64) -> Result<Vec<KeptRow>> {
        let rows = sqlx::query(
            "SELECT destination, inbox_id, workflow, reason, body_bytes, kept_at FROM inbox_kept \
             ORDER BY kept_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeptRow {
                    destination: r.try_get(0)?,
                    inbox_id: r.try_get(1)?,
                    workflow: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    body_bytes: r.try_get(4)?,
                    kept_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Sends to `destination` recorded (journal step `sent`, done) before `before` (ms)
    /// with no `answered` step: the acknowledgements still awaited, with whether a person
    /// was told (`told` step) and the practice of the referral each event is about.
    pub async fn awaiting_answer(
        &self,
        destination: &str,
        sent: &str,
        answered: &str,
        told: &str,
        before: i64,
    ) -> Result<Vec<Awaiting>> {
        let rows = sqlx::query(
            "SELECT s.flow, s.message_id, s.updated_at, r.practice, \
               (SELECT COUNT(*) FROM effects t WHERE t.flow = s.flow AND t.message_id = s.message_id \
                  AND t.destination = s.destination AND t.step = $4) \
             FROM effects s \
             LEFT JOIN referral_events ev ON ev.event_message_id = s.message_id \
             LEFT JOIN referrals r ON r.message_id = ev.referral_id \
             WHERE s.destination = $1 AND s.step = $2 AND s.state = 'done' AND s.updated_at < $5 \
               AND NOT EXISTS (SELECT 1 FROM effects a WHERE a.flow = s.flow \
                  AND a.message_id = s.message_id AND a.destination = s.destination AND a.step = $3) \
             ORDER BY s.updated_at",
        )
        .bind(destination.to_string())
        .bind(sent.to_string())
        .bind(answered.to_string())
        .bind(told.to_string())
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let told: i64 = r.try_get(4)?;
                Ok(Awaiting {
                    flow: r.try_get(0)?,
                    message_id: r.try_get(1)?,
                    sent_at: r.try_get(2)?,
                    practice: r.try_get(3)?,
                    told: told > 0,
                })
            })
            .collect()
    }
}
