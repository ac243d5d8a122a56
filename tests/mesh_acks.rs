//! GP Connect Send Document's acknowledgements and MESH's client rules, against NHS
//! England's mesh-sandbox: the practice's system answers what the gateway sent with ITK3
//! responses through its own MESH outbox, and the gateway reads them — received, filed,
//! rejected (parked, alerted), duplicates as filed, missing ones told after their time;
//! an EPL error report is a non-delivery; 501 inbox messages are all read and none left
//! to expire; the handshake is made once at start and not again that day.

mod common;

use std::time::Duration;

use clw_gateway::app::Running;
use common::*;
use serde_json::json;

const LINKS_SECRET: &str = "links-signing-secret";
const GATEWAY: &str = "CLWGW0001";
const ALIAS: &str = "GPPROVIDER_9912003888_19700911_SMITH";
const PRACTICE: &str = "A81001OT001";
const ACK_WORKFLOW: &str = "GPFED_CONSULT_REPORT_ACK";

/// A spool-mode gateway whose only record writer is MESH (the sandbox), its inbox read
/// every 200 ms, `extra` added to the writer's table; the example referral delivered.
async fn gateway(s: &Setup, mesh: &MeshSandbox, extra: &str) -> Running {
    // SAFETY: the same values in every test of this binary.
    unsafe {
        std::env::set_var("CLW_TEST_LINKS_SECRET", LINKS_SECRET);
        std::env::set_var("CLW_TEST_MESH_PASSWORD", "gateway-pass");
        std::env::set_var("CLW_TEST_MESH_KEY", "TestKey");
    }
    let mut c = s.config(&format!(
        "[message_back]\nwriters = [\"gp-mesh\"]\n\
         [message_back.platforms.links]\nsecret = {{ env = \"CLW_TEST_LINKS_SECRET\" }}\ndestinations = [\"outbox\"]\n\
         [mappings]\ndir = \"{}\"\n",
        repo_path("mappings").display()
    ));
    c.ingress.enabled = true;
    c.ingress.listen = "127.0.0.1:0".parse().unwrap();
    c.destinations = clw_gateway::config::Destinations::embedded(&c.gateway.data_dir);
    c.destinations.insert(
        "gp-mesh",
        destination(&format!(
            "kind = \"mesh\"\nbase_url = \"{}\"\nmailbox = \"{GATEWAY}\"\n\
             password = {{ env = \"CLW_TEST_MESH_PASSWORD\" }}\nshared_key = {{ env = \"CLW_TEST_MESH_KEY\" }}\n\
             sender_ods = \"X99CLW\"\nsender_name = \"Leeds Community Links\"\nreports_every = \"200ms\"\n{extra}\
             allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
            mesh.base
        )),
    );
    let gw = clw_gateway::app::start(c).await.unwrap();
    refer_example(&gw, s.dir.path()).await;
    gw
}

/// Posts one event through the signed door and waits until MESH took it; its message id.
async fn send_event(gw: &Running, id: &str) -> String {
    let port = gw.ingress_addr.unwrap().port();
    let sent = post_event(port, "links", LINKS_SECRET, &example_event(id, json!({}))).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let message_id = format!("links:{id}");
    wait_message(&gw.store, "message-back", &message_id, "delivered").await;
    message_id
}

