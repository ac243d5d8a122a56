//! Prometheus metrics, served from the gateway's own HTTP server at /metrics.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub flow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub flow: String,
    /// `none` when the failure came before any destination (e.g. a malformed message).
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProgrammeLabels {
    pub programme: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    pub platform: String,
    /// accepted | refused
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MissingItemLabels {
    /// The referring practice's code (`none` when the referral names none).
    pub practice: String,
    /// The canonical field of the mandatory PRSB item.
    pub item: String,
}

/// An acknowledgement's destination, level (`infrastructure` | `business`) and outcome
/// (`received` | `filed` | `rejected`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabels {
    pub destination: String,
    pub level: String,
    pub outcome: String,
}

/// Acknowledgements overdue, by destination, practice (`unknown` when the event's
/// referral names none) and level.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverdueLabels {
    pub destination: String,
    pub practice: String,
    pub level: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub platform: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub received: Family<FlowLabels, Counter>,
    /// Messages planned: once per attempt, never twice (decode once, plan once).
    pub planned: Family<FlowLabels, Counter>,
    /// Platform events mapped to the canonical event: once per event, at the door it
    /// entered by (a door's sealed event is not mapped again).
    pub events_mapped: Family<PlatformLabels, Counter>,
    pub delivered: Family<DestinationLabels, Counter>,
    pub retried: Family<DestinationLabels, Counter>,
    pub parked: Family<DestinationLabels, Counter>,
    pub withheld: Family<FlowLabels, Counter>,
    pub duplicates: Family<FlowLabels, Counter>,
    pub latency: Family<FlowLabels, Histogram>,
    pub in_flight: Family<FlowLabels, Gauge>,
    /// 1 while a destination is paused by its circuit breaker.
    pub paused: Family<DestinationLabels, Gauge>,
    /// Referrals with no event back after `message_back.no_response_after`.
    pub awaiting: Family<ProgrammeLabels, Gauge>,
    /// Requests at the event ingress, by platform and outcome.
    pub ingress: Family<IngressLabels, Counter>,
    /// Message handlers that panicked (their messages went back to the queue).
    pub handler_panics: Counter,
    /// 1 while a flow's source takes messages (broker consumer up, spool readable).
    pub source_up: Family<FlowLabels, Gauge>,
    /// 1 while the store answers.
    pub store_up: Gauge,
    /// Parked messages held in the store, not yet replayed.
    pub parked_waiting: Family<FlowLabels, Gauge>,
    /// Age of the oldest message received and not yet settled (delivered, withheld or parked).
    pub oldest_unsettled: Family<FlowLabels, Gauge>,
    /// Items removed by retention, by kind.
    pub purged: Family<KindLabels, Counter>,
    /// Reports from a destination that something it accepted did not reach its
    /// recipient (MESH non-delivery reports), matched to a message.
    pub undelivered_reports: Family<DestinationLabels, Counter>,
    /// Referrals missing a mandatory PRSB item, by practice and item.
    pub missing_items: Family<MissingItemLabels, Counter>,
    pub acknowledgements: Family<AckLabels, Counter>,
    pub acks_overdue: Family<OverdueLabels, Gauge>,
    pub inbox_kept: Family<DestinationLabels, Counter>,
    /// Reminders of unanswered referrals a destination's kind cannot carry: shown in
    /// the console instead.
    pub reminders_shown: Family<DestinationLabels, Counter>,
    /// Later messages about referrals taken, by what they were (amend, cancel, ...).
    pub lifecycle_changes: Family<KindLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("clw_gateway");
        let received = Family::<FlowLabels, Counter>::default();
        let planned = Family::<FlowLabels, Counter>::default();
        let events_mapped = Family::<PlatformLabels, Counter>::default();
        let delivered = Family::<DestinationLabels, Counter>::default();
        let retried = Family::<DestinationLabels, Counter>::default();
        let parked = Family::<DestinationLabels, Counter>::default();
        let withheld = Family::<FlowLabels, Counter>::default();
        let duplicates = Family::<FlowLabels, Counter>::default();
        let latency = Family::<FlowLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let in_flight = Family::<FlowLabels, Gauge>::default();
        let paused = Family::<DestinationLabels, Gauge>::default();
        let awaiting = Family::<ProgrammeLabels, Gauge>::default();
        let ingress = Family::<IngressLabels, Counter>::default();
        let handler_panics = Counter::default();
        let source_up = Family::<FlowLabels, Gauge>::default();
        let store_up = Gauge::default();
        let parked_waiting = Family::<FlowLabels, Gauge>::default();
        let oldest_unsettled = Family::<FlowLabels, Gauge>::default();
        let purged = Family::<KindLabels, Counter>::default();
        let undelivered_reports = Family::<DestinationLabels, Counter>::default();
        let missing_items = Family::<MissingItemLabels, Counter>::default();
        let acknowledgements = Family::<AckLabels, Counter>::default();
        let acks_overdue = Family::<OverdueLabels, Gauge>::default();
        let inbox_kept = Family::<DestinationLabels, Counter>::default();
        r.register(
            "acknowledgements",
            "Acknowledgements (ITK3 responses) read from a destination's inbox, by level and outcome",
            acknowledgements.clone(),
        );
        r.register(
            "acknowledgements_overdue",
            "Messages whose acknowledgement has not come within its configured time, by practice and level",
            acks_overdue.clone(),
        );
        r.register(
            "inbox_kept",
            "Inbox messages not understood, or naming nothing the gateway sent: kept in the store for a person",
            inbox_kept.clone(),
        );
        r.register(
            "referral_missing_items",
            "Referrals missing a mandatory item of the PRSB Social Prescribing standard, by practice and item",
            missing_items.clone(),
        );
        r.register(
            "undelivered_reports",
            "Reports from a destination (MESH non-delivery reports) that a message it accepted did not reach its recipient",
            undelivered_reports.clone(),
        );
        r.register(
            "source_up",
            "1 while a flow's source takes messages (broker consumer up, spool inbox readable)",
            source_up.clone(),
        );
        r.register("store_up", "1 while the store answers", store_up.clone());
        r.register(
            "parked_waiting",
            "Parked messages held in the store, not yet replayed",
            parked_waiting.clone(),
        );
        r.register(
            "oldest_unsettled_age_seconds",
            "Age of the oldest message received and not yet delivered, withheld or parked",
            oldest_unsettled.clone(),
        );
        r.register(
            "purged",
            "Items removed by retention, by kind",
            purged.clone(),
        );
        r.register(
            "messages_received",
            "Messages taken from a source",
            received.clone(),
        );
        r.register(
            "messages_delivered",
            "Deliveries that reached their destination",
            delivered.clone(),
        );
        r.register(
            "messages_planned",
            "Messages planned (decoded once and planned once per attempt)",
            planned.clone(),
        );
        r.register(
            "events_mapped",
            "Platform events mapped to the canonical event, once each at the door they entered by",
            events_mapped.clone(),
        );
        r.register(
            "messages_retried",
            "Messages sent to a retry tier",
            retried.clone(),
        );
        r.register(
            "messages_parked",
            "Messages parked for good",
            parked.clone(),
        );
        r.register(
            "messages_withheld",
            "Messages not sent by policy (e.g. consent declined)",
            withheld.clone(),
        );
        r.register(
            "messages_duplicate",
            "Redeliveries absorbed by idempotency",
            duplicates.clone(),
        );
        r.register(
            "processing_seconds",
            "Time from taking a message to its outcome",
            latency.clone(),
        );
        r.register(
            "messages_in_flight",
            "Messages being processed now",
            in_flight.clone(),
        );
        r.register(
            "destination_paused",
            "1 while a destination is paused (it answered 401, 403 or 404); its messages wait",
            paused.clone(),
        );
        r.register(
            "referrals_awaiting_response",
            "Referrals with no event back from the programme after message_back.no_response_after",
            awaiting.clone(),
        );
        r.register(
            "ingress_requests",
            "Platform requests at the event ingress, by outcome",
            ingress.clone(),
        );
        r.register(
            "handler_panics",
            "Message handlers that panicked; their messages went back to the queue",
            handler_panics.clone(),
        );
        let reminders_shown = Family::<DestinationLabels, Counter>::default();
        r.register(
            "referral_reminders_shown",
            "Reminders of unanswered referrals the destination's kind cannot carry (shown in the console instead)",
            reminders_shown.clone(),
        );
        let lifecycle_changes = Family::<KindLabels, Counter>::default();
        r.register(
            "referral_lifecycle_changes",
            "Later messages about referrals taken, by kind (amend, cancel, withdraw, unchanged, remind, close)",
            lifecycle_changes.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            reminders_shown,
            lifecycle_changes,
            handler_panics,
            source_up,
            store_up,
            parked_waiting,
            oldest_unsettled,
            purged,
            undelivered_reports,
            missing_items,
            acknowledgements,
            acks_overdue,
            inbox_kept,
            paused,
            awaiting,
            ingress,
            received,
            planned,
            events_mapped,
            delivered,
            retried,
            parked,
            withheld,
            duplicates,
            latency,
            in_flight,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The destination label of a failure that came before any destination.
pub const NO_DESTINATION: &str = "none";

pub fn flow(flow: &str) -> FlowLabels {
    FlowLabels {
        flow: flow.to_string(),
    }
}

pub fn dest(flow: &str, destination: &str) -> DestinationLabels {
    DestinationLabels {
        flow: flow.to_string(),
        destination: destination.to_string(),
    }
}
