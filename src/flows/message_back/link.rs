//! Linking an event to the one referral it is about, among those its sender was sent.

use super::{MessageBackFront, Scope};
use crate::error::{GatewayError, Result, Stage};
use crate::model::identifiers::{IdentifierKind, patient_key};
use crate::model::message_back::MessageBack;
use crate::secret::seal::Origin;
use crate::store::ReferralRecord;

impl MessageBackFront {
    /// The referral the event names, among those delivered to the sender's
    /// destinations: by message id, by the platform's own reference, or by the
    /// patient's number in the programme — exactly one, or the event is parked.
    pub(super) async fn link(&self, ev: &MessageBack, scope: &Scope<'_>) -> Result<ReferralRecord> {
        let link = &ev.referral;
        let unknown = |how: &str| {
            GatewayError::invalid(
                Stage::Policy,
                "referral",
                format!(
                    "no referral the gateway sent to {} matches its {how}: nothing was written; \
                     check the reference the platform holds, then replay",
                    scope.origin.describe()
                ),
            )
        };
        if let Some(id) = &link.message_id {
            let r = self
                .store
                .referral(id)
                .await?
                .ok_or_else(|| unknown("message_id"))?;
            return match self.sent_to(&r, scope).await? {
                true => Ok(r),
                false => Err(self.not_sent_to(&r, scope).await?),
            };
        }
        if matches!(scope.origin, Origin::Poller(_) | Origin::Gateway) {
            return Err(unknown(
                "record (a poller's event names the referral by message_id)",
            ));
        }
        if let Some(reference) = &link.platform_reference {
            if scope.references.is_empty() {
                return Err(no_references(scope));
            }
            let ids = self
                .store
                .referral_by_platform_reference(reference, scope.references)
                .await?;
            let mut found = Vec::new();
            for id in &ids {
                if let Some(r) = self.store.referral(id).await?
                    && self.sent_to(&r, scope).await?
                {
                    found.push(r);
                }
            }
            return match found.len() {
                1 => Ok(found.remove(0)),
                0 => Err(unknown("platform_reference")),
                _ => Err(GatewayError::invalid(
                    Stage::Policy,
                    "referral.platform_reference",
                    "more than one referral has this platform reference; nothing was written",
                )),
            };
        }
        let programme = link.programme.as_deref().unwrap_or_default();
        let patient = link.patient.clone().unwrap_or_default();
        let key = match (&patient.nhs_number, &patient.chi_number) {
            (Some(n), _) => patient_key(IdentifierKind::Nhs, n),
            (None, Some(c)) => patient_key(IdentifierKind::Chi, c),
            (None, None) => return Err(unknown("patient")),
        };
        let mut open = Vec::new();
        let mut elsewhere = None;
        for (r, closed) in self.store.referrals_for_patient(programme, &key).await? {
            if closed {
                continue;
            }
            if self.sent_to(&r, scope).await? {
                open.push(r);
            } else if elsewhere.is_none() {
                elsewhere = Some(r);
            }
        }
        match (open.len(), elsewhere) {
            (1, _) => Ok(open.remove(0)),
            (0, Some(r)) => Err(self.not_sent_to(&r, scope).await?),
            (0, None) => Err(unknown("patient's number in the programme")),
            (n, _) => Err(GatewayError::invalid(
                Stage::Policy,
                "referral",
                format!(
                    "{n} open referrals in this programme have the patient's number: name the referral \
                     (message_id or platform_reference); nothing was written"
                ),
            )),
        }
    }
    /// Whether the referral was delivered to one of the destinations in scope.
    async fn sent_to(&self, r: &ReferralRecord, scope: &Scope<'_>) -> Result<bool> {
        // The gateway closes only referrals it sent, named by their id.
        if *scope.origin == Origin::Gateway {
            return Ok(true);
        }
        Ok(self
            .store
            .delivered_to(&r.message_id)
            .await?
            .iter()
            .any(|d| scope.destinations.contains(d)))
    }
}

impl MessageBackFront {
    /// Why an event about a referral not delivered to its sender is not written: while
    /// the referral is still being sent (the platform may answer before the gateway has
    /// recorded its delivery) the event waits and is tried again; once the referral is
    /// settled without reaching the sender, the event is refused.
    async fn not_sent_to(&self, r: &ReferralRecord, scope: &Scope<'_>) -> Result<GatewayError> {
        if self.store.referral_in_flight(&r.message_id).await? {
            return Ok(GatewayError::transient(
                Stage::Policy,
                "the referral's delivery to the platform is not yet recorded (it is still being \
                 sent): the event waits and is tried again",
            )
            .at("referral"));
        }
        Ok(not_sent_to(scope))
    }
}

fn not_sent_to(scope: &Scope<'_>) -> GatewayError {
    let mut names: Vec<&str> = scope.destinations.iter().map(String::as_str).collect();
    names.sort();
    GatewayError::invalid(
        Stage::Policy,
        "referral",
        format!(
            "{} asked about a referral the gateway did not send to it (it was not delivered to \
             any of its destinations: {}): nothing was written",
            scope.origin.describe(),
            names.join(", ")
        ),
    )
}

fn no_references(scope: &Scope<'_>) -> GatewayError {
    GatewayError::invalid(
        Stage::Policy,
        "referral.platform_reference",
        format!(
            "{} has no destination that records the references it returns: nothing was written",
            scope.origin.describe()
        ),
    )
}
