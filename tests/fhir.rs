//! The FHIR destination against a real FHIR R4 engine (Medplum's, in memory, in
//! tests/fhir-server) that validates every write with @medplum/core and FHIR.js; what
//! the gateway wrote is read back and checked again with FHIR.js on its own.

mod common;

use clw_gateway::deliver::Destination;
use common::*;
use serde_json::{Value, json};

const SYSTEM: &str = "https://clw-gateway.org/Id/referral";

async fn send(
    dest: &Destination,
    id: &str,
    payload: &Value,
) -> Result<clw_gateway::deliver::Sent, clw_gateway::error::GatewayError> {
    let (store, _db) = temp_store().await;
    send_payload(dest, &store, id, Vec::new(), payload.clone()).await
}

fn config(base: &str) -> String {
    format!(
        "kind = \"fhir\"\nbase_url = \"{base}\"\nmapping = \"fhir-servicerequest\"\n\
         identifier_system = \"{SYSTEM}\"\ntimeout = \"10s\"\nconnect_timeout = \"2s\"\n\
         agreement = \"DSA-FHIR-1\"\n\
         allow = [\"person_demographics.nhs_number\", \"person_demographics.chi_number\", \"referral_details\", \"referrer_details.name\", \"referred_to\"]\n\
         constants = {{ chi_system = \"https://fhir.nhs.uk/Id/chi-number\" }}\n"
    )
}

#[tokio::test]
async fn a_referral_becomes_a_valid_service_request_and_task_once() {
    let server = FhirServer::start().await;
    let h = Harness::start_with("fhir", &[], &["300ms"], |c| {
        c.mappings.dir = repo_path("mappings");
        c.destinations
            .insert("clw-fhir", destination(&config(&server.base)));
        c.referrals.destinations = vec!["clw-fhir".into()];
    })
    .await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    h.wait_state(&id, "delivered").await;

    let srs = server
        .search(&format!("ServiceRequest?identifier={SYSTEM}|{id}"))
        .await;
    let tasks = server
        .search(&format!("Task?identifier={SYSTEM}|{id}"))
        .await;
    assert_eq!((srs.len(), tasks.len()), (1, 1));
    let (sr, task) = (&srs[0], &tasks[0]);
    assert_eq!(sr["status"], "active");
    assert_eq!(sr["intent"], "order");
    assert_eq!(sr["code"]["coding"][0]["code"], "871731000000106");
    assert_eq!(sr["subject"]["identifier"]["value"], "9912003888");
    assert_eq!(sr["reasonCode"][0]["coding"][0]["code"], "422650009");
    assert_eq!(task["status"], "requested");
    assert_eq!(task["intent"], "order");
    assert_eq!(task["code"]["coding"][0]["code"], "fulfill");
    assert_eq!(
        task["focus"]["reference"],
        json!(format!("ServiceRequest/{}", sr["id"].as_str().unwrap()))
    );
    assert_eq!(task["for"], sr["subject"]);
    fhir_js_validate(&[sr.clone(), task.clone()]).unwrap();

    // Sending the same message again (a redelivery past the store, e.g. after a crash
    // between the write and its record) finds both instead of copying them.
    let dest = build_destination("clw-fhir", &config(&server.base));
    let mut payload = sr.clone();
    for k in ["id", "meta", "identifier"] {
        payload.as_object_mut().unwrap().remove(k);
    }
    send(&dest, &id, &payload).await.unwrap();
    let srs = server
        .search(&format!("ServiceRequest?identifier={SYSTEM}|{id}"))
        .await;
    let tasks = server
        .search(&format!("Task?identifier={SYSTEM}|{id}"))
        .await;
    assert_eq!((srs.len(), tasks.len()), (1, 1), "no copies on resend");
    h.finish().await;
}

#[tokio::test]
async fn an_invalid_resource_is_refused_by_the_server_as_a_permanent_error() {
    let server = FhirServer::start().await;
    let dest = build_destination("clw-fhir", &config(&server.base));
    let bad = json!({"resourceType": "ServiceRequest", "status": "not-a-status", "intent": "order",
        "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9912003888"}}});
    let err = send(&dest, "bad-1", &bad).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.message.contains("400"), "{err}");
    assert!(
        server.search("ServiceRequest").await.is_empty(),
        "nothing stored"
    );
    assert!(
        fhir_js_validate(&[bad])
            .unwrap_err()
            .contains("not-a-status")
    );
}
