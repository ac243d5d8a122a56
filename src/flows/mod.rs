//! Flow fronts: each turns an inbound message of its flow into a [`Plan`] — which
//! message this is, what canonical content it carries and which destinations it goes
//! to — or a [`Refusal`]. The attempt engine (`crate::engine`) does the rest, the same
//! for every flow.

pub mod door;
pub mod message_back;
pub mod poll;
pub mod referral;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::deliver::Destination;
use crate::engine::Inbound;
use crate::error::GatewayError;
use crate::model::Flow;

/// What to send where, for one message.
pub struct Plan {
    pub message_id: String,
    /// Attempts including this one.
    pub attempts: u32,
    /// SHA-256 of the source bytes: the same id with other content is not a duplicate.
    pub digest: String,
    /// The canonical JSON every destination's mappings read.
    pub canonical: Value,
    pub targets: Vec<Arc<Destination>>,
    /// What the flow keeps about the message, written with its "received" record.
    pub remember: Vec<crate::store::Write>,
}

/// A message the front will not plan: bad input (permanent), something to wait for
/// (transient), or a policy outcome (nothing to send, recorded as withheld).
#[derive(Debug)]
pub struct Refusal {
    /// The id it is recorded under (a digest of the bytes when none could be read).
    pub message_id: String,
    pub attempts: u32,
    pub error: GatewayError,
}

pub trait Front: Send + Sync {
    fn flow(&self) -> Flow;

    fn plan<'a>(&'a self, inbound: &'a Inbound) -> BoxFuture<'a, Result<Plan, Refusal>>;
}
