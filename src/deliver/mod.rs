//! Destinations: where a flow's effects land. A destination *kind* (webhook, csv,
//! lamplight, ...) is one module holding its config struct (shared keys added by
//! [`terms::destination_config!`]), its validation, its secrets, its mapping slots and
//! its [`Sink`]. The kinds are listed once, in [`kinds!`] below: adding a kind is its
//! module and one line there.

pub mod breaker;
pub mod channel;
mod destinations;
mod later;
pub use file::write_private;
pub mod http;
mod journal;
mod payload;
pub mod reports;
pub mod terms;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::error::{GatewayError, Result, Stage};
use crate::mapping::schema::SchemaSet;
use crate::mapping::spec::{InputKind, OutputFormat};
use crate::mapping::{Mapping, MappingSet, Output};
use crate::model::Flow;
pub use destinations::Destinations;
pub use journal::{Appends, Journal, Step};
pub use later::{EVERY_LATER, cannot_take};
pub use reports::{Ack, AckLevel, AckOutcome, Report, ReportKind, Reports};
use terms::HasTerms;

pub use self::csv::{REFERENCE_COLUMN, encode_row};
pub use fhir::transaction as fhir_transaction;
pub use file::safe_file_stem;
pub use payload::idempotency_key;
pub use webhook::{classify_status, parse_retry_after};

/// Lists every destination kind: `"kind" => Variant(module)`. The module provides
/// `Config` (via `destination_config!`), `FLOW` and `build`.
macro_rules! kinds {
    ($($tag:literal => $variant:ident($module:ident)),* $(,)?) => {
        // Each kind's module: its line in the table is the only place it is named.
        $(mod $module;)*

        /// `[destinations.NAME]`: one of the kinds, chosen by `kind = "..."`.
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(tag = "kind", deny_unknown_fields)]
        pub enum DestinationConfig {
            $(#[serde(rename = $tag)] $variant($module::Config),)*
        }

        /// Every kind's name, for messages and docs.
        pub const KINDS: &[&str] = &[$($tag),*];

        impl DestinationConfig {
            pub fn kind(&self) -> &'static str {
                match self { $(DestinationConfig::$variant(_) => $tag,)* }
            }

            /// The flow this kind serves.
            pub fn flow(&self) -> Flow {
                match self { $(DestinationConfig::$variant(_) => $module::FLOW,)* }
            }

            pub fn terms(&self) -> terms::DataTerms<'_> {
                match self { $(DestinationConfig::$variant(c) => c.terms(),)* }
            }

            /// The folder this destination keeps patient data in, as its kind declares
            /// it: what retention sweeps, so a new kind cannot be forgotten there.
            pub fn kept(&self) -> Option<Kept<'_>> {
                match self { $(DestinationConfig::$variant(c) => $module::kept(c),)* }
            }

            /// The later messages about a referral its kind passes on to its platform
            /// (updates, cancellations, ...): a kind's `LATER`.
            pub fn later(&self) -> &'static [crate::model::lifecycle::Change] {
                match self { $(DestinationConfig::$variant(_) => $module::LATER,)* }
            }

            /// How its data travels, as its kind describes it (never a credential's
            /// value): for the information-governance pack.
            pub fn channel(&self) -> channel::Channel {
                match self { $(DestinationConfig::$variant(c) => $module::channel(c),)* }
            }

            fn build_sink(&self, b: &mut Build<'_>) -> Option<Box<dyn Sink>> {
                match self { $(DestinationConfig::$variant(c) => $module::build(b, c),)* }
            }
        }
    };
}

kinds! {
    "webhook" => Webhook(webhook),
    "file" => File(file),
    "csv" => Csv(csv),
    "charitylog" => Charitylog(charitylog),
    "lamplight" => Lamplight(lamplight),
    "fhir" => Fhir(fhir),
    "practice-folder" => PracticeFolder(practice_folder),
    "fhir-record" => FhirRecord(fhir_record),
    "mesh" => Mesh(mesh),
    "docman" => Docman(docman),
    "mail" => Mail(mail),
}

/// Files a kind writes into a folder of its own, holding patient data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept<'a> {
    pub dir: &'a std::path::Path,
    pub files: KeptFiles,
}

/// Which retention period applies to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptFiles {
    /// `retention.outboxes`: one file per message.
    Outbox,
    /// `retention.sheets`: spreadsheet files the store tracks as they grow.
    Sheets,
}

