//! The operator console: server-rendered pages on the admin listener (`/console`), off
//! unless `[console] enabled`, and then only for the operators it names. Each signs in as
//! themselves (name and secret; failures throttled per name and per client), and gets a
//! random session id in an HttpOnly, SameSite=Strict cookie (Secure whenever the console
//! is served beyond this machine) that expires, and that signing out ends on every
//! instance (sessions are kept in the store, by digest). Scripts may send HTTP Basic
//! credentials; a trusted reverse proxy may name the operator in a header instead
//! (opt-in). A `viewer` sees; an `operator` also replays and dismisses; an operator
//! scoped to programmes sees and acts on those programmes' messages only. It shows counts
//! per state and per programme / practice, the parked messages with stage, class, field
//! and reason (never patient values), destinations paused by the circuit breaker and a
//! referral's timeline; every replay and dismissal is audited under the operator's name.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Role;
use crate::deliver::Destination;
use crate::model::Flow;
use crate::model::markup::escape as esc;
use crate::sources::Transport;
use crate::sources::parking::{self, Selection};
use crate::store::{PARKED, Store};
use crate::wiring::ConsoleWiring;

const SESSION: &str = "clw_console";

pub struct Console {
    /// Where replayed messages go back in.
    transport: Transport,
    store: Store,
    access: ConsoleWiring,
    destinations: Vec<Arc<Destination>>,
    /// Failed sign-ins by "name:<operator>" and "addr:<client>": how many, since when.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Console {
    pub fn new(
        store: Store,
        access: ConsoleWiring,
        destinations: Vec<Arc<Destination>>,
        transport: Transport,
    ) -> Console {
        Console {
            transport,
            store,
            access,
            destinations,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether sign-ins for any of `keys` are refused for now (too many failures).
    fn locked(&self, keys: &[String]) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let lockout = self.access.lockout;
        f.retain(|_, (_, since)| since.elapsed() < lockout);
        // Behind a proxy every operator shares its address: that count has more room.
        let limit = |k: &str| {
            let n = self.access.max_failed_logins;
            if k.starts_with("addr:") {
                n.saturating_mul(4)
            } else {
                n
            }
        };
        keys.iter()
            .any(|k| f.get(k).is_some_and(|(n, _)| *n >= limit(k)))
    }

    fn failed(&self, keys: &[String]) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            let e = f.entry(k.clone()).or_insert((0, Instant::now()));
            e.0 += 1;
        }
    }

    fn succeeded(&self, keys: &[String]) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            f.remove(k);
        }
    }

    /// The operator named, if their secret is `secret`.
    fn check(&self, name: &str, secret: &str) -> Option<Who> {
        let o = self.access.operators.get(name)?;
        let expected = o.secret.as_deref()?;
        same(secret, expected).then(|| Who::of(o))
    }

    /// A digest of the operator's current secret (empty without one), kept with each
    /// session.
    fn fingerprint(&self, name: &str) -> String {
        self.access
            .operators
            .get(name)
            .and_then(|o| o.secret.as_deref())
            .map(|s| digest(&format!("clw-console-secret:{s}")))
            .unwrap_or_default()
    }

    fn who(&self, name: &str) -> Option<Who> {
        self.access.operators.get(name).map(Who::of)
    }
}

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Who {
    pub name: String,
    pub role: Role,
    programmes: Option<std::collections::BTreeSet<String>>,
}

impl Who {
    fn of(o: &crate::wiring::Operator) -> Who {
        Who {
            name: o.name.clone(),
            role: o.role,
            programmes: o.programmes.clone(),
        }
    }

    /// Whether a message of `programme` (None: not known) is theirs to see.
    fn sees(&self, programme: Option<&str>) -> bool {
        match &self.programmes {
            None => true,
            // Unknown belongs to no programme: hidden from scoped operators.
            Some(p) => programme.is_some_and(|x| p.contains(x)),
        }
    }

    fn scoped(&self) -> bool {
        self.programmes.is_some()
    }
}

type Shared = Arc<Console>;

pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/console", get(home))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/replay", post(replay))
        .route("/console/dismiss", post(dismiss))
        .route("/console/referral/{id}", get(referral))
        .with_state(console)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn digest(session: &str) -> String {
    hex::encode(Sha256::digest(session.as_bytes()))
}

