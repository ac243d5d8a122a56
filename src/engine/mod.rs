//! The attempt engine, shared by every flow: a front plans a message (what to send
//! where); the engine looks up what was already done, sends to the rest at once,
//! decides retry / park / done, records the outcome, its deliveries and audit rows in
//! one store write, and hands the source a [`Disposition`] to act on. Sources (AMQP,
//! spool, HTTP ingress) only move bytes.

mod decide;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tracing::{info, warn};

pub use decide::{Decision, choose_tier, decide};
pub use state::{AuditAction, DeliveryState, MessageState};

use crate::deliver::{Destination, Job, Sent, idempotency_key};
use crate::error::{ErrorClass, GatewayError};
use crate::flows::{Front, Plan, Refusal};
use crate::intake::Headers;
use crate::metrics::{self, Metrics};
use crate::model::Flow;
use crate::store::writer_types::{DeliveryUpdate, ErrorSummary};
use crate::store::{AuditEntry, Store, Write};

/// One message as a source received it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub headers: Headers,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Where it came from, for the store (`amqp:<queue>`, `spool:<file>`).
    pub source: String,
}

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
    /// Try again after `retry_tiers[tier]`; `attempts` made so far.
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
}

/// The engine bound to one flow's front: what a source drives.
pub struct Pipeline {
    engine: Arc<Engine>,
    front: Box<dyn Front>,
}

/// One destination's result in an attempt.
struct Outcome {
    destination: Arc<Destination>,
    key: String,
    result: crate::error::Result<(Sent, Vec<String>)>,
}

