//! The checks of the PRSB items an event carries beyond what happened: any structured
//! assessment scale with its subscales, the plan and requested actions, risks,
//! safeguarding concerns and the coded needs, support offered and outcomes. Each error
//! names the field and what was expected, never the value met.

use super::{Assessment, Contact, MessageBack, bad, day_of, score_range};
use crate::error::Result;
use crate::model::Coded;

/// The wellbeing instruments the gateway knows by name (their codes are in its code
/// map); any other structured scale is named by its SNOMED CT code.
pub const WELLBEING_INSTRUMENTS: [&str; 3] = ["SWEMWBS", "WEMWBS", "ONS4"];

const SNOMED: &str = "http://snomed.info/sct";

/// The NHS Data Dictionary elements a contact's codes are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactElement {
    /// CONSULTATION MECHANISM.
    Method,
    /// ACTIVITY LOCATION TYPE CODE.
    Location,
    /// ATTENDED OR DID NOT ATTEND (the attendance outcome).
    Outcome,
}

impl ContactElement {
    pub const ALL: [ContactElement; 3] = [
        ContactElement::Method,
        ContactElement::Location,
        ContactElement::Outcome,
    ];

    /// The canonical event's field for it.
    pub fn field(self) -> &'static str {
        match self {
            ContactElement::Method => "contact.method",
            ContactElement::Location => "contact.location",
            ContactElement::Outcome => "contact.outcome",
        }
    }

    /// The NHS Data Dictionary element's name.
    pub fn element(self) -> &'static str {
        match self {
            ContactElement::Method => "CONSULTATION MECHANISM",
            ContactElement::Location => "ACTIVITY LOCATION TYPE CODE",
            ContactElement::Outcome => "ATTENDED OR DID NOT ATTEND",
        }
    }
}

impl Contact {
    pub fn coded(&self, e: ContactElement) -> Option<&Coded> {
        match e {
            ContactElement::Method => self.method.as_ref(),
            ContactElement::Location => self.location.as_ref(),
            ContactElement::Outcome => self.outcome.as_ref(),
        }
    }

    pub fn coded_mut(&mut self, e: ContactElement) -> &mut Option<Coded> {
        match e {
            ContactElement::Method => &mut self.method,
            ContactElement::Location => &mut self.location,
            ContactElement::Outcome => &mut self.outcome,
        }
    }
}

/// Whether `code` has the shape of a SNOMED CT concept id (6 to 18 digits, no leading
/// zero). Whether it is a real concept, and below `273249006 |Assessment scales|`, needs
/// the UK Edition itself.
fn sctid_shaped(code: &str) -> bool {
    (6..=18).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_digit())
        && !code.starts_with('0')
}

/// A SNOMED CT coding at `field`: its system SNOMED CT and its code a concept id.
fn check_snomed(field: &str, c: &Coded) -> Result<()> {
    if c.system.as_deref() != Some(SNOMED) {
        return Err(bad(
            &format!("{field}.system"),
            format!("must be SNOMED CT ({SNOMED})"),
        ));
    }
    match c.code.as_deref() {
        Some(code) if sctid_shaped(code) => Ok(()),
        _ => Err(bad(
            &format!("{field}.code"),
            "must be a SNOMED CT concept id (6 to 18 digits)",
        )),
    }
}

/// A coded-or-text item: a code (with its system) or words, never neither; a code given
/// must be SNOMED CT.
fn check_coded_or_text(field: &str, c: &Coded) -> Result<()> {
    let said = |s: &Option<String>| s.as_deref().is_some_and(|t| !t.trim().is_empty());
    match (&c.code, said(&c.text)) {
        (Some(_), _) => check_snomed(field, c),
        (None, true) => Ok(()),
        (None, false) => Err(bad(field, "needs a SNOMED CT code or text")),
    }
}

/// A date on a risk or concern: a real one when given (it may be long before the
/// referral).
fn check_date(field: &str, d: &Option<String>) -> Result<()> {
    match d {
        Some(d) if day_of(d).is_none() => Err(bad(
            field,
            "is not a real date: give YYYY-MM-DD, or a date-time with its zone",
        )),
        _ => Ok(()),
    }
}

