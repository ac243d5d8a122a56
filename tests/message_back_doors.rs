//! The message back's doors and checks: the signed HTTP ingress refusing what it must
//! (and queueing nothing), the spreadsheet upload naming each bad row and column and
//! adding nothing twice, and events that cannot be trusted parked naming the field —
//! a wrong patient, an unknown referral, an out-of-range score, an unknown code or type.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clw_gateway::app;
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "door-test-secret";
const REFERRAL_ID: &str = EXAMPLE_REFERRAL_ID;
/// The example patient's NHS number and date of birth, as a sheet's two cells.
const WHO: &str = "9912003888,1970-09-11";

fn patient() -> Value {
    example_patient()
}

fn event(id: &str, extra: Value) -> Value {
    example_event(id, extra)
}

/// Every file under `dir`, however deep.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            out.push(p);
        }
    }
    out
}

/// A spool-mode gateway with the message back, the platforms `links` and `elsewhere`
/// (another programme's) and the ingress on.
async fn gateway(s: &Setup) -> app::Running {
    // SAFETY: a value no other test reads differently.
    unsafe { std::env::set_var("CLW_TEST_DOOR_SECRET", SECRET) };
    door_gateway(
        s,
        "[ingress]\nmax_body_bytes = 4096\n\
         [message_back]\nwriters = [\"practice-folder\"]\n\
         [message_back.platforms.links]\nsecret = { env = \"CLW_TEST_DOOR_SECRET\" }\nprogramme = \"default\"\ndestinations = [\"outbox\"]\n\
         [message_back.platforms.elsewhere]\nsecret = { env = \"CLW_TEST_DOOR_SECRET\" }\nprogramme = \"another-service\"\ndestinations = [\"outbox\"]\n",
    )
    .await
}

async fn refer(gw: &app::Running, data: &Path) {
    refer_example(gw, data).await
}

