//! The engine's contract with the flows: a front turns an inbound message into a
//! [`Plan`] (or a [`Refusal`]); the engine does the rest, the same for every flow.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::Inbound;
use crate::deliver::Destination;
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
    /// Messages with the same key run one at a time in this process, each planned again
    /// once it has the key: events about one referral, so each derives the referral's
    /// state from every event before it and writes land in the order they were planned.
    pub serial: Option<String>,
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
