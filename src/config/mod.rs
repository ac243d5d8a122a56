//! Typed configuration: a TOML file, then `CLW_SECTION__KEY=value` overrides, validated at
//! start-up naming the offending key. Each component owns its section (type and checks
//! beside the code that reads it); this module composes them, plus instance, HTTP, logging.

mod agreements;
mod console;
mod digest;
mod env;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{GatewayError, Stage};

pub use crate::deliver::{DestinationConfig, Destinations};
pub use crate::engine::{EngineSettings, RetryConfig};
pub use crate::flows::FlowConfig;
pub use crate::flows::message_back::{MessageBackConfig, PatientItem, PlatformConfig};
pub use crate::intake::IntakeConfig;
pub use crate::mapping::MappingsConfig;
pub use crate::secret::Secret;
pub use crate::sources::broker::BrokerConfig;
pub use crate::sources::ingress::IngressConfig;
pub use crate::sources::spool::SpoolConfig;
pub use crate::store::{RetentionConfig, StoreConfig};
pub use agreements::{AgreementConfig, Finding, IgConfig, Level};
pub use console::{ConsoleConfig, OperatorConfig, Role};
pub use env::apply_env_overrides;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gateway: GatewaySection,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// Present: RabbitMQ is the source. Absent: the embedded spool folders are.
    pub broker: Option<BrokerConfig>,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub intake: IntakeConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub destinations: Destinations,
    #[serde(default)]
    pub referrals: FlowConfig,
    /// The message back (platform events → the practice record). Absent: on in the
    /// embedded default (no [destinations] given), else off.
    pub message_back: Option<MessageBackConfig>,
    /// The signed HTTP door for platform events (`POST /v1/events/{platform}`).
    #[serde(default)]
    pub ingress: IngressConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub mappings: MappingsConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The programme dataset: facts recorded, extracts, the report.
    #[serde(default)]
    pub dataset: crate::dataset::DatasetConfig,
    /// The data-sharing agreements destinations name (`agreement = "ID"`).
    #[serde(default)]
    pub agreements: std::collections::BTreeMap<String, AgreementConfig>,
    /// The information-governance pack and how strictly agreements are held to.
    #[serde(default)]
    pub ig: IgConfig,
    #[serde(default)] // Unanswered referrals: reminders and closes.
    pub lifecycle: crate::sources::lifecycle::LifecycleConfig,
    /// `sha256:` of the effective configuration, URL credentials removed (`digest.rs`).
    #[serde(skip)]
    pub digest: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Names this instance in logs, audit rows and the AMQP connection name.
    pub instance: String,
    /// Where the SQLite store, spool folders and file outbox live by default.
    pub data_dir: PathBuf,
    /// How long a claim on an effect holds before another copy of the message (on
    /// this or another instance) may take it over: longer than any send can take.
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            instance: "clw-gateway".into(),
            data_dir: PathBuf::from("data"),
            claim_ttl: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// /healthz, /readyz and /metrics. Set `enabled = false` to run without.
    pub enabled: bool,
    pub listen: SocketAddr,
    /// A connection that has not sent a request's headers within this is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Connections open at once; one more is closed at once.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            header_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `clw_gateway=debug,lapin=warn`.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            format: LogFormat::Json,
            level: "info,lapin=warn,sqlx=warn".into(),
        }
    }
}

/// Every problem found in a configuration, each naming its key.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<GatewayError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "configuration is not valid:")?;
        for e in &self.0 {
            writeln!(f, "  - {}", e.reason())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// The whole report as one error (what start-up fails with).
    pub fn into_error(self) -> GatewayError {
        match <[GatewayError; 1]>::try_from(self.0) {
            Ok([one]) => one,
            Err(all) => GatewayError::permanent(
                Stage::Config,
                ConfigErrors(all).to_string().trim_end().to_string(),
            ),
        }
    }
}

impl Config {
    /// Loads `path` (or the built-in defaults when None), applies environment overrides
    /// from `vars`, and validates.
    pub fn load(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let config = Self::parse(path, vars)?;
        config.validated()
    }

