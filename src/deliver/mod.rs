//! Platform adapters: each takes a validated payload and makes it arrive, once.

mod charitylog;
mod csv;
mod fhir;
mod file;
mod http;
mod lamplight;
mod payload;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::config::DestinationConfig;
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::{Flow, InputKind, OutputFormat};
use crate::mapping::{Mapping, MappingSet};
use crate::model::Referral;
use crate::schema::{CompiledSchema, SchemaSet};

pub use charitylog::CharitylogDestination;
pub use csv::{CsvDestination, REFERENCE_COLUMN, encode_row};
pub use fhir::{FhirDestination, transaction as fhir_transaction};
pub use file::FileDestination;
pub use lamplight::LamplightDestination;
pub use payload::{field_names, idempotency_key, referral_payload};
pub use webhook::{WebhookDestination, classify_status, parse_retry_after};

/// What one delivery attempt carries.
pub struct DeliveryRequest<'a> {
    pub message_id: &'a str,
    pub idempotency_key: &'a str,
    pub payload: &'a Value,
    /// The payload's fields in mapping order (CSV columns, form fields); empty for the
    /// PRSB payload.
    pub fields: &'a [(String, Value)],
    /// The person's own record where a platform keeps it apart (Lamplight profiles).
    pub person: &'a [(String, Value)],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// HTTP status for HTTP destinations.
    pub status: Option<u16>,
}

pub enum Adapter {
    Webhook(WebhookDestination),
    File(FileDestination),
    Csv(CsvDestination),
    Charitylog(CharitylogDestination),
    // Boxed: by far the largest adapter (credentials, person mapping, profile cache).
    Lamplight(Box<LamplightDestination>),
    Fhir(FhirDestination),
}

/// How a destination's payload is made.
pub enum Render {
    /// The PRSB referral JSON, checked against this schema.
    Prsb(CompiledSchema),
    /// A mapping from mappings/ (which checks its own output schema).
    Mapped {
        mapping: Arc<Mapping>,
        constants: BTreeMap<String, String>,
    },
}

/// A rendered payload.
pub struct Rendered {
    pub payload: Value,
    pub fields: Vec<(String, Value)>,
    pub person: Vec<(String, Value)>,
}

/// A configured destination: its adapter, how its payload is made, and the
/// data-sharing agreement it receives data under.
pub struct Destination {
    pub name: String,
    pub adapter: Adapter,
    pub render: Render,
    pub agreement: Option<String>,
}

impl Destination {
    /// Builds the adapter and resolves the mapping, refusing one that reads outside the
    /// destination's allow-list or produces the wrong kind of output for the adapter.
    pub fn build(
        name: &str,
        config: &DestinationConfig,
        schemas: &mut SchemaSet,
        mappings: Option<&MappingSet>,
    ) -> Result<Arc<Destination>> {
        let terms = config.terms();
        let resolve = |m: &str, key: &str| resolve_mapping(name, m, key, terms.allow, mappings);
        let (adapter, wants) = match config {
            DestinationConfig::Webhook(w) => (
                Adapter::Webhook(WebhookDestination::new(name, w)?),
                OutputFormat::Json,
            ),
            DestinationConfig::File(f) => (
                Adapter::File(FileDestination::new(name, f)?),
                OutputFormat::Json,
            ),
            DestinationConfig::Csv(c) => (
                Adapter::Csv(CsvDestination::new(name, c)?),
                OutputFormat::Csv,
            ),
            DestinationConfig::Charitylog(c) => (
                Adapter::Charitylog(CharitylogDestination::new(name, c)?),
                OutputFormat::Form,
            ),
            DestinationConfig::Fhir(c) => (
                Adapter::Fhir(FhirDestination::new(name, c)?),
                OutputFormat::Json,
            ),
            DestinationConfig::Lamplight(c) => {
                let person = resolve(&c.person_mapping, "person_mapping")?;
                let key = format!("destinations.{name}.person_mapping");
                expect_format(&person, OutputFormat::Form, &key)?;
                (
                    Adapter::Lamplight(Box::new(LamplightDestination::new(name, c, person)?)),
                    OutputFormat::Form,
                )
            }
        };
        let render = match terms.mapping {
            None => Render::Prsb(schemas.get_or_load(config.schema())?),
            Some(m) => {
                let mapping = resolve(m, "mapping")?;
                expect_format(&mapping, wants, &format!("destinations.{name}.mapping"))?;
                Render::Mapped {
                    mapping,
                    constants: terms.constants.clone(),
                }
            }
        };
        Ok(Arc::new(Destination {
            name: name.to_string(),
            adapter,
            render,
            agreement: terms.agreement.map(str::to_string),
        }))
    }

