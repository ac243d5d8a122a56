//! FHIR referral Bundles → canonical Referral, against golden files
//! (set UPDATE_GOLDEN=1 to rewrite them after an intended change).

mod common;

use clw_gateway::intake::decode_referral;
use clw_gateway::model::ConsentState;
use common::*;
use serde_json::{Value, json};

fn golden(name: &str, actual: &Value) {
    let path = repo_path(&format!("tests/fixtures/{name}"));
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    }
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(actual, &expected, "{name} differs from its golden file");
}

fn decode(v: &Value) -> clw_gateway::intake::DecodedReferral {
    decode_referral(v.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn message_bundle_golden() {
    let d = decode(&referral());
    assert_eq!(
        d.message_header_id.as_deref(),
        Some("5b2e6f8a-1c2d-4e3f-8a9b-0c1d2e3f4a5b")
    );
    assert_eq!(
        d.bundle_id.as_deref(),
        Some("b7c1d7a0-5c7e-4bb2-9c33-6f1c2b9b2a10")
    );
    golden(
        "referral-bundle.canonical.json",
        &serde_json::to_value(&d.referral).unwrap(),
    );
}

/// The same referral as a transaction Bundle of the UK Core corpus resources, linked by
/// their own relative references (`Patient/...`), with no MessageHeader.
#[test]
fn transaction_bundle_of_corpus_resources() {
    let corpus = |n: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(repo_path(&format!("tests/fixtures/uk-core/{n}"))).unwrap(),
        )
        .unwrap()
    };
    let patient = corpus("UKCore-Patient-RichardSmith-Example.json");
    let role = corpus("UKCore-PractitionerRole-GeneralPractitioner-Example.json");
    let pract = corpus("UKCore-Practitioner-DoctorPaulRastall-Example.json");
    let org = corpus("UKCore-Organization-WhiteRoseMedicalCentre-Example.json");
    let sr = json!({"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "871731000000106"}]},
        "subject": {"reference": "Patient/UKCore-Patient-RichardSmith-Example"},
        "requester": {"reference": "PractitionerRole/UKCore-PractitionerRole-GeneralPractitioner-Example"},
        "authoredOn": "2026-11-20"});
    let entry = |r: &Value| json!({"fullUrl": format!("https://fhir.example.nhs.uk/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()), "resource": r, "request": {"method": "POST", "url": r["resourceType"]}});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [entry(&sr), entry(&patient), entry(&role), entry(&pract), entry(&org)]});
    let d = decode(&bundle);
    let r = &d.referral;
    assert_eq!(
        r.person_demographics.nhs_number.as_deref(),
        Some("9912003888")
    );
    assert_eq!(
        r.referrer_details
            .as_ref()
            .unwrap()
            .name
            .as_ref()
            .unwrap()
            .family
            .as_deref(),
        Some("Rastall")
    );
    assert_eq!(
        r.gp_practice.as_ref().unwrap().ods_code.as_deref(),
        Some("GP5")
    );
    assert_eq!(r.consent.state, ConsentState::NotRecorded);
    assert_eq!(d.message_header_id, None);
}

#[test]
fn every_chi_system_is_accepted() {
    for system in clw_gateway::model::identifiers::CHI_SYSTEMS {
        let mut b = referral();
        b["entry"][2]["resource"]["identifier"] =
            json!([{"system": system, "value": "0402568877"}]);
        let d = decode(&b);
        assert_eq!(
            d.referral.person_demographics.chi_number.as_deref(),
            Some("0402568877"),
            "{system}"
        );
        assert_eq!(d.referral.person_demographics.nhs_number, None);
    }
}

#[test]
fn consent_states() {
    let mut b = referral();
    b["entry"][7]["resource"]["provision"]["provision"] =
        json!([{"type": "deny", "purpose": [{"code": "narrative"}]}]);
    assert_eq!(decode(&b).referral.consent.state, ConsentState::CodesOnly);
    b["entry"][7]["resource"]["status"] = json!("rejected");
    assert_eq!(decode(&b).referral.consent.state, ConsentState::Declined);
}

/// Consent fails closed: any deny declines, linked or not; a permit never outweighs a
/// deny; a Consent that cannot be tied to the patient stops the referral.
#[test]
fn every_consent_in_the_bundle_counts_and_a_deny_wins() {
    let base = referral();
    let consent = base["entry"][7]["resource"].clone();
    let with_extra = |extra: serde_json::Value| {
        let mut b = base.clone();
        b["entry"]
            .as_array_mut()
            .unwrap()
            .push(json!({"fullUrl": "urn:uuid:extra-consent", "resource": extra}));
        b
    };
    // A deny about nobody in particular, linked to nothing: declined all the same.
    let mut deny = consent.clone();
    deny["id"] = json!("other");
    deny["provision"] = json!({"type": "deny"});
    deny.as_object_mut().unwrap().remove("patient");
    let d = decode(&with_extra(deny.clone()));
    assert_eq!(d.referral.consent.state, ConsentState::Declined);
    // The same deny about this patient beside the linked permit: the deny wins.
    deny["patient"] = consent["patient"].clone();
    assert_eq!(
        decode(&with_extra(deny)).referral.consent.state,
        ConsentState::Declined
    );
    // A permit about another patient (a reference to nothing here): parked, named.
    let mut stray = consent.clone();
    stray["id"] = json!("stray");
    stray["patient"] = json!({"reference": "Patient/someone-else"});
    let e = decode_referral(with_extra(stray).to_string().as_bytes()).unwrap_err();
    assert!(!e.is_transient());
    assert_eq!(e.field.as_deref(), Some("Bundle.entry[8].resource"), "{e}");
    assert!(
        e.message
            .contains("cannot be tied to the referral's patient"),
        "{e}"
    );
    // Tied by the patient's NHS number instead of a reference: counts as this patient's.
    let mut by_number = consent.clone();
    by_number["id"] = json!("by-number");
    by_number["patient"] = json!({"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9912003888"}});
    assert_eq!(
        decode(&with_extra(by_number)).referral.consent.state,
        ConsentState::Full
    );
}

#[test]
fn errors_name_the_fhir_path() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Mutation, &str, &str)> = vec![
        (
            Box::new(|b| b["type"] = json!("document")),
            "Bundle.type",
            "message, transaction or collection",
        ),
        (
            Box::new(|b| b["entry"][0]["resource"]["resourceType"] = json!("Patient")),
            "Bundle.entry[0].resource",
            "MessageHeader",
        ),
        (
            Box::new(|b| b["entry"][2]["resource"]["identifier"] = json!([])),
            "Bundle.entry[2].resource.identifier",
            "NHS number",
        ),
        (
            Box::new(|b| b["entry"][2]["resource"]["birthDate"] = json!("11/09/1970")),
            "Bundle.entry[2].resource.birthDate",
            "FHIR date",
        ),
        (
            Box::new(|b| {
                b["entry"][2]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("birthDate");
            }),
            "Bundle.entry[2].resource.birthDate",
            "required",
        ),
        (
            Box::new(|b| b["entry"][2]["resource"]["gender"] = json!("M")),
            "Bundle.entry[2].resource.gender",
            "male, female",
        ),
        (
            Box::new(|b| b["entry"][1]["resource"]["authoredOn"] = json!("2026-11-20 10:15")),
            "Bundle.entry[1].resource.authoredOn",
            "dateTime",
        ),
        (
            Box::new(|b| {
                b["entry"][1]["resource"]["requester"]["reference"] =
                    json!("PractitionerRole/missing")
            }),
            "Bundle.entry[1].resource.requester.reference",
            "does not resolve",
        ),
        (
            Box::new(|b| {
                b["entry"][1]["resource"]["subject"]["reference"] =
                    json!("urn:uuid:0d0b5e8c-6a38-4d4b-9f55-2b6b1f6f0a05")
            }),
            "Bundle.entry[1].resource.subject",
            "must reference a Patient",
        ),
        (
            Box::new(|b| b["entry"][2]["resource"]["identifier"][0]["value"] = json!("1000000010")),
            "Bundle.entry[2].resource.identifier[0].value",
            "modulus-11",
        ),
        (
            Box::new(|b| {
                b["entry"][1]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("status");
            }),
            "Bundle.entry[1].resource.status",
            "required",
        ),
        (
            Box::new(|b| b["entry"][2]["resource"]["name"] = json!("SMITH")),
            "Bundle.entry[2].resource.name",
            "array",
        ),
    ];
    for (mutate, field, words) in cases {
        let mut b = referral();
        mutate(&mut b);
        let e = decode_referral(b.to_string().as_bytes()).expect_err(field);
        assert_eq!(e.field.as_deref(), Some(field), "{e}");
        assert!(
            e.message.contains(words),
            "{field}: {:?} should mention {words:?}",
            e.message
        );
        assert!(
            !e.reason().contains("9912003888") && !e.reason().contains("1970"),
            "no patient values in {e}"
        );
    }
}

#[test]
fn never_panics_on_odd_json() {
    for body in [
        "null",
        "[]",
        "42",
        "\"Bundle\"",
        "{}",
        "{\"resourceType\":\"Bundle\"}",
        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":{}}",
        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[null, 1, {\"resource\": 3}]}",
    ] {
        assert!(decode_referral(body.as_bytes()).is_err(), "{body}");
    }
}
