//! Records the dataset's facts as referrals are taken and events planned: the fronts
//! hand each referral and event here and add the write to what their plan remembers, so
//! the facts land in the same store transaction as the message itself.

use std::sync::Arc;

use super::deprivation::Deprivation;
use super::facts::{EventFacts, ReferralFacts};
use super::pseudonym::PersonRef;
use crate::model::Referral;
use crate::model::identifiers::IdentifierKind;
use crate::model::message_back::MessageBack;
use crate::store::Write;

/// What the fronts record facts with: the store's link key (person references) and the
/// operator's deprivation lookup, when configured.
pub struct Recorder {
    link_key: Vec<u8>,
    deprivation: Option<Arc<Deprivation>>,
}

impl Recorder {
    pub fn new(link_key: Vec<u8>, deprivation: Option<Arc<Deprivation>>) -> Recorder {
        Recorder {
            link_key,
            deprivation,
        }
    }

    /// The facts of a referral taken today, shared as `consent` allowed (its recorded
    /// state, or the deployment's rule when none was recorded).
    pub fn referral(
        &self,
        message_id: &str,
        programme: &str,
        r: &Referral,
        consent: crate::model::ConsentState,
    ) -> Write {
        let mut facts = ReferralFacts::of(
            r,
            chrono::Utc::now().date_naive(),
            self.deprivation.as_deref(),
        );
        facts.consent = consent.as_str().to_string();
        let p = &r.person_demographics;
        let person_ref = match (&p.nhs_number, &p.chi_number) {
            (Some(n), _) => Some(PersonRef::of(&self.link_key, IdentifierKind::Nhs, n)),
            (None, Some(c)) => Some(PersonRef::of(&self.link_key, IdentifierKind::Chi, c)),
            (None, None) => None,
        };
        Write::DatasetReferral {
            message_id: message_id.to_string(),
            programme: programme.to_string(),
            referred_on: facts.referred_on.clone(),
            person_ref: person_ref.map(|r| r.as_str().to_string()),
            facts: serde_json::to_string(&facts).unwrap_or_default(),
        }
    }

    /// The facts of an event about referral `referral_id`.
    pub fn event(&self, event_message_id: &str, referral_id: &str, ev: &MessageBack) -> Write {
        Write::DatasetEvent {
            event_message_id: event_message_id.to_string(),
            referral_id: referral_id.to_string(),
            facts: serde_json::to_string(&EventFacts::of(ev)).unwrap_or_default(),
        }
    }

    /// The person reference of a number (for an opt-out list).
    pub fn person_ref(&self, kind: IdentifierKind, number: &str) -> PersonRef {
        PersonRef::of(&self.link_key, kind, number)
    }
}
