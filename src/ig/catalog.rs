//! The canonical fields a destination can be allowed, each with the PRSB Social
//! Prescribing item it carries (as docs/prsb-mapping.md tables them), whether it
//! identifies the person, and whether it can carry words someone wrote. An allow-list
//! entry is expanded against this catalogue into the fields the pack lists.

use super::pack::Field;
use crate::model::Flow;

/// (canonical field, PRSB item path, identifies the person, may carry free text).
type Entry = (&'static str, &'static str, bool, bool);

/// The referral's canonical fields (`src/model/referral.rs`, `src/model/prsb.rs`).
const REFERRAL: &[Entry] = &[
    (
        "person_demographics.nhs_number",
        "Person demographics / NHS number",
        true,
        false,
    ),
    (
        "person_demographics.chi_number",
        "Person demographics / Other identifier",
        true,
        false,
    ),
    (
        "person_demographics.name",
        "Person demographics / Person name",
        true,
        false,
    ),
    (
        "person_demographics.date_of_birth",
        "Person demographics / Date of birth",
        true,
        false,
    ),
    (
        "person_demographics.gender",
        "Person demographics / Gender",
        false,
        false,
    ),
    (
        "person_demographics.address",
        "Person demographics / Person's address",
        true,
        false,
    ),
    (
        "person_demographics.telecom",
        "Person demographics / Person's contact details",
        true,
        false,
    ),
    (
        "person_demographics.ethnic_category",
        "Person demographics / Ethnicity",
        false,
        false,
    ),
    (
        "contact_preferences.preferred_contact_method",
        "Person demographics / Person's contact details / Preferred contact method",
        false,
        false,
    ),
    (
        "contact_preferences.preferred_contact_times",
        "",
        false,
        true,
    ),
    (
        "contact_preferences.preferred_written_communication_format",
        "",
        false,
        false,
    ),
    ("contact_preferences.preferred_language", "", false, false),
    ("contact_preferences.interpreter_required", "", false, false),
    ("referral_details.service_request_id", "", false, false),
    (
        "referral_details.referral_date",
        "Referral details / Referral details record entry / Date",
        false,
        false,
    ),
    ("referral_details.status", "", false, false),
    ("referral_details.priority", "", false, false),
    ("referral_details.service_requested", "", false, true),
    ("referral_details.source_of_referral", "", false, true),
    (
        "referral_details.reasons_for_referral",
        "Referral details / Referral details record entry / Reason for referral",
        false,
        true,
    ),
    (
        "referral_details.what_matters_to_me",
        "About me",
        false,
        true,
    ),
    (
        "referral_details.referral_method",
        "Referral details / Referral details record entry / Referral method",
        false,
        true,
    ),
    (
        "referral_details.return_response_to",
        "Referral details / Referral details record entry / Return response to",
        false,
        true,
    ),
    (
        "referrer_details.name",
        "Referral details / Referral details record entry / Referrer details / Name",
        false,
        false,
    ),
    (
        "referrer_details.role",
        "Referral details / Referral details record entry / Referrer details / Role",
        false,
        false,
    ),
    ("referrer_details.identifiers", "", false, false),
    (
        "referrer_details.telecom",
        "Referral details / Referral details record entry / Referrer details / Contact details",
        false,
        false,
    ),
    (
        "referrer_details.organisation",
        "Referral details / Referral details record entry / Referrer details / Organisation",
        false,
        false,
    ),
    (
        "referrer_details.service",
        "Referral details / Referral details record entry / Referrer details / Service",
        false,
        false,
    ),
    (
        "referrer_details.specialty",
        "Referral details / Referral details record entry / Referrer details / Specialty",
        false,
        false,
    ),
    (
        "gp_practice.ods_code",
        "GP practice / GP practice record entry / GP practice identifier",
        false,
        false,
    ),
    (
        "gp_practice.scottish_practice_code",
        "GP practice / GP practice record entry / GP practice identifier",
        false,
        false,
    ),
    ("gp_practice.nation", "", false, false),
    (
        "gp_practice.name",
        "GP practice / GP practice record entry / GP practice details",
        false,
        false,
    ),
    (
        "gp_practice.telecom",
        "GP practice / GP practice record entry / GP practice details",
        false,
        false,
    ),
    (
        "referred_to.ods_code",
        "Referral details / Referral details record entry / Referral to / Organisation / Coded value",
        false,
        false,
    ),
    (
        "referred_to.name",
        "Referral details / Referral details record entry / Referral to / Organisation / Free text",
        false,
        false,
    ),
    (
        "referral_to.name",
        "Referral details / Referral details record entry / Referral to / Name",
        false,
        false,
    ),
    (
        "referral_to.role",
        "Referral details / Referral details record entry / Referral to / Role",
        false,
        false,
    ),
    (
        "referral_to.specialty",
        "Referral details / Referral details record entry / Referral to / Specialty",
        false,
        false,
    ),
    (
        "referral_to.service",
        "Referral details / Referral details record entry / Referral to / Service",
        false,
        true,
    ),
    (
        "referral_to.organisation",
        "Referral details / Referral details record entry / Referral to / Organisation",
        false,
        false,
    ),
    (
        "referral_to.telecom",
        "Referral details / Referral details record entry / Referral to / Contact details",
        false,
        false,
    ),
    (
        "risks.no_known_risks",
        "Risks / Risks record entry",
        false,
        false,
    ),
    ("risks.entries", "Risks / Risks record entry", false, true),
    ("safeguarding", "Safeguarding", false, true),
    (
        "individual_requirements.reasonable_adjustments",
        "Individual requirements / Reasonable adjustment",
        false,
        true,
    ),
    (
        "gender_history.sex_recorded_at_birth",
        "Person demographics / Sex",
        false,
        false,
    ),
    (
        "gender_history.gender_identity",
        "Person demographics / Gender",
        false,
        false,
    ),
    (
        "consent.state",
        "Consent / Consent for information sharing",
        false,
        false,
    ),
    (
        "consent.recorded_at",
        "Consent / Consent for information sharing",
        false,
        false,
    ),
    (
        "consent.purposes",
        "Consent / Consent for information sharing",
        false,
        false,
    ),
    ("not_recorded", "", false, false),
];

