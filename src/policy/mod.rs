//! Policy: what may leave. Consent decides whether anything is sent and whether
//! narrative may travel with the codes.

pub mod prsb;
pub mod read2;
pub mod routing;

use serde::Deserialize;

use crate::model::{ConsentInfo, ConsentState, Referral};

/// A code the deployment lists as meaning "consent to share with a social prescribing
/// service" when a Consent's scope, category or purpose carries it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRef {
    pub system: String,
    pub code: String,
}

/// A recorded permit counts only when one of its scope, category or purpose codes is
/// listed in `covers`: no national code says "consent to share with a social
/// prescribing service", so a Consent for something else (information access for
/// government purposes, say) is not read as this one. Such a permit leaves the consent
/// "not recorded" (configuration decides), with the reason for the audit. A deny is
/// never second-guessed.
pub fn read_consent(consent: &mut ConsentInfo, covers: &[CodeRef]) -> Option<String> {
    if !matches!(consent.state, ConsentState::Full | ConsentState::CodesOnly) {
        return None;
    }
    let listed = consent.purposes.iter().any(|p| {
        covers.iter().any(|c| {
            p.system.as_deref() == Some(c.system.as_str())
                && p.code.as_deref() == Some(c.code.as_str())
        })
    });
    if listed {
        return None;
    }
    let was = consent.state;
    consent.state = ConsentState::NotRecorded;
    Some(format!(
        "an active Consent ({}) was found, but none of its scope, category or purpose codes is \
         listed in referrals.consent_covers as covering sharing with a social prescribing \
         service: read as not recorded (referrals.consent_not_recorded applies)",
        was.as_str()
    ))
}

/// What consent allows for one referral.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// Send it as is.
    Full(Referral),
    /// Send it with every free-text item removed.
    CodesOnly(Referral),
    /// Send nothing (consent declined): an outcome, recorded as withheld, not a failure.
    Withheld(String),
}

/// Applies the referral's consent (or, when it records none, `not_recorded` from
/// configuration).
pub fn apply_consent(referral: Referral, not_recorded: ConsentState) -> Release {
    let state = match referral.consent.state {
        ConsentState::NotRecorded => not_recorded,
        recorded => recorded,
    };
    match state {
        ConsentState::Declined => Release::Withheld(
            "consent to share with the social prescribing service was declined; nothing sent"
                .into(),
        ),
        ConsentState::CodesOnly => Release::CodesOnly(strip_narrative(referral)),
        ConsentState::Full | ConsentState::NotRecorded => Release::Full(referral),
    }
}

impl Release {
    /// What is sent; None when nothing is.
    pub fn referral(&self) -> Option<&Referral> {
        match self {
            Release::Full(r) | Release::CodesOnly(r) => Some(r),
            Release::Withheld(_) => None,
        }
    }
}

fn strip_narrative(mut r: Referral) -> Referral {
    let d = &mut r.referral_details;
    d.what_matters_to_me = None;
    d.service_requested.text = None;
    for reason in &mut d.reasons_for_referral {
        reason.text = None;
    }
    if let Some(s) = &mut d.source_of_referral {
        s.text = None;
    }
    d.return_response_to = None;
    if let Some(m) = &mut d.referral_method {
        m.strip_text();
    }
    if let Some(k) = &mut r.risks {
        k.strip_words();
    }
    crate::model::strip_safeguarding_words(&mut r.safeguarding);
    if let Some(req) = &mut r.individual_requirements {
        for a in &mut req.reasonable_adjustments {
            a.adjustment.strip_text();
            a.detail = None;
        }
        req.reasonable_adjustments
            .retain(|a| a.adjustment.code.is_some());
        if req.is_empty() {
            r.individual_requirements = None;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Coded;

    fn covers() -> Vec<CodeRef> {
        vec![CodeRef {
            system: "http://snomed.info/sct".into(),
            code: "1".into(),
        }]
    }

    /// The UK Core example Consent (information access, purpose "government") is not
    /// consent to share with a social prescribing service unless the deployment says
    /// so; a listed code makes it count; a deny stays a deny.
    #[test]
    fn a_consent_counts_only_for_the_purposes_the_deployment_lists() {
        let coded = |system: &str, code: &str| Coded {
            system: Some(system.into()),
            code: Some(code.into()),
            ..Default::default()
        };
        let mut other = ConsentInfo {
            state: ConsentState::Full,
            recorded_at: None,
            purposes: vec![coded(
                "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                "GOV",
            )],
        };
        let why = read_consent(&mut other, &covers()).expect("a reason");
        assert_eq!(other.state, ConsentState::NotRecorded);
        assert!(why.contains("referrals.consent_covers"), "{why}");
        let mut listed = ConsentInfo {
            state: ConsentState::CodesOnly,
            recorded_at: None,
            purposes: vec![coded("http://snomed.info/sct", "1")],
        };
        assert_eq!(read_consent(&mut listed, &covers()), None);
        assert_eq!(listed.state, ConsentState::CodesOnly);
        let mut none_listed = listed.clone();
        assert!(read_consent(&mut none_listed, &[]).is_some());
        let mut deny = ConsentInfo {
            state: ConsentState::Declined,
            ..Default::default()
        };
        assert_eq!(read_consent(&mut deny, &[]), None);
        assert_eq!(deny.state, ConsentState::Declined);
    }

    fn referral(state: ConsentState) -> Referral {
        let mut r = Referral {
            consent: ConsentInfo {
                state,
                ..Default::default()
            },
            ..Default::default()
        };
        r.referral_details.what_matters_to_me = Some("free text".into());
        r.referral_details.reasons_for_referral.push(Coded {
            code: Some("1".into()),
            text: Some("narrative".into()),
            ..Default::default()
        });
        r
    }

    #[test]
    fn declined_sends_nothing() {
        assert!(matches!(
            apply_consent(referral(ConsentState::Declined), ConsentState::Full),
            Release::Withheld(_)
        ));
    }

    #[test]
    fn codes_only_drops_free_text() {
        let Release::CodesOnly(r) =
            apply_consent(referral(ConsentState::CodesOnly), ConsentState::Full)
        else {
            panic!("expected codes-only");
        };
        assert_eq!(r.referral_details.what_matters_to_me, None);
        assert_eq!(r.referral_details.reasons_for_referral[0].text, None);
        assert_eq!(
            r.referral_details.reasons_for_referral[0].code.as_deref(),
            Some("1")
        );
    }

    #[test]
    fn full_keeps_everything() {
        let r = referral(ConsentState::Full);
        assert_eq!(
            apply_consent(r.clone(), ConsentState::Declined),
            Release::Full(r)
        );
    }

    #[test]
    fn configuration_decides_when_the_referral_records_no_consent() {
        let r = referral(ConsentState::NotRecorded);
        assert!(matches!(
            apply_consent(r.clone(), ConsentState::Declined),
            Release::Withheld(_)
        ));
        assert!(matches!(
            apply_consent(r.clone(), ConsentState::CodesOnly),
            Release::CodesOnly(_)
        ));
        assert!(matches!(
            apply_consent(r, ConsentState::Full),
            Release::Full(_)
        ));
    }
}
