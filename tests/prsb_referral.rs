//! The PRSB Social Prescribing standard's referral items, read whole from a UK Core
//! Bundle and sent as the standard asks: mandatory gaps recorded, counted per practice
//! and parked when configured; risks, safeguarding and gender history only where a
//! destination's agreement names them; the codes-only rule for every new free text.

mod common;

use clw_gateway::intake::decode_referral;
use clw_gateway::model::{ConsentState, Referral};
use clw_gateway::policy::{Release, apply_consent};
use common::*;
use serde_json::{Value, json};

fn prsb_bundle() -> Value {
    serde_json::from_slice(&std::fs::read(repo_path("examples/referral-bundle-prsb.json")).unwrap())
        .unwrap()
}

fn decode(b: &Value) -> Referral {
    decode_referral(b.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{e}"))
        .referral
}

/// The destination allow-list every test starts from, plus `extra` sections.
fn allow_with(extra: &[&str]) -> String {
    let mut allow: Vec<String> = serde_json::from_str(PRSB_ALLOW).unwrap();
    allow.extend(["referral_to", "individual_requirements", "not_recorded"].map(String::from));
    allow.extend(extra.iter().map(|s| s.to_string()));
    serde_json::to_string(&allow).unwrap()
}

fn v2_hook(allow: &str) -> String {
    format!(
        "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/referrals\"\nmapping = \"prsb-referral-v2\"\nallow = {allow}\n"
    )
}

/// Every M and R item the gateway carries, read from where the mapping table says.
#[test]
fn a_referral_carrying_every_m_and_r_item_is_read_whole() {
    let r = decode(&prsb_bundle());
    let risks = r.risks.as_ref().expect("risks");
    assert!(!risks.no_known_risks);
    assert_eq!(risks.entries.len(), 1);
    assert_eq!(risks.entries[0].risk.code.as_deref(), Some("281694009"));
    assert_eq!(risks.entries[0].start.as_deref(), Some("2026-10-01"));
    assert_eq!(r.safeguarding.len(), 1);
    assert!(r.safeguarding[0].concern.text.is_some());
    let adjustments = &r
        .individual_requirements
        .as_ref()
        .unwrap()
        .reasonable_adjustments;
    assert_eq!(
        adjustments[0].adjustment.text.as_deref(),
        Some("Information in large print")
    );
    let referrer = r.referrer_details.as_ref().unwrap();
    assert!(referrer.name.is_some());
    assert_eq!(
        referrer.service.as_ref().and_then(|s| s.text.as_deref()),
        Some("General practice")
    );
    assert_eq!(
        referrer.specialty.as_ref().and_then(|s| s.code.as_deref()),
        Some("600")
    );
    assert!(referrer.organisation.is_some() && !referrer.telecom.is_empty());
    let to = r.referral_to.as_ref().expect("referral to");
    assert_eq!(
        to.service.as_ref().and_then(|s| s.text.as_deref()),
        Some("Social prescribing link worker service")
    );
    assert_eq!(
        to.organisation.as_ref().and_then(|o| o.ods_code.as_deref()),
        Some("X99CLW")
    );
    assert_eq!(
        r.referral_details
            .referral_method
            .as_ref()
            .and_then(|m| m.display.as_deref()),
        Some("Secure Messaging")
    );
    assert!(r.referral_details.return_response_to.is_some());
    assert!(
        clw_gateway::policy::prsb::missing_mandatory(&r).is_empty(),
        "{:?}",
        clw_gateway::policy::prsb::missing_mandatory(&r)
    );
    // No Flag about risks at all: risks are not recorded (a gap), which is not the same
    // as "no known risks" said outright.
    let plain = decode(
        &serde_json::from_slice(
            &std::fs::read(repo_path("examples/referral-bundle.json")).unwrap(),
        )
        .unwrap(),
    );
    assert!(plain.risks.is_none());
    let mut none_known = prsb_bundle();
    for e in none_known["entry"].as_array_mut().unwrap() {
        if e["resource"]["id"] == "risk-falls" {
            e["resource"]["code"] = json!({"coding": [{
                "system": "https://clw-gateway.org/CodeSystem/prsb-section",
                "code": "no-known-risks", "display": "No known risks"}]});
        }
    }
    let r = decode(&none_known);
    assert!(r.risks.as_ref().unwrap().no_known_risks);
    assert!(clw_gateway::policy::prsb::missing_mandatory(&r).is_empty());
    // Sent through the v2 mapping to a destination agreed for everything: every section.
    let d = build_destination("clw", &v2_hook(&allow_with(&["risks", "safeguarding"])));
    let canonical = serde_json::to_value(decode(&prsb_bundle())).unwrap();
    let rendered = d.render(&canonical, "msg-1").unwrap();
    let out = &rendered.main().document;
    for section in [
        "risks",
        "safeguarding",
        "referral_to",
        "individual_requirements",
        "referrer_details",
        "gp_practice",
    ] {
        assert!(out["referral"].get(section).is_some(), "{section}: {out}");
    }
    assert!(out["referral"].get("not_recorded").is_none(), "{out}");
}

/// A Flag about someone other than the referred Patient stops the referral, naming it.
#[test]
fn a_flag_about_another_patient_is_refused_naming_it() {
    let mut b = prsb_bundle();
    for e in b["entry"].as_array_mut().unwrap() {
        if e["resource"]["id"] == "safeguarding-concern" {
            e["resource"]["subject"] = json!({"identifier": {
                "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}});
        }
    }
    let e = decode_referral(b.to_string().as_bytes()).unwrap_err();
    assert!(
        e.field.as_deref().unwrap_or_default().ends_with(".subject"),
        "{e}"
    );
}

/// A referral with no risks recorded is sent and the gap audited and counted for its
/// practice; with `missing_mandatory = "park"` it is parked naming the item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_with_no_risks_recorded_is_counted_and_parked_when_configured() {
    let h = Harness::start("prsb-gap", &[], &["1s"]).await;
    let id = unique("gap");
    h.publish(&id, &referral()).await;
    h.wait_state(&id, "delivered").await;
    let audit = h.wait_audit(&id, "incomplete").await;
    assert!(
        audit.entry.fields.contains(&"risks".to_string()),
        "{audit:?}"
    );
    let metrics = h.gw.metrics.render();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("clw_gateway_referral_missing_items_total{")
                && l.contains("practice=\"GP5\"")
                && l.contains("item=\"risks\"")
                && l.ends_with(" 1")
        ),
        "{metrics}"
    );
    // The webhook (v1) got the referral all the same.
    assert_eq!(h.hook.count(), 1);
    h.finish().await;

    let h = Harness::start_with("prsb-park", &[], &["1s"], |c| {
        c.referrals.missing_mandatory = clw_gateway::policy::prsb::MissingMandatory::Park;
    })
    .await;
    let id = unique("park");
    h.publish(&id, &referral()).await;
    let parked = h.wait_parked("referral", 1).await;
    assert_eq!(parked[0].message_id, id);
    let reason = format!("{:?}", parked[0]);
    assert!(reason.contains("risks"), "{reason}");
    assert_eq!(h.hook.count(), 0, "a parked referral is not sent");
    h.finish().await;
}

/// Safeguarding leaves only for a destination whose agreement names it: the rest of
/// the referral is sent, safeguarding is left out, and the audit says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safeguarding_is_withheld_from_a_destination_whose_agreement_does_not_list_it() {
    let allow = allow_with(&["risks"]);
    let h = Harness::start_configured("prsb-sg", &[], |s, hook| {
        s.broker_config_with(hook, &["1s"], "mapping = \"prsb-referral-v2\"\n", &allow)
    })
    .await;
    let id = unique("sg");
    h.publish(&id, &prsb_bundle()).await;
    h.wait_state(&id, "delivered").await;
    let got = &h.hook.received()[0].body;
    assert!(got["referral"].get("risks").is_some(), "{got}");
    assert!(got["referral"].get("safeguarding").is_none(), "{got}");
    assert!(
        got["referral"]["person_demographics"]
            .get("nhs_number")
            .is_some(),
        "the rest is sent"
    );
    let audit = h.wait_audit(&id, "filtered").await;
    assert_eq!(audit.entry.fields, vec!["safeguarding".to_string()]);
    assert_eq!(audit.entry.destination.as_deref(), Some("clw"));
    h.finish().await;
}

