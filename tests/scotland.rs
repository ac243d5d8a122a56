//! Scotland's practices and patients as themselves: a practice known by its Scottish
//! practice code (never as an ODS code), its nation, routing by either code, CHI numbers
//! checked by the deployment's rule, and `check` warning about MESH for a Scottish
//! practice.

mod common;

use std::collections::BTreeSet;

use clw_gateway::intake::{Rules, decode_referral, decode_referral_with};
use clw_gateway::model::Nation;
use clw_gateway::model::identifiers::{ChiCheck, SCOTTISH_PRACTICE_SYSTEM};
use clw_gateway::policy::routing::Routes;
use common::*;
use serde_json::{Value, json};

fn with_sender_identifier(mut b: Value, system: Option<&str>, value: &str) -> Value {
    let header = &mut b["entry"][0]["resource"];
    assert_eq!(header["resourceType"], "MessageHeader");
    let mut identifier = json!({"value": value});
    if let Some(s) = system {
        identifier["system"] = json!(s);
    }
    header["sender"] = json!({"identifier": identifier, "display": "Riverside Practice"});
    b
}

fn decode(b: &Value) -> clw_gateway::model::Referral {
    decode_referral(b.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{e}"))
        .referral
}

#[test]
fn a_scottish_practice_is_read_by_its_own_code_with_its_nation() {
    let r = decode(&scottish_referral());
    let p = r.gp_practice.expect("the practice");
    assert_eq!(p.scottish_practice_code.as_deref(), Some(PRACTICE));
    assert_eq!(p.ods_code, None, "never carried as an ODS code");
    assert_eq!(p.nation, Some(Nation::Scotland));
    assert_eq!(r.person_demographics.chi_number.as_deref(), Some(CHI));
    assert_eq!(r.person_demographics.nhs_number, None);
    // The canonical JSON names it by its own name.
    let v = serde_json::to_value(decode(&scottish_referral())).unwrap();
    assert_eq!(v["gp_practice"]["scottish_practice_code"], PRACTICE);
    assert_eq!(v["gp_practice"]["nation"], "scotland");
    assert!(v["gp_practice"].get("ods_code").is_none());
    // An English practice keeps its ODS code, and England.
    let e = decode(&referral()).gp_practice.unwrap();
    assert_eq!(e.ods_code.as_deref(), Some("GP5"));
    assert_eq!(e.scottish_practice_code, None);
    assert_eq!(e.nation, Some(Nation::England));
}

#[test]
fn the_code_on_message_header_sender_is_read_by_its_system() {
    let scottish = with_sender_identifier(referral(), Some(SCOTTISH_PRACTICE_SYSTEM), PRACTICE);
    let p = decode(&scottish).gp_practice.unwrap();
    assert_eq!(p.scottish_practice_code.as_deref(), Some(PRACTICE));
    assert_eq!(p.ods_code, None);
    assert_eq!(p.name.as_deref(), Some("Riverside Practice"));
    let ods = with_sender_identifier(
        referral(),
        Some("https://fhir.nhs.uk/Id/ods-organization-code"),
        "B82005",
    );
    let p = decode(&ods).gp_practice.unwrap();
    assert_eq!(p.ods_code.as_deref(), Some("B82005"));
    assert_eq!(p.scottish_practice_code, None);
    // A deployment's own system for Scottish practice codes.
    let local = "https://nhsggc.example.scot/Id/practice";
    let b = with_sender_identifier(referral(), Some(local), PRACTICE);
    let rules = Rules {
        scottish_practice_systems: vec![local.into()],
        ..Rules::default()
    };
    let p = decode_referral_with(b.to_string().as_bytes(), &rules)
        .unwrap()
        .referral
        .gp_practice
        .unwrap();
    assert_eq!(p.scottish_practice_code.as_deref(), Some(PRACTICE));
    assert_eq!(p.nation, Some(Nation::Scotland));
}

#[test]
fn a_scottish_practice_code_is_five_digits_or_refused_naming_the_field() {
    let mut b = scottish_referral();
    for e in b["entry"].as_array_mut().unwrap() {
        let r = &mut e["resource"];
        if r["identifier"][0]["system"] == SCOTTISH_PRACTICE_SYSTEM {
            r["identifier"][0]["value"] = json!("4321");
        }
    }
    let e = decode_referral(b.to_string().as_bytes()).unwrap_err();
    let field = e.field.clone().unwrap_or_default();
    assert!(field.ends_with("identifier[0].value"), "{field}");
    assert!(e.message.contains("5 digits"), "{}", e.message);
    assert!(!e.message.contains("4321"), "the value is not quoted");
}

#[test]
fn routes_take_either_code_and_a_practice_with_both_goes_by_the_one_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(
        &path,
        "programmes:\n  glasgow: {destinations: [sheet]}\n  leeds: {destinations: [hook]}\n\
         practices:\n  \"43210\": glasgow\n  GP5: leeds\n",
    )
    .unwrap();
    let known: BTreeSet<String> = ["sheet", "hook"].map(String::from).into();
    let routes = Routes::load(&path, &known).unwrap();
    let scottish = [("gp_practice.scottish_practice_code", PRACTICE)];
    let (code, programme, names) = routes.route_codes(&scottish).unwrap();
    assert_eq!((code, programme), (PRACTICE, "glasgow"));
    assert_eq!(names, ["sheet"]);
    // Both codes: the one the routes file names decides.
    let both = [
        ("gp_practice.ods_code", "Z99999"),
        ("gp_practice.scottish_practice_code", PRACTICE),
    ];
    assert_eq!(routes.route_codes(&both).unwrap().1, "glasgow");
    // Neither named: refused naming the field of the code it has.
    let e = routes
        .route_codes(&[("gp_practice.scottish_practice_code", "99999")])
        .unwrap_err();
    assert_eq!(
        e.field.as_deref(),
        Some("gp_practice.scottish_practice_code")
    );
    let e = routes.route_codes(&[]).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("gp_practice"));
    assert!(
        e.message.contains("Scottish practice code"),
        "{}",
        e.message
    );
}

