//! Never stuck while looking healthy: each way the gateway could hang shows as not
//! ready and recovers — a panicking handler, an unreadable spool inbox, a store that
//! stops answering, a broker that refuses publishes (a resource alarm).
//!
//! Tests named `exclusive_*` change RabbitMQ for everyone (an alarm): nextest runs them
//! alone (.config/nextest.toml); under `cargo test` they take a lock in this binary.

mod common;

use std::time::{Duration, Instant};

use clw_gateway::app;
use clw_gateway::engine::metrics::Metrics;
use clw_gateway::sources::broker::{dlq, guarded};
use common::*;
use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::{FieldTable, ShortString};
use serde_json::Value;

async fn readyz(addr: std::net::SocketAddr) -> (u16, Value) {
    let r = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn wait_ready(addr: std::net::SocketAddr, want: u16, within: Duration) -> Value {
    eventually(&format!("/readyz to answer {want}"), within, || async {
        let (code, body) = readyz(addr).await;
        (code == want).then_some(body)
    })
    .await
}

#[tokio::test]
async fn a_panicking_handler_returns_its_message_and_is_counted() {
    let s = Setup::new("panic");
    let hook = Receiver::start(&[]).await;
    let mut config = s.broker_config(&hook.url, &["200ms"]);
    config.broker.as_mut().unwrap().delivery_limit = 2;
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&config).await;
    let id = unique("ref");
    rabbit
        .publish(
            &t.exchange(),
            referral().to_string().as_bytes(),
            &ce_headers(&id),
        )
        .await;

    // The gateway's own guard around a handler that panics every time.
    let ch = rabbit.conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            ShortString::from(t.queue()),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let metrics = Metrics::new();
    let (store, _dir) = temp_store().await;
    let deadline = Instant::now() + WAIT;
    let mut parked = Vec::new();
    while parked.is_empty() {
        assert!(Instant::now() < deadline, "never dead-lettered");
        if let Ok(Some(Ok(d))) =
            tokio::time::timeout(Duration::from_millis(200), consumer.next()).await
        {
            guarded(d, metrics.clone(), |_| async { panic!("handler bug") }).await;
        }
        dlq::drain(&amqp_url(), &t, &store).await.unwrap();
        parked = store.parked(Some("referral"), None, 10).await.unwrap();
    }
    // Every panic returned the message (a leaked delivery would stall at the first);
    // past the queue's delivery limit RabbitMQ parks it, and nothing is lost.
    assert_eq!(
        metrics.handler_panics.get(),
        3,
        "delivered 1 + 2 redeliveries"
    );
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].message_id, id);
    assert_eq!(parked[0].stage, "broker");
    assert!(
        parked[0].reason.contains("delivery_limit"),
        "{}",
        parked[0].reason
    );
    assert_eq!(rabbit.queue_len(&t.queue()).await, 0);
    let _ = ch.close(200, ShortString::from("done")).await;
    rabbit.cleanup(&t).await;
}

