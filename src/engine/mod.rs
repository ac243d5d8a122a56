//! The attempt engine, shared by every flow: a front plans a message (what to send
//! where); the engine looks up what was already done, sends to the rest at once,
//! decides retry / park / done, records the outcome, its deliveries and audit rows in
//! one store write, and hands the source a [`Disposition`] to act on. Sources (AMQP,
//! spool, HTTP ingress) only move bytes.

mod decide;
mod inflight;
pub mod metrics;
mod settings;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tracing::{info, warn};

pub use decide::{Decision, choose_tier, decide, defer_tier};
use inflight::InFlight;
mod contract;
pub use crate::model::state::{AuditAction, DeliveryState, MessageState};
pub use contract::{Decoded, DynFront, Front, Inbound, Plan, Planned, Refusal};
pub use settings::{EngineSettings, RetryConfig};
pub use status::SourceStatus;

use crate::deliver::breaker::{Gate, Transition, pauses};
use crate::deliver::{Destination, Job, Journal, Sent, idempotency_key};
use crate::error::{ErrorClass, GatewayError, Stage};
use crate::model::Flow;
use crate::store::writer_types::{Claim, DeliveryUpdate, ErrorSummary};
use crate::store::{AuditEntry, Store, Write, now_ms};
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

/// One destination's part in an attempt.
enum Outcome {
    /// Sent (or failed) now.
    Tried {
        destination: Arc<Destination>,
        key: String,
        result: crate::error::Result<(Sent, Vec<String>)>,
    },
    /// Not sent now: another copy holds it, or the destination is paused. `claimed`
    /// when this copy holds the claim (released with the outcome).
    Waiting {
        destination: Arc<Destination>,
        why: GatewayError,
        claimed: bool,
    },
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
                    }) => self.withheld(&message_id, attempts, reason).await,
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

    async fn attempt(&self, plan: Plan, source: &str) -> Disposition {
        let flow = self.flow();
        let e = &self.engine;
        let known = match e.store.known(flow.as_str(), &plan.message_id).await {
            Ok(k) => k,
            Err(err) => {
                return self
                    .failed(&plan.message_id, plan.attempts, err, None)
                    .await;
            }
        };
        if let Some(first) = &known.digest
            && *first != plan.digest
        {
            let err = GatewayError::permanent(
                Stage::Envelope,
                "same id, different content: this message id was first received with other \
                 content; this copy is parked and nothing was sent (check which is right, then \
                 send the correction under a new id)",
            )
            .at("ce-id");
            return self
                .failed(&plan.message_id, plan.attempts, err, None)
                .await;
        }
        let mut unknown = Vec::new();
        let mut pending = Vec::new();
        for d in &plan.targets {
            match known.state(&d.name) {
                Some(DeliveryState::Delivered) => {}
                Some(DeliveryState::Unknown) => unknown.push(d.clone()),
                _ => pending.push(d.clone()),
            }
        }
        if pending.is_empty() && unknown.is_empty() {
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
            let settled = Write::Settled {
                flow: flow.as_str().into(),
                message_id: plan.message_id.clone(),
                audit,
            };
            if let Err(err) = e.store.write(settled).await {
                warn!(message_id = plan.message_id, error = %err, "could not audit a duplicate");
            }
            return Disposition::Done {
                message_id: plan.message_id,
                settled: Settled::Duplicate,
            };
        }
        let mut received = vec![Write::Received {
            flow: flow.as_str().into(),
            message_id: plan.message_id.clone(),
            source: source.to_string(),
            body_sha256: plan.digest.clone(),
        }];
        received.extend(plan.remember.iter().cloned());
        if let Err(err) = e.store.write_nowait(Write::Many(received)).await {
            return self
                .failed(&plan.message_id, plan.attempts, err, None)
                .await;
        }
        // A paused destination waits without being claimed; the others are claimed
        // before anything is sent.
        let mut outcomes = Vec::new();
        let mut to_claim = Vec::new();
        for d in pending {
            match d.breaker.gate(e.probe_every) {
                Gate::Closed { since, reason } => outcomes.push(Outcome::Waiting {
                    why: GatewayError::transient(
                        Stage::Deliver,
                        format!(
                            "destination {} is paused since {since} ({reason}); its messages wait until a probe succeeds",
                            d.name
                        ),
                    )
                    .with_retry_after(Some(e.probe_every)),
                    destination: d,
                    claimed: false,
                }),
                Gate::Open | Gate::Probe => to_claim.push(d),
            }
        }
        let claimed = if to_claim.is_empty() {
            Vec::new()
        } else {
            let claim = Claim {
                flow: flow.as_str().into(),
                message_id: plan.message_id.clone(),
                destinations: to_claim
                    .iter()
                    .map(|d| {
                        (
                            d.name.clone(),
                            idempotency_key(flow.as_str(), &plan.message_id, &d.name),
                        )
                    })
                    .collect(),
                owner: e.owner.clone(),
                expires_at: now_ms() + e.claim_ttl.as_millis() as i64,
            };
            match e.store.claim(claim).await {
                Ok(c) => c,
                Err(err) => {
                    return self
                        .failed(&plan.message_id, plan.attempts, err, None)
                        .await;
                }
            }
        };
        let mut sending = Vec::new();
        for d in to_claim {
            if claimed.contains(&d.name) {
                sending.push(d);
            } else {
                outcomes.push(Outcome::Waiting {
                    why: GatewayError::transient(
                        Stage::Deliver,
                        format!(
                            "another copy of this message is being sent to {} (by this or another instance); this copy waits",
                            d.name
                        ),
                    ),
                    destination: d,
                    claimed: false,
                });
            }
        }
        outcomes.extend(join_all(sending.into_iter().map(|d| self.send_one(&plan, d))).await);
        for d in unknown {
            outcomes.push(Outcome::Tried {
                key: idempotency_key(flow.as_str(), &plan.message_id, &d.name),
                result: Err(unknown_before(&d)),
                destination: d,
            });
        }
        self.settle(&plan.message_id, plan.attempts, outcomes).await
    }

    /// Renders and sends to one claimed destination; the field names sent, for the audit.
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
                journal: Journal {
                    store: &self.engine.store,
                    flow,
                    message_id: &plan.message_id,
                    destination: &destination.name,
                },
            };
            let sent = destination.send(&job).await?;
            Ok((sent, rendered.field_names()))
        }
        .await;
        self.breaker(&destination, result.as_ref().map(drop));
        match result {
            // The destination refuses everyone until a person acts: this message waits
            // with the others instead of being parked.
            Err(err) if pauses(&err) && !err.sent => Outcome::Waiting {
                why: GatewayError::transient(
                    Stage::Deliver,
                    format!(
                        "destination {} is paused ({}); its messages wait until a probe succeeds",
                        destination.name,
                        err.reason()
                    ),
                )
                .with_retry_after(Some(self.engine.probe_every)),
                destination,
                claimed: true,
            },
            result => Outcome::Tried {
                destination,
                key,
                result,
            },
        }
    }

    fn breaker(&self, d: &Destination, result: Result<(), &GatewayError>) {
        let labels = metrics::dest(self.flow().as_str(), &d.name);
        match d.breaker.record(result) {
            Some(Transition::Paused(reason)) => {
                self.engine.metrics.paused.get_or_create(&labels).set(1);
                warn!(
                    destination = d.name,
                    reason,
                    "destination paused: its messages wait; one is sent as a probe every so often"
                );
            }
            Some(Transition::Resumed) => {
                self.engine.metrics.paused.get_or_create(&labels).set(0);
                info!(destination = d.name, "destination resumed");
            }
            None => {}
        }
    }

    /// Records an attempt: delivered when every destination has it, else one error
    /// naming each destination that does not.
    async fn settle(&self, message_id: &str, attempts: u32, outcomes: Vec<Outcome>) -> Disposition {
        let flow = self.flow();
        let m = &self.engine.metrics;
        let mut updates = Vec::new();
        let mut audits = Vec::new();
        let mut errors: Vec<(Arc<Destination>, GatewayError)> = Vec::new();
        let mut waiting: Vec<(Arc<Destination>, GatewayError)> = Vec::new();
        for o in outcomes {
            match o {
                Outcome::Waiting {
                    destination,
                    why,
                    claimed,
                } => {
                    if claimed {
                        // Release the claim: the next copy may probe.
                        updates.push(DeliveryUpdate {
                            destination: destination.name.clone(),
                            state: DeliveryState::Retrying,
                            idempotency_key: idempotency_key(
                                flow.as_str(),
                                message_id,
                                &destination.name,
                            ),
                            response_status: why.status.map(i64::from),
                            last_error: Some(why.reason()),
                        });
                    }
                    waiting.push((destination, why));
                }
                Outcome::Tried {
                    destination,
                    key,
                    result: Ok((sent, fields)),
                } => {
                    m.delivered
                        .get_or_create(&metrics::dest(flow.as_str(), &destination.name))
                        .inc();
                    updates.push(DeliveryUpdate {
                        destination: destination.name.clone(),
                        state: DeliveryState::Delivered,
                        idempotency_key: key,
                        response_status: sent.status.map(i64::from),
                        last_error: None,
                    });
                    let mut a =
                        self.audit(message_id, AuditAction::Delivered, Some(&destination), None);
                    a.fields = fields;
                    audits.push(a);
                }
                Outcome::Tried {
                    destination,
                    key,
                    result: Err(err),
                } => {
                    let err = outcome_of(&destination, err);
                    let state = if err.is_unknown() {
                        DeliveryState::Unknown
                    } else if err.is_transient() {
                        DeliveryState::Retrying
                    } else {
                        DeliveryState::Failed
                    };
                    updates.push(DeliveryUpdate {
                        destination: destination.name.clone(),
                        state,
                        idempotency_key: key,
                        response_status: err.status.map(i64::from),
                        last_error: Some(err.reason()),
                    });
                    errors.push((destination, err));
                }
            }
        }
        let disposition = if errors.is_empty() && waiting.is_empty() {
            Disposition::Done {
                message_id: message_id.into(),
                settled: Settled::Delivered,
            }
        } else if errors.is_empty() {
            // Only waiting: try again later without counting an attempt.
            let (dest, why) = combine(&waiting);
            self.defer(message_id, attempts, why, Some(&dest))
        } else {
            // Retry while anything retryable remains and tiers are left; unknown
            // outcomes and permanent failures alone park at once.
            errors.extend(waiting);
            let (dest, err) = combine(&errors);
            self.decide(message_id, attempts, err, Some(&dest))
        };
        self.record(message_id, attempts, updates, audits, disposition, None)
            .await
    }

    /// A message policy keeps back: settled, nothing sent, the reason recorded.
    async fn withheld(&self, message_id: &str, attempts: u32, reason: String) -> Disposition {
        self.engine
            .metrics
            .withheld
            .get_or_create(&metrics::flow(self.flow().as_str()))
            .inc();
        let d = Disposition::Done {
            message_id: message_id.into(),
            settled: Settled::Withheld,
        };
        self.record(
            message_id,
            attempts,
            Vec::new(),
            Vec::new(),
            d,
            Some(reason),
        )
        .await
    }

    /// A message the front refused: failed before any delivery.
    async fn refused(&self, r: Refusal) -> Disposition {
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

    /// Waits in the tier that covers `why`'s Retry-After (or the first), without
    /// counting an attempt: nothing was tried.
    fn defer(
        &self,
        message_id: &str,
        attempts: u32,
        why: GatewayError,
        destination: Option<&Arc<Destination>>,
    ) -> Disposition {
        let tiers = &self.engine.tiers;
        let Some(tier) = defer_tier(tiers, why.retry_after) else {
            return self.decide(message_id, attempts, why, destination);
        };
        let label = metrics::dest(
            self.flow().as_str(),
            destination.map_or(metrics::NO_DESTINATION, |d| d.name.as_str()),
        );
        self.engine.metrics.retried.get_or_create(&label).inc();
        Disposition::Retry {
            message_id: message_id.into(),
            attempts: attempts.saturating_sub(1),
            tier,
            error: why,
        }
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

/// One error for several destinations: a retryable one leads (so the message retries
/// while any can), and the message names every destination's reason.
fn combine(items: &[(Arc<Destination>, GatewayError)]) -> (Arc<Destination>, GatewayError) {
    let lead = items
        .iter()
        .find(|(_, e)| e.is_transient() && !e.sent)
        .unwrap_or(&items[0]);
    let mut err = lead.1.clone();
    if items.len() > 1 {
        err.message = items
            .iter()
            .map(|(d, e)| format!("{}: {}", d.name, e.reason()))
            .collect::<Vec<_>>()
            .join("; ");
        err.field = None;
    }
    (lead.0.clone(), err)
}

/// A failed send as the engine records it. A request that may have arrived is harmless
/// to resend where the destination de-duplicates; elsewhere its outcome is unknown,
/// and it is parked for a person rather than sent again.
fn outcome_of(d: &Destination, mut err: GatewayError) -> GatewayError {
    if !err.sent || err.is_unknown() {
        return err;
    }
    if d.resends_safely() {
        err.sent = false;
        return err;
    }
    err.class = ErrorClass::Unknown;
    err.message = format!(
        "outcome unknown, so not sent again: {}; check in {} whether it arrived, then run \
         `clw-gateway resolve` (delivered, or resend)",
        err.message, d.name
    );
    err
}

/// An earlier attempt's outcome is still unknown: nothing is sent until a person says.
fn unknown_before(d: &Destination) -> GatewayError {
    let mut e = GatewayError::unknown(
        Stage::Deliver,
        format!(
            "{}: an earlier send's outcome is unknown (it may have arrived); check in {} \
             whether it did, then run `clw-gateway resolve` (delivered, or resend)",
            d.name, d.name
        ),
    );
    e.sent = true;
    e
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