/// A CHI number under each `chi_check` rule, through intake.
#[test]
fn each_chi_check_setting_takes_what_it_says() {
    let with_chi = |chi: &str| {
        let mut b = scottish_referral();
        for e in b["entry"].as_array_mut().unwrap() {
            if e["resource"]["resourceType"] == "Patient" {
                e["resource"]["identifier"][0]["value"] = json!(chi);
            }
        }
        b.to_string()
    };
    let rules = |chi_check| Rules {
        chi_check,
        ..Rules::default()
    };
    // 31 February 1956, with the right check digit: a number of the new format.
    let no_date = "3102560008";
    assert_eq!(
        clw_gateway::model::identifiers::validate_with(
            clw_gateway::model::identifiers::IdentifierKind::Chi,
            no_date,
            ChiCheck::Modulus11
        )
        .as_deref(),
        Ok(no_date),
        "the test number has a right check digit"
    );
    let refused = decode_referral_with(
        with_chi(no_date).as_bytes(),
        &rules(ChiCheck::DateAndModulus11),
    )
    .unwrap_err();
    assert!(
        refused
            .field
            .as_deref()
            .unwrap_or_default()
            .contains("identifier[0].value"),
        "{refused:?}"
    );
    assert!(refused.message.contains("DDMMYY"), "{}", refused.message);
    for rule in [ChiCheck::Modulus11, ChiCheck::FormatOnly] {
        let r = decode_referral_with(with_chi(no_date).as_bytes(), &rules(rule))
            .unwrap_or_else(|e| panic!("{}: {e}", rule.as_str()))
            .referral;
        assert_eq!(r.person_demographics.chi_number.as_deref(), Some(no_date));
        // Never derived from the digits: the date of birth is the Patient's own.
        assert_eq!(
            r.person_demographics.date_of_birth,
            decode(&referral()).person_demographics.date_of_birth
        );
    }
    // A wrong check digit: only the format check takes it.
    let wrong = "0402568878";
    assert!(decode_referral_with(with_chi(wrong).as_bytes(), &rules(ChiCheck::Modulus11)).is_err());
    assert!(decode_referral_with(with_chi(wrong).as_bytes(), &rules(ChiCheck::FormatOnly)).is_ok());
    assert!(
        decode_referral_with(
            with_chi("04025688").as_bytes(),
            &rules(ChiCheck::FormatOnly)
        )
        .is_err()
    );
}

