//! The gateway binary under load, as an operator runs it: `clw-gateway serve` as its own
//! process against RabbitMQ, delivering to a webhook receiver in this process. Measures
//! start-up time, idle and peak RSS, backlog drain rate beside a raw lapin loop on the
//! same broker, and latency at a fixed rate; prints a markdown table.
//!
//!     cargo bench --bench load                       # needs RabbitMQ on 127.0.0.1:5672
//!     cargo bench --bench load -- --backlog 100000 --rate 100 --seconds 30
//!
//! CLW_BENCH_AMQP_URL overrides the broker; RUST_LOG is passed on to the gateway. Every
//! queue and exchange of a run is named `bench-load-<uuid8>…` and deleted at the end.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clw_gateway::cli::bench::SAMPLE_REFERRAL;
use clw_gateway::intake::envelope::REFERRAL_EVENT_TYPE;
use clw_gateway::sources::broker::{Topology, headers};
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// The same prefetch for the gateway and the raw consumer, so the ratio is like for like.
const PREFETCH: u16 = 64;
/// Every section of the canonical referral: what the PRSB webhook may receive.
const PRSB_ALLOW: &str = "[\"person_demographics\", \"contact_preferences\", \"referral_details\", \"referrer_details\", \"gp_practice\", \"referred_to\", \"consent\"]";