/// Gender is sent as recorded; a sex recorded at birth that differs, or a gender
/// identity, goes only to a destination whose agreement names `gender_history`.
#[test]
fn gender_history_goes_only_where_agreed() {
    let mut b = prsb_bundle();
    for e in b["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "Patient" {
            let p = &mut e["resource"];
            p["gender"] = json!("female");
            p["extension"].as_array_mut().unwrap().extend([
                json!({"url": "http://hl7.org/fhir/StructureDefinition/patient-genderIdentity",
                       "valueCodeableConcept": {"text": "transgender woman"}}),
                json!({"url": "https://fhir.example.nhs.uk/StructureDefinition/birthSex",
                       "valueCode": "M"}),
            ]);
        }
    }
    let r = decode(&b);
    let history = r.gender_history.as_ref().expect("gender history");
    assert_eq!(
        history
            .sex_recorded_at_birth
            .as_ref()
            .unwrap()
            .code
            .as_deref(),
        Some("M")
    );
    let canonical = serde_json::to_value(&r).unwrap();
    let not_agreed = build_destination("a", &v2_hook(&allow_with(&["risks"])));
    let rendered = not_agreed.render(&canonical, "m").unwrap();
    let out = &rendered.main().document;
    assert_eq!(out["referral"]["person_demographics"]["gender"], "female");
    assert!(out["referral"].get("gender_history").is_none(), "{out}");
    assert_eq!(
        not_agreed.withholds(&canonical),
        vec!["safeguarding", "gender_history"]
    );
    let agreed = build_destination("b", &v2_hook(&allow_with(&["gender_history"])));
    let rendered = agreed.render(&canonical, "m").unwrap();
    let out = &rendered.main().document;
    assert!(out["referral"].get("gender_history").is_some(), "{out}");
    // A birth sex the same as the gender discloses nothing and is not carried.
    let mut same = prsb_bundle();
    for e in same["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "Patient" {
            e["resource"]["extension"]
                .as_array_mut()
                .unwrap()
                .push(json!({
                "url": "https://fhir.example.nhs.uk/StructureDefinition/birthSex",
                "valueCode": "M"}));
        }
    }
    assert!(decode(&same).gender_history.is_none());
}

/// Under codes-only consent the new free text goes like the summary does: risk and
/// safeguarding words (marked as withheld where nothing coded is left), the return
/// address, adjustments given only in words.
#[test]
fn codes_only_consent_strips_the_new_free_text() {
    let mut r = decode(&prsb_bundle());
    r.consent.state = ConsentState::CodesOnly;
    let Release::CodesOnly(r) = apply_consent(r, ConsentState::Full) else {
        panic!("codes only");
    };
    let risk = &r.risks.as_ref().unwrap().entries[0];
    assert_eq!(risk.risk.code.as_deref(), Some("281694009"));
    assert_eq!(risk.risk.text, None);
    assert!(!risk.words_withheld, "its code still says what it is");
    assert!(r.safeguarding[0].concern.text.is_none());
    assert!(r.safeguarding[0].words_withheld);
    assert_eq!(r.referral_details.return_response_to, None);
    assert!(r.individual_requirements.is_none());
    let text = serde_json::to_string(&r).unwrap();
    for words in [
        "falls at home",
        "local authority",
        "large print\"",
        "care coordinator",
    ] {
        assert!(!text.contains(words), "{words} left in {text}");
    }
}
