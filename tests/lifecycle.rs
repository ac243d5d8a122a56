//! A referral's whole life (docs/lifecycle.md), end to end: later messages about one
//! ServiceRequest (its identifier) reach each destination kind as an update, a
//! cancellation or a withdrawal — once, never as a second referral — and a referral
//! nobody answers is reminded, then closed as not responded and written back to the
//! practice record with its own code. On the real broker, the FHIR test server and the
//! Lamplight stand-in.

mod common;

use std::time::Duration;

use clw_gateway::sources::lifecycle::{LifecycleConfig, UnansweredPolicy};
use common::standins::*;
use common::*;
use serde_json::{Value, json};

/// The practice's identifier system for its referrals (ServiceRequest.identifier).
const PRACTICE_SYSTEM: &str = "https://whiterose.example.nhs.uk/Id/referral";
/// The gateway's identifier of a referral at a FHIR destination (value: its first id).
const GATEWAY_SYSTEM: &str = "https://clw-gateway.org/Id/referral";

fn resource<'a>(r: &'a mut Value, kind: &str) -> &'a mut Value {
    r["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .map(|e| &mut e["resource"])
        .find(|x| x["resourceType"] == kind)
        .unwrap()
}

/// The example referral under `message_id`, its ServiceRequest carrying the practice's
/// identifier `identifier`.
fn versioned(message_id: &str, identifier: &str) -> Value {
    let mut r = referral_with_id(message_id);
    resource(&mut r, "ServiceRequest")["identifier"] =
        json!([{"system": PRACTICE_SYSTEM, "value": identifier}]);
    r
}

fn with_phone(mut r: Value, phone: &str) -> Value {
    resource(&mut r, "Patient")["telecom"][0]["value"] = json!(phone);
    r
}

fn with_status(mut r: Value, status: &str) -> Value {
    resource(&mut r, "ServiceRequest")["status"] = json!(status);
    r
}

/// `body` against the repository's schema `name`: the problems, none when valid.
fn schema_problems(name: &str, body: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path(&format!("schemas/{name}"))).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator.iter_errors(body).map(|e| e.to_string()).collect()
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn fhir_destination(base: &str) -> String {
    format!(
        "kind = \"fhir\"\nbase_url = \"{base}\"\nmapping = \"fhir-servicerequest\"\n\
         timeout = \"10s\"\nconnect_timeout = \"2s\"\nagreement = \"DSA-FHIR-1\"\n\
         allow = [\"person_demographics.nhs_number\", \"person_demographics.chi_number\", \"referral_details\", \"referrer_details.name\", \"referred_to\"]\n\
         constants = {{ chi_system = \"https://fhir.nhs.uk/Id/chi-number\" }}\n"
    )
}

/// One ServiceRequest or Task at the FHIR destination for the referral first sent as
/// `referral_id`.
async fn only(fhir: &FhirServer, kind: &str, referral_id: &str) -> Value {
    let found = fhir
        .search(&format!("{kind}?identifier={GATEWAY_SYSTEM}|{referral_id}"))
        .await;
    assert_eq!(found.len(), 1, "one {kind} for the referral: {found:?}");
    found.into_iter().next().unwrap()
}

