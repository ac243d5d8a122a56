//! What the PRSB standard asks of a referral before it leaves: its mandatory items (a gap
//! is recorded and counted, and parks the referral only where the deployment says so —
//! practices send what they have), and the sensitive sections a destination receives only
//! when its agreement names them.

use serde::Deserialize;
use serde_json::Value;

use crate::model::{Referral, SENSITIVE_SECTIONS};

/// What a referral missing a mandatory PRSB item does (`[referrals] missing_mandatory`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingMandatory {
    /// Send it; the gap is audited and counted per practice.
    #[default]
    Record,
    /// Park it for a person, naming the items.
    Park,
}

/// The mandatory (M) items of PRSB "Referral to social prescribing services" the
/// referral does not carry, as canonical field names (never values). Name and date of
/// birth are not here: intake refuses a referral without them.
pub fn missing_mandatory(r: &Referral) -> Vec<&'static str> {
    let mut out = Vec::new();
    let name = &r.person_demographics.name;
    if name.given.iter().all(|g| g.trim().is_empty()) {
        out.push("person_demographics.name.given");
    }
    if name.family.as_deref().is_none_or(|f| f.trim().is_empty()) {
        out.push("person_demographics.name.family");
    }
    if r.gp_practice
        .as_ref()
        .is_none_or(|p| p.practice_codes().is_empty())
    {
        out.push("gp_practice.identifier");
    }
    let referrer = r.referrer_details.as_ref();
    if referrer.and_then(|d| d.name.as_ref()).is_none() {
        out.push("referrer_details.name");
    }
    if referrer.and_then(|d| d.service.as_ref()).is_none() {
        out.push("referrer_details.service");
    }
    if referrer.and_then(|d| d.organisation.as_ref()).is_none() {
        out.push("referrer_details.organisation");
    }
    if referrer.is_none_or(|d| d.telecom.is_empty()) {
        out.push("referrer_details.contact_details");
    }
    if r.referral_to.as_ref().is_none_or(|t| !t.is_named()) && r.referred_to.is_none() {
        out.push("referral_to");
    }
    if r.risks.as_ref().is_none_or(|k| !k.is_recorded()) {
        out.push("risks");
    }
    out
}

/// Notes on the referral the mandatory items it misses (`not_recorded`, sent in schema
/// v2 so a platform can tell "not recorded" from "not agreed"); answers with them.
pub fn note_missing(r: &mut Referral) -> Vec<&'static str> {
    let missing = missing_mandatory(r);
    r.not_recorded = missing.iter().map(|m| m.to_string()).collect();
    missing
}

/// Whether `allow` (a destination's agreed field list) names a top-level section.
fn allows(allow: &[String], section: &str) -> bool {
    allow.iter().any(|a| a == section)
}

/// The sensitive sections present in `canonical` that `allow` does not name: what a
/// destination must not be sent.
pub fn sensitive_withheld(canonical: &Value, allow: &[String]) -> Vec<&'static str> {
    SENSITIVE_SECTIONS
        .into_iter()
        .filter(|s| canonical.get(*s).is_some_and(|v| !v.is_null()))
        .filter(|s| !allows(allow, s))
        .collect()
}

/// `canonical` without the sensitive sections `allow` does not name. A record entry
/// (the message back's, which has a `referral` section of the gateway's own) is told which
/// were left out (`referral.withheld_by_agreement`), so the document can say that something
/// was recorded and where to ask, without saying what.
pub fn without_sensitive(canonical: &Value, allow: &[String]) -> Value {
    let gone = sensitive_withheld(canonical, allow);
    if gone.is_empty() {
        return canonical.clone();
    }
    let mut out = canonical.clone();
    if let Some(m) = out.as_object_mut() {
        for s in &gone {
            m.remove(*s);
        }
        // Only the message back's record entry has a `referral` section.
        if let Some(Value::Object(referral)) = m.get_mut("referral") {
            referral.insert("withheld_by_agreement".into(), serde_json::json!(gone));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn complete() -> Referral {
        let mut r = Referral::default();
        r.person_demographics.name = PersonName {
            given: vec!["A".into()],
            family: Some("B".into()),
            ..Default::default()
        };
        r.gp_practice = Some(Organisation {
            ods_code: Some("A12345".into()),
            ..Default::default()
        });
        r.referrer_details = Some(Referrer {
            name: Some(PersonName::default()),
            service: Some(Coded::default()),
            organisation: Some(Organisation::default()),
            telecom: vec![ContactPoint::default()],
            ..Default::default()
        });
        r.referral_to = Some(ReferralTo {
            service: Some(Coded::default()),
            ..Default::default()
        });
        r.risks = Some(Risks {
            no_known_risks: true,
            entries: Vec::new(),
        });
        r
    }

    #[test]
    fn a_complete_referral_misses_nothing_and_each_gap_is_named() {
        assert!(missing_mandatory(&complete()).is_empty());
        let mut r = complete();
        r.risks = Some(Risks::default());
        assert_eq!(missing_mandatory(&r), vec!["risks"]);
        r.risks = None;
        r.referrer_details = None;
        r.referral_to = None;
        r.gp_practice = None;
        assert_eq!(
            missing_mandatory(&r),
            vec![
                "gp_practice.identifier",
                "referrer_details.name",
                "referrer_details.service",
                "referrer_details.organisation",
                "referrer_details.contact_details",
                "referral_to",
                "risks"
            ]
        );
    }

    #[test]
    fn sensitive_sections_leave_only_where_named() {
        let v = serde_json::json!({
            "risks": {"no_known_risks": true},
            "safeguarding": [{"concern": {"text": "x"}}],
            "person_demographics": {},
        });
        let allow = vec!["person_demographics".to_string(), "risks".to_string()];
        assert_eq!(sensitive_withheld(&v, &allow), vec!["safeguarding"]);
        let out = without_sensitive(&v, &allow);
        assert!(out.get("safeguarding").is_none());
        assert!(out.get("risks").is_some());
        // A prefix is not a name: "risks.entries" does not agree to the whole section.
        let partial = vec!["risks.entries".to_string()];
        assert_eq!(
            sensitive_withheld(&v, &partial),
            vec!["risks", "safeguarding"]
        );
    }
}