/// Makes one delivery attempt happen. Implemented by each kind.
pub trait Sink: Send + Sync {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>>;

    /// Whether sending the same job again is harmless (an idempotency key, a
    /// conditional create, a file named by message id). When not, a request that may
    /// have reached the destination leaves an unknown outcome for a person to check.
    fn resends_safely(&self) -> bool {
        true
    }

    /// A way to ask the destination what became of what it was sent, when it has one.
    fn poller(&self) -> Option<Arc<dyn Poller>> {
        None
    }

    /// Where the destination reports what it could not deliver, when it does.
    fn reports(&self) -> Option<Arc<dyn Reports>> {
        None
    }

    /// The journal step whose value is the platform's own reference for what it was
    /// sent (a record id it returned), when the kind records one: the only references
    /// an event from this destination's platform may link by.
    fn reference_step(&self) -> Option<&'static str> {
        None
    }
}

/// Asks a platform what changed since a cursor; the changes as canonical events.
pub trait Poller: Send + Sync {
    fn every(&self) -> std::time::Duration;

    /// Events since `cursor`, and the cursor to ask from next time.
    #[allow(clippy::type_complexity)]
    fn poll<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(Vec<crate::model::message_back::MessageBack>, Option<String>)>>;
}

/// What one delivery attempt carries.
pub struct Job<'a> {
    pub flow: Flow,
    pub message_id: &'a str,
    /// The same for every attempt of this (flow, message, destination).
    pub idempotency_key: &'a str,
    pub rendered: &'a Rendered,
    /// The store's journal of this effect's steps (keyless, multi-step effects).
    pub journal: Journal<'a>,
    /// What the message does to a referral the destination already has; None for a new
    /// referral (or an event). A kind that cannot take it refuses with [`cannot_take`].
    pub operation: Option<&'a crate::model::lifecycle::Operation>,
}

impl Job<'_> {
    /// The referral's id at the destination: the first message's for a later version,
    /// this message's for a new referral.
    pub fn referral_id(&self) -> &str {
        self.operation
            .map(|o| o.referral_id.as_str())
            .unwrap_or(self.message_id)
    }

    /// The main payload (the `mapping` slot).
    pub fn payload(&self) -> &Value {
        &self.rendered.main().document
    }

    /// The main payload's fields in mapping order (CSV columns, form fields).
    pub fn fields(&self) -> &[(String, Value)] {
        &self.rendered.main().fields
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// HTTP status for HTTP destinations.
    pub status: Option<u16>,
}

/// A mapping a kind renders with, under the name its sink asks for it by.
pub struct Slot {
    pub name: &'static str,
    pub mapping: Arc<Mapping>,
}

/// Every slot's output for one message, the main (`mapping`) slot first.
pub struct Rendered {
    outputs: Vec<(&'static str, Output)>,
}

impl Rendered {
    /// A payload made elsewhere (a resend in a test, a replay), as the main slot.
    pub fn single(output: Output) -> Rendered {
        Rendered {
            outputs: vec![("mapping", output)],
        }
    }

    pub fn main(&self) -> &Output {
        &self.outputs[0].1
    }

    pub fn slot(&self, name: &str) -> Option<&Output> {
        self.outputs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| o)
    }

