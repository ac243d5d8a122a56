//! What the store knows of a referral's life, as one document: read by `status` and by
//! the console alike.

use serde_json::json;

use super::Store;
use crate::error::Result;

/// A referral's life after it was sent: its state, counts, and each event with what
/// was written where. None when the store keeps no referral record for it.
/// A referral's story for `status` and the console: where it went, each event back and
/// what each record writer did.
pub async fn referral_timeline(store: &Store, id: &str) -> Result<Option<serde_json::Value>> {
    // Any version's id names the one referral.
    let Some(r) = store.referral(id).await? else {
        return Ok(None);
    };
    let id = r.message_id.as_str();
    let events = store.referral_events(id).await?;
    let count = |k: &str| events.iter().filter(|e| e.kind == k).count();
    let mut entries = Vec::new();
    for e in &events {
        let mut written = Vec::new();
        for d in store
            .deliveries("message-back", &e.event_message_id)
            .await?
        {
            let ack = store
                .ack_state("message-back", &e.event_message_id, &d.destination)
                .await?;
            written.push(
                json!({"destination": d.destination, "state": d.state, "acknowledgement": ack}),
            );
        }
        let state = store
            .message("message-back", &e.event_message_id)
            .await?
            .map(|m| m.state);
        entries.push(json!({
            "occurred_at": e.occurred_at, "kind": e.kind, "detail": e.detail,
            "event": e.event_message_id, "state": state, "written": written,
        }));
    }
    let mut versions = Vec::new();
    for v in store.versions(id).await? {
        let sent: Vec<String> = store
            .deliveries("referral", &v.message_id)
            .await?
            .iter()
            .map(|d| format!("{}: {}", d.destination, d.state))
            .collect();
        let state = store
            .message("referral", &v.message_id)
            .await?
            .map(|m| m.state);
        versions.push(json!({
            "message_id": v.message_id, "change": v.change.as_str(), "fields": v.fields,
            "at": ms(v.created_at), "state": state, "sent": sent,
        }));
    }
    Ok(Some(json!({
        "referral_id": r.message_id,
        "programme": r.programme,
        "practice": r.practice,
        "sent_at": ms(r.created_at),
        // The practice's or the gateway's ending stands over the platform's progress.
        "state": r.ended.as_ref().map_or(super::derived_state(&events), |e| e.state.as_str()),
        "ended": r.ended.as_ref().map(|e| json!({
            "state": e.state.as_str(), "reason": e.reason, "by_message": e.by_message, "at": ms(e.at),
        })),
        "versions": versions,
        "counts": {
            "contacts": count("contact"),
            "scores": count("assessment"),
            "onward_referrals": count("onward-referral"),
        },
        "timeline": entries,
    })))
}

/// "destination: state" for each writer a timeline entry went to, with what the
/// practice acknowledged where the writer has acknowledgements ("delivered, filed (…)").
pub fn written_to(entry: &serde_json::Value) -> Vec<String> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    entry["written"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| match w["acknowledgement"].as_str() {
            Some(ack) => format!("{}: {}, {ack}", s(&w["destination"]), s(&w["state"])),
            None => format!("{}: {}", s(&w["destination"]), s(&w["state"])),
        })
        .collect()
}

/// A time in the store (Unix milliseconds) as RFC 3339.
pub fn ms(t: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
