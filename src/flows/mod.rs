//! Flow fronts: each turns an inbound message of its flow into a [`Plan`] — which
//! message this is, what canonical content it carries and which destinations it goes
//! to — or a [`Refusal`]. The attempt engine (`crate::engine`) does the rest, the same
//! for every flow.

pub mod lifecycle;
pub mod message_back;
pub mod referral;
mod referral_config;

pub use referral_config::FlowConfig;

pub use crate::engine::{Decoded, DynFront, Front, Plan, Planned, Refusal};

use crate::mapping::spec::InputKind;
use crate::model::Flow;
use crate::secret::seal::Sealer;
use crate::store::Store;
use message_back::{MessageBackWiring, PlainEvents};
use referral::ReferralWiring;

/// One flow: what the transports, the store's readers, the console and start-up know
/// of it. Every place that handles "each flow" iterates [`FLOWS`]; a new flow is a front
/// module and one row here.
pub struct FlowRow {
    pub flow: Flow,
    /// Its name in exchange, queue and routing-key names (`{prefix}.{unit}s`, ...).
    pub queue_unit: &'static str,
    /// Its folder under the spool directory (and the suffix of its AMQP connection).
    pub spool_folder: &'static str,
    /// What arrives from outside (what its inbound mappings read).
    pub input: InputKind,
    /// Its CloudEvents type (`ce-type`).
    pub event_type: &'static str,
    /// Builds its front from the wired parts; None when the flow is off.
    pub front: fn(&Parts<'_>) -> Option<Box<dyn DynFront>>,
}

/// What the fronts are built from.
pub struct Parts<'a> {
    pub referrals: &'a ReferralWiring,
    /// Present when the message back is on.
    pub message_back: Option<&'a MessageBackWiring>,
    pub store: &'a Store,
    pub sealer: &'a Sealer,
    pub metrics: &'a crate::engine::metrics::Metrics,
    pub max_bytes: usize,
    /// The deployment's decoding rules (CHI check, Scottish practice code systems).
    pub rules: &'a crate::intake::Rules,
    /// Where events with no door's seal come from on this gateway's transport.
    pub plain_events: PlainEvents,
    /// Records the dataset's facts; None when `dataset.enabled` is off.
    pub dataset: Option<std::sync::Arc<crate::dataset::Recorder>>,
}

/// Every flow, in the order of [`Flow`]'s variants (so [`row`] is an index).
pub static FLOWS: [FlowRow; 2] = [referral::ROW, message_back::ROW];

/// A flow's row.
pub fn row(flow: Flow) -> &'static FlowRow {
    &FLOWS[flow as usize]
}

/// The flow whose spool folder is `folder`.
pub fn by_folder(folder: &str) -> Option<&'static FlowRow> {
    FLOWS.iter().find(|r| r.spool_folder == folder)
}

/// An audit entry for each target its agreement keeps a sensitive section from (risks,
/// safeguarding, gender history): what was left out, for whom, under which agreement.
pub(crate) fn filtered(
    flow: Flow,
    message_id: &str,
    canonical: &serde_json::Value,
    targets: &[std::sync::Arc<crate::deliver::Destination>],
) -> Vec<crate::store::Write> {
    use crate::store::{AuditEntry, Write};
    targets
        .iter()
        .filter_map(|d| {
            let gone = d.withholds(canonical);
            (!gone.is_empty()).then(|| {
                Write::Audit(AuditEntry {
                    destination: Some(d.name.clone()),
                    agreement: d.agreement.clone(),
                    ..AuditEntry::note(
                        crate::engine::AuditAction::Filtered,
                        flow,
                        message_id,
                        gone.iter().map(|g| g.to_string()).collect(),
                        "left out: the destination's agreement (allow) does not name these \
                         sections"
                            .into(),
                    )
                })
            })
        })
        .collect()
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

    use super::{FLOWS, HEAVY_BODY, decode_heavy, row};

    #[test]
    fn each_flow_has_its_row_at_its_index() {
        for (i, r) in FLOWS.iter().enumerate() {
            assert_eq!(r.flow as usize, i, "{} is out of place", r.flow);
            assert!(std::ptr::eq(row(r.flow), r));
        }
    }

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