/// The record entry record writers read (`src/flows/message_back/projection.rs`).
const MESSAGE_BACK: &[Entry] = &[
    ("event.event_id", "", false, false),
    ("event.type", "", false, false),
    (
        "event.occurred_at",
        "Contacts with professionals / Contacts with professionals record entry / Date and time of contact",
        false,
        false,
    ),
    (
        "event.referral.message_id",
        "Referral details",
        false,
        false,
    ),
    ("event.referral.platform_reference", "", false, false),
    ("event.referral.programme", "", false, false),
    ("event.referral.patient", "Person demographics", true, false),
    ("event.declined_reason", "", false, true),
    (
        "event.contact",
        "Contacts with professionals / Contacts with professionals record entry",
        false,
        true,
    ),
    (
        "event.assessment",
        "Assessments / Assessments record entry / Structured assessment",
        false,
        false,
    ),
    (
        "event.onward_referral",
        "Signpost details / Signpost details record entry / Signpost to",
        false,
        true,
    ),
    ("event.closed", "", false, true),
    (
        "event.practitioner",
        "Contacts with professionals / Contacts with professionals record entry / Seen by",
        false,
        true,
    ),
    (
        "event.plan",
        "Plan and requested actions / Plan and requested actions record entry",
        false,
        true,
    ),
    (
        "event.needs",
        "Presenting complaints or issues",
        false,
        true,
    ),
    (
        "event.support_offered",
        "Care and support plan",
        false,
        true,
    ),
    ("event.outcomes", "Care and support plan", false, true),
    ("headline", "", false, false),
    ("coded", "", false, false),
    ("summary", "Clinical Summary", false, true),
    ("referral.message_id", "Referral details", false, false),
    ("referral.programme", "", false, false),
    (
        "referral.referral_date",
        "Referral details / Referral details record entry / Date",
        false,
        false,
    ),
    ("referral.state", "", false, false),
    (
        "referral.withheld",
        "Consent / Consent for information sharing",
        false,
        false,
    ),
    (
        "referral.earlier_scores",
        "Assessments / Assessments record entry / Structured assessment / Assessment result",
        false,
        false,
    ),
    (
        "patient.nhs_number",
        "Person demographics / NHS number",
        true,
        false,
    ),
    (
        "patient.chi_number",
        "Person demographics / Other identifier",
        true,
        false,
    ),
    (
        "patient.name",
        "Person demographics / Person name",
        true,
        false,
    ),
    (
        "patient.date_of_birth",
        "Person demographics / Date of birth",
        true,
        false,
    ),
    (
        "patient.gender",
        "Person demographics / Gender",
        false,
        false,
    ),
    (
        "practice.ods_code",
        "GP practice / GP practice record entry / GP practice identifier",
        false,
        false,
    ),
    (
        "practice.scottish_practice_code",
        "GP practice / GP practice record entry / GP practice identifier",
        false,
        false,
    ),
    ("practice.nation", "", false, false),
    (
        "practice.name",
        "GP practice / GP practice record entry / GP practice details",
        false,
        false,
    ),
    ("risks", "Risks", false, true),
    ("safeguarding", "Safeguarding", false, true),
];

