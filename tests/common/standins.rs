//! Stand-ins for the SaaS platforms the gateway cannot run here (Lamplight, Charitylog):
//! each checks every request as the platform documents it (paths, methods, credentials,
//! encoding, field names and formats) and answers as it documents. Lamplight:
//! github.com/mattparker/lamplight-phpclient docs (index, profiles, referral, errors).
//! Charitylog: wiki.dizions.co.uk "API external referrals", "API Authentication".

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

pub type Form = Vec<(String, String)>;

pub fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What a stand-in accepted and what it refused, for the test to inspect.
#[derive(Default)]
pub struct Log {
    pub accepted: Vec<(String, Form)>,
    pub refused: Vec<String>,
    /// Status codes to answer referral/add with before accepting (e.g. 503).
    pub script: Vec<u16>,
    /// Lamplight profile searches made ("field=value").
    pub searches: Vec<String>,
    /// The Org key Charitylog accepts (default ORG): a key rotated on its side.
    pub org_key: Option<String>,
    /// How long Lamplight takes to answer.
    pub delay: std::time::Duration,
    /// Lamplight makes each referral, then never answers.
    pub stall_referrals: bool,
    /// Referrals made whose answer never went back.
    pub stalled: usize,
}

pub type Shared = Arc<Mutex<Log>>;

pub fn form_of(headers: &HeaderMap, body: &Bytes) -> Result<Form, String> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct != "application/x-www-form-urlencoded" {
        return Err(format!("content-type {ct:?}"));
    }
    serde_urlencoded::from_bytes(body).map_err(|e| format!("body is not form-encoded: {e}"))
}

// ------------------------------------------------------------------ Lamplight

pub const LAMPID: &str = "L42";
pub const PROJECT: &str = "1";
pub const KEY: &str = "lamplight-test-key";

pub fn lamplight_error(code: u32, msg: &str) -> (StatusCode, String) {
    (
        StatusCode::OK,
        json!({"error": code, "msg": msg}).to_string(),
    )
}

/// Lamplight's datain API as documented; slow when `delay` is set, and with
/// `stall_referrals` it makes each referral and then never answers (a lost answer).
pub async fn lamplight(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let delay = shared.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let is_referral = uri.path() == "/api/referral/add/";
    let answer = lamplight_answer(&mut shared.lock().unwrap(), method, uri, headers, body);
    if is_referral && answer.0 == StatusCode::OK && shared.lock().unwrap().stall_referrals {
        shared.lock().unwrap().stalled += 1;
        std::future::pending::<()>().await;
    }
    answer
}

pub fn lamplight_answer(
    log: &mut Log,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    let refuse = |log: &mut Log, why: String| {
        log.refused.push(format!("{path}: {why}"));
    };
    if method != Method::POST {
        refuse(log, format!("method {method}"));
        return lamplight_error(1050, "must be POSTed");
    }
    let form = match form_of(&headers, &body) {
        Ok(f) => f,
        Err(e) => {
            refuse(log, e);
            return lamplight_error(1056, "No valid data found to add/update");
        }
    };
    if (
        field(&form, "lampid"),
        field(&form, "project"),
        field(&form, "key"),
    ) != (Some(LAMPID), Some(PROJECT), Some(KEY))
    {
        refuse(log, "credentials".into());
        return (
            StatusCode::UNAUTHORIZED,
            json!({"error": 1, "msg": "Invalid credentials"}).to_string(),
        );
    }
    if form.iter().any(|(_, v)| v.contains('<') && v.contains('>')) {
        refuse(log, "html".into());
        return lamplight_error(9999, "Data provided may have been a malicious attack");
    }
    if let Some(query) = path.strip_prefix("/api/people/some/role/user/") {
        // Search by a published field: 'contains' match, as documented.
        let Some((name, value)) = query.split_once('/') else {
            refuse(log, "search path".into());
            return lamplight_error(1004, "Method not recognised");
        };
        let decode = |s: &str| -> String {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("x={s}")).unwrap()[0]
                .1
                .clone()
        };
        let (name, value) = (decode(name), decode(value));
        let stored = name.to_lowercase();
        let data: Vec<Value> = log
            .accepted
            .iter()
            .enumerate()
            .filter(|(_, (p, f))| {
                p.starts_with("/api/people/add") && field(f, &stored).is_some_and(|v| v.contains(&value))
            })
            .map(|(i, (_, f))| {
                json!({"id": 1001 + i, "surname": field(f, "surname"), name.clone(): field(f, &stored)})
            })
            .collect();
        log.searches.push(format!("{name}={value}"));
        let n = data.len();
        return (
            StatusCode::OK,
            json!({"data": data, "meta": {"numRecords": n, "totalRecords": n}}).to_string(),
        );
    }
    match path.as_str() {
        "/api/people/add/role/user" => {
            let postcode_ok = field(&form, "postcode").is_none_or(regex_lite_postcode);
            if field(&form, "surname").is_none_or(str::is_empty) || !postcode_ok {
                refuse(log, "profile data".into());
                return lamplight_error(1055, "Data provided to add/update profile was not valid");
            }
            log.accepted.push((path, form));
            let id = 1000 + log.accepted.len();
            (
                StatusCode::OK,
                json!({"data": {"id": id}, "meta": ""}).to_string(),
            )
        }
        "/api/referral/add/" => {
            if let Some(code) = (!log.script.is_empty()).then(|| log.script.remove(0)) {
                return (StatusCode::from_u16(code).unwrap(), String::new());
            }
            let attendee_known = field(&form, "attendee").is_some_and(|a| {
                log.accepted.iter().enumerate().any(|(i, (p, _))| {
                    p.starts_with("/api/people/add") && a == (1001 + i).to_string()
                })
            });
            let date_ok = field(&form, "date_from").is_some_and(|d| {
                d.len() == 10 && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()
            });
            let area_ok = field(&form, "workareaid").is_some_and(|w| w.parse::<u32>().is_ok());
            if !attendee_known {
                refuse(log, "attendee".into());
                return lamplight_error(
                    1024,
                    "The attendee could not be unambiguously identified in the database",
                );
            }
            if !date_ok || !area_ok || field(&form, "referral_reason").is_none() {
                refuse(log, "referral data".into());
                return lamplight_error(1040, "Referral data provided was not valid");
            }
            log.accepted.push((path, form));
            (
                StatusCode::OK,
                json!({"data": {"id": 123, "attend": true}, "meta": ""}).to_string(),
            )
        }
        other => {
            refuse(log, format!("unknown path {other}"));
            (StatusCode::NOT_FOUND, String::new())
        }
    }
}

