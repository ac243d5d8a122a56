//! Policy: what may leave. Consent decides whether anything is sent and whether
//! narrative may travel with the codes.

use crate::error::GatewayError;
use crate::model::{ConsentState, Referral};

/// What consent allows for one referral.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// Send it as is.
    Full(Referral),
    /// Send it with every free-text item removed.
    CodesOnly(Referral),
}

/// Applies the referral's consent (or, when it records none, `not_recorded` from
/// configuration). `Err` is a Policy outcome (nothing is sent), not a failure.
pub fn apply_consent(
    referral: Referral,
    not_recorded: ConsentState,
) -> Result<Release, GatewayError> {
    let state = match referral.consent.state {
        ConsentState::NotRecorded => not_recorded,
        recorded => recorded,
    };
    match state {
        ConsentState::Declined => Err(GatewayError::policy(
            "consent to share with the social prescribing service was declined; nothing sent",
        )),
        ConsentState::CodesOnly => Ok(Release::CodesOnly(strip_narrative(referral))),
        ConsentState::Full | ConsentState::NotRecorded => Ok(Release::Full(referral)),
    }
}

impl Release {
    pub fn referral(&self) -> &Referral {
        match self {
            Release::Full(r) | Release::CodesOnly(r) => r,
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
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Coded, ConsentInfo};

    fn referral(state: ConsentState) -> Referral {
        let mut r = Referral {
            consent: ConsentInfo {
                state,
                recorded_at: None,
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
        assert!(apply_consent(referral(ConsentState::Declined), ConsentState::Full).is_err());
    }

    #[test]
    fn codes_only_drops_free_text() {
        let Ok(Release::CodesOnly(r)) =
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
            Ok(Release::Full(r))
        );
    }

    #[test]
    fn configuration_decides_when_the_referral_records_no_consent() {
        let r = referral(ConsentState::NotRecorded);
        assert!(apply_consent(r.clone(), ConsentState::Declined).is_err());
        assert!(matches!(
            apply_consent(r.clone(), ConsentState::CodesOnly),
            Ok(Release::CodesOnly(_))
        ));
        assert!(matches!(
            apply_consent(r, ConsentState::Full),
            Ok(Release::Full(_))
        ));
    }
}
