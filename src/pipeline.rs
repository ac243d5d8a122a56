//! One pipeline for every source: decode + validate → policy → map → validate output →
//! deliver → record outcome. Sources (AMQP, spool) only move bytes in and act on the
//! returned [`Disposition`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;
use tracing::{info, warn};

use crate::config::Config;
use crate::deliver::{DeliveryRequest, Destination, field_names, idempotency_key};
use crate::error::{ErrorClass, GatewayError, Result, Stage};
use crate::intake::envelope::{ATTEMPT_HEADER, body_digest, check_size};
use crate::intake::{Envelope, Headers, decode_referral};
use crate::mapping::MappingSet;
use crate::metrics::{self, Metrics};
use crate::model::ConsentState;
use crate::policy::apply_consent;
use crate::routing::Routes;
use crate::schema::SchemaSet;
use crate::store::writer_types::{DeliveryUpdate, ErrorSummary};
use crate::store::{AuditEntry, Store, Write};

pub const REFERRAL_FLOW: &str = "referral";
/// Names the payload mapping in parking headers, so a fix can be matched to what failed.
pub const MAPPING_VERSION: &str = "prsb-referral.v1";

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

pub struct Pipeline {
    /// Some destination renders through a mapping (so the canonical JSON is needed).
    any_mapped: bool,
    /// Practice → programme → destinations; None sends every referral to all.
    routes: Option<Routes>,
    consent_not_recorded: ConsentState,
    store: Store,
    metrics: Metrics,
    destinations: Vec<Arc<Destination>>,
    max_bytes: usize,
    tiers: Vec<Duration>,
    actor: String,
}