#[tokio::test]
async fn an_unreadable_spool_inbox_reports_not_ready_and_recovers() {
    let s = Setup::new("unreadable");
    let config = s.config("[spool]\npoll_interval = \"100ms\"\n");
    let gw = app::start(config).await.unwrap();
    let addr = gw.http_addr.unwrap();
    let body = wait_ready(addr, 200, WAIT).await;
    assert_eq!(body["sources"]["referral"], "ok");

    // The inbox goes away (a lost mount): something else stands at its path.
    let inbox = s.dir.path().join("spool/referrals/inbox");
    let aside = s.dir.path().join("inbox-aside");
    std::fs::rename(&inbox, &aside).unwrap();
    std::fs::write(&inbox, "not a folder").unwrap();
    let body = wait_ready(addr, 503, WAIT).await;
    assert_eq!(body["sources"]["referral"], "unreachable");
    assert!(
        gw.metrics
            .render()
            .contains("clw_gateway_source_up{flow=\"referral\"} 0")
    );

    // Restored: ready again, and a referral dropped in is delivered.
    std::fs::remove_file(&inbox).unwrap();
    std::fs::rename(&aside, &inbox).unwrap();
    wait_ready(addr, 200, WAIT).await;
    let r = referral_with_id("after-the-outage");
    std::fs::write(inbox.join("r.json"), r.to_string()).unwrap();
    let done = s.dir.path().join("spool/referrals/done/r.json");
    eventually("the referral processed", WAIT, || async {
        done.exists().then_some(())
    })
    .await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_store_that_stops_answering_is_reported_within_seconds_and_recovered_from() {
    let (schema, url) = PgSchema::create().await;
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let link = Link::start(pg).await;
    let url = url.replace("127.0.0.1:5432", &link.addr.to_string());
    let s = Setup::new("deadstore");
    let outbox = s.dir.path().join("outbox");
    let mut config = s.config(&format!(
        "[spool]\npoll_interval = \"100ms\"\n\
         [retry]\ntiers = [\"500ms\", \"1s\", \"2s\", \"4s\", \"8s\", \"8s\"]\n\
         [referrals]\ndestinations = [\"files\"]\n\
         [destinations.files]\nkind = \"file\"\ndir = \"{}\"\nallow = {PRSB_ALLOW}\n",
        outbox.display()
    ));
    config.store.url = Some(url);
    config.store.statement_timeout = Duration::from_secs(1);
    config.store.acquire_timeout = Duration::from_secs(1);
    let gw = app::start(config).await.unwrap();
    let addr = gw.http_addr.unwrap();
    wait_ready(addr, 200, WAIT).await;
    let inbox = s.dir.path().join("spool/referrals/inbox");
    let done = s.dir.path().join("spool/referrals/done");
    std::fs::write(
        inbox.join("a.json"),
        referral_with_id("before-the-outage").to_string(),
    )
    .unwrap();
    eventually("a delivered", WAIT, || async {
        done.join("a.json").exists().then_some(())
    })
    .await;

    // The network to the store goes silent: no error, no answer.
    link.blackhole();
    let cut = Instant::now();
    let b = referral_with_id("during-the-outage");
    std::fs::write(inbox.join("b.json"), b.to_string()).unwrap();
    let body = wait_ready(addr, 503, Duration::from_secs(15)).await;
    assert_eq!(body["store"], "unreachable");
    assert!(
        cut.elapsed() < Duration::from_secs(10),
        "reported after {:?}",
        cut.elapsed()
    );
    assert!(
        !done.join("b.json").exists(),
        "nothing settled without the store"
    );

    // Back: the gateway reconnects by itself and finishes the referral.
    link.pass();
    wait_ready(addr, 200, WAIT).await;
    eventually("b delivered after the outage", WAIT, || async {
        done.join("b.json").exists().then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_dir(&outbox).unwrap().count(),
        2,
        "each referral written once"
    );
    gw.stop().await.unwrap();
    drop(link);
    schema.drop_it().await;
}

/// A RabbitMQ resource alarm, set and always cleared.
struct DiskAlarm {
    previous: String,
}

impl DiskAlarm {
    fn raise() -> DiskAlarm {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["-q", "eval", "rabbit_disk_monitor:get_disk_free_limit()."])
            .output()
            .expect("rabbitmqctl runs");
        let previous = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            previous.parse::<u64>().is_ok(),
            "disk free limit: {previous}"
        );
        ctl(&["set_disk_free_limit", "100000GB"]);
        DiskAlarm { previous }
    }

    fn active() -> bool {
        let out = std::process::Command::new("rabbitmq-diagnostics")
            .args(["-q", "alarms"])
            .output()
            .expect("rabbitmq-diagnostics runs");
        String::from_utf8_lossy(&out.stdout).contains("disk")
    }
}

impl Drop for DiskAlarm {
    fn drop(&mut self) {
        ctl(&["set_disk_free_limit", &self.previous]);
    }
}

fn ctl(args: &[&str]) {
    let ok = std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "rabbitmqctl {args:?}");
}

