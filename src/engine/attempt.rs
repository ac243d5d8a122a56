//! One attempt at a plan: what each destination already has, claims, the sends at
//! once, and the circuit breaker told of each answer.

use std::sync::Arc;

use futures_util::future::join_all;
use tracing::{info, warn};

use super::metrics;
use super::settle::unknown_before;
use super::*;
use crate::deliver::breaker::{Gate, Transition, pauses};
use crate::deliver::{Destination, Job, Journal, Sent, idempotency_key};
use crate::error::{GatewayError, Stage};
use crate::store::writer_types::Claim;
use crate::store::{Write, now_ms};

/// One destination's part in an attempt.
pub(super) enum Outcome {
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
    pub(super) async fn attempt(&self, plan: Plan, source: &str) -> Disposition {
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
    pub(super) async fn send_one(&self, plan: &Plan, destination: Arc<Destination>) -> Outcome {
        let flow = self.flow();
        let key = idempotency_key(flow.as_str(), &plan.message_id, &destination.name);
        let result = async {
            let operation = plan.operation.as_deref();
            if let Some(op) = operation
                && !destination.takes(op.change)
            {
                return Err(crate::deliver::cannot_take(
                    &destination.name,
                    destination.kind,
                    op,
                ));
            }
            let rendered = destination.render_for(&plan.canonical, &plan.message_id, operation)?;
            let job = Job {
                operation,
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

    pub(super) fn breaker(&self, d: &Destination, result: Result<(), &GatewayError>) {
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
}
