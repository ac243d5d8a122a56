//! The referral flow over a real RabbitMQ: delivery, retries, parking, idempotency,
//! connection loss and replay.

mod common;

use clw_gateway::mapping::schema::CompiledSchema;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn happy_path_delivers_once_with_the_right_fields() {
    let h = Harness::start("happy", &[], &["300ms"]).await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    let row = h.wait_state(&id, "delivered").await;
    assert_eq!(row.attempts, 1);
    h.wait_queue_len(&h.t.queue(), 0).await; // acked

    let got = h.hook.received();
    assert_eq!(got.len(), 1, "exactly one delivery");
    let r = &got[0];
    let schema = CompiledSchema::load(&repo_path("schemas/prsb-referral.v1.schema.json")).unwrap();
    schema.check(&r.body).expect("payload meets its schema");
    assert_eq!(r.headers["authorization"], "Bearer test-token-123");
    assert_eq!(
        r.headers["idempotency-key"],
        clw_gateway::deliver::idempotency_key("referral", &id, "clw").as_str()
    );
    let p = &r.body["referral"];
    assert_eq!(r.body["message_id"], json!(id));
    assert_eq!(p["person_demographics"]["nhs_number"], "9912003888");
    assert_eq!(p["person_demographics"]["name"]["family"], "SMITH");
    assert_eq!(p["person_demographics"]["date_of_birth"], "1970-09-11");
    assert_eq!(p["person_demographics"]["address"]["postcode"], "LS17 7DF");
    assert_eq!(
        p["referral_details"]["service_requested"]["code"],
        "871731000000106"
    );
    assert_eq!(
        p["referral_details"]["reasons_for_referral"][0]["code"],
        "422650009"
    );
    assert_eq!(p["referrer_details"]["name"]["family"], "Rastall");
    assert_eq!(p["referrer_details"]["role"]["code"], "62247001");
    assert_eq!(p["gp_practice"]["ods_code"], "GP5");
    assert_eq!(p["referred_to"]["ods_code"], "X99CLW");
    assert_eq!(p["consent"]["state"], "full");

    // delivered, with an audit row naming fields but never values
    let d = h.gw.store.deliveries("referral", &id).await.unwrap();
    assert_eq!(
        (d[0].state.as_str(), d[0].response_status),
        ("delivered", Some(200))
    );
    let audit = h.gw.store.audit("referral", &id).await.unwrap();
    let delivered = audit
        .iter()
        .find(|a| a.entry.action.as_str() == "delivered")
        .expect("audited");
    assert_eq!(delivered.entry.agreement.as_deref(), Some("DSA-TEST-1"));
    assert!(
        delivered
            .entry
            .fields
            .contains(&"referral.person_demographics.nhs_number".to_string())
    );
    assert!(
        !format!("{audit:?}").contains("9912003888"),
        "audit must not hold values"
    );

    let base = format!("http://{}", h.gw.http_addr.unwrap());
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "clw_gateway_messages_delivered_total{flow=\"referral\",destination=\"clw\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("clw_gateway_processing_seconds_count{flow=\"referral\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    h.finish().await;
}

#[tokio::test]
async fn two_503s_then_200_delivers_once_after_three_attempts() {
    let h = Harness::start("retry", &[503, 503], &["300ms", "300ms", "300ms"]).await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    let row = h.wait_state(&id, "delivered").await;
    assert_eq!(row.attempts, 3);
    assert_eq!(h.hook.count(), 3, "two refused, one accepted");
    let keys: Vec<_> = h
        .hook
        .received()
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "same Idempotency-Key on every attempt"
    );
    let audit = h.gw.store.audit("referral", &id).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.entry.action.as_str() == "retry")
            .count(),
        2
    );
    for q in h.t.queue_names() {
        h.wait_queue_len(&q, 0).await;
    }
    h.finish().await;
}

#[tokio::test]
async fn transient_failures_past_the_last_tier_are_parked() {
    let h = Harness::start("giveup", &[503, 503, 503, 503], &["200ms", "200ms"]).await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    let row = h.wait_state(&id, "parked").await;
    assert_eq!(row.attempts, 3);
    assert!(row.last_error.unwrap().contains("gave up after 3 attempts"));
    h.wait_parked("referral", 1).await;
    h.finish().await;
}

