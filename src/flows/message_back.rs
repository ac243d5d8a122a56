//! The message-back front: a platform's event (JSON, any of the doors) through that
//! platform's mapping to the canonical event, checked; linked to the referral it is
//! about (the gateway's message id, the platform's reference, or the patient's number
//! with the programme), with the patient checked; coded from the code map; and sent to
//! the practice's record writers. An event that cannot be linked with certainty is
//! parked with a reason and nothing is written — never a best guess.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Front, Plan, Refusal};
use crate::deliver::Destination;
use crate::engine::Inbound;
use crate::error::{GatewayError, Result, Stage};
use crate::intake::envelope::{ATTEMPT_HEADER, body_digest, check_message_id, check_size};
use crate::mapping::CodeMap;
use crate::model::Flow;
use crate::model::identifiers::{IdentifierKind, patient_key};
use crate::model::message_back::{EventType, MessageBack};
use crate::record::{Code, CodedEntry};
use crate::store::{ReferralRecord, Store, Write};
use crate::wiring::{MessageBackWiring, Platform};

/// The CloudEvents type of a message-back event.
pub const EVENT_TYPE: &str = "uk.nhs.socialprescribing.messageback.v1";
/// Which platform (and so which mapping) an event comes from; set by the door.
pub const PLATFORM_HEADER: &str = "x-clw-platform";
/// The platform when a message names none: the canonical event as it is.
pub const DEFAULT_PLATFORM: &str = "clw-event";

/// The id an event is queued and recorded under: its event id, named by the platform
/// it came from (the canonical platform's ids are taken as they are).
pub fn queued_id(platform: &str, event_id: &str) -> String {
    if platform == DEFAULT_PLATFORM {
        event_id.to_string()
    } else {
        format!("{platform}:{event_id}")
    }
}

pub struct MessageBackFront {
    platforms: BTreeMap<String, Arc<PlatformMapping>>,
    codes: Arc<CodeMap>,
    wiring_writers: BTreeMap<String, Arc<Destination>>,
    default_writers: Vec<Arc<Destination>>,
    routes: Option<crate::routing::Routes>,
    store: Store,
    max_bytes: usize,
}

struct PlatformMapping {
    mapping: Arc<crate::mapping::Mapping>,
    /// The one programme it serves, when configured: its events may name no other's
    /// referrals.
    programme: Option<String>,
}

impl MessageBackFront {
    pub fn new(w: &MessageBackWiring, store: Store, max_bytes: usize) -> MessageBackFront {
        MessageBackFront {
            platforms: w
                .platforms
                .iter()
                .map(|(k, p): (&String, &Platform)| {
                    (
                        k.clone(),
                        Arc::new(PlatformMapping {
                            mapping: p.mapping.clone(),
                            programme: p.programme.clone(),
                        }),
                    )
                })
                .collect(),
            codes: w.codes.clone(),
            wiring_writers: w.writers.clone(),
            default_writers: w.default_writers.clone(),
            routes: w.routes.clone(),
            store,
            max_bytes,
        }
    }

