//! The readable document's PRSB lines beyond what happened: a contact's NHS Data
//! Dictionary codes, a score's earlier scores and subscales, the interventions (support
//! offered, needs, outcomes), risks and safeguarding. Each answers nothing when there is
//! nothing to say, so no empty line is written.

use super::{RecordEntry, SNOMED_SYSTEM};
use crate::model::Coded;
use crate::model::message_back::{ContactElement, EventType, MessageBack};

/// "Patient's home (NHS Data Dictionary A01)", "Lonely (SNOMED CT 105421008)", or the
/// words alone.
fn coded(c: &Coded) -> String {
    let label = c
        .display
        .as_deref()
        .or(c.text.as_deref())
        .unwrap_or("coded entry");
    match (&c.code, c.system.as_deref()) {
        (Some(code), Some(SNOMED_SYSTEM)) => format!("{label} (SNOMED CT {code})"),
        (Some(code), _) => format!("{label} ({code})"),
        (None, _) => label.to_string(),
    }
}

/// How and where a contact took place, and whether it did (NHS Data Dictionary codes),
/// with the outcome in the link worker's words when consent lets them travel.
pub(super) fn contact(ev: &MessageBack) -> Vec<String> {
    let Some(c) = ev
        .contact
        .as_ref()
        .filter(|_| ev.event_type == EventType::Contact)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (e, label) in [
        (ContactElement::Method, "Consultation mechanism"),
        (ContactElement::Location, "Location"),
        (ContactElement::Outcome, "Attendance"),
    ] {
        if let Some(x) = c.coded(e) {
            let code = x.code.as_deref().unwrap_or_default();
            let words = x.display.as_deref().unwrap_or(code);
            out.push(format!("{label}: {words} (NHS Data Dictionary {code})"));
        }
    }
    if let Some(t) = c.outcome.as_ref().and_then(|o| o.text.as_deref()) {
        out.push(format!("Contact outcome: {t}"));
    }
    out
}

/// A value with its unit, unless the unit is a plain score.
fn valued(v: f64, unit: Option<&str>) -> String {
    match unit.filter(|u| *u != "{score}") {
        Some(u) => format!("{v} {u}"),
        None => v.to_string(),
    }
}

/// A score's history (the referral's earlier scores on the instrument) and its
/// subscales.
pub(super) fn scores(e: &RecordEntry) -> Vec<String> {
    let Some(a) = e
        .event
        .assessment
        .as_ref()
        .filter(|_| e.event.event_type == EventType::Assessment)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if !e.referral.earlier_scores.is_empty() {
        let earlier: Vec<String> = e
            .referral
            .earlier_scores
            .iter()
            .map(|s| format!("{} on {}", s.score, s.date))
            .collect();
        out.push(format!(
            "Earlier {} scores: {}",
            a.instrument,
            earlier.join("; ")
        ));
    }
    if !a.subscales.is_empty() {
        out.push("Subscale results:".into());
        for s in &a.subscales {
            let code = s
                .code
                .as_ref()
                .and_then(|c| c.code.as_deref())
                .map(|c| format!(" (SNOMED CT {c})"))
                .unwrap_or_default();
            out.push(format!(
                "  {}: {}{code}",
                s.name,
                valued(s.value, s.unit.as_deref())
            ));
        }
    }
    out
}

/// The interventions: support offered, the needs and concerns identified, the outcomes.
pub(super) fn interventions(ev: &MessageBack) -> Vec<String> {
    let mut out = Vec::new();
    for (label, items) in [
        ("Support offered", &ev.support_offered),
        ("Needs and concerns identified", &ev.needs),
        ("Outcomes", &ev.outcomes),
    ] {
        if !items.is_empty() {
            out.push(format!("{label}:"));
            out.extend(items.iter().map(|c| format!("  {}", coded(c))));
        }
    }
    out
}

/// One risk or concern: what it is (or that its words were not shared), when, and the
/// comment.
fn entry(
    noun: &str,
    item: &Coded,
    start: &Option<String>,
    end: &Option<String>,
    comment: &Option<String>,
    words_withheld: bool,
) -> String {
    let what = if words_withheld {
        format!(
            "A {noun} recorded in words not shared under the patient's consent (coded \
             information only)"
        )
    } else {
        coded(item)
    };
    let mut line = format!("  {what}");
    if let Some(s) = start {
        line.push_str(&format!(", from {s}"));
    }
    if let Some(x) = end {
        line.push_str(&format!(", until {x}"));
    }
    if let Some(c) = comment {
        line.push_str(&format!("; {c}"));
    }
    line
}

/// Risks (or "no known risks") and safeguarding concerns, when the writer's agreement
/// lets them reach it.
pub(super) fn risks(e: &RecordEntry) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(k) = &e.risks {
        if k.no_known_risks {
            out.push("Risks: no known risks".into());
        } else if !k.entries.is_empty() {
            out.push("Risks identified:".into());
            out.extend(k.entries.iter().map(|r| {
                entry(
                    "risk",
                    &r.risk,
                    &r.start,
                    &r.end,
                    &r.comment,
                    r.words_withheld,
                )
            }));
        }
    }
    if !e.safeguarding.is_empty() {
        out.push("Safeguarding concerns:".into());
        out.extend(e.safeguarding.iter().map(|c| {
            entry(
                "concern",
                &c.concern,
                &c.start,
                &c.end,
                &c.comment,
                c.words_withheld,
            )
        }));
    }
    let kept: Vec<&str> = e
        .referral
        .withheld_by_agreement
        .iter()
        .map(|s| match s.as_str() {
            "risks" => "risks",
            "safeguarding" => "safeguarding concerns",
            other => other,
        })
        .collect();
    if !kept.is_empty() {
        out.push(format!(
            "The link worker recorded {} not included here: this practice's agreement with the \
             service does not cover them. Ask the link worker service.",
            kept.join(" and ")
        ));
    }
    out
}
