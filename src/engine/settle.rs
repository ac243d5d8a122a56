//! An attempt's outcome: retry, park or done decided, and recorded with its deliveries
//! and audit rows in one store write.

use std::sync::Arc;

use tracing::{info, warn};

use super::metrics::{self};
use super::*;
use crate::deliver::{Destination, idempotency_key};
use crate::error::{ErrorClass, GatewayError, Stage};
use crate::model::Flow;
use crate::store::writer_types::{DeliveryUpdate, ErrorSummary};
use crate::store::{AuditEntry, Write};

use super::attempt::Outcome;

impl Pipeline {
    /// Records an attempt: delivered when every destination has it, else one error
    /// naming each destination that does not.
    pub(super) async fn settle(
        &self,
        message_id: &str,
        attempts: u32,
        outcomes: Vec<Outcome>,
    ) -> Disposition {
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
    pub(super) async fn withheld(
        &self,
        message_id: &str,
        attempts: u32,
        reason: String,
        remember: Vec<Write>,
    ) -> Disposition {
        if !remember.is_empty()
            && let Err(e) = self.engine.store.write(Write::Many(remember)).await
        {
            return self.failed(message_id, attempts, e, None).await;
        }
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
    pub(super) async fn refused(&self, r: Refusal) -> Disposition {
        self.failed(&r.message_id, r.attempts, r.error, None).await
    }

    pub(super) async fn failed(
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
    pub(super) fn defer(
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
    pub(super) fn decide(
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
    pub(super) async fn record(
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

    pub(super) fn audit(
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
pub(super) fn combine(
    items: &[(Arc<Destination>, GatewayError)],
) -> (Arc<Destination>, GatewayError) {
    let lead = items
        .iter()
        .find(|(_, e)| e.is_transient() && !e.sent)
        .unwrap_or(&items[0]);
    let reasons = items
        .iter()
        .map(|(d, e)| format!("{}: {}", d.name, e.reason()))
        .collect();
    (
        lead.0.clone(),
        GatewayError::combined(lead.1.clone(), reasons),
    )
}

/// A failed send as the engine records it. A request that may have arrived is harmless
/// to resend where the destination de-duplicates; elsewhere its outcome is unknown,
/// and it is parked for a person rather than sent again.
pub(super) fn outcome_of(d: &Destination, mut err: GatewayError) -> GatewayError {
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
pub(super) fn unknown_before(d: &Destination) -> GatewayError {
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

pub(super) fn log(flow: Flow, d: &Disposition) {
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
