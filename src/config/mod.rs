//! Typed configuration: a TOML file, then `CLW_SECTION__KEY=value` environment overrides,
//! validated at start-up with errors that name the offending key.

mod console;
mod env;
mod message_back;

use crate::model::ConsentState;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{GatewayError, Stage};

pub use crate::deliver::DestinationConfig;
pub use crate::secret::Secret;
pub use console::{ConsoleConfig, OperatorConfig, Role};
pub use env::apply_env_overrides;
pub use message_back::{IngressConfig, MessageBackConfig, PatientItem, PlatformConfig};

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
}

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
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingsConfig {
    /// Mapping files and `codes/` code maps; loaded and validated at start-up when present.
    pub dir: PathBuf,
}

impl Default for MappingsConfig {
    fn default() -> Self {
        MappingsConfig {
            dir: PathBuf::from("mappings"),
        }
    }
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
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`. Default: SQLite in data_dir.
    pub url: Option<String>,
    pub max_connections: u32,
    /// Most writes grouped into one transaction by the store writer.
    pub batch_max: usize,
    /// Longest wait for a connection from the pool.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Longest a statement (or one batch of writes) may run before the store is
    /// reported unavailable.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl StoreConfig {
    pub fn timeouts(&self) -> crate::store::Timeouts {
        crate::store::Timeouts {
            acquire: self.acquire_timeout,
            statement: self.statement_timeout,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            max_connections: 8,
            batch_max: 256,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// `amqp://user:pass@host:5672/%2f` or `amqps://...` (TLS via rustls).
    pub url: String,
    /// Prefix of every exchange and queue name (`clw.referral`, `clw.referral.parked`, ...).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Unacknowledged messages held at once per consumer; also the processing concurrency.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Redeliveries after which RabbitMQ itself dead-letters a message (x-delivery-limit).
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// Longest wait for the broker to confirm a publish (a retry, a parking); past it
    /// the message goes back to the queue and /readyz reports not ready.
    #[serde(default = "default_confirm_timeout", with = "humantime_serde")]
    pub confirm_timeout: Duration,
}

fn default_confirm_timeout() -> Duration {
    crate::sources::broker::CONFIRM_TIMEOUT
}

fn default_prefix() -> String {
    "clw".into()
}
fn default_prefetch() -> u16 {
    64
}
fn default_delivery_limit() -> u32 {
    20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Holds inbox/, processing/, done/ and failed/ for each flow. Default: data_dir/spool.
    pub dir: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Files processed at once.
    pub concurrency: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            poll_interval: Duration::from_millis(500),
            concurrency: 4,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Bodies larger than this are refused before they are parsed.
    pub max_message_bytes: usize,
    /// Bytes of message bodies held in flight at once, per consumer; past it, consuming
    /// waits (prefetch × the largest body is more than a small pod has).
    pub max_in_flight_bytes: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            max_message_bytes: 1024 * 1024,
            max_in_flight_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Delay of each retry tier; after the last, a message is parked.
    #[serde(with = "humantime_serde_vec")]
    pub tiers: Vec<Duration>,
    /// How often a paused destination (it answered 401, 403 or 404) is probed with
    /// one message.
    #[serde(with = "humantime_serde")]
    pub probe_every: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            tiers: [5, 30, 300, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            probe_every: Duration::from_secs(60),
        }
    }
}

mod humantime_serde_vec {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Destinations every referral is delivered to (when no `routes` file is given).
    #[serde(default = "default_flow_destinations")]
    pub destinations: Vec<String>,
    /// A routes file (practice → programme → destinations); replaces `destinations`.
    #[serde(default)]
    pub routes: Option<PathBuf>,
    /// What a referral without a Consent resource may share.
    #[serde(default = "default_consent_not_recorded")]
    pub consent_not_recorded: ConsentState,
    /// The scope, category or purpose codes that make a Consent consent to share with
    /// a social prescribing service; any other active Consent is read as not recorded.
    /// Empty by default: no national code says so, each deployment decides.
    #[serde(default)]
    pub consent_covers: Vec<crate::policy::CodeRef>,
}

