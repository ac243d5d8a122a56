//! `[console]`: who may use the operator console, and how.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;

/// The operator console (`/console` on the `[http]` listener): off unless enabled, and
/// then only to the operators named here, each signing in as themselves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// How long a sign-in lasts; signing out ends it on every instance at once.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Opt-in: a reverse proxy in front of the console authenticates operators and names
    /// them in this header (e.g. `X-Forwarded-User`); only when the console is reachable
    /// through that proxy alone, or anyone can claim any name.
    pub trusted_user_header: Option<String>,
    /// Failed sign-ins (per operator name, and per client address) allowed within
    /// `lockout` before further attempts are refused until it has passed.
    pub max_failed_logins: u32,
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
    /// The operators, by the name the audit log records them under.
    pub operators: BTreeMap<String, OperatorConfig>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: false,
            session_ttl: Duration::from_secs(8 * 3600),
            trusted_user_header: None,
            max_failed_logins: 5,
            lockout: Duration::from_secs(15 * 60),
            operators: BTreeMap::new(),
        }
    }
}

/// One operator of the console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// What they sign in with (at least 16 characters); not needed when a trusted
    /// proxy header names them.
    pub secret: Option<Secret>,
    /// `viewer` (sees) or `operator` (also replays and dismisses).
    #[serde(default)]
    pub role: Role,
    /// The programmes whose messages they see and act on; empty: every programme.
    #[serde(default)]
    pub programmes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Viewer,
    Operator,
}
