//! Arbitrary events — every field, every type — through the message-back front's decoding
//! and checks, and every record writer's rendering: never a panic, and every ITK3 message
//! that is made is well formed XML.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::Platform;
use super::{canonical, check_event_for, coded_entries, map_event};
use crate::mapping::MappingSet;
use crate::record::{RecordEntry, document, itk, pdf};
use crate::store::ReferralRecord;

pub(super) fn mappings() -> &'static MappingSet {
    static SET: OnceLock<MappingSet> = OnceLock::new();
    SET.get_or_init(|| {
        MappingSet::load_configured(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
        )
        .expect("the shipped mappings load")
    })
}

/// The canonical event as platforms send it, v2 (every v1 event maps the same).
pub(super) const EVENT_MAPPING: &str = "clw-event-v2";

pub(super) fn platform() -> Platform {
    let m = mappings().get(EVENT_MAPPING).unwrap().clone();
    Platform {
        name: "links".into(),
        mapping: m.clone(),
        upload_mapping: m,
        programme: None,
        secrets: Vec::new(),
        destinations: Default::default(),
        references: vec![("d".into(), "lamplight-referral")],
        broker_user: None,
        require_patient: vec![],
        chi_check: Default::default(),
    }
}

/// One valid event of each type, to mutate.
pub(super) fn bases() -> Vec<Value> {
    let common = json!({
        "event_id": "e1",
        "occurred_at": "2026-11-25T10:00:00Z",
        "referral": {"message_id": "r1", "programme": "default",
                     "patient": {"nhs_number": "9912003888", "date_of_birth": "1970-09-11", "family_name": "Smith"}},
        "summary": "Talked about the allotment.",
        "practitioner": {"name": "Sam Link", "role": "Link worker"},
    });
    let with = |kind: &str, extra: Value| {
        let mut e = common.clone();
        e["type"] = json!(kind);
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    vec![
        with("referral-accepted", json!({})),
        with(
            "referral-declined",
            json!({"declined_reason": {"code": "x", "display": "Moved", "text": "Moved away"}}),
        ),
        with(
            "contact",
            json!({"contact": {"mode": "telephone", "date": "2026-11-25", "duration_minutes": 30}}),
        ),
        with(
            "assessment",
            json!({"assessment": {"instrument": "SWEMWBS", "score": 21, "date": "2026-11-25"}}),
        ),
        with(
            "assessment",
            json!({"assessment": {"instrument": "ONS4", "items": {"life_satisfaction": 5, "worthwhile": 6, "happy_yesterday": 7, "anxious_yesterday": 3}}}),
        ),
        with(
            "onward-referral",
            json!({"onward_referral": {"to": "Befrienders", "category": "befriending"}}),
        ),
        with(
            "closed",
            json!({"closed": {"reason": "completed", "outcome": "Back at work"}}),
        ),
        // The PRSB items: a plan with actions, risks, safeguarding, coded interventions
        // and a structured scale other than the wellbeing instruments, with subscales.
        with(
            "assessment",
            json!({
                "assessment": {"instrument": "HADS", "score": 17, "date": "2026-11-25",
                    "code": {"system": "http://snomed.info/sct", "code": "273524006", "display": "Hospital anxiety and depression scale"},
                    "subscales": [{"name": "Anxiety", "value": 9}, {"name": "Depression", "value": 8}]},
                "plan": {"for_professionals": "Please review mood medication.",
                         "for_person": "Join the Tuesday walking group.",
                         "agreed_with_person": "Review in six weeks."},
                "risks": {"entries": [{"risk": {"text": "Falls at home"}, "start": "2026-10-01", "comment": "Lives alone"}]},
                "safeguarding": [{"concern": {"text": "Financial pressure from a relative"}}],
                "needs": [{"system": "http://snomed.info/sct", "code": "422650009", "display": "Social isolation"}],
                "support_offered": [{"text": "Walking group"}],
            }),
        ),
        // A home visit the person was not in for: "no actions required", "no known risks".
        with(
            "contact",
            json!({
                "contact": {"mode": "home-visit", "date": "2026-11-25",
                            "outcome": {"code": "3", "text": "No answer at the door"}},
                "plan": {"no_actions_required": true},
                "risks": {"no_known_risks": true},
            }),
        ),
    ]
}

/// Every leaf's path in an event.
fn paths(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, c) in m {
            let mut p = at.clone();
            p.push(k.clone());
            out.push(p.clone());
            paths(c, p, out);
        }
    }
}

