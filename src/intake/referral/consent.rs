//! Consent, read from every Consent in the referral's Bundle and failing closed: apart
//! because it decides what may be shared, not just what the referral says.

use serde_json::Value;

use super::Decoder;
use super::datatypes::coding;
use crate::error::{GatewayError, Result, Stage};
use crate::intake::json::Node;
use crate::model::{ConsentInfo, ConsentState};

impl<'a> Decoder<'_, 'a> {
    /// Consent to share with the social prescribing service, failing closed: every
    /// Consent in the Bundle counts, linked to the referral or not. Any that denies
    /// (top-level `deny`, or status rejected / inactive / entered-in-error) declines the
    /// referral — a permit never outweighs a deny. A Consent that cannot be tied to
    /// this referral's patient (not named by `supportingInfo`, and its `patient` is
    /// neither this Patient nor carries its NHS / CHI number) stops the referral with a
    /// reason rather than be guessed about. Otherwise a permit whose nested provision
    /// denies something is "codes-only", a plain permit "full"; none is "not-recorded".
    pub(super) fn consent(&self, sr: &Node<'a>, patient: &Node<'a>) -> Result<ConsentInfo> {
        let mut linked = Vec::new();
        let mut consents = Vec::new();
        for info in sr.items("supportingInfo")? {
            if let Some(r) = self.index.resolve(sr, &info)?
                && r.resource_type() == Some("Consent")
            {
                linked.push(r.path.clone());
                // A contained Consent is not among the Bundle's entries.
                if !self
                    .index
                    .of_type("Consent")
                    .iter()
                    .any(|c| c.path == r.path)
                {
                    consents.push(r);
                }
            }
        }
        consents.extend(self.index.of_type("Consent").into_iter().cloned());

        let mut permits = Vec::new();
        let mut untied = None;
        for c in &consents {
            let status = c.req_str("status")?;
            let top = c
                .get("provision")
                .map(|p| p.str("type"))
                .transpose()?
                .flatten();
            if matches!(status, "rejected" | "inactive" | "entered-in-error") || top == Some("deny")
            {
                return Ok(ConsentInfo {
                    state: ConsentState::Declined,
                    recorded_at: c.string("dateTime")?,
                    purposes: Vec::new(),
                });
            }
            let tied = linked.contains(&c.path) || self.about_patient(c, "patient", patient)?;
            if !tied {
                untied.get_or_insert(c.path.clone());
            } else if status == "active" {
                permits.push(c);
            }
        }
        if let Some(path) = untied {
            return Err(GatewayError::invalid(
                Stage::Policy,
                path,
                "this Consent cannot be tied to the referral's patient (the ServiceRequest does \
                 not name it in supportingInfo and its patient is not the referred Patient), so \
                 what may be shared is not known: nothing was sent; check the Consent at the \
                 practice, then replay",
            ));
        }
        let Some(first) = permits.first() else {
            return Ok(ConsentInfo::default());
        };
        let mut nested_deny = false;
        let mut purposes = Vec::new();
        for c in &permits {
            if let Some(p) = c.get("provision") {
                nested_deny |= p
                    .items("provision")?
                    .iter()
                    .any(|n| n.value.get("type").and_then(Value::as_str) == Some("deny"));
                for purpose in p.items("purpose")? {
                    purposes.push(coding(&purpose)?);
                }
            }
            let mut concepts = c.items("category")?;
            concepts.extend(c.get("scope"));
            for cc in concepts {
                for coded in cc.items("coding")? {
                    purposes.push(coding(&coded)?);
                }
            }
        }
        Ok(ConsentInfo {
            state: if nested_deny {
                ConsentState::CodesOnly
            } else {
                ConsentState::Full
            },
            recorded_at: first.string("dateTime")?,
            purposes,
        })
    }

    /// Whether a resource's `key` (a Consent's `patient`, a Flag's `subject`) is this
    /// Patient: the same resource, or an identifier the Patient also carries.
    pub(super) fn about_patient(
        &self,
        consent: &Node<'a>,
        key: &str,
        patient: &Node<'a>,
    ) -> Result<bool> {
        let Some(pref) = consent.get(key) else {
            return Ok(false);
        };
        if let Ok(Some(p)) = self.index.resolve(consent, &pref) {
            return Ok(p.path == patient.path);
        }
        let Some(id) = pref.get("identifier") else {
            return Ok(false);
        };
        let (system, value) = (id.str("system")?, id.str("value")?);
        Ok(patient.items("identifier")?.iter().any(|pid| {
            value.is_some()
                && pid.value.get("value").and_then(Value::as_str) == value
                && pid.value.get("system").and_then(Value::as_str) == system
        }))
    }
}
