//! Flow fronts: each turns an inbound message of its flow into a [`Plan`] — which
//! message this is, what canonical content it carries and which destinations it goes
//! to — or a [`Refusal`]. The attempt engine (`crate::engine`) does the rest, the same
//! for every flow.

pub mod door;
pub mod message_back;
pub mod poll;
pub mod referral;
pub mod reports;

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

/// Bodies larger than this are decoded with the worker thread handed over: parsing a
/// 1 MiB Bundle takes milliseconds, which would stall every other task on that thread.
const HEAVY_BODY: usize = 64 * 1024;

/// Runs a front's synchronous decoding of a `len`-byte body; a heavy one runs under
/// `block_in_place`, so the runtime moves the thread's other tasks elsewhere meanwhile.
/// (A current-thread runtime, as in unit tests, has nowhere to move them: it runs
/// directly.) In place rather than `spawn_blocking`: the body stays borrowed, not copied.
pub(crate) fn decode_heavy<T>(len: usize, decode: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let workers =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if len > HEAVY_BODY && workers {
        tokio::task::block_in_place(decode)
    } else {
        decode()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{HEAVY_BODY, decode_heavy};

    /// One worker: while a heavy body is decoded, a task spawned on the runtime still
    /// runs (the decoding waits for it; without the hand-over it would wait forever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn other_tasks_run_while_a_heavy_body_is_decoded() {
        let (tx, rx) = std::sync::mpsc::channel();
        let ran = decode_heavy(HEAVY_BODY + 1, move || {
            tokio::spawn(async move { tx.send(()).unwrap() });
            rx.recv_timeout(Duration::from_secs(10)).is_ok()
        });
        assert!(ran, "the spawned task ran during the decode");
    }

    #[tokio::test]
    async fn a_current_thread_runtime_decodes_in_place() {
        assert_eq!(decode_heavy(HEAVY_BODY + 1, || 7), 7);
        assert_eq!(decode_heavy(10, || 8), 8);
    }
}