#[tokio::test]
async fn the_ingress_refuses_bad_signatures_stale_times_replays_and_oversize_queueing_nothing() {
    let s = Setup::new("door-security");
    let gw = gateway(&s).await;
    let port = gw.ingress_addr.unwrap().port();
    let body = event("evt-sec-1", json!({})).to_string().into_bytes();
    let json_type = "application/json";
    let ev = "/v1/events/links";

    let wrong = signed_post(port, ev, json_type, body.clone(), now(), "not-the-secret").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["field"], "X-CLW-Signature");
    let stale = signed_post(port, ev, json_type, body.clone(), now() - 3600, SECRET).await;
    assert_eq!(stale.status, 401);
    assert_eq!(stale.body["field"], "X-CLW-Timestamp");
    let future = signed_post(port, ev, json_type, body.clone(), now() + 3600, SECRET).await;
    assert_eq!(future.status, 401);
    let big = event("evt-sec-2", json!({"summary": "x".repeat(5000)}))
        .to_string()
        .into_bytes();
    assert_eq!(
        signed_post(port, ev, json_type, big, now(), SECRET)
            .await
            .status,
        413
    );
    assert_eq!(
        signed_post(
            port,
            "/v1/events/nobody",
            json_type,
            body.clone(),
            now(),
            SECRET
        )
        .await
        .status,
        404
    );
    assert_eq!(
        signed_post(port, ev, "text/plain", body.clone(), now(), SECRET)
            .await
            .status,
        415
    );
    let data = s.dir.path();
    assert!(
        files(&data.join("spool/events")).is_empty(),
        "nothing queued"
    );

    // A good request is queued; the very same request again is a replay.
    let ts = now();
    let ok = signed_post(port, ev, json_type, body.clone(), ts, SECRET).await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    assert_eq!(ok.body["id"], "links:evt-sec-1");
    let replay = signed_post(port, ev, json_type, body, ts, SECRET).await;
    assert_eq!(replay.status, 409);
    eventually("the one event handled", Duration::from_secs(20), || async {
        (files(&data.join("spool/events")).len() == 2).then_some(())
    })
    .await;
    // /metrics is not on this listener, nor the ingress on the metrics one.
    let metrics = format!("http://{}/v1/events/links", gw.http_addr.unwrap());
    assert_eq!(
        reqwest::Client::new()
            .post(metrics)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_events_are_refused_at_the_door_naming_the_field() {
    let s = Setup::new("door-fields");
    let gw = gateway(&s).await;
    let port = gw.ingress_addr.unwrap().port();
    let cases = [
        (
            event(
                "evt-f1",
                json!({"type": "assessment", "assessment": {"instrument": "SWEMWBS", "score": 36}}),
            ),
            "assessment.score",
        ),
        (
            event(
                "evt-f2",
                json!({"type": "assessment", "assessment": {"instrument": "ONS4", "items": {"life_satisfaction": 11, "worthwhile": 5, "happy_yesterday": 5, "anxious_yesterday": 5}}}),
            ),
            "assessment.items.life_satisfaction",
        ),
        (event("evt-f3", json!({"type": "phoned-up"})), "/type"),
        (event("evt-f4", json!({"contact": null})), "contact"),
        // The platform serves programme "default" only.
        (
            event(
                "evt-f5",
                json!({"referral": {"message_id": REFERRAL_ID, "programme": "another-service"}}),
            ),
            "referral.programme",
        ),
    ];
    for (body, field) in cases {
        let r = signed_post(
            port,
            "/v1/events/links",
            "application/json",
            body.to_string().into_bytes(),
            now(),
            SECRET,
        )
        .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(
            r.body["field"].as_str().unwrap_or_default().contains(field),
            "{field}: {}",
            r.body
        );
    }
    assert!(files(&s.dir.path().join("spool/events")).is_empty());
    gw.stop().await.unwrap();
}

/// Events that arrive well formed but cannot be trusted are parked with the reason,
/// and nothing is written to the practice record.
#[tokio::test]
async fn untrustworthy_events_are_parked_and_nothing_is_written() {
    let s = Setup::new("door-park");
    let gw = gateway(&s).await;
    let port = gw.ingress_addr.unwrap().port();
    let data = s.dir.path().to_path_buf();
    refer(&gw, &data).await;
    // Delivered and nothing back yet: awaiting a response in its programme.
    let awaiting = || gw.store.awaiting_response(Duration::ZERO);
    assert_eq!(awaiting().await.unwrap(), vec![("default".to_string(), 1)]);
    let cases = [
        // Right referral, wrong patient.
        (
            event(
                "evt-p1",
                json!({"referral": {"message_id": REFERRAL_ID, "patient": {"nhs_number": "9912003888", "date_of_birth": "1971-09-11"}}}),
            ),
            "referral.patient.date_of_birth",
            "possible wrong patient",
        ),
        (
            event(
                "evt-p2",
                json!({"referral": {"message_id": REFERRAL_ID, "patient": {"nhs_number": "9912003888", "date_of_birth": "1970-09-11", "family_name": "Jones"}}}),
            ),
            "referral.patient.family_name",
            "possible wrong patient",
        ),
        // A referral the gateway never sent.
        (
            event(
                "evt-p3",
                json!({"referral": {"message_id": "no-such-referral", "patient": patient()}}),
            ),
            "referral",
            "no referral the gateway sent",
        ),
        // Found by the patient's number, but another patient's.
        (
            event(
                "evt-p4",
                json!({"referral": {"programme": "default", "patient": {"nhs_number": "9912003896", "date_of_birth": "1970-09-11"}}}),
            ),
            "referral",
            "no referral the gateway sent",
        ),
        // A category the code map does not have.
        (
            event(
                "evt-p5",
                json!({"type": "onward-referral", "onward_referral": {"to": "Somewhere", "category": "astrology"}}),
            ),
            "onward_referral.category",
            "is not in code map",
        ),
    ];
    for (body, _, _) in &cases {
        let r = signed_post(
            port,
            "/v1/events/links",
            "application/json",
            body.to_string().into_bytes(),
            now(),
            SECRET,
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    for (body, field, why) in &cases {
        let id = format!("links:{}", body["event_id"].as_str().unwrap());
        let m = wait_message(&gw.store, "message-back", &id, "parked").await;
        let reason = m.last_error.unwrap();
        assert!(reason.starts_with(&format!("{field}: ")), "{reason}");
        assert!(reason.contains(why), "{reason}");
        assert!(
            !reason.contains("1971") && !reason.contains("Jones"),
            "no values: {reason}"
        );
    }
    // The right referral and patient, but from a platform serving another programme.
    let stray = event("evt-p7", json!({}));
    let r = signed_post(
        port,
        "/v1/events/elsewhere",
        "application/json",
        stray.to_string().into_bytes(),
        now(),
        SECRET,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let m = wait_message(&gw.store, "message-back", "elsewhere:evt-p7", "parked").await;
    let reason = m.last_error.unwrap();
    assert!(reason.starts_with("referral.programme: "), "{reason}");
    assert!(reason.contains("is of programme \"default\""), "{reason}");
    assert!(files(&data.join("practice")).is_empty(), "nothing written");
    // A parked event is no response: the referral is still awaiting one.
    assert_eq!(awaiting().await.unwrap(), vec![("default".to_string(), 1)]);
    // Found by the patient's number in the programme, it is linked and written.
    let by_number = event(
        "evt-p6",
        json!({"referral": {"programme": "default", "patient": patient()}}),
    );
    let r = signed_post(
        port,
        "/v1/events/links",
        "application/json",
        by_number.to_string().into_bytes(),
        now(),
        SECRET,
    )
    .await;
    assert_eq!(r.status, 202);
    eventually(
        "the linked event written",
        Duration::from_secs(20),
        || async { (files(&data.join("practice")).len() == 2).then_some(()) },
    )
    .await;
    // Linked and written: no longer awaiting.
    eventually(
        "the referral no longer awaiting",
        Duration::from_secs(20),
        || async { awaiting().await.unwrap().is_empty().then_some(()) },
    )
    .await;
    gw.stop().await.unwrap();
}

/// The spool's events inbox: a file the gateway's own door queued is taken as the
/// platform the door verified; a file anyone else dropped there belongs to no platform
/// unless `message_back.spool_platform` names one (this gateway names none), and a door's
/// file whose seal was tampered with is a forgery — both parked, nothing written.
#[tokio::test]
async fn a_spool_file_no_door_queued_or_with_a_broken_seal_is_parked() {
    let s = Setup::new("door-spool");
    let gw = gateway(&s).await;
    let data = s.dir.path().to_path_buf();
    refer(&gw, &data).await;
    let inbox = data.join("spool/events/inbox");
    std::fs::write(
        inbox.join("dropped.json"),
        event("evt-s1", json!({})).to_string(),
    )
    .unwrap();
    let forged = String::from_utf8(
        clw_gateway::secret::seal::Sealer::new(b"not the gateway's key").seal(
            &clw_gateway::secret::seal::Origin::Platform("links".into()),
            event("evt-s2", json!({})).to_string().as_bytes(),
        ),
    )
    .unwrap();
    std::fs::write(inbox.join("forged.json"), forged).unwrap();
    let parked = eventually("both parked", Duration::from_secs(20), || async {
        let rows = gw
            .store
            .parked(Some("message-back"), None, 10)
            .await
            .unwrap();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    let mut fields: Vec<String> = parked.iter().filter_map(|p| p.field.clone()).collect();
    fields.sort();
    assert_eq!(fields, ["clw_sealed", "message_back.spool_platform"]);
    assert!(files(&data.join("practice")).is_empty(), "nothing written");
    gw.stop().await.unwrap();
}

/// A programme's spreadsheet: good rows are queued, each bad row is named by row and
/// column, and uploading the same sheet again (fixed) adds nothing twice.
#[tokio::test]
async fn a_spreadsheet_upload_names_bad_rows_and_adds_nothing_twice() {
    let s = Setup::new("door-sheet");
    let gw = gateway(&s).await;
    let port = gw.ingress_addr.unwrap().port();
    let data = s.dir.path().to_path_buf();
    refer(&gw, &data).await;
    let sheet = |score_row: &str| {
        format!(
            "\u{feff}Event,Date,Gateway reference,NHS number,Date of birth,Mode,Minutes,Instrument,Score,Category,To,Reason,Notes\r\n\
             Accepted,2026-11-24,{REFERRAL_ID},{WHO},,,,,,,,\r\n\
             Contact,2026-11-25,{REFERRAL_ID},{WHO},telephone,20,,,,,,\"Talked about the\nallotment group\"\r\n\
             {score_row}\r\n\
             Closed,2026-12-03,{REFERRAL_ID},{WHO},,,,,,,completed,\r\n"
        )
        .into_bytes()
    };
    let bad = signed_post(
        port,
        "/v1/uploads/links",
        "text/csv",
        sheet(&format!(
            "Score,2026-11-26,{REFERRAL_ID},{WHO},,,SWEMWBS,41,,,,"
        )),
        now(),
        SECRET,
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.body["queued"], 3);
    let errors = bad.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", bad.body);
    assert_eq!(errors[0]["row"], 4);
    assert_eq!(errors[0]["column"], "Score");
    let events = || async { gw.store.referral_events(REFERRAL_ID).await.unwrap().len() };
    eventually("three rows linked", Duration::from_secs(20), || async {
        (events().await == 3).then_some(())
    })
    .await;
    // Fixed and uploaded again: only the fixed row is new.
    let good = signed_post(
        port,
        "/v1/uploads/links",
        "text/csv",
        sheet(&format!(
            "Score,2026-11-26,{REFERRAL_ID},{WHO},,,SWEMWBS,21,,,,"
        )),
        now() - 7,
        SECRET,
    )
    .await;
    assert_eq!(good.status, 202, "{}", good.body);
    assert_eq!(good.body["queued"], 4);
    eventually(
        "four events, each once",
        Duration::from_secs(20),
        || async {
            (events().await == 4 && files(&data.join("practice")).len() == 8).then_some(())
        },
    )
    .await;
    let kinds: Vec<String> = gw
        .store
        .referral_events(REFERRAL_ID)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["referral-accepted", "contact", "assessment", "closed"]
    );
    gw.stop().await.unwrap();
}

/// The AMQP door: a platform (or an integration engine) publishing its own event format
/// to `{prefix}.events` with `x-clw-platform`; one it cannot trust is parked in the
/// events' parking queue with headers naming the field.
#[tokio::test]
async fn events_published_to_the_broker_are_parked_naming_the_field_when_bad() {
    let h = Harness::start_with("door-amqp", &[], &["200ms"], |c| {
        c.mappings.dir = repo_path("mappings");
        c.message_back = Some(
            toml::from_str(
                "writers = [\"practice-folder\"]\n[platforms.links]\ndestinations = [\"clw\"]\nbroker_user = \"guest\"\n",
            )
            .unwrap(),
        );
        let practice = c.gateway.data_dir.join("practice");
        c.destinations.insert(
            "practice-folder",
            destination(&format!(
                "kind = \"practice-folder\"\ndir = {:?}\n\
                 allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
                practice.display().to_string()
            )),
        );
    })
    .await;
    let events = h.t.for_flow(clw_gateway::model::Flow::MessageBack);
    events.declare(&h.rabbit.ch).await.unwrap();
    let publish = |body: Value| {
        let headers = vec![
            ("ce-id", uuid::Uuid::new_v4().to_string()),
            (
                "ce-type",
                "uk.nhs.socialprescribing.messageback.v1".to_string(),
            ),
            ("ce-specversion", "1.0".to_string()),
            ("x-clw-platform", "links".to_string()),
        ];
        let exchange = events.exchange();
        let rabbit = &h.rabbit;
        async move {
            rabbit
                .publish_as(&exchange, body.to_string().as_bytes(), &headers, "guest")
                .await
        }
    };
    publish(event(
        "evt-q1",
        json!({"type": "assessment", "assessment": {"instrument": "WEMWBS", "score": 80}}),
    ))
    .await;
    publish(event("evt-q2", json!({"type": "teleported"}))).await;
    // A date that does not exist: parked at once with its reason, not redelivered.
    publish(event(
        "evt-q4",
        json!({"contact": {"mode": "telephone", "date": "2026-11-0é"}}),
    ))
    .await;
    // Published with no user_id the broker could vouch for, and as a broker user no
    // platform has: whose it is cannot be established.
    let good = event("evt-q3", json!({}));
    h.rabbit
        .publish(
            &events.exchange(),
            good.to_string().as_bytes(),
            &[
                (
                    "ce-type",
                    "uk.nhs.socialprescribing.messageback.v1".to_string(),
                ),
                ("x-clw-platform", "links".to_string()),
            ],
        )
        .await;
    let stranger = Rabbit::connect_to(&broker_user("clw-test-stranger")).await;
    stranger
        .publish_as(
            &events.exchange(),
            good.to_string().as_bytes(),
            &[(
                "ce-type",
                "uk.nhs.socialprescribing.messageback.v1".to_string(),
            )],
            "clw-test-stranger",
        )
        .await;
    let _ = stranger.conn.close(200, "done".into()).await;
    h.wait_parked("message-back", 5).await;
    let parked = common::dlq_list(&events, &h.gw.store).await.unwrap();
    let mut fields: Vec<String> = parked.iter().filter_map(|p| p.field.clone()).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "/type",
            "assessment.score",
            "contact.date",
            "user_id",
            "user_id"
        ],
        "{parked:?}"
    );
    assert!(parked.iter().all(|p| p.error_class == "permanent"));
    assert!(
        parked.iter().all(|p| p.attempts == 1),
        "parked at the first attempt"
    );
    h.finish().await;
}

/// Decode once, plan once: events taken at the HTTP door are mapped there (to answer the
/// platform naming the field) and never again — the front reads the door's sealed
/// canonical event — and each is planned once, also under its referral's serial key.
#[tokio::test]
async fn each_event_is_mapped_once_at_its_door_and_planned_once() {
    let s = Setup::new("door-once");
    let gw = gateway(&s).await;
    let port = gw.ingress_addr.unwrap().port();
    let data = s.dir.path().to_path_buf();
    refer(&gw, &data).await;
    let n: usize = 4;
    for i in 0..n {
        let body = event(&format!("evt-once-{i}"), json!({}))
            .to_string()
            .into_bytes();
        let r = signed_post(
            port,
            "/v1/events/links",
            "application/json",
            body,
            now(),
            SECRET,
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    eventually("every event written", Duration::from_secs(20), || async {
        (gw.store.referral_events(REFERRAL_ID).await.unwrap().len() == n).then_some(())
    })
    .await;
    let metrics = gw.metrics.render();
    let value = |line: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {line} in /metrics:\n{metrics}"))
    };
    assert_eq!(
        value("clw_gateway_events_mapped_total{platform=\"links\"}"),
        n as f64,
        "each event mapped once, at the door"
    );
    let received = value("clw_gateway_messages_received_total{flow=\"message-back\"}");
    assert_eq!(received, n as f64);
    assert_eq!(
        value("clw_gateway_messages_planned_total{flow=\"message-back\"}"),
        received,
        "each event planned once"
    );
    gw.stop().await.unwrap();
}
