//! Gauges read from the store on a timer: whether the store answers, parked messages
//! waiting for a person, the oldest message not yet settled, and referrals with no
//! event back after `message_back.no_response_after`.

use std::collections::BTreeSet;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tracing::warn;

use crate::engine::metrics::{self, Metrics, ProgrammeLabels};
use crate::sources::shutdown::Shutdown;
use crate::store::Store;

const EVERY: Duration = Duration::from_secs(15);

/// Sets a family from fresh counts; a label seen before and now absent reads 0, not
/// its last value.
fn publish<L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug>(
    family: &Family<L, Gauge>,
    known: &mut BTreeSet<String>,
    counts: Vec<(String, i64)>,
    label: impl Fn(&str) -> L,
) {
    let now: BTreeSet<String> = counts.iter().map(|(k, _)| k.clone()).collect();
    for gone in known.difference(&now) {
        family.get_or_create(&label(gone)).set(0);
    }
    for (k, n) in counts {
        family.get_or_create(&label(&k)).set(n);
    }
    *known = now;
}

/// `awaiting_after`: counts referrals awaiting a response (when the message back runs).
pub async fn run(
    store: Store,
    metrics: Metrics,
    awaiting_after: Option<Duration>,
    mut shutdown: Shutdown,
) {
    let mut known_programmes = BTreeSet::new();
    // Every flow reads 0 rather than nothing until something is parked or waiting.
    let mut known_flows: BTreeSet<String> = crate::flows::FLOWS
        .iter()
        .map(|r| r.flow.as_str().to_string())
        .collect();
    let mut known_oldest = known_flows.clone();
    loop {
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(5), store.ping()).await,
            Ok(Ok(()))
        );
        metrics.store_up.set(i64::from(up));
        if up {
            match store.parked_counts().await {
                Ok(c) => publish(&metrics.parked_waiting, &mut known_flows, c, metrics::flow),
                Err(e) => warn!(error = %e, "cannot count parked messages"),
            }
            match store.oldest_unsettled().await {
                Ok(c) => publish(
                    &metrics.oldest_unsettled,
                    &mut known_oldest,
                    c,
                    metrics::flow,
                ),
                Err(e) => warn!(error = %e, "cannot find the oldest unsettled message"),
            }
            if let Some(after) = awaiting_after {
                match store.awaiting_response(after).await {
                    Ok(c) => publish(&metrics.awaiting, &mut known_programmes, c, |p| {
                        ProgrammeLabels {
                            programme: p.to_string(),
                        }
                    }),
                    Err(e) => warn!(error = %e, "cannot count referrals awaiting a response"),
                }
            }
        }
        if !shutdown.pause(EVERY).await {
            return;
        }
    }
}