#[tokio::test]
async fn a_400_is_parked_at_once_with_the_reason_then_replayed_when_fixed() {
    let h = Harness::start("park400", &[400], &["300ms", "300ms"]).await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    let row = h.wait_state(&id, "parked").await;
    assert_eq!(row.attempts, 1, "not retried");
    assert_eq!(row.error_class.as_deref(), Some("permanent"));
    assert_eq!(h.hook.count(), 1);
    h.wait_parked("referral", 1).await;

    let parked = common::dlq_list(&h.t, &h.gw.store).await.unwrap();
    assert_eq!(parked.len(), 1);
    let p = &parked[0];
    assert_eq!(p.message_id, id);
    assert_eq!(
        (p.stage.as_str(), p.error_class.as_str(), p.attempts),
        ("deliver", "permanent", 1)
    );
    assert!(p.reason.contains("400"), "{}", p.reason);
    // Listing reads the store, not the queue: nothing moves, nothing is lost.
    h.wait_parked("referral", 1).await;
    assert_eq!(h.rabbit.queue_len(&h.t.parked_queue()).await, 0);

    // the receiver is fixed (answers 200 from now on): replay
    let replayed = common::dlq_replay(
        &h.t,
        clw_gateway::sources::parking::Selection::Id(&id),
        &h.gw.store,
        "test-operator",
    )
    .await
    .unwrap()
    .ids;
    assert_eq!(replayed, vec![id.clone()]);
    h.wait_state(&id, "delivered").await;
    assert_eq!(h.hook.count(), 2);
    h.wait_parked("referral", 0).await;
    let r = h.wait_audit(&id, "replayed").await;
    assert_eq!(r.entry.actor, "test-operator");
    h.finish().await;
}

/// Each malformed input is parked with a reason naming the field.
#[tokio::test]
async fn malformed_inputs_are_parked_naming_the_field() {
    let h = Harness::start_with("malformed", &[], &["300ms"], |c| {
        c.intake.max_message_bytes = 64 * 1024
    })
    .await;
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    cases.push((
        "invalid-json",
        b"{\"resourceType\": \"Bundle\", ".to_vec(),
        "$",
    ));
    cases.push((
        "not-a-bundle",
        json!({"resourceType": "Patient"}).to_string().into_bytes(),
        "resourceType",
    ));
    let mut no_sr = referral();
    no_sr["entry"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["resource"]["resourceType"] != "ServiceRequest");
    no_sr["type"] = json!("collection");
    cases.push((
        "no-service-request",
        no_sr.to_string().into_bytes(),
        "Bundle.entry",
    ));
    let mut bad_nhs = referral();
    bad_nhs["entry"][2]["resource"]["identifier"][0]["value"] = json!("9912003889");
    cases.push((
        "bad-nhs-check-digit",
        bad_nhs.to_string().into_bytes(),
        "Bundle.entry[2].resource.identifier[0].value",
    ));
    let mut bad_date = referral();
    bad_date["entry"][2]["resource"]["birthDate"] = json!("1970-02-30");
    cases.push((
        "bad-date",
        bad_date.to_string().into_bytes(),
        "Bundle.entry[2].resource.birthDate",
    ));
    let mut dangling = referral();
    dangling["entry"][1]["resource"]["subject"]["reference"] =
        json!("urn:uuid:00000000-0000-0000-0000-000000000000");
    cases.push((
        "unresolved-reference",
        dangling.to_string().into_bytes(),
        "Bundle.entry[1].resource.subject.reference",
    ));
    let mut big = referral();
    big["entry"][1]["resource"]["note"][0]["text"] = json!("x".repeat(70 * 1024));
    cases.push(("oversized", big.to_string().into_bytes(), "body"));

    let ids: Vec<String> = cases.iter().map(|(name, _, _)| unique(name)).collect();
    let messages: Vec<_> = cases
        .iter()
        .zip(&ids)
        .map(|((_, body, _), id)| (body.clone(), ce_headers(id)))
        .collect();
    h.rabbit.publish_many(&h.t.exchange(), &messages).await;

    for ((name, _, field), id) in cases.iter().zip(&ids) {
        let row = h.wait_state(id, "parked").await;
        assert_eq!(row.error_class.as_deref(), Some("permanent"), "{name}");
        let reason = row.last_error.unwrap();
        assert!(
            reason.starts_with(&format!("{field}: ")),
            "{name}: reason {reason:?} should name {field}"
        );
        assert!(
            !reason.contains("9912003889"),
            "{name}: reason must not carry the number"
        );
    }
    h.wait_parked("referral", cases.len()).await;
    let parked = common::dlq_list(&h.t, &h.gw.store).await.unwrap();
    for ((name, _, field), id) in cases.iter().zip(&ids) {
        let p = parked
            .iter()
            .find(|p| &p.message_id == id)
            .unwrap_or_else(|| panic!("{name} parked"));
        assert_eq!(p.field.as_deref(), Some(*field), "{name}");
        assert_eq!(p.attempts, 1);
    }
    assert_eq!(h.hook.count(), 0, "nothing malformed was delivered");
    h.finish().await;
}

