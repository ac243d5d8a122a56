//! The attempt engine, shared by every flow: a front plans a message (what to send
//! where); the engine looks up what was already done, sends to the rest at once,
//! decides retry / park / done, records the outcome, its deliveries and audit rows in
//! one store write, and hands the source a [`Disposition`] to act on. Sources (AMQP,
//! spool, HTTP ingress) only move bytes.

mod attempt;
mod decide;
mod inflight;
pub mod metrics;
mod settings;
mod settle;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use decide::{Decision, choose_tier, decide, defer_tier};
use inflight::InFlight;
use settle::log;
mod contract;
pub use crate::model::state::{AuditAction, DeliveryState, MessageState};
pub use contract::{Decoded, DynFront, Front, Inbound, Plan, Planned, Refusal};
pub use settings::{EngineSettings, RetryConfig};
pub use status::SourceStatus;

use crate::error::GatewayError;
use crate::model::Flow;
use crate::store::Store;
use metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Delivered,
    /// Every destination already had it: a redelivery absorbed by idempotency.
    Duplicate,
    /// Policy kept it back (e.g. consent declined); the outcome is recorded.
    Withheld,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Done {
        message_id: String,
        settled: Settled,
    },
    /// Try again after `retry_tiers[tier]`. `attempts` is the count the next attempt
    /// continues from (a deferral, where nothing was tried, does not add one).
    Retry {
        message_id: String,
        attempts: u32,
        tier: usize,
        error: GatewayError,
    },
    Park {
        message_id: String,
        attempts: u32,
        error: GatewayError,
        /// The mapping (name@version) that made the failing payload, for parking headers.
        mapping: String,
    },
}

impl Disposition {
    pub fn message_id(&self) -> &str {
        match self {
            Disposition::Done { message_id, .. }
            | Disposition::Retry { message_id, .. }
            | Disposition::Park { message_id, .. } => message_id,
        }
    }
}

/// What the engine needs from the rest of the gateway.
pub struct Engine {
    pub store: Store,
    pub metrics: Metrics,
    pub tiers: Vec<Duration>,
    /// Names this instance in audit rows.
    pub actor: String,
    /// Names this process in claims (unique per start).
    pub owner: String,
    /// How long a claim holds before another copy may take it over.
    pub claim_ttl: Duration,
    /// How often a paused destination is probed with one message.
    pub probe_every: Duration,
    inflight: InFlight,
}

impl Engine {
    pub fn new(store: Store, metrics: Metrics, settings: EngineSettings) -> Engine {
        let owner = format!(
            "{}/{}",
            settings.instance,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Engine {
            store,
            metrics,
            tiers: settings.retry.tiers,
            actor: settings.instance,
            owner,
            claim_ttl: settings.claim_ttl,
            probe_every: settings.retry.probe_every,
            inflight: InFlight::default(),
        }
    }
}

/// The engine bound to one flow's front: what a source drives.
pub struct Pipeline {
    engine: Arc<Engine>,
    front: Box<dyn DynFront>,
}

impl Pipeline {
    pub fn new(engine: Arc<Engine>, front: Box<dyn DynFront>) -> Pipeline {
        Pipeline { engine, front }
    }

    pub fn flow(&self) -> Flow {
        self.front.flow()
    }

    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.engine.metrics
    }

    pub fn retry_tiers(&self) -> &[Duration] {
        &self.engine.tiers
    }

    /// This process's name in claims (and its spool folder).
    pub fn owner(&self) -> &str {
        &self.engine.owner
    }

    pub async fn process(&self, inbound: &Inbound) -> Disposition {
        let flow = self.flow();
        let labels = metrics::flow(flow.as_str());
        let m = &self.engine.metrics;
        m.received.get_or_create(&labels).inc();
        let gauge = m.in_flight.get_or_create(&labels).clone();
        gauge.inc();
        let started = Instant::now();
        // Decoded once; planned once, under the serial key when it has one (the key
        // is held through the attempt, so writes land in the order they were planned).
        let d = match self.front.decode(inbound) {
            Err(refusal) => self.refused(refusal).await,
            Ok(decoded) => {
                let _serial = match decoded.serial.clone() {
                    Some(key) => Some(self.engine.inflight.hold(key).await),
                    None => None,
                };
                m.planned.get_or_create(&labels).inc();
                match self.front.plan(decoded).await {
                    Ok(Planned::Send(plan)) => self.attempt_once(plan, &inbound.source).await,
                    Ok(Planned::Withheld {
                        message_id,
                        attempts,
                        reason,
                        remember,
                    }) => self.withheld(&message_id, attempts, reason, remember).await,
                    Err(refusal) => self.refused(refusal).await,
                }
            }
        };
        gauge.dec();
        m.latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        log(flow, &d);
        d
    }

    /// One copy of an id at a time here; other instances meet the claims.
    async fn attempt_once(&self, plan: Plan, source: &str) -> Disposition {
        let key = format!("{}/{}", self.flow(), plan.message_id);
        let _held = self.engine.inflight.hold(key).await;
        self.attempt(plan, source).await
    }
}