/// A structured assessment: SWEMWBS and WEMWBS with their total in range, ONS4 with its
/// four items, any other scale named by its SNOMED CT code with a total or subscales;
/// every subscale named and with a finite value.
pub(super) fn check_assessment(a: &Assessment) -> Result<()> {
    if a.instrument.trim().is_empty() {
        return Err(bad("assessment.instrument", "must name the scale"));
    }
    if let Some(code) = &a.code {
        check_snomed("assessment.code", code)?;
    }
    if a.unit.as_deref().is_some_and(|u| u.trim().is_empty()) {
        return Err(bad("assessment.unit", "must not be empty (leave it out)"));
    }
    for (i, s) in a.subscales.iter().enumerate() {
        let at = |k: &str| format!("assessment.subscales[{i}].{k}");
        if s.name.trim().is_empty() {
            return Err(bad(&at("name"), "must name the subscale"));
        }
        if !s.value.is_finite() {
            return Err(bad(&at("value"), "must be a finite number"));
        }
        if let Some(code) = &s.code {
            check_snomed(&at("code"), code)?;
        }
    }
    match (a.instrument.as_str(), a.score, &a.items) {
        ("ONS4", _, Some(items)) => {
            for (name, v) in [
                ("life_satisfaction", items.life_satisfaction),
                ("worthwhile", items.worthwhile),
                ("happy_yesterday", items.happy_yesterday),
                ("anxious_yesterday", items.anxious_yesterday),
            ] {
                if !(0.0..=10.0).contains(&v) || v.fract() != 0.0 {
                    return Err(bad(
                        &format!("assessment.items.{name}"),
                        "must be a whole number from 0 to 10 (ONS4)",
                    ));
                }
            }
            Ok(())
        }
        ("ONS4", _, None) => Err(bad(
            "assessment.items",
            "ONS4 needs its four items (life_satisfaction, worthwhile, happy_yesterday, anxious_yesterday)",
        )),
        (_, _, Some(_)) => Err(bad("assessment.items", "are ONS4's: leave them out")),
        (instrument, score, None) => match score_range(instrument) {
            Some((lo, hi)) => match score {
                Some(s) if (lo..=hi).contains(&s) => Ok(()),
                Some(_) => Err(bad(
                    "assessment.score",
                    format!("is out of range for {instrument} ({lo}–{hi})"),
                )),
                None => Err(bad(
                    "assessment.score",
                    "is required for SWEMWBS and WEMWBS",
                )),
            },
            // Any other structured scale: known by its code, with something to record.
            None if a.code.is_none() => Err(bad(
                "assessment.code",
                "a scale other than SWEMWBS, WEMWBS or ONS4 needs its SNOMED CT code \
                 (a concept below 273249006 |Assessment scales|)",
            )),
            None if score.is_some_and(|s| !s.is_finite()) => {
                Err(bad("assessment.score", "must be a finite number"))
            }
            None if score.is_none() && a.subscales.is_empty() => Err(bad(
                "assessment.score",
                "give the scale's total, its subscales, or both",
            )),
            None => Ok(()),
        },
    }
}

