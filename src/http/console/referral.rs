//! One referral's page: its state, deliveries, timeline and audit, shown only to
//! operators whose programmes include it.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::actions::within;
use super::auth::operator;
use super::pages::{page, table, to_login, when};
use crate::model::Flow;
use crate::model::markup::escape as esc;

pub(super) async fn referral(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(who) = operator(&c, &headers).await else {
        return to_login();
    };
    if !within(&c, &who, Flow::Referral.as_str(), &id).await {
        return (
            StatusCode::NOT_FOUND,
            page("Not found", "<p>No referral with that id.</p>"),
        )
            .into_response();
    }
    let mut out = String::from("<p><a href=\"/console\">Back</a></p>");
    let message = match c.store.message(Flow::Referral.as_str(), &id).await {
        Ok(m) => m,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.reason()).into_response(),
    };
    let Some(m) = message else {
        return (
            StatusCode::NOT_FOUND,
            page("Not found", "<p>No referral with that id.</p>"),
        )
            .into_response();
    };
    let _ = write!(
        out,
        "<p>Referral <b>{}</b>: <b id=\"state\">{}</b> after {} attempt(s); received {}, updated {}.</p>",
        esc(&m.message_id),
        esc(&m.state),
        m.attempts,
        when(m.received_at),
        when(m.updated_at)
    );
    if let Some(e) = &m.last_error {
        let _ = write!(out, "<p class=\"warn\">{}</p>", esc(e));
    }
    let deliveries: Vec<Vec<String>> = c
        .store
        .deliveries(&m.flow, &m.message_id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            vec![
                esc(&d.destination),
                esc(&d.state),
                d.attempts.to_string(),
                d.delivered_at.map(when).unwrap_or_default(),
                esc(d.last_error.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    out.push_str("<h2>Deliveries</h2>");
    table(
        &mut out,
        &[
            "destination",
            "state",
            "attempts",
            "delivered",
            "last error",
        ],
        &deliveries,
    );
    if let Ok(Some(t)) = crate::store::timeline::referral_timeline(&c.store, &m.message_id).await {
        let s = |v: &serde_json::Value| esc(v.as_str().unwrap_or_default());
        let _ = write!(
            out,
            "<h2>Timeline</h2><p>Programme {}, practice {}: {} ({} contacts, {} scores, {} onward referrals). Sent {}.</p>",
            s(&t["programme"]),
            s(&t["practice"]),
            s(&t["state"]),
            t["counts"]["contacts"],
            t["counts"]["scores"],
            t["counts"]["onward_referrals"],
            s(&t["sent_at"])
        );
        let rows: Vec<Vec<String>> = t["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                vec![
                    s(&e["occurred_at"]),
                    s(&e["kind"]),
                    s(&e["detail"]),
                    s(&e["state"]),
                    esc(&crate::store::timeline::written_to(e).join(", ")),
                ]
            })
            .collect();
        table(
            &mut out,
            &["occurred", "event", "detail", "state", "written to"],
            &rows,
        );
        if let Some(e) = t["ended"].as_object() {
            let _ = write!(
                out,
                "<p><strong>Ended: {}</strong> at {} by {}: {}</p>",
                s(&e["state"]),
                s(&e["at"]),
                s(&e["by_message"]),
                s(&e["reason"])
            );
        }
        // Every message about the referral: its versions, and the gateway's reminders
        // (a reminder no destination could carry reads "nothing sent" here).
        let join = |v: &serde_json::Value| {
            esc(&v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", "))
        };
        let versions: Vec<Vec<String>> = t["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                vec![
                    s(&v["at"]),
                    s(&v["change"]),
                    s(&v["message_id"]),
                    join(&v["fields"]),
                    s(&v["state"]),
                    match join(&v["sent"]) {
                        sent if sent.is_empty() => "nothing sent".into(),
                        sent => sent,
                    },
                ]
            })
            .collect();
        if !versions.is_empty() {
            out.push_str("<h2>Versions and reminders</h2>");
            table(
                &mut out,
                &[
                    "at",
                    "change",
                    "message",
                    "fields changed",
                    "state",
                    "sent to",
                ],
                &versions,
            );
        }
    }
    let audit: Vec<Vec<String>> = c
        .store
        .audit(&m.flow, &m.message_id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            vec![
                when(a.at),
                esc(&a.entry.actor),
                esc(a.entry.action.as_str()),
                esc(a.entry.destination.as_deref().unwrap_or("")),
                esc(a.entry.detail.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    out.push_str("<h2>Audit</h2>");
    table(
        &mut out,
        &["at", "who", "what", "destination", "detail"],
        &audit,
    );
    page("Referral", &out)
}
