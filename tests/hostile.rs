//! The doors hold against hostile and careless clients: a request path never becomes a
//! metric line or fills memory; slow clients cannot hold the door; a broker outage is a
//! prompt 503 for everyone; a replay is refused whatever its spelling and on any
//! instance; impossible dates and symbolic links are parked, never written or followed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use clw_gateway::app;
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const SECRET: &str = "hostile-test-secret";
const REFERRAL_ID: &str = EXAMPLE_REFERRAL_ID;

fn event(id: &str, extra: Value) -> Value {
    example_event(id, extra)
}

/// A spool-mode gateway with the ingress on (bounds shortened by `ingress`) and the
/// platform `links` answering the outbox's referrals (and dropping files in the spool).
async fn gateway(s: &Setup, ingress: &str) -> app::Running {
    // SAFETY: a value no other test reads differently.
    unsafe { std::env::set_var("CLW_TEST_HOSTILE_SECRET", SECRET) };
    door_gateway(s, &format!("[ingress]\n{ingress}\n{}", links_platform())).await
}

/// The message back with the platform `links`, for a door gateway's configuration.
fn links_platform() -> &'static str {
    "[message_back]\nwriters = [\"practice-folder\"]\nspool_platform = \"links\"\n\
     [message_back.platforms.links]\nsecret = { env = \"CLW_TEST_HOSTILE_SECRET\" }\ndestinations = [\"outbox\"]\n"
}

async fn refer(gw: &app::Running, data: &Path) {
    refer_example(gw, data).await
}

