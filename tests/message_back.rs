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

/// A free loopback port for a child gateway to listen on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn events_for(referral_id: &str) -> Vec<Value> {
    let with = |e: Value| {
        let mut e = e;
        e["referral"]["message_id"] = json!(referral_id);
        e
    };
    vec![
        with(event("evt-a1", "referral-accepted", json!({}))),
        with(event(
            "evt-c1",
            "contact",
            json!({"contact": {"mode": "face-to-face", "date": "2026-11-26", "duration_minutes": 45}}),
        )),
        with(event(
            "evt-s1",
            "assessment",
            json!({"assessment": {"instrument": "SWEMWBS", "score": 19, "date": "2026-11-26"}}),
        )),
        with(event(
            "evt-c2",
            "contact",
            json!({"contact": {"mode": "telephone", "date": "2026-12-03", "duration_minutes": 20}}),
        )),
        with(event(
            "evt-c3",
            "contact",
            json!({"contact": {"mode": "video", "date": "2026-12-02"}}),
        )),
        with(event(
            "evt-o1",
            "onward-referral",
            json!({"onward_referral": {"to": "Leeds Befriending Service", "category": "befriending"}}),
        )),
        with(event(
            "evt-s2",
            "assessment",
            json!({"assessment": {"instrument": "SWEMWBS", "score": 25, "date": "2026-12-03"}}),
        )),
        with(event(
            "evt-x1",
            "closed",
            json!({"closed": {"reason": "completed", "outcome": "Attends the walking group weekly"}}),
        )),
    ]
}

/// End to end on the real broker: a referral goes out; the platform sends accepted,
/// three contacts, SWEMWBS at start and end, an onward referral and closed — every one
/// twice, with the gateway SIGKILLed half way and restarted — and the practice record
/// (the FHIR test server) holds each coded entry exactly once, each valid FHIR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_fhir_record_once_through_resends_and_a_kill() {
    let fhir = FhirServer::start().await;
    let s = Setup::new("mb-fhir");
    let hook = Receiver::start(&[]).await;
    let config = s.broker_config(&hook.url, &["300ms", "1s", "2s", "3s"]);
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&config).await;
    let port = free_port();
    let secret = "links-signing-secret";
    // SAFETY: a value no other test reads.
    unsafe { std::env::set_var("CLW_TEST_LINKS_SECRET", secret) };
    let path = child_message_back_config(
        &s,
        &hook.url,
        port,
        "CLW_TEST_LINKS_SECRET",
        &[(
            "gp-fhir",
            format!(
                "kind = \"fhir-record\"\nbase_url = \"{}\"\ntimeout = \"10s\"\n\
                 allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
                fhir.base
            ),
        )],
    );
    let start = || ChildGateway::start(&path);
    let up = || listening(port);
    let mut gw = start();
    let referral_id = unique("ref");
    rabbit
        .publish(
            &t.exchange(),
            referral().to_string().as_bytes(),
            &ce_headers(&referral_id),
        )
        .await;
    eventually("the referral delivered", WAIT, || async {
        (hook.count() == 1).then_some(())
    })
    .await;
    up().await;
    let events = events_for(&referral_id);
    for e in &events[..4] {
        assert_eq!(post_event(port, "links", secret, e).await.status, 202);
        assert_eq!(
            post_event(port, "links", secret, e).await.status,
            202,
            "resent"
        );
    }
    gw.kill();
    let mut gw = start();
    up().await;
    for e in &events[4..] {
        let st = post_event(port, "links", secret, e).await.status;
        assert_eq!(st, 202, "{e}");
        assert_eq!(
            post_event(port, "links", secret, e).await.status,
            202,
            "resent"
        );
    }

    let store = clw_gateway::store::Store::connect(&s.store_url, 2, 16)
        .await
        .unwrap();
    wait_delivered(&store, "message-back", 8).await;
    let timeline = store.referral_events(&referral_id).await.unwrap();
    assert_eq!(timeline.len(), 8);
    assert_eq!(clw_gateway::store::derived_state(&timeline), "closed");
    // The operator's view: the referral's timeline and what was written where.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
        .args(["--config"])
        .arg(&path)
        .args(["status", &referral_id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("closed (3 contacts, 2 scores, 1 onward referrals)"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("timeline") && l.ends_with("→ gp-fhir: delivered"))
            .count(),
        8,
        "{text}"
    );
    assert!(text.contains("assessment (SWEMWBS 25)"), "{text}");

    let all = |t: &'static str| fhir.search(t);
    let encounters = all("Encounter").await;
    let observations = all("Observation").await;
    let procedures = all("Procedure").await;
    let communications = all("Communication").await;
    let tasks = all("Task").await;
    assert_eq!(encounters.len(), 3, "one Encounter per contact");
    assert_eq!(procedures.len(), 2, "accepted and the onward referral");
    assert_eq!(observations.len(), 3, "two SWEMWBS scores and the closure");
    assert_eq!(communications.len(), 8, "a readable summary per event");
    assert_eq!(tasks.len(), 1, "one Task for the referral");
    assert_eq!(tasks[0]["status"], "completed");
    let scores: Vec<f64> = observations
        .iter()
        .filter(|o| o["code"]["coding"][0]["code"] == "718466001")
        .map(|o| o["valueQuantity"]["value"].as_f64().unwrap())
        .collect();
    let mut scores = scores;
    scores.sort_by(f64::total_cmp);
    assert_eq!(scores, [19.0, 25.0]);
    assert!(
        observations
            .iter()
            .any(|o| o["category"][0]["coding"][0]["code"] == "survey")
    );
    assert!(
        procedures
            .iter()
            .any(|p| p["code"]["coding"][0]["code"] == "871731000000106")
    );
    assert!(
        encounters
            .iter()
            .all(|e| e["subject"]["identifier"]["value"] == "9912003888")
    );
    let everything: Vec<Value> =
        [encounters, observations, procedures, communications, tasks].concat();
    fhir_js_validate(&everything).unwrap();
    gw.kill();
    store.close().await;
    rabbit.cleanup(&t).await;
}

