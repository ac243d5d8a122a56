//! Typed configuration: a TOML file, then `CLW_SECTION__KEY=value` environment overrides,
//! validated at start-up with errors that name the offending key.

mod env;

use crate::model::ConsentState;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{GatewayError, Stage};

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
    #[serde(default = "default_destinations")]
    pub destinations: BTreeMap<String, DestinationConfig>,
    #[serde(default)]
    pub referrals: FlowConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub mappings: MappingsConfig,
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
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            instance: "clw-gateway".into(),
            data_dir: PathBuf::from("data"),
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            max_connections: 8,
            batch_max: 256,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// /healthz, /readyz and /metrics. Set `enabled = false` to run without.
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
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
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            max_message_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Delay of each retry tier; after the last, a message is parked.
    #[serde(with = "humantime_serde_vec")]
    pub tiers: Vec<Duration>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            tiers: [5, 30, 300, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
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
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DestinationConfig {
    /// The PRSB-shaped referral JSON, POSTed to a CLW platform's webhook.
    Webhook(WebhookConfig),
    /// The same JSON written as one file per referral (the embedded default's outbox).
    File(FileConfig),
    /// One spreadsheet row per referral (a `csv` mapping says which columns).
    Csv(CsvConfig),
    /// Charitylog / Dizions External Referral Manager (PUT, form fields).
    Charitylog(CharitylogConfig),
    /// Lamplight: find or create the person, then `referral/add` (POST, form fields).
    Lamplight(LamplightConfig),
    /// A FHIR R4 server: ServiceRequest + Task in one transaction, conditional creates.
    Fhir(FhirConfig),
}

/// What every destination kind may say about the data it receives.
#[derive(Debug, Clone, Copy)]
pub struct DataTerms<'a> {
    /// The data-sharing agreement this destination receives data under (audited).
    pub agreement: Option<&'a str>,
    /// A mapping in mappings/ that produces the payload (default: the PRSB payload).
    pub mapping: Option<&'a str>,
    /// Canonical fields the destination may receive; a mapping reading anything else is
    /// refused at start-up.
    pub allow: &'a [String],
    /// Values for the mapping's `%name` constants.
    pub constants: &'a BTreeMap<String, String>,
}

