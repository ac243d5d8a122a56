//! The chaos harness: N referrals (and an event back for each) flow through a real
//! gateway binary while RabbitMQ's app is stopped and started twice, the gateway is
//! SIGKILLed three times and restarted, the platform answers 20 % 5xx and times out on
//! 5 %, and the store's network goes silent for a while. Then it counts: lost,
//! duplicated (by idempotency key and by platform record), parked with a reason, left
//! in flight. Loopback only; bounded in count (CLW_CHAOS_N, default 200) and in time.
//!
//!     CLW_CHAOS_N=10000 cargo nextest run --test chaos --no-capture
//!
//! It stops RabbitMQ's app, so it runs alone (.config/nextest.toml).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clw_gateway::store::Store;
use common::*;
use serde_json::json;

/// What the platform saw. It creates one record per Idempotency-Key (as a keyed API
/// does) and keeps the referral each key was for.
#[derive(Default)]
struct Platform {
    /// Idempotency-Key → the referral (X-Correlation-ID) it was for.
    records: BTreeMap<String, String>,
    /// Requests per key (resends under the same key are absorbed, not recorded again).
    requests: HashMap<String, u32>,
    answered_5xx: u64,
    timed_out: u64,
}

type Shared = Arc<Mutex<Platform>>;

/// 20 % 503, 5 % an answer later than the gateway waits, else 201; decided by a hash of
/// (key, attempt) so a run is repeatable.
async fn platform(State(p): State<Shared>, headers: HeaderMap) -> StatusCode {
    let key = header(&headers, "idempotency-key");
    let referral = header(&headers, "x-correlation-id");
    let attempt = {
        let mut p = p.lock().unwrap();
        let n = p.requests.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (key.as_str(), attempt).hash(&mut h);
    let roll = h.finish() % 100;
    if roll < 20 {
        p.lock().unwrap().answered_5xx += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    p.lock().unwrap().records.entry(key).or_insert(referral);
    if roll < 25 {
        p.lock().unwrap().timed_out += 1;
        // Recorded, but the answer comes after the gateway's 1 s timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    StatusCode::CREATED
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The gateway binary, logging to a file (shown when the harness fails).
struct Gateway {
    config: PathBuf,
    log: PathBuf,
    child: Option<std::process::Child>,
    starts: u32,
}

impl Gateway {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            std::process::Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        self.starts += 1;
    }

    /// SIGKILL, as a crash or an OOM kill would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// RabbitMQ's app stopped and started again (the node stays up), always restarted.
struct BrokerOutage;

impl BrokerOutage {
    fn begin() -> BrokerOutage {
        rabbitmqctl(&["stop_app"]);
        BrokerOutage
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup", "--timeout", "120"]);
    }
}

fn rabbitmqctl(args: &[&str]) {
    let ok = std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "rabbitmqctl {args:?}");
}

/// Publishes with confirms, reconnecting through broker outages.
/// A `contact` event back for each referral the platform now holds (none: nothing sent).
async fn publish_events(exchange: &str, referrals: &[String]) {
    if referrals.is_empty() {
        return;
    }
    let events: Vec<Outgoing> = referrals
        .iter()
        .map(|r| {
            (
                event(&format!("ev-{r}"), r),
                event_headers(&format!("ev-{r}")),
            )
        })
        .collect();
    // As the platform's own broker user (the test's connection is `guest`).
    publish_all(exchange, events, Some("guest")).await;
}

async fn publish_all(exchange: &str, messages: Vec<Outgoing<'_>>, user_id: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let attempt = async {
            let rabbit = tokio::time::timeout(Duration::from_secs(5), try_connect())
                .await
                .ok()??;
            let ok = tokio::time::timeout(
                Duration::from_secs(60),
                rabbit.publish_many_as(exchange, &messages, user_id),
            )
            .await
            .is_ok();
            let _ = rabbit.conn.close(200, "done".into()).await;
            ok.then_some(())
        };
        if attempt.await.is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "could not publish to {exchange}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn try_connect() -> Option<Rabbit> {
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .ok()?;
    let ch = conn.create_channel().await.ok()?;
    ch.confirm_select(Default::default()).await.ok()?;
    Some(Rabbit { conn, ch })
}

fn event(event_id: &str, referral: &str) -> Vec<u8> {
    json!({
        "event_id": event_id,
        "type": "contact",
        "occurred_at": "2026-11-25T10:00:00Z",
        "referral": {"message_id": referral,
                     "patient": {"nhs_number": "9912003888", "date_of_birth": "1970-09-11"}},
        "contact": {"mode": "telephone", "date": "2026-11-25"},
    })
    .to_string()
    .into_bytes()
}

fn event_headers(event_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ce-id", event_id.to_string()),
        (
            "ce-type",
            "uk.nhs.socialprescribing.messageback.v1".to_string(),
        ),
        ("ce-specversion", "1.0".to_string()),
        ("x-clw-platform", "links".to_string()),
    ]
}

/// Event ids written to the practice folder (`<practice>/<date>-<message id>.json`).
fn written_events(dir: &Path) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for practice in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(practice.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".json")
                && !name.starts_with('.')
            {
                let id = stem.get(11..).unwrap_or(stem).to_string();
                *out.entry(id).or_default() += 1;
            }
        }
    }
    out
}