    async fn plan_event(&self, inbound: &Inbound) -> std::result::Result<Plan, Refusal> {
        let digest = body_digest(&inbound.body);
        let previous: u32 = inbound
            .headers
            .get(ATTEMPT_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let attempts = previous + 1;
        let refuse = |id: &str, error: GatewayError| Refusal {
            message_id: id.to_string(),
            attempts,
            error,
        };
        let fallback = digest.clone();
        let event = super::decode_heavy(inbound.body.len(), || self.decode(inbound))
            .map_err(|e| refuse(&fallback, e))?;
        let (platform, ev) = event;
        let message_id = queued_id(&platform, &ev.event_id);
        check_message_id(&message_id, "event_id").map_err(|e| refuse(&fallback, e))?;
        let referral = self.link(&ev).await.map_err(|e| refuse(&message_id, e))?;
        check_programme(&ev, &referral).map_err(|e| refuse(&message_id, e))?;
        check_patient(&ev, &referral).map_err(|e| refuse(&message_id, e))?;
        let coded = coded_entries(&ev, &self.codes).map_err(|e| refuse(&message_id, e))?;
        let targets = self.writers_for(&referral);
        if targets.is_empty() {
            // Nowhere to write it: parked for a person, never settled as done.
            return Err(refuse(
                &message_id,
                GatewayError::invalid(
                    Stage::Policy,
                    "practice",
                    format!(
                        "no record writer for the referral's practice ({}): set message_back.writers or a route's record_writers",
                        referral.practice.as_deref().unwrap_or("unknown")
                    ),
                ),
            ));
        }
        let narrative = referral.record.get("consent").and_then(Value::as_str) == Some("full");
        // The referral's state with this event counted: it only moves forward.
        let mut events = self
            .store
            .referral_events(&referral.message_id)
            .await
            .map_err(|e| refuse(&message_id, e))?;
        if !events.iter().any(|e| e.event_message_id == message_id) {
            events.push(crate::store::EventRow {
                event_message_id: message_id.clone(),
                kind: ev.event_type.as_str().into(),
                occurred_at: ev.occurred_at.clone(),
                detail: None,
                recorded_at: 0,
            });
        }
        let state = crate::store::derived_state(&events);
        let mut canonical = canonical(&ev, &referral, coded, narrative);
        canonical["referral"]["state"] = json!(state);
        let remember = vec![Write::ReferralEvent {
            event_message_id: message_id.clone(),
            referral_id: referral.message_id.clone(),
            kind: ev.event_type.as_str().into(),
            occurred_at: ev.occurred_at.clone(),
            detail: detail(&ev),
        }];
        Ok(Plan {
            message_id,
            attempts,
            digest,
            canonical,
            targets,
            remember,
            serial: Some(format!("events-of/{}", referral.message_id)),
        })
    }

    /// Size, envelope, JSON, the platform's mapping, the canonical checks.
    fn decode(&self, inbound: &Inbound) -> Result<(String, MessageBack)> {
        check_size(inbound.body.len(), self.max_bytes)?;
        if let Some(t) = inbound.headers.get("ce-type").filter(|t| !t.is_empty())
            && t != EVENT_TYPE
        {
            return Err(GatewayError::invalid(
                Stage::Envelope,
                "ce-type",
                format!("{t:?} is not a message-back event; expected {EVENT_TYPE}"),
            ));
        }
        let platform = inbound
            .headers
            .get(PLATFORM_HEADER)
            .filter(|p| !p.is_empty())
            .cloned()
            .unwrap_or_else(|| DEFAULT_PLATFORM.to_string());
        let p = self.platforms.get(&platform).ok_or_else(|| {
            GatewayError::invalid(
                Stage::Envelope,
                PLATFORM_HEADER,
                format!("no platform {platform:?} in [message_back.platforms]"),
            )
        })?;
        let body: Value = crate::intake::json::parse_bounded(&inbound.body)?;
        let mapped = p
            .mapping
            .apply(&body, &BTreeMap::new())
            .map_err(crate::deliver::combine)?
            .document;
        let mut ev: MessageBack = serde_path_to_error::deserialize(&mapped).map_err(|e| {
            GatewayError::invalid(
                Stage::Map,
                e.path().to_string(),
                format!("not a message-back event: {}", e.inner()),
            )
        })?;
        bind_programme(&mut ev, p.programme.as_deref())?;
        ev.check()?;
        Ok((platform, ev))
    }

    /// The referral the event names: by message id, by the platform's reference, or by
    /// the patient's number in the programme — exactly one, or the event is parked.
    async fn link(&self, ev: &MessageBack) -> Result<ReferralRecord> {
        let link = &ev.referral;
        let unknown = |how: &str| {
            GatewayError::invalid(
                Stage::Policy,
                "referral",
                format!(
                    "no referral the gateway sent matches its {how}: nothing was written; check the \
                     reference the platform holds, then replay"
                ),
            )
        };
        if let Some(id) = &link.message_id {
            return self
                .store
                .referral(id)
                .await?
                .ok_or_else(|| unknown("message_id"));
        }
        if let Some(reference) = &link.platform_reference {
            let ids = self.store.referral_by_platform_reference(reference).await?;
            return match ids.as_slice() {
                [id] => self
                    .store
                    .referral(id)
                    .await?
                    .ok_or_else(|| unknown("platform_reference")),
                [] => Err(unknown("platform_reference")),
                _ => Err(GatewayError::invalid(
                    Stage::Policy,
                    "referral.platform_reference",
                    "more than one referral has this platform reference; nothing was written",
                )),
            };
        }
        let programme = link.programme.as_deref().unwrap_or_default();
        let patient = link.patient.clone().unwrap_or_default();
        let key = match (&patient.nhs_number, &patient.chi_number) {
            (Some(n), _) => patient_key(IdentifierKind::Nhs, n),
            (None, Some(c)) => patient_key(IdentifierKind::Chi, c),
            (None, None) => return Err(unknown("patient")),
        };
        let open: Vec<ReferralRecord> = self
            .store
            .referrals_for_patient(programme, &key)
            .await?
            .into_iter()
            .filter(|(_, closed)| !closed)
            .map(|(r, _)| r)
            .collect();
        match open.len() {
            1 => Ok(open.into_iter().next().unwrap_or_else(|| unreachable!())),
            0 => Err(unknown("patient's number in the programme")),
            n => Err(GatewayError::invalid(
                Stage::Policy,
                "referral",
                format!(
                    "{n} open referrals in this programme have the patient's number: name the referral \
                     (message_id or platform_reference); nothing was written"
                ),
            )),
        }
    }

    fn writers_for(&self, r: &ReferralRecord) -> Vec<Arc<Destination>> {
        let named = self
            .routes
            .as_ref()
            .and_then(|routes| routes.writers_for(r.practice.as_deref(), &r.programme));
        match named {
            Some(names) => names
                .iter()
                .filter_map(|n| self.wiring_writers.get(n).cloned())
                .collect(),
            None => self.default_writers.clone(),
        }
    }
}

impl Front for MessageBackFront {
    fn flow(&self) -> Flow {
        Flow::MessageBack
    }

