//! The programme dataset, end to end: referrals through the broker, their events through
//! the signed door, both halves recorded as facts, and the extract checked row by row
//! against what was sent — contacts counted, score change, days, categories; the
//! pseudonym stable across extracts and different under another key; a declined-consent
//! and an opted-out referral counted, not listed; no identifier or free text anywhere.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

const SECRET_ENV: &str = "CLW_TEST_DATASET_SECRET";
const SECRET: &str = "dataset-signing-secret";
const KEY_ENV: &str = "CLW_TEST_DATASET_KEY";
const KEY: &str = "an-extract-key-of-at-least-32-bytes-0001";
const OTHER_KEY: &str = "another-extract-key-of-32-bytes-or-more-02";

/// A valid NHS number from nine digits (modulus 11), or None when none exists.
fn nhs(nine: &str) -> Option<String> {
    let sum: u32 = nine
        .bytes()
        .zip((2..=10).rev())
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    match 11 - sum % 11 {
        10 => None,
        11 => Some(format!("{nine}0")),
        c => Some(format!("{nine}{c}")),
    }
}

/// The example referral under `id`, for the patient with `number`; `declined` makes
/// its Consent deny.
fn referral_for(id: &str, number: &str, declined: bool) -> Value {
    let mut r = referral_with_id(id);
    for e in r["entry"].as_array_mut().unwrap() {
        let res = &mut e["resource"];
        if res["resourceType"] == "Patient" {
            // Patient B lives at an (invented) postcode the deprivation fixture knows.
            if number != "9912003888" {
                res["address"][0]["postalCode"] = json!("zz2 2aa");
            }
            for i in res["identifier"].as_array_mut().unwrap() {
                if i["system"] == "https://fhir.nhs.uk/Id/nhs-number" {
                    i["value"] = json!(number);
                }
            }
        }
        if declined && res["resourceType"] == "Consent" {
            res["provision"]["type"] = json!("deny");
        }
    }
    r
}