fn entries(flow: Flow) -> &'static [Entry] {
    match flow {
        Flow::Referral => REFERRAL,
        Flow::MessageBack => MESSAGE_BACK,
    }
}

fn field(e: &Entry, canonical: &str, allowed_by: &str) -> Field {
    let (_, prsb, identifiable, free_text) = *e;
    Field {
        canonical: canonical.to_string(),
        prsb: prsb.to_string(),
        identifiable,
        free_text,
        sensitive: crate::model::in_sensitive_section(canonical),
        allowed_by: allowed_by.to_string(),
    }
}

/// The fields `allow` lets a destination of `flow` receive, in catalogue order. An
/// entry covers every catalogued field under it; an entry deeper than the catalogue
/// takes its catalogued parent's properties; an entry the catalogue does not know is
/// listed as identifiable free text (when in doubt, the pack says more is shared, not
/// less).
pub fn expand(flow: Flow, allow: &[String]) -> Vec<Field> {
    let catalogue = entries(flow);
    let mut out = Vec::new();
    for a in allow {
        let under: Vec<&Entry> = catalogue
            .iter()
            .filter(|e| e.0 == a || e.0.starts_with(&format!("{a}.")))
            .collect();
        if !under.is_empty() {
            out.extend(under.into_iter().map(|e| field(e, e.0, a)));
            continue;
        }
        match catalogue
            .iter()
            .find(|e| a.starts_with(&format!("{}.", e.0)))
        {
            Some(parent) => out.push(field(parent, a, a)),
            None => out.push(field(&("", "", true, true), a, a)),
        }
    }
    out.sort_by_key(|f| {
        catalogue
            .iter()
            .position(|e| f.canonical == e.0 || f.canonical.starts_with(&format!("{}.", e.0)))
            .unwrap_or(usize::MAX)
    });
    out.dedup_by(|a, b| a.canonical == b.canonical);
    out
}

/// Whether the catalogue knows `field` (itself, a parent or a child of an entry).
pub fn knows(flow: Flow, field: &str) -> bool {
    entries(flow).iter().any(|e| {
        e.0 == field
            || e.0.starts_with(&format!("{field}."))
            || field.starts_with(&format!("{}.", e.0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_section_expands_to_its_fields_each_marked() {
        let f = expand(
            Flow::Referral,
            &allow(&["person_demographics", "referral_details"]),
        );
        let nhs = f
            .iter()
            .find(|x| x.canonical == "person_demographics.nhs_number")
            .unwrap();
        assert!(nhs.identifiable && !nhs.free_text);
        assert_eq!(nhs.prsb, "Person demographics / NHS number");
        assert_eq!(nhs.allowed_by, "person_demographics");
        let words = f
            .iter()
            .find(|x| x.canonical == "referral_details.what_matters_to_me")
            .unwrap();
        assert!(words.free_text && !words.identifiable);
        assert!(f.iter().all(|x| !x.sensitive));
    }

    #[test]
    fn deeper_unknown_and_sensitive_entries_say_what_they_are() {
        let f = expand(
            Flow::Referral,
            &allow(&["person_demographics.name.given", "risks", "no_such.field"]),
        );
        let given = &f[0];
        assert_eq!(given.canonical, "person_demographics.name.given");
        assert!(
            given.identifiable,
            "a part of the name is as identifying as the name"
        );
        assert!(
            f.iter()
                .any(|x| x.canonical == "risks.entries" && x.sensitive)
        );
        let unknown = f.iter().find(|x| x.canonical == "no_such.field").unwrap();
        assert!(
            unknown.identifiable && unknown.free_text,
            "unknown: assume the most"
        );
        assert!(!knows(Flow::Referral, "no_such.field"));
        assert!(knows(Flow::MessageBack, "risks") && !knows(Flow::MessageBack, "gender_history"));
    }
}