fn amqp_url() -> String {
    std::env::var("CLW_BENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

struct Args {
    backlog: usize,
    rate: u32,
    seconds: u32,
}

fn parse_args() -> Args {
    fn num<T: std::str::FromStr>(v: Option<&String>, k: &str) -> T {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} needs a number"))
    }
    let (mut backlog, mut rate, mut seconds) = (100_000, 100, 30);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    // Anything else is ignored: cargo passes `--bench` to every bench binary.
    while let Some(k) = it.next() {
        match k.as_str() {
            "--backlog" => backlog = num(it.next(), k),
            "--rate" => rate = num(it.next(), k),
            "--seconds" => seconds = num(it.next(), k),
            _ => {}
        }
    }
    assert!(
        backlog > 0 && rate > 0 && seconds > 0,
        "arguments must be > 0"
    );
    Args {
        backlog,
        rate,
        seconds,
    }
}

/// First arrival of each message id (a resend keeps the first), shared with a receiver.
#[derive(Default)]
struct Arrivals(Mutex<HashMap<String, Instant>>);

impl Arrivals {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn note(&self, id: String, at: Instant) {
        self.0.lock().unwrap().entry(id).or_insert(at);
    }
    /// Everything so far, leaving it empty for the next phase.
    fn take(&self) -> HashMap<String, Instant> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The platform: reads the body (as a real one would), notes X-Correlation-ID (the
/// ce-id), answers 201.
async fn platform(State(a): State<Arc<Arrivals>>, h: HeaderMap, _body: Bytes) -> StatusCode {
    let at = Instant::now();
    if let Some(id) = h.get("x-correlation-id").and_then(|v| v.to_str().ok()) {
        a.note(id.to_string(), at);
    }
    StatusCode::CREATED
}

/// The gateway binary, logging to a file shown when the bench fails.
struct Gateway {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Gateway {
    fn spawn(&mut self) -> R<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A gateway that died must fail the bench now, not look slow until a deadline.
    fn check_alive(&mut self) -> R<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            return Err(format!("the gateway exited ({status})").into());
        }
        Ok(())
    }

    /// SIGTERM, the operator's graceful stop; SIGKILL if it is not gone in 30 s.
    async fn stop(&mut self) -> R<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!("the gateway ignored SIGTERM for 30 s: SIGKILL");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// A bench that panics leaves no gateway running.
impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), in KiB.
fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?.trim();
        v.strip_suffix("kB")?.trim().parse().ok()
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Polls `done` until true or the deadline; a gateway that exits fails it at once.
async fn wait_until(
    what: &str,
    within: Duration,
    gw: &mut Gateway,
    mut done: impl AsyncFnMut() -> R<bool>,
) -> R<()> {
    let deadline = Instant::now() + within;
    while !done().await? {
        gw.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!("timed out after {within:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn properties(id: &str) -> BasicProperties {
    let mut h = FieldTable::default();
    for (k, v) in [
        ("ce-id", id),
        ("ce-specversion", "1.0"),
        ("ce-type", REFERRAL_EVENT_TYPE),
        ("ce-source", "urn:clw-gateway:bench-load"),
    ] {
        h.insert(k.into(), AMQPValue::LongString(LongString::from(v)));
    }
    BasicProperties::default()
        .with_content_type(ShortString::from("application/fhir+json"))
        .with_delivery_mode(2)
        .with_headers(h)
}

/// Publishes `n` copies with ce-ids `{prefix}-{i}`; returns when each was handed to the
/// client. Unpaced (a backlog): confirms pipelined in windows of 500, as `clw-gateway
/// bench` does. Paced at `rate`/s: confirms awaited only at the end, so a slow confirm
/// never delays the next publish (a late tick is followed by a catch-up burst, the
/// interval's default, which keeps the average rate).
async fn publish(
    ch: &Channel,
    (exchange, key): &(String, String),
    prefix: &str,
    n: usize,
    rate: Option<u32>,
) -> R<HashMap<String, Instant>> {
    let mut tick = rate.map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(r))));
    let (mut sent, mut confirms) = (HashMap::with_capacity(n), Vec::new());
    for i in 0..n {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        let id = format!("{prefix}-{i}");
        let props = properties(&id);
        sent.insert(id, Instant::now());
        let opts = BasicPublishOptions::default();
        let body = SAMPLE_REFERRAL.as_bytes();
        let (x, k) = (exchange.as_str().into(), key.as_str().into());
        confirms.push(ch.basic_publish(x, k, opts, body, props).await?);
        if tick.is_none() && confirms.len() == 500 {
            try_join_all(std::mem::take(&mut confirms)).await?;
        }
    }
    try_join_all(confirms).await?;
    Ok(sent)
}

/// Ready messages in a queue (unacked ones are not counted).
async fn ready_count(ch: &Channel, queue: &str) -> R<u32> {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare(queue.into(), opts, FieldTable::default())
        .await?;
    Ok(q.message_count())
}

/// The raw loop: a lapin consumer on its own connection (as the gateway has its own)
/// that acks each delivery and notes when its ce-id arrived. Runs until aborted.
async fn raw_consumer(
    queue: &str,
    seen: Arc<Arrivals>,
) -> R<(Connection, tokio::task::JoinHandle<()>)> {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let (tag, opts, args) = (
        "bench-load-raw".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    );
    let mut consumer = ch.basic_consume(queue.into(), tag, opts, args).await?;
    let task = tokio::spawn(async move {
        let _channel = ch; // the consumer's channel lives as long as the loop
        while let Some(Ok(d)) = consumer.next().await {
            let at = Instant::now();
            let h = headers::from_table(d.properties.headers().as_ref());
            let _ = d.acker.ack(BasicAckOptions::default()).await;
            if let Some(id) = h.get("ce-id") {
                seen.note(id.clone(), at);
            }
        }
    });
    Ok((conn, task))
}

/// One run's broker objects, receiver and gateway, and the table rows measured so far.
struct World {
    conn: Connection,
    ch: Channel,
    topology: Topology,
    raw_queue: String,
    run: String,
    readyz: String,
    http: reqwest::Client,
    arrivals: Arc<Arrivals>,
    gw: Gateway,
    rows: Vec<String>,
}

impl World {
    async fn new(dir: &Path) -> R<World> {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let run = format!("bench-load-{}", &uuid[..8]);
        let arrivals = Arc::new(Arrivals::default());
        let app = axum::Router::new()
            .route("/referrals", axum::routing::post(platform))
            .with_state(arrivals.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hook = format!("http://{}/referrals", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        // The gateway binds its HTTP port itself, so the config must name a free one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mappings = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mappings");
        let (d, m) = (dir.display().to_string(), mappings.display().to_string());
        let text = format!(
            "[gateway]\ninstance = \"{run}\"\ndata_dir = {d:?}\n\
             [store]\nurl = \"sqlite://{d}/gw.db?mode=rwc\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n[mappings]\ndir = {m:?}\n\
             [broker]\nurl = \"{url}\"\nprefix = \"{run}\"\nprefetch = {PREFETCH}\n\
             [retry]\ntiers = [\"1s\"]\n[referrals]\ndestinations = [\"platform\"]\n\
             [destinations.platform]\nkind = \"webhook\"\nurl = \"{hook}\"\n\
             timeout = \"5s\"\nallow = {PRSB_ALLOW}\n",
            url = amqp_url(),
        );
        let config = dir.join("gateway.toml");
        std::fs::write(&config, text)?;
        let loaded = clw_gateway::config::Config::load(Some(config.as_path()), Vec::new())
            .map_err(|e| format!("bench config: {e}"))?;
        let topology = loaded
            .transport()
            .topology(clw_gateway::model::Flow::Referral)
            .ok_or("bench config has no [broker]")?;
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let http = reqwest::Client::builder().no_proxy();
        let log = dir.join("gateway.log");
        Ok(World {
            conn,
            ch,
            topology,
            raw_queue: format!("{run}.raw"),
            run,
            readyz: format!("http://127.0.0.1:{port}/readyz"),
            http: http.timeout(Duration::from_secs(2)).build()?,
            arrivals,
            gw: Gateway {
                config,
                log,
                child: None,
            },
            rows: Vec::new(),
        })
    }

    fn row(&mut self, measure: impl Display, value: impl Display, note: impl Display) {
        eprintln!("{measure}: {value}");
        self.rows.push(format!("| {measure} | {value} | {note} |"));
    }

    /// The gateway's topology declared exactly as the gateway declares it, so a backlog
    /// can wait in its queue while it is stopped; and a quorum queue (the same queue
    /// type) for the raw loop.
    async fn declare(&self) -> R<()> {
        let declared = self.topology.declare(&self.ch).await;
        declared.map_err(|e| format!("declare: {e}"))?;
        let mut args = FieldTable::default();
        let quorum = AMQPValue::LongString(LongString::from("quorum"));
        args.insert("x-queue-type".into(), quorum);
        let opts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let queue = self.raw_queue.as_str().into();
        self.ch.queue_declare(queue, opts, args).await?;
        Ok(())
    }

    async fn wait_ready(&mut self) -> R<()> {
        let (http, url) = (self.http.clone(), self.readyz.clone());
        let within = Duration::from_secs(60);
        wait_until("/readyz 200", within, &mut self.gw, async || -> R<bool> {
            let r = http.get(&url).send().await;
            Ok(r.is_ok_and(|r| r.status() == reqwest::StatusCode::OK))
        })
        .await
    }

    async fn measure(&mut self, a: &Args) -> R<()> {
        let n = a.backlog;
        self.declare().await?;

        // 1-2. Start-up on a fresh store; then what the idle process holds.
        let t0 = Instant::now();
        self.gw.spawn()?;
        self.wait_ready().await?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        self.row(
            "start-up (spawn → /readyz 200)",
            format!("{ms:.0} ms"),
            "fresh store",
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = proc_kib(self.gw.pid(), "VmRSS").ok_or("no VmRSS")?;
        self.row(
            "idle RSS",
            format!("{:.1} MiB", mib(idle)),
            "VmRSS 2 s after ready",
        );
        self.gw.stop().await?;

        // 3a. The raw loop, while the gateway is stopped so neither disturbs the other.
        // Its clock starts before the consumer connects, as the gateway's does at spawn.
        let within = Duration::from_secs(60) + Duration::from_millis(5 * n as u64);
        let raw_to = (String::new(), self.raw_queue.clone());
        publish(&self.ch, &raw_to, &format!("{}-rd", self.run), n, None).await?;
        let seen = Arc::new(Arrivals::default());
        let t0 = Instant::now();
        let (raw_conn, raw_task) = raw_consumer(&raw_to.1, seen.clone()).await?;
        let s = seen.clone();
        wait_until("the raw loop", within, &mut self.gw, async || -> R<bool> {
            Ok(s.len() >= n)
        })
        .await?;
        let raw_time = t0.elapsed().as_secs_f64();
        let raw_rate = n as f64 / raw_time;
        seen.take();
        let what = format!("raw consume+ack, {n} msgs");
        let note = format!("quorum queue, prefetch {PREFETCH}");
        self.row(what, format!("{raw_time:.2} s, {raw_rate:.0} msg/s"), note);

        // 3b. The same backlog waiting for the stopped gateway; the clock runs from spawn
        // (start-up included) until the platform has every id and the queue is empty.
        let gw_to = (self.topology.exchange(), "referral.new".to_string());
        publish(&self.ch, &gw_to, &format!("{}-d", self.run), n, None).await?;
        self.arrivals.take();
        let t0 = Instant::now();
        self.gw.spawn()?;
        let (pid, peak) = (self.gw.pid(), Arc::new(AtomicU64::new(0)));
        let p = peak.clone();
        let sampler = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                p.fetch_max(proc_kib(pid, "VmRSS").unwrap_or(0), Ordering::Relaxed);
            }
        });
        let (arr, ch, queue) = (
            self.arrivals.clone(),
            self.ch.clone(),
            self.topology.queue(),
        );
        let drained = wait_until("the drain", within, &mut self.gw, async || -> R<bool> {
            Ok(arr.len() >= n && ready_count(&ch, &queue).await? == 0)
        })
        .await;
        let time = t0.elapsed().as_secs_f64();
        let hwm = proc_kib(pid, "VmHWM").unwrap_or(0);
        sampler.abort();
        drained.map_err(|e| format!("{e} ({} of {n} arrived)", self.arrivals.len()))?;
        let rate = n as f64 / time;
        let what = format!("gateway backlog drain, {n} referrals");
        let note = "spawn → every id at the platform and the queue empty";
        self.row(what, format!("{time:.2} s, {rate:.0} referrals/s"), note);
        self.row(
            "gateway / raw",
            format!("{:.1} %", 100.0 * rate / raw_rate),
            "",
        );
        let sampled = mib(peak.load(Ordering::Relaxed));
        let value = format!("{:.1} MiB VmHWM ({sampled:.1} sampled)", mib(hwm));
        // The target is 40 MB (decimal): 38.1 MiB.
        let met = if hwm * 1024 < 40_000_000 {
            "met"
        } else {
            "NOT met"
        };
        let note = format!("target < 40 MB: {met}; VmRSS sampled every 100 ms");
        self.row("peak RSS during the drain", value, note);

        // 4. Latency at a fixed rate through the gateway (idle again), then through the
        // broker alone to the raw consumer, which is still running.
        self.wait_ready().await?;
        self.arrivals.take();
        let total = (a.rate * a.seconds) as usize;
        let within = Duration::from_secs(60);
        let prefix = format!("{}-l", self.run);
        let sent = publish(&self.ch, &gw_to, &prefix, total, Some(a.rate)).await?;
        let arr = self.arrivals.clone();
        wait_until("latency", within, &mut self.gw, async || -> R<bool> {
            Ok(arr.len() >= total)
        })
        .await?;
        let gw_lat = latencies(&sent, &self.arrivals.take());
        let prefix = format!("{}-rl", self.run);
        let sent = publish(&self.ch, &raw_to, &prefix, total, Some(a.rate)).await?;
        wait_until("raw latency", within, &mut self.gw, async || -> R<bool> {
            Ok(s.len() >= total)
        })
        .await?;
        let raw_lat = latencies(&sent, &seen.take());
        raw_task.abort();
        let _ = raw_conn.close(200, "raw loop done".into()).await;
        let what = format!("gateway latency, {}/s for {} s", a.rate, a.seconds);
        let note = format!("{total} sent; publish → platform");
        self.row(what, summary(&gw_lat), note);
        let note = format!("{total} sent; publish → lapin consumer");
        self.row("raw broker latency, same rate", summary(&raw_lat), note);
        let added = |q| pct(&gw_lat, q) - pct(&raw_lat, q);
        let value = format!("p50 {:+.1} / p99 {:+.1} ms", added(0.5), added(0.99));
        self.row("gateway added latency", value, "gateway minus raw");
        Ok(())
    }

    /// Runs whatever failed: the gateway stopped first (it holds the store and a
    /// consumer), then every queue and exchange of this run deleted.
    async fn cleanup(mut self) {
        let _ = self.gw.stop().await;
        let mut queues = self.topology.queue_names();
        queues.push(self.raw_queue.clone());
        for q in queues {
            let opts = QueueDeleteOptions::default();
            if let Err(e) = self.ch.queue_delete(q.as_str().into(), opts).await {
                eprintln!("could not delete queue {q}: {e}");
            }
        }
        for x in self.topology.exchange_names() {
            let opts = ExchangeDeleteOptions::default();
            if let Err(e) = self.ch.exchange_delete(x.as_str().into(), opts).await {
                eprintln!("could not delete exchange {x}: {e}");
            }
        }
        let _ = self.conn.close(200, "bench done".into()).await;
    }
}

/// Arrival − publish for every id that arrived, sorted.
fn latencies(sent: &HashMap<String, Instant>, seen: &HashMap<String, Instant>) -> Vec<Duration> {
    let mut v: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, t)| Some(seen.get(id)?.saturating_duration_since(*t)))
        .collect();
    v.sort();
    v
}

