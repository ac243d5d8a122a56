//! Flow fronts: each turns an inbound message of its flow into a [`Plan`] — which
//! message this is, what canonical content it carries and which destinations it goes
//! to — or a [`Refusal`]. The attempt engine (`crate::engine`) does the rest, the same
//! for every flow.

pub mod message_back;
pub mod referral;

pub use crate::engine::{Front, Plan, Refusal};

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
