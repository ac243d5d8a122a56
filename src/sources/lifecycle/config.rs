//! `[lifecycle]`: what the gateway does about referrals a programme does not answer
//! (docs/lifecycle.md). Per programme: remind once `respond_within` after delivery
//! (again every `remind_every`, when set), and close as "the service did not respond"
//! at `close_after`, when set.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{GatewayError, Stage};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// How often the unanswered referrals are looked for.
    #[serde(with = "humantime_serde")]
    pub check_every: Duration,
    /// By programme name (a routes file's, or `default` without one).
    pub programmes: BTreeMap<String, UnansweredPolicy>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            check_every: Duration::from_secs(3600),
            programmes: BTreeMap::new(),
        }
    }
}

/// `[lifecycle.programmes.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnansweredPolicy {
    /// No event back this long after delivery: the programme is reminded.
    #[serde(with = "humantime_serde")]
    pub respond_within: Duration,
    /// Remind again this often until answered or closed (default: once).
    #[serde(default, with = "humantime_serde")]
    pub remind_every: Option<Duration>,
    /// Still no answer this long after delivery: closed as "the service did not
    /// respond", the programme told and the practice record written.
    #[serde(default, with = "humantime_serde")]
    pub close_after: Option<Duration>,
}

impl LifecycleConfig {
    /// Each problem naming its key.
    pub fn problems(&self) -> Vec<GatewayError> {
        let bad = |key: String, why: &str| GatewayError::invalid(Stage::Config, key, why);
        let mut out = Vec::new();
        if self.check_every.is_zero() {
            out.push(bad("lifecycle.check_every".into(), "must be above zero"));
        }
        for (name, p) in &self.programmes {
            let key = |k: &str| format!("lifecycle.programmes.{name}.{k}");
            if p.respond_within.is_zero() {
                out.push(bad(key("respond_within"), "must be above zero"));
            }
            if p.remind_every.is_some_and(|d| d.is_zero()) {
                out.push(bad(key("remind_every"), "must be above zero"));
            }
            if p.close_after.is_some_and(|c| c <= p.respond_within) {
                out.push(bad(
                    key("close_after"),
                    "must be longer than respond_within (the programme is reminded before it is closed)",
                ));
            }
        }
        out
    }
}