    /// The payload for one referral. `canonical` is the referral as JSON, made once per
    /// message by the caller for every mapped destination.
    pub fn render(
        &self,
        message_id: &str,
        referral: &Referral,
        canonical: &Value,
    ) -> Result<Rendered> {
        match &self.render {
            Render::Prsb(schema) => {
                let payload = referral_payload(message_id, referral);
                schema.check(&payload)?;
                Ok(Rendered {
                    payload,
                    fields: Vec::new(),
                    person: Vec::new(),
                })
            }
            Render::Mapped { mapping, constants } => {
                // The gateway's own constant: which message this is.
                let mut constants = constants.clone();
                constants.insert("message_id".into(), message_id.to_string());
                let out = mapping.apply(canonical, &constants).map_err(combine)?;
                let person = match &self.adapter {
                    Adapter::Lamplight(l) => {
                        l.person_mapping
                            .apply(canonical, &l.constants)
                            .map_err(combine)?
                            .fields
                    }
                    _ => Vec::new(),
                };
                Ok(Rendered {
                    payload: out.document,
                    fields: out.fields,
                    person,
                })
            }
        }
    }

    pub fn mapping_version(&self) -> Option<String> {
        match &self.render {
            Render::Mapped { mapping, .. } => Some(mapping.id()),
            Render::Prsb(_) => None,
        }
    }

    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> Result<Delivered> {
        match &self.adapter {
            Adapter::Webhook(w) => w.deliver(req).await,
            Adapter::File(f) => f.deliver(req).await,
            Adapter::Csv(c) => c.deliver(req).await,
            Adapter::Charitylog(c) => c.deliver(req).await,
            Adapter::Lamplight(l) => l.deliver(req, req.person).await,
            Adapter::Fhir(f) => f.deliver(req).await,
        }
    }
}

/// A referral mapping by name, checked against the destination's allow-list.
fn resolve_mapping(
    destination: &str,
    name: &str,
    key: &str,
    allow: &[String],
    mappings: Option<&MappingSet>,
) -> Result<Arc<Mapping>> {
    let key = format!("destinations.{destination}.{key}");
    let mapping = mappings.and_then(|set| set.get(name)).ok_or_else(|| {
        GatewayError::invalid(
            Stage::Config,
            key.clone(),
            format!("no mapping {name:?} in the mappings folder (mappings.dir)"),
        )
    })?;
    if mapping.flow != Flow::Referral || mapping.input != InputKind::CanonicalReferral {
        return Err(GatewayError::invalid(
            Stage::Config,
            key,
            format!("mapping {name} does not map the canonical referral"),
        ));
    }
    mapping.check_allowed(destination, allow)?;
    Ok(mapping.clone())
}

fn expect_format(mapping: &Mapping, wants: OutputFormat, key: &str) -> Result<()> {
    if mapping.format == wants {
        return Ok(());
    }
    Err(GatewayError::invalid(
        Stage::Config,
        key,
        format!(
            "mapping {} produces {:?} output; this destination needs {wants:?}",
            mapping.name, mapping.format
        ),
    ))
}

/// Creates a destination's output folder at start-up, naming the config key on failure.
fn ensure_dir(name: &str, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        GatewayError::invalid(
            Stage::Config,
            format!("destinations.{name}.dir"),
            format!("cannot create {}: {e}", dir.display()),
        )
    })
}

/// Every mapping error in one, naming the first field (parking headers carry one).
fn combine(errors: Vec<GatewayError>) -> GatewayError {
    let reasons: Vec<String> = errors.iter().map(GatewayError::reason).collect();
    let mut e = errors
        .into_iter()
        .next()
        .unwrap_or_else(|| GatewayError::permanent(Stage::Map, "mapping failed"));
    if reasons.len() > 1 {
        e.message = reasons.join("; ");
        e.field = None;
    }
    e
}