/// The in-process gateway's settings for the message back: a platform `links` signing
/// with `secret`, events written by `writer`, the ingress on a free port.
fn message_back_config(c: &mut clw_gateway::config::Config, writer: &str, table: &str) {
    c.mappings.dir = repo_path("mappings");
    c.destinations.insert(writer, destination(table));
    c.message_back = Some(
        toml::from_str(&format!(
            "writers = [\"{writer}\"]\n[platforms.links]\nsecret = {{ env = \"CLW_TEST_LINKS_SECRET\" }}\ndestinations = [\"clw\"]\n"
        ))
        .unwrap(),
    );
    c.ingress.enabled = true;
    c.ingress.listen = "127.0.0.1:0".parse().unwrap();
}

const LINKS_SECRET: &str = "links-signing-secret";
const ALIAS: &str = "GPPROVIDER_9912003888_19700911_SMITH";

/// Through MESH: GP Connect Send Document into the patient's registered practice, one
/// message per event however often it was sent, the ITK3 message as FHIR STU3 XML with
/// the summary as a PDF whose text says what happened and which codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_practice_over_mesh_once_as_send_document() {
    let mesh = MeshSandbox::start().await;
    // SAFETY: values no other test reads differently.
    unsafe {
        std::env::set_var("CLW_TEST_LINKS_SECRET", LINKS_SECRET);
        std::env::set_var("CLW_TEST_MESH_PASSWORD", "gateway-pass");
        std::env::set_var("CLW_TEST_MESH_KEY", "TestKey");
    }
    let h = Harness::start_with("mb-mesh", &[], &["300ms", "1s"], |c| {
        message_back_config(
            c,
            "gp-mesh",
            &format!(
                "kind = \"mesh\"\nbase_url = \"{}\"\nmailbox = \"CLWGW0001\"\n\
                 password = {{ env = \"CLW_TEST_MESH_PASSWORD\" }}\nshared_key = {{ env = \"CLW_TEST_MESH_KEY\" }}\n\
                 sender_ods = \"X99CLW\"\nsender_name = \"Leeds Community Links\"\nreports_every = \"200ms\"\n\
                 allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
                mesh.base
            ),
        )
    })
    .await;
    let referral_id = unique("ref");
    h.publish(&referral_id, &referral()).await;
    h.wait_state(&referral_id, "delivered").await;
    let port = h.gw.ingress_addr.unwrap().port();
    let events = events_for(&referral_id);
    for e in &events[..3] {
        assert_eq!(post_event(port, "links", LINKS_SECRET, e).await.status, 202);
        assert_eq!(post_event(port, "links", LINKS_SECRET, e).await.status, 202);
    }
    // The closure's outcome pasted from a word processor: a vertical tab (U+000B), which
    // XML 1.0 forbids, in text that reaches the ITK3 message.
    let mut closed = events.last().unwrap().clone();
    closed["closed"]["outcome"] = json!("Attends the walking group\u{000B}every week");
    assert_eq!(
        post_event(port, "links", LINKS_SECRET, &closed)
            .await
            .status,
        202
    );
    for id in [
        "links:evt-a1",
        "links:evt-c1",
        "links:evt-s1",
        "links:evt-x1",
    ] {
        wait_message(&h.gw.store, "message-back", id, "delivered").await;
    }
    let audit = h
        .wait_audit_flow("message-back", "links:evt-x1", "sanitised")
        .await;
    assert_eq!(audit.entry.fields, ["closed.outcome"]);
    // A resend after it was written creates nothing either.
    assert_eq!(
        post_event(port, "links", LINKS_SECRET, &events[0])
            .await
            .status,
        202
    );
    h.wait_audit_flow("message-back", "links:evt-a1", "duplicate")
        .await;

    let inbox: Value = mesh
        .get(ALIAS, "practice-pass", "/inbox")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<String> = inbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4, "one message per event: {inbox}");
    let mut texts = Vec::new();
    for id in &ids {
        let r = mesh
            .get(ALIAS, "practice-pass", &format!("/inbox/{id}"))
            .await;
        assert_eq!(r.headers()["mex-workflowid"], "GPFED_CONSULT_REPORT");
        assert_eq!(r.headers()["mex-from"], "CLWGW0001");
        assert_eq!(r.headers()["content-type"], "application/fhir+xml");
        let xml = r.text().await.unwrap();
        // Well formed, as a practice's system parses it.
        roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("not well formed: {e}"));
        assert!(!xml.contains('\u{000B}'));
        for want in [
            "<Bundle xmlns=\"http://hl7.org/fhir\">",
            "<type value=\"message\"/>",
            "ITK007C",
            "ITK-GPConnectSendDocument-MessageDefinition-1",
            "<code value=\"371531000\"/>",
            "<contentType value=\"application/pdf\"/>",
        ] {
            assert!(xml.contains(want), "{want}");
        }
        let pdf64 = xml
            .split("<content value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        texts.push(MeshSandbox::pdf_text(pdf64));
    }
    let all = texts.join("\n");
    assert!(
        all.contains("Social prescribing referral accepted"),
        "{all}"
    );
    assert!(all.contains("871731000000106"), "{all}");
    assert!(all.contains("Link worker contact (face to face)"), "{all}");
    assert!(all.contains("SWEMWBS score 19"), "{all}");
    assert!(all.contains("718466001"), "{all}");
    assert!(all.contains("Social prescribing support ended"), "{all}");

    // MESH reports that the contact's message never reached the practice; another report
    // names a message the gateway never sent.
    let (_, sent) =
        h.gw.store
            .effect("message-back", "links:evt-c1", "gp-mesh", "mesh-send")
            .await
            .unwrap()
            .expect("the send journalled");
    let sent = sent.expect("with the MESH message id");
    for linked in [sent.as_str(), "NOT-SENT-BY-THE-GATEWAY"] {
        let r = reqwest::Client::new()
            .post(format!("{}/messageexchange/admin/report", mesh.base))
            .json(&serde_json::json!({
                "mailbox_id": "CLWGW0001",
                "code": "14",
                "description": "Undeliverable",
                "workflow_id": "GPFED_CONSULT_REPORT",
                "linked_message_id": linked,
                "status": "undeliverable",
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let audit = h
        .wait_audit_flow("message-back", "links:evt-c1", "undelivered")
        .await;
    let detail = audit.entry.detail.unwrap_or_default();
    assert!(detail.contains("non-delivery report"), "{detail}");
    assert!(detail.contains(&sent), "{detail}");
    assert_eq!(audit.entry.destination.as_deref(), Some("gp-mesh"));
    // Both taken from the inbox once recorded; the stray one kept whole in the store for
    // a person (so nothing expires in the inbox unseen).
    eventually("both reports taken", WAIT, || async {
        let inbox: Value = mesh
            .get("CLWGW0001", "gateway-pass", "/inbox")
            .await
            .json()
            .await
            .unwrap();
        inbox["messages"]
            .as_array()
            .is_some_and(|ids| ids.is_empty())
            .then_some(())
    })
    .await;
    let kept = h.gw.store.inbox_kept(10).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].reason.contains("naming nothing the gateway sent"),
        "{kept:?}"
    );
    // No other event was reported.
    let a1 =
        h.gw.store
            .audit("message-back", "links:evt-a1")
            .await
            .unwrap();
    assert!(a1.iter().all(|a| a.entry.action.as_str() != "undelivered"));
    assert!(h.gw.metrics.render().contains(
        "clw_gateway_undelivered_reports_total{flow=\"message-back\",destination=\"gp-mesh\"} 1"
    ));
    h.finish().await;
}

/// Through Docman: each event one posted document (the PDF summary) with its clinical
/// codes, for the patient's practice; a resend posts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_docman_once_with_its_clinical_codes() {
    let (docman, posted) = common::docman::start().await;
    // SAFETY: values no other test reads differently.
    unsafe {
        std::env::set_var("CLW_TEST_LINKS_SECRET", LINKS_SECRET);
        std::env::set_var("CLW_TEST_DOCMAN_TOKEN", "docman-token");
    }
    let h = Harness::start_with("mb-docman", &[], &["300ms", "1s"], |c| {
        message_back_config(
            c,
            "gp-docman",
            &format!(
                "kind = \"docman\"\nurl = \"{docman}\"\ntoken = {{ env = \"CLW_TEST_DOCMAN_TOKEN\" }}\n\
                 sender_ods = \"X99CLW\"\nsender_name = \"Leeds Community Links\"\nread_codes = true\n\
                 allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n"
            ),
        )
    })
    .await;
    let referral_id = unique("ref");
    h.publish(&referral_id, &referral()).await;
    h.wait_state(&referral_id, "delivered").await;
    let port = h.gw.ingress_addr.unwrap().port();
    let events = events_for(&referral_id);
    for e in [&events[0], &events[2]] {
        assert_eq!(post_event(port, "links", LINKS_SECRET, e).await.status, 202);
        assert_eq!(post_event(port, "links", LINKS_SECRET, e).await.status, 202);
    }
    for id in ["links:evt-a1", "links:evt-s1"] {
        wait_message(&h.gw.store, "message-back", id, "delivered").await;
    }
    let docs = posted.lock().unwrap().clone();
    assert_eq!(docs.len(), 2, "one document per event");
    let accepted = docs
        .iter()
        .find(|d| d["Notes"].as_str().unwrap().contains("accepted"))
        .unwrap();
    assert_eq!(accepted["RecipientOdsCode"], "GP5");
    assert_eq!(accepted["Patient"]["NhsNumber"], "9912003888");
    let codes: Vec<(&str, &str)> = accepted["ClinicalCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["Scheme"].as_str().unwrap(), c["Code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [("SNOMED", "871731000000106"), ("READ2", "8T09.")],
        "Read v2 beside"
    );
    let score = docs
        .iter()
        .find(|d| d["Notes"].as_str().unwrap().contains("SWEMWBS"))
        .unwrap();
    assert_eq!(score["ClinicalCodes"][0]["Code"], "718466001");
    assert_eq!(score["ClinicalCodes"][0]["Value"], "19");
    let text = MeshSandbox::pdf_text(score["Document"]["FileContent"].as_str().unwrap());
    assert!(text.contains("SWEMWBS score 19"), "{text}");
    h.finish().await;
}