/// The operator: named by the trusted proxy header (when configured), by a session
/// the store still holds, or by HTTP Basic credentials.
async fn operator(c: &Console, headers: &HeaderMap) -> Option<Who> {
    if let Some(h) = &c.access.trusted_user_header {
        let named = headers.get(h.as_str()).and_then(|v| v.to_str().ok());
        if let Some(name) = named {
            return c.who(name.trim());
        }
    }
    if let Some(s) = cookie(headers, SESSION) {
        let session = c.store.session_operator(&digest(s)).await.ok().flatten();
        // Held only while the operator is configured with the secret they signed in
        // with: removing them, or changing it, ends their sessions.
        if let Some((name, signed_with)) = session
            && same(&c.fingerprint(&name), &signed_with)
            && let Some(who) = c.who(&name)
        {
            return Some(who);
        }
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())?;
    let (name, secret) = basic.split_once(':')?;
    let keys = [format!("name:{name}")];
    if c.locked(&keys) {
        return None;
    }
    let who = c.check(name, secret);
    if who.is_none() {
        c.failed(&keys);
    }
    who
}

/// A form POST from another site is refused: the browser says where it came from.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser cross-site request (those carry Origin)
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn page(title: &str, body: &str) -> Response {
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

fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
}

async fn login_form() -> Response {
    page(
        "Sign in",
        "<form method=\"post\" action=\"/console/login\">\
         <p><label>Operator <input name=\"operator\" id=\"operator\" required maxlength=\"64\" autocomplete=\"username\"></label></p>\
         <p><label>Secret <input name=\"secret\" id=\"secret\" type=\"password\" required autocomplete=\"current-password\"></label></p>\
         <p><button type=\"submit\" id=\"sign-in\">Sign in</button></p></form>",
    )
}

async fn login(
    State(c): State<Shared>,
    peer: Option<axum::Extension<crate::sources::listener::Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let f = form(&body);
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(secret), Some(name)) = (get("secret"), get("operator").map(str::trim)) else {
        return (StatusCode::BAD_REQUEST, "name and secret are needed").into_response();
    };
    let mut keys = vec![format!("name:{name}")];
    if let Some(axum::Extension(p)) = peer {
        keys.push(format!("addr:{}", p.0.ip()));
    }
    if c.locked(&keys) {
        let minutes = c.access.lockout.as_secs().div_ceil(60);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            page(
                "Sign in",
                &format!("<p class=\"warn\" id=\"locked\">Too many failed sign-ins: try again in {minutes} minutes.</p>"),
            ),
        )
            .into_response();
    }
    let Some(who) = c.check(name, secret) else {
        c.failed(&keys);
        return (
            StatusCode::UNAUTHORIZED,
            page("Sign in", "<p class=\"warn\">That operator and secret do not match.</p><p><a href=\"/console/login\">Try again</a></p>"),
        )
            .into_response();
    };
    c.succeeded(&keys);
    let session = hex::encode(crate::secret::seal::new_key());
    let ttl = c.access.session_ttl;
    let until = crate::store::now_ms() + ttl.as_millis() as i64;
    if let Err(e) = c
        .store
        .session_start(
            &digest(&session),
            &who.name,
            &c.fingerprint(&who.name),
            until,
        )
        .await
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store did not answer: {}", e.reason()),
        )
            .into_response();
    }
    let mut r = Redirect::to("/console").into_response();
    let secure = if c.access.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let v = format!(
        "{SESSION}={session}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        ttl.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Ends the session in the store (so no copy of the cookie works anywhere) and clears
/// the cookie.
async fn logout(State(c): State<Shared>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(s) = cookie(&headers, SESSION) {
        let _ = c.store.session_end(&digest(s)).await;
    }
    let mut r = Redirect::to("/console/login").into_response();
    let secure = if c.access.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// A viewer, or a message outside the operator's programmes: refused.
fn forbidden(why: &str) -> Response {
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

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
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

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

async fn home(State(c): State<Shared>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
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
        "<p>Signed in as <b id=\"operator\">{}</b> (<span id=\"role\">{role}</span>, {}). <form class=\"inline\" method=\"post\" action=\"/console/logout\"><button id=\"sign-out\">Sign out</button></form></p>",
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
async fn within(c: &Console, who: &Who, flow: &str, message_id: &str) -> bool {
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
async fn replay(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
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

async fn dismiss(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
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

async fn referral(State(c): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
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