fn default_flow_destinations() -> Vec<String> {
    vec!["outbox".into()]
}
/// Without a recorded decision, share codes but no narrative.
fn default_consent_not_recorded() -> ConsentState {
    ConsentState::CodesOnly
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            destinations: default_flow_destinations(),
            routes: None,
            consent_not_recorded: default_consent_not_recorded(),
            consent_covers: Vec::new(),
        }
    }
}

/// Every `[destinations.NAME]`, each parsed on its own so one bad entry does not hide
/// the problems of the others.
#[derive(Debug, Clone)]
pub struct Destinations {
    pub parsed: BTreeMap<String, DestinationConfig>,
    /// Entries that did not parse, each naming its key.
    pub problems: Vec<GatewayError>,
    /// Every configured name, parsed or not.
    pub names: Vec<String>,
    /// No [destinations] was given: the embedded default's.
    pub defaulted: bool,
}

impl Destinations {
    pub fn get(&self, name: &str) -> Option<&DestinationConfig> {
        self.parsed.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &DestinationConfig)> {
        self.parsed.iter()
    }

    pub fn insert(&mut self, name: &str, d: DestinationConfig) {
        if !self.contains(name) {
            self.names.push(name.to_string());
        }
        self.parsed.insert(name.to_string(), d);
    }

    fn from_tables(tables: BTreeMap<String, toml::Value>) -> Destinations {
        let mut out = Destinations {
            parsed: BTreeMap::new(),
            problems: Vec::new(),
            names: tables.keys().cloned().collect(),
            defaulted: false,
        };
        for (name, value) in tables {
            match serde_path_to_error::deserialize::<_, DestinationConfig>(value) {
                Ok(d) => {
                    out.parsed.insert(name, d);
                }
                Err(e) => {
                    let path = e.path().to_string();
                    let key = if path == "." || path.is_empty() {
                        format!("destinations.{name}")
                    } else {
                        format!("destinations.{name}.{path}")
                    };
                    let message = e.into_inner().message().to_string();
                    out.problems.push(config_error(key, message));
                }
            }
        }
        out
    }
}

impl<'de> Deserialize<'de> for Destinations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Destinations::from_tables(BTreeMap::deserialize(d)?))
    }
}

impl Default for Destinations {
    fn default() -> Self {
        Destinations::embedded(Path::new("data"))
    }
}

impl Destinations {
    /// The embedded default, under `data_dir`: the PRSB referral JSON as a file per
    /// referral, and each message-back event as a document in the practice folder.
    pub fn embedded(data_dir: &Path) -> Destinations {
        let dir = |rel: &str| toml::Value::String(data_dir.join(rel).display().to_string());
        let mut outbox = toml::toml! {
            kind = "file"
            allow = ["person_demographics", "contact_preferences", "referral_details",
                     "referrer_details", "gp_practice", "referred_to", "consent"]
        };
        outbox.insert("dir".into(), dir("outbox/referrals"));
        let mut practice = toml::toml! {
            kind = "practice-folder"
            allow = ["event", "headline", "coded", "summary", "referral", "patient", "practice"]
        };
        practice.insert("dir".into(), dir("practice"));
        let mut d = Destinations::from_tables(BTreeMap::from([
            ("outbox".to_string(), toml::Value::Table(outbox)),
            ("practice-folder".to_string(), toml::Value::Table(practice)),
        ]));
        d.defaulted = true;
        d
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

pub(crate) fn config_error(key: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid(Stage::Config, key, message)
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
                ConfigErrors(vec![config_error(
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
            ConfigErrors(vec![config_error(
                "(file)",
                format!("not valid TOML: {}", e.message()),
            )])
        })?;
        apply_env_overrides(&mut table, vars).map_err(|e| ConfigErrors(vec![e]))?;
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                ConfigErrors(vec![config_error(
                    key,
                    e.into_inner().message().to_string(),
                )])
            })?;
        if config.destinations.defaulted {
            config.destinations = Destinations::embedded(&config.gateway.data_dir);
        }
        Ok(config)
    }

