//! The message back: platform events → coded entries in the practice record, linked to
//! the referral they are about, exactly once, with the patient checked.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clw_gateway::app;
use common::*;
use serde_json::{Value, json};

/// The example referral's id (its MessageHeader id: spool files carry no ce-id).
const REFERRAL_ID: &str = "5b2e6f8a-1c2d-4e3f-8a9b-0c1d2e3f4a5b";

pub fn event(id: &str, kind: &str, extra: Value) -> Value {
    let mut e = json!({
        "event_id": id,
        "type": kind,
        "occurred_at": "2026-11-25T10:00:00Z",
        "referral": {"message_id": REFERRAL_ID,
                     "patient": {"nhs_number": "9912003888", "date_of_birth": "1970-09-11", "family_name": "Smith"}},
        "practitioner": {"name": "Sam Link", "role": "Social prescribing link worker"},
    });
    if let (Some(e), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            e.insert(k.clone(), v.clone());
        }
    }
    e
}

fn drop_file(dir: &Path, name: &str, body: &Value) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// `serve` with no configuration shows both flows: a referral dropped in the spool
/// reaches the outbox; an event dropped in the events spool reaches the practice
/// folder as a coded document — once, however often it is dropped.
#[tokio::test]
async fn the_embedded_default_writes_an_event_to_the_practice_folder_coded() {
    let s = Setup::new("mb-embedded");
    let config = s.config("");
    assert!(
        config.message_back().is_some(),
        "on in the embedded default"
    );
    let data = s.dir.path();
    let gw = app::start(config).await.unwrap();
    let spool = data.join("spool");
    drop_file(&spool.join("referrals/inbox"), "r1.json", &referral());
    let outbox = data
        .join("outbox/referrals")
        .join(format!("{REFERRAL_ID}.json"));
    eventually(
        "the referral delivered",
        Duration::from_secs(20),
        || async { outbox.exists().then_some(()) },
    )
    .await;

    let accepted = event("evt-1", "referral-accepted", json!({}));
    let score = event(
        "evt-2",
        "assessment",
        json!({"assessment": {"instrument": "SWEMWBS", "score": 21, "date": "2026-11-25"},
               "summary": "Feels more connected since joining the walking group."}),
    );
    drop_file(&spool.join("events/inbox"), "e1.json", &accepted);
    drop_file(&spool.join("events/inbox"), "e2.json", &score);
    drop_file(&spool.join("events/inbox"), "e2-again.json", &score);
    let folder = data.join("practice/GP5");
    eventually(
        "two documents in the practice folder",
        Duration::from_secs(20),
        || async {
            (files_in(&folder, "txt").len() == 2
                && files_in(&spool.join("events/done"), "json").len() == 3)
                .then_some(())
        },
    )
    .await;
    let docs: Vec<String> = files_in(&folder, "txt")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let accepted_doc = docs.iter().find(|d| d.contains("accepted")).unwrap();
    assert!(
        accepted_doc.contains("SNOMED CT  871731000000106"),
        "{accepted_doc}"
    );
    assert!(
        accepted_doc.contains("NHS number 991 200 3888"),
        "{accepted_doc}"
    );
    let score_doc = docs.iter().find(|d| d.contains("SWEMWBS")).unwrap();
    assert!(score_doc.contains("SWEMWBS score 21"), "{score_doc}");
    assert!(score_doc.contains("718466001"), "{score_doc}");
    // The referral's consent in the example is full: the summary travels.
    assert!(score_doc.contains("walking group"), "{score_doc}");
    for f in files_in(&folder, "txt") {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600,
            "owner-only"
        );
    }
    // The referral's state follows its events.
    let events = gw.store.referral_events(REFERRAL_ID).await.unwrap();
    assert_eq!(events.len(), 2, "the repeat counted once");
    assert_eq!(clw_gateway::store::derived_state(&events), "in-progress");
    gw.stop().await.unwrap();
}
