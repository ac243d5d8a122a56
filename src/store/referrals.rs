//! What the store keeps for the message back: the referrals sent (to link events and
//! check the patient), the events linked to each (the referral's state and counts are
//! derived from them), and pollers' cursors.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::{GatewayError, Result, Stage};

/// A referral as the message back sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralRecord {
    pub message_id: String,
    pub programme: String,
    pub practice: Option<String>,
    /// Patient, practice, referrer and consent, as JSON.
    pub record: serde_json::Value,
    pub created_at: i64,
    /// How the practice or the gateway ended it (cancelled, consent withdrawn, not
    /// responded); None while it is open.
    pub ended: Option<super::Ended>,
    /// What the latest version's consent shares (a later version may share less than
    /// the first did); None when no later version said.
    pub consent_now: Option<String>,
}

impl ReferralRecord {
    /// What consent lets travel now: the latest version's, else the referral's own.
    pub fn consent(&self) -> Option<&str> {
        self.consent_now.as_deref().or_else(|| {
            self.record
                .get("consent")
                .and_then(serde_json::Value::as_str)
        })
    }
}

/// One event linked to a referral.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event_message_id: String,
    pub kind: String,
    pub occurred_at: String,
    pub detail: Option<String>,
    pub recorded_at: i64,
}

/// A referral's state, derived from its events: it only moves forward, whatever
/// order the events came in.
pub fn derived_state(events: &[EventRow]) -> &'static str {
    let has = |k: &str| events.iter().any(|e| e.kind == k);
    if has("closed") {
        "closed"
    } else if has("contact") || has("assessment") || has("onward-referral") {
        "in-progress"
    } else if has("referral-declined") {
        "declined"
    } else if has("referral-accepted") {
        "accepted"
    } else {
        "sent"
    }
}

/// A referral read from its columns starting at `at`.
fn referral_row(r: &sqlx::any::AnyRow, at: usize) -> Result<ReferralRecord> {
    let record: String = r.try_get(at + 3)?;
    Ok(ReferralRecord {
        message_id: r.try_get(at)?,
        programme: r.try_get(at + 1)?,
        practice: r.try_get(at + 2)?,
        record: serde_json::from_str(&record).map_err(|e| {
            GatewayError::permanent(Stage::Store, format!("a referral record is not JSON: {e}"))
        })?,
        created_at: r.try_get(at + 4)?,
        ended: match r.try_get::<Option<String>, _>(at + 5)? {
            Some(state) => Some(super::Ended {
                state: crate::model::state::Lifecycle::parse(&state)
                    .unwrap_or(crate::model::state::Lifecycle::Cancelled),
                by_message: r.try_get(at + 6)?,
                reason: r.try_get(at + 7)?,
                at: r.try_get(at + 8)?,
            }),
            None => None,
        },
        consent_now: r.try_get(at + 9)?,
    })
}

/// A referral's columns and how it ended (`referrals r` left-joined to its end).
const REFERRAL_COLUMNS: &str = "r.message_id, r.programme, r.practice, r.record, r.created_at, \
     l.state, l.by_message, l.reason, l.changed_at, \
     (SELECT v.consent FROM referral_versions v WHERE v.referral_id = r.message_id \
      AND v.consent IS NOT NULL ORDER BY v.created_at DESC, v.message_id DESC LIMIT 1) \
     FROM referrals r LEFT JOIN referral_lifecycle l ON l.referral_id = r.message_id";

