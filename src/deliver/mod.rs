//! Platform adapters: each takes a validated payload and makes it arrive, once.

mod file;
mod payload;
mod webhook;

use std::sync::Arc;

use serde_json::Value;

use crate::config::DestinationConfig;
use crate::error::Result;
use crate::schema::{CompiledSchema, SchemaSet};

pub use file::FileDestination;
pub use payload::{field_names, idempotency_key, referral_payload};
pub use webhook::{WebhookDestination, classify_status, parse_retry_after};

/// What one delivery attempt carries.
pub struct DeliveryRequest<'a> {
    pub message_id: &'a str,
    pub idempotency_key: &'a str,
    pub payload: &'a Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// HTTP status for HTTP destinations.
    pub status: Option<u16>,
}

pub enum Adapter {
    Webhook(WebhookDestination),
    File(FileDestination),
}

/// A configured destination: its adapter, the schema its payload must meet, and the
/// data-sharing agreement it receives data under.
pub struct Destination {
    pub name: String,
    pub adapter: Adapter,
    pub schema: CompiledSchema,
    pub agreement: Option<String>,
}

impl Destination {
    pub fn build(
        name: &str,
        config: &DestinationConfig,
        schemas: &mut SchemaSet,
    ) -> Result<Arc<Destination>> {
        let adapter = match config {
            DestinationConfig::Webhook(w) => Adapter::Webhook(WebhookDestination::new(name, w)?),
            DestinationConfig::File(f) => Adapter::File(FileDestination::new(name, f)?),
        };
        Ok(Arc::new(Destination {
            name: name.to_string(),
            adapter,
            schema: schemas.get_or_load(config.schema())?,
            agreement: config.agreement().map(str::to_string),
        }))
    }

    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> Result<Delivered> {
        match &self.adapter {
            Adapter::Webhook(w) => w.deliver(req).await,
            Adapter::File(f) => f.deliver(req).await,
        }
    }
}