static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn exclusive_a_broker_refusing_publishes_does_not_block_acks() {
    let _alone = EXCLUSIVE.lock().await;
    let s = Setup::new("alarm");
    let hook = Receiver::start(&[503]).await;
    hook.hold();
    let mut config = s.broker_config(&hook.url, &["200ms"]);
    let b = config.broker.as_mut().unwrap();
    b.prefetch = 1;
    b.confirm_timeout = Duration::from_secs(1);
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&config).await;
    let gw = app::start(config).await.unwrap();
    let addr = gw.http_addr.unwrap();
    wait_ready(addr, 200, WAIT).await;

    // A is taken and held at the platform; B1..B3 wait behind it (prefetch 1).
    let a = unique("a");
    let bs: Vec<String> = (1..=3).map(|i| unique(&format!("b{i}"))).collect();
    for id in std::iter::once(&a).chain(&bs) {
        rabbit
            .publish(
                &t.exchange(),
                referral().to_string().as_bytes(),
                &ce_headers(id),
            )
            .await;
    }
    eventually("A at the platform", WAIT, || async {
        (hook.count() == 1).then_some(())
    })
    .await;

    let alarm = DiskAlarm::raise();
    eventually("the disk alarm", WAIT, || async {
        DiskAlarm::active().then_some(())
    })
    .await;
    // The platform answers 503: A needs a retry tier, whose publish the broker blocks.
    hook.release();
    let body = wait_ready(addr, 503, WAIT).await;
    assert_eq!(body["sources"]["referral"], "unreachable");
    // Acks are on another connection: everything that needs no publish still settles.
    for id in std::iter::once(&a).chain(&bs) {
        wait_message(&gw.store, "referral", id, "delivered").await;
    }
    assert!(DiskAlarm::active(), "still under the alarm");
    assert_eq!(rabbit.queue_len(&t.queue()).await, 0);

    drop(alarm);
    eventually("the alarm cleared", WAIT, || async {
        (!DiskAlarm::active()).then_some(())
    })
    .await;
    wait_ready(addr, 200, WAIT).await;
    assert_eq!(hook.count(), 5, "A twice (503, then 200), each B once");
    gw.stop().await.unwrap();
    rabbit.cleanup(&t).await;
}

/// A front that fails on every message as a defect would: it panics.
struct Panics;

impl clw_gateway::flows::Front for Panics {
    type Decoded = ();

    fn flow(&self) -> clw_gateway::model::Flow {
        clw_gateway::model::Flow::MessageBack
    }

    fn decode(
        &self,
        _: &clw_gateway::engine::Inbound,
    ) -> Result<clw_gateway::flows::Decoded<()>, clw_gateway::flows::Refusal> {
        panic!("a defect meeting this input")
    }

    fn plan<'a>(
        &'a self,
        _: clw_gateway::flows::Decoded<()>,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<clw_gateway::flows::Planned, clw_gateway::flows::Refusal>,
    > {
        Box::pin(async { panic!("a defect meeting this input") })
    }
}

/// Spool mode: a handler that panics parks its file with a reason and counts it, as
/// broker mode nacks it — nothing is left in processing/ unseen.
#[tokio::test]
async fn a_panicking_handler_in_spool_mode_parks_its_file_with_a_reason() {
    use std::sync::Arc;
    let s = Setup::new("spool-panic");
    let config = s.config("");
    let (store, _dir) = temp_store().await;
    let metrics = Metrics::new();
    let engine = Arc::new(clw_gateway::engine::Engine::new(
        store.clone(),
        metrics.clone(),
        config.engine(),
    ));
    let pipeline = Arc::new(clw_gateway::engine::Pipeline::new(engine, Box::new(Panics)));
    let dirs =
        clw_gateway::sources::spool::SpoolDirs::for_flow(&s.dir.path().join("spool"), "events");
    dirs.create().unwrap();
    std::fs::write(dirs.inbox.join("e1.json"), b"{}").unwrap();
    let (trigger, shutdown) = clw_gateway::sources::shutdown::channel();
    let source = clw_gateway::sources::spool::SpoolSource {
        dirs: dirs.clone(),
        owner: "test".into(),
        poll_interval: Duration::from_millis(50),
        concurrency: 2,
        max_bytes: 1 << 20,
        status: Arc::new(clw_gateway::engine::SourceStatus::new(
            "message-back",
            &metrics,
        )),
        pipeline,
    };
    let task = tokio::spawn(async move { source.run(shutdown).await });
    let reason = eventually("the file parked", WAIT, || async {
        std::fs::read_to_string(dirs.failed.join("e1.json.reason.json")).ok()
    })
    .await;
    assert!(reason.contains("a defect"), "{reason}");
    assert_eq!(metrics.handler_panics.get(), 1);
    assert!(dirs.failed.join("e1.json").exists());
    let parked = store.parked(Some("message-back"), None, 10).await.unwrap();
    assert_eq!(parked.len(), 1, "recorded for dlq and the console");
    trigger.trigger();
    task.await.unwrap().unwrap();
    let left: Vec<_> = walk(&dirs.processing);
    assert!(left.is_empty(), "nothing left in processing: {left:?}");
}

/// Every message file under `dir`, however deep (not an instance's `.lock`).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else if !e.file_name().to_string_lossy().starts_with('.') {
            out.push(e.path());
        }
    }
    out
}