fn set(v: &mut Value, path: &[String], new: Value) {
    let mut at = v;
    for k in &path[..path.len() - 1] {
        if !at.is_object() {
            return;
        }
        at = &mut at[k.as_str()];
    }
    if at.is_object() {
        at[path[path.len() - 1].as_str()] = new;
    }
}

fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => any::<String>().prop_map(Value::from),
        6 => "[\\PC\\p{Cc}\u{b}\u{0}é<>&\"']{0,24}".prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => prop::collection::vec(any::<String>().prop_map(Value::from), 0..3).prop_map(Value::Array),
        1 => Just(json!({"x": 1})),
        4 => prop::sample::select(vec![
            "2026-11-25", "2026-11-25T10:00:00Z", "2026-11-0é", "0000-00-00", "telephone",
            "SWEMWBS", "WEMWBS", "ONS4", "9912003888", "1970-09-11", "completed", "befriending",
            "signposting", "contact", "closed", "",
        ])
        .prop_map(Value::from),
    ]
}

pub(super) fn referral(consent: &str) -> ReferralRecord {
    ReferralRecord {
        message_id: "r1".into(),
        programme: "default".into(),
        practice: Some("GP5".into()),
        record: json!({
            "consent": consent,
            "referral_date": "2026-11-20T10:15:00+00:00",
            "patient": {"nhs_number": "9912003888", "date_of_birth": "1970-09-11",
                        "name": {"family": "SMITH", "given": ["Richard"]}},
            "practice": {"ods_code": "GP5", "name": "White Rose"},
        }),
        created_at: 0,
        ended: None,
        consent_now: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]
    #[test]
    fn any_event_is_refused_or_rendered_by_every_writer_never_a_panic(
        base in 0..9usize,
        mutations in prop::collection::vec((any::<prop::sample::Index>(), hostile()), 1..4),
        texts in prop::collection::vec("[\\PC\\p{Cc}\u{b}é<>&]{0,40}", 8),
        full in any::<bool>(),
    ) {
        let mut input = bases()[base].clone();
        let mut all = Vec::new();
        paths(&input, Vec::new(), &mut all);
        // The platform's free text anywhere it goes, whatever characters it holds...
        for (path, t) in [
            "summary", "practitioner.name", "practitioner.role", "closed.outcome",
            "onward_referral.to", "declined_reason.text", "declined_reason.display",
            "referral.patient.family_name", "plan.for_person", "plan.for_professionals",
        ]
        .iter()
        .zip(texts)
        {
            let path: Vec<String> = path.split('.').map(str::to_string).collect();
            if input.pointer(&format!("/{}", path.join("/"))).is_some() {
                set(&mut input, &path, Value::from(t));
            }
        }
        // ...then any field at all given any value.
        for (i, v) in mutations {
            let p = i.get(&all).clone();
            set(&mut input, &p, v);
        }
        let p = platform();
        let mapping = mappings().get(EVENT_MAPPING).unwrap();
        let Ok(mut ev) = map_event(mapping, &input, &BTreeMap::new()) else { return Ok(()) };
        if check_event_for(&p, &mut ev).is_err() {
            return Ok(());
        }
        let _ = ev.strip_forbidden();
        let _ = ev.headline(full);
        let Ok(coded) = coded_entries(&ev, &mappings().codes["social-prescribing"]) else { return Ok(()) };
        let value = canonical(&ev, &referral(if full { "full" } else { "codes-only" }), coded, full);
        let record = mappings().get("gp-record").unwrap();
        let payload = record.apply(&value, &BTreeMap::new()).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let entry = RecordEntry::from_payload(&payload.document)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let lines = document::lines(&entry, true);
        let _ = document::text(&entry, true);
        let _ = pdf::render(document::TITLE, &lines);
        let sender = itk::Sender { ods_code: "X99CLW", name: "Links", mailbox: "CLWGW0001" };
        let xml = itk::message(&entry, "m1", &sender, &entry.event.occurred_at).to_xml();
        prop_assert!(roxmltree::Document::parse(&xml).is_ok(), "not well formed: {xml}");
        let _ = crate::deliver::renderings::fhir_transaction(&entry);
        let _ = crate::deliver::renderings::docman(&entry);
        let _ = crate::deliver::renderings::mesh_address(&entry);
        let _ = serde_json::to_vec_pretty(&payload.document);
    }
}
