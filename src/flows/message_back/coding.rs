//! What an event writes: its codes from the code map, its timeline line, and the
//! canonical JSON record writers read (platform text withheld unless consent allows).

use serde_json::{Value, json};

use crate::error::{GatewayError, Result, Stage};
use crate::mapping::CodeMap;
use crate::model::message_back::{EventType, MessageBack};
use crate::record::{Code, CodedEntry};
use crate::store::ReferralRecord;

/// The key an event is coded by in the code map's `platform` column.
fn code_key(ev: &MessageBack) -> (String, &'static str) {
    match ev.event_type {
        EventType::ReferralAccepted => ("referral.accepted".into(), "type"),
        EventType::ReferralDeclined => ("referral.declined".into(), "type"),
        EventType::Contact => (
            format!(
                "contact.{}",
                ev.contact.as_ref().map(|c| c.mode.as_str()).unwrap_or("")
            ),
            "contact.mode",
        ),
        EventType::Assessment => (
            format!(
                "score.{}",
                ev.assessment
                    .as_ref()
                    .map(|a| a.instrument.to_ascii_lowercase())
                    .unwrap_or_default()
            ),
            "assessment.instrument",
        ),
        EventType::OnwardReferral => match &ev.onward_referral {
            Some(o) if o.kind == "signposting" => ("signposting".into(), "onward_referral.kind"),
            Some(o) => (format!("onward.{}", o.category), "onward_referral.category"),
            None => (String::new(), "onward_referral"),
        },
        EventType::Closed => (
            format!(
                "closed.{}",
                ev.closed.as_ref().map(|c| c.reason.as_str()).unwrap_or("")
            ),
            "closed.reason",
        ),
    }
}

/// The coded entries for an event, from the code map: an unknown category is parked
/// naming the field, not written uncoded.
pub fn coded_entries(ev: &MessageBack, codes: &CodeMap) -> Result<Vec<CodedEntry>> {
    let (key, field) = code_key(ev);
    let row = codes.row("platform", &key).ok_or_else(|| {
        GatewayError::invalid(
            Stage::Map,
            field,
            format!(
                "{key:?} is not in code map {} (platform column): add it there, then replay",
                codes.name
            ),
        )
    })?;
    let code = |column: &str| {
        row.get(column).map(|c| Code {
            system: codes.systems.get(column).cloned().unwrap_or_default(),
            code: c.code.clone(),
            display: c.display.clone(),
        })
    };
    let mut entry = CodedEntry {
        snomed: code("snomed"),
        read2: code("read2"),
        local: code("local"),
        value: None,
        unit: None,
    };
    if entry.primary().is_none() {
        return Err(GatewayError::invalid(
            Stage::Map,
            field,
            format!(
                "{key:?} has neither a SNOMED CT nor a local code in code map {}",
                codes.name
            ),
        ));
    }
    let mut out = Vec::new();
    if let Some(a) = &ev.assessment {
        match (&a.items, a.score) {
            (Some(items), _) => {
                // ONS4: the instrument, then each item with its value.
                out.push(entry.clone());
                for (item, display, v) in [
                    (
                        "ons4-life-satisfaction",
                        "ONS4: life satisfaction (0-10)",
                        items.life_satisfaction,
                    ),
                    (
                        "ons4-worthwhile",
                        "ONS4: things done in life are worthwhile (0-10)",
                        items.worthwhile,
                    ),
                    (
                        "ons4-happy-yesterday",
                        "ONS4: happiness yesterday (0-10)",
                        items.happy_yesterday,
                    ),
                    (
                        "ons4-anxious-yesterday",
                        "ONS4: anxiety yesterday (0-10)",
                        items.anxious_yesterday,
                    ),
                ] {
                    out.push(CodedEntry {
                        local: Some(Code {
                            system: codes.systems.get("local").cloned().unwrap_or_default(),
                            code: item.into(),
                            display: display.into(),
                        }),
                        value: Some(v),
                        unit: Some("{score}".into()),
                        ..Default::default()
                    });
                }
                return Ok(out);
            }
            (None, Some(score)) => {
                entry.value = Some(score);
                entry.unit = Some("{score}".into());
            }
            (None, None) => {}
        }
    }
    out.push(entry);
    Ok(out)
}

/// A line for the referral's timeline, with no patient value ("SWEMWBS 21").
pub(super) fn detail(ev: &MessageBack) -> Option<String> {
    match ev.event_type {
        EventType::Assessment => ev.assessment.as_ref().map(|a| match (a.score, &a.items) {
            (Some(s), _) => format!("{} {s}", a.instrument),
            _ => a.instrument.clone(),
        }),
        EventType::Contact => ev.contact.as_ref().map(|c| c.mode.clone()),
        EventType::OnwardReferral => ev
            .onward_referral
            .as_ref()
            .map(|o| format!("{}: {}", o.kind, o.category)),
        EventType::Closed => ev.closed.as_ref().map(|c| c.reason.clone()),
        _ => None,
    }
}

/// What record writers' mappings read (`canonical-event`): the event (without the
/// platform's free text unless consent allows narrative), its headline, coded entries,
/// the summary when allowed, and the referral (with what its consent withheld from this
/// event), patient and practice it belongs to.
pub(crate) fn canonical(
    ev: &MessageBack,
    r: &ReferralRecord,
    coded: Vec<CodedEntry>,
    narrative: bool,
) -> Value {
    let mut event = ev.clone();
    let withheld = if narrative {
        Vec::new()
    } else {
        withhold_free_text(&mut event)
    };
    let summary = event.summary.take();
    json!({
        "headline": event.headline(narrative),
        "event": event,
        "coded": coded,
        "summary": summary,
        "referral": {
            "message_id": r.message_id,
            "programme": r.programme,
            "referral_date": r.record.get("referral_date"),
            "withheld": withheld,
        },
        "patient": r.record.get("patient"),
        "practice": r.record.get("practice"),
    })
}

/// Removes every text the platform wrote (only texts the gateway owns travel under
/// codes-only or unrecorded consent: code map displays and the headline it builds);
/// answers with the canonical names of what was removed, for the readable document.
fn withhold_free_text(event: &mut MessageBack) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut gone = |field: &'static str, had: bool| {
        if had {
            out.push(field);
        }
    };
    gone("summary", event.summary.take().is_some());
    if let Some(d) = &mut event.declined_reason {
        gone("declined_reason.text", d.text.take().is_some());
        gone("declined_reason.display", d.display.take().is_some());
    }
    if let Some(c) = &mut event.closed {
        gone("closed.outcome", c.outcome.take().is_some());
    }
    if let Some(o) = &mut event.onward_referral {
        gone("onward_referral.to", !std::mem::take(&mut o.to).is_empty());
    }
    gone("practitioner", event.practitioner.take().is_some());
    out
}
