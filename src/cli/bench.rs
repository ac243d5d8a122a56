//! `clw-gateway bench`: end-to-end referrals/s (queue → decode → deliver to a local HTTP
//! receiver → store → ack) beside a raw lapin consume-and-ack loop, on the same broker
//! and the same message, and the ratio of the two.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::try_join_all;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};

use crate::config::Config;
use crate::error::{GatewayError, Result, Stage};
use crate::sources::broker;

/// The referral every benchmark message carries (a UK Core message Bundle).
pub const SAMPLE_REFERRAL: &str = include_str!("../../examples/referral-bundle.json");

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Messages per run.
    #[arg(long, default_value_t = 5000)]
    pub messages: usize,
    /// Prefetch for both the raw loop and the gateway.
    #[arg(long, default_value_t = 64)]
    pub prefetch: u16,
    /// Broker to measure on (default: the configured one, else local guest).
    #[arg(long)]
    pub broker_url: Option<String>,
}

fn properties(id: String) -> BasicProperties {
    let mut h = FieldTable::default();
    for (k, v) in [
        ("ce-id", id),
        ("ce-specversion", "1.0".to_string()),
        (
            "ce-type",
            crate::intake::envelope::REFERRAL_EVENT_TYPE.to_string(),
        ),
        ("ce-source", "urn:clw-gateway:bench".to_string()),
    ] {
        h.insert(
            ShortString::from(k),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    BasicProperties::default()
        .with_content_type(ShortString::from("application/fhir+json"))
        .with_delivery_mode(2)
        .with_headers(h)
}

/// Publishes `n` copies (each with its own ce-id), confirms pipelined in windows.
async fn publish_n(ch: &Channel, exchange: &str, key: &str, n: usize, run: &str) -> Result<()> {
    let body = SAMPLE_REFERRAL.as_bytes();
    for start in (0..n).step_by(500) {
        let mut confirms = Vec::new();
        for i in start..(start + 500).min(n) {
            confirms.push(
                ch.basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(key),
                    BasicPublishOptions::default(),
                    body,
                    properties(format!("{run}-{i}")),
                )
                .await?,
            );
        }
        try_join_all(confirms).await?;
    }
    Ok(())
}

async fn raw_loop(ch: &Channel, n: usize, prefetch: u16, run: &str) -> Result<Duration> {
    let queue = format!("bench.raw.{run}");
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    ch.queue_declare(
        ShortString::from(queue.as_str()),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    publish_n(ch, "", &queue, n, run).await?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let started = Instant::now();
    let mut consumer = ch
        .basic_consume(
            ShortString::from(queue.as_str()),
            ShortString::from("bench-raw"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut seen = 0;
    while seen < n {
        let Some(d) = consumer.next().await else {
            break;
        };
        d?.acker.ack(BasicAckOptions::default()).await?;
        seen += 1;
    }
    let elapsed = started.elapsed();
    ch.basic_cancel(ShortString::from("bench-raw"), Default::default())
        .await?;
    ch.queue_delete(
        ShortString::from(queue.as_str()),
        QueueDeleteOptions::default(),
    )
    .await?;
    Ok(elapsed)
}

async fn receiver() -> Result<(String, Arc<AtomicUsize>)> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/referrals",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| GatewayError::permanent(Stage::Config, format!("bench receiver: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| GatewayError::permanent(Stage::Config, e.to_string()))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}/referrals"), count))
}

async fn end_to_end(
    url: &str,
    ch: &Channel,
    args: &BenchArgs,
    run: &str,
    dir: &Path,
) -> Result<Duration> {
    let (hook, delivered) = receiver().await?;
    let config = Config::from_toml(
        &format!(
            "[gateway]\ninstance = \"bench-{run}\"\n[http]\nenabled = false\n[store]\nurl = \"sqlite://{}/bench.db?mode=rwc\"\n\
             [broker]\nurl = \"{url}\"\nprefix = \"bench-{run}\"\nprefetch = {}\n\
             [retry]\ntiers = [\"1s\"]\n[referrals]\ndestinations = [\"hook\"]\n\
             [destinations.hook]\nkind = \"webhook\"\nurl = \"{hook}\"\n\
             allow = [\"person_demographics\", \"contact_preferences\", \"referral_details\", \"referrer_details\", \"gp_practice\", \"referred_to\", \"consent\"]\n",
            dir.display(),
            args.prefetch,
        ),
        Vec::new(),
    )
    .map_err(|e| GatewayError::permanent(Stage::Config, e.to_string()))?;
    let topology = config
        .transport()
        .topology(crate::model::Flow::Referral)
        .ok_or_else(|| GatewayError::permanent(Stage::Config, "bench config has no [broker]"))?;
    topology.declare(ch).await?;
    publish_n(ch, &topology.exchange(), "referral.new", args.messages, run).await?;

    // The same application `serve` runs, built the same way.
    let started = Instant::now();
    let running = crate::app::start(config).await?;

    let deadline = Instant::now() + Duration::from_secs(600);
    while delivered.load(Ordering::Relaxed) < args.messages && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Delivered is not yet acked: wait until the queue is drained too.
    loop {
        let q = ch
            .queue_declare(
                ShortString::from(topology.queue()),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        if q.message_count() == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    running.stop().await?;
    let got = delivered.load(Ordering::Relaxed);
    for q in topology.queue_names() {
        ch.queue_delete(ShortString::from(q), QueueDeleteOptions::default())
            .await?;
    }
    for e in topology.exchange_names() {
        ch.exchange_delete(ShortString::from(e), ExchangeDeleteOptions::default())
            .await?;
    }
    if got != args.messages {
        return Err(GatewayError::permanent(
            Stage::Deliver,
            format!("receiver got {got} of {} messages", args.messages),
        ));
    }
    Ok(elapsed)
}

pub async fn run(config: &Config, args: BenchArgs) -> Result<()> {
    let url = args
        .broker_url
        .clone()
        .or_else(|| config.broker.as_ref().map(|b| b.url.clone()))
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let dir = std::env::temp_dir().join(format!("clw-bench-{run}"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| GatewayError::permanent(Stage::Config, e.to_string()))?;
    let conn = broker::connect(&url, "clw-gateway bench").await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;

    println!(
        "messages: {}  prefetch: {}  body: {} bytes",
        args.messages,
        args.prefetch,
        SAMPLE_REFERRAL.len()
    );
    let raw = raw_loop(&ch, args.messages, args.prefetch, &run).await?;
    let raw_rate = args.messages as f64 / raw.as_secs_f64();
    println!(
        "raw lapin consume+ack : {:>8.0} msg/s  ({:.2} s)",
        raw_rate,
        raw.as_secs_f64()
    );
    let e2e = end_to_end(&url, &ch, &args, &run, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let e2e = e2e?;
    let e2e_rate = args.messages as f64 / e2e.as_secs_f64();
    println!(
        "gateway end to end    : {:>8.0} referrals/s  ({:.2} s)",
        e2e_rate,
        e2e.as_secs_f64()
    );
    println!(
        "ratio                 : {:>8.1} % of the raw loop",
        100.0 * e2e_rate / raw_rate
    );
    let _ = conn.close(200, ShortString::from("bench done")).await;
    Ok(())
}
