//! The canonical JSON record writers read (`canonical-event`): the event without the
//! platform's words unless consent allows them, its headline and codes, the referral
//! with its earlier scores, and the sensitive sections — risks and safeguarding — as
//! top-level keys of their own, so a writer's agreement names them (and one not agreed
//! for them is sent the rest without them). Nothing blank is written.

use serde_json::{Value, json};

use crate::model::message_back::{EventType, MessageBack};
use crate::record::CodedEntry;
use crate::store::{EventRow, ReferralRecord};

/// What record writers' mappings read: `event` (without `risks` and `safeguarding`,
/// which stand beside it), `headline`, `coded`, `summary` when allowed, `referral` (with
/// what its consent withheld from this event), `patient`, `practice`, and `risks` and
/// `safeguarding` when the event carries them.
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
    leave_out_blanks(&mut event);
    let summary = event.summary.take();
    let risks = event.risks.take().filter(|k| k.is_recorded());
    let concerns = std::mem::take(&mut event.safeguarding);
    let mut out = json!({
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
    });
    if let Some(k) = risks {
        out["risks"] = json!(k);
    }
    if !concerns.is_empty() {
        out["safeguarding"] = json!(concerns);
    }
    out
}

/// Removes every text the platform wrote (only texts the gateway owns travel under
/// codes-only or unrecorded consent: code map displays, the Data Dictionary's words and
/// the headline it builds; codes, dates and "no actions required" / "no known risks"
/// stay); answers with the canonical names of what was removed, for the readable
/// document. A risk or concern said only in words stays, marked `words_withheld`,
/// inside its own sensitive section (so a writer not agreed for it learns nothing).
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
    if let Some(p) = &mut event.plan {
        gone(
            "plan.for_professionals",
            p.for_professionals.take().is_some(),
        );
        gone("plan.for_person", p.for_person.take().is_some());
        gone(
            "plan.agreed_with_person",
            p.agreed_with_person.take().is_some(),
        );
    }
    if let Some(o) = event.contact.as_mut().and_then(|c| c.outcome.as_mut()) {
        gone("contact.outcome.text", o.strip_text());
    }
    if let Some(k) = &mut event.risks {
        k.strip_words();
    }
    crate::model::strip_safeguarding_words(&mut event.safeguarding);
    for (name, items) in [
        ("needs", &mut event.needs),
        ("support_offered", &mut event.support_offered),
        ("outcomes", &mut event.outcomes),
    ] {
        let had = items.iter_mut().fold(false, |acc, c| c.strip_text() | acc);
        // An item said only in words says nothing once they are gone.
        items.retain(|c| c.code.is_some());
        gone(name, had);
    }
    out
}

/// Leaves out what would be written empty: blank texts, and a plan with nothing left
/// to say.
fn leave_out_blanks(event: &mut MessageBack) {
    fn blank(s: &mut Option<String>) {
        if s.as_deref().is_some_and(|t| t.trim().is_empty()) {
            *s = None;
        }
    }
    if let Some(p) = &mut event.plan {
        blank(&mut p.for_professionals);
        blank(&mut p.for_person);
        blank(&mut p.agreed_with_person);
        if !p.no_actions_required && !p.has_actions() {
            event.plan = None;
        }
    }
    if let Some(k) = &mut event.risks {
        k.entries.iter_mut().for_each(|e| blank(&mut e.comment));
    }
    event
        .safeguarding
        .iter_mut()
        .for_each(|c| blank(&mut c.comment));
}

