//! The console's pages as HTML: the shared layout (headers that keep them uncached and
//! unframed), small table helpers, and the home page with its counts and parked list.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::auth::operator;
use super::{Console, Shared, Who};
use crate::config::Role;
use crate::model::Flow;
use crate::model::markup::escape as esc;
use crate::store::PARKED;

pub(super) fn page(title: &str, body: &str) -> Response {
    let mut r = Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t} · clw-gateway</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d1d1d}}\
         table{{border-collapse:collapse;margin:.5rem 0 1.5rem}}\
         th,td{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}}\
         th{{background:#f2f2f2}} .note{{background:#eef6ee;padding:.5rem;border:1px solid #9c9}}\
         .warn{{background:#fdf1e7;padding:.5rem;border:1px solid #e3a36b}} form.inline{{display:inline}}\
         </style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
    .into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}

pub(super) fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
}

/// A viewer, or a message outside the operator's programmes: refused.
/// A self-contained document (the dataset report, the IG pack) as the console serves it:
/// never cached, never framed, and nothing it could load — no script, no request.
pub(super) fn self_contained(html: String) -> Response {
    let mut r = Html(html).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}

pub(super) fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        page(
            "Not allowed",
            &format!(
                "<p class=\"warn\" id=\"forbidden\">{}</p><p><a href=\"/console\">Back</a></p>",
                esc(why)
            ),
        ),
    )
        .into_response()
}