    fn validated(self) -> Result<Config, ConfigErrors> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Every semantic problem in the configuration itself, each naming its key.
    pub fn problems(&self) -> Vec<GatewayError> {
        let mut errs = Vec::new();
        if self.referrals.consent_not_recorded == ConsentState::NotRecorded {
            errs.push(config_error(
                "referrals.consent_not_recorded",
                "must be full, codes-only or declined",
            ));
        }
        if let Some(b) = &self.broker {
            if !(b.url.starts_with("amqp://") || b.url.starts_with("amqps://")) {
                errs.push(config_error(
                    "broker.url",
                    "must start with amqp:// or amqps://",
                ));
            }
            if b.prefetch == 0 {
                errs.push(config_error("broker.prefetch", "must be at least 1"));
            }
            if b.prefix.is_empty() || b.prefix.contains(char::is_whitespace) {
                errs.push(config_error(
                    "broker.prefix",
                    "must be a non-empty name without spaces",
                ));
            }
        }
        if let Some(url) = &self.store.url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            errs.push(config_error(
                "store.url",
                "must be a sqlite: or postgres:// URL",
            ));
        }
        if self.store.batch_max == 0 {
            errs.push(config_error("store.batch_max", "must be at least 1"));
        }
        let r = &self.retention;
        if r.every < Duration::from_secs(1) {
            errs.push(config_error("retention.every", "must be at least 1s"));
        }
        for (key, payload) in [
            ("retention.spool_done", r.spool_done),
            ("retention.outboxes", r.outboxes),
            ("retention.sheets", r.sheets),
            ("retention.bodies", r.bodies),
            ("retention.referrals", r.referrals),
            ("retention.rows", r.rows),
        ] {
            if r.audit < payload {
                errs.push(config_error(
                    "retention.audit",
                    format!("must be at least {key}: the audit trail outlives every payload"),
                ));
            }
        }
        for (key, d) in [
            ("store.acquire_timeout", self.store.acquire_timeout),
            ("store.statement_timeout", self.store.statement_timeout),
        ] {
            if d < Duration::from_millis(100) {
                errs.push(config_error(key, "must be at least 100ms"));
            }
        }
        if self.retry.tiers.iter().any(Duration::is_zero) {
            errs.push(config_error(
                "retry.tiers",
                "every tier needs a delay above zero",
            ));
        }
        if self.intake.max_in_flight_bytes < self.intake.max_message_bytes {
            errs.push(config_error(
                "intake.max_in_flight_bytes",
                "must be at least intake.max_message_bytes",
            ));
        }
        if self.intake.max_in_flight_bytes > u32::MAX as usize {
            errs.push(config_error(
                "intake.max_in_flight_bytes",
                "must be at most 4 GiB",
            ));
        }
        if self.intake.max_message_bytes == 0 {
            errs.push(config_error(
                "intake.max_message_bytes",
                "must be above zero",
            ));
        }
        if self.spool.concurrency == 0 {
            errs.push(config_error("spool.concurrency", "must be at least 1"));
        }
        // With a routes file the routes name the destinations (checked when it loads).
        let fixed: &[String] = match self.referrals.routes {
            Some(_) => &[],
            None => &self.referrals.destinations,
        };
        if self.referrals.routes.is_none() && fixed.is_empty() {
            errs.push(config_error(
                "referrals.destinations",
                "name at least one destination",
            ));
        }
        for (i, name) in fixed.iter().enumerate() {
            if !self.destinations.contains(name) {
                errs.push(config_error(
                    format!("referrals.destinations[{i}]"),
                    format!("no destination named {name:?} in [destinations]"),
                ));
            }
        }
        errs.extend(self.destinations.problems.iter().cloned());
        errs
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
        self.store.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.gateway.data_dir.join("clw-gateway.db").display()
            )
        })
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
        // A destination's own keys are checked by the wiring plan (crate::wiring).
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