#[tokio::test]
async fn the_same_ce_id_twice_is_delivered_once() {
    let h = Harness::start("dup", &[], &["300ms"]).await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    h.wait_state(&id, "delivered").await;
    h.publish(&id, &referral()).await;
    h.wait_audit(&id, "duplicate").await;
    assert_eq!(h.hook.count(), 1);
    assert_eq!(h.state(&id).await.as_deref(), Some("delivered"));
    h.wait_queue_len(&h.t.queue(), 0).await;
    h.finish().await;
}

/// The same id with other content is not a duplicate: it is parked with that reason,
/// and the delivered original stays delivered.
#[tokio::test]
async fn the_same_id_with_different_content_is_parked_as_such() {
    let h = Harness::start("samediff", &[], &["300ms"]).await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    h.wait_state(&id, "delivered").await;
    let mut changed = referral();
    changed["entry"][1]["resource"]["priority"] = json!("urgent");
    h.publish(&id, &changed).await;
    let parked = h.wait_audit(&id, "parked").await;
    let why = parked.entry.detail.unwrap();
    assert!(why.contains("same id, different content"), "{why}");
    h.wait_parked("referral", 1).await;
    assert_eq!(h.hook.count(), 1, "nothing sent for the second copy");
    assert_eq!(h.state(&id).await.as_deref(), Some("delivered"));
    h.finish().await;
}

/// A Consent that denies sharing declines the referral even when nothing links it to
/// the ServiceRequest or the Patient: fail closed.
#[tokio::test]
async fn an_unlinked_deny_consent_declines_the_referral() {
    let h = Harness::start("unlinked-deny", &[], &["300ms"]).await;
    let mut r = referral();
    let mut deny = r["entry"][7]["resource"].clone();
    deny["id"] = json!("another-consent");
    deny["provision"] = json!({"type": "deny"});
    deny.as_object_mut().unwrap().remove("patient");
    r["entry"].as_array_mut().unwrap().push(
        json!({"fullUrl": "urn:uuid:9d0b5e8c-6a38-4d4b-9f55-2b6b1f6f0a99", "resource": deny}),
    );
    let id = unique("ref");
    h.publish(&id, &r).await;
    h.wait_state(&id, "withheld").await;
    h.wait_queue_len(&h.t.queue(), 0).await;
    assert_eq!(h.hook.count(), 0);
    h.finish().await;
}

#[tokio::test]
async fn consent_declined_sends_nothing_and_records_why() {
    let h = Harness::start("declined", &[], &["300ms"]).await;
    let mut r = referral();
    r["entry"][7]["resource"]["provision"]["type"] = json!("deny");
    let id = unique("ref");
    h.publish(&id, &r).await;
    h.wait_state(&id, "withheld").await;
    let w = h.wait_audit(&id, "withheld").await;
    assert!(w.entry.detail.as_deref().unwrap().contains("declined"));
    h.wait_queue_len(&h.t.queue(), 0).await;
    assert_eq!(h.hook.count(), 0);
    assert!(
        h.gw.store
            .parked(Some("referral"), None, 10)
            .await
            .unwrap()
            .is_empty(),
        "policy is not an error"
    );
    h.finish().await;
}