pub(super) fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for r in rows {
        out.push_str("<tr>");
        for cell in r {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

pub(super) fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

pub(super) async fn home(
    State(c): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let q: BTreeMap<String, String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let Some(who) = operator(&c, &headers).await else {
        return to_login();
    };
    match render_home(&c, &who, &q).await {
        Ok(html) => page("clw-gateway console", &html),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store did not answer: {e}"),
        )
            .into_response(),
    }
}

async fn render_home(
    c: &Console,
    who: &Who,
    q: &BTreeMap<String, String>,
) -> crate::error::Result<String> {
    let mut out = String::new();
    let role = match who.role {
        Role::Viewer => "viewer",
        Role::Operator => "operator",
    };
    let scope = match &who.programmes {
        None => "every programme".to_string(),
        Some(p) => format!(
            "programmes {}",
            p.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    let _ = write!(
        out,
        "<p>Signed in as <b id=\"operator\">{}</b> (<span id=\"role\">{role}</span>, {}). <form class=\"inline\" method=\"post\" action=\"/console/logout\"><button id=\"sign-out\">Sign out</button></form> · <a href=\"/console/report\">Programme dataset report</a> · <a href=\"/console/ig\">IG pack</a></p>",
        esc(&who.name),
        esc(&scope)
    );
    if let Some(msg) = q.get("done") {
        let _ = write!(out, "<p class=\"note\" id=\"done\">{}</p>", esc(msg));
    }

    out.push_str("<h2>Destinations paused</h2>");
    let paused: Vec<Vec<String>> = c
        .destinations
        .iter()
        .filter_map(|d| {
            d.breaker
                .paused()
                .map(|(since, reason)| vec![esc(&d.name), esc(&since), esc(&reason)])
        })
        .collect();
    if paused.is_empty() {
        out.push_str("<p id=\"paused\">None: every destination is taking messages.</p>");
    } else {
        table(&mut out, &["destination", "paused since", "why"], &paused);
    }

    // Counts across every programme: for operators of every programme only.
    if !who.scoped() {
        out.push_str("<h2>Messages by state</h2>");
        let mut rows = Vec::new();
        for flow in crate::flows::FLOWS.iter().map(|r| r.flow) {
            for (state, n) in c.store.count_by_state(flow.as_str()).await? {
                rows.push(vec![esc(flow.as_str()), esc(&state), n.to_string()]);
            }
        }
        table(&mut out, &["flow", "state", "messages"], &rows);
        // Belongs to no programme: what an inbox held that the gateway could not act on.
        out.push_str("<h2>Inbox messages kept for a person</h2>");
        let kept: Vec<Vec<String>> = c
            .store
            .inbox_kept(50)
            .await?
            .iter()
            .map(|k| {
                vec![
                    esc(&k.destination),
                    esc(&k.inbox_id),
                    esc(k.workflow.as_deref().unwrap_or("-")),
                    esc(&crate::store::timeline::ms(k.kept_at)),
                    esc(&k.reason),
                ]
            })
            .collect();
        if kept.is_empty() {
            out.push_str("<p id=\"kept\">None.</p>");
        } else {
            table(
                &mut out,
                &["destination", "inbox id", "workflow", "kept", "why"],
                &kept,
            );
        }
    }

    out.push_str("<h2>Referrals by programme and practice</h2>");
    let rows: Vec<Vec<String>> = c
        .store
        .referral_counts()
        .await?
        .into_iter()
        .filter(|(programme, ..)| who.sees(Some(programme)))
        .map(|(programme, practice, state, n)| {
            vec![esc(&programme), esc(&practice), esc(&state), n.to_string()]
        })
        .collect();
    table(
        &mut out,
        &["programme", "practice", "state", "referrals"],
        &rows,
    );

    let mut parked = Vec::new();
    for p in c.store.parked(None, Some(PARKED), 500).await? {
        if !who.scoped()
            || who.sees(
                c.store
                    .programme_of(&p.flow, &p.message_id)
                    .await?
                    .as_deref(),
            )
        {
            parked.push(p);
        }
    }
    let _ = write!(out, "<h2>Parked messages ({})</h2>", parked.len());
    if parked.is_empty() {
        out.push_str("<p id=\"no-parked\">Nothing is parked.</p>");
    } else {
        out.push_str("<form method=\"post\" action=\"/console/replay\" id=\"replay-form\">");
        let rows: Vec<Vec<String>> = parked
            .iter()
            .map(|p| {
                let id = esc(&p.message_id);
                let link = if p.flow == Flow::Referral.as_str() {
                    format!(
                        "<a href=\"/console/referral/{}\">{id}</a>",
                        esc(&form_urlencoded::byte_serialize(p.message_id.as_bytes()).collect::<String>())
                    )
                } else {
                    id
                };
                vec![
                    format!(
                        "<input type=\"checkbox\" name=\"key\" value=\"{}\" aria-label=\"select {}\">",
                        esc(&p.key),
                        esc(&p.message_id)
                    ),
                    esc(&p.flow),
                    link,
                    esc(&p.stage),
                    esc(&p.error_class),
                    esc(p.field.as_deref().unwrap_or("")),
                    esc(&p.reason),
                    p.attempts.to_string(),
                    when(p.parked_at),
                    format!(
                        "<button name=\"key\" value=\"{}\" class=\"replay-one\" data-message=\"{}\">Replay</button>",
                        esc(&p.key),
                        esc(&p.message_id)
                    ),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "", "flow", "message", "stage", "class", "field", "reason", "attempts", "parked",
                "",
            ],
            &rows,
        );
        out.push_str(
            "<p><button type=\"submit\" id=\"replay-selected\">Replay selected</button></p></form>",
        );
        out.push_str(
            "<form method=\"post\" action=\"/console/dismiss\"><p>Dismiss (never replay) \
             <select name=\"key\">",
        );
        for p in &parked {
            let _ = write!(
                out,
                "<option value=\"{}\">{} ({})</option>",
                esc(&p.key),
                esc(&p.message_id),
                esc(&p.stage)
            );
        }
        out.push_str(
            "</select> because <input name=\"reason\" required maxlength=\"200\"> \
             <button>Dismiss</button></p></form>",
        );
    }
    out.push_str(
        "<h2>A referral's timeline</h2><form method=\"get\" action=\"/console/referral/\" \
         onsubmit=\"return false\"><p>Open <code>/console/referral/&lt;message id&gt;</code>, \
         or follow a parked referral's link.</p></form>",
    );
    Ok(out)
}