/// `check` warns (and still passes) when a Scottish practice's record writers include a
/// MESH writer: MESH Send Document reaches practices in England only.
#[test]
fn check_warns_when_a_scottish_practices_writers_include_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        "programmes:\n  glasgow: {destinations: [outbox]}\n\
         practices:\n  \"43210\": {programme: glasgow, record_writers: [gp-mesh]}\n  GP5: glasgow\n",
    )
    .unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ndata_dir = \"{data}\"\n[mappings]\ndir = \"{mappings}\"\n\
             [referrals]\nroutes = \"{routes}\"\n\
             [destinations.outbox]\nkind = \"file\"\ndir = \"{data}/out\"\n\
             allow = [\"person_demographics\", \"contact_preferences\", \"referral_details\", \"referrer_details\", \"gp_practice\", \"referred_to\", \"consent\"]\n\
             [destinations.folder]\nkind = \"practice-folder\"\ndir = \"{data}/practice\"\n\
             allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n\
             [destinations.gp-mesh]\nkind = \"mesh\"\nbase_url = \"https://127.0.0.1:9\"\nmailbox = \"CLWGW0001\"\n\
             password = {{ env = \"CLW_TEST_SCOT_MESH\" }}\nshared_key = {{ env = \"CLW_TEST_SCOT_MESH\" }}\n\
             sender_ods = \"X99CLW\"\nsender_name = \"Links\"\n\
             allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n\
             [message_back]\nwriters = [\"folder\"]\n\
             [message_back.platforms.links]\nsecret = {{ env = \"CLW_TEST_SCOT_MESH\" }}\ndestinations = [\"outbox\"]\n",
            data = dir.path().display(),
            mappings = repo_path("mappings").display(),
            routes = routes.display(),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
        .arg("--config")
        .arg(&config)
        .arg("check")
        .env("CLW_TEST_SCOT_MESH", "a-secret-long-enough-for-anyone")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // (Its destinations name no agreement: those warnings are tests/ig_pack.rs's.)
    let warn: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("WARN") && l.contains("Scottish practice"))
        .collect();
    assert_eq!(warn.len(), 1, "{text}");
    assert!(warn[0].contains("practice 43210"), "{text}");
    assert!(warn[0].contains("gp-mesh"), "{text}");
    assert!(!text.contains("practice GP5 is a Scottish"), "{text}");
    // A warning, not a failure: the configuration itself is sound (only the store and
    // broker lines may fail on a machine without them).
    assert!(
        text.lines().any(|l| l.starts_with("ok   configuration")),
        "{text}"
    );
}

const LINKS_SECRET: &str = "glasgow-links-signing-secret";
const WRITER_ALLOW: &str =
    "[\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]";

/// Accepted, a contact, SWEMWBS 19 and closed, about `referral_id`, naming the patient
/// by CHI only.
fn four_events(referral_id: &str) -> [Value; 4] {
    [
        chi_event(referral_id, "evt-a", "referral-accepted", json!({})),
        chi_event(
            referral_id,
            "evt-c",
            "contact",
            json!({"contact": {"mode": "face-to-face", "date": "2026-11-26", "duration_minutes": 45}}),
        ),
        chi_event(
            referral_id,
            "evt-s",
            "assessment",
            json!({"assessment": {"instrument": "SWEMWBS", "score": 19, "date": "2026-11-26"}}),
        ),
        chi_event(
            referral_id,
            "evt-x",
            "closed",
            json!({"closed": {"reason": "completed", "outcome": "Goes to the walking group"}}),
        ),
    ]
}