/// "Scores with their history": the referral's earlier scores on the same instrument
/// (`{date, score}`, oldest first), read from its timeline — every assessment linked to
/// it before this one that recorded a total. Nothing for an event that is not an
/// assessment with a total.
pub(super) fn earlier_scores(ev: &MessageBack, id: &str, events: &[EventRow]) -> Vec<Value> {
    let Some(a) = ev
        .assessment
        .as_ref()
        .filter(|a| ev.event_type == EventType::Assessment && a.score.is_some())
    else {
        return Vec::new();
    };
    // The timeline's detail line: "<instrument> <score>" (super::coding::detail).
    let prefix = format!("{} ", a.instrument);
    events
        .iter()
        .filter(|e| {
            e.kind == EventType::Assessment.as_str()
                && e.event_message_id != id
                && e.occurred_at.as_str() <= ev.occurred_at.as_str()
        })
        .filter_map(|e| {
            let score: f64 = e.detail.as_deref()?.strip_prefix(&prefix)?.parse().ok()?;
            let day = e.occurred_at.get(..10).unwrap_or(&e.occurred_at);
            Some(json!({"date": day, "score": score}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{canonical, earlier_scores};
    use crate::model::message_back::MessageBack;
    use crate::store::{EventRow, ReferralRecord};

    fn referral() -> ReferralRecord {
        ReferralRecord {
            message_id: "ref-1".into(),
            programme: "default".into(),
            practice: Some("GP5".into()),
            record: json!({"consent": "codes-only", "patient": {"nhs_number": "9912003888"}}),
            created_at: 0,
            ended: None,
            consent_now: None,
        }
    }

    fn event(extra: Value) -> MessageBack {
        let mut e = json!({
            "event_id": "e1", "type": "closed", "occurred_at": "2026-11-25",
            "referral": {"message_id": "ref-1"}, "closed": {"reason": "completed"},
        });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        serde_json::from_value(e).unwrap()
    }

    /// Risks and safeguarding stand as sections of their own, out of `event`; under
    /// codes-only their words go (the entries stay, marked), as do the plan's texts and a
    /// contact outcome's, while "no actions required" and every code stay.
    #[test]
    fn sensitive_sections_stand_apart_and_words_go_under_codes_only() {
        let ev = event(json!({
            "plan": {"no_actions_required": true},
            "risks": {"entries": [{"risk": {"text": "Falls at home"}, "comment": "Twice"}]},
            "safeguarding": [{"concern": {"system": "http://snomed.info/sct", "code": "225911000000104", "text": "Neighbour"}}],
            "needs": [{"text": "Lonely"}, {"system": "http://snomed.info/sct", "code": "105421008"}],
        }));
        let shown = canonical(&ev, &referral(), vec![], true);
        assert!(shown["event"].get("risks").is_none());
        assert!(shown["event"].get("safeguarding").is_none());
        assert_eq!(shown["risks"]["entries"][0]["comment"], "Twice");
        assert_eq!(shown["safeguarding"][0]["concern"]["text"], "Neighbour");
        let withheld = canonical(&ev, &referral(), vec![], false);
        let text = withheld.to_string();
        for words in ["Falls", "Twice", "Neighbour", "Lonely"] {
            assert!(!text.contains(words), "{words} withheld: {text}");
        }
        assert_eq!(withheld["risks"]["entries"][0]["words_withheld"], true);
        assert_eq!(
            withheld["safeguarding"][0]["concern"]["code"],
            "225911000000104"
        );
        assert_eq!(withheld["event"]["plan"]["no_actions_required"], true);
        assert_eq!(withheld["event"]["needs"].as_array().unwrap().len(), 1);
        assert_eq!(withheld["referral"]["withheld"], json!(["needs"]));
        // Nothing said: nothing written.
        let quiet = canonical(
            &event(json!({"plan": {"for_person": "  "}, "risks": {}})),
            &referral(),
            vec![],
            true,
        );
        assert!(quiet["event"].get("plan").is_none());
        assert!(quiet.get("risks").is_none() && quiet.get("safeguarding").is_none());
    }

    #[test]
    fn earlier_scores_are_the_same_instruments_before_this_one() {
        let row = |id: &str, at: &str, kind: &str, detail: &str| EventRow {
            event_message_id: id.into(),
            kind: kind.into(),
            occurred_at: at.into(),
            detail: Some(detail.into()),
            recorded_at: 0,
        };
        let events = [
            row("a", "2026-11-20", "assessment", "SWEMWBS 19"),
            row("b", "2026-11-21", "assessment", "WEMWBS 40"),
            row("c", "2026-11-22", "contact", "telephone"),
            row("d", "2026-11-23T09:00:00Z", "assessment", "SWEMWBS 21.5"),
            row("now", "2026-11-25", "assessment", "SWEMWBS 25"),
            row("later", "2026-12-01", "assessment", "SWEMWBS 28"),
        ];
        let ev = event(json!({"type": "assessment", "closed": null,
            "assessment": {"instrument": "SWEMWBS", "score": 25}}));
        assert_eq!(
            earlier_scores(&ev, "now", &events),
            [
                json!({"date": "2026-11-20", "score": 19.0}),
                json!({"date": "2026-11-23", "score": 21.5})
            ]
        );
    }
}
