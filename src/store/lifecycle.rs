//! A referral's versions and how it ended (ARCHITECTURE.md "A referral's life"): what the
//! referral front compares a later version with, what the unanswered-referral sweep
//! looks for, and what `status` and the console show.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;
use crate::model::state::{Change, Lifecycle};

/// One message about a referral.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRow {
    pub message_id: String,
    pub referral_id: String,
    pub change: Change,
    /// The canonical fields it changed (names only).
    pub fields: Vec<String>,
    /// field -> keyed digest of its value.
    pub fingerprint: std::collections::BTreeMap<String, String>,
    pub created_at: i64,
}

/// How a referral ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub state: Lifecycle,
    pub by_message: String,
    pub reason: String,
    pub at: i64,
}

/// A referral the programme has not answered: no event linked to it yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Unanswered {
    pub referral_id: String,
    pub programme: String,
    /// When it was first delivered (ms).
    pub sent_at: i64,
    pub reminders: i64,
    /// When the last reminder was taken (ms).
    pub last_reminder: Option<i64>,
}

const VERSION_COLUMNS: &str = "message_id, referral_id, change, fields, fingerprint, created_at";

fn version_row(r: &sqlx::any::AnyRow) -> Result<VersionRow> {
    let change: String = r.try_get(2)?;
    let fields: String = r.try_get(3)?;
    let fingerprint: String = r.try_get(4)?;
    Ok(VersionRow {
        message_id: r.try_get(0)?,
        referral_id: r.try_get(1)?,
        change: Change::parse(&change).unwrap_or(Change::Unchanged),
        fields: serde_json::from_str(&fields).unwrap_or_default(),
        fingerprint: serde_json::from_str(&fingerprint).unwrap_or_default(),
        created_at: r.try_get(5)?,
    })
}

impl Store {
    /// The version a message made, if it was taken before (a retry decides the same).
    pub async fn version(&self, message_id: &str) -> Result<Option<VersionRow>> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM referral_versions WHERE message_id = $1"
        ))
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    /// The latest version the practice sent under an identifier (what a later one is
    /// compared with).
    pub async fn latest_version(&self, identity: &str) -> Result<Option<VersionRow>> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM referral_versions WHERE identity = $1 \
             ORDER BY created_at DESC, message_id DESC LIMIT 1"
        ))
        .bind(identity)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    /// Every message about a referral, oldest first.
    pub async fn versions(&self, referral_id: &str) -> Result<Vec<VersionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM referral_versions WHERE referral_id = $1 \
             ORDER BY created_at, message_id"
        ))
        .bind(referral_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }

    /// How a referral ended, when it has.
    pub async fn ended(&self, referral_id: &str) -> Result<Option<Ended>> {
        let row = sqlx::query(
            "SELECT state, by_message, reason, changed_at FROM referral_lifecycle \
             WHERE referral_id = $1",
        )
        .bind(referral_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let state: String = r.try_get(0)?;
            Ok(Ended {
                state: Lifecycle::parse(&state).unwrap_or(Lifecycle::Cancelled),
                by_message: r.try_get(1)?,
                reason: r.try_get(2)?,
                at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// A programme's open referrals delivered before `sent_before` (ms) that no event
    /// has answered, oldest first, with their reminders so far.
    pub async fn unanswered(&self, programme: &str, sent_before: i64) -> Result<Vec<Unanswered>> {
        let rows = sqlx::query(
            "SELECT r.message_id, r.programme, MIN(d.delivered_at), \
             (SELECT COUNT(*) FROM referral_versions v WHERE v.referral_id = r.message_id \
              AND v.change = 'remind'), \
             (SELECT MAX(v.created_at) FROM referral_versions v \
              WHERE v.referral_id = r.message_id AND v.change = 'remind') \
             FROM referrals r JOIN deliveries d ON d.flow = 'referral' \
             AND d.message_id = r.message_id AND d.state = 'delivered' \
             WHERE r.programme = $1 \
             AND NOT EXISTS (SELECT 1 FROM referral_events e WHERE e.referral_id = r.message_id) \
             AND NOT EXISTS (SELECT 1 FROM referral_lifecycle l WHERE l.referral_id = r.message_id) \
             GROUP BY r.message_id, r.programme HAVING MIN(d.delivered_at) < $2 \
             ORDER BY 3",
        )
        .bind(programme)
        .bind(sent_before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Unanswered {
                    referral_id: r.try_get(0)?,
                    programme: r.try_get(1)?,
                    sent_at: r.try_get(2)?,
                    reminders: r.try_get(3)?,
                    last_reminder: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Referrals per (programme, lifecycle state), the open ones included.
    pub async fn lifecycle_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT r.programme, COALESCE(l.state, 'open'), COUNT(*) FROM referrals r \
             LEFT JOIN referral_lifecycle l ON l.referral_id = r.message_id \
             GROUP BY r.programme, COALESCE(l.state, 'open') ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Milliseconds now, as the store stamps rows (for the sweep's arithmetic).
    pub fn now(&self) -> i64 {
        now_ms()
    }
}