async fn metrics_text(gw: &app::Running) -> String {
    reqwest::get(format!("http://{}/metrics", gw.http_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_path_never_becomes_a_metric_line_nor_fills_memory() {
    let s = Setup::new("hostile-metrics");
    let gw = gateway(&s, "").await;
    let port = gw.ingress_addr.unwrap().port();
    let client = reqwest::Client::new();
    let post = |path: String| {
        let client = client.clone();
        async move {
            client
                .post(format!("http://127.0.0.1:{port}{path}"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let forged =
        "/v1/events/x%22%7D%201%0Aforged_metric%201%0Aclw_gateway_parked_waiting%200%0A%23";
    assert_eq!(post(forged.into()).await, 404);
    let text = metrics_text(&gw).await;
    assert!(!text.contains("forged_metric"), "{text}");
    assert!(!text.contains("parked_waiting 0\n#"), "{text}");
    assert!(text.contains("platform=\"unknown\""), "{text}");
    let before = (text.len(), rss_kib());
    let text = text.clone();
    // 10,000 more unknown names, each 1 kB long.
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("/v1/events/{i}-{}", "n".repeat(1000)))
        .collect();
    for chunk in names.chunks(50) {
        let answers = futures_util::future::join_all(chunk.iter().cloned().map(post)).await;
        assert!(answers.iter().all(|a| *a == 404));
    }
    let after_text = metrics_text(&gw).await;
    let after = (after_text.len(), rss_kib());
    // No series was added for any of them (the one for unknown platforms counts them).
    let series = |t: &str| -> std::collections::BTreeSet<String> {
        t.lines()
            .filter(|l| l.starts_with("clw_gateway_ingress"))
            .filter_map(|l| l.rsplit_once(' ').map(|(k, _)| k.to_string()))
            .collect()
    };
    assert_eq!(series(&text), series(&after_text));
    assert!(
        after_text.lines().all(|l| l.len() < 400),
        "no long label anywhere"
    );
    assert!(
        after.0 <= before.0 + 2048,
        "/metrics grew {before:?} → {after:?}"
    );
    assert!(
        after.1 < before.1 + 32 * 1024,
        "resident memory grew {} KiB → {} KiB",
        before.1,
        after.1
    );
    gw.stop().await.unwrap();
}

/// 500 connections that send their headers and then trickle a body never hold the
/// door: a signed event from the platform is still taken, referrals keep flowing, each
/// trickler is cut off at the body timeout, and memory stays within 64 MiB of where it
/// started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_trickling_bodies_do_not_hold_the_door() {
    let s = Setup::new("hostile-slow");
    let gw = gateway(
        &s,
        "header_timeout = \"2s\"\nbody_timeout = \"2s\"\nrequest_timeout = \"4s\"\nmax_connections = 520\n",
    )
    .await;
    let data = s.dir.path().to_path_buf();
    refer(&gw, &data).await;
    let port = gw.ingress_addr.unwrap().port();
    let start_rss = rss_kib();
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let ts = now();
        let head = format!(
            "POST /v1/events/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: 4000\r\nX-CLW-Timestamp: {ts}\r\n\
             X-CLW-Signature: v1={}\r\n\r\n{{",
            "0".repeat(64)
        );
        c.write_all(head.as_bytes()).await.unwrap();
        slow.push(c);
    }
    // The platform is still heard, and a referral still flows, while they trickle.
    let ev = event("evt-during", json!({}));
    let sent = signed_post(
        port,
        "/v1/events/links",
        "application/json",
        ev.to_string().into_bytes(),
        fresh_timestamp(),
        SECRET,
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    std::fs::write(
        data.join("spool/referrals/inbox/r2.json"),
        referral_with_id("during-the-trickle").to_string(),
    )
    .unwrap();
    wait_message(&gw.store, "referral", "during-the-trickle", "delivered").await;
    // Each trickler is answered (408) or cut off by the body timeout.
    let mut cut = 0;
    for c in &mut slow {
        let _ = c.write_all(b" ").await;
    }
    for mut c in slow {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf)).await;
        if let Ok(Ok(n)) = read {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
            cut += 1;
        }
    }
    assert_eq!(cut, 500, "every trickler answered or closed");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        rss_kib() < start_rss + 64 * 1024,
        "resident memory {start_rss} KiB → {} KiB",
        rss_kib()
    );
    gw.stop().await.unwrap();
}

/// A replay is the same request whatever its header's spelling (upper-case hex, an
/// extra `v1=` value), and is refused by every instance on the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_refused_however_it_is_spelled_and_by_every_instance() {
    let s = Setup::new("hostile-replay");
    let a = gateway(&s, "").await;
    let b = {
        // A second instance on the same store (and spool).
        let mut c = s.config(&format!(
            "[ingress]\nenabled = true\nlisten = \"127.0.0.1:0\"\n{}[mappings]\ndir = \"{}\"\n",
            links_platform(),
            repo_path("mappings").display()
        ));
        c.gateway.instance = "second".into();
        c.http.enabled = false;
        c.destinations = clw_gateway::config::Destinations::embedded(&c.gateway.data_dir);
        app::start(c).await.unwrap()
    };
    let body = event("evt-replay", json!({})).to_string().into_bytes();
    let ts = fresh_timestamp();
    let signature = clw_gateway::secret::signing::sign(SECRET.as_bytes(), ts, &body);
    let send = |port: u16, signature: String| {
        let body = body.clone();
        async move {
            reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/v1/events/links"))
                .header("content-type", "application/json")
                .header("X-CLW-Timestamp", ts.to_string())
                .header("X-CLW-Signature", signature)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let (pa, pb) = (
        a.ingress_addr.unwrap().port(),
        b.ingress_addr.unwrap().port(),
    );
    assert_eq!(send(pa, signature.clone()).await, 202);
    let upper = format!("v1={}", signature[3..].to_uppercase());
    let extra = format!("v1={}, {signature}", "ab".repeat(32));
    assert_eq!(send(pa, upper.clone()).await, 409, "upper-case hex");
    assert_eq!(send(pa, extra).await, 409, "an extra v1= value");
    assert_eq!(send(pb, signature).await, 409, "another instance");
    assert_eq!(send(pb, upper).await, 409);
    // A refused request took nothing: the same signed request again is refused for its
    // content again, not as a replay.
    let bad = event("evt-replay-bad", json!({"occurred_at": "2026-13-45"}))
        .to_string()
        .into_bytes();
    let ts = fresh_timestamp();
    for _ in 0..2 {
        let sent = signed_post(
            pa,
            "/v1/events/links",
            "application/json",
            bad.clone(),
            ts,
            SECRET,
        )
        .await;
        assert_eq!(sent.status, 400, "{}", sent.body);
    }
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

/// A date that does not exist: refused at the HTTP door naming the field; dropped in
/// the spool it is parked with its reason, nothing left in processing/, nothing
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_date_is_refused_or_parked_never_written() {
    let s = Setup::new("hostile-dates");
    let gw = gateway(&s, "").await;
    let data = s.dir.path().to_path_buf();
    refer(&gw, &data).await;
    let port = gw.ingress_addr.unwrap().port();
    for (extra, field) in [
        (
            json!({"contact": {"mode": "telephone", "date": "2026-11-0é"}}),
            "contact.date",
        ),
        (json!({"occurred_at": "0000-00-00"}), "occurred_at"),
        (json!({"occurred_at": "2026-13-45"}), "occurred_at"),
        (
            json!({"occurred_at": "2026-11-01T10:00:00+99:99"}),
            "occurred_at",
        ),
    ] {
        let sent = signed_post(
            port,
            "/v1/events/links",
            "application/json",
            event("evt-date", extra).to_string().into_bytes(),
            fresh_timestamp(),
            SECRET,
        )
        .await;
        assert_eq!(sent.status, 400, "{}", sent.body);
        assert_eq!(sent.body["field"], field);
    }
    // The spool, whose files come from `links`.
    let inbox = data.join("spool/events/inbox");
    std::fs::write(
        inbox.join("bad-date.json"),
        event(
            "evt-spool-date",
            json!({"contact": {"mode": "telephone", "date": "2026-11-0é"}}),
        )
        .to_string(),
    )
    .unwrap();
    let parked = eventually("the file parked", Duration::from_secs(20), || async {
        let rows = gw
            .store
            .parked(Some("message-back"), None, 10)
            .await
            .unwrap();
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        parked[0].field.as_deref(),
        Some("contact.date"),
        "{:?}",
        parked[0]
    );
    assert!(data.join("spool/events/failed/bad-date.json").exists());
    let processing: Vec<_> = std::fs::read_dir(data.join("spool/events/processing"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(processing.is_empty(), "{processing:?}");
    let written = std::fs::read_dir(data.join("practice"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(written, 0, "nothing written");
    gw.stop().await.unwrap();
}

/// A symbolic link dropped in a spool inbox is parked, never followed: its target is
/// neither read nor made owner-only.
#[tokio::test]
async fn a_symbolic_link_in_the_spool_is_parked_never_followed() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new("hostile-link");
    let gw = app::start(s.config("")).await.unwrap();
    let data = s.dir.path().to_path_buf();
    let target = data.join("elsewhere.json");
    std::fs::write(&target, referral().to_string()).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&target, data.join("spool/referrals/inbox/link.json")).unwrap();
    let parked = eventually("the link parked", Duration::from_secs(20), || async {
        let rows = gw.store.parked(Some("referral"), None, 10).await.unwrap();
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert!(
        parked[0].reason.contains("symbolic link"),
        "{}",
        parked[0].reason
    );
    let kept = gw.store.parked_body(&parked[0].key).await.unwrap().unwrap();
    assert!(
        kept.body.unwrap_or_default().is_empty(),
        "nothing of the target kept for a replay"
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o644,
        "the target untouched"
    );
    assert!(
        gw.store
            .message("referral", REFERRAL_ID)
            .await
            .unwrap()
            .is_none(),
        "not read"
    );
    gw.stop().await.unwrap();
}

/// During a broker outage every event is answered promptly — 503 with Retry-After
/// within the request deadline, 50 at once — never queued behind a connect; once the
/// broker is back the door takes events again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_broker_outage_every_request_gets_a_prompt_503() {
    let s = Setup::new("hostile-outage");
    let hook = Receiver::start(&[]).await;
    let link = Link::start("127.0.0.1:5672".parse().unwrap()).await;
    let mut c = s.broker_config(&hook.url, &["200ms"]);
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&c).await;
    let b = c.broker.as_mut().unwrap();
    b.url = format!("amqp://guest:guest@{}/%2f", link.addr);
    b.confirm_timeout = Duration::from_secs(2);
    c.mappings.dir = repo_path("mappings");
    // SAFETY: a value no other test reads differently.
    unsafe { std::env::set_var("CLW_TEST_HOSTILE_SECRET", SECRET) };
    c.message_back = Some(
        toml::from_str(
            "writers = [\"practice-folder\"]\n[platforms.links]\n\
             secret = { env = \"CLW_TEST_HOSTILE_SECRET\" }\ndestinations = [\"clw\"]\n",
        )
        .unwrap(),
    );
    c.destinations.insert(
        "practice-folder",
        destination(&format!(
            "kind = \"practice-folder\"\ndir = {:?}\n\
             allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
            s.dir.path().join("practice").display().to_string()
        )),
    );
    c.ingress.enabled = true;
    c.ingress.listen = "127.0.0.1:0".parse().unwrap();
    c.ingress.request_timeout = Duration::from_secs(3);
    let gw = app::start(c).await.unwrap();
    let port = gw.ingress_addr.unwrap().port();
    link.blackhole();
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..50).map(|i| async move {
        let body = event(&format!("evt-outage-{i}"), json!({})).to_string();
        let ts = fresh_timestamp();
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/events/links"))
            .header("content-type", "application/json")
            .header("X-CLW-Timestamp", ts.to_string())
            .header(
                "X-CLW-Signature",
                clw_gateway::secret::signing::sign(SECRET.as_bytes(), ts, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.headers().contains_key("retry-after"),
            started.elapsed(),
        )
    }))
    .await;
    for (status, retry_after, took) in &answers {
        assert_eq!(*status, 503);
        assert!(*retry_after, "Retry-After with every 503");
        assert!(*took < Duration::from_secs(5), "answered in {took:?}");
    }
    link.pass();
    let body = event("evt-after", json!({})).to_string().into_bytes();
    eventually("the door taking events again", WAIT, || async {
        let sent = signed_post(
            port,
            "/v1/events/links",
            "application/json",
            body.clone(),
            fresh_timestamp(),
            SECRET,
        )
        .await;
        (sent.status == 202).then_some(())
    })
    .await;
    gw.stop().await.unwrap();
    rabbit.cleanup(&t).await;
}

/// No refusal or parked reason quotes what it was sent: every field of an event given a
/// value of the wrong type or shape (a marker that stands for an NHS number or free
/// text), at the HTTP door and through the spool, and the marker appears in no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_refusal_or_parked_reason_quotes_an_input_value() {
    let s = Setup::new("hostile-values");
    let gw = gateway(&s, "").await;
    let data = s.dir.path().to_path_buf();
    refer(&gw, &data).await;
    let port = gw.ingress_addr.unwrap().port();
    const MARK: &str = "9434765919";
    let mark_values = [
        json!(MARK),
        json!(9434765919u64),
        json!([MARK]),
        json!({"x": MARK}),
    ];
    let base = event("evt-v", json!({}));
    let mut paths = Vec::new();
    fn leaves(v: &Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let mut p = path.clone();
                    p.push(k.clone());
                    leaves(c, p, out);
                }
            }
            _ => out.push(path),
        }
    }
    leaves(&base, Vec::new(), &mut paths);
    let mut cases = Vec::new();
    for path in &paths {
        for v in &mark_values {
            let mut e = base.clone();
            let mut at = &mut e;
            for k in &path[..path.len() - 1] {
                at = &mut at[k.as_str()];
            }
            at[path.last().unwrap().as_str()] = v.clone();
            cases.push(e);
        }
    }
    // And fields the format does not have, named by the marker.
    let mut unknown = base.clone();
    unknown[MARK] = json!(1);
    cases.push(unknown);
    let mut refused = 0;
    for (i, e) in cases.iter().enumerate() {
        let mut e = e.clone();
        if e["event_id"].is_string() && e["event_id"] != MARK {
            e["event_id"] = json!(format!("evt-v{i}"));
        }
        let sent = signed_post(
            port,
            "/v1/events/links",
            "application/json",
            e.to_string().into_bytes(),
            fresh_timestamp(),
            SECRET,
        )
        .await;
        // An accepted event is answered with its own id (the platform's, not patient
        // data); a refusal names the field and says why, quoting nothing.
        if sent.status != 202 {
            let answer = sent.body.to_string();
            assert!(!answer.contains(MARK), "{e}\n→ {answer}");
        }
        refused += usize::from(sent.status == 400);
        std::fs::write(
            data.join(format!("spool/events/inbox/v{i}.json")),
            e.to_string(),
        )
        .unwrap();
    }
    assert!(
        refused > cases.len() / 2,
        "most refused at the door: {refused}"
    );
    let parked = eventually(
        "the spool's files settled",
        Duration::from_secs(60),
        || async {
            let inbox = std::fs::read_dir(data.join("spool/events/inbox"))
                .unwrap()
                .count();
            let rows = gw
                .store
                .parked(Some("message-back"), None, 10_000)
                .await
                .unwrap();
            (inbox == 0 && rows.len() >= refused).then_some(rows)
        },
    )
    .await;
    for p in &parked {
        assert!(!p.reason.contains(MARK), "{}", p.reason);
    }
    gw.stop().await.unwrap();
}