    /// The dotted names of the leaf fields that carry a value, for the audit log
    /// (names, never values); fields of other slots are prefixed with the slot's name.
    pub fn field_names(&self) -> Vec<String> {
        fn walk(v: &Value, name: &str, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, child) in m {
                        walk(child, &format!("{name}.{k}"), out);
                    }
                }
                Value::Array(a) => a.iter().for_each(|child| walk(child, name, out)),
                v if is_empty(v) => {}
                _ => out.push(name.to_string()),
            }
        }
        let mut out = Vec::new();
        for (i, (slot, output)) in self.outputs.iter().enumerate() {
            for (name, value) in &output.fields {
                let name = if i == 0 {
                    name.clone()
                } else {
                    format!("{slot}:{name}")
                };
                walk(value, &name, &mut out);
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A configured destination: its sink, the mappings that make its payload, the
/// constants they read and the agreement it receives data under.
pub struct Destination {
    pub name: String,
    pub kind: &'static str,
    pub flow: Flow,
    pub agreement: Option<String>,
    pub breaker: breaker::Breaker,
    constants: std::collections::BTreeMap<String, String>,
    /// The canonical fields its agreement lists (sensitive sections leave only if named).
    allow: Vec<String>,
    /// The later messages about a referral its kind passes on (`DestinationConfig::later`).
    later: &'static [crate::model::lifecycle::Change],
    slots: Vec<Slot>,
    sink: Box<dyn Sink>,
}

impl Destination {
    /// Builds a destination, reporting every problem with its config key.
    pub fn build(
        name: &str,
        config: &DestinationConfig,
        mappings: &MappingSet,
        schemas: &mut SchemaSet,
    ) -> std::result::Result<Arc<Destination>, Vec<GatewayError>> {
        let terms = config.terms();
        let mut b = Build {
            name,
            flow: config.flow(),
            allow: terms.allow,
            mappings,
            schemas,
            problems: Vec::new(),
            slots: Vec::new(),
        };
        if terms.allow.is_empty() {
            b.problem(
                "allow",
                "name the canonical fields this destination may receive (its data-sharing agreement's field list)",
            );
        }
        let sink = config.build_sink(&mut b);
        match sink {
            Some(sink) if b.problems.is_empty() => {
                if b.slots.is_empty() {
                    return Err(vec![b.error("mapping", "this kind named no mapping")]);
                }
                Ok(Arc::new(Destination {
                    name: name.to_string(),
                    kind: config.kind(),
                    flow: config.flow(),
                    agreement: terms.agreement.map(str::to_string),
                    breaker: breaker::Breaker::default(),
                    constants: terms.constants.clone(),
                    allow: terms.allow.to_vec(),
                    later: config.later(),
                    slots: b.slots,
                    sink,
                }))
            }
            Some(_) => Err(b.problems),
            None if b.problems.is_empty() => {
                Err(vec![b.error(
                    "kind",
                    "could not be built (no problem was named: a bug)",
                )])
            }
            None => Err(b.problems),
        }
    }

    /// Renders every slot from the flow's canonical JSON. `message_id` is the gateway's
    /// own `%message_id` constant.
    /// Sensitive sections its agreement does not name ([`crate::model::SENSITIVE_SECTIONS`])
    /// are left out first: its mappings never see them.
    pub fn render(&self, canonical: &Value, message_id: &str) -> Result<Rendered> {
        let mut constants = self.constants.clone();
        constants.insert("message_id".into(), message_id.to_string());
        let released = crate::policy::prsb::without_sensitive(canonical, &self.allow);
        let mut outputs = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let out = slot.mapping.apply(&released, &constants).map_err(combine)?;
            outputs.push((slot.name, out));
        }
        Ok(Rendered { outputs })
    }

    /// The sensitive sections its agreement names (it is sent these when present).
    pub fn sensitive_agreed(&self) -> Vec<&'static str> {
        crate::model::SENSITIVE_SECTIONS
            .into_iter()
            .filter(|s| self.allow.iter().any(|a| a == s))
            .collect()
    }

    /// The sensitive sections in `canonical` it will not be sent (for the audit).
    pub fn withholds(&self, canonical: &Value) -> Vec<&'static str> {
        crate::policy::prsb::sensitive_withheld(canonical, &self.allow)
    }

    /// `name@version` of the main mapping, for parking headers.
    pub fn mapping_version(&self) -> String {
        self.slots
            .first()
            .map(|s| s.mapping.id())
            .unwrap_or_default()
    }

    pub async fn send(&self, job: &Job<'_>) -> Result<Sent> {
        self.sink.send(job).await
    }

    pub fn resends_safely(&self) -> bool {
        self.sink.resends_safely()
    }

    /// Whether it passes `change` on to its platform: a new referral always, a later
    /// message as its kind declares; the others are held for a person ([`cannot_take`]),
    /// or for a reminder counted and shown in the console.
    pub fn takes(&self, change: crate::model::lifecycle::Change) -> bool {
        change == crate::model::lifecycle::Change::New || self.later.contains(&change)
    }

    /// What an attempt sends: the mappings' output for a new referral or an update, the
    /// notice itself for a change that carries no referral (its canonical is the notice).
    pub fn render_for(
        &self,
        canonical: &Value,
        message_id: &str,
        operation: Option<&crate::model::lifecycle::Operation>,
    ) -> Result<Rendered> {
        match operation {
            // The main mapping's columns, blank (a sheet's row keeps its header).
            Some(op) if !op.change.carries_referral() => {
                Ok(Rendered::single(crate::mapping::Output {
                    fields: self
                        .slots
                        .first()
                        .map(|s| {
                            s.mapping
                                .fields
                                .iter()
                                .map(|f| (f.to.clone(), Value::String(String::new())))
                                .collect()
                        })
                        .unwrap_or_default(),
                    document: canonical.clone(),
                }))
            }
            _ => self.render(canonical, message_id),
        }
    }

    pub fn poller(&self) -> Option<Arc<dyn Poller>> {
        self.sink.poller()
    }

    pub fn reports(&self) -> Option<Arc<dyn Reports>> {
        self.sink.reports()
    }

    /// See [`Sink::reference_step`].
    pub fn reference_step(&self) -> Option<&'static str> {
        self.sink.reference_step()
    }
}

