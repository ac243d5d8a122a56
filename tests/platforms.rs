//! The Lamplight and Charitylog adapters against local stand-ins that check each
//! request as those platforms document it (paths, methods, credentials, encoding, field
//! names and formats) and answer as they document. Neither SaaS can run here.
//! Lamplight: github.com/mattparker/lamplight-phpclient docs (index, profiles, referral,
//! errors). Charitylog: wiki.dizions.co.uk "API external referrals", "API Authentication".

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use clw_gateway::config::{Config, DestinationConfig};
use common::*;
use serde_json::{Value, json};

type Form = Vec<(String, String)>;

fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What a stand-in accepted and what it refused, for the test to inspect.
#[derive(Default)]
struct Log {
    accepted: Vec<(String, Form)>,
    refused: Vec<String>,
    /// Status codes to answer referral/add with before accepting (e.g. 503).
    script: Vec<u16>,
    /// Lamplight profile searches made ("field=value").
    searches: Vec<String>,
    /// The Org key Charitylog accepts (default ORG): a key rotated on its side.
    org_key: Option<String>,
    /// How long Lamplight takes to answer.
    delay: std::time::Duration,
    /// Lamplight makes each referral, then never answers.
    stall_referrals: bool,
    /// Referrals made whose answer never went back.
    stalled: usize,
}

type Shared = Arc<Mutex<Log>>;

