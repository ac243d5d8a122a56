//! Keeps `clw_gateway_referrals_awaiting_response{programme}` current: referrals sent
//! longer ago than `message_back.no_response_after` with no event back.

use std::time::Duration;

use tracing::warn;

use crate::metrics::{Metrics, ProgrammeLabels};
use crate::shutdown::Shutdown;
use crate::store::Store;

const EVERY: Duration = Duration::from_secs(60);

pub async fn run(store: Store, metrics: Metrics, after: Duration, mut shutdown: Shutdown) {
    let mut known: Vec<String> = Vec::new();
    loop {
        match store.awaiting_response(after).await {
            Ok(counts) => {
                // A programme whose count fell to none reads 0, not its last value.
                for p in &known {
                    if !counts.iter().any(|(q, _)| q == p) {
                        metrics
                            .awaiting
                            .get_or_create(&ProgrammeLabels {
                                programme: p.clone(),
                            })
                            .set(0);
                    }
                }
                for (programme, n) in &counts {
                    metrics
                        .awaiting
                        .get_or_create(&ProgrammeLabels {
                            programme: programme.clone(),
                        })
                        .set(*n);
                }
                known = counts.into_iter().map(|(p, _)| p).collect();
            }
            Err(e) => warn!(error = %e, "cannot count referrals awaiting a response"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {},
            _ = shutdown.wait() => return,
        }
    }
}