impl DestinationConfig {
    pub fn terms(&self) -> DataTerms<'_> {
        let (agreement, mapping, allow, constants) = match self {
            DestinationConfig::Webhook(w) => {
                (&w.agreement, w.mapping.as_deref(), &w.allow, &w.constants)
            }
            DestinationConfig::File(f) => {
                (&f.agreement, f.mapping.as_deref(), &f.allow, &f.constants)
            }
            DestinationConfig::Csv(c) => (
                &c.agreement,
                Some(c.mapping.as_str()),
                &c.allow,
                &c.constants,
            ),
            DestinationConfig::Charitylog(c) => (
                &c.agreement,
                Some(c.mapping.as_str()),
                &c.allow,
                &c.constants,
            ),
            DestinationConfig::Lamplight(c) => (
                &c.agreement,
                Some(c.mapping.as_str()),
                &c.allow,
                &c.constants,
            ),
            DestinationConfig::Fhir(c) => (
                &c.agreement,
                Some(c.mapping.as_str()),
                &c.allow,
                &c.constants,
            ),
        };
        DataTerms {
            agreement: agreement.as_deref(),
            mapping,
            allow,
            constants,
        }
    }

    pub fn agreement(&self) -> Option<&str> {
        self.terms().agreement
    }

    /// The schema for the PRSB payload, used when no mapping is named (a mapping
    /// carries its own output schema).
    pub fn schema(&self) -> &Path {
        match self {
            DestinationConfig::Webhook(w) => &w.schema,
            DestinationConfig::File(f) => &f.schema,
            DestinationConfig::Csv(_)
            | DestinationConfig::Charitylog(_)
            | DestinationConfig::Lamplight(_)
            | DestinationConfig::Fhir(_) => Path::new(""),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilePer {
    /// `<prefix>-YYYY-MM-DD.csv` (UTC day).
    Day,
    /// A new `<prefix>-<timestamp>.csv` every `batch_rows` rows.
    Batch,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    pub dir: PathBuf,
    /// A mapping with `output.format: csv`.
    pub mapping: String,
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    #[serde(default = "default_file_per")]
    pub file_per: FilePer,
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    pub agreement: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharitylogConfig {
    #[serde(default = "default_charitylog_url")]
    pub url: String,
    /// The three API keys Charitylog authenticates with (headers Source, Org, User):
    /// environment variable names, or files.
    pub source_key_env: Option<String>,
    pub source_key_file: Option<PathBuf>,
    pub org_key_env: Option<String>,
    pub org_key_file: Option<PathBuf>,
    pub user_key_env: Option<String>,
    pub user_key_file: Option<PathBuf>,
    /// A mapping with `output.format: form`.
    pub mapping: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub agreement: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
}

fn default_charitylog_url() -> String {
    "https://api.dizions.co.uk/v2/external_referral".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LamplightConfig {
    /// Up to and including `/api`.
    #[serde(default = "default_lamplight_url")]
    pub base_url: String,
    /// The Lamplight ID and project from the publishing settings' access parameters.
    pub lampid: String,
    pub project: String,
    /// The API key: an environment variable name, or a file.
    pub key_env: Option<String>,
    pub key_file: Option<PathBuf>,
    /// Role of the profile created for the person referred (user, contact, ...).
    #[serde(default = "default_lamplight_role")]
    pub role: String,
    /// A form mapping for `people/add` (the person's profile).
    pub person_mapping: String,
    /// Find before create: a publishable Lamplight profile field that identifies a
    /// person (as Lamplight names it in search paths, e.g. `NHS_number`)...
    pub match_field: Option<String>,
    /// ...and the person mapping's field holding the value to look for.
    pub match_from: Option<String>,
    /// A form mapping for `referral/add`.
    pub mapping: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub agreement: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirConfig {
    /// The FHIR base, e.g. `https://clw.example.org/fhir`.
    pub base_url: String,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// A json mapping producing the ServiceRequest.
    pub mapping: String,
    /// System of the identifier the gateway gives the ServiceRequest and Task (their
    /// value is the message id), used for conditional create.
    #[serde(default = "default_identifier_system")]
    pub identifier_system: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub agreement: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
}

fn default_identifier_system() -> String {
    "https://clw-gateway.org/Id/referral".into()
}

fn default_lamplight_url() -> String {
    "https://lamplight.online/api".into()
}
fn default_lamplight_role() -> String {
    "user".into()
}

fn default_file_prefix() -> String {
    "referrals".into()
}
fn default_file_per() -> FilePer {
    FilePer::Day
}
fn default_batch_rows() -> usize {
    500
}

fn default_schema() -> PathBuf {
    PathBuf::from("schemas/prsb-referral.v1.schema.json")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Name of an environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// A file holding the bearer token (e.g. a mounted secret).
    pub token_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// JSON Schema the payload must meet before it is sent.
    #[serde(default = "default_schema")]
    pub schema: PathBuf,
    /// The data-sharing agreement this destination receives data under (audited).
    pub agreement: Option<String>,
    /// A mapping that produces the payload instead of the PRSB referral.
    pub mapping: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub dir: PathBuf,
    #[serde(default = "default_schema")]
    pub schema: PathBuf,
    pub agreement: Option<String>,
    pub mapping: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
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
        }
    }
}

fn default_destinations() -> BTreeMap<String, DestinationConfig> {
    BTreeMap::from([(
        "outbox".to_string(),
        DestinationConfig::File(FileConfig {
            dir: PathBuf::from("data/outbox/referrals"),
            schema: default_schema(),
            agreement: None,
            mapping: None,
            allow: Vec::new(),
            constants: BTreeMap::new(),
        }),
    )])
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

fn config_error(key: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid(Stage::Config, key, message)
}

impl Config {
    /// Loads `path` (or the built-in defaults when None), applies environment overrides
    /// from `vars`, and validates.
    pub fn load(
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
        Self::from_toml(&text, vars)
    }

    pub fn from_toml(
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
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                ConfigErrors(vec![config_error(
                    key,
                    e.into_inner().message().to_string(),
                )])
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigErrors> {
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
        if self.retry.tiers.iter().any(Duration::is_zero) {
            errs.push(config_error(
                "retry.tiers",
                "every tier needs a delay above zero",
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
            if !self.destinations.contains_key(name) {
                errs.push(config_error(
                    format!("referrals.destinations[{i}]"),
                    format!("no destination named {name:?} in [destinations]"),
                ));
            }
        }
        for (name, d) in &self.destinations {
            if let DestinationConfig::Webhook(w) = d {
                let key = format!("destinations.{name}");
                match reqwest::Url::parse(&w.url) {
                    Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
                    _ => errs.push(config_error(
                        format!("{key}.url"),
                        "must be an http:// or https:// URL",
                    )),
                }
                if w.token_env.is_some() && w.token_file.is_some() {
                    errs.push(config_error(
                        format!("{key}.token_env"),
                        "set token_env or token_file, not both",
                    ));
                }
                if w.timeout.is_zero() {
                    errs.push(config_error(format!("{key}.timeout"), "must be above zero"));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
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
        assert!(
            fields.contains(&"destinations.hook.url".to_string()),
            "{fields:?}"
        );
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
