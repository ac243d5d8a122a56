//! The checks an event must pass: its platform's binding and required patient items,
//! the programme, the patient, and dates that could be true.

use serde_json::Value;

use super::PatientItem;
use super::Platform;
use super::Scope;
use crate::error::{GatewayError, Result, Stage};
use crate::model::message_back::MessageBack;
use crate::store::ReferralRecord;

/// The one way a platform's document becomes a canonical event: its mapping, then every
/// check below — called by the door that takes it (to answer the platform at once,
/// naming the field) or, for an event no door took, by the front. Counted, so the
/// counter shows each event is mapped once.
pub fn to_canonical(
    p: &Platform,
    mapping: &crate::mapping::Mapping,
    input: &serde_json::Value,
    constants: &std::collections::BTreeMap<String, String>,
    metrics: &crate::engine::metrics::Metrics,
) -> Result<MessageBack> {
    metrics
        .events_mapped
        .get_or_create(&crate::engine::metrics::PlatformLabels {
            platform: p.name.clone(),
        })
        .inc();
    let mut ev = super::map_event(mapping, input, constants)?;
    check_event_for(p, &mut ev)?;
    Ok(ev)
}

/// Every check an event from platform `p` must pass before it is queued or planned:
/// bound to the programme the platform serves, the canonical checks, the contact's NHS
/// Data Dictionary codes (a mechanism and location read from its mode when not sent),
/// the patient items the platform must name, and no reference it could not be linked
/// by.
pub fn check_event_for(p: &Platform, ev: &mut MessageBack) -> Result<()> {
    bind_programme(ev, p.programme.as_deref())?;
    ev.check_with(p.chi_check)?;
    if let Some(c) = &mut ev.contact {
        crate::record::nhs_dd::normalise(c)?;
    }
    let patient = ev.referral.patient.clone().unwrap_or_default();
    for item in &p.require_patient {
        let present = match item {
            PatientItem::Number => patient.nhs_number.is_some() || patient.chi_number.is_some(),
            PatientItem::DateOfBirth => patient.date_of_birth.is_some(),
            PatientItem::FamilyName => patient.family_name.is_some(),
        };
        if !present {
            return Err(GatewayError::invalid(
                Stage::Policy,
                item.field(),
                format!(
                    "platform {:?} must name the patient in every event ({}; require_patient), and \
                     this event does not: nothing was written",
                    p.name,
                    required_items(&p.require_patient)
                ),
            ));
        }
    }
    if ev.referral.platform_reference.is_some() && p.references.is_empty() {
        return Err(GatewayError::invalid(
            Stage::Policy,
            "referral.platform_reference",
            format!(
                "platform {:?} has no destination that records the references it returns, so no \
                 referral can be found by one: name the referral by message_id, or by programme \
                 and the patient's number",
                p.name
            ),
        ));
    }
    Ok(())
}

