//! The canonical message-back event: PRSB "Message back to GP and referrer" items, one
//! event at a time, as every platform's mapping produces it
//! (`schemas/message-back.v1.schema.json`; v2 adds the plan, risks, safeguarding, coded
//! needs, support and outcomes, contact codes and any structured assessment).

use serde::{Deserialize, Serialize};

use super::Coded;
use super::prsb::{PlanActions, Risks, SafeguardingConcern};
use crate::error::{GatewayError, Result, Stage};

mod checks;

use checks::check_assessment;
pub use checks::{ContactElement, WELLBEING_INSTRUMENTS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    ReferralAccepted,
    ReferralDeclined,
    Contact,
    Assessment,
    OnwardReferral,
    Closed,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ReferralAccepted => "referral-accepted",
            EventType::ReferralDeclined => "referral-declined",
            EventType::Contact => "contact",
            EventType::Assessment => "assessment",
            EventType::OnwardReferral => "onward-referral",
            EventType::Closed => "closed",
        }
    }

    /// How far along a referral this event puts it (its state never goes back).
    pub fn progress(self) -> u8 {
        match self {
            EventType::ReferralAccepted | EventType::ReferralDeclined => 1,
            EventType::Contact | EventType::Assessment | EventType::OnwardReferral => 2,
            EventType::Closed => 3,
        }
    }
}

/// Which referral an event is about: at least one of these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralLink {
    /// The gateway's id of the referral (its ce-id), as platforms got it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The platform's own reference for the referral (a record id it returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_reference: Option<String>,
    /// The programme, with the patient's number, when neither id is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientCheck>,
}

/// What the platform says of the patient: checked against the referral, never trusted
/// on its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chi_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// face-to-face | telephone | video | text | email | group | home-visit
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u32>,
    /// NHS Data Dictionary "Consultation mechanism" (v2; derived from `mode` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Coded>,
    /// NHS Data Dictionary "Activity location type code" (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Coded>,
    /// NHS Data Dictionary "Attendance outcome" (v2); its text follows the codes-only rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Coded>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assessment {
    /// SWEMWBS | WEMWBS | ONS4, or any structured assessment scale named with its `code`.
    pub instrument: String,
    /// The scale, coded (`<273249006 |Assessment scales|`) — required for a scale the
    /// gateway has no code for (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Coded>,
    /// UCUM unit of `score` (default `{score}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Subscale results (v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscales: Vec<Subscale>,
    /// The total (SWEMWBS 7–35, WEMWBS 14–70); ONS4 has items instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// ONS4 items, each 0–10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Ons4>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// One PRSB "Subscale result": its name (coded `<363787002 |Observable entity|` where
/// known), value and unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscale {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Coded>,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ons4 {
    pub life_satisfaction: f64,
    pub worthwhile: f64,
    pub happy_yesterday: f64,
    pub anxious_yesterday: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnwardReferral {
    /// The service or organisation (its name).
    pub to: String,
    /// A category from the code map's `platform` column (`onward.<category>`).
    pub category: String,
    /// referral | signposting
    #[serde(default = "referral_kind")]
    pub kind: String,
}

