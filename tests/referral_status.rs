//! A ServiceRequest whose status cancels a referral (`revoked`, `entered-in-error`) is
//! never delivered as a new referral: it is held for a person, naming the status and what
//! to do, while an active one in the same run is delivered as before.

mod common;

use common::*;
use serde_json::Value;

/// The example referral under `id`, its ServiceRequest's status set to `status`.
fn with_status(id: &str, status: &str) -> Value {
    let mut r = referral_with_id(id);
    for e in r["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "ServiceRequest" {
            e["resource"]["status"] = Value::String(status.to_string());
        }
    }
    r
}

#[tokio::test]
async fn a_cancelling_service_request_is_held_for_a_person_not_sent_as_a_new_referral() {
    let s = Setup::new("sr-status");
    let gw = clw_gateway::app::start(s.config("")).await.unwrap();
    let inbox = s.dir.path().join("spool/referrals/inbox");
    let ids = ["sr-revoked-1", "sr-eie-1", "sr-active-1"];
    for (id, status) in ids.iter().zip(["revoked", "entered-in-error", "active"]) {
        drop_file(&inbox, &format!("{id}.json"), &with_status(id, status));
    }
    wait_message(&gw.store, "referral", "sr-active-1", "delivered").await;
    let parked = eventually("both cancellations held", WAIT, || async {
        let rows = gw
            .store
            .parked(Some("referral"), Some("parked"), 100)
            .await
            .unwrap();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    for (id, status) in [
        ("sr-revoked-1", "revoked"),
        ("sr-eie-1", "entered-in-error"),
    ] {
        let p = parked.iter().find(|p| p.message_id == id).expect(id);
        assert_eq!(p.field.as_deref(), Some("referral_details.status"));
        assert!(
            p.reason.contains(&format!("status is {status}")),
            "{}",
            p.reason
        );
        assert!(p.reason.contains("nothing was sent"), "{}", p.reason);
        let deliveries = gw.store.deliveries("referral", id).await.unwrap();
        assert!(
            deliveries.iter().all(|d| d.state != "delivered"),
            "{id} reached no destination: {deliveries:?}"
        );
    }
    let outbox = s.dir.path().join("outbox/referrals");
    let sent: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(sent, ["sr-active-1.json"], "only the active referral");
    gw.stop().await.unwrap();
}