impl Pipeline {
    pub fn new(engine: Arc<Engine>, front: Box<dyn Front>) -> Pipeline {
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

    pub async fn process(&self, inbound: &Inbound) -> Disposition {
        let flow = self.flow();
        let labels = metrics::flow(flow.as_str());
        let m = &self.engine.metrics;
        m.received.get_or_create(&labels).inc();
        let gauge = m.in_flight.get_or_create(&labels).clone();
        gauge.inc();
        let started = Instant::now();
        let d = match self.front.plan(inbound).await {
            Ok(plan) => self.attempt(plan, &inbound.source).await,
            Err(refusal) => self.refused(refusal).await,
        };
        gauge.dec();
        m.latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        log(flow, &d);
        d
    }

    async fn attempt(&self, plan: Plan, source: &str) -> Disposition {
        let flow = self.flow();
        let e = &self.engine;
        let delivered = match e.store.delivered_to(flow.as_str(), &plan.message_id).await {
            Ok(p) => p,
            Err(err) => {
                return self
                    .failed(&plan.message_id, plan.attempts, err, None)
                    .await;
            }
        };
        let pending: Vec<Arc<Destination>> = plan
            .targets
            .iter()
            .filter(|d| !delivered.contains(&d.name))
            .cloned()
            .collect();
        if pending.is_empty() {
            e.metrics
                .duplicates
                .get_or_create(&metrics::flow(flow.as_str()))
                .inc();
            let audit = self.audit(
                &plan.message_id,
                AuditAction::Duplicate,
                None,
                Some("already delivered to every destination".into()),
            );
            if let Err(err) = e.store.write(Write::Audit(audit)).await {
                warn!(message_id = plan.message_id, error = %err, "could not audit a duplicate");
            }
            return Disposition::Done {
                message_id: plan.message_id,
                settled: Settled::Duplicate,
            };
        }
        if let Err(err) = e
            .store
            .write_nowait(Write::Received {
                flow: flow.as_str().into(),
                message_id: plan.message_id.clone(),
                source: source.to_string(),
                body_sha256: plan.digest.clone(),
            })
            .await
        {
            return self
                .failed(&plan.message_id, plan.attempts, err, None)
                .await;
        }
        let outcomes = join_all(pending.into_iter().map(|d| self.send_one(&plan, d))).await;
        self.settle(&plan.message_id, plan.attempts, outcomes).await
    }

    /// Renders and sends to one destination; the field names sent, for the audit.
    async fn send_one(&self, plan: &Plan, destination: Arc<Destination>) -> Outcome {
        let flow = self.flow();
        let key = idempotency_key(flow.as_str(), &plan.message_id, &destination.name);
        let result = async {
            let rendered = destination.render(&plan.canonical, &plan.message_id)?;
            let job = Job {
                flow,
                message_id: &plan.message_id,
                idempotency_key: &key,
                rendered: &rendered,
            };
            let sent = destination.send(&job).await?;
            Ok((sent, rendered.field_names()))
        }
        .await;
        Outcome {
            destination,
            key,
            result,
        }
    }

    /// Records an attempt that reached the destinations: delivered when every one
    /// succeeded, else one error naming each failing destination.
    async fn settle(&self, message_id: &str, attempts: u32, outcomes: Vec<Outcome>) -> Disposition {
        let flow = self.flow();
        let m = &self.engine.metrics;
        let mut updates = Vec::new();
        let mut audits = Vec::new();
        let mut errors: Vec<(Arc<Destination>, GatewayError)> = Vec::new();
        for o in outcomes {
            match o.result {
                Ok((sent, fields)) => {
                    m.delivered
                        .get_or_create(&metrics::dest(flow.as_str(), &o.destination.name))
                        .inc();
                    updates.push(DeliveryUpdate {
                        destination: o.destination.name.clone(),
                        state: DeliveryState::Delivered,
                        idempotency_key: o.key,
                        response_status: sent.status.map(i64::from),
                        last_error: None,
                    });
                    let mut a = self.audit(
                        message_id,
                        AuditAction::Delivered,
                        Some(&o.destination),
                        None,
                    );
                    a.fields = fields;
                    audits.push(a);
                }
                Err(err) => {
                    updates.push(DeliveryUpdate {
                        destination: o.destination.name.clone(),
                        state: if err.is_transient() {
                            DeliveryState::Retrying
                        } else {
                            DeliveryState::Failed
                        },
                        idempotency_key: o.key,
                        response_status: err.status.map(i64::from),
                        last_error: Some(err.reason()),
                    });
                    errors.push((o.destination, err));
                }
            }
        }
        // Retry while anything transient remains and tiers are left; a permanent
        // failure alone parks at once.
        let disposition = match errors
            .iter()
            .find(|(_, e)| e.is_transient())
            .or(errors.first())
        {
            None => Disposition::Done {
                message_id: message_id.into(),
                settled: Settled::Delivered,
            },
            Some((dest, err)) => {
                let mut err = err.clone();
                if errors.len() > 1 {
                    let all: Vec<String> = errors
                        .iter()
                        .map(|(d, e)| format!("{}: {}", d.name, e.reason()))
                        .collect();
                    err.message = all.join("; ");
                    err.field = None;
                }
                self.decide(message_id, attempts, err, Some(dest))
            }
        };
        self.record(message_id, attempts, updates, audits, disposition, None)
            .await
    }

    /// A message the front refused: withheld by policy, or failed before any delivery.
    async fn refused(&self, r: Refusal) -> Disposition {
        if r.error.class == ErrorClass::Policy {
            self.engine
                .metrics
                .withheld
                .get_or_create(&metrics::flow(self.flow().as_str()))
                .inc();
            let d = Disposition::Done {
                message_id: r.message_id.clone(),
                settled: Settled::Withheld,
            };
            return self
                .record(
                    &r.message_id,
                    r.attempts,
                    Vec::new(),
                    Vec::new(),
                    d,
                    Some(r.error.reason()),
                )
                .await;
        }
        self.failed(&r.message_id, r.attempts, r.error, None).await
    }

    async fn failed(
        &self,
        message_id: &str,
        attempts: u32,
        error: GatewayError,
        destination: Option<&Arc<Destination>>,
    ) -> Disposition {
        let d = self.decide(message_id, attempts, error, destination);
        self.record(message_id, attempts, Vec::new(), Vec::new(), d, None)
            .await
    }

    /// Retry (transient, tiers left) or park, counted under the destination.
    fn decide(
        &self,
        message_id: &str,
        attempts: u32,
        mut error: GatewayError,
        destination: Option<&Arc<Destination>>,
    ) -> Disposition {
        let e = &self.engine;
        let label = metrics::dest(
            self.flow().as_str(),
            destination.map_or(metrics::NO_DESTINATION, |d| d.name.as_str()),
        );
        match decide(&e.tiers, attempts, &error) {
            Decision::Retry { tier } => {
                e.metrics.retried.get_or_create(&label).inc();
                Disposition::Retry {
                    message_id: message_id.into(),
                    attempts,
                    tier,
                    error,
                }
            }
            Decision::Park { gave_up } => {
                if gave_up {
                    error.message = format!("gave up after {attempts} attempts: {}", error.message);
                }
                e.metrics.parked.get_or_create(&label).inc();
                Disposition::Park {
                    message_id: message_id.into(),
                    attempts,
                    error,
                    mapping: destination.map(|d| d.mapping_version()).unwrap_or_default(),
                }
            }
        }
    }

    /// Writes the outcome, its delivery rows and audit rows in one store write, then
    /// returns the disposition for the source to act on.
    async fn record(
        &self,
        message_id: &str,
        attempts: u32,
        updates: Vec<DeliveryUpdate>,
        mut audits: Vec<AuditEntry>,
        disposition: Disposition,
        withheld_reason: Option<String>,
    ) -> Disposition {
        let (state, action, error) = match &disposition {
            Disposition::Done {
                settled: Settled::Withheld,
                ..
            } => (MessageState::Withheld, Some(AuditAction::Withheld), None),
            Disposition::Done { .. } => (MessageState::Delivered, None, None),
            Disposition::Retry { error, .. } => (
                MessageState::Retrying,
                Some(AuditAction::Retry),
                Some(error),
            ),
            Disposition::Park { error, .. } => {
                (MessageState::Parked, Some(AuditAction::Parked), Some(error))
            }
        };
        if let Some(action) = action {
            let detail = error.map(GatewayError::reason).or(withheld_reason);
            audits.push(self.audit(message_id, action, None, detail));
        }
        let w = Write::Outcome {
            flow: self.flow().as_str().into(),
            message_id: message_id.into(),
            state,
            attempts: attempts.into(),
            error: error.map(|e| ErrorSummary {
                class: e.class.as_str().into(),
                stage: e.stage.as_str().into(),
                reason: e.reason(),
            }),
            deliveries: updates,
            audit: audits,
        };
        match self.engine.store.write(w).await {
            Ok(()) => disposition,
            // Unrecorded: keep the message moving through the retry tiers rather than
            // acknowledge it. If it was delivered, the retry finds the destination's own
            // idempotency (key, conditional create) or the store's record.
            Err(_) if matches!(disposition, Disposition::Retry { .. }) => disposition,
            Err(e) => self.decide(message_id, attempts, e, None),
        }
    }

    fn audit(
        &self,
        message_id: &str,
        action: AuditAction,
        dest: Option<&Destination>,
        detail: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            actor: self.engine.actor.clone(),
            action,
            flow: self.flow().as_str().into(),
            message_id: message_id.into(),
            destination: dest.map(|d| d.name.clone()),
            fields: Vec::new(),
            agreement: dest.and_then(|d| d.agreement.clone()),
            detail,
        }
    }
}

fn log(flow: Flow, d: &Disposition) {
    let flow = flow.as_str();
    match d {
        Disposition::Done {
            message_id,
            settled,
        } => info!(flow, message_id, outcome = ?settled, "message settled"),
        Disposition::Retry {
            message_id,
            attempts,
            tier,
            error,
        } => warn!(
            flow, message_id, attempts, tier, stage = error.stage.as_str(),
            error = %error.reason(), "will retry"
        ),
        Disposition::Park {
            message_id,
            attempts,
            error,
            mapping,
        } => warn!(
            flow, message_id, attempts, mapping, stage = error.stage.as_str(),
            class = error.class.as_str(), error = %error.reason(), "parked"
        ),
    }
}
