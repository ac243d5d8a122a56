//! The engine's contract with the flows. A front turns an inbound message into a plan
//! in two steps: a pure [`Front::decode`] (no store, no network: the bytes checked and
//! made canonical, with the key that orders it among its kind), then [`Front::plan`]
//! (store reads, run under that key). The engine calls each once per attempt and does
//! the rest, the same for every flow.

use std::any::Any;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::deliver::Destination;
use crate::error::{GatewayError, Stage};
use crate::intake::Headers;
use crate::model::Flow;

/// One message as a source received it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub headers: Headers,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Where it came from, for the store (`amqp:<queue>`, `spool:<file>`).
    pub source: String,
    /// The broker user that published it, as RabbitMQ validated it (`user_id`: the
    /// broker refuses a publish whose `user_id` is not the connection's own user).
    pub user_id: Option<String>,
}

/// A message decoded: what it is, and what its front made of it.
pub struct Decoded<T> {
    pub message_id: String,
    /// Attempts including this one.
    pub attempts: u32,
    /// Messages with the same key are planned and attempted one at a time in this
    /// process: events about one referral, so each derives the referral's state from
    /// every event before it and writes land in the order they were planned.
    pub serial: Option<String>,
    /// The front's own decoded content, handed back to its `plan`.
    pub content: T,
}

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
    /// What the message does to a referral the destinations already have (an update,
    /// a cancellation, a reminder ...); None for a new referral and for an event.
    pub operation: Option<Box<crate::model::lifecycle::Operation>>,
}

/// What a front decided for a message it could read.
pub enum Planned {
    /// Something to send: the engine attempts it.
    Send(Plan),
    /// Policy keeps it back (consent declined): nothing is sent, and that is the
    /// outcome — recorded as withheld, not a failure.
    Withheld {
        message_id: String,
        attempts: u32,
        reason: String,
        /// What the store keeps of it all the same (the dataset's facts, counted in
        /// totals only), written with its outcome.
        remember: Vec<crate::store::Write>,
    },
}

/// A message the front will not plan: bad input (permanent) or something to wait for
/// (transient).
#[derive(Debug)]
pub struct Refusal {
    /// The id it is recorded under (a digest of the bytes when none could be read).
    pub message_id: String,
    pub attempts: u32,
    pub error: GatewayError,
}

/// A flow's front: its own decoded type, decoded once and planned once.
pub trait Front: Send + Sync + 'static {
    type Decoded: Send + 'static;

    fn flow(&self) -> Flow;

    /// Pure: the bytes checked and made canonical, nothing read from the store.
    fn decode(&self, inbound: &Inbound) -> Result<Decoded<Self::Decoded>, Refusal>;

    /// Store reads (linking, state): run under the decoded message's serial key.
    fn plan<'a>(
        &'a self,
        decoded: Decoded<Self::Decoded>,
    ) -> BoxFuture<'a, Result<Planned, Refusal>>;
}

/// Any front, its decoded type erased, as a pipeline holds it.
pub trait DynFront: Send + Sync {
    fn flow(&self) -> Flow;
    fn decode(&self, inbound: &Inbound) -> Result<Decoded<Box<dyn Any + Send>>, Refusal>;
    fn plan<'a>(
        &'a self,
        decoded: Decoded<Box<dyn Any + Send>>,
    ) -> BoxFuture<'a, Result<Planned, Refusal>>;
}

impl<F: Front> DynFront for F {
    fn flow(&self) -> Flow {
        Front::flow(self)
    }

    fn decode(&self, inbound: &Inbound) -> Result<Decoded<Box<dyn Any + Send>>, Refusal> {
        let d = Front::decode(self, inbound)?;
        Ok(Decoded {
            message_id: d.message_id,
            attempts: d.attempts,
            serial: d.serial,
            content: Box::new(d.content),
        })
    }

    fn plan<'a>(
        &'a self,
        d: Decoded<Box<dyn Any + Send>>,
    ) -> BoxFuture<'a, Result<Planned, Refusal>> {
        let Decoded {
            message_id,
            attempts,
            serial,
            content,
        } = d;
        match content.downcast::<F::Decoded>() {
            Ok(content) => Front::plan(
                self,
                Decoded {
                    message_id,
                    attempts,
                    serial,
                    content: *content,
                },
            ),
            // Only a pipeline handing one front's decoding to another could get here.
            Err(_) => Box::pin(async move {
                Err(Refusal {
                    message_id,
                    attempts,
                    error: GatewayError::permanent(
                        Stage::Intake,
                        "decoded by another flow's front: not planned",
                    ),
                })
            }),
        }
    }
}
