//! What an event is coded as: its codes from the code map (or, for any other structured
//! scale, its own SNOMED CT code), and its timeline line.

use crate::error::{GatewayError, Result, Stage};
use crate::mapping::CodeMap;
use crate::model::Coded;
use crate::model::message_back::{
    Assessment, EventType, MessageBack, Subscale, WELLBEING_INSTRUMENTS,
};
use crate::record::{Code, CodedEntry, SNOMED_SYSTEM};

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
/// naming the field, not written uncoded. A structured scale other than the wellbeing
/// instruments is coded by its own SNOMED CT code; subscales given a code follow, each
/// with its value.
pub fn coded_entries(ev: &MessageBack, codes: &CodeMap) -> Result<Vec<CodedEntry>> {
    let assessment = ev
        .assessment
        .as_ref()
        .filter(|_| ev.event_type == EventType::Assessment);
    let mut out = match assessment {
        Some(a) if !WELLBEING_INSTRUMENTS.contains(&a.instrument.as_str()) => {
            vec![scale_entry(a)?]
        }
        _ => mapped_entries(ev, codes)?,
    };
    if let Some(a) = assessment {
        out.extend(a.subscales.iter().filter_map(subscale_entry));
    }
    Ok(out)
}

/// A SNOMED CT code as a coded entry's code, its display else `fallback`.
fn snomed_code(c: &Coded, fallback: &str) -> Option<Code> {
    Some(Code {
        system: SNOMED_SYSTEM.into(),
        code: c.code.clone()?,
        display: c.display.clone().unwrap_or_else(|| fallback.to_string()),
    })
}

/// Any structured scale: its SNOMED CT code, with the total when given.
fn scale_entry(a: &Assessment) -> Result<CodedEntry> {
    let snomed = a
        .code
        .as_ref()
        .and_then(|c| snomed_code(c, &a.instrument))
        .ok_or_else(|| {
            GatewayError::invalid(
                Stage::Map,
                "assessment.code",
                "a scale other than SWEMWBS, WEMWBS or ONS4 needs its SNOMED CT code",
            )
        })?;
    Ok(CodedEntry {
        snomed: Some(snomed),
        value: a.score,
        unit: a.score.map(|_| unit_of(a.unit.as_deref())),
        ..Default::default()
    })
}

/// A subscale the platform coded, with its value.
fn subscale_entry(s: &Subscale) -> Option<CodedEntry> {
    Some(CodedEntry {
        snomed: snomed_code(s.code.as_ref()?, &s.name),
        value: Some(s.value),
        unit: Some(unit_of(s.unit.as_deref())),
        ..Default::default()
    })
}

fn unit_of(unit: Option<&str>) -> String {
    unit.unwrap_or("{score}").to_string()
}

/// The coded entries the code map gives an event (the wellbeing instruments among them).
fn mapped_entries(ev: &MessageBack, codes: &CodeMap) -> Result<Vec<CodedEntry>> {
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