struct Report {
    referrals: usize,
    events: usize,
    delivered: usize,
    lost: Vec<String>,
    dup_by_key: usize,
    dup_by_record: usize,
    resent_same_key: u64,
    parked: BTreeMap<String, usize>,
    in_flight: usize,
    events_written: usize,
    events_lost: Vec<String>,
    events_duplicated: usize,
    events_parked: BTreeMap<String, usize>,
    answered_5xx: u64,
    timed_out: u64,
    gateway_starts: u32,
    took: Duration,
}

impl Report {
    fn print(&self) {
        println!(
            "chaos report ({} referrals, {} events, {:?})",
            self.referrals, self.events, self.took
        );
        println!(
            "  faults: RabbitMQ app stopped 2x, gateway SIGKILLed 3x ({} starts), store silent 1x, platform 5xx {} / late answers {}",
            self.gateway_starts, self.answered_5xx, self.timed_out
        );
        println!(
            "  referrals: delivered {}, lost {}, duplicated by idempotency key {}, duplicated by platform record {}, parked with reason {}, left in flight {}",
            self.delivered,
            self.lost.len(),
            self.dup_by_key,
            self.dup_by_record,
            self.parked.values().sum::<usize>(),
            self.in_flight
        );
        println!(
            "  resent under the same key (absorbed by the platform): {}",
            self.resent_same_key
        );
        for (reason, n) in &self.parked {
            println!("    parked {n}: {reason}");
        }
        println!(
            "  events: written {}, lost {}, duplicated {}, parked with reason {}",
            self.events_written,
            self.events_lost.len(),
            self.events_duplicated,
            self.events_parked.values().sum::<usize>()
        );
        for (reason, n) in &self.events_parked {
            println!("    parked {n}: {reason}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_nothing_and_duplicates_nothing() {
    let n: usize = std::env::var("CLW_CHAOS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let started = Instant::now();
    let (schema, pg) = PgSchema::create().await;
    let link = Link::start("127.0.0.1:5432".parse().unwrap()).await;
    let store_url = pg.replace("127.0.0.1:5432", &link.addr.to_string());
    let s = Setup::new("chaos");
    let shared: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/referrals", axum::routing::post(platform))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/referrals", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let practice_dir = s.dir.path().join("practice");
    let config = s.dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ninstance = \"{p}\"\ndata_dir = \"{d}\"\nclaim_ttl = \"3s\"\n\
             [store]\nurl = \"{u}\"\nstatement_timeout = \"2s\"\nacquire_timeout = \"2s\"\n\
             [http]\nenabled = false\n[mappings]\ndir = \"{m}\"\n\
             [broker]\nurl = \"{a}\"\nprefix = \"{p}\"\nprefetch = 32\nconfirm_timeout = \"3s\"\n\
             [retry]\ntiers = [\"200ms\", \"500ms\", \"1s\", \"2s\", \"3s\", \"5s\", \"5s\", \"5s\"]\n\
             [referrals]\ndestinations = [\"platform\"]\n{TEST_CONSENT_COVERS}\n\
             [destinations.platform]\nkind = \"webhook\"\nurl = \"{hook}\"\ntimeout = \"1s\"\nallow = {PRSB_ALLOW}\n\
             [message_back]\nwriters = [\"practice-folder\"]\n[message_back.platforms.links]\ndestinations = [\"platform\"]\nbroker_user = \"guest\"\n\
             [destinations.practice-folder]\nkind = \"practice-folder\"\ndir = {pd:?}\n\
             allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
            p = s.prefix,
            d = s.dir.path().display(),
            u = store_url,
            m = repo_path("mappings").display(),
            a = amqp_url(),
            pd = practice_dir.display().to_string(),
        ),
    )
    .unwrap();
    let cfg = clw_gateway::config::Config::load(Some(&config), Vec::new()).unwrap();
    let rabbit = Rabbit::connect().await;
    let referral_t = rabbit.declare(&cfg).await;
    let event_t = referral_t.for_flow(clw_gateway::model::Flow::MessageBack);
    event_t.declare(&rabbit.ch).await.unwrap();
    let _ = rabbit.conn.close(200, "declared".into()).await;

    let mut gw = Gateway {
        config: config.clone(),
        log: s.dir.path().join("gateway.log"),
        child: None,
        starts: 0,
    };
    gw.start();

    let ids: Vec<String> = (0..n).map(|i| format!("chaos-{}-{i}", s.prefix)).collect();
    let body = referral().to_string().into_bytes();
    let batches: Vec<&[String]> = ids.chunks(n.div_ceil(5).max(1)).collect();
    let mut evented: BTreeSet<String> = BTreeSet::new();
    let delivered_count = || shared.lock().unwrap().records.len();
    // Events back for every referral the platform has, not yet sent.
    let send_events = |evented: &mut BTreeSet<String>| {
        let have: BTreeSet<String> = shared.lock().unwrap().records.values().cloned().collect();
        let new: Vec<String> = have.difference(evented).cloned().collect();
        evented.extend(new.iter().cloned());
        new
    };
    for (step, batch) in batches.iter().enumerate() {
        let messages: Vec<Outgoing> = batch
            .iter()
            .map(|id| (body.clone(), ce_headers(id)))
            .collect();
        publish_all(&referral_t.exchange(), messages, None).await;
        // Let the batch start flowing, then break something.
        let before = delivered_count();
        let want = before + batch.len() / 4;
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            while delivered_count() < want {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        publish_events(&event_t.exchange(), &send_events(&mut evented)).await;
        match step {
            0 | 4 => {
                gw.kill();
                gw.start();
            }
            1 => {
                let outage = BrokerOutage::begin();
                tokio::time::sleep(Duration::from_secs(3)).await;
                drop(outage);
            }
            2 => {
                link.blackhole();
                tokio::time::sleep(Duration::from_secs(5)).await;
                link.pass();
            }
            _ => {
                gw.kill();
                let outage = BrokerOutage::begin();
                tokio::time::sleep(Duration::from_secs(3)).await;
                drop(outage);
                gw.start();
            }
        }
    }

    // Drain: every referral delivered or parked, every event written or parked, nothing
    // left in a queue or waiting for a retry.
    let store = Store::connect(&pg, 2, 16).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180) + Duration::from_millis(30 * n as u64);
    let outcome = loop {
        let new = send_events(&mut evented);
        let all_evented = new.is_empty();
        publish_events(&event_t.exchange(), &new).await;
        let settled = settled(&store, &ids, &evented).await;
        let queues_empty = queues_empty(&[&referral_t, &event_t]).await;
        let done = settled && queues_empty && all_evented;
        if done || Instant::now() > deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    gw.kill();

    let report = report(
        &store,
        &shared,
        &ids,
        &evented,
        &practice_dir,
        gw.starts,
        started,
    )
    .await;
    report.print();
    if !outcome || !report.lost.is_empty() || report.in_flight > 0 {
        let log = std::fs::read_to_string(&gw.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        println!(
            "gateway log (last lines, newest first):\n{}",
            tail.join("\n")
        );
    }
    assert!(outcome, "the run did not settle before its deadline");
    assert_eq!(report.lost.len(), 0, "lost referrals: {:?}", report.lost);
    assert_eq!(report.dup_by_key, 0);
    assert_eq!(report.dup_by_record, 0);
    assert_eq!(report.in_flight, 0);
    assert_eq!(
        report.events_lost.len(),
        0,
        "lost events: {:?}",
        report.events_lost
    );
    assert_eq!(report.events_duplicated, 0);

    store.close().await;
    let rabbit = Rabbit::connect().await;
    rabbit.cleanup(&referral_t).await;
    drop(link);
    schema.drop_it().await;
}

/// Every referral and event has reached its end (delivered, withheld or parked).
async fn settled(store: &Store, ids: &[String], evented: &BTreeSet<String>) -> bool {
    let done = |m: Option<clw_gateway::store::MessageRow>| {
        m.is_some_and(|m| matches!(m.state.as_str(), "delivered" | "parked" | "withheld"))
    };
    for id in ids {
        if !done(store.message("referral", id).await.ok().flatten()) {
            return false;
        }
    }
    for r in evented {
        let id = format!("links:ev-{r}");
        if !done(store.message("message-back", &id).await.ok().flatten()) {
            return false;
        }
    }
    true
}

async fn queues_empty(topologies: &[&clw_gateway::sources::broker::Topology]) -> bool {
    let Some(rabbit) = try_connect().await else {
        return false;
    };
    let mut empty = true;
    for t in topologies {
        let mut names = vec![t.queue(), t.parked_queue()];
        names.extend((0..t.tiers.len()).map(|i| t.retry_queue(i)));
        for q in names {
            empty &= rabbit.queue_len(&q).await == 0;
        }
    }
    let _ = rabbit.conn.close(200, "checked".into()).await;
    empty
}

async fn report(
    store: &Store,
    shared: &Shared,
    ids: &[String],
    evented: &BTreeSet<String>,
    practice_dir: &Path,
    gateway_starts: u32,
    started: Instant,
) -> Report {
    let parked_rows = store.parked(None, None, i64::MAX).await.unwrap();
    let mut in_flight = 0;
    for id in ids {
        let m = store.message("referral", id).await.unwrap();
        if !m.is_some_and(|m| matches!(m.state.as_str(), "delivered" | "parked" | "withheld")) {
            in_flight += 1;
        }
    }
    let p = shared.lock().unwrap();
    let mut keys_per_referral: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (key, referral) in &p.records {
        keys_per_referral.entry(referral).or_default().insert(key);
    }
    let mut parked = BTreeMap::new();
    let mut events_parked = BTreeMap::new();
    let mut parked_ids = BTreeSet::new();
    for row in &parked_rows {
        parked_ids.insert(row.message_id.clone());
        let map = if row.flow == "referral" {
            &mut parked
        } else {
            &mut events_parked
        };
        *map.entry(format!(
            "{} / {}: {}",
            row.stage, row.error_class, row.reason
        ))
        .or_default() += 1;
    }
    let delivered = ids
        .iter()
        .filter(|id| keys_per_referral.contains_key(id.as_str()))
        .count();
    let lost: Vec<String> = ids
        .iter()
        .filter(|id| !keys_per_referral.contains_key(id.as_str()) && !parked_ids.contains(*id))
        .cloned()
        .collect();
    let written = written_events(practice_dir);
    let events_lost: Vec<String> = evented
        .iter()
        .map(|r| format!("links:ev-{r}"))
        .filter(|id| {
            !written.keys().any(|w| w == &id.replace(':', "%3A")) && !parked_ids.contains(id)
        })
        .collect();
    Report {
        referrals: ids.len(),
        events: evented.len(),
        delivered,
        lost,
        dup_by_key: keys_per_referral.values().filter(|k| k.len() > 1).count(),
        // One record per key; a referral recorded twice would show as two keys, or as
        // two records of one referral id among the records.
        dup_by_record: {
            let mut seen = BTreeSet::new();
            p.records.values().filter(|r| !seen.insert(*r)).count()
        },
        resent_same_key: p
            .requests
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum(),
        parked,
        in_flight,
        events_written: written.len(),
        events_lost,
        events_duplicated: written.values().filter(|n| **n > 1).count(),
        events_parked,
        answered_5xx: p.answered_5xx,
        timed_out: p.timed_out,
        gateway_starts,
        took: started.elapsed(),
    }
}