fn referral_kind() -> String {
    "referral".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closure {
    /// Why the episode ended (completed, did-not-engage, moved-away, declined-support, ...).
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Practitioner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One thing that happened, as the link worker recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageBack {
    /// The platform's id for this event: the same event sent twice has the same id.
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// FHIR dateTime (or date) it happened.
    pub occurred_at: String,
    pub referral: ReferralLink,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined_reason: Option<Coded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessment: Option<Assessment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onward_referral: Option<OnwardReferral>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closure>,
    /// Free text the link worker wrote; consent may withhold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<Practitioner>,
    /// PRSB "Plan and requested actions" (v2): first in every communication back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanActions>,
    /// PRSB "Risks" identified (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risks: Option<Risks>,
    /// PRSB "Safeguarding" concerns identified (v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safeguarding: Vec<SafeguardingConcern>,
    /// Needs and concerns, coded (refset `1373501000000105`) (v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Coded>,
    /// Support offered, coded (refset `1373511000000107`) (v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub support_offered: Vec<Coded>,
    /// Outcomes, coded (refset `1127601000000107`) (v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<Coded>,
}

/// The calendar day of a full FHIR date or date-time (as written, in its own zone), if
/// it is a real one.
pub fn day_of(d: &str) -> Option<chrono::NaiveDate> {
    use super::dates::{is_fhir_date, is_fhir_datetime};
    let day = d.get(..10)?;
    let real = if d.len() == 10 {
        is_fhir_date(d)
    } else {
        is_fhir_datetime(d)
    };
    real.then(|| chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
        .flatten()
}

/// The range a wellbeing instrument's total must be in.
pub fn score_range(instrument: &str) -> Option<(f64, f64)> {
    match instrument {
        "SWEMWBS" => Some((7.0, 35.0)),
        "WEMWBS" => Some((14.0, 70.0)),
        _ => None,
    }
}

fn bad(field: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid(Stage::Intake, field, message)
}

impl MessageBack {
    /// An event of `event_type` about the referral the gateway sent as `referral_id`,
    /// with nothing else said (the gateway's own events, a poller's): callers set the
    /// part their type needs.
    pub fn about(
        event_id: String,
        event_type: EventType,
        occurred_at: String,
        referral_id: String,
    ) -> MessageBack {
        MessageBack {
            event_id,
            event_type,
            occurred_at,
            referral: ReferralLink {
                message_id: Some(referral_id),
                ..Default::default()
            },
            declined_reason: None,
            contact: None,
            assessment: None,
            onward_referral: None,
            closed: None,
            summary: None,
            practitioner: None,
            plan: None,
            risks: None,
            safeguarding: Vec::new(),
            needs: Vec::new(),
            support_offered: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    /// [`MessageBack::check_with`] under today's CHI rule.
    pub fn check(&self) -> Result<()> {
        self.check_with(super::identifiers::ChiCheck::default())
    }

    /// The checks a JSON Schema cannot make: the part for the event's type is there,
    /// and values are in range (a CHI number checked by `chi`). Errors name the field,
    /// never the value.
    pub fn check_with(&self, chi: super::identifiers::ChiCheck) -> Result<()> {
        self.check_dates()?;
        let link = &self.referral;
        if link.message_id.is_none()
            && link.platform_reference.is_none()
            && !(link.programme.is_some()
                && link
                    .patient
                    .as_ref()
                    .is_some_and(|p| p.nhs_number.is_some() || p.chi_number.is_some()))
        {
            return Err(bad(
                "referral",
                "name the referral: message_id, platform_reference, or programme with the patient's NHS or CHI number",
            ));
        }
        if let Some(p) = &link.patient {
            for (field, n, kind) in [
                (
                    "referral.patient.nhs_number",
                    &p.nhs_number,
                    super::identifiers::IdentifierKind::Nhs,
                ),
                (
                    "referral.patient.chi_number",
                    &p.chi_number,
                    super::identifiers::IdentifierKind::Chi,
                ),
            ] {
                if let Some(n) = n
                    && let Err(problem) = super::identifiers::validate_with(kind, n, chi)
                {
                    return Err(bad(field, problem.describe(kind)));
                }
            }
        }
        match self.event_type {
            EventType::Contact => {
                let c = self.contact.as_ref().ok_or_else(|| {
                    bad("contact", "a contact event needs its contact (mode, date)")
                })?;
                if c.duration_minutes.is_some_and(|d| d > 24 * 60) {
                    return Err(bad("contact.duration_minutes", "is longer than a day"));
                }
            }
            EventType::Assessment => {
                let a = self.assessment.as_ref().ok_or_else(|| {
                    bad(
                        "assessment",
                        "an assessment event needs its instrument and score",
                    )
                })?;
                check_assessment(a)?;
            }
            EventType::OnwardReferral if self.onward_referral.is_none() => {
                return Err(bad(
                    "onward_referral",
                    "an onward referral event needs what it was to (to, category)",
                ));
            }
            EventType::Closed if self.closed.is_none() => {
                return Err(bad("closed", "a closed event needs its reason"));
            }
            _ => {}
        }
        self.check_prsb_sections()
    }

    /// Leaves out, from every text the event carries, the characters record formats
    /// forbid (XML 1.0's control characters — a vertical tab pasted from a word
    /// processor — which also FHIR strings may not hold); answers with the fields
    /// changed, for the audit.
    pub fn strip_forbidden(&mut self) -> Vec<String> {
        fn walk(v: &mut serde_json::Value, path: &str, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s)
                    if !s.chars().all(crate::model::markup::xml_allowed) =>
                {
                    s.retain(crate::model::markup::xml_allowed);
                    out.push(path.to_string());
                }
                serde_json::Value::Object(m) => {
                    for (k, child) in m {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        walk(child, &p, out);
                    }
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(|c| walk(c, path, out)),
                _ => {}
            }
        }
        let Ok(mut v) = serde_json::to_value(&*self) else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        walk(&mut v, "", &mut changed);
        if !changed.is_empty()
            && let Ok(clean) = serde_json::from_value(v)
        {
            *self = clean;
        }
        changed
    }

    /// Every date the event carries, with the field it is in.
    pub fn dates(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("occurred_at", self.occurred_at.as_str())];
        if let Some(d) = self.contact.as_ref().and_then(|c| c.date.as_deref()) {
            out.push(("contact.date", d));
        }
        if let Some(d) = self.assessment.as_ref().and_then(|a| a.date.as_deref()) {
            out.push(("assessment.date", d));
        }
        out
    }

    /// Each date a real calendar value: a full date (YYYY-MM-DD) or a date-time with its
    /// zone, month, day, hour and offset in range — never "0000-00-00" or "2026-13-45".
    fn check_dates(&self) -> Result<()> {
        for (field, d) in self.dates() {
            if day_of(d).is_none() {
                return Err(bad(
                    field,
                    "is not a real date: give YYYY-MM-DD, or a date-time with its zone \
                     (2026-11-25T10:00:00Z)",
                ));
            }
        }
        // A date of birth may be partial (YYYY or YYYY-MM), as FHIR allows.
        if let Some(p) = &self.referral.patient
            && let Some(d) = &p.date_of_birth
            && !super::dates::is_fhir_date(d)
        {
            return Err(bad(
                "referral.patient.date_of_birth",
                "is not a real date (YYYY-MM-DD)",
            ));
        }
        Ok(())
    }

    /// One line saying what happened, with no patient identifier: the readable part of
    /// every write, because a GP system may drop a code it does not know. Without
    /// `narrative` (codes-only consent) no free text the platform wrote goes in.
    pub fn headline(&self, narrative: bool) -> String {
        let date = |d: &Option<String>| {
            d.as_deref()
                .map(|d| format!(" on {}", d.get(..10).unwrap_or(d)))
                .unwrap_or_default()
        };
        match self.event_type {
            EventType::ReferralAccepted => {
                "Social prescribing referral accepted by the link worker service".into()
            }
            EventType::ReferralDeclined => format!(
                "Social prescribing referral declined{}",
                self.declined_reason
                    .as_ref()
                    .and_then(|r| r.display.as_ref().or(r.text.as_ref().filter(|_| narrative)))
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            EventType::Contact => {
                let c = self.contact.clone().unwrap_or_default();
                format!(
                    "Link worker contact ({}){}{}",
                    c.mode.replace('-', " "),
                    date(&c.date),
                    c.duration_minutes
                        .map(|m| format!(", {m} minutes"))
                        .unwrap_or_default()
                )
            }
            EventType::Assessment => {
                let a = self.assessment.clone().unwrap_or_default();
                match (&a.items, a.score) {
                    (Some(i), _) => format!(
                        "ONS4 personal wellbeing{}: life satisfaction {}, worthwhile {}, happy yesterday {}, anxious yesterday {}",
                        date(&a.date),
                        i.life_satisfaction,
                        i.worthwhile,
                        i.happy_yesterday,
                        i.anxious_yesterday
                    ),
                    (None, Some(s)) => format!(
                        "{} score {s}{}{}",
                        a.instrument,
                        a.unit
                            .as_deref()
                            .filter(|u| *u != "{score}")
                            .map(|u| format!(" {u}"))
                            .unwrap_or_default(),
                        date(&a.date)
                    ),
                    // A scale given by its subscales alone.
                    (None, None) => format!(
                        "{} assessment{}: {} subscale results",
                        a.instrument,
                        date(&a.date),
                        a.subscales.len()
                    ),
                }
            }
            EventType::OnwardReferral => {
                let o = self.onward_referral.clone().unwrap_or_default();
                let verb = if o.kind == "signposting" {
                    "Signposted"
                } else {
                    "Referred on"
                };
                let category = o.category.replace('-', " ");
                if o.to.trim().is_empty() {
                    // The service's name withheld (codes-only consent): its category only.
                    format!("{verb} to a {category} service")
                } else {
                    format!("{verb} to {} ({category})", o.to)
                }
            }
            EventType::Closed => {
                let c = self.closed.clone().unwrap_or_default();
                if c.reason == "not-responded" {
                    return "Social prescribing referral closed: the service did not respond to \
                            the referral, so no support was started; the practice may wish to \
                            refer elsewhere"
                        .into();
                }
                format!(
                    "Social prescribing support ended: {}{}",
                    c.reason.replace('-', " "),
                    c.outcome
                        .filter(|_| narrative)
                        .map(|o| format!("; outcome: {o}"))
                        .unwrap_or_default()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(occurred_at: &str, contact_date: Option<&str>) -> MessageBack {
        serde_json::from_value(serde_json::json!({
            "event_id": "e1",
            "type": "contact",
            "occurred_at": occurred_at,
            "referral": {"message_id": "r1"},
            "contact": {"mode": "telephone", "date": contact_date},
        }))
        .unwrap()
    }

    /// Dates that do not exist are refused naming the field, never written: the
    /// hostile values of a spool-full of bad events among them.
    #[test]
    fn impossible_dates_are_refused_naming_the_field() {
        for bad in [
            "0000-00-00",
            "2026-13-45",
            "2026-02-30",
            "2026-11-01T10:00:00+99:99",
            "2026-11-01T25:00:00Z",
            "2026-11-0é",
            "2026-11",
            "",
            "é",
        ] {
            let e = event(bad, None).check().unwrap_err();
            assert_eq!(e.field.as_deref(), Some("occurred_at"), "{bad}");
            let e = event("2026-11-25", Some(bad)).check().unwrap_err();
            assert_eq!(e.field.as_deref(), Some("contact.date"), "{bad}");
            // The same words whatever the value: it is never quoted.
            assert_eq!(
                e.message,
                event("2026-11-25", Some("x")).check().unwrap_err().message
            );
            // The headline never slices through a character.
            let _ = event("2026-11-25", Some(bad)).headline(true);
        }
        for good in [
            "2026-11-25",
            "2026-11-25T10:00:00Z",
            "2026-11-25T10:00:00.5+01:00",
        ] {
            event(good, Some("2026-11-25")).check().unwrap();
        }
    }
}