/// Codes-only consent: the coded items travel, no narrative does — through the PRSB
/// payload and through a mapped CSV sheet alike — and the audit lists no narrative field.
#[tokio::test]
async fn codes_only_consent_sends_no_narrative_to_any_destination() {
    let mut sheet = None;
    let h = Harness::start_with("codesonly", &[], &["300ms"], |c| {
        sheet = Some(add_sheet(c, SHEET_ALLOWS));
    })
    .await;
    let mut r = referral();
    r["entry"][7]["resource"]["provision"]["provision"] =
        json!([{"type": "deny", "purpose": [{"code": "narrative"}]}]);
    let id = unique("ref");
    h.publish(&id, &r).await;
    h.wait_state(&id, "delivered").await;

    let got = h.hook.received();
    let details = &got[0].body["referral"]["referral_details"];
    assert_eq!(details["reasons_for_referral"][0]["code"], "422650009");
    assert!(details.get("what_matters_to_me").is_none(), "{details}");
    assert!(details["reasons_for_referral"][0].get("text").is_none());

    let dir = sheet.unwrap();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains("422650009"));
    assert!(!text.contains("gardening"), "no narrative in the sheet");
    assert!(!text.contains("bereavement"));

    let audit = h.gw.store.audit("referral", &id).await.unwrap();
    let fields: Vec<&String> = audit.iter().flat_map(|a| a.entry.fields.iter()).collect();
    assert!(!fields.is_empty());
    assert!(
        fields
            .iter()
            .all(|f| !f.contains("what_matters_to_me") && !f.contains("What matters")),
        "{fields:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_dropped_connection_mid_flight_redelivers_and_delivers_once() {
    let h = Harness::start("drop", &[], &["300ms"]).await;
    h.hook.hold();
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    // the delivery is in flight: the receiver has it and has not answered
    eventually("request in flight", WAIT, || async {
        (h.hook.count() == 1).then_some(())
    })
    .await;
    assert_eq!(
        close_connections_named(&h.s.prefix),
        1,
        "the gateway's connection was found and closed"
    );
    h.hook.release();

    // the ack was lost with the channel, so RabbitMQ redelivers; idempotency absorbs it
    h.wait_audit(&id, "duplicate").await;
    h.wait_queue_len(&h.t.queue(), 0).await;
    assert_eq!(h.hook.count(), 1, "delivered once");
    assert_eq!(h.state(&id).await.as_deref(), Some("delivered"));
    // and the recovered consumer keeps working
    let id2 = unique("ref");
    h.publish(&id2, &referral()).await;
    h.wait_state(&id2, "delivered").await;
    h.finish().await;
}

#[tokio::test]
async fn the_topology_is_declared_as_exported() {
    let s = Setup::new("topo");
    let rabbit = Rabbit::connect().await;
    let t = rabbit
        .declare(&s.broker_config("http://127.0.0.1:9/", &["1s", "5s"]))
        .await;
    t.declare(&rabbit.ch)
        .await
        .expect("declaring twice is harmless");
    let defs: Value = t.definitions("/");
    let queues = defs["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 4);
    let main = queues.iter().find(|q| q["name"] == t.queue()).unwrap();
    assert_eq!(main["arguments"]["x-queue-type"], "quorum");
    assert_eq!(
        main["arguments"]["x-dead-letter-exchange"],
        t.dead_letter_exchange()
    );
    for q in t.queue_names() {
        assert_eq!(rabbit.queue_len(&q).await, 0, "{q} exists");
    }
    rabbit.cleanup(&t).await;
}

/// A CSV sheet for the programme beside the webhook, through the csv-referral mapping.
fn add_sheet(c: &mut clw_gateway::config::Config, allow: &[&str]) -> std::path::PathBuf {
    let dir = c.gateway.data_dir.join("sheet");
    c.mappings.dir = repo_path("mappings");
    c.destinations.insert(
        "sheet",
        destination(&format!(
            "kind = \"csv\"\ndir = {:?}\nmapping = \"csv-referral\"\nagreement = \"DSA-SHEET-1\"\nallow = {:?}\n",
            dir.display().to_string(),
            allow
        )),
    );
    c.referrals.destinations.push("sheet".into());
    dir
}

const SHEET_ALLOWS: &[&str] = &[
    "person_demographics",
    "gp_practice",
    "referral_details",
    "referrer_details.name",
];

#[tokio::test]
async fn fan_out_to_a_webhook_and_a_csv_sheet_retries_each_destination_independently() {
    let mut sheet = None;
    let h = Harness::start_with("fanout", &[503, 200], &["200ms", "200ms"], |c| {
        sheet = Some(add_sheet(c, SHEET_ALLOWS));
    })
    .await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    let row = h.wait_state(&id, "delivered").await;
    assert_eq!(row.attempts, 2, "the webhook's 503 made a second attempt");
    assert_eq!(h.hook.count(), 2);

    let deliveries = h.gw.store.deliveries("referral", &id).await.unwrap();
    let attempts: Vec<(&str, &str, i64)> = deliveries
        .iter()
        .map(|d| (d.destination.as_str(), d.state.as_str(), d.attempts))
        .collect();
    assert_eq!(
        attempts,
        [("clw", "delivered", 2), ("sheet", "delivered", 1)],
        "the sheet was written once, not again on the webhook's retry"
    );

    let dir = sheet.unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.starts_with('\u{feff}'), "UTF-8 BOM for Excel");
    let lines: Vec<&str> = text.trim_start_matches('\u{feff}').split("\r\n").collect();
    assert_eq!(lines.len(), 3, "header, one row, final CRLF: {lines:?}");
    assert!(lines[0].starts_with("Referral date,NHS number,Given name,Family name,"));
    assert!(lines[0].ends_with(",Gateway reference,Gateway action"));
    assert!(
        lines[1].starts_with("20/11/2026,9912003888,Richard,SMITH,11/09/1970,"),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(&format!(",{id},referral")));

    let audit = h.wait_audit(&id, "delivered").await;
    assert!(audit.entry.destination.is_some());
    h.finish().await;
}