fn event(referral: &str, number: &str, id: &str, kind: &str, extra: Value) -> Value {
    let mut e = json!({
        "event_id": id,
        "type": kind,
        "occurred_at": "2026-11-21T10:00:00Z",
        "referral": {"message_id": referral,
                     "patient": {"nhs_number": number, "date_of_birth": "1970-09-11", "family_name": "Smith"}},
        "summary": "Talked about the allotment and the walking group",
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// Runs `clw-gateway <command>` (extract or report) over the test period, with the
/// pseudonym key `key` in the environment or none.
fn run(
    config: &Path,
    command: &str,
    key: Option<&str>,
    format: &str,
    out: &Path,
) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clw-gateway"));
    match key {
        Some(k) => c.env(KEY_ENV, k),
        None => c.env_remove(KEY_ENV),
    };
    let o = c
        .arg("--config")
        .arg(config)
        .args([
            command,
            "--programme",
            "default",
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-31",
            "--format",
            format,
            "--actor",
            "evaluator",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn extract(config: &Path, key: &str, format: &str, out: &Path) -> (bool, String) {
    run(config, "extract", Some(key), format, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extract_holds_both_halves_of_every_referral_and_nothing_that_identifies() {
    let s = Setup::new("dataset");
    let hook = Receiver::start(&[]).await;
    let port = announced_free_port();
    // SAFETY: values no other test reads differently.
    unsafe { std::env::set_var(SECRET_ENV, SECRET) };
    let folder = s.dir.path().join("practice");
    let path = child_message_back_config(
        &s,
        &hook.url,
        port,
        SECRET_ENV,
        &[(
            "gp-folder",
            format!(
                "kind = \"practice-folder\"\ndir = {:?}\nallow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
                folder.display().to_string()
            ),
        )],
    );
    let (a, b, opted) = (
        "9912003888".to_string(),
        nhs("943476591").unwrap(),
        nhs("401023213").unwrap(),
    );
    let opt_out = s.dir.path().join("opt-out.txt");
    std::fs::write(&opt_out, format!("# national data opt-out\n{opted}\n")).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    let fixture = |f: &str| {
        repo_path(&format!("tests/fixtures/deprivation/{f}"))
            .display()
            .to_string()
    };
    text.push_str(&format!(
        "[dataset]\npseudonym_key = {{ env = \"{KEY_ENV}\" }}\nopt_out = {:?}\n\
         [[dataset.deprivation.tables]]\nindex = \"imd\"\npostcodes = {:?}\npostcode_column = \"pcds\"\n\
         area_column = \"lsoa11cd\"\ndeciles = {:?}\ndecile_area_column = \"LSOA code (2011)\"\n\
         decile_column = \"Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)\"\n",
        opt_out.display().to_string(),
        fixture("imd-postcodes.csv"),
        fixture("imd-deciles.csv"),
    ));
    std::fs::write(&path, text).unwrap();
    let config = clw_gateway::config::Config::parse(Some(&path), Vec::new()).unwrap();
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&config).await;
    let mut gw = ChildGateway::start(&path);

    let refs = [
        (unique("ref-a"), a.clone(), false),
        (unique("ref-b"), b.clone(), false),
        (unique("ref-c"), a.clone(), false), // A again: a repeat referral
        (unique("ref-d"), b.clone(), true),  // consent declined
        (unique("ref-e"), opted.clone(), false),
    ];
    for (id, number, declined) in &refs {
        let body = referral_for(id, number, *declined);
        rabbit
            .publish(&t.exchange(), body.to_string().as_bytes(), &ce_headers(id))
            .await;
    }
    eventually("four referrals delivered", WAIT, || async {
        (hook.count() == 4).then_some(())
    })
    .await;
    listening(port).await;
    let (ra, rb) = (&refs[0].0, &refs[1].0);
    let events = [
        event(
            ra,
            &a,
            "a1",
            "referral-accepted",
            json!({"occurred_at": "2026-11-22T09:00:00Z"}),
        ),
        event(
            ra,
            &a,
            "a2",
            "contact",
            json!({"contact": {"mode": "face-to-face", "date": "2026-11-26", "duration_minutes": 45}}),
        ),
        event(
            ra,
            &a,
            "a3",
            "assessment",
            json!({"assessment": {"instrument": "SWEMWBS", "score": 19, "date": "2026-11-26"}}),
        ),
        event(
            ra,
            &a,
            "a4",
            "contact",
            json!({"contact": {"mode": "telephone", "date": "2026-12-03", "duration_minutes": 20}}),
        ),
        event(
            ra,
            &a,
            "a5",
            "assessment",
            json!({"assessment": {"instrument": "SWEMWBS", "score": 25, "date": "2026-12-03"}}),
        ),
        event(
            ra,
            &a,
            "a6",
            "onward-referral",
            json!({"onward_referral": {"to": "Leeds Befriending Service", "category": "befriending"}}),
        ),
        event(
            ra,
            &a,
            "a7",
            "closed",
            json!({"occurred_at": "2026-12-05T09:00:00Z", "closed": {"reason": "completed", "outcome": "Walks weekly"}}),
        ),
        event(
            rb,
            &b,
            "b1",
            "referral-declined",
            json!({"occurred_at": "2026-11-27T09:00:00Z", "declined_reason": {"text": "Moved away"}}),
        ),
    ];
    for e in &events {
        let sent = post_event(port, "links", SECRET, e).await;
        assert_eq!(sent.status, 202, "{}", sent.body);
    }
    let store = clw_gateway::store::Store::connect(&s.store_url, 2, 16)
        .await
        .unwrap();
    wait_delivered(&store, "message-back", events.len() as i64).await;

    // The row-level extract, JSON, against its schema.
    let out = s.dir.path().join("extract.json");
    let (ok, err) = extract(&path, KEY, "json", &out);
    assert!(ok, "{err}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let schema: Value = serde_json::from_slice(
        &std::fs::read(repo_path("schemas/dataset-extract.v1.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        doc["totals"],
        json!({"referrals": 5, "consent_declined": 1, "opted_out": 1})
    );
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        3,
        "the declined and the opted-out are counted, not listed"
    );
    let by_person = |p: &Value| rows.iter().filter(|r| r["person"] == *p).count();
    // Rows come in referral order; A's episode is the one with contacts.
    let row_a = rows.iter().find(|r| r["contacts"] == 2).expect("A's row");
    assert_eq!(by_person(&row_a["person"]), 2, "A's two referrals link");
    let row_b = rows
        .iter()
        .find(|r| r["response"] == "declined")
        .expect("B's row");
    assert_ne!(row_b["person"], row_a["person"]);
    assert_eq!(row_a["practice_code"], "GP5");
    assert_eq!(row_a["practice_code_system"], "ods");
    assert_eq!(row_a["nation"], "england");
    assert_eq!(row_a["referral_month"], "2026-11");
    assert_eq!(row_a["age_band"], "55-64");
    assert_eq!(row_a["age_band_5y"], "55-59");
    assert_eq!(row_a["gender"], "male");
    assert_eq!(row_a["reason_codes"], json!(["422650009"]));
    assert_eq!(
        row_a["reason_categories"],
        json!(["Social isolation / loneliness"])
    );
    assert_eq!(row_a["consent"], "full");
    assert_eq!(row_a["response"], "accepted");
    assert_eq!(row_a["days_to_response"], 2, "20 Nov → 22 Nov");
    assert_eq!(row_a["days_to_first_contact"], 6, "20 Nov → 26 Nov");
    assert_eq!(
        row_a["contacts_by_mode"],
        json!({"face-to-face": 1, "telephone": 1})
    );
    assert_eq!(row_a["contact_minutes"], 65);
    assert_eq!(
        row_a["swemwbs"],
        json!({"first": 19.0, "last": 25.0, "change": 6.0, "count": 2})
    );
    assert_eq!(row_a["onward_referrals"], json!({"befriending": 1}));
    assert_eq!(row_a["closure_reason"], "completed");
    // Support and outcomes by the code maps' categories and the PRSB code sets.
    assert_eq!(
        row_a["support_offered"],
        json!({"Onward referral: befriending": 1})
    );
    assert_eq!(row_a["support_codes"], json!(["3457005"]));
    assert_eq!(row_a["outcome"], "Closed: support completed");
    assert_eq!(row_a["days_open"], 15, "20 Nov → 5 Dec");
    assert_eq!(row_a["open"], false);
    assert_eq!(row_b["days_to_response"], 7);
    // Deprivation from the postcode through the operator's lookup (the postcode itself is
    // not kept); a postcode the files do not hold gives none.
    assert_eq!(
        (&row_b["deprivation_index"], &row_b["deprivation_decile"]),
        (&json!("imd"), &json!(7))
    );
    assert!(row_a.get("deprivation_decile").is_none());
    assert_eq!(row_b["contacts"], 0);
    assert_eq!(row_b["open"], false, "declined: the episode ended");
    assert_eq!(row_b["days_open"], 7);
    let row_c = rows
        .iter()
        .find(|r| r["person"] == row_a["person"] && r["contacts"] == 0)
        .expect("A's repeat referral");
    assert_eq!(row_c["open"], true);
    assert_eq!(row_c["days_open"], 41, "20 Nov → 31 Dec, the period's end");
    assert!(row_c.get("response").is_none());

    // Stable under the same key, different under another.
    let again = s.dir.path().join("again.json");
    assert!(extract(&path, KEY, "json", &again).0);
    let again: Value = serde_json::from_slice(&std::fs::read(&again).unwrap()).unwrap();
    assert_eq!(again["rows"], doc["rows"]);
    let other = s.dir.path().join("other.json");
    assert!(extract(&path, OTHER_KEY, "json", &other).0);
    let other: Value = serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    for (x, y) in other["rows"].as_array().unwrap().iter().zip(rows) {
        assert_ne!(x["person"], y["person"]);
    }
    // CSV: a header and one line per row.
    let csv_out = s.dir.path().join("extract.csv");
    assert!(extract(&path, KEY, "csv", &csv_out).0);
    let csv_text = std::fs::read_to_string(&csv_out).unwrap();
    assert_eq!(csv_text.lines().count(), 4, "{csv_text}");
    assert!(
        csv_text.starts_with("person,programme,practice_code"),
        "{csv_text}"
    );

    // Nothing that identifies, and no free text, anywhere in either output.
    let json_text = std::fs::read_to_string(&out).unwrap();
    for (what, value) in [
        ("NHS number", a.as_str()),
        ("NHS number", b.as_str()),
        ("NHS number", opted.as_str()),
        ("name", "SMITH"),
        ("name", "Smith"),
        ("name", "Richard"),
        ("date of birth", "1970-09-11"),
        ("postcode", "LS17"),
        ("postcode", "ZZ2"),
        ("postcode", "zz2"),
        ("free text", "allotment"),
        ("free text", "gardening"),
        ("free text", "Moved away"),
        ("free text", "Walks weekly"),
        ("free text", "Befriending Service"),
    ] {
        assert!(!json_text.contains(value), "{what} in the JSON extract");
        assert!(!csv_text.contains(value), "{what} in the CSV extract");
    }

    // Without the key the row-level extract refuses; every extract is audited.
    let (ok, err) = run(
        &path,
        "extract",
        None,
        "csv",
        &s.dir.path().join("no-key.csv"),
    );
    assert!(!ok);
    assert!(err.contains("dataset.pseudonym_key"), "{err}");
    let audit = store
        .audit("dataset", "default:2026-11-01..2026-12-31")
        .await
        .unwrap();
    let extracted: Vec<_> = audit
        .iter()
        .filter(|a| a.entry.action.as_str() == "extracted")
        .collect();
    assert_eq!(extracted.len(), 4, "{audit:?}");
    assert_eq!(extracted[0].entry.actor, "evaluator");
    assert!(
        extracted[0]
            .entry
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("3 rows of 5 referrals"),
        "{:?}",
        extracted[0].entry.detail
    );

    // The aggregate report: no pseudonym key needed; every count here is small, so shown
    // as "<5", never as itself; no identifier or free text in it either.
    for format in ["html", "json", "pdf"] {
        let report = s.dir.path().join(format!("report.{format}"));
        let (ok, err) = run(&path, "report", None, format, &report);
        assert!(ok, "{err}");
        let bytes = std::fs::read(&report).unwrap();
        if format == "pdf" {
            assert!(bytes.starts_with(b"%PDF-"), "a PDF");
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("&lt;5") || text.contains("<5"), "{text}");
        for value in [
            a.as_str(),
            b.as_str(),
            "SMITH",
            "Richard",
            "1970-09-11",
            "LS17",
            "allotment",
            "Moved away",
        ] {
            assert!(
                !text.contains(value),
                "an identifier or free text in the {format} report"
            );
        }
        if format == "json" {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v.to_string().contains("\"<5\""), "{v}");
        }
    }

    let reports = store
        .audit("dataset", "default:2026-11-01..2026-12-31")
        .await
        .unwrap()
        .into_iter()
        .filter(|a| {
            a.entry
                .detail
                .as_deref()
                .is_some_and(|d| d.starts_with("report"))
        })
        .count();
    assert_eq!(reports, 3, "every report audited");

    // The scheduled extract: every programme's file, whole, in the folder.
    let mut scheduled = config.clone();
    let dir = s.dir.path().join("extracts");
    scheduled.dataset.schedule = Some(clw_gateway::dataset::config::Schedule {
        dir: dir.clone(),
        every: std::time::Duration::from_secs(86_400),
        months: 1200,
        format: "csv".into(),
    });
    // SAFETY: a value no other test reads differently.
    unsafe { std::env::set_var(KEY_ENV, KEY) };
    assert_eq!(
        clw_gateway::app::extracts::write_all(
            &scheduled,
            &store,
            &clw_gateway::dataset::extract::CodeMaps::of(
                &clw_gateway::mapping::MappingSet::load_configured(&repo_path("mappings")).unwrap(),
            ),
        )
        .await
        .unwrap(),
        1
    );
    let written = std::fs::read_to_string(dir.join("default.csv")).unwrap();
    assert_eq!(written.lines().count(), 4, "{written}");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["default.csv"], "no partial file left");

    gw.kill();
    store.close().await;
    rabbit.cleanup(&t).await;
}

/// A free port the child gateway's door can listen on.
fn announced_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