/// What a kind's `build` works with: its config keys are named from here, problems are
/// collected (not returned one at a time), mapping slots resolved and checked.
pub struct Build<'a> {
    pub name: &'a str,
    pub flow: Flow,
    allow: &'a [String],
    mappings: &'a MappingSet,
    pub schemas: &'a mut SchemaSet,
    problems: Vec<GatewayError>,
    slots: Vec<Slot>,
}

impl Build<'_> {
    /// `destinations.NAME.key`
    pub fn key(&self, key: &str) -> String {
        format!("destinations.{}.{key}", self.name)
    }

    pub fn error(&self, key: &str, message: impl Into<String>) -> GatewayError {
        GatewayError::invalid(Stage::Config, self.key(key), message)
    }

    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let e = self.error(key, message);
        self.problems.push(e);
    }

    /// Keeps a result's value, or records its error as a problem.
    pub fn check<T>(&mut self, r: Result<T>) -> Option<T> {
        r.map_err(|e| self.problems.push(e)).ok()
    }

    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    /// Reads a secret; a problem names `key` and why, never the value.
    pub fn secret(&mut self, key: &str, secret: &crate::secret::Secret) -> Option<String> {
        secret.read().map_err(|why| self.problem(key, why)).ok()
    }

    pub fn optional_secret(
        &mut self,
        key: &str,
        secret: Option<&crate::secret::Secret>,
    ) -> Option<String> {
        secret.and_then(|s| self.secret(key, s))
    }

    /// Resolves mapping `name` into slot `slot` (configured under `key`): it must exist,
    /// map this flow's canonical input, produce `format`, and read only what `allow`
    /// covers.
    pub fn mapping(&mut self, slot: &'static str, key: &str, name: &str, format: OutputFormat) {
        let Some(mapping) = self.mappings.get(name).cloned() else {
            self.problem(
                key,
                format!("no mapping {name:?} in the mappings folder (mappings.dir)"),
            );
            return;
        };
        let input = match self.flow {
            Flow::Referral => InputKind::CanonicalReferral,
            Flow::MessageBack => InputKind::CanonicalEvent,
        };
        if mapping.flow != self.flow || mapping.input != input {
            self.problem(
                key,
                format!(
                    "mapping {name} does not map the canonical {} ({} destinations need one that does)",
                    if self.flow == Flow::Referral { "referral" } else { "message-back event" },
                    self.flow
                ),
            );
            return;
        }
        if mapping.format != format {
            self.problem(
                key,
                format!(
                    "mapping {name} produces {:?} output; this destination needs {format:?}",
                    mapping.format
                ),
            );
            return;
        }
        if !self.allow.is_empty()
            && let Err(e) = mapping.check_allowed(self.name, self.allow)
        {
            self.problems.push(e);
            return;
        }
        self.slots.push(Slot {
            name: slot,
            mapping,
        });
    }

    /// Creates an output folder now, so a bad path stops start-up rather than a delivery.
    pub fn dir(&mut self, key: &str, dir: &std::path::Path) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            self.problem(key, format!("cannot create {}: {e}", dir.display()));
        }
    }
}

/// Every mapping error in one, naming the first field (parking headers carry one).
pub fn combine(errors: Vec<GatewayError>) -> GatewayError {
    let reasons: Vec<String> = errors.iter().map(GatewayError::reason).collect();
    let lead = errors
        .into_iter()
        .next()
        .unwrap_or_else(|| GatewayError::permanent(Stage::Map, "mapping failed"));
    GatewayError::combined(lead, reasons)
}

/// What the record writers render, for the message-back front's golden and property
/// tests (which sit above this layer, with the front that makes the entries).
#[cfg(test)]
pub(crate) mod renderings {
    pub(crate) use super::docman::render_for_test as docman;
    pub(crate) use super::fhir_record::render_for_test as fhir_transaction;
    pub(crate) use super::mesh::gp_provider as mesh_address;
}