/// End to end on the real broker, as a Scottish programme runs it: a referral whose
/// practice is known only by its Scottish practice code, for a CHI-only patient, with a
/// reason coded in Read v2, is delivered with the practice code and CHI under their
/// own names and the reason in SNOMED CT beside the Read v2 code; its events (accepted,
/// a contact, SWEMWBS, closed), each sent twice, are written once each to Docman (for
/// the practice by its code, the patient by `ChiNumber`, Read v2 beside SNOMED CT with
/// `read_codes` left to the practice's nation) and to the practice folder named by the
/// Scottish practice code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scottish_referral_and_its_events_travel_under_scotlands_own_names() {
    let (docman, posted) = common::docman::start().await;
    let fhir = FhirServer::start().await;
    let fhir_base = fhir.base.clone();
    // SAFETY: values no other test reads differently.
    unsafe {
        std::env::set_var("CLW_TEST_SCOT_LINKS_SECRET", LINKS_SECRET);
        std::env::set_var("CLW_TEST_DOCMAN_TOKEN", "docman-token");
    }
    let h = Harness::start_with("scot-e2e", &[], &["300ms", "1s"], |c| {
        c.mappings.dir = repo_path("mappings");
        let practice_dir = c.gateway.data_dir.join("practice");
        // The HSCP's routes: the practice by its Scottish practice code.
        let routes = c.gateway.data_dir.join("routes.yaml");
        std::fs::write(
            &routes,
            "programmes:\n  glasgow-links: {destinations: [clw]}\n\
             practices:\n  \"43210\": glasgow-links\n",
        )
        .unwrap();
        c.referrals.routes = Some(routes);
        c.destinations.insert(
            "gp-docman",
            destination(&format!(
                "kind = \"docman\"\nurl = \"{docman}\"\ntoken = {{ env = \"CLW_TEST_DOCMAN_TOKEN\" }}\n\
                 sender_ods = \"S99CLW\"\nsender_name = \"Glasgow Community Links\"\nallow = {WRITER_ALLOW}\n"
            )),
        );
        c.destinations.insert(
            "gp-fhir",
            destination(&format!(
                "kind = \"fhir-record\"\nbase_url = \"{fhir_base}\"\ntimeout = \"10s\"\nallow = {WRITER_ALLOW}\n"
            )),
        );
        c.destinations.insert(
            "folder",
            destination(&format!(
                "kind = \"practice-folder\"\ndir = \"{}\"\nallow = {WRITER_ALLOW}\n",
                practice_dir.display()
            )),
        );
        c.message_back = Some(
            toml::from_str(
                "writers = [\"gp-docman\", \"gp-fhir\", \"folder\"]\n[platforms.links]\n\
                 secret = { env = \"CLW_TEST_SCOT_LINKS_SECRET\" }\ndestinations = [\"clw\"]\n",
            )
            .unwrap(),
        );
        c.ingress.enabled = true;
        c.ingress.listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;

    let mut body = scottish_referral();
    for e in body["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "ServiceRequest" {
            e["resource"]["reasonCode"]
                .as_array_mut()
                .unwrap()
                .push(json!({"coding": [{"system": "http://read.info/readv2", "code": "1B1K.", "display": "Lonely"}]}));
        }
    }
    let referral_id = unique("scot");
    h.publish(&referral_id, &body).await;
    h.wait_state(&referral_id, "delivered").await;
    let kept = h.gw.store.referral(&referral_id).await.unwrap().unwrap();
    assert_eq!(
        kept.programme, "glasgow-links",
        "routed by its practice code"
    );
    assert_eq!(kept.practice.as_deref(), Some(PRACTICE));
    let sent = &h.hook.received()[0].body["referral"];
    assert_eq!(sent["gp_practice"]["scottish_practice_code"], PRACTICE);
    assert_eq!(sent["gp_practice"]["nation"], "scotland");
    assert!(sent["gp_practice"].get("ods_code").is_none(), "{sent}");
    assert_eq!(sent["person_demographics"]["chi_number"], CHI);
    assert!(sent["person_demographics"].get("nhs_number").is_none());
    let reasons: Vec<(String, String)> = sent["referral_details"]["reasons_for_referral"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["system"].as_str().unwrap_or_default().to_string(),
                r["code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let has = |system: &str, code: &str| reasons.contains(&(system.into(), code.into()));
    assert!(has("http://read.info/readv2", "1B1K."), "{reasons:?}");
    assert!(
        has("http://snomed.info/sct", "267076002"),
        "coded beside: {reasons:?}"
    );
    h.wait_audit(&referral_id, "coded").await;

    let port = h.gw.ingress_addr.unwrap().port();
    let events = four_events(&referral_id);
    for e in events.iter().chain(events.iter()) {
        let r = signed_post(
            port,
            "/v1/events/links",
            "application/json",
            e.to_string().into_bytes(),
            fresh_timestamp(),
            LINKS_SECRET,
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    for id in ["evt-a", "evt-c", "evt-s", "evt-x"] {
        wait_message(
            &h.gw.store,
            "message-back",
            &format!("links:{id}"),
            "delivered",
        )
        .await;
    }
    let docs = posted.lock().unwrap().clone();
    assert_eq!(
        docs.len(),
        4,
        "one document per event, however often it was sent"
    );
    for d in &docs {
        assert_eq!(
            d["RecipientOdsCode"], PRACTICE,
            "the practice by its own code"
        );
        assert_eq!(d["Patient"]["ChiNumber"], CHI);
        assert!(d["Patient"].get("NhsNumber").is_none(), "{d}");
    }
    let accepted = docs
        .iter()
        .find(|d| d["Notes"].as_str().unwrap().contains("accepted"))
        .unwrap();
    let codes: Vec<(&str, &str)> = accepted["ClinicalCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["Scheme"].as_str().unwrap(), c["Code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [("SNOMED", "871731000000106"), ("READ2", "8T09.")],
        "Read v2 beside SNOMED CT for a Scottish practice, read_codes unset"
    );
    // The FHIR record: each entry about the patient by the CHI system, Read v2 beside.
    let observations = fhir.search("Observation").await;
    assert_eq!(
        observations.len(),
        2,
        "the SWEMWBS score and the closure, once each"
    );
    assert_eq!(
        fhir.search("Communication").await.len(),
        4,
        "a summary per event"
    );
    for kind in ["Observation", "Encounter", "Communication"] {
        for r in fhir.search(kind).await {
            assert_eq!(
                r["subject"]["identifier"]["system"],
                clw_gateway::model::identifiers::CHI_SYSTEMS[0],
                "{kind}: {r}"
            );
            assert_eq!(r["subject"]["identifier"]["value"], CHI, "{kind}");
        }
    }
    let score = observations
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "718466001")
        .expect("the SWEMWBS Observation");
    assert_eq!(score["valueQuantity"]["value"], 19);
    let folder = h.s.dir.path().join("practice").join(PRACTICE);
    let texts: Vec<std::path::PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    assert_eq!(
        texts.len(),
        4,
        "one document per event in the folder named 43210"
    );
    let text = std::fs::read_to_string(&texts[0]).unwrap();
    assert!(text.contains("practice code 43210"), "{text}");
    assert!(text.contains("CHI number"), "{text}");
    h.finish().await;
}

/// Each `chi_check` setting is read from the configuration by the name the docs give it.
#[test]
fn each_chi_check_setting_is_read_by_its_documented_name() {
    for rule in [
        ChiCheck::DateAndModulus11,
        ChiCheck::Modulus11,
        ChiCheck::FormatOnly,
    ] {
        let c = clw_gateway::config::Config::from_toml(
            &format!("[intake]\nchi_check = \"{}\"\n", rule.as_str()),
            Vec::new(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", rule.as_str()));
        assert_eq!(c.intake.chi_check, rule);
    }
    let e =
        clw_gateway::config::Config::from_toml("[intake]\nchi_check = \"by-eye\"\n", Vec::new())
            .unwrap_err();
    assert!(e.to_string().contains("intake.chi_check"), "{e}");
}

/// The same Scottish referral's events, each sent twice with the gateway SIGKILLed half
/// way and restarted: Docman and the FHIR record each hold every entry exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scottish_events_are_written_once_through_resends_and_a_kill() {
    let (docman, posted) = common::docman::start().await;
    let fhir = FhirServer::start().await;
    let s = Setup::new("scot-kill");
    let hook = Receiver::start(&[]).await;
    let config = s.broker_config(&hook.url, &["300ms", "1s", "2s", "3s"]);
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&config).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = child_message_back_config(
        &s,
        &hook.url,
        port,
        "CLW_TEST_SCOT_LINKS_SECRET",
        &[
            (
                "gp-fhir",
                format!(
                    "kind = \"fhir-record\"\nbase_url = \"{}\"\ntimeout = \"10s\"\nallow = {WRITER_ALLOW}\n",
                    fhir.base
                ),
            ),
            (
                "gp-docman",
                format!(
                    "kind = \"docman\"\nurl = \"{docman}\"\ntoken = {{ env = \"CLW_TEST_DOCMAN_TOKEN\" }}\n\
                     sender_ods = \"S99CLW\"\nsender_name = \"Glasgow Community Links\"\nallow = {WRITER_ALLOW}\n"
                ),
            ),
        ],
    );
    // SAFETY: values no other test reads differently (the child gateway inherits them).
    unsafe {
        std::env::set_var("CLW_TEST_SCOT_LINKS_SECRET", LINKS_SECRET);
        std::env::set_var("CLW_TEST_DOCMAN_TOKEN", "docman-token");
    }
    let start = || ChildGateway::start(&path);
    let up = || listening(port);
    let post = |e: Value| async move {
        signed_post(
            port,
            "/v1/events/links",
            "application/json",
            e.to_string().into_bytes(),
            fresh_timestamp(),
            LINKS_SECRET,
        )
        .await
        .status
    };
    let mut gw = start();
    let referral_id = unique("scot");
    rabbit
        .publish(
            &t.exchange(),
            scottish_referral().to_string().as_bytes(),
            &ce_headers(&referral_id),
        )
        .await;
    eventually("the referral delivered", WAIT, || async {
        (hook.count() == 1).then_some(())
    })
    .await;
    up().await;
    let events = four_events(&referral_id);
    for e in &events[..2] {
        assert_eq!(post(e.clone()).await, 202);
        assert_eq!(post(e.clone()).await, 202, "resent");
    }
    gw.kill();
    let mut gw = start();
    up().await;
    for e in &events[2..] {
        assert_eq!(post(e.clone()).await, 202);
        assert_eq!(post(e.clone()).await, 202, "resent");
    }
    let store = clw_gateway::store::Store::connect(&s.store_url, 2, 16)
        .await
        .unwrap();
    wait_delivered(&store, "message-back", 4).await;
    let docs = posted.lock().unwrap().clone();
    assert_eq!(docs.len(), 4, "each event once at Docman, through the kill");
    assert!(docs.iter().all(|d| d["Patient"]["ChiNumber"] == CHI));
    assert_eq!(
        fhir.search("Communication").await.len(),
        4,
        "each once in the FHIR record"
    );
    assert_eq!(fhir.search("Encounter").await.len(), 1, "the contact, once");
    gw.kill();
    store.close().await;
    rabbit.cleanup(&t).await;
}