impl MessageBack {
    /// The PRSB sections: a plan says "no actions required" or lists actions, never
    /// both; risks say "no known risks" or list risks, never both; every risk, concern,
    /// need, support offered and outcome says something, coded in SNOMED CT where coded;
    /// their dates real ones.
    pub(super) fn check_prsb_sections(&self) -> Result<()> {
        if let Some(p) = &self.plan
            && p.no_actions_required
            && p.has_actions()
        {
            return Err(bad(
                "plan.no_actions_required",
                "says no actions are required, and actions are listed: give one or the other",
            ));
        }
        if let Some(r) = &self.risks {
            if r.no_known_risks && !r.entries.is_empty() {
                return Err(bad(
                    "risks.no_known_risks",
                    "says there are no known risks, and risks are listed: give one or the other",
                ));
            }
            for (i, e) in r.entries.iter().enumerate() {
                let at = |k: &str| format!("risks.entries[{i}].{k}");
                check_coded_or_text(&at("risk"), &e.risk)?;
                check_date(&at("start"), &e.start)?;
                check_date(&at("end"), &e.end)?;
            }
        }
        for (i, c) in self.safeguarding.iter().enumerate() {
            let at = |k: &str| format!("safeguarding[{i}].{k}");
            check_coded_or_text(&at("concern"), &c.concern)?;
            check_date(&at("start"), &c.start)?;
            check_date(&at("end"), &c.end)?;
        }
        for (name, items) in [
            ("needs", &self.needs),
            ("support_offered", &self.support_offered),
            ("outcomes", &self.outcomes),
        ] {
            for (i, c) in items.iter().enumerate() {
                check_coded_or_text(&format!("{name}[{i}]"), c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::MessageBack;

    fn event(extra: Value) -> MessageBack {
        let mut e = json!({
            "event_id": "e1",
            "type": "assessment",
            "occurred_at": "2026-11-25",
            "referral": {"message_id": "r1"},
        });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        serde_json::from_value(e).unwrap()
    }

    fn field(extra: Value) -> Option<String> {
        event(extra).check().err().and_then(|e| e.field)
    }

    const SCT: &str = "http://snomed.info/sct";

    #[test]
    fn any_structured_scale_needs_its_code_and_named_subscales() {
        let generic = |a: Value| field(json!({"assessment": a}));
        assert_eq!(
            generic(json!({"instrument": "HADS", "score": 17})).as_deref(),
            Some("assessment.code")
        );
        let code = json!({"system": SCT, "code": "273524006", "display": "Hospital anxiety and depression scale"});
        assert_eq!(
            generic(json!({"instrument": "HADS", "code": code, "score": 17})),
            None
        );
        assert_eq!(
            generic(json!({"instrument": "HADS", "code": code,
                           "subscales": [{"name": "Anxiety", "value": 3}]})),
            None,
            "subscales alone"
        );
        assert_eq!(
            generic(json!({"instrument": "HADS", "code": code})).as_deref(),
            Some("assessment.score"),
            "nothing to record"
        );
        assert_eq!(
            generic(json!({"instrument": "HADS", "code": {"system": "urn:x", "code": "273524006"}, "score": 1}))
                .as_deref(),
            Some("assessment.code.system")
        );
        assert_eq!(
            generic(
                json!({"instrument": "HADS", "code": {"system": SCT, "code": "x1"}, "score": 1})
            )
            .as_deref(),
            Some("assessment.code.code")
        );
        assert_eq!(
            generic(json!({"instrument": "HADS", "code": code, "score": 1,
                           "subscales": [{"name": " ", "value": 3}]}))
            .as_deref(),
            Some("assessment.subscales[0].name")
        );
        // The wellbeing instruments keep their ranges, with or without subscales.
        assert_eq!(
            generic(json!({"instrument": "SWEMWBS", "score": 36})).as_deref(),
            Some("assessment.score")
        );
        assert_eq!(
            generic(json!({"instrument": "WEMWBS", "score": 50,
                           "subscales": [{"name": "Optimism", "value": 4}]})),
            None
        );
    }

    #[test]
    fn plan_and_risks_say_none_or_list_never_both() {
        assert_eq!(
            field(json!({"type": "closed", "closed": {"reason": "completed"},
                         "plan": {"no_actions_required": true, "for_person": "Walk"}}))
            .as_deref(),
            Some("plan.no_actions_required")
        );
        assert_eq!(
            field(json!({"type": "closed", "closed": {"reason": "completed"},
                         "risks": {"no_known_risks": true, "entries": [{"risk": {"text": "Falls"}}]}}))
            .as_deref(),
            Some("risks.no_known_risks")
        );
        assert_eq!(
            field(json!({"type": "closed", "closed": {"reason": "completed"},
                         "risks": {"entries": [{"risk": {}}]}}))
            .as_deref(),
            Some("risks.entries[0].risk")
        );
        assert_eq!(
            field(json!({"type": "closed", "closed": {"reason": "completed"},
                         "safeguarding": [{"concern": {"text": "x"}, "start": "2026-02-30"}]}))
            .as_deref(),
            Some("safeguarding[0].start")
        );
        assert_eq!(
            field(json!({"type": "closed", "closed": {"reason": "completed"},
                         "needs": [{"code": "1", "system": "urn:local"}]}))
            .as_deref(),
            Some("needs[0].system")
        );
    }
}
