//! The Lamplight and Charitylog adapters against local stand-ins (tests/common/standins.rs)
//! that check each request as those platforms document it and answer as they document.
//! Neither SaaS can run here.

mod common;

use clw_gateway::config::{Config, DestinationConfig};
use common::standins::*;
use common::*;
use serde_json::{Value, json};

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

/// Lamplight's search carries the value it looks for in its URL path (and so in access
/// logs): `match_field` is refused unless `match_value_in_url` accepts that.
#[test]
fn lamplight_find_by_field_needs_its_url_exposure_accepted() {
    let toml = lamplight_toml(
        "http://127.0.0.1:9",
        "lamplight-person-nhs",
        Some(("NHS_number", "nhs_number")),
    )
    .replace("match_value_in_url = true\n", "");
    let mappings =
        clw_gateway::mapping::MappingSet::load_configured(&repo_path("mappings")).unwrap();
    let mut schemas = clw_gateway::mapping::schema::SchemaSet::default();
    let Err(problems) =
        clw_gateway::deliver::Destination::build("l", &destination(&toml), &mappings, &mut schemas)
    else {
        panic!("built with the NHS number in Lamplight's URLs unaccepted");
    };
    assert!(
        problems.iter().any(|p| p
            .field
            .as_deref()
            .is_some_and(|f| f.ends_with("match_field"))
            && p.message.contains("match_value_in_url")),
        "{problems:?}"
    );
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
         allow = {LAMPLIGHT_ALLOW:?}\nconstants = {{ org_type_id = \"3\", project = \"Community Links\" }}\n"
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
        "kind = \"csv\"\ndir = {:?}\nmapping = \"csv-referral\"\nallow = {LAMPLIGHT_ALLOW:?}\n",
        dir.display().to_string()
    ))
}

/// Every row of every sheet in `dir`, by gateway reference.
fn sheet_references(dir: &std::path::Path) -> Vec<String> {
    let mut refs = Vec::new();
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(f.path()).unwrap();
        let mut r = ::csv::ReaderBuilder::new().from_reader(&bytes[3..]);
        let at = r
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == clw_gateway::deliver::REFERENCE_COLUMN)
            .unwrap();
        for rec in r.records() {
            refs.push(rec.unwrap()[at].to_string());
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
    common::dlq_replay(
        &h.t,
        clw_gateway::sources::parking::Selection::Id(&id),
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
    common::dlq_replay(
        &h.t,
        clw_gateway::sources::parking::Selection::Id(&id),
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
