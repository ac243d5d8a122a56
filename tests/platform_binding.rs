//! A platform writes only to the records of the referrals it was sent. One referral goes
//! to platform `hoplat` (a webhook and a Lamplight account); platform `otherplat` (its own
//! webhook and Lamplight account, publishing to the AMQP door as its broker user) was
//! never sent it. Every way `otherplat` can name that referral — by message id, by
//! `hoplat`'s Lamplight id, by programme and NHS number, through the HTTP door, the
//! spreadsheet door and the AMQP door — and a poller of a destination that never had it,
//! and a forged copy of a door's event, are parked with a reason; the practice record (the
//! FHIR test server) holds nothing at all until `hoplat` itself answers.

mod common;

use clw_gateway::store::ParkedRow;
use common::standins::*;
use common::*;
use serde_json::{Value, json};

const HOP_SECRET: &str = "hoplat-signing-secret";
const OTHER_SECRET: &str = "otherplat-signing-secret";
const NHS: &str = "9912003888";
const DOB: &str = "1970-09-11";

/// A canonical event about `referral` (a `referral` object), as platforms send it.
fn event(id: &str, kind: &str, referral: Value, extra: Value) -> Value {
    let mut e = json!({
        "event_id": id,
        "type": kind,
        "occurred_at": "2026-11-25T10:00:00Z",
        "referral": referral,
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

fn closed_deceased() -> Value {
    json!({"closed": {"reason": "deceased"}})
}

fn patient() -> Value {
    json!({"nhs_number": NHS, "date_of_birth": DOB})
}

struct Bed {
    h: Harness,
    fhir: FhirServer,
    _other_hook: Receiver,
    hop_lamplight: Shared,
    port: u16,
    referral_id: String,
}

/// The referral delivered to hoplat's webhook and Lamplight account (Lamplight answers
/// with referral id 123), and to nothing of otherplat's.
async fn bed(
    name: &str,
    fhir: FhirServer,
    adjust: impl FnOnce(&mut clw_gateway::config::Config),
) -> Bed {
    // SAFETY: values no other test reads differently.
    unsafe {
        std::env::set_var("CLW_TEST_HOP_SECRET", HOP_SECRET);
        std::env::set_var("CLW_TEST_OTHER_SECRET", OTHER_SECRET);
    }
    let other_hook = Receiver::start(&[]).await;
    let (hop_url, hop_lamplight) = serve(axum::routing::any(lamplight), &[]).await;
    let (other_url, _) = serve(axum::routing::any(lamplight), &[]).await;
    let h = Harness::start_with(name, &[], &["200ms", "500ms"], |c| {
        c.mappings.dir = repo_path("mappings");
        let add = |c: &mut clw_gateway::config::Config, name: &str, table: String| {
            c.destinations.insert(name, destination(&table))
        };
        add(c, "hop-lamplight", lamplight_toml(&hop_url, "lamplight-person", None));
        add(c, "other-lamplight", lamplight_toml(&other_url, "lamplight-person", None));
        add(
            c,
            "other-hook",
            format!("kind = \"webhook\"\nurl = \"{}\"\nallow = {PRSB_ALLOW}\n", other_hook.url),
        );
        add(
            c,
            "other-fhir",
            format!(
                "kind = \"fhir\"\nbase_url = \"{}\"\nmapping = \"fhir-servicerequest\"\npoll_every = \"200ms\"\n\
                 allow = [\"person_demographics.nhs_number\", \"person_demographics.chi_number\", \"referral_details\", \"referrer_details.name\", \"referred_to\"]\n",
                fhir.base
            ),
        );
        add(
            c,
            "gp-fhir",
            format!(
                "kind = \"fhir-record\"\nbase_url = \"{}\"\ntimeout = \"10s\"\n\
                 allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
                fhir.base
            ),
        );
        c.referrals.destinations = vec!["clw".into(), "hop-lamplight".into()];
        c.message_back = Some(
            toml::from_str(
                "writers = [\"gp-fhir\"]\n\
                 [platforms.hoplat]\nsecret = { env = \"CLW_TEST_HOP_SECRET\" }\n\
                 destinations = [\"clw\", \"hop-lamplight\"]\n\
                 [platforms.otherplat]\nsecret = { env = \"CLW_TEST_OTHER_SECRET\" }\n\
                 destinations = [\"other-hook\", \"other-lamplight\"]\nbroker_user = \"guest\"\n",
            )
            .unwrap(),
        );
        c.ingress.enabled = true;
        c.ingress.listen = "127.0.0.1:0".parse().unwrap();
        adjust(c);
    })
    .await;
    let referral_id = unique("ref");
    h.publish(&referral_id, &referral()).await;
    h.wait_state(&referral_id, "delivered").await;
    let port = h.gw.ingress_addr.unwrap().port();
    Bed {
        h,
        fhir,
        _other_hook: other_hook,
        hop_lamplight,
        port,
        referral_id,
    }
}

impl Bed {
    async fn post(&self, platform: &str, secret: &str, body: &Value) -> Sent {
        post_event(self.port, platform, secret, body).await
    }

    /// Publishes to the AMQP events door as `guest` (otherplat's broker user).
    async fn publish_event(&self, body: &[u8], platform_header: Option<&str>) {
        self.publish_event_as(&self.h.rabbit, "guest", body, platform_header)
            .await
    }

    /// Publishes to the AMQP events door on `rabbit`'s connection, as its user `user`.
    async fn publish_event_as(
        &self,
        rabbit: &Rabbit,
        user: &str,
        body: &[u8],
        platform_header: Option<&str>,
    ) {
        let events = self.h.t.for_flow(clw_gateway::model::Flow::MessageBack);
        events.declare(&self.h.rabbit.ch).await.unwrap();
        let mut headers = vec![
            ("ce-id", uuid::Uuid::new_v4().to_string()),
            (
                "ce-type",
                "uk.nhs.socialprescribing.messageback.v1".to_string(),
            ),
            ("ce-specversion", "1.0".to_string()),
        ];
        if let Some(p) = platform_header {
            headers.push(("x-clw-platform", p.to_string()));
        }
        rabbit
            .publish_as(&events.exchange(), body, &headers, user)
            .await;
    }

    async fn parked(&self, id: &str) -> String {
        let m = wait_message(&self.h.gw.store, "message-back", id, "parked").await;
        m.last_error.unwrap()
    }

    /// Every resource a record writer could have written for any event.
    async fn written(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for t in [
            "Encounter",
            "Observation",
            "Procedure",
            "Communication",
            "CarePlan",
        ] {
            all.extend(self.fhir.search(t).await);
        }
        all
    }
}

fn by_id(referral_id: &str) -> Value {
    json!({"message_id": referral_id, "patient": patient()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_never_sent_the_referral_writes_nothing_by_any_door_or_any_link() {
    let b = bed("binding", FhirServer::start().await, |_| {}).await;
    let r = &b.referral_id;
    // The referral reached hoplat's Lamplight account, which gave it id 123.
    assert_eq!(
        b.hop_lamplight.lock().unwrap().accepted.len(),
        2,
        "profile and referral"
    );

    // The HTTP door: otherplat names the referral by its message id, by programme and
    // number, and by hoplat's Lamplight id (looked up only in its own account).
    let cases = [
        ("b-by-id", by_id(r)),
        (
            "b-by-number",
            json!({"programme": "default", "patient": patient()}),
        ),
        (
            "b-by-reference",
            json!({"platform_reference": "123", "patient": patient()}),
        ),
    ];
    for (id, link) in &cases {
        let ev = event(id, "closed", link.clone(), closed_deceased());
        let sent = b.post("otherplat", OTHER_SECRET, &ev).await;
        assert_eq!(sent.status, 202, "{}", sent.body);
    }
    for (id, want) in [
        ("otherplat:b-by-id", "did not send to it"),
        ("otherplat:b-by-number", "did not send to it"),
        ("otherplat:b-by-reference", "matches its platform_reference"),
    ] {
        let reason = b.parked(id).await;
        assert!(reason.starts_with("referral"), "{id}: {reason}");
        assert!(reason.contains("platform \"otherplat\""), "{id}: {reason}");
        assert!(reason.contains(want), "{id}: {reason}");
        assert!(!reason.contains(NHS) && !reason.contains(DOB), "{reason}");
    }

    // The spreadsheet door, signed by otherplat.
    let sheet = format!(
        "Event,Date,Gateway reference,NHS number,Date of birth,Reason\r\n\
         Closed,2026-11-25,{r},{NHS},{DOB},deceased\r\n"
    );
    let up = signed_post(
        b.port,
        "/v1/uploads/otherplat",
        "text/csv",
        sheet.into_bytes(),
        fresh_timestamp(),
        OTHER_SECRET,
    )
    .await;
    assert_eq!(up.status, 202, "{}", up.body);
    assert_eq!(up.body["queued"], 1);

    // The AMQP door, published as otherplat's broker user: without x-clw-platform it is
    // otherplat's; claiming hoplat's name is refused outright.
    let amqp = event("b-amqp", "closed", by_id(r), closed_deceased());
    b.publish_event(amqp.to_string().as_bytes(), None).await;
    let claimed = event("b-claims-hoplat", "closed", by_id(r), closed_deceased());
    b.publish_event(claimed.to_string().as_bytes(), Some("hoplat"))
        .await;
    assert!(
        b.parked("otherplat:b-amqp")
            .await
            .contains("did not send to it")
    );

    // A forged copy of a door's event: otherplat's sealed envelope, its origin rewritten
    // to hoplat, published to the AMQP door.
    let sealed = sealed_copy(&b, "otherplat:b-by-id").await;
    let forged = String::from_utf8(sealed)
        .unwrap()
        .replace("platform:otherplat", "platform:hoplat");
    b.publish_event(forged.as_bytes(), None).await;

    // A poller of a destination that never had the referral: a Task naming it appears
    // there (made by hand), completed.
    let task = json!({
        "resourceType": "Task",
        "status": "completed",
        "intent": "order",
        "identifier": [{"system": "https://clw-gateway.org/Id/referral", "value": r}],
        "lastModified": "2026-11-25T10:00:00Z",
    });
    let made = reqwest::Client::new()
        .post(format!("{}/Task", b.fhir.base))
        .header("content-type", "application/fhir+json")
        .body(task.to_string())
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success());

    // Every one parked: the three by HTTP, the sheet row, two by AMQP, the forgery and the
    // poller's event.
    let rows = b.h.wait_parked("message-back", 8).await;
    let field_of = |pred: &dyn Fn(&ParkedRow) -> bool| {
        rows.iter()
            .find(|p| pred(p))
            .unwrap_or_else(|| panic!("{rows:#?}"))
            .clone()
    };
    let sheet_row = field_of(&|p| p.message_id.starts_with("otherplat:row-"));
    assert!(
        sheet_row.reason.contains("did not send to it"),
        "{}",
        sheet_row.reason
    );
    let claim = field_of(&|p| p.field.as_deref() == Some("x-clw-platform"));
    assert!(claim.reason.contains("\"hoplat\""), "{}", claim.reason);
    let forgery = field_of(&|p| p.field.as_deref() == Some("clw_sealed"));
    assert!(
        forgery.reason.contains("seal does not match"),
        "{}",
        forgery.reason
    );
    let polled = field_of(&|p| p.message_id.starts_with("fhir-tasks-other-fhir:"));
    assert!(
        polled
            .reason
            .contains("the poller of destination \"other-fhir\""),
        "{}",
        polled.reason
    );
    for p in &rows {
        assert!(!p.reason.contains(NHS), "{}", p.reason);
    }

    // Nothing at all in the practice record.
    assert_eq!(b.written().await, Vec::<Value>::new());

    // hoplat itself is heard: by message id, and by its own Lamplight id.
    let accepted = event("a-accepted", "referral-accepted", by_id(r), json!({}));
    assert_eq!(b.post("hoplat", HOP_SECRET, &accepted).await.status, 202);
    let contact = event(
        "a-contact",
        "contact",
        json!({"platform_reference": "123", "patient": patient()}),
        json!({"contact": {"mode": "telephone", "date": "2026-11-25"}}),
    );
    assert_eq!(b.post("hoplat", HOP_SECRET, &contact).await.status, 202);
    wait_message(
        &b.h.gw.store,
        "message-back",
        "hoplat:a-accepted",
        "delivered",
    )
    .await;
    wait_message(
        &b.h.gw.store,
        "message-back",
        "hoplat:a-contact",
        "delivered",
    )
    .await;
    assert_eq!(b.fhir.search("Communication").await.len(), 2);
    b.h.finish().await;
}

/// The body a door queued for `id`, as the store keeps its parked copy.
async fn sealed_copy(b: &Bed, id: &str) -> Vec<u8> {
    let rows =
        b.h.gw
            .store
            .parked(Some("message-back"), None, 1000)
            .await
            .unwrap();
    let row = rows.iter().find(|p| p.message_id == id).unwrap();
    let body = eventually("the parked copy's body", WAIT, || async {
        b.h.gw.store.parked_body(&row.key).await.unwrap()?.body
    })
    .await;
    assert!(body.starts_with(b"{\"clw_sealed\""), "sealed by the door");
    body
}

/// The patient is always named: an event without the items the platform must give is
/// refused at the HTTP door naming the field (message id or not), and parked from the
/// AMQP door; a platform none of whose destinations records references cannot link by
/// one (refused at the door); nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_does_not_name_the_patient_is_refused_and_nothing_is_written() {
    let b = bed("binding-patient", FhirServer::start().await, |c| {
        // otherplat keeps only its webhook: nothing records references it could link by.
        let mb = c.message_back.as_mut().unwrap();
        mb.platforms.get_mut("otherplat").unwrap().destinations = vec!["other-hook".into()];
    })
    .await;
    let r = &b.referral_id;
    let no_patient = event("a-1", "closed", json!({"message_id": r}), closed_deceased());
    let sent = b.post("hoplat", HOP_SECRET, &no_patient).await;
    assert_eq!(sent.status, 400, "{}", sent.body);
    assert_eq!(sent.body["field"], "referral.patient.nhs_number");
    let no_dob = event(
        "a-2",
        "closed",
        json!({"message_id": r, "patient": {"nhs_number": NHS}}),
        closed_deceased(),
    );
    let sent = b.post("hoplat", HOP_SECRET, &no_dob).await;
    assert_eq!(sent.status, 400, "{}", sent.body);
    assert_eq!(sent.body["field"], "referral.patient.date_of_birth");
    let by_reference = event(
        "b-1",
        "closed",
        json!({"platform_reference": "123", "patient": patient()}),
        closed_deceased(),
    );
    let sent = b.post("otherplat", OTHER_SECRET, &by_reference).await;
    assert_eq!(sent.status, 400, "{}", sent.body);
    assert_eq!(sent.body["field"], "referral.platform_reference");
    b.publish_event(no_patient.to_string().as_bytes(), None)
        .await;
    let rows = b.h.wait_parked("message-back", 1).await;
    assert_eq!(
        rows[0].field.as_deref(),
        Some("referral.patient.nhs_number")
    );
    assert!(
        rows[0].reason.contains("require_patient"),
        "{}",
        rows[0].reason
    );
    assert_eq!(b.written().await, Vec::<Value>::new());
    b.h.finish().await;
}

/// With codes-only (here: unrecorded) consent, no text the platform wrote travels back:
/// the summary, a decline's words and display, the onward service's name, the outcome,
/// the link worker's name and role — and the readable document says what was withheld.
/// The example Consent (information access, purpose "government") is not consent to
/// share with a social prescribing service unless the deployment lists it, so here it is
/// read as not recorded and the audit says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_for_another_purpose_is_not_full_and_no_platform_text_comes_back() {
    let b = bed("binding-consent", FhirServer::start().await, |c| {
        c.referrals.consent_covers.clear()
    })
    .await;
    let r = &b.referral_id;
    let payload = &b.h.hook.received()[0].body;
    assert_eq!(
        payload["referral"]["consent"]["state"], "not-recorded",
        "{payload}"
    );
    // Codes only went out: the referral's own free text stayed behind.
    assert!(payload["referral"]["referral_details"]["what_matters_to_me"].is_null());
    let audit = b.h.wait_audit(r, "consent").await;
    assert!(
        audit
            .entry
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("referrals.consent_covers"),
        "{audit:?}"
    );
    let texts = [
        "Moved to Spain with her daughter",
        "DECLINED-DISPLAY-TEXT",
        "Leeds Allotment Society",
        "Back at work and sleeping better",
        "Sam Link",
        "Peer support worker",
        "Talked about the allotment",
    ];
    let worker = json!({"practitioner": {"name": texts[4], "role": texts[5]}, "summary": texts[6]});
    let with = |extra: Value| {
        let mut e = worker.clone();
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let events = [
        event(
            "a-declined",
            "referral-declined",
            by_id(r),
            with(
                json!({"declined_reason": {"code": "moved", "display": texts[1], "text": texts[0]}}),
            ),
        ),
        event(
            "a-onward",
            "onward-referral",
            by_id(r),
            with(json!({"onward_referral": {"to": texts[2], "category": "befriending"}})),
        ),
        event(
            "a-closed",
            "closed",
            by_id(r),
            with(json!({"closed": {"reason": "completed", "outcome": texts[3]}})),
        ),
    ];
    for e in &events {
        assert_eq!(b.post("hoplat", HOP_SECRET, e).await.status, 202);
    }
    for id in ["hoplat:a-declined", "hoplat:a-onward", "hoplat:a-closed"] {
        wait_message(&b.h.gw.store, "message-back", id, "delivered").await;
    }
    let written = b.written().await;
    assert!(!written.is_empty());
    let all = serde_json::to_string(&written).unwrap();
    for t in texts {
        assert!(!all.contains(t), "{t:?} reached the record: {all}");
    }
    let communications = b.fhir.search("Communication").await;
    assert_eq!(communications.len(), 3);
    let readable = serde_json::to_string(&communications).unwrap();
    assert!(
        readable.contains("Not shared under the patient's consent"),
        "{readable}"
    );
    assert!(
        readable.contains("the name of the service referred on to"),
        "{readable}"
    );
    assert!(
        readable.contains("Referred on to a befriending service"),
        "{readable}"
    );
    b.h.finish().await;
}

/// An event from a platform's own broker user stays bound to it when it is retried: the
/// gateway cannot republish RabbitMQ's `user_id` (the broker refuses one that is not the
/// publisher's), so the retried copy carries the user sealed, and is written once the
/// record answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_retried_from_the_amqp_door_stays_bound_to_its_broker_user() {
    let user = "clw-test-hoplat";
    let url = broker_user(user);
    let fhir = FhirServer::start().await;
    let target: std::net::SocketAddr = fhir
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/fhir")
        .parse()
        .unwrap();
    let link = Link::start(target).await;
    link.refuse();
    let through = format!("http://{}/fhir", link.addr);
    let b = bed("binding-retry", fhir, |c| {
        c.destinations.insert(
            "gp-fhir",
            destination(&format!(
                "kind = \"fhir-record\"\nbase_url = \"{through}\"\ntimeout = \"5s\"\n\
                 allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n"
            )),
        );
        let mb = c.message_back.as_mut().unwrap();
        mb.platforms.get_mut("hoplat").unwrap().broker_user = Some(user.into());
        mb.platforms.get_mut("otherplat").unwrap().broker_user = None;
    })
    .await;
    let platform = Rabbit::connect_to(&url).await;
    let ev = event(
        "a-retried",
        "referral-accepted",
        by_id(&b.referral_id),
        json!({}),
    );
    b.publish_event_as(&platform, user, ev.to_string().as_bytes(), None)
        .await;
    eventually("a retry", WAIT, || async {
        let m =
            b.h.gw
                .store
                .message("message-back", "hoplat:a-retried")
                .await
                .unwrap()?;
        (m.state == "retrying").then_some(())
    })
    .await;
    link.pass();
    let m = wait_message(
        &b.h.gw.store,
        "message-back",
        "hoplat:a-retried",
        "delivered",
    )
    .await;
    assert!(m.attempts >= 2, "{m:?}");
    assert_eq!(b.fhir.search("Communication").await.len(), 1);
    let _ = platform.conn.close(200, "done".into()).await;
    b.h.finish().await;
}

/// `check` refuses a platform that links by reference when none of its destinations
/// records references, a platform that speaks for no destination, and two platforms
/// publishing as one broker user.
#[test]
fn check_refuses_a_platform_that_could_never_be_linked() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo_path("mappings"), &dir.path().join("mappings"));
    copy_tree(&repo_path("schemas"), &dir.path().join("schemas"));
    copy_tree(&repo_path("examples"), &dir.path().join("examples"));
    std::fs::write(
        dir.path().join("mappings/message-back/ref-event.yaml"),
        "name: ref-event\nversion: \"1\"\ndescription: events that name the referral by the platform's id\n\
         flow: message-back\ndirection: inbound\ninput: json\noutput:\n  format: json\nfields:\n\
         \x20 - {to: event_id, expr: id, transforms: [required]}\n\
         \x20 - {to: type, expr: kind, transforms: [required]}\n\
         \x20 - {to: occurred_at, expr: at, transforms: [required]}\n\
         \x20 - {to: referral.platform_reference, expr: case_id}\n",
    )
    .unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ndata_dir = {:?}\n[mappings]\ndir = {:?}\n[referrals]\ndestinations = [\"hook\"]\n\
             [destinations.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nallow = {PRSB_ALLOW}\n\
             [destinations.folder]\nkind = \"practice-folder\"\ndir = {:?}\n\
             allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n\
             [message_back]\nwriters = [\"folder\"]\n\
             [message_back.platforms.by-reference]\nmapping = \"ref-event\"\ndestinations = [\"hook\"]\n\
             [message_back.platforms.nowhere]\nbroker_user = \"shared\"\n\
             [message_back.platforms.also]\ndestinations = [\"hook\"]\nbroker_user = \"shared\"\n",
            dir.path().join("data").display().to_string(),
            dir.path().join("mappings").display().to_string(),
            dir.path().join("practice").display().to_string(),
        ),
    )
    .unwrap();
    let (passed, text) = check_config(&config);
    assert!(!passed, "{text}");
    assert!(
        text.contains("message_back.platforms.by-reference.mapping")
            && text.contains("referral.platform_reference"),
        "{text}"
    );
    assert!(
        text.contains("message_back.platforms.nowhere.destinations"),
        "{text}"
    );
    assert!(
        text.contains(".broker_user") && text.contains("one user speaks for one platform"),
        "{text}"
    );
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