/// The closed loop for a FHIR-capable platform: the gateway polls the Tasks its FHIR
/// destination created; the platform accepting, then completing, the Task comes back
/// as "accepted" and "closed" events — once each, however often it is polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_task_status_changes_become_events_once() {
    let fhir = FhirServer::start().await;
    let mut folder = PathBuf::new();
    let h = Harness::start_with("mb-poll", &[], &["300ms", "1s"], |c| {
        folder = c.gateway.data_dir.join("practice");
        c.mappings.dir = repo_path("mappings");
        c.destinations.insert(
            "clw-fhir",
            destination(&format!(
                "kind = \"fhir\"\nbase_url = \"{}\"\nmapping = \"fhir-servicerequest\"\npoll_every = \"200ms\"\n\
                 allow = [\"person_demographics.nhs_number\", \"person_demographics.chi_number\", \"referral_details\", \"referrer_details.name\", \"referred_to\"]\n\
                 constants = {{ chi_system = \"https://fhir.nhs.uk/Id/chi-number\" }}\n",
                fhir.base
            )),
        );
        c.destinations.insert(
            "pf",
            destination(&format!(
                "kind = \"practice-folder\"\ndir = {:?}\n\
                 allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
                folder.display().to_string()
            )),
        );
        c.referrals.destinations = vec!["clw-fhir".into()];
        c.message_back = Some(toml::from_str("writers = [\"pf\"]\n").unwrap());
    })
    .await;
    let referral_id = unique("ref");
    h.publish(&referral_id, &referral()).await;
    h.wait_state(&referral_id, "delivered").await;
    let tasks = fhir
        .search(&format!(
            "Task?identifier=https://clw-gateway.org/Id/referral|{referral_id}"
        ))
        .await;
    assert_eq!(tasks.len(), 1);
    let set_status = |status: &'static str| {
        let mut task = tasks[0].clone();
        let url = format!("{}/Task/{}", fhir.base, task["id"].as_str().unwrap());
        task["status"] = json!(status);
        async move {
            let r = reqwest::Client::new()
                .put(url)
                .header("content-type", "application/fhir+json")
                .body(task.to_string())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    let kinds = || async {
        h.gw.store
            .referral_events(&referral_id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>()
    };
    set_status("accepted").await;
    eventually("the accepted event", WAIT, || async {
        (kinds().await == ["referral-accepted"]).then_some(())
    })
    .await;
    set_status("completed").await;
    eventually("the closed event", WAIT, || async {
        (kinds().await.len() == 2).then_some(())
    })
    .await;
    let written = |n: usize| {
        let folder = folder.join("GP5");
        async move {
            eventually("documents in the practice folder", WAIT, || async {
                (files_in(&folder, "txt").len() == n).then_some(())
            })
            .await
        }
    };
    written(2).await;
    // The Task saved again (a new version, the same status): polled, and nothing new.
    let before = h.gw.store.cursor("fhir-tasks-clw-fhir").await.unwrap();
    set_status("completed").await;
    eventually("the poll to pass the new version", WAIT, || async {
        let now = h.gw.store.cursor("fhir-tasks-clw-fhir").await.unwrap();
        (now > before).then_some(())
    })
    .await;
    let id = format!(
        "fhir-tasks-clw-fhir:task-{}-completed",
        tasks[0]["id"].as_str().unwrap()
    );
    let audit = h.gw.store.audit("message-back", &id).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .map(|a| a.entry.action.as_str())
            .collect::<Vec<_>>(),
        ["delivered"],
        "not queued again"
    );
    assert_eq!(kinds().await, ["referral-accepted", "closed"]);
    assert_eq!(files_in(&folder.join("GP5"), "txt").len(), 2);
    h.finish().await;
}