    fn plan<'a>(
        &'a self,
        inbound: &'a Inbound,
    ) -> BoxFuture<'a, std::result::Result<Plan, Refusal>> {
        Box::pin(self.plan_event(inbound))
    }
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
fn check_programme(ev: &MessageBack, r: &ReferralRecord) -> Result<()> {
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

/// Wrong-patient protection: whatever the event says of the patient must agree with
/// the referral it is linked to. The error names the field, never a value.
fn check_patient(ev: &MessageBack, r: &ReferralRecord) -> Result<()> {
    let Some(p) = &ev.referral.patient else {
        return Ok(());
    };
    let theirs = |k: &str| {
        r.record
            .pointer(&format!("/patient/{k}"))
            .and_then(Value::as_str)
    };
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
        (
            "family_name",
            p.family_name.as_deref(),
            r.record
                .pointer("/patient/name/family")
                .and_then(Value::as_str),
            false,
        ),
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
fn detail(ev: &MessageBack) -> Option<String> {
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

/// What record writers' mappings read (`canonical-event`): the event (without its free
/// text unless consent allows narrative), its headline, coded entries, the summary
/// when allowed, and the referral, patient and practice it belongs to.
fn canonical(
    ev: &MessageBack,
    r: &ReferralRecord,
    coded: Vec<CodedEntry>,
    narrative: bool,
) -> Value {
    let mut event = ev.clone();
    if !narrative {
        event.summary = None;
        if let Some(d) = &mut event.declined_reason {
            d.text = None;
        }
        if let Some(c) = &mut event.closed {
            c.outcome = None;
        }
    }
    let summary = event.summary.take();
    json!({
        "event": event,
        "headline": ev.headline(narrative),
        "coded": coded,
        "summary": summary,
        "referral": {
            "message_id": r.message_id,
            "programme": r.programme,
            "referral_date": r.record.get("referral_date"),
        },
        "patient": r.record.get("patient"),
        "practice": r.record.get("practice"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{MessageBack, canonical};
    use crate::store::ReferralRecord;

    fn referral(consent: &str) -> ReferralRecord {
        ReferralRecord {
            message_id: "ref-1".into(),
            programme: "default".into(),
            practice: Some("GP5".into()),
            record: json!({"consent": consent, "patient": {"nhs_number": "9912003888"}}),
            created_at: 0,
        }
    }

    fn event(extra: Value) -> MessageBack {
        let mut e = json!({
            "event_id": "e1",
            "occurred_at": "2026-11-25T10:00:00Z",
            "referral": {"message_id": "ref-1"},
            "summary": "Talked about the allotment; feels less alone.",
        });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        serde_json::from_value(e).unwrap()
    }

    /// Free text travels only under full consent: the summary, a decline's own words and
    /// a closure's outcome are withheld from every writer's input otherwise, and the
    /// headline falls back to coded displays.
    #[test]
    fn free_text_is_withheld_unless_consent_is_full() {
        let declined = event(json!({
            "type": "referral-declined",
            "declined_reason": {"text": "Patient moving to Spain"},
        }));
        let closed = event(json!({
            "type": "closed",
            "closed": {"reason": "completed", "outcome": "Back at work, sleeping better"},
        }));
        for ev in [&declined, &closed] {
            let shown = canonical(ev, &referral("full"), vec![], true).to_string();
            let withheld = canonical(ev, &referral("limited"), vec![], false);
            assert!(shown.contains("allotment"), "{shown}");
            assert_eq!(withheld["summary"], Value::Null);
            let text = withheld.to_string();
            for words in ["allotment", "Spain", "sleeping"] {
                assert!(!text.contains(words), "{words} withheld: {text}");
            }
        }
        let shown = canonical(&declined, &referral("full"), vec![], true);
        assert!(shown["headline"].as_str().unwrap().contains("Spain"));
        let shown = canonical(&closed, &referral("full"), vec![], true).to_string();
        assert!(shown.contains("sleeping better"), "{shown}");
    }
}