impl Pipeline {
    pub fn from_config(config: &Config, store: Store, metrics: Metrics) -> Result<Pipeline> {
        let mut schemas = SchemaSet::default();
        let routes = match &config.referrals.routes {
            Some(path) => Some(Routes::load(
                path,
                &config.destinations.keys().cloned().collect(),
            )?),
            None => None,
        };
        // With routes, every destination a programme uses; else the fixed list.
        let names: Vec<String> = match &routes {
            Some(r) => r.destinations().into_iter().collect(),
            None => config.referrals.destinations.clone(),
        };
        let needs_mappings = names
            .iter()
            .filter_map(|n| config.destinations.get(n))
            .any(|d| d.terms().mapping.is_some());
        let mappings = if needs_mappings {
            Some(MappingSet::load(&config.mappings.dir)?)
        } else {
            None
        };
        let destinations = names
            .iter()
            .map(|name| {
                let d = config.destinations.get(name).ok_or_else(|| {
                    GatewayError::invalid(
                        Stage::Config,
                        "referrals.destinations",
                        format!("no destination {name:?}"),
                    )
                })?;
                Destination::build(name, d, &mut schemas, mappings.as_ref())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Pipeline {
            any_mapped: needs_mappings,
            routes,
            consent_not_recorded: config.referrals.consent_not_recorded,
            store,
            metrics,
            destinations,
            max_bytes: config.intake.max_message_bytes,
            tiers: config.retry.tiers.clone(),
            actor: config.gateway.instance.clone(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn retry_tiers(&self) -> &[Duration] {
        &self.tiers
    }

    pub async fn process(&self, inbound: &Inbound) -> Disposition {
        let labels = metrics::flow(REFERRAL_FLOW);
        self.metrics.received.get_or_create(&labels).inc();
        let gauge = self.metrics.in_flight.get_or_create(&labels).clone();
        gauge.inc();
        let started = Instant::now();
        let d = self.process_referral(inbound).await;
        gauge.dec();
        self.metrics
            .latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        match &d {
            Disposition::Done {
                message_id,
                settled,
            } => {
                info!(flow = REFERRAL_FLOW, message_id, outcome = ?settled, "message settled")
            }
            Disposition::Retry {
                message_id,
                attempts,
                tier,
                error,
            } => warn!(
                flow = REFERRAL_FLOW, message_id, attempts, tier, stage = error.stage.as_str(),
                error = %error.reason(), "will retry"
            ),
            Disposition::Park {
                message_id,
                attempts,
                error,
                mapping,
            } => warn!(
                flow = REFERRAL_FLOW, message_id, attempts, mapping, stage = error.stage.as_str(),
                class = error.class.as_str(), error = %error.reason(), "parked"
            ),
        }
        d
    }

    /// The retry tier for a failed attempt, honouring Retry-After; None when tiers are spent.
    pub fn choose_tier(&self, attempts: u32, retry_after: Option<Duration>) -> Option<usize> {
        let base = (attempts as usize).checked_sub(1)?;
        if base >= self.tiers.len() {
            return None;
        }
        Some(match retry_after {
            Some(ra) => (base..self.tiers.len())
                .find(|&i| self.tiers[i] >= ra)
                .unwrap_or(self.tiers.len() - 1),
            None => base,
        })
    }

    async fn process_referral(&self, inbound: &Inbound) -> Disposition {
        let digest = body_digest(&inbound.body);
        let header_id = inbound
            .headers
            .get("ce-id")
            .filter(|s| !s.is_empty())
            .cloned();
        let previous: u32 = inbound
            .headers
            .get(ATTEMPT_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let fallback_id = header_id.clone().unwrap_or_else(|| digest.clone());

        let decoded = check_size(inbound.body.len(), self.max_bytes)
            .and_then(|()| {
                Envelope::from_headers(&inbound.headers, inbound.content_type.as_deref())
            })
            .and_then(|env| Ok((env, decode_referral(&inbound.body)?)));
        let (env, decoded) = match decoded {
            Ok(v) => v,
            Err(e) => return self.finish(&fallback_id, previous + 1, e).await,
        };
        let message_id = env
            .id
            .or(decoded.message_header_id)
            .or(decoded.bundle_id)
            .unwrap_or(digest.clone());
        let attempts = env.previous_attempts + 1;

        let routed: Vec<&Arc<Destination>> = match &self.routes {
            None => self.destinations.iter().collect(),
            Some(r) => {
                let practice = decoded
                    .referral
                    .gp_practice
                    .as_ref()
                    .and_then(|p| p.ods_code.as_deref());
                match r.destinations_for(practice) {
                    Ok(names) => self
                        .destinations
                        .iter()
                        .filter(|d| names.contains(&d.name))
                        .collect(),
                    Err(e) => return self.finish(&message_id, attempts, e).await,
                }
            }
        };
        let delivered = match self.store.delivered_to(REFERRAL_FLOW, &message_id).await {
            Ok(p) => p,
            Err(e) => return self.decide(message_id, attempts, e, "none"),
        };
        let pending: Vec<&Arc<Destination>> = routed
            .into_iter()
            .filter(|d| !delivered.contains(&d.name))
            .collect();
        if pending.is_empty() {
            self.metrics
                .duplicates
                .get_or_create(&metrics::flow(REFERRAL_FLOW))
                .inc();
            let audit = self.audit(
                &message_id,
                "duplicate",
                None,
                Some("already delivered to every destination".into()),
            );
            if let Err(e) = self.store.write(Write::Audit(audit)).await {
                warn!(message_id, error = %e, "could not audit a duplicate");
            }
            return Disposition::Done {
                message_id,
                settled: Settled::Duplicate,
            };
        }
        if let Err(e) = self
            .store
            .write_nowait(Write::Received {
                flow: REFERRAL_FLOW.into(),
                message_id: message_id.clone(),
                source: inbound.source.clone(),
                body_sha256: digest,
            })
            .await
        {
            return self.decide(message_id, attempts, e, "none");
        }

        let release = match apply_consent(decoded.referral, self.consent_not_recorded) {
            Ok(r) => r,
            Err(policy) => return self.finish(&message_id, attempts, policy).await,
        };
        // Mapped destinations read the canonical referral as JSON: make it once.
        let canonical = if self.any_mapped {
            serde_json::to_value(release.referral()).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let results = join_all(pending.iter().map(|d| {
            let key = idempotency_key(REFERRAL_FLOW, &message_id, &d.name);
            let (message_id, referral, canonical) = (&message_id, release.referral(), &canonical);
            async move {
                let r = d.render(message_id, referral, canonical)?;
                let req = DeliveryRequest {
                    message_id,
                    idempotency_key: &key,
                    payload: &r.payload,
                    fields: &r.fields,
                    person: &r.person,
                };
                d.deliver(&req)
                    .await
                    .map(|ok| (ok, field_names(&r.payload)))
            }
        }))
        .await;

        let mut updates = Vec::new();
        let mut audits = Vec::new();
        let mut errors = Vec::new();
        for (d, r) in pending.iter().zip(results) {
            let key = idempotency_key(REFERRAL_FLOW, &message_id, &d.name);
            match r {
                Ok((ok, names)) => {
                    self.metrics
                        .delivered
                        .get_or_create(&metrics::dest(REFERRAL_FLOW, &d.name))
                        .inc();
                    updates.push(DeliveryUpdate {
                        destination: d.name.clone(),
                        state: "delivered".into(),
                        idempotency_key: key,
                        response_status: ok.status.map(i64::from),
                        last_error: None,
                    });
                    let mut a = self.audit(&message_id, "delivered", Some(d), None);
                    a.fields = names;
                    audits.push(a);
                }
                Err(e) => {
                    updates.push(DeliveryUpdate {
                        destination: d.name.clone(),
                        state: if e.is_transient() {
                            "retrying"
                        } else {
                            "failed"
                        }
                        .into(),
                        idempotency_key: key,
                        response_status: None,
                        last_error: Some(e.reason()),
                    });
                    errors.push((d.name.clone(), e));
                }
            }
        }
        self.finish_deliveries(&message_id, attempts, updates, audits, errors)
            .await
    }

    /// Records an attempt that reached the destinations: delivered when every one
    /// succeeded, else one error naming each failing destination.
    async fn finish_deliveries(
        &self,
        message_id: &str,
        attempts: u32,
        updates: Vec<DeliveryUpdate>,
        audits: Vec<AuditEntry>,
        errors: Vec<(String, GatewayError)>,
    ) -> Disposition {
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
            Some((dest, e)) => {
                let mut e = e.clone();
                if errors.len() > 1 {
                    let all: Vec<String> = errors
                        .iter()
                        .map(|(d, e)| format!("{d}: {}", e.reason()))
                        .collect();
                    e.message = all.join("; ");
                    e.field = None;
                }
                self.decide(message_id.into(), attempts, e, dest)
            }
        };
        self.record(message_id, attempts, updates, audits, disposition, None)
            .await
    }

    /// Records a failure that came before any delivery (intake, policy).
    async fn finish(&self, message_id: &str, attempts: u32, error: GatewayError) -> Disposition {
        if error.class == ErrorClass::Policy {
            self.metrics
                .withheld
                .get_or_create(&metrics::flow(REFERRAL_FLOW))
                .inc();
            let d = Disposition::Done {
                message_id: message_id.into(),
                settled: Settled::Withheld,
            };
            return self
                .record(
                    message_id,
                    attempts,
                    Vec::new(),
                    Vec::new(),
                    d,
                    Some(error.reason()),
                )
                .await;
        }
        let d = self.decide(message_id.into(), attempts, error, "none");
        self.record(message_id, attempts, Vec::new(), Vec::new(), d, None)
            .await
    }

    /// Retry (transient, tiers left) or park, counted under `destination`.
    fn decide(
        &self,
        message_id: String,
        attempts: u32,
        mut error: GatewayError,
        destination: &str,
    ) -> Disposition {
        let label = metrics::dest(REFERRAL_FLOW, destination);
        match (
            error.is_transient(),
            self.choose_tier(attempts, error.retry_after),
        ) {
            (true, Some(tier)) => {
                self.metrics.retried.get_or_create(&label).inc();
                Disposition::Retry {
                    message_id,
                    attempts,
                    tier,
                    error,
                }
            }
            (transient, _) => {
                if transient {
                    error.message = format!("gave up after {attempts} attempts: {}", error.message);
                }
                self.metrics.parked.get_or_create(&label).inc();
                Disposition::Park {
                    message_id,
                    attempts,
                    error,
                    mapping: self.mapping_of(destination),
                }
            }
        }
    }

    /// The mapping id a destination renders with (the PRSB payload's when none, and for
    /// failures before any destination).
    fn mapping_of(&self, destination: &str) -> String {
        self.destinations
            .iter()
            .find(|d| d.name == destination)
            .and_then(|d| d.mapping_version())
            .unwrap_or_else(|| MAPPING_VERSION.to_string())
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
            } => ("withheld", Some("withheld"), None),
            Disposition::Done { .. } => ("delivered", None, None),
            Disposition::Retry { error, .. } => ("retrying", Some("retry"), Some(error)),
            Disposition::Park { error, .. } => ("parked", Some("parked"), Some(error)),
        };
        if let Some(action) = action {
            let detail = error.map(GatewayError::reason).or(withheld_reason);
            audits.push(self.audit(message_id, action, None, detail));
        }
        let w = Write::Outcome {
            flow: REFERRAL_FLOW.into(),
            message_id: message_id.into(),
            state: state.into(),
            attempts: attempts.into(),
            error: error.map(|e| ErrorSummary {
                class: e.class.as_str().into(),
                stage: e.stage.as_str().into(),
                reason: e.reason(),
            }),
            deliveries: updates,
            audit: audits,
        };
        match self.store.write(w).await {
            Ok(()) => disposition,
            // Unrecorded: keep the message moving through the retry tiers rather than
            // acknowledge it. If it was delivered, the retry re-sends with the same
            // Idempotency-Key, which the receiver drops.
            Err(_) if matches!(disposition, Disposition::Retry { .. }) => disposition,
            Err(e) => self.decide(message_id.into(), attempts, e, "none"),
        }
    }

    fn audit(
        &self,
        message_id: &str,
        action: &str,
        dest: Option<&Destination>,
        detail: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            actor: self.actor.clone(),
            action: action.into(),
            flow: REFERRAL_FLOW.into(),
            message_id: message_id.into(),
            destination: dest.map(|d| d.name.clone()),
            fields: Vec::new(),
            agreement: dest.and_then(|d| d.agreement.clone()),
            detail,
        }
    }
}
