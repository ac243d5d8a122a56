//! The message back as the PRSB Social Prescribing Information Standard v1.1 asks, item
//! by item: plan and requested actions first (or "no actions required"), risks and
//! safeguarding as sections of their own, each contact's NHS Data Dictionary codes, any
//! structured assessment with its subscales and earlier scores — through the real
//! gateway to the FHIR test server, the practice folder, Docman and MESH — and the
//! codes-only rule for every new free text.

mod common;

use std::path::{Path, PathBuf};

use clw_gateway::app;
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "prsb-links-signing-secret";
const SECRET_ENV: &str = "CLW_TEST_PRSB_LINKS_SECRET";
const ALIAS: &str = "GPPROVIDER_9912003888_19700911_SMITH";
const PLAN_FIRST: &str = "Plan and requested actions";
/// What the record writers may read: the whole record entry, risks and safeguarding
/// included (the agreement names them).
const WRITER_ALLOW: &str = "[\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\", \"risks\", \"safeguarding\"]";

/// A v2 canonical event about `referral_id`, with `extra` fields set.
fn event(referral_id: &str, id: &str, kind: &str, extra: Value) -> Value {
    let mut e = json!({
        "event_id": id,
        "type": kind,
        "occurred_at": "2026-11-25T10:00:00Z",
        "referral": {"message_id": referral_id, "patient": example_patient()},
        "practitioner": {"name": "Sam Link", "role": "Social prescribing link worker"},
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        e[k] = v.clone();
    }
    e
}

/// HADS (Hospital anxiety and depression scale, SNOMED CT 273524006) with its two
/// subscales: a structured scale the gateway knows only by its code.
fn hads(total: f64, date: &str) -> Value {
    json!({"instrument": "HADS", "score": total, "date": date,
           "code": {"system": "http://snomed.info/sct", "code": "273524006", "display": "Hospital anxiety and depression scale"},
           "subscales": [{"name": "Anxiety", "value": 9}, {"name": "Depression", "value": total - 9.0}]})
}

fn plan() -> Value {
    json!({"for_professionals": "Please review mood medication at the next appointment.",
           "for_person": "Join the Tuesday walking group.",
           "agreed_with_person": "Walking weekly; review in six weeks."})
}

fn risks() -> Value {
    json!({"entries": [{"risk": {"text": "Falls at home"}, "start": "2026-10-01", "comment": "Lives alone"}]})
}

async fn post(port: u16, platform: &str, body: &Value) -> Sent {
    post_event(port, platform, SECRET, body).await
}

/// The plan's lines come before "What happened" in `text`, which has both.
fn plan_first(what: &str, text: &str) {
    let plan = text
        .find(PLAN_FIRST)
        .unwrap_or_else(|| panic!("{what}: no plan\n{text}"));
    let happened = text
        .find("What happened")
        .unwrap_or_else(|| panic!("{what}: nothing happened\n{text}"));
    assert!(plan < happened, "{what}: the plan is not first\n{text}");
}

/// The practice folder's documents (`.txt`), oldest name first.
fn documents(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// One event carrying a plan with actions, risks, safeguarding and a HADS score with
/// its subscales (and a home visit with "no actions required" beside it), through the
/// real gateway on RabbitMQ to four record writers: the FHIR test server (a CarePlan
/// with one activity per action, the Observation with a component per subscale, the
/// visit's Encounter with its NHS Data Dictionary codes, all accepted and R4-valid), the
/// practice folder, Docman and MESH (mesh-sandbox) — the plan first in every readable
/// rendering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_back_with_plan_risks_and_an_assessment_is_written_plan_first() {
    let fhir = FhirServer::start().await;
    let mesh = MeshSandbox::start().await;
    let (docman, posted) = common::docman::start().await;
    // SAFETY: values no other test reads differently.
    unsafe {
        std::env::set_var(SECRET_ENV, SECRET);
        std::env::set_var("CLW_TEST_DOCMAN_TOKEN", "docman-token");
        std::env::set_var("CLW_TEST_MESH_PASSWORD", "gateway-pass");
        std::env::set_var("CLW_TEST_MESH_KEY", "TestKey");
    }
    let mut folder = PathBuf::new();
    let h = Harness::start_with("prsb-mb", &[], &["300ms", "1s"], |c| {
        c.mappings.dir = repo_path("mappings");
        folder = c.gateway.data_dir.join("practice");
        for (name, table) in [
            (
                "gp-fhir",
                format!("kind = \"fhir-record\"\nbase_url = \"{}\"\ntimeout = \"10s\"\n", fhir.base),
            ),
            (
                "gp-folder",
                format!("kind = \"practice-folder\"\ndir = {:?}\n", folder.display().to_string()),
            ),
            (
                "gp-docman",
                format!(
                    "kind = \"docman\"\nurl = \"{docman}\"\ntoken = {{ env = \"CLW_TEST_DOCMAN_TOKEN\" }}\n\
                     sender_ods = \"X99CLW\"\nsender_name = \"Leeds Community Links\"\n"
                ),
            ),
            (
                "gp-mesh",
                format!(
                    "kind = \"mesh\"\nbase_url = \"{}\"\nmailbox = \"CLWGW0001\"\n\
                     password = {{ env = \"CLW_TEST_MESH_PASSWORD\" }}\nshared_key = {{ env = \"CLW_TEST_MESH_KEY\" }}\n\
                     sender_ods = \"X99CLW\"\nsender_name = \"Leeds Community Links\"\nreports_every = \"0s\"\n",
                    mesh.base
                ),
            ),
        ] {
            c.destinations
                .insert(name, destination(&format!("{table}allow = {WRITER_ALLOW}\n")));
        }
        c.message_back = Some(
            toml::from_str(&format!(
                "writers = [\"gp-fhir\", \"gp-folder\", \"gp-docman\", \"gp-mesh\"]\n\
                 [platforms.links]\nmapping = \"clw-event-v2\"\nsecret = {{ env = \"{SECRET_ENV}\" }}\ndestinations = [\"clw\"]\n"
            ))
            .unwrap(),
        );
        c.ingress.enabled = true;
        c.ingress.listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let referral_id = unique("ref");
    h.publish(&referral_id, &referral()).await;
    h.wait_state(&referral_id, "delivered").await;
    let port = h.gw.ingress_addr.unwrap().port();
    let ev = event(
        &referral_id,
        "evt-prsb-1",
        "assessment",
        json!({
            "assessment": hads(17.0, "2026-11-25"),
            "plan": plan(),
            "risks": risks(),
            "safeguarding": [{"concern": {"text": "Financial pressure from a relative"}}],
            "needs": [{"system": "http://snomed.info/sct", "code": "422650009", "display": "Social isolation"}],
        }),
    );
    // And a home visit the person was not in for, with "no actions required".
    let visit = event(
        &referral_id,
        "evt-prsb-2",
        "contact",
        json!({
            "contact": {"mode": "home-visit", "date": "2026-11-25", "outcome": {"code": "3"}},
            "plan": {"no_actions_required": true},
        }),
    );
    for (e, id) in [(&ev, "links:evt-prsb-1"), (&visit, "links:evt-prsb-2")] {
        let sent = post(port, "links", e).await;
        assert_eq!(sent.status, 202, "{}", sent.body);
        wait_message(&h.gw.store, "message-back", id, "delivered").await;
    }

    // The FHIR record: the plan as a CarePlan, the score with its subscales, the visit's
    // codes on its Encounter; accepted by the server (which validates every write) and
    // valid on their own.
    let careplans = fhir.search("CarePlan").await;
    assert_eq!(careplans.len(), 2, "one CarePlan per event");
    let none = careplans
        .iter()
        .find(|c| c["description"] == "No actions required")
        .expect("the visit's plan");
    assert!(none.get("activity").is_none(), "{none}");
    let cp = careplans
        .iter()
        .find(|c| c.get("activity").is_some())
        .unwrap();
    assert_eq!(
        (cp["status"].as_str(), cp["intent"].as_str()),
        (Some("active"), Some("plan"))
    );
    assert_eq!(cp["subject"]["identifier"]["value"], "9912003888");
    let activities: Vec<&str> = cp["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["detail"]["status"], "not-started");
            a["detail"]["description"].as_str().unwrap()
        })
        .collect();
    assert_eq!(activities.len(), 3, "{activities:?}");
    assert!(
        activities[0].contains("review mood medication"),
        "{activities:?}"
    );
    let observations = fhir.search("Observation").await;
    assert_eq!(observations.len(), 1);
    let obs = &observations[0];
    assert_eq!(obs["code"]["coding"][0]["code"], "273524006");
    assert_eq!(obs["valueQuantity"]["value"], 17.0);
    let subscales: Vec<(&str, f64)> = obs["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["code"]["text"].as_str().unwrap(),
                c["valueQuantity"]["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(subscales, [("Anxiety", 9.0), ("Depression", 8.0)]);
    // The visit: how (01 face to face), where (A01, a contained Location) and that the
    // person was not seen (cancelled; the outcome in its extension).
    let encounters = fhir.search("Encounter").await;
    assert_eq!(encounters.len(), 1);
    let enc = &encounters[0];
    assert_eq!(enc["status"], "cancelled");
    assert_eq!(enc["type"][1]["coding"][0]["code"], "01");
    assert_eq!(enc["contained"][0]["type"][0]["coding"][0]["code"], "A01");
    assert_eq!(enc["location"][0]["location"]["reference"], "#where");
    assert_eq!(
        enc["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "3"
    );
    let communications = fhir.search("Communication").await;
    assert_eq!(communications.len(), 2);
    for c in &communications {
        let readable = c["payload"][0]["contentString"].as_str().unwrap();
        plan_first("the FHIR Communication", readable);
    }
    let written: Vec<Value> = [&careplans, &observations, &encounters, &communications]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    fhir_js_validate(&written).unwrap();

    // The practice folder.
    let docs = documents(&folder.join("GP5"));
    assert_eq!(docs.len(), 2);
    docs.iter()
        .for_each(|d| plan_first("the practice folder", d));
    let visit_doc = docs.iter().find(|d| d.contains("home visit")).unwrap();
    assert!(
        visit_doc.contains("Plan and requested actions: no actions required"),
        "{visit_doc}"
    );
    let scored = docs.iter().find(|d| d.contains("HADS")).unwrap();
    for want in [
        "For the GP or referrer: Please review mood medication",
        "HADS score 17",
        "Subscale results:",
        "  Anxiety: 9",
        "Risks identified:",
        "Falls at home, from 2026-10-01; Lives alone",
        "Safeguarding concerns:",
        "Social isolation (SNOMED CT 422650009)",
    ] {
        assert!(scored.contains(want), "{want}\n{scored}");
    }
    assert!(
        scored.find("What happened").unwrap() < scored.find("Risks identified").unwrap(),
        "risks after what happened"
    );

    // Docman: the PDF, plan first; action asked of the practice only by the plan that
    // asks the GP to act.
    let documents = posted.lock().unwrap().clone();
    assert_eq!(documents.len(), 2);
    for d in &documents {
        let scored = d["ClinicalCodes"][0]["Code"] == "273524006";
        assert_eq!(d["ActionRequired"], scored, "{}", d["Notes"]);
        let pdf = MeshSandbox::pdf_text(d["Document"]["FileContent"].as_str().unwrap());
        plan_first("Docman's PDF", &pdf);
    }

    // MESH: each ITK3 message's Composition opens with the plan; its PDF too.
    let inbox: Value = mesh
        .get(ALIAS, "practice-pass", "/inbox")
        .await
        .json()
        .await
        .unwrap();
    let ids = inbox["messages"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "{inbox}");
    for id in ids {
        let path = format!("/inbox/{}", id.as_str().unwrap());
        let xml = mesh
            .get(ALIAS, "practice-pass", &path)
            .await
            .text()
            .await
            .unwrap();
        roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("not well formed: {e}"));
        let first_section = xml.split("<section>").nth(1).unwrap();
        assert!(
            first_section.starts_with(&format!("<title value=\"{PLAN_FIRST}\"/>")),
            "{first_section}"
        );
        let pdf64 = xml
            .split("<content value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        plan_first("the MESH message's PDF", &MeshSandbox::pdf_text(pdf64));
    }
    h.finish().await;
}

/// A spool-mode gateway on the embedded destinations (outbox, practice folder), the
/// ingress on, platform `links` sending v2 events and `legacy` sending v1.
async fn gateway(s: &Setup, extra: &str) -> app::Running {
    // SAFETY: a value no other test reads differently.
    unsafe { std::env::set_var(SECRET_ENV, SECRET) };
    door_gateway(
        s,
        &format!(
            "{extra}[message_back]\nwriters = [\"practice-folder\"]\n\
             [message_back.platforms.links]\nmapping = \"clw-event-v2\"\nsecret = {{ env = \"{SECRET_ENV}\" }}\ndestinations = [\"outbox\"]\n\
             [message_back.platforms.legacy]\nsecret = {{ env = \"{SECRET_ENV}\" }}\ndestinations = [\"outbox\"]\n"
        ),
    )
    .await
}

/// Posts `body` as `platform`'s and, when accepted, waits until it is written.
async fn written(gw: &app::Running, platform: &str, body: &Value) -> Sent {
    let sent = post(gw.ingress_addr.unwrap().port(), platform, body).await;
    if sent.status == 202 {
        let id = sent.body["id"].as_str().unwrap().to_string();
        wait_message(&gw.store, "message-back", &id, "delivered").await;
    }
    sent
}

/// The practice folder's document for the event queued as `id`.
fn document_of(data: &Path, id: &str) -> (String, Value) {
    let folder = data.join("data/practice/GP5");
    let folder = if folder.is_dir() {
        folder
    } else {
        data.join("practice/GP5")
    };
    let stem = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "txt")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| s.ends_with(&id.replace(':', "%3A")))
        })
        .unwrap_or_else(|| panic!("no document for {id} in {}", folder.display()));
    let text = std::fs::read_to_string(&stem).unwrap();
    let json =
        serde_json::from_slice(&std::fs::read(stem.with_extension("json")).unwrap()).unwrap();
    (text, json)
}

fn field_of(sent: &Sent) -> &str {
    sent.body["field"].as_str().unwrap_or_default()
}

/// A contact sent with its mode alone gets its NHS Data Dictionary consultation
/// mechanism from the code map (telephone: 02; a home visit: 01, at A01 the patient's
/// home); a code the platform sends is checked against its value set, and one outside it
/// is refused at the door naming the field, nothing written.
#[tokio::test]
async fn contact_codes_are_nhs_data_dictionary_codes() {
    let s = Setup::new("prsb-contact");
    let gw = gateway(&s, "").await;
    refer_example(&gw, s.dir.path()).await;
    let r = EXAMPLE_REFERRAL_ID;
    let contact = |id: &str, c: Value| event(r, id, "contact", json!({"contact": c}));

    let sent = written(
        &gw,
        "links",
        &contact(
            "c-phone",
            json!({"mode": "telephone", "date": "2026-11-25"}),
        ),
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let (text, json) = document_of(s.dir.path(), "links:c-phone");
    let method = &json["event"]["contact"]["method"];
    assert_eq!(
        (method["code"].as_str(), method["display"].as_str()),
        (Some("02"), Some("Telephone"))
    );
    assert!(
        text.contains("Consultation mechanism: Telephone (NHS Data Dictionary 02)"),
        "{text}"
    );
    assert!(
        !text.contains("Location:"),
        "a telephone call is nowhere in particular"
    );

    let sent = written(
        &gw,
        "links",
        &contact(
            "c-home",
            json!({"mode": "home-visit", "date": "2026-11-25",
        "outcome": {"code": "5"}}),
        ),
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let (text, json) = document_of(s.dir.path(), "links:c-home");
    assert_eq!(json["event"]["contact"]["method"]["code"], "01");
    assert_eq!(json["event"]["contact"]["location"]["code"], "A01");
    assert!(
        text.contains("Location: Patient's home (NHS Data Dictionary A01)"),
        "{text}"
    );
    assert!(text.contains("Attendance: Attended on time"), "{text}");

    // A platform's own codes, checked: 11 (video consultation) is one; 03 (telemedicine,
    // the old CONSULTATION MEDIUM USED) is not.
    let sent = written(
        &gw,
        "links",
        &contact(
            "c-video",
            json!({"mode": "video", "method": {"code": "11"}}),
        ),
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    for (id, c, field) in [
        (
            "c-bad-method",
            json!({"mode": "video", "method": {"code": "03"}}),
            "contact.method",
        ),
        (
            "c-bad-system",
            json!({"mode": "telephone", "method": {"system": "http://snomed.info/sct", "code": "02"}}),
            "contact.method",
        ),
        (
            "c-bad-place",
            json!({"mode": "face-to-face", "location": {"code": "Z99"}}),
            "contact.location",
        ),
        (
            "c-bad-outcome",
            json!({"mode": "telephone", "outcome": {"text": "no answer"}}),
            "contact.outcome",
        ),
    ] {
        let sent = written(&gw, "links", &contact(id, c)).await;
        assert_eq!(
            (sent.status, field_of(&sent)),
            (400, field),
            "{}",
            sent.body
        );
        assert!(
            sent.body["error"]
                .as_str()
                .unwrap()
                .contains("NHS Data Dictionary"),
            "{}",
            sent.body
        );
        assert!(
            gw.store
                .message("message-back", &format!("links:{id}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    gw.stop().await.unwrap();
}

/// Any structured assessment scale is admitted by its SNOMED CT code, with its
/// subscales, and its document shows the referral's earlier scores on it; one without
/// its code, or with an unnamed subscale, is refused naming the field. The v1 mapping
/// keeps its contract (the wellbeing instruments only).
#[tokio::test]
async fn any_structured_assessment_with_subscales_is_admitted() {
    let s = Setup::new("prsb-scale");
    let gw = gateway(&s, "").await;
    refer_example(&gw, s.dir.path()).await;
    let r = EXAMPLE_REFERRAL_ID;
    let score = |id: &str, at: &str, a: Value| {
        let mut e = event(r, id, "assessment", json!({"assessment": a}));
        e["occurred_at"] = json!(at);
        e
    };
    let first = score("hads-1", "2026-11-25T10:00:00Z", hads(21.0, "2026-11-25"));
    assert_eq!(written(&gw, "links", &first).await.status, 202);
    let second = score("hads-2", "2026-11-26T10:00:00Z", hads(17.0, "2026-11-26"));
    assert_eq!(written(&gw, "links", &second).await.status, 202);
    let (text, json) = document_of(s.dir.path(), "links:hads-2");
    for want in [
        "What happened: HADS score 17 on 2026-11-26",
        "Earlier HADS scores: 21 on 2026-11-25",
        "Subscale results:\n  Anxiety: 9\n  Depression: 8",
        "SNOMED CT  273524006",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    assert_eq!(
        json["referral"]["earlier_scores"],
        json!([{"date": "2026-11-25", "score": 21.0}])
    );
    // SWEMWBS keeps its range; a wellbeing score is not a HADS history.
    let swemwbs = score(
        "sw-1",
        "2026-11-26T11:00:00Z",
        json!({"instrument": "SWEMWBS", "score": 22}),
    );
    assert_eq!(written(&gw, "links", &swemwbs).await.status, 202);
    let (text, _) = document_of(s.dir.path(), "links:sw-1");
    assert!(!text.contains("Earlier"), "{text}");

    let mut no_code = hads(17.0, "2026-11-26");
    no_code.as_object_mut().unwrap().remove("code");
    let mut unnamed = hads(17.0, "2026-11-26");
    unnamed["subscales"][1]["name"] = json!("  ");
    for (id, platform, a, field) in [
        ("x-1", "links", no_code, "assessment.code"),
        ("x-2", "links", unnamed, "assessment.subscales[1].name"),
        (
            "x-3",
            "links",
            json!({"instrument": "SWEMWBS", "score": 40}),
            "assessment.score",
        ),
        // v1 (clw-event) takes the wellbeing instruments only.
        ("x-4", "legacy", hads(17.0, "2026-11-26"), "assessment"),
    ] {
        let sent = written(&gw, platform, &score(id, "2026-11-26T12:00:00Z", a)).await;
        assert_eq!(sent.status, 400, "{}", sent.body);
        assert!(field_of(&sent).contains(field), "{field}: {}", sent.body);
    }
    gw.stop().await.unwrap();
}

/// Under codes-only consent the plan's texts stay behind like the summary — the
/// document says the link worker gave a plan that was not shared, and to ask — while
/// "no actions required", risks' dates and every code travel.
#[tokio::test]
async fn codes_only_consent_withholds_the_plan_text() {
    let s = Setup::new("prsb-codes-only");
    let gw = gateway(&s, "").await;
    // The example referral, its Consent denying narrative: codes only.
    let mut r = referral_with_id(EXAMPLE_REFERRAL_ID);
    for e in r["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "Consent" {
            e["resource"]["provision"]["provision"] =
                json!([{"type": "deny", "purpose": [{"code": "narrative"}]}]);
        }
    }
    std::fs::write(
        s.dir.path().join("spool/referrals/inbox/r1.json"),
        r.to_string(),
    )
    .unwrap();
    wait_message(&gw.store, "referral", EXAMPLE_REFERRAL_ID, "delivered").await;
    let id = EXAMPLE_REFERRAL_ID;

    let with_plan = event(
        id,
        "p-1",
        "contact",
        json!({
            "contact": {"mode": "telephone", "outcome": {"code": "5", "text": "Chatted about the allotment"}},
            "plan": plan(),
            "risks": risks(),
            "summary": "Feels better.",
        }),
    );
    assert_eq!(written(&gw, "links", &with_plan).await.status, 202);
    let (text, json) = document_of(s.dir.path(), "links:p-1");
    plan_first("codes-only", &text);
    assert!(
        text.contains("Plan and requested actions: given by the link worker, not shared under the patient's consent"),
        "{text}"
    );
    for words in [
        "mood medication",
        "walking group",
        "review in six weeks",
        "allotment",
        "Feels better",
    ] {
        assert!(!text.contains(words), "{words} withheld\n{text}");
        assert!(
            !json.to_string().contains(words),
            "{words} withheld from the record entry"
        );
    }
    assert!(json["event"].get("plan").is_none(), "{json}");
    let withheld: Vec<&str> = json["referral"]["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for item in [
        "plan.for_professionals",
        "plan.for_person",
        "plan.agreed_with_person",
        "contact.outcome.text",
    ] {
        assert!(withheld.contains(&item), "{item}: {withheld:?}");
    }
    // The embedded practice folder's agreement does not name risks: none reach it.
    assert!(
        json.get("risks").is_none() && !text.contains("Risks"),
        "{text}"
    );
    assert_eq!(json["event"]["contact"]["outcome"]["code"], "5");

    let none = event(
        id,
        "p-2",
        "closed",
        json!({
            "closed": {"reason": "completed"},
            "plan": {"no_actions_required": true},
        }),
    );
    assert_eq!(written(&gw, "links", &none).await.status, 202);
    let (text, json) = document_of(s.dir.path(), "links:p-2");
    assert!(
        text.contains("Plan and requested actions: no actions required"),
        "{text}"
    );
    assert_eq!(json["event"]["plan"], json!({"no_actions_required": true}));
    gw.stop().await.unwrap();
}

/// A record writer whose agreement does not name risks or safeguarding (the embedded
/// practice folder's) gets the rest of the event; its document says something was
/// recorded and where to ask, never what; the audit names the sections and the writer.
#[tokio::test]
async fn a_record_writer_not_agreed_for_safeguarding_is_told_to_ask_not_told_what() {
    let s = Setup::new("prsb-filtered");
    let gw = gateway(&s, "").await;
    std::fs::write(
        s.dir.path().join("spool/referrals/inbox/r1.json"),
        referral_with_id(EXAMPLE_REFERRAL_ID).to_string(),
    )
    .unwrap();
    wait_message(&gw.store, "referral", EXAMPLE_REFERRAL_ID, "delivered").await;
    let ev = event(
        EXAMPLE_REFERRAL_ID,
        "f-1",
        "contact",
        json!({
            "contact": {"mode": "telephone"},
            "plan": {"no_actions_required": true},
            "risks": risks(),
            "safeguarding": [{"concern": {"text": "Financial abuse by a relative disclosed"}}],
        }),
    );
    assert_eq!(written(&gw, "links", &ev).await.status, 202);
    let (text, json) = document_of(s.dir.path(), "links:f-1");
    assert!(!text.contains("Financial abuse"), "{text}");
    assert!(json.get("safeguarding").is_none() && json.get("risks").is_none());
    assert!(
        text.contains("recorded risks and safeguarding concerns not included here")
            && text.contains("Ask the link worker service"),
        "{text}"
    );
    let audit = gw
        .store
        .audit("message-back", "links:f-1")
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.entry.action.as_str() == "filtered")
        .expect("filtered audited");
    assert_eq!(audit.entry.fields, ["risks", "safeguarding"]);
    assert_eq!(audit.entry.destination.as_deref(), Some("practice-folder"));
    gw.stop().await.unwrap();
}
