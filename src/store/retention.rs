//! `[retention]`: how long each kind of data is kept — the periods the store's purge
//! and the retention task apply.

use std::time::Duration;

use serde::Deserialize;

use crate::error::GatewayError;

/// How long each kind of data is kept; applied every `every` by the running service
/// and by `clw-gateway purge`. Audit rows outlive every payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Processed files in each flow's spool `done/` folder.
    #[serde(with = "humantime_serde")]
    pub spool_done: Duration,
    /// Files written by `file` destinations and practice-folder documents.
    #[serde(with = "humantime_serde")]
    pub outboxes: Duration,
    /// CSV sheet files.
    #[serde(with = "humantime_serde")]
    pub sheets: Duration,
    /// Bodies of parked messages (in the store and the spool's `failed/` folder).
    #[serde(with = "humantime_serde")]
    pub bodies: Duration,
    /// The referral records message-back events are linked to.
    #[serde(with = "humantime_serde")]
    pub referrals: Duration,
    /// Message, delivery, journal and parked rows.
    #[serde(with = "humantime_serde")]
    pub rows: Duration,
    /// Audit rows.
    #[serde(with = "humantime_serde")]
    pub audit: Duration,
    /// The dataset's facts (no direct identifier): longer than patient data, so the
    /// extract reaches back over years.
    #[serde(with = "humantime_serde")]
    pub dataset: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let days = |n: u64| Duration::from_secs(n * 86_400);
        RetentionConfig {
            every: Duration::from_secs(3600),
            spool_done: days(7),
            outboxes: days(30),
            sheets: days(90),
            bodies: days(30),
            referrals: days(400),
            rows: days(400),
            audit: days(8 * 365 + 2),
            dataset: days(8 * 365 + 2),
        }
    }
}

impl RetentionConfig {
    pub fn problems(&self) -> Vec<GatewayError> {
        let mut errs = Vec::new();
        if self.every < Duration::from_secs(1) {
            errs.push(GatewayError::config(
                "retention.every",
                "must be at least 1s",
            ));
        }
        for (key, payload) in [
            ("retention.spool_done", self.spool_done),
            ("retention.outboxes", self.outboxes),
            ("retention.sheets", self.sheets),
            ("retention.bodies", self.bodies),
            ("retention.referrals", self.referrals),
            ("retention.rows", self.rows),
        ] {
            if self.audit < payload {
                errs.push(GatewayError::config(
                    "retention.audit",
                    format!("must be at least {key}: the audit trail outlives every payload"),
                ));
            }
        }
        errs
    }
}
