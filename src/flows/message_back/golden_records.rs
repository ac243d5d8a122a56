//! What each record writer puts in the practice record, byte for byte: one event of every
//! type (full and codes-only consent) through the front's coding and every writer's
//! rendering — the practice folder's JSON and text, the FHIR transaction, the ITK3
//! message, Docman's document — compared with `tests/fixtures/record-golden/`. A change
//! to what a clinician reads shows up here as a diff; `CLW_BLESS=1` writes the files
//! anew after a deliberate change.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::properties::{EVENT_MAPPING, bases, mappings, platform, referral};
use super::{canonical, check_event_for, coded_entries, map_event};
use crate::record::{RecordEntry, document, itk};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/record-golden")
}

/// Every rendering of every event, by file name.
fn rendered() -> BTreeMap<String, Vec<u8>> {
    let set = mappings();
    let event_mapping = set.get(EVENT_MAPPING).unwrap();
    let record = set.get("gp-record").unwrap();
    let platform = platform();
    let names = [
        "accepted",
        "declined",
        "contact",
        "swemwbs",
        "ons4",
        "onward",
        "closed",
        "prsb-assessment",
        "home-visit",
    ];
    // An earlier score on each instrument, as the referral's timeline holds it.
    let timeline = [("SWEMWBS 19", "2026-11-01"), ("HADS 21", "2026-11-02")].map(|(d, at)| {
        crate::store::EventRow {
            event_message_id: format!("earlier-{at}"),
            kind: "assessment".into(),
            occurred_at: at.into(),
            detail: Some(d.into()),
            recorded_at: 0,
        }
    });
    let mut out = BTreeMap::new();
    for (name, input) in names.into_iter().zip(bases()) {
        for consent in ["full", "codes-only"] {
            let mut ev = map_event(event_mapping, &input, &BTreeMap::new()).unwrap();
            check_event_for(&platform, &mut ev).unwrap();
            let coded = coded_entries(&ev, &set.codes["social-prescribing"]).unwrap();
            let full = consent == "full";
            let mut value = canonical(&ev, &referral(consent), coded, full);
            let earlier = super::projection::earlier_scores(&ev, "e1", &timeline);
            if !earlier.is_empty() {
                value["referral"]["earlier_scores"] = serde_json::json!(earlier);
            }
            let payload = record.apply(&value, &BTreeMap::new()).unwrap();
            let entry = RecordEntry::from_payload(&payload.document).unwrap();
            let stem = format!("{name}.{consent}");
            let pretty = |v: &Value| serde_json::to_vec_pretty(v).unwrap();
            out.insert(format!("{stem}.folder.json"), pretty(&payload.document));
            out.insert(
                format!("{stem}.folder.txt"),
                document::text(&entry, true).into_bytes(),
            );
            out.insert(
                format!("{stem}.fhir.json"),
                pretty(&crate::deliver::renderings::fhir_transaction(&entry).unwrap()),
            );
            out.insert(
                format!("{stem}.docman.json"),
                pretty(&crate::deliver::renderings::docman(&entry).unwrap()),
            );
            let sender = itk::Sender {
                ods_code: "X99CLW",
                name: "Links",
                mailbox: "CLWGW0001",
            };
            let xml = itk::message(&entry, "m1", &sender, &entry.event.occurred_at).to_xml();
            out.insert(format!("{stem}.itk3.xml"), xml.into_bytes());
        }
    }
    out
}

#[test]
fn every_writer_renders_every_event_byte_for_byte_as_before() {
    let dir = dir();
    let bless = std::env::var_os("CLW_BLESS").is_some();
    let mut differ = Vec::new();
    for (name, bytes) in rendered() {
        let path = dir.join(&name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let before = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        if before != bytes {
            differ.push(name);
        }
    }
    assert!(
        differ.is_empty(),
        "renderings differ from tests/fixtures/record-golden: {differ:?}"
    );
}
