//! Whether a source is taking messages (a broker consumer connected and consuming, a
//! spool inbox readable): /readyz fails while any is not, and `source_up` shows it.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::metrics::{self, Metrics};

pub struct SourceStatus {
    flow: String,
    up: AtomicBool,
    metrics: Metrics,
}

impl SourceStatus {
    pub fn new(flow: &str, metrics: &Metrics) -> SourceStatus {
        metrics.source_up.get_or_create(&metrics::flow(flow)).set(0);
        SourceStatus {
            flow: flow.to_string(),
            up: AtomicBool::new(false),
            metrics: metrics.clone(),
        }
    }

    pub fn flow(&self) -> &str {
        &self.flow
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        self.metrics
            .source_up
            .get_or_create(&metrics::flow(&self.flow))
            .set(i64::from(up));
    }
}