/// The ITK3 MessageHeader id of the newest message in the practice's inbox, read as
/// the practice's system reads it (and acknowledged there), after checking the message
/// is valid for `workflow` (FHIR STU3 and the ITK3 / Send Document rules) and came on it.
async fn header_id_of_next(mesh: &MeshSandbox, workflow: &str) -> String {
    let inbox = eventually("a message at the practice", WAIT, || async {
        let v: serde_json::Value = mesh
            .get(ALIAS, "practice-pass", "/inbox")
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<String> = v["messages"]
            .as_array()?
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    let id = &inbox[0];
    let message = mesh
        .get(ALIAS, "practice-pass", &format!("/inbox/{id}"))
        .await;
    assert_eq!(message.headers()["mex-workflowid"], workflow);
    let subject = message.headers()["mex-subject"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(subject.contains("NHS Number"), "{subject}");
    let xml = message.text().await.unwrap();
    if let Err(errors) = common::itk::check(&[common::itk::Itk::Xml(&xml)], workflow, Some(GATEWAY))
    {
        panic!("the message sent is not valid: {errors:#?}");
    }
    let r = mesh
        .request(
            reqwest::Method::PUT,
            ALIAS,
            "practice-pass",
            &format!("/inbox/{id}/status/acknowledged"),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let doc = roxmltree::Document::parse(&xml).unwrap();
    doc.descendants()
        .find(|n| n.has_tag_name("MessageHeader"))
        .and_then(|h| h.children().find(|c| c.has_tag_name("id")))
        .and_then(|id| id.attribute("value"))
        .expect("the ITK3 MessageHeader id")
        .to_string()
}

/// An ITK3 response (ITK008M) answering `about` with `code`.
fn response(about: &str, code: &str, display: &str) -> String {
    let ok = matches!(code, "20013" | "30001" | "30004");
    format!(
        "<Bundle xmlns=\"http://hl7.org/fhir\"><id value=\"{b}\"/><meta><profile value=\"https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Message-Bundle-1\"/></meta>\
         <identifier><system value=\"https://tools.ietf.org/html/rfc4122\"/><value value=\"{b}\"/></identifier><type value=\"message\"/>\
         <entry><fullUrl value=\"urn:uuid:{h}\"/><resource><MessageHeader><id value=\"{h}\"/>\
         <event><system value=\"https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2\"/><code value=\"ITK008M\"/><display value=\"ITK Response Message\"/></event>\
         <timestamp value=\"2026-12-07T10:00:00+00:00\"/><source><endpoint value=\"{PRACTICE}\"/></source>\
         <response><identifier value=\"{about}\"/><code value=\"{rc}\"/><details><reference value=\"urn:uuid:{o}\"/></details></response>\
         </MessageHeader></resource></entry>\
         <entry><fullUrl value=\"urn:uuid:{o}\"/><resource><OperationOutcome><id value=\"{o}\"/><issue>\
         <severity value=\"{sev}\"/><code value=\"{ic}\"/><details><coding><system value=\"https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1\"/>\
         <code value=\"{code}\"/><display value=\"{display}\"/></coding></details></issue></OperationOutcome></resource></entry></Bundle>",
        b = uuid::Uuid::new_v4(),
        h = uuid::Uuid::new_v4(),
        o = uuid::Uuid::new_v4(),
        rc = if ok { "ok" } else { "fatal-error" },
        sev = if ok { "information" } else { "fatal" },
        ic = if ok { "informational" } else { "processing" },
    )
}

async fn practice_answers(mesh: &MeshSandbox, about: &str, code: &str, display: &str) {
    answers_on(mesh, ACK_WORKFLOW, about, code, display).await
}

/// The practice's system sends an ITK3 response on `workflow`.
async fn answers_on(mesh: &MeshSandbox, workflow: &str, about: &str, code: &str, display: &str) {
    let body = response(about, code, display);
    mesh.send(PRACTICE, "practice-pass", GATEWAY, workflow, &body)
        .await;
}

async fn wait_ack_state(gw: &Running, message_id: &str, want: &str) {
    eventually(&format!("{message_id}: {want}"), WAIT, || async {
        let got = gw
            .store
            .ack_state("message-back", message_id, "gp-mesh")
            .await
            .unwrap();
        got.filter(|g| g.starts_with(want))
    })
    .await;
}

async fn gateway_inbox_len(mesh: &MeshSandbox) -> usize {
    let v: serde_json::Value = mesh
        .get(GATEWAY, "gateway-pass", "/inbox")
        .await
        .json()
        .await
        .unwrap();
    v["messages"].as_array().map(Vec::len).unwrap_or(0)
}

/// Received, then filed; a duplicate response counts as filed; a negative business
/// acknowledgement parks the event with its code and meaning, and alerts; each is
/// audited, shown in `status`, and taken from the gateway's inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_move_each_event_to_filed_or_rejected() {
    let mesh = MeshSandbox::start().await;
    let s = Setup::new("mesh-acks");
    let gw = gateway(&s, &mesh, "").await;

    let filed = send_event(&gw, "ack-filed").await;
    wait_ack_state(&gw, &filed, "accepted by MESH").await;
    let header = header_id_of_next(&mesh, "GPFED_CONSULT_REPORT").await;
    practice_answers(&mesh, &header, "20013", "Success").await;
    wait_ack_state(&gw, &filed, "received by the practice (20013").await;
    practice_answers(&mesh, &header, "30001", "Patient known here").await;
    wait_ack_state(&gw, &filed, "filed at the practice (30001").await;

    let duplicate = send_event(&gw, "ack-duplicate").await;
    let header = header_id_of_next(&mesh, "GPFED_CONSULT_REPORT").await;
    practice_answers(&mesh, &header, "20007", "Duplicate Message received").await;
    wait_ack_state(&gw, &duplicate, "filed at the practice (20007").await;

    let refused = send_event(&gw, "ack-refused").await;
    let header = header_id_of_next(&mesh, "GPFED_CONSULT_REPORT").await;
    practice_answers(&mesh, &header, "20013", "Success").await;
    practice_answers(&mesh, &header, "30002", "Patient not known here").await;
    wait_ack_state(
        &gw,
        &refused,
        "rejected by the practice (30002 Patient not known here",
    )
    .await;
    let parked = eventually("the refused event parked", WAIT, || async {
        let rows = gw
            .store
            .parked(Some("message-back"), Some("parked"), 100)
            .await
            .unwrap();
        rows.into_iter().find(|p| p.message_id == refused)
    })
    .await;
    assert!(parked.reason.contains("30002"), "{}", parked.reason);
    assert!(
        parked.reason.contains("Patient not known here"),
        "{}",
        parked.reason
    );
    for value in ["9912003888", "SMITH", "Smith", "1970-09-11"] {
        assert!(
            !parked.reason.contains(value),
            "no patient detail: {}",
            parked.reason
        );
    }
    assert_eq!(parked.stage, "acknowledge");
    // Nothing else was refused or parked.
    let all_parked = gw
        .store
        .parked(Some("message-back"), Some("parked"), 100)
        .await
        .unwrap();
    assert_eq!(all_parked.len(), 1, "{all_parked:?}");

    // The dataset counts what the practice said of each event's record entry.
    let facts = gw
        .store
        .dataset_events(&[EXAMPLE_REFERRAL_ID.to_string()])
        .await
        .unwrap();
    let ack_of = |id: &str| {
        let f = facts.iter().find(|f| f.event_message_id == id).expect(id);
        let v: serde_json::Value = serde_json::from_str(&f.facts).unwrap();
        v["practice_ack"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(ack_of(&filed), "filed");
    assert_eq!(ack_of(&duplicate), "filed");
    assert_eq!(ack_of(&refused), "rejected");

    // Audited, counted, and nothing left to expire in the gateway's inbox.
    let audit = gw.store.audit("message-back", &filed).await.unwrap();
    let acks: Vec<String> = audit
        .iter()
        .filter(|a| a.entry.action.as_str() == "acknowledged")
        .map(|a| a.entry.detail.clone().unwrap_or_default())
        .collect();
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert!(acks[1].contains("filed at the practice"), "{acks:?}");
    let metrics = gw.metrics.render();
    for want in [
        "clw_gateway_acknowledgements_total{destination=\"gp-mesh\",level=\"business\",outcome=\"rejected\"} 1",
        "clw_gateway_acknowledgements_total{destination=\"gp-mesh\",level=\"business\",outcome=\"filed\"} 1",
        "clw_gateway_acknowledgements_total{destination=\"gp-mesh\",level=\"infrastructure\",outcome=\"filed\"} 1",
    ] {
        assert!(metrics.contains(want), "{want}\n{metrics}");
    }
    eventually("the gateway's inbox emptied", WAIT, || async {
        (gateway_inbox_len(&mesh).await == 0).then_some(())
    })
    .await;
    gw.stop().await.unwrap();
}

/// An acknowledgement that does not come within its time is told to a person once
/// (audited, alerted) and counted for the practice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_acknowledgement_is_told_after_its_time() {
    let mesh = MeshSandbox::start().await;
    let s = Setup::new("mesh-ack-overdue");
    let gw = gateway(
        &s,
        &mesh,
        "infrastructure_ack_within = \"1s\"\nbusiness_ack_within = \"1h\"\n",
    )
    .await;
    let id = send_event(&gw, "ack-never").await;
    let told = eventually("the missing acknowledgement told", WAIT, || async {
        let audit = gw.store.audit("message-back", &id).await.unwrap();
        audit
            .into_iter()
            .find(|a| a.entry.action.as_str() == "ack-overdue")
    })
    .await;
    let detail = told.entry.detail.unwrap_or_default();
    assert!(detail.contains("infrastructure"), "{detail}");
    eventually("the overdue gauge for the practice", WAIT, || async {
        gw.metrics
            .render()
            .contains("clw_gateway_acknowledgements_overdue{destination=\"gp-mesh\",practice=\"GP5\",level=\"infrastructure\"} 1")
            .then_some(())
    })
    .await;
    // The answer arrives late: the gauge clears.
    let header = header_id_of_next(&mesh, "GPFED_CONSULT_REPORT").await;
    practice_answers(&mesh, &header, "20013", "Success").await;
    eventually("the gauge cleared", WAIT, || async {
        gw.metrics
            .render()
            .contains("clw_gateway_acknowledgements_overdue{destination=\"gp-mesh\",practice=\"GP5\",level=\"infrastructure\"} 0")
            .then_some(())
    })
    .await;
    // Told once, however many rounds passed meanwhile; the business one not yet due.
    let audit = gw.store.audit("message-back", &id).await.unwrap();
    let told: Vec<_> = audit
        .iter()
        .filter(|a| a.entry.action.as_str() == "ack-overdue")
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    gw.stop().await.unwrap();
}

/// An EPL error report (the practice is not the patient's) is a non-delivery; 501
/// messages in the inbox are all read (more than one listing's 500), the ones the
/// gateway cannot act on kept in the store, none left to expire; one handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_reports_and_every_inbox_message_are_read_with_one_handshake() {
    let mesh = MeshSandbox::start().await;
    let s = Setup::new("mesh-inbox");
    let gw = gateway(&s, &mesh, "").await;
    let id = send_event(&gw, "epl").await;
    let (_, sent) = gw
        .store
        .effect("message-back", &id, "gp-mesh", "mesh-send")
        .await
        .unwrap()
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/messageexchange/admin/report", mesh.base))
        .json(&json!({
            "mailbox_id": GATEWAY, "code": "EPL-151",
            "description": "Patient is not registered at the practice",
            "workflow_id": "GPFED_CONSULT_REPORT", "linked_message_id": sent.unwrap(),
            "status": "error",
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let undelivered = eventually("the EPL report recorded", WAIT, || async {
        let audit = gw.store.audit("message-back", &id).await.unwrap();
        audit
            .into_iter()
            .find(|a| a.entry.action.as_str() == "undelivered")
    })
    .await;
    assert!(
        undelivered
            .entry
            .detail
            .unwrap_or_default()
            .contains("EPL-151"),
        "the code named"
    );

    // 501 messages the gateway cannot act on: each kept, then acknowledged.
    for n in 0..501 {
        mesh.send(
            PRACTICE,
            "practice-pass",
            GATEWAY,
            ACK_WORKFLOW,
            &format!("not an ITK3 response {n}"),
        )
        .await;
    }
    eventually("501 kept", Duration::from_secs(120), || async {
        (gw.store.inbox_kept(1000).await.unwrap().len() == 501).then_some(())
    })
    .await;
    eventually("the gateway's inbox emptied", WAIT, || async {
        (gateway_inbox_len(&mesh).await == 0).then_some(())
    })
    .await;
    assert!(
        gw.metrics
            .render()
            .contains("clw_gateway_inbox_kept_total{flow=\"inbox\",destination=\"gp-mesh\"} 501")
    );
    // Many inbox rounds and a send later: the one handshake made at start.
    assert_eq!(mesh.handshakes(GATEWAY).await, 1);
    gw.stop().await.unwrap();
}

/// Send Document 2.x when its workflow is configured: the message in 2.x's shape (valid
/// for it), its acknowledgements on 2.x's `_ACK` workflow, filed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_document_2_is_sent_in_its_own_shape_and_acknowledged() {
    let mesh = MeshSandbox::start().await;
    let s = Setup::new("mesh-sd2");
    let gw = gateway(&s, &mesh, "workflow_id = \"GPCONNECT_SEND_DOCUMENT\"\n").await;
    let id = send_event(&gw, "sd2").await;
    let header = header_id_of_next(&mesh, "GPCONNECT_SEND_DOCUMENT").await;
    answers_on(
        &mesh,
        "GPCONNECT_SEND_DOCUMENT_ACK",
        &header,
        "20013",
        "Success",
    )
    .await;
    answers_on(
        &mesh,
        "GPCONNECT_SEND_DOCUMENT_ACK",
        &header,
        "30001",
        "Patient known here",
    )
    .await;
    wait_ack_state(&gw, &id, "filed at the practice (30001").await;
    gw.stop().await.unwrap();
}