impl Store {
    /// The referral a message id names: its first message's, or any later version's
    /// (an event naming any version reaches the one referral).
    pub async fn referral(&self, message_id: &str) -> Result<Option<ReferralRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {REFERRAL_COLUMNS} WHERE r.message_id = COALESCE((SELECT v.referral_id \
             FROM referral_versions v WHERE v.message_id = $1), $1)"
        ))
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| referral_row(r, 0)).transpose()
    }

    /// The referrals of a programme for one patient, newest first, each with whether it
    /// is closed.
    pub async fn referrals_for_patient(
        &self,
        programme: &str,
        patient_key: &str,
    ) -> Result<Vec<(ReferralRecord, bool)>> {
        let rows = sqlx::query(&format!(
            "SELECT (SELECT COUNT(*) FROM referral_events e \
             WHERE e.referral_id = r.message_id AND e.kind = 'closed'), {REFERRAL_COLUMNS} \
             WHERE r.programme = $1 AND r.patient_key = $2 ORDER BY r.created_at DESC"
        ))
        .bind(programme)
        .bind(patient_key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let closed: i64 = r.try_get(0)?;
                Ok((referral_row(r, 1)?, closed > 0))
            })
            .collect()
    }

    /// The referrals a platform's own reference names: a record id one of `sources`
    /// (destination, the journal step its kind records references in) returned. Only
    /// the sending platform's own destinations are searched, so one platform's ids (or
    /// a second account's of the same kind) never name another's referrals.
    pub async fn referral_by_platform_reference(
        &self,
        reference: &str,
        sources: &[(String, &'static str)],
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT message_id, destination, step FROM effects WHERE flow = 'referral' \
             AND state = 'done' AND value = $1",
        )
        .bind(reference)
        .fetch_all(&self.pool)
        .await?;
        let mut ids = Vec::new();
        for r in &rows {
            let (id, destination, step): (String, String, String) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            if sources.iter().any(|(d, s)| *d == destination && *s == step) && !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Whether a referral is still being sent (received or retrying, not yet settled):
    /// what depends on its delivery waits rather than being refused.
    pub async fn referral_in_flight(&self, referral_id: &str) -> Result<bool> {
        use crate::model::state::MessageState;
        Ok(self
            .message(crate::model::Flow::Referral.as_str(), referral_id)
            .await?
            .is_some_and(|m| {
                matches!(
                    MessageState::parse(&m.state),
                    Some(MessageState::Received | MessageState::Retrying)
                )
            }))
    }

    /// The destinations a referral was delivered to (the platforms that may answer it).
    pub async fn delivered_to(&self, referral_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT destination FROM deliveries WHERE flow = 'referral' AND message_id = $1 \
             AND state = 'delivered' ORDER BY destination",
        )
        .bind(referral_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub async fn referral_events(&self, referral_id: &str) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT event_message_id, kind, occurred_at, detail, recorded_at FROM referral_events \
             WHERE referral_id = $1 ORDER BY occurred_at, recorded_at",
        )
        .bind(referral_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    event_message_id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    occurred_at: r.try_get(2)?,
                    detail: r.try_get(3)?,
                    recorded_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Per programme, referrals sent longer ago than `older_than` with no event back.
    pub async fn awaiting_response(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<(String, i64)>> {
        let cutoff = now_ms() - older_than.as_millis() as i64;
        let rows = sqlx::query(
            "SELECT programme, COUNT(*) FROM referrals r WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM referral_events e WHERE e.referral_id = r.message_id) \
             AND NOT EXISTS (SELECT 1 FROM referral_lifecycle l WHERE l.referral_id = r.message_id) \
             AND EXISTS (SELECT 1 FROM messages m WHERE m.flow = 'referral' \
             AND m.message_id = r.message_id AND m.state = 'delivered') \
             GROUP BY programme ORDER BY programme",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub async fn cursor(&self, source: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT cursor FROM poll_cursors WHERE source = $1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Referrals per (programme, practice, state of the referral message).
    pub async fn referral_counts(&self) -> Result<Vec<(String, String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT r.programme, COALESCE(r.practice, '-'), COALESCE(m.state, 'unknown'), COUNT(*) \
             FROM referrals r LEFT JOIN messages m ON m.flow = 'referral' AND m.message_id = r.message_id \
             GROUP BY r.programme, COALESCE(r.practice, '-'), COALESCE(m.state, 'unknown') \
             ORDER BY 1, 2, 3",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }
}