/// Nearest-rank percentile, ms.
fn pct(sorted: &[Duration], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let i = ((q * sorted.len() as f64).ceil() as usize).saturating_sub(1);
    sorted[i.min(last)].as_secs_f64() * 1e3
}

fn summary(v: &[Duration]) -> String {
    let (p50, p99, max) = (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
    format!(
        "p50 {p50:.1} / p99 {p99:.1} / max {max:.1} ms ({} arrived)",
        v.len()
    )
}

fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// What someone needs to reproduce a figure.
fn print_header(a: &Args) {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let field = |text: &str, key: &str| {
        let line = text.lines().find(|l| l.starts_with(key))?;
        Some(line.split_once(':')?.1.trim().to_string())
    };
    let url = amqp_url();
    // The broker without its credentials.
    let broker = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
    let rabbit = sh("rabbitmqctl", &["-q", "version"]).unwrap_or_else(|| "?".into());
    let commit = sh("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "?".into());
    let dirty = sh("git", &["status", "--porcelain"]).map_or("", |_| " + uncommitted changes");
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let (backlog, rate, seconds) = (a.backlog, a.rate, a.seconds);
    let args: Vec<String> = std::env::args().collect();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = field(&read("/proc/cpuinfo"), "model name").unwrap_or_default();
    let mem = field(&read("/proc/meminfo"), "MemTotal").unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease");
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "(unset: config default)".into());
    println!("## clw-gateway load bench\n");
    println!(
        "- `cargo bench --bench load -- --backlog {backlog} --rate {rate} --seconds {seconds}`"
    );
    println!("- argv: `{}`", args.join(" "));
    println!(
        "- {date}; commit {commit}{dirty}; binary {}",
        env!("CARGO_BIN_EXE_clw-gateway")
    );
    println!(
        "- nproc {nproc}; {cpu}; MemTotal {mem}; kernel {}",
        kernel.trim()
    );
    println!("- RabbitMQ {rabbit} at {broker}");
    println!(
        "- gateway: prefetch {PREFETCH}, SQLite in a temp dir, one PRSB webhook to a receiver \
         in this process answering 201; RUST_LOG={log}"
    );
    println!(
        "- body: {} bytes (examples/referral-bundle.json)\n",
        SAMPLE_REFERRAL.len()
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = parse_args();
    print_header(&a);
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut world = match World::new(dir.path()).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("bench set-up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = world.measure(&a).await;
    if let Err(e) = &result {
        eprintln!(
            "bench failed: {e}\ngateway log (last lines):\n{}",
            world.gw.log_tail()
        );
    }
    // What was measured is printed even when a later phase failed.
    println!("| measure | value | notes |\n|---|---|---|");
    for row in &world.rows {
        println!("{row}");
    }
    world.cleanup().await;
    let _ = dir.close();
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