    /// Loads and applies overrides without the semantic checks: the wiring plan makes
    /// them, together with its own, so every problem is reported at once.
    pub fn parse(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| {
                ConfigErrors(vec![GatewayError::config(
                    p.display().to_string(),
                    format!("cannot read: {e}"),
                )])
            })?,
            None => String::new(),
        };
        Self::parse_toml(&text, vars)
    }

    pub fn from_toml(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        Self::parse_toml(text, vars)?.validated()
    }

    fn parse_toml(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigErrors(vec![GatewayError::config(
                "(file)",
                format!("not valid TOML: {}", e.message()),
            )])
        })?;
        apply_env_overrides(&mut table, vars).map_err(|e| ConfigErrors(vec![e]))?;
        let table_for_digest = table.clone();
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                ConfigErrors(vec![GatewayError::config(
                    key,
                    e.into_inner().message().to_string(),
                )])
            })?;
        config.digest = digest::of(&table_for_digest);
        if config.destinations.defaulted {
            config.destinations = Destinations::embedded(&config.gateway.data_dir);
        }
        Ok(config)
    }

    fn validated(self) -> Result<Config, ConfigErrors> {
        let problems = self.problems();
        problems
            .is_empty()
            .then_some(self)
            .ok_or(ConfigErrors(problems))
    }

    /// Every semantic problem in the configuration itself, each naming its key: each
    /// section's own checks.
    pub fn problems(&self) -> Vec<GatewayError> {
        let mut errs = self
            .referrals
            .problems(|name| self.destinations.contains(name));
        errs.extend(self.broker.iter().flat_map(BrokerConfig::problems));
        errs.extend(self.store.problems());
        errs.extend(self.retention.problems());
        errs.extend(self.dataset.problems());
        errs.extend(self.retry.problems());
        errs.extend(self.intake.problems());
        errs.extend(self.spool.problems());
        errs.extend(self.destinations.problems.iter().cloned());
        errs.extend(agreements::problems(&self.agreements));
        errs.extend(self.lifecycle.problems());
        errs
    }

    /// The one transport: RabbitMQ when `[broker]` is given, else the spool folders.
    pub fn transport(&self) -> crate::sources::Transport {
        use crate::sources::transport::{Broker, Spool, Transport};
        match &self.broker {
            Some(b) => Transport::Broker(Broker {
                config: b.clone(),
                tiers: self.retry.tiers.clone(),
                instance: self.gateway.instance.clone(),
                max_in_flight_bytes: self.intake.max_in_flight_bytes,
            }),
            None => Transport::Spool(Spool {
                dir: self.spool_dir(),
                config: self.spool.clone(),
                max_bytes: self.intake.max_message_bytes,
            }),
        }
    }

    /// The flows this configuration turns on: the referral flow always, the message
    /// back when its section is given (or the embedded default runs).
    pub fn flows_on(&self) -> Vec<crate::model::Flow> {
        crate::flows::FLOWS
            .iter()
            .map(|r| r.flow)
            .filter(|f| *f != crate::model::Flow::MessageBack || self.message_back().is_some())
            .collect()
    }

    /// What the engine is built with.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            retry: self.retry.clone(),
            instance: self.gateway.instance.clone(),
            claim_ttl: self.gateway.claim_ttl,
        }
    }

    /// The message back's settings when it is on: configured, or the embedded default.
    pub fn message_back(&self) -> Option<MessageBackConfig> {
        match (&self.message_back, self.destinations.defaulted) {
            (Some(m), _) => Some(m.clone()),
            (None, true) => Some(MessageBackConfig::embedded()),
            (None, false) => None,
        }
    }

    pub fn store_url(&self) -> String {
        self.store.url_in(&self.gateway.data_dir)
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.spool
            .dir
            .clone()
            .unwrap_or_else(|| self.gateway.data_dir.join("spool"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn defaults_are_the_embedded_mode() {
        let c = Config::from_toml("", none()).unwrap();
        assert!(c.broker.is_none());
        assert_eq!(c.referrals.destinations, vec!["outbox"]);
        assert!(c.store_url().starts_with("sqlite://data/"));
    }

    #[test]
    fn unknown_key_is_named() {
        let e =
            Config::from_toml("[broker]\nurl = \"amqp://x\"\nprefecth = 3\n", none()).unwrap_err();
        assert!(e.0[0].reason().contains("prefecth"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::from_toml(
            "[broker]\nurl = \"amqp://x\"\nprefetch = \"many\"\n",
            none(),
        )
        .unwrap_err();
        assert_eq!(e.0[0].field.as_deref(), Some("broker.prefetch"), "{e}");
    }

    #[test]
    fn semantic_errors_name_keys() {
        let e = Config::from_toml(
            "[referrals]\ndestinations = [\"nowhere\"]\n[destinations.hook]\nkind = \"webhook\"\nurl = \"ftp://x\"\n",
            none(),
        )
        .unwrap_err();
        let fields: Vec<_> = e.0.iter().filter_map(|e| e.field.clone()).collect();
        assert!(
            fields.contains(&"referrals.destinations[0]".to_string()),
            "{fields:?}"
        );
        // A destination's own keys are checked by the wiring plan (src/wiring.rs).
    }

    #[test]
    fn env_overrides_win() {
        let c = Config::from_toml(
            "[broker]\nurl = \"amqp://file\"\n",
            vec![
                ("CLW_BROKER__URL".into(), "amqp://env".into()),
                ("CLW_BROKER__PREFETCH".into(), "7".into()),
                ("CLW_RETRY__TIERS".into(), "[\"1s\", \"2s\"]".into()),
            ],
        )
        .unwrap();
        let b = c.broker.unwrap();
        assert_eq!(b.url, "amqp://env");
        assert_eq!(b.prefetch, 7);
        assert_eq!(
            c.retry.tiers,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
    }
}