#[tokio::test]
async fn a_destination_whose_mapping_reads_outside_its_allow_list_stops_start_up() {
    let s = Setup::new("allow");
    let hook = Receiver::start(&[]).await;
    let mut config = s.broker_config(&hook.url, &["1s"]);
    add_sheet(
        &mut config,
        &[
            "referral_details",
            "gp_practice",
            "person_demographics.name",
        ],
    );
    let err = match clw_gateway::app::start(config).await {
        Ok(_) => panic!("started despite the allow-list"),
        Err(e) => e.reason(),
    };
    assert!(
        err.starts_with("destinations.sheet.allow: mapping csv-referral"),
        "{err}"
    );
    assert!(
        err.contains("reads person_demographics.nhs_number"),
        "{err}"
    );
}

/// A referral from `practice` (the example's practice code swapped for it).
fn referral_from(practice: &str) -> Value {
    serde_json::from_str(
        &referral()
            .to_string()
            .replace("\"GP5\"", &format!("\"{practice}\"")),
    )
    .unwrap()
}

#[tokio::test]
async fn routes_send_each_practice_to_its_programmes_destinations() {
    let mut sheet = None;
    let h = Harness::start_with("routes", &[], &["200ms"], |c| {
        sheet = Some(add_sheet(c, SHEET_ALLOWS));
        let routes = c.gateway.data_dir.join("routes.yaml");
        std::fs::write(
            &routes,
            "programmes:\n  leeds: {destinations: [clw, sheet]}\n  york: {destinations: [sheet]}\n\
             practices:\n  GP5: leeds\n  B82005: york\n",
        )
        .unwrap();
        c.referrals.routes = Some(routes);
    })
    .await;
    let (leeds, york, nowhere) = (unique("leeds"), unique("york"), unique("nowhere"));
    h.publish(&leeds, &referral_from("GP5")).await;
    h.publish(&york, &referral_from("B82005")).await;
    h.publish(&nowhere, &referral_from("X99999")).await;
    h.wait_state(&leeds, "delivered").await;
    h.wait_state(&york, "delivered").await;
    let parked = h.wait_state(&nowhere, "parked").await;
    assert!(
        parked
            .last_error
            .unwrap()
            .contains("practice X99999 has no programme"),
        "the reason names the practice"
    );

    let store = &h.gw.store;
    let to = |id: &str| {
        let id = id.to_string();
        async move {
            let mut d: Vec<String> = store
                .deliveries("referral", &id)
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.destination)
                .collect();
            d.sort();
            d
        }
    };
    assert_eq!(to(&leeds).await, ["clw", "sheet"]);
    assert_eq!(to(&york).await, ["sheet"]);
    assert!(to(&nowhere).await.is_empty());
    assert_eq!(
        h.hook.count(),
        1,
        "only the Leeds referral reached the webhook"
    );
    let dir = sheet.unwrap();
    let rows: usize = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .matches("\r\n")
                .count()
                - 1
        })
        .sum();
    assert_eq!(rows, 2, "both routed referrals are rows in the sheet");
    h.wait_parked("referral", 1).await;
    h.finish().await;
}