/// `clw-gateway status ID` against the test's store: what an operator reads.
fn status(s: &Setup, id: &str) -> String {
    let path = s.dir.path().join("status.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\ndata_dir = {:?}\n[store]\nurl = {:?}\n",
            s.dir.path().display().to_string(),
            s.store_url
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
        .arg("--config")
        .arg(&path)
        .args(["status", id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A referral, its correction (a new phone number), an unchanged copy, its cancellation
/// and a correction after the cancellation: the webhook gets an update and a
/// cancellation payload, the FHIR destination its ServiceRequest replaced then revoked
/// and its Task cancelled, the sheet a row for each, and Lamplight — whose API takes
/// neither — nothing more, each such version held for a person naming the fields. No
/// platform gets a second referral; `status` shows every transition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_versions_reach_each_destination_kind_as_what_they_are_once() {
    let fhir = FhirServer::start().await;
    let (lamplight_url, lamplight_log) = serve(axum::routing::any(lamplight), &[]).await;
    let mut sheet_dir = None;
    let h = Harness::start_with("lifecycle", &[], &["200ms", "500ms"], |c| {
        c.mappings.dir = repo_path("mappings");
        c.destinations
            .insert("fhir", destination(&fhir_destination(&fhir.base)));
        c.destinations.insert(
            "lamp",
            destination(&lamplight_toml(&lamplight_url, "lamplight-person", None)),
        );
        let dir = c.gateway.data_dir.join("sheet");
        c.destinations.insert(
            "sheet",
            destination(&format!(
                "kind = \"csv\"\ndir = {:?}\nmapping = \"csv-referral\"\nagreement = \"DSA-SHEET-1\"\n\
                 allow = [\"person_demographics\", \"gp_practice\", \"referral_details\", \"referrer_details.name\"]\n",
                dir.display().to_string()
            )),
        );
        sheet_dir = Some(dir);
        c.referrals.destinations = ["clw", "fhir", "sheet", "lamp"].map(String::from).to_vec();
    })
    .await;
    let sheet_dir = sheet_dir.unwrap();
    let identifier = unique("R");
    let first = unique("ref");
    h.publish(&first, &versioned(&first, &identifier)).await;
    h.wait_state(&first, "delivered").await;
    assert_eq!(h.hook.count(), 1);
    assert_eq!(
        header(&h.hook.received()[0], "X-CLW-Event"),
        "referral.created"
    );

    // The practice corrects the phone number.
    let amended = unique("ref");
    let corrected = with_phone(versioned(&amended, &identifier), "01139998888");
    h.publish(&amended, &corrected).await;
    h.wait_state(&amended, "parked").await;
    let parked = h.wait_parked("referral", 1).await;
    assert!(
        parked[0].reason.contains(
            "lamp (lamplight) cannot take an update (changed: person_demographics.telecom.value)"
        ),
        "{}",
        parked[0].reason
    );
    let update = h.hook.received()[1].clone();
    assert_eq!(header(&update, "X-CLW-Event"), "referral.updated");
    assert_eq!(header(&update, "X-CLW-Referral-ID"), first);
    assert_eq!(update.body["lifecycle"]["event"], "updated");
    assert_eq!(update.body["lifecycle"]["referral_id"], first.as_str());
    assert_eq!(
        update.body["lifecycle"]["changed"],
        json!(["person_demographics.telecom.value"])
    );
    assert_eq!(
        update.body["lifecycle"]["service_request_identifier"]["value"],
        identifier.as_str()
    );
    assert_eq!(
        schema_problems("prsb-referral.v1.schema.json", &update.body),
        Vec::<String>::new(),
        "an update is a valid PRSB referral"
    );
    assert!(
        update.body.to_string().contains("01139998888"),
        "the update carries the new number: {}",
        update.body
    );
    let deliveries = h.gw.store.deliveries("referral", &amended).await.unwrap();
    let state = |name: &str| {
        deliveries
            .iter()
            .find(|d| d.destination == name)
            .map(|d| d.state.clone())
    };
    assert_eq!(state("fhir").as_deref(), Some("delivered"));
    assert_eq!(state("sheet").as_deref(), Some("delivered"));
    assert_eq!(state("lamp").as_deref(), Some("failed"));
    assert_eq!(
        only(&fhir, "ServiceRequest", &first).await["status"],
        "active",
        "the one ServiceRequest, replaced"
    );

    // The same version again under a new id: recorded, nothing sent.
    let copy = unique("ref");
    h.publish(
        &copy,
        &with_phone(versioned(&copy, &identifier), "01139998888"),
    )
    .await;
    h.wait_state(&copy, "withheld").await;
    assert_eq!(h.hook.count(), 2, "an unchanged copy sends nothing");

    // The practice cancels it.
    let cancel = unique("ref");
    h.publish(
        &cancel,
        &with_status(
            with_phone(versioned(&cancel, &identifier), "01139998888"),
            "revoked",
        ),
    )
    .await;
    h.wait_state(&cancel, "parked").await;
    let notice = h.hook.received()[2].clone();
    assert_eq!(header(&notice, "X-CLW-Event"), "referral.cancelled");
    assert_eq!(header(&notice, "X-CLW-Referral-ID"), first);
    assert_eq!(
        notice.body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["lifecycle"],
        "a cancellation carries nothing of the patient: {}",
        notice.body
    );
    assert_eq!(notice.body["lifecycle"]["event"], "cancelled");
    assert_eq!(
        schema_problems("referral-notice.v1.schema.json", &notice.body),
        Vec::<String>::new()
    );
    assert_eq!(notice.body["lifecycle"]["referral_id"], first.as_str());
    assert!(
        notice.body["lifecycle"]["reason"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    assert_eq!(
        only(&fhir, "ServiceRequest", &first).await["status"],
        "revoked"
    );
    let task = only(&fhir, "Task", &first).await;
    assert_eq!(task["status"], "cancelled");
    assert_eq!(
        task["statusReason"]["coding"][0]["system"],
        "https://clw-gateway.org/CodeSystem/referral-lifecycle"
    );
    fhir_js_validate(&[task.clone(), only(&fhir, "ServiceRequest", &first).await]).unwrap();

    // The sheet: one row for each, every one quoting the referral.
    let files: Vec<_> = std::fs::read_dir(&sheet_dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    let lines: Vec<&str> = text
        .trim_start_matches('\u{feff}')
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines[0].ends_with(",Gateway reference,Gateway action"));
    assert_eq!(
        lines.len(),
        4,
        "header, referral, update, cancellation: {lines:?}"
    );
    assert!(lines[1].ends_with(&format!(",{first},referral")));
    assert!(lines[2].ends_with(&format!(",{first},updated")));
    assert!(lines[2].contains("01139998888"));
    assert!(lines[3].ends_with(&format!(",{first},cancelled")));
    assert!(
        !lines[3].contains("SMITH") && !lines[3].contains("9912003888"),
        "a cancellation row carries only the reference: {}",
        lines[3]
    );

    // A correction after the cancellation is held, never sent.
    let late = unique("ref");
    h.publish(
        &late,
        &with_phone(versioned(&late, &identifier), "01130000000"),
    )
    .await;
    h.wait_state(&late, "parked").await;
    let row =
        h.gw.store
            .message("referral", &late)
            .await
            .unwrap()
            .unwrap();
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or("")
            .contains("has ended (cancelled"),
        "{row:?}"
    );
    assert_eq!(h.hook.count(), 3, "nothing after the cancellation");

    // Lamplight got the referral once and nothing else.
    {
        let log = lamplight_log.lock().unwrap();
        let paths: Vec<&str> = log.accepted.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/api/people/add/role/user", "/api/referral/add/"]);
    }
    // One ServiceRequest and one Task in all: never a second referral.
    assert_eq!(fhir.search("ServiceRequest").await.len(), 1);
    assert_eq!(fhir.search("Task").await.len(), 1);

    // Any version's id names the one referral; status shows each transition.
    let out = status(&h.s, &cancel);
    assert!(
        out.contains(&format!("cancelled by {cancel}")),
        "the ending: {out}"
    );
    let versions: Vec<&str> = out.lines().filter(|l| l.starts_with("version")).collect();
    assert_eq!(versions.len(), 4, "{out}");
    for (line, (change, id)) in versions.iter().zip([
        ("new", &first),
        ("amend", &amended),
        ("unchanged", &copy),
        ("cancel", &cancel),
    ]) {
        assert!(line.contains(&format!(" {change} {id}")), "{line}");
    }
    assert!(versions[1].contains("(changed: person_demographics.telecom.value)"));
    assert!(versions[3].contains("clw: delivered") && versions[3].contains("lamp: failed"));
    h.finish().await;
}

/// A spool-mode gateway with the message back: platform `links` answers the referrals
/// sent to the outbox.
async fn gateway_with_events(s: &Setup) -> clw_gateway::app::Running {
    // SAFETY: a value no other test reads differently.
    unsafe { std::env::set_var("CLW_TEST_LIFECYCLE_SECRET", "lifecycle-secret") };
    door_gateway(
        s,
        "[message_back]\nwriters = [\"practice-folder\"]\n\
         [message_back.platforms.links]\nsecret = { env = \"CLW_TEST_LIFECYCLE_SECRET\" }\n\
         programme = \"default\"\ndestinations = [\"outbox\"]\n",
    )
    .await
}

/// The readable record entry the practice folder holds for event `id`.
fn practice_text(data: &std::path::Path, id: &str) -> String {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&data.join("practice"), &mut files);
    let found: Vec<_> = files
        .iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".txt") && name.contains(id)
        })
        .collect();
    assert_eq!(found.len(), 1, "one entry for {id}: {files:?}");
    std::fs::read_to_string(found[0]).unwrap()
}