/// "the NHS or CHI number, the date of birth"
fn required_items(items: &[PatientItem]) -> String {
    items
        .iter()
        .map(|i| i.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A platform that serves one programme speaks for that programme only: its events
/// are bound to it, and one that names another is refused.
pub fn bind_programme(ev: &mut MessageBack, serves: Option<&str>) -> Result<()> {
    let Some(serves) = serves else {
        return Ok(());
    };
    match &ev.referral.programme {
        Some(named) if named != serves => Err(GatewayError::invalid(
            Stage::Policy,
            "referral.programme",
            format!("names programme {named:?}, but the platform serves {serves:?} only"),
        )),
        _ => {
            ev.referral.programme = Some(serves.to_string());
            Ok(())
        }
    }
}

/// An event that names a programme links only to that programme's referrals: a
/// mistyped reference, or another service's patient, is parked, never written to a
/// record the platform has no part in.
pub(super) fn check_programme(ev: &MessageBack, r: &ReferralRecord) -> Result<()> {
    match &ev.referral.programme {
        Some(named) if *named != r.programme => Err(GatewayError::invalid(
            Stage::Policy,
            "referral.programme",
            format!(
                "names programme {named:?}, but the referral it links to is of programme {:?}: \
                 nothing was written; check the reference the platform holds",
                r.programme
            ),
        )),
        _ => Ok(()),
    }
}

/// Wrong-patient protection: the items the sender must name are there, the referral
/// holds a value to compare each with, and whatever the event says of the patient
/// agrees with the referral it is linked to. The error names the field, never a value.
pub(super) fn check_patient(ev: &MessageBack, r: &ReferralRecord, scope: &Scope<'_>) -> Result<()> {
    let p = ev.referral.patient.clone().unwrap_or_default();
    let theirs = |k: &str| {
        r.record
            .pointer(&format!("/patient/{k}"))
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    let family = r
        .record
        .pointer("/patient/name/family")
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty());
    for item in scope.require {
        let held = match item {
            PatientItem::Number => theirs("nhs_number").or(theirs("chi_number")),
            PatientItem::DateOfBirth => theirs("date_of_birth"),
            PatientItem::FamilyName => family,
        };
        if held.is_none() {
            return Err(GatewayError::invalid(
                Stage::Policy,
                item.field(),
                format!(
                    "the referral holds no value for this item, which every event from {} must \
                     match (require_patient): it cannot be answered safely; nothing was written",
                    scope.origin.describe()
                ),
            ));
        }
    }
    let compact = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let same_name = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    let checks = [
        (
            "nhs_number",
            p.nhs_number.as_deref(),
            theirs("nhs_number"),
            true,
        ),
        (
            "chi_number",
            p.chi_number.as_deref(),
            theirs("chi_number"),
            true,
        ),
        (
            "date_of_birth",
            p.date_of_birth.as_deref(),
            theirs("date_of_birth"),
            true,
        ),
        ("family_name", p.family_name.as_deref(), family, false),
    ];
    for (field, said, known, exact) in checks {
        if let Some(said) = said {
            let agrees = match known {
                Some(k) if exact => compact(k) == compact(said),
                Some(k) => same_name(k, said),
                // The referral has none to compare: the event's cannot be trusted.
                None => false,
            };
            if !agrees {
                return Err(GatewayError::invalid(
                    Stage::Policy,
                    format!("referral.patient.{field}"),
                    "does not match the patient of the referral it names: a possible wrong patient, so \
                     nothing was written; check both records, then correct the event and send it again",
                ));
            }
        }
    }
    Ok(())
}

/// An event cannot have happened before its referral was made, nor (beyond `skew`) after
/// now: such a date is a platform's mistake, never written as if true.
pub(super) fn check_when(
    ev: &MessageBack,
    r: &ReferralRecord,
    now: chrono::DateTime<chrono::Utc>,
    skew: std::time::Duration,
) -> Result<()> {
    let referred = r
        .record
        .get("referral_date")
        .and_then(Value::as_str)
        .and_then(crate::model::message_back::day_of)
        .or_else(|| chrono::DateTime::from_timestamp_millis(r.created_at).map(|t| t.date_naive()));
    let latest = now + chrono::Duration::from_std(skew).unwrap_or_default();
    for (field, d) in ev.dates() {
        let instant = match chrono::DateTime::parse_from_rfc3339(d) {
            Ok(t) => t.with_timezone(&chrono::Utc),
            // A date alone: its first moment.
            Err(_) => match crate::model::message_back::day_of(d) {
                Some(day) => day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
                None => continue,
            },
        };
        if instant > latest {
            return Err(GatewayError::invalid(
                Stage::Policy,
                field,
                format!(
                    "is in the future (more than {} ahead of the gateway's clock): nothing was \
                     written; correct the date at the platform, then send the event again",
                    humantime::format_duration(skew)
                ),
            ));
        }
        if let (Some(referred), Some(day)) = (referred, crate::model::message_back::day_of(d))
            && day < referred
        {
            return Err(GatewayError::invalid(
                Stage::Policy,
                field,
                "is before the referral was made: nothing was written; correct the date at the \
                 platform, then send the event again",
            ));
        }
    }
    Ok(())
}