fn form_of(headers: &HeaderMap, body: &Bytes) -> Result<Form, String> {
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

const LAMPID: &str = "L42";
const PROJECT: &str = "1";
const KEY: &str = "lamplight-test-key";

fn lamplight_error(code: u32, msg: &str) -> (StatusCode, String) {
    (
        StatusCode::OK,
        json!({"error": code, "msg": msg}).to_string(),
    )
}

/// Lamplight's datain API as documented; slow when `delay` is set, and with
/// `stall_referrals` it makes each referral and then never answers (a lost answer).
async fn lamplight(
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

fn lamplight_answer(
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
fn regex_lite_postcode(p: &str) -> bool {
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

const SOURCE: &str = "src-key";
const ORG: &str = "org-key";
const USER: &str = "user-key";

async fn charitylog(
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

async fn serve(handler: axum::routing::MethodRouter<Shared>, script: &[u16]) -> (String, Shared) {
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

const ALLOW: &[&str] = &[
    "person_demographics",
    "referral_details",
    "gp_practice",
    "referrer_details.name",
];

fn only(c: &mut Config, name: &str, d: DestinationConfig) {
    c.mappings.dir = repo_path("mappings");
    c.destinations.insert(name, d);
    c.referrals.destinations = vec![name.into()];
}

#[tokio::test]
async fn lamplight_gets_one_profile_and_one_referral_even_when_referral_add_is_retried() {
    let (url, log) = serve(axum::routing::any(lamplight), &[503]).await;
    let h = Harness::start_with("lamplight", &[], &["200ms", "200ms"], |c| {
        only(
            c,
            "lamplight",
            lamplight_config(&url, "lamplight-person", None),
        )
    })
    .await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    let row = h.wait_state(&id, "delivered").await;
    assert_eq!(row.attempts, 2, "referral/add answered 503 once");

    {
        let log = log.lock().unwrap();
        assert!(log.refused.is_empty(), "{:?}", log.refused);
        let paths: Vec<&str> = log.accepted.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["/api/people/add/role/user", "/api/referral/add/"],
            "one profile, one referral"
        );
        let person = &log.accepted[0].1;
        assert_eq!(field(person, "surname"), Some("SMITH"));
        assert_eq!(field(person, "postcode"), Some("LS17 7DF"));
        let referral = &log.accepted[1].1;
        assert_eq!(field(referral, "attendee"), Some("1001"));
        assert_eq!(field(referral, "date_from"), Some("2026-11-20"));
        assert_eq!(field(referral, "workareaid"), Some("7"));
        assert_eq!(field(referral, "referrer"), Some("1042"));
        assert!(
            field(referral, "referral_reason")
                .unwrap()
                .starts_with("Social isolation")
        );
    }
    h.finish().await;
}

fn lamplight_config(
    url: &str,
    person_mapping: &str,
    matching: Option<(&str, &str)>,
) -> DestinationConfig {
    destination(&lamplight_toml(url, person_mapping, matching))
}

/// A Lamplight destination's `[destinations.NAME]` keys.
fn lamplight_toml(url: &str, person_mapping: &str, matching: Option<(&str, &str)>) -> String {
    // SAFETY: a value no other test reads.
    unsafe { std::env::set_var("CLW_TEST_LAMPLIGHT_KEY", KEY) };
    let matching = matching
        .map(|(f, from)| format!("match_field = {f:?}\nmatch_from = {from:?}\n"))
        .unwrap_or_default();
    format!(
        "kind = \"lamplight\"\nbase_url = \"{url}/api\"\nlampid = {LAMPID:?}\nproject = {PROJECT:?}\n\
         key = {{ env = \"CLW_TEST_LAMPLIGHT_KEY\" }}\nperson_mapping = {person_mapping:?}\n{matching}\
         mapping = \"lamplight-referral\"\ntimeout = \"5s\"\nconnect_timeout = \"2s\"\n\
         agreement = \"DSA-LAMPLIGHT-1\"\nallow = {ALLOW:?}\n\
         constants = {{ referrer = \"1042\", workareaid = \"7\" }}\n"
    )
}

/// With match_field set, a person Lamplight already has is found, not created again.
#[tokio::test]
async fn lamplight_finds_a_known_person_by_nhs_number_instead_of_creating_them_again() {
    let (url, log) = serve(axum::routing::any(lamplight), &[]).await;
    let h = Harness::start_with("lamplight-find", &[], &["200ms"], |c| {
        only(
            c,
            "lamplight",
            lamplight_config(
                &url,
                "lamplight-person-nhs",
                Some(("NHS_number", "nhs_number")),
            ),
        )
    })
    .await;
    let (first, second) = (unique("ref"), unique("ref"));
    h.publish(&first, &referral()).await;
    h.wait_state(&first, "delivered").await;
    h.publish(&second, &referral()).await;
    h.wait_state(&second, "delivered").await;
    {
        let log = log.lock().unwrap();
        assert!(log.refused.is_empty(), "{:?}", log.refused);
        let paths: Vec<&str> = log.accepted.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/api/people/add/role/user",
                "/api/referral/add/",
                "/api/referral/add/"
            ],
            "one profile for two referrals"
        );
        assert_eq!(field(&log.accepted[0].1, "nhs_number"), Some("9912003888"));
        assert_eq!(field(&log.accepted[2].1, "attendee"), Some("1001"));
        assert_eq!(
            log.searches,
            ["NHS_number=9912003888", "NHS_number=9912003888"]
        );
    }
    h.finish().await;
}

fn charitylog_config(url: &str, org_env: &str) -> DestinationConfig {
    destination(&format!(
        "kind = \"charitylog\"\nurl = \"{url}/v2/external_referral\"\n\
         source_key = {{ env = \"CLW_TEST_CL_SOURCE\" }}\norg_key = {{ env = {org_env:?} }}\n\
         user_key = {{ env = \"CLW_TEST_CL_USER\" }}\nmapping = \"charitylog-referral\"\n\
         timeout = \"5s\"\nconnect_timeout = \"2s\"\nagreement = \"DSA-CHARITYLOG-1\"\n\
         allow = {ALLOW:?}\nconstants = {{ org_type_id = \"3\", project = \"Community Links\" }}\n"
    ))
}

fn charitylog_keys() {
    // SAFETY: values no other test reads.
    unsafe {
        std::env::set_var("CLW_TEST_CL_SOURCE", SOURCE);
        std::env::set_var("CLW_TEST_CL_ORG", ORG);
        std::env::set_var("CLW_TEST_CL_ORG_WRONG", "not-the-org-key");
        std::env::set_var("CLW_TEST_CL_USER", USER);
    }
}

#[tokio::test]
async fn charitylog_gets_the_external_referral_form_with_its_three_keys() {
    let (url, log) = serve(axum::routing::any(charitylog), &[]).await;
    charitylog_keys();
    let h = Harness::start_with("charitylog", &[], &["200ms"], |c| {
        only(c, "charitylog", charitylog_config(&url, "CLW_TEST_CL_ORG"))
    })
    .await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    h.wait_state(&id, "delivered").await;
    {
        let log = log.lock().unwrap();
        assert!(log.refused.is_empty(), "{:?}", log.refused);
        assert_eq!(log.accepted.len(), 1);
        let form: Value = log.accepted[0]
            .1
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        assert_eq!(
            form,
            json!({
                "org_type_id": "3", "surname": "SMITH", "first_name": "Richard",
                "description": "Social isolation\nWhat matters to me: Would like to get back to gardening and meet people nearby.\nReferred by: Dr Paul Rastall\nPractice: WHITE ROSE MEDICAL CENTRE (GP5)",
                "date": "2026-11-20 10:15:00", "project": "Community Links", "source": "1"
            })
        );
    }
    h.finish().await;
}

/// A refused key (401) pauses the destination: its referrals wait, none is parked; a
/// probe goes out now and then, and once the platform accepts the key again every
/// waiting referral is delivered, once.
#[tokio::test]
async fn a_refused_charitylog_key_pauses_the_destination_until_a_probe_succeeds() {
    let (url, log) = serve(axum::routing::any(charitylog), &[]).await;
    charitylog_keys();
    let h = Harness::start_with("charitylog-401", &[], &["200ms", "200ms"], |c| {
        c.retry.probe_every = std::time::Duration::from_millis(300);
        only(
            c,
            "charitylog",
            charitylog_config(&url, "CLW_TEST_CL_ORG_WRONG"),
        )
    })
    .await;
    let (first, second) = (unique("ref"), unique("ref"));
    h.publish(&first, &referral()).await;
    eventually("the destination to pause", WAIT, || async {
        let m = metrics(&h).await;
        m.contains("clw_gateway_destination_paused{flow=\"referral\",destination=\"charitylog\"} 1")
            .then_some(())
    })
    .await;
    h.publish(&second, &referral()).await;
    // Probes keep being refused; nothing is parked, both wait.
    eventually("a probe", WAIT, || async {
        (log.lock().unwrap().refused.len() >= 3).then_some(())
    })
    .await;
    assert!(
        h.gw.store
            .parked(Some("referral"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    for id in [&first, &second] {
        assert_ne!(h.state(id).await.as_deref(), Some("parked"));
    }
    assert!(log.lock().unwrap().accepted.is_empty());

    // The platform accepts the gateway's key again (it was re-issued there).
    log.lock().unwrap().org_key = Some("not-the-org-key".into());
    h.wait_state(&first, "delivered").await;
    h.wait_state(&second, "delivered").await;
    assert_eq!(log.lock().unwrap().accepted.len(), 2, "each once");
    let m = metrics(&h).await;
    assert!(
        m.contains(
            "clw_gateway_destination_paused{flow=\"referral\",destination=\"charitylog\"} 0"
        ),
        "{m}"
    );
    h.finish().await;
}

async fn metrics(h: &Harness) -> String {
    reqwest::get(format!("http://{}/metrics", h.gw.http_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The CSV sheet beside Lamplight and the webhook, for the twice-at-once tests.
fn sheet_config(dir: &std::path::Path) -> DestinationConfig {
    destination(&format!(
        "kind = \"csv\"\ndir = {:?}\nmapping = \"csv-referral\"\nallow = {ALLOW:?}\n",
        dir.display().to_string()
    ))
}

/// Every row of every sheet in `dir`, by gateway reference.
fn sheet_references(dir: &std::path::Path) -> Vec<String> {
    let mut refs = Vec::new();
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(f.path()).unwrap();
        let mut r = ::csv::ReaderBuilder::new().from_reader(&bytes[3..]);
        for rec in r.records() {
            refs.push(rec.unwrap().iter().next_back().unwrap().to_string());
        }
    }
    refs.sort();
    refs
}

/// The same referral event published twice at once (a practice system resending after
/// a lost publisher confirm), to platforms that answer slowly: each platform gets it
/// once — one POST (one Idempotency-Key), one Lamplight profile and referral, one
/// spreadsheet row — with `instances` gateways consuming, on SQLite or a shared
/// PostgreSQL.
async fn twice_at_once(name: &str, instances: usize, postgres: bool) {
    const IDS: usize = 4;
    let (url, log) = serve(axum::routing::any(lamplight), &[]).await;
    log.lock().unwrap().delay = std::time::Duration::from_millis(300);
    let s = Setup::new(name);
    let hook = Receiver::start(&[]).await;
    hook.set_delay(std::time::Duration::from_millis(300));
    let pg = if postgres {
        Some(PgSchema::create().await)
    } else {
        None
    };
    let sheet_dir = s.dir.path().join("sheet");
    let mut config = s.broker_config(&hook.url, &["300ms", "300ms", "300ms"]);
    config.mappings.dir = repo_path("mappings");
    config.destinations.insert(
        "lamplight",
        lamplight_config(&url, "lamplight-person", None),
    );
    config
        .destinations
        .insert("sheet", sheet_config(&sheet_dir));
    config.referrals.destinations = vec!["clw".into(), "lamplight".into(), "sheet".into()];
    if let Some((_, pg_url)) = &pg {
        config.store.url = Some(pg_url.clone());
    }
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&config).await;
    let mut gateways = Vec::new();
    for i in 0..instances {
        let mut c = config.clone();
        c.gateway.instance = format!("{}-{i}", s.prefix);
        gateways.push(clw_gateway::app::start(c).await.unwrap());
    }
    let ids: Vec<String> = (0..IDS).map(|_| unique("ref")).collect();
    let body = referral().to_string().into_bytes();
    let messages: Vec<_> = ids
        .iter()
        .flat_map(|id| {
            [
                (body.clone(), ce_headers(id)),
                (body.clone(), ce_headers(id)),
            ]
        })
        .collect();
    rabbit.publish_many(&t.exchange(), &messages).await;

    let store = &gateways[0].store;
    for id in &ids {
        // The first copy delivers; the second finds it done.
        eventually(
            &format!("{id}: one copy delivered, one a duplicate"),
            WAIT,
            || async {
                let m = store.message("referral", id).await.unwrap()?;
                let audit = store.audit("referral", id).await.unwrap();
                (m.state == "delivered"
                    && audit.iter().any(|a| a.entry.action.as_str() == "duplicate"))
                .then_some(())
            },
        )
        .await;
    }
    let keys: std::collections::BTreeSet<String> = hook
        .received()
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        (hook.count(), keys.len()),
        (IDS, IDS),
        "one POST per referral"
    );
    {
        let log = log.lock().unwrap();
        let count = |p: &str| log.accepted.iter().filter(|(path, _)| path == p).count();
        assert_eq!(count("/api/people/add/role/user"), IDS, "one profile each");
        assert_eq!(count("/api/referral/add/"), IDS, "one referral each");
    }
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sheet_references(&sheet_dir), want, "one row each");
    for gw in gateways {
        gw.stop().await.unwrap();
    }
    rabbit.cleanup(&t).await;
    if let Some((schema, _)) = pg {
        schema.drop_it().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_referral_twice_at_once_reaches_each_platform_once_on_sqlite() {
    twice_at_once("twice-sqlite", 1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_referral_twice_at_once_reaches_each_platform_once_with_two_instances_on_postgres()
{
    twice_at_once("twice-pg", 2, true).await;
}

/// Lamplight makes the referral but its answer never comes back (a timeout after
/// sending): the outcome is unknown, so the referral is parked for a person and never
/// sent again; once the person confirms it arrived and replays it, it is done, still
/// with one referral in Lamplight.
#[tokio::test]
async fn a_lost_lamplight_answer_is_parked_as_unknown_never_resent() {
    let (url, log) = serve(axum::routing::any(lamplight), &[]).await;
    log.lock().unwrap().stall_referrals = true;
    let h = Harness::start_with("lamplight-lost", &[], &["200ms", "200ms"], |c| {
        let mut d = lamplight_config(&url, "lamplight-person", None);
        if let DestinationConfig::Lamplight(l) = &mut d {
            l.timeout = std::time::Duration::from_millis(800);
        }
        only(c, "lamplight", d)
    })
    .await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    let row = h.wait_state(&id, "parked").await;
    let reason = row.last_error.unwrap();
    assert!(
        reason.contains("outcome unknown, so not sent again"),
        "{reason}"
    );
    assert!(reason.contains("clw-gateway resolve"), "{reason}");
    let d = h.gw.store.deliveries("referral", &id).await.unwrap();
    assert_eq!(d[0].state, "unknown");
    h.wait_parked("referral", 1).await;

    // Replayed as it is: still unknown, still not sent again.
    clw_gateway::broker::dlq::replay(
        &amqp_url(),
        &h.t,
        clw_gateway::parking::Selection::Id(&id),
        &h.gw.store,
        "tester",
    )
    .await
    .unwrap();
    h.wait_parked("referral", 1).await;
    // A person checks Lamplight, finds the referral there, and says so.
    h.gw.store
        .resolve("referral", &id, "lamplight", true, "tester")
        .await
        .unwrap();
    clw_gateway::broker::dlq::replay(
        &amqp_url(),
        &h.t,
        clw_gateway::parking::Selection::Id(&id),
        &h.gw.store,
        "tester",
    )
    .await
    .unwrap();
    h.wait_audit(&id, "duplicate").await;
    let (referrals, stalled) = {
        let log = log.lock().unwrap();
        let referrals = log
            .accepted
            .iter()
            .filter(|(p, _)| p == "/api/referral/add/")
            .count();
        (referrals, log.stalled)
    };
    assert_eq!((referrals, stalled), (1, 1), "one referral in Lamplight");

    assert_eq!(h.state(&id).await.as_deref(), Some("delivered"));
    let audit = h.gw.store.audit("referral", &id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.entry.action.as_str() == "resolved" && a.entry.actor == "tester")
    );
    h.finish().await;
}

/// The gateway is killed (SIGKILL) after Lamplight made the referral and before the
/// gateway recorded the answer: after a restart the redelivered referral is parked as
/// an unknown outcome, and Lamplight never gets a second referral.
#[tokio::test]
async fn a_gateway_killed_after_lamplight_answered_sends_no_second_referral() {
    let (url, log) = serve(axum::routing::any(lamplight), &[]).await;
    log.lock().unwrap().stall_referrals = true;
    let s = Setup::new("lamplight-kill");
    let hook = Receiver::start(&[]).await;
    let config = s.broker_config(&hook.url, &["200ms", "1s", "1s"]);
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&config).await;
    let path = s.dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\ninstance = \"{p}\"\ndata_dir = \"{d}\"\nclaim_ttl = \"1s\"\n[store]\nurl = \"{u}\"\n\
             [http]\nenabled = false\n[mappings]\ndir = \"{m}\"\n\
             [broker]\nurl = \"{a}\"\nprefix = \"{p}\"\nprefetch = 4\n[retry]\ntiers = [\"200ms\", \"1s\", \"1s\"]\n\
             [referrals]\ndestinations = [\"lamplight\"]\n[destinations.lamplight]\n{l}",
            p = s.prefix,
            d = s.dir.path().display(),
            u = s.store_url,
            m = repo_path("mappings").display(),
            a = amqp_url(),
            l = lamplight_toml(&url, "lamplight-person", None),
        ),
    )
    .unwrap();
    let start = || ChildGateway::start(&path);
    let mut gw = start();
    let id = unique("ref");
    rabbit
        .publish(
            &t.exchange(),
            referral().to_string().as_bytes(),
            &ce_headers(&id),
        )
        .await;
    eventually("Lamplight to make the referral", WAIT, || async {
        (log.lock().unwrap().stalled == 1).then_some(())
    })
    .await;
    gw.kill();
    log.lock().unwrap().stall_referrals = false;

    let mut gw = start();
    let store = clw_gateway::store::Store::connect(&s.store_url, 2, 16)
        .await
        .unwrap();
    let row = wait_message(&store, "referral", &id, "parked").await;
    let reason = row.last_error.unwrap();
    assert!(reason.contains("its answer was never recorded"), "{reason}");
    let referrals = log
        .lock()
        .unwrap()
        .accepted
        .iter()
        .filter(|(p, _)| p == "/api/referral/add/")
        .count();
    assert_eq!(referrals, 1, "no second referral after the restart");
    gw.kill();
    store.close().await;
    rabbit.cleanup(&t).await;
}