fn contact(id: &str, referral: &str, summary: &str) -> Value {
    let mut e = example_event(id, json!({"summary": summary}));
    e["referral"]["message_id"] = json!(referral);
    e
}

/// A Consent that now denies stops the summary in the next event's write-back (an event
/// naming the withdrawing version's id reaches the one referral), and the outbox gets the
/// withdrawal notice; an event after a cancellation is written as what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_consent_stops_free_text_and_events_after_a_cancellation_say_so() {
    let s = Setup::new("withdraw");
    let gw = gateway_with_events(&s).await;
    let port = gw.ingress_addr.unwrap().port();
    let data = s.dir.path();
    let inbox = data.join("spool/referrals/inbox");
    let secret = "lifecycle-secret";

    let identifier = unique("R");
    let first = unique("ref");
    drop_file(&inbox, "first.json", &versioned(&first, &identifier));
    wait_message(&gw.store, "referral", &first, "delivered").await;
    let said = "Talked through the walking group";
    assert_eq!(
        post_event(port, "links", secret, &contact("e-before", &first, said))
            .await
            .status,
        202
    );
    wait_message(&gw.store, "message-back", "links:e-before", "delivered").await;
    assert!(practice_text(data, "e-before").contains(said));

    // The patient withdraws consent: the Consent is now inactive.
    let withdrawn = unique("ref");
    let mut body = versioned(&withdrawn, &identifier);
    resource(&mut body, "Consent")["status"] = json!("inactive");
    drop_file(&inbox, "withdrawn.json", &body);
    wait_message(&gw.store, "referral", &withdrawn, "delivered").await;
    let notice: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join(format!("outbox/referrals/{withdrawn}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(notice["lifecycle"]["event"], "consent-withdrawn");
    assert_eq!(notice["lifecycle"]["referral_id"], first.as_str());
    assert!(notice.get("person_demographics").is_none(), "{notice}");
    let audit = gw.store.audit("referral", &withdrawn).await.unwrap();
    assert!(
        audit.iter().any(|a| a.entry.action.as_str() == "lifecycle"
            && a.entry
                .detail
                .as_deref()
                .unwrap_or("")
                .contains("withdrew consent")),
        "the audit says when and why: {audit:?}"
    );

    let later = "Second session notes";
    assert_eq!(
        post_event(
            port,
            "links",
            secret,
            &contact("e-after", &withdrawn, later)
        )
        .await
        .status,
        202
    );
    wait_message(&gw.store, "message-back", "links:e-after", "delivered").await;
    let text = practice_text(data, "e-after");
    assert!(
        !text.contains(later),
        "no free text after withdrawal: {text}"
    );
    assert!(
        text.contains("after the patient withdrew consent"),
        "{text}"
    );

    // A second referral, cancelled; the platform's contact afterwards is written as such.
    let identifier = unique("R");
    let second = unique("ref");
    drop_file(&inbox, "second.json", &versioned(&second, &identifier));
    wait_message(&gw.store, "referral", &second, "delivered").await;
    let cancel = unique("ref");
    drop_file(
        &inbox,
        "cancel.json",
        &with_status(versioned(&cancel, &identifier), "entered-in-error"),
    );
    wait_message(&gw.store, "referral", &cancel, "delivered").await;
    assert_eq!(
        post_event(port, "links", secret, &contact("e-cancelled", &second, "x"))
            .await
            .status,
        202
    );
    wait_message(&gw.store, "message-back", "links:e-cancelled", "delivered").await;
    let text = practice_text(data, "e-cancelled");
    assert!(text.contains("after the referral was cancelled"), "{text}");
    let timeline = clw_gateway::store::timeline::referral_timeline(&gw.store, &cancel)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(timeline["state"], "cancelled");
    assert_eq!(timeline["referral_id"], second.as_str());

    // A cancellation of an identifier the gateway never sent is held, never sent.
    let stray = unique("ref");
    drop_file(
        &inbox,
        "stray.json",
        &with_status(versioned(&stray, &unique("R")), "revoked"),
    );
    let row = wait_message(&gw.store, "referral", &stray, "parked").await;
    let reason = row.last_error.unwrap_or_default();
    assert!(reason.contains("no record of sending"), "{reason}");
    assert!(!data.join(format!("outbox/referrals/{stray}.json")).exists());
    gw.stop().await.unwrap();
}

/// Nobody answers: the webhook gets a reminder and the FHIR destination's Task a note,
/// then (a shortened `close_after`) both are told the referral is closed as not
/// responded, and the practice record gets an entry with the gateway's own code — not
/// "declined" — once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_referral_is_reminded_then_closed_and_written_back_with_its_own_code() {
    let platform = FhirServer::start().await;
    let record = FhirServer::start().await;
    let h = Harness::start_with("unanswered", &[], &["200ms", "500ms"], |c| {
        c.mappings.dir = repo_path("mappings");
        c.destinations
            .insert("fhir", destination(&fhir_destination(&platform.base)));
        c.referrals.destinations.push("fhir".into());
        c.destinations.insert(
            "gp-fhir",
            destination(&format!(
                "kind = \"fhir-record\"\nbase_url = \"{}\"\ntimeout = \"10s\"\n\
                 allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
                record.base
            )),
        );
        c.message_back = Some(toml::from_str("writers = [\"gp-fhir\"]\n").unwrap());
        c.lifecycle = LifecycleConfig {
            check_every: Duration::from_millis(200),
            programmes: [(
                "default".to_string(),
                UnansweredPolicy {
                    respond_within: Duration::from_secs(1),
                    remind_every: None,
                    close_after: Some(Duration::from_secs(4)),
                },
            )]
            .into(),
        };
    })
    .await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    h.wait_state(&id, "delivered").await;
    let event = |r: &Received| header(r, "X-CLW-Event").to_string();

    let reminder = eventually("a reminder at the webhook", WAIT, || async {
        h.hook
            .received()
            .into_iter()
            .find(|r| event(r) == "referral.reminder")
    })
    .await;
    assert_eq!(reminder.body["lifecycle"]["referral_id"], id.as_str());
    assert_eq!(header(&reminder, "X-CLW-Referral-ID"), id);
    let task = eventually("the Task's note", WAIT, || async {
        let t = only(&platform, "Task", &id).await;
        t["note"].is_array().then_some(t)
    })
    .await;
    assert_eq!(
        task["businessStatus"]["text"],
        "Reminder: no response from the service"
    );
    assert!(
        task["note"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Reminder from the referrer's gateway: no response from the service")
    );

    let closed = eventually("the close at the webhook", WAIT, || async {
        h.hook
            .received()
            .into_iter()
            .find(|r| event(r) == "referral.closed-not-responded")
    })
    .await;
    assert_eq!(closed.body["lifecycle"]["event"], "closed-not-responded");
    for body in [&reminder.body, &closed.body] {
        assert_eq!(
            schema_problems("referral-notice.v1.schema.json", body),
            Vec::<String>::new()
        );
    }
    let written = format!("gateway:not-responded-{id}");
    wait_message(&h.gw.store, "message-back", &written, "delivered").await;
    wait_message(
        &h.gw.store,
        "referral",
        &format!("lifecycle:close:{id}"),
        "delivered",
    )
    .await;
    let task = only(&platform, "Task", &id).await;
    assert_eq!(task["status"], "cancelled");
    assert_eq!(
        only(&platform, "ServiceRequest", &id).await["status"],
        "revoked"
    );

    // The practice record: the gateway's own code and line, never "declined".
    let observations = record.search("Observation").await;
    let communications = record.search("Communication").await;
    let all = json!([observations, communications]).to_string();
    assert!(all.contains("closed-service-not-responded"), "{all}");
    assert!(
        !all.contains("871711000000103"),
        "not the patient declining: {all}"
    );
    assert!(all.contains("the service did not respond"), "{all}");
    assert_eq!(communications.len(), 1, "written once");
    let tasks = record.search("Task").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0]["status"], "failed",
        "the record's Task never reads as done"
    );

    // Once each: the reminder and the close, whatever the sweeps in between did.
    let events: Vec<String> = h.hook.received().iter().map(event).collect();
    assert_eq!(
        events,
        [
            "referral.created",
            "referral.reminder",
            "referral.closed-not-responded"
        ],
        "each once"
    );
    let timeline = clw_gateway::store::timeline::referral_timeline(&h.gw.store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(timeline["state"], "expired");
    let changes: Vec<&str> = timeline["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["remind", "close"]);
    let out = status(&h.s, &id);
    assert!(out.contains("expired by lifecycle:close:"), "{out}");
    h.finish().await;
}

/// A policy for a programme no referral goes to would never act: `check` refuses it,
/// naming the key; one for the programme the referrals go to passes.
#[test]
fn a_policy_for_an_unknown_programme_is_refused_by_check() {
    let s = Setup::new("lifecycle-check");
    let write = |programme: &str| {
        let path = s.dir.path().join(format!("{programme}.toml"));
        std::fs::write(
            &path,
            format!(
                "[gateway]\ndata_dir = {:?}\n[store]\nurl = {:?}\n\
                 [lifecycle.programmes.{programme}]\nrespond_within = \"14d\"\nclose_after = \"21d\"\n",
                s.dir.path().display().to_string(),
                s.store_url
            ),
        )
        .unwrap();
        path
    };
    let (ok, out) = check_config(&write("nowhere"));
    assert!(!ok, "{out}");
    assert!(out.contains("lifecycle.programmes.nowhere"), "{out}");
    assert!(out.contains("known: default"), "{out}");
    let (ok, out) = check_config(&write("default"));
    assert!(ok, "{out}");
}

/// On the embedded default (spool folders, no broker): the sweep's sealed reminder goes
/// through the referral spool and the outbox gets it as a file of its own, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_spool_an_unanswered_referral_is_reminded_through_the_outbox() {
    let s = Setup::new("spool-remind");
    let mut c = s.config(&format!(
        "[mappings]\ndir = \"{}\"\n[lifecycle]\ncheck_every = \"200ms\"\n\
         [lifecycle.programmes.default]\nrespond_within = \"1s\"\n",
        repo_path("mappings").display()
    ));
    c.destinations = clw_gateway::config::Destinations::embedded(&c.gateway.data_dir);
    let gw = clw_gateway::app::start(c).await.unwrap();
    let data = s.dir.path();
    let id = unique("ref");
    drop_file(
        &data.join("spool/referrals/inbox"),
        "r.json",
        &referral_with_id(&id),
    );
    wait_message(&gw.store, "referral", &id, "delivered").await;
    let reminder = format!("lifecycle:remind:{id}:1");
    wait_message(&gw.store, "referral", &reminder, "delivered").await;
    let outbox = data.join("outbox/referrals");
    let notices: Vec<Value> = std::fs::read_dir(&outbox)
        .unwrap()
        .flatten()
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .filter(|v: &Value| v.get("lifecycle").is_some())
        .collect();
    assert_eq!(notices.len(), 1, "one reminder file: {notices:?}");
    assert_eq!(notices[0]["lifecycle"]["event"], "reminder");
    assert_eq!(notices[0]["lifecycle"]["referral_id"], id.as_str());
    assert_eq!(
        schema_problems("referral-notice.v1.schema.json", &notices[0]),
        Vec::<String>::new()
    );
    // A forged instruction (not sealed by this gateway) is refused, never planned.
    let forged = json!({"clw_sealed": {"origin": "gateway:lifecycle", "seal": "00"},
                        "event": {"id": "lifecycle:close:x", "change": "close",
                                  "referral_id": id, "reason": "forged"}});
    drop_file(&data.join("spool/referrals/inbox"), "forged.json", &forged);
    eventually("the forgery parked", WAIT, || async {
        let rows = gw
            .store
            .parked(Some("referral"), Some("parked"), 100)
            .await
            .unwrap();
        rows.into_iter()
            .find(|r| r.reason.contains("not made by this gateway"))
    })
    .await;
    assert!(
        gw.store.ended(&id).await.unwrap().is_none(),
        "nothing closed"
    );
    gw.stop().await.unwrap();
}