/// Lamplight's documented postcode pattern: ^[A-Z]{1,2}[0-9R][0-9A-Z]? [0-9][ABD-HJLNP-UW-Z]{2}$
pub fn regex_lite_postcode(p: &str) -> bool {
    let Some((out, inward)) = p.split_once(' ') else {
        return false;
    };
    let o: Vec<char> = out.chars().collect();
    let letters = o.iter().take_while(|c| c.is_ascii_uppercase()).count();
    let rest = &o[letters..];
    let inward: Vec<char> = inward.chars().collect();
    (1..=2).contains(&letters)
        && !rest.is_empty()
        && rest.len() <= 2
        && (rest[0].is_ascii_digit() || rest[0] == 'R')
        && rest[1..]
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        && inward.len() == 3
        && inward[0].is_ascii_digit()
        && inward[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() && !"CIKMOV".contains(*c))
}

// ------------------------------------------------------------------ Charitylog

pub const SOURCE: &str = "src-key";
pub const ORG: &str = "org-key";
pub const USER: &str = "user-key";

pub async fn charitylog(
    State(log): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut log = log.lock().unwrap();
    let path = uri.path().to_string();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if method != Method::PUT || path != "/v2/external_referral" {
        log.refused.push(format!("{method} {path}"));
        return (StatusCode::NOT_FOUND, String::new());
    }
    let org = log.org_key.clone().unwrap_or_else(|| ORG.into());
    if (h("Source"), h("Org"), h("User")) != (Some(SOURCE.into()), Some(org), Some(USER.into())) {
        log.refused.push("keys".into());
        return (
            StatusCode::UNAUTHORIZED,
            json!({"error": "Unauthorised"}).to_string(),
        );
    }
    let form = match form_of(&headers, &body) {
        Ok(f) => f,
        Err(e) => {
            log.refused.push(e);
            return (StatusCode::BAD_REQUEST, String::new());
        }
    };
    let ok = field(&form, "org_type_id").is_some_and(|v| v.parse::<u32>().is_ok())
        && field(&form, "surname").is_some_and(|v| !v.is_empty());
    if !ok {
        log.refused.push("minimum fields".into());
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": "org_type_id and surname are required"}).to_string(),
        );
    }
    log.accepted.push((path, form));
    (
        StatusCode::OK,
        json!({"id": log.accepted.len()}).to_string(),
    )
}

pub async fn serve(
    handler: axum::routing::MethodRouter<Shared>,
    script: &[u16],
) -> (String, Shared) {
    let log: Shared = Arc::new(Mutex::new(Log {
        script: script.to_vec(),
        ..Default::default()
    }));
    let app = axum::Router::new()
        .fallback(handler)
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, log)
}

/// What the platform stand-ins' destinations in these tests may receive.
pub const LAMPLIGHT_ALLOW: &[&str] = &[
    "person_demographics",
    "referral_details",
    "gp_practice",
    "referrer_details.name",
];

/// A Lamplight destination's `[destinations.NAME]` keys.
pub fn lamplight_toml(url: &str, person_mapping: &str, matching: Option<(&str, &str)>) -> String {
    // SAFETY: a value no other test reads.
    unsafe { std::env::set_var("CLW_TEST_LAMPLIGHT_KEY", KEY) };
    let matching = matching
        .map(|(f, from)| {
            format!("match_field = {f:?}\nmatch_from = {from:?}\nmatch_value_in_url = true\n")
        })
        .unwrap_or_default();
    format!(
        "kind = \"lamplight\"\nbase_url = \"{url}/api\"\nlampid = {LAMPID:?}\nproject = {PROJECT:?}\n\
         key = {{ env = \"CLW_TEST_LAMPLIGHT_KEY\" }}\nperson_mapping = {person_mapping:?}\n{matching}\
         mapping = \"lamplight-referral\"\ntimeout = \"5s\"\nconnect_timeout = \"2s\"\n\
         agreement = \"DSA-LAMPLIGHT-1\"\nallow = {LAMPLIGHT_ALLOW:?}\n\
         constants = {{ referrer = \"1042\", workareaid = \"7\" }}\n"
    )
}
