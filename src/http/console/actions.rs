//! What an operator does to parked messages (replay, dismiss): each checked against
//! their role and programmes, and audited under their name.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::{operator, same_origin};
use super::pages::{forbidden, to_login};
use super::{Console, Shared, Who, form};
use crate::config::Role;
use crate::model::Flow;
use crate::sources::parking::{self, Selection};

/// Why the operator may not act (replay, dismiss), if they may not.
fn may_not_act(who: &Who) -> Option<Response> {
    match who.role {
        Role::Operator => None,
        Role::Viewer => Some(forbidden(
            "Your role is viewer: you can see parked messages, but only an operator can replay or dismiss them.",
        )),
    }
}

/// Whether a parked message is within the operator's programmes.
pub(super) async fn within(c: &Console, who: &Who, flow: &str, message_id: &str) -> bool {
    !who.scoped()
        || who.sees(
            c.store
                .programme_of(flow, message_id)
                .await
                .ok()
                .flatten()
                .as_deref(),
        )
}

/// Replays the parked messages chosen (their store keys), each audited under the operator.
pub(super) async fn replay(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(who) = operator(&c, &headers).await else {
        return to_login();
    };
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(r) = may_not_act(&who) {
        return r;
    }
    let keys: Vec<String> = form(&body)
        .into_iter()
        .filter(|(k, _)| k == "key")
        .map(|(_, v)| v)
        .collect();
    let (mut replayed, mut failed) = (Vec::new(), Vec::new());
    for key in &keys {
        let flow = match c.store.parked_row(key).await {
            Ok(Some(row)) if within(&c, &who, &row.flow, &row.message_id).await => {
                Flow::parse(&row.flow)
            }
            _ => None,
        };
        let Some(flow) = flow else {
            failed.push(format!("{key}: not found"));
            continue;
        };
        let done = async {
            let target = c.transport.replay_target(flow).await?;
            let r = parking::replay(&target, &c.store, flow, Selection::Key(key), &who.name).await;
            target.close().await;
            r
        }
        .await;
        match done {
            Ok(r) => {
                replayed.extend(r.ids);
                failed.extend(r.not_replayable);
            }
            Err(e) => failed.push(e.reason()),
        }
    }
    let mut msg = format!("Replayed {}: {}.", replayed.len(), replayed.join(", "));
    if !failed.is_empty() {
        msg.push_str(&format!(" Not replayed: {}.", failed.join("; ")));
    }
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("done", &msg)
        .finish();
    Redirect::to(&format!("/console?{q}")).into_response()
}

pub(super) async fn dismiss(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(who) = operator(&c, &headers).await else {
        return to_login();
    };
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(r) = may_not_act(&who) {
        return r;
    }
    let f = form(&body);
    let get = |k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
    };
    let (Some(key), Some(reason)) = (get("key"), get("reason").filter(|r| !r.is_empty())) else {
        return (StatusCode::BAD_REQUEST, "choose a message and say why").into_response();
    };
    let theirs = match c.store.parked_row(&key).await {
        Ok(Some(row)) => within(&c, &who, &row.flow, &row.message_id).await,
        _ => true,
    };
    if !theirs {
        return forbidden("That message is not of a programme you look after.");
    }
    let msg = match c.store.dismiss(&key, &who.name, &reason).await {
        Ok(true) => "Dismissed 1.".to_string(),
        Ok(false) => "Nothing dismissed: it was no longer parked.".to_string(),
        Err(e) => format!("Not dismissed: {}", e.reason()),
    };
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("done", &msg)
        .finish();
    Redirect::to(&format!("/console?{q}")).into_response()
}
