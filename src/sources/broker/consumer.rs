//! The RabbitMQ source: consume with bounded prefetch, run each message through the
//! pipeline, then settle it — ack only once the outcome is durable (recorded in the
//! store, and for retries and parking, confirmed by the broker).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::headers::{
    self, ATTEMPTS, ERROR, ERROR_CLASS, FIELD, MAPPING_VERSION, MESSAGE_ID, PARKED_AT, PARKED_BY,
    ROUTING_KEY, STAGE,
};
use super::{Topology, connect};
use crate::engine::{Disposition, Inbound, Pipeline, SourceStatus};
use crate::error::{GatewayError, Result, Stage};
use crate::intake::envelope::ATTEMPT_HEADER;
use crate::secret::seal::{BROKER_USER_HEADER, BROKER_USER_SEAL_HEADER, Sealer};
use crate::sources::shutdown::Shutdown;

pub struct BrokerSource {
    pub url: String,
    /// AMQP connection name: shows in the management UI and `rabbitmqctl list_connections`.
    pub name: String,
    pub prefetch: u16,
    pub topology: Topology,
    pub pipeline: Arc<Pipeline>,
    pub status: Arc<SourceStatus>,
    /// Bytes of message bodies in flight at most (`intake.max_in_flight_bytes`).
    pub budget: Arc<tokio::sync::Semaphore>,
    pub budget_bytes: usize,
    /// Longest wait for a publish confirm (retries, parking).
    pub confirm_timeout: Duration,
    /// Seals the broker user of a message the gateway republishes (`crate::secret::seal`).
    pub sealer: Sealer,
}

/// What a delivery's handler needs beside the delivery.
struct Context {
    pipeline: Arc<Pipeline>,
    topology: Topology,
    publisher: Channel,
    status: Arc<SourceStatus>,
    confirm_timeout: Duration,
    sealer: Sealer,
    /// A publish probe is running (see [`probe`]).
    probing: std::sync::atomic::AtomicBool,
}

/// After publishing failed, checks whether the broker takes publishes again: an empty
/// message to the retry exchange under a key nothing is bound to (dropped by RabbitMQ,
/// but confirmed). Ready again once it is.
async fn probe(cx: &Context) {
    let ok = publish_within(
        cx.confirm_timeout,
        &cx.publisher,
        &cx.topology.retry_exchange(),
        "readiness-probe",
        b"",
        BasicProperties::default(),
    )
    .await
    .is_ok();
    if ok {
        info!("the broker takes publishes again");
        cx.status.set(true);
    }
    cx.probing.store(false, std::sync::atomic::Ordering::SeqCst);
}

/// How long a publish may wait for the broker's confirm, unless configured.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes and waits (up to [`CONFIRM_TIMEOUT`]) for the broker's confirm.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<()> {
    publish_within(CONFIRM_TIMEOUT, ch, exchange, routing_key, body, properties).await
}

/// Publishes and waits for the broker's confirm, up to `timeout`. Many tasks publish on
/// one channel at once, so confirms are pipelined rather than one-by-one.
pub async fn publish_within(
    timeout: Duration,
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<()> {
    let publish = async {
        Ok::<_, GatewayError>(
            ch.basic_publish(
                ShortString::from(exchange),
                ShortString::from(routing_key),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?
            .await?,
        )
    };
    // A broker in a resource alarm takes publishes and never confirms them.
    let confirm = tokio::time::timeout(timeout, publish).await.map_err(|_| {
        GatewayError::transient(
            Stage::Broker,
            format!(
                "the broker did not confirm a publish within {}ms (a resource alarm?)",
                timeout.as_millis()
            ),
        )
    })??;
    match confirm {
        Confirmation::Nack(_) => Err(GatewayError::transient(
            Stage::Broker,
            "the broker refused the message (nack)",
        )),
        _ => Ok(()),
    }
}

impl BrokerSource {
    /// Runs until shutdown, reconnecting (with backoff) when a session fails in a way
    /// lapin's own recovery does not mend.
    pub async fn run(&self, shutdown: Shutdown) -> Result<()> {
        let mut backoff = Duration::from_millis(500);
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            match self.session(shutdown.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.status.set(false);
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "broker session ended; reconnecting");
                    let mut s = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {},
                        _ = s.wait() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn session(&self, mut shutdown: Shutdown) -> Result<()> {
        let conn = connect(&self.url, &self.name).await?;
        let ch = conn.create_channel().await?;
        self.topology.declare(&ch).await?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        // Retries and parking publish on a connection of their own: a broker blocking
        // publishers (a memory or disk alarm) must not hold up the consumer's acks.
        let pub_conn = connect(&self.url, &format!("{} publish", self.name)).await?;
        let publisher = pub_conn.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let context = Arc::new(Context {
            pipeline: self.pipeline.clone(),
            topology: self.topology.clone(),
            publisher: publisher.clone(),
            status: self.status.clone(),
            confirm_timeout: self.confirm_timeout,
            sealer: self.sealer.clone(),
            probing: std::sync::atomic::AtomicBool::new(false),
        });
        let mut probe_every =
            tokio::time::interval(self.confirm_timeout.max(Duration::from_secs(1)));
        probe_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let tag = format!("{}-{}", self.name, uuid::Uuid::new_v4().simple());
        let mut consumer = ch
            .basic_consume(
                ShortString::from(self.topology.queue()),
                ShortString::from(tag.as_str()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.status.set(true);
        info!(queue = %self.topology.queue(), prefetch = self.prefetch, "consuming");

        let mut tasks = JoinSet::new();
        let result = loop {
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = shutdown.wait() => break Ok(()),
                _ = probe_every.tick() => {
                    if !self.status.is_up() && !context.probing.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        let cx = context.clone();
                        tasks.spawn(async move { probe(&cx).await });
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        // Bodies in flight are held to a byte budget: past it, consuming waits.
                        let bytes = delivery.data.len().clamp(1, self.budget_bytes) as u32;
                        let permit = tokio::select! {
                            p = self.budget.clone().acquire_many_owned(bytes) => p.ok(),
                            _ = shutdown.wait() => None,
                        };
                        let cx = context.clone();
                        let source = format!("amqp:{}", self.topology.queue());
                        let metrics = self.pipeline.metrics().clone();
                        tasks.spawn(async move {
                            guarded(delivery, metrics, |delivery| async move {
                                handle(&cx, delivery, source).await;
                            })
                            .await;
                            drop(permit);
                        });
                    }
                    Some(Err(e)) => {
                        self.status.set(false);
                        warn!(error = %e, "broker connection lost; waiting for recovery");
                        if let Err(e) = ch.wait_for_recovery(e).await {
                            break Err(e.into());
                        }
                        info!("broker connection recovered");
                        self.status.set(true);
                    }
                    None => break Err(GatewayError::transient(Stage::Broker, "the consumer was cancelled by the broker")),
                }
            }
        };
        // Stop new deliveries first, then let in-flight work finish and settle.
        // Prefetched messages not yet started are requeued when the channel closes.
        let _ = ch
            .basic_cancel(
                ShortString::from(tag.as_str()),
                BasicCancelOptions::default(),
            )
            .await;
        while tasks.join_next().await.is_some() {}
        let _ = ch.close(200, ShortString::from("shutdown")).await;
        let _ = publisher.close(200, ShortString::from("shutdown")).await;
        let _ = pub_conn.close(200, ShortString::from("shutdown")).await;
        let _ = conn.close(200, ShortString::from("shutdown")).await;
        self.status.set(false);
        result
    }
}

/// Runs a delivery's handler; if it panics, the delivery is returned to the queue (its
/// prefetch slot freed, not leaked until the consumer stalls) and the panic counted.
/// A message that panics every time is dead-lettered by the queue's delivery limit.
pub async fn guarded<F, Fut>(
    delivery: Delivery,
    metrics: crate::engine::metrics::Metrics,
    handler: F,
) where
    F: FnOnce(Delivery) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures_util::FutureExt;
    let acker = delivery.acker.clone();
    if std::panic::AssertUnwindSafe(handler(delivery))
        .catch_unwind()
        .await
        .is_err()
    {
        metrics.handler_panics.inc();
        warn!("a message handler panicked; its message goes back to the queue");
        let _ = acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await;
    }
}

/// After a failed settle, the wait before the message goes back to the queue: a broker
/// refusing publishes is not hammered, nor the platform sent the message again at once.
const REQUEUE_AFTER_FAILED_SETTLE: Duration = Duration::from_secs(5);

async fn handle(cx: &Context, mut delivery: Delivery, source: String) {
    // The body moves into the message; nothing holds a second copy.
    let inbound = Inbound {
        headers: headers::from_table(delivery.properties.headers().as_ref()),
        content_type: delivery
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_string()),
        body: std::mem::take(&mut delivery.data),
        source,
        user_id: delivery
            .properties
            .user_id()
            .as_ref()
            .map(|u| u.as_str().to_string()),
    };
    let disposition = cx.pipeline.process(&inbound).await;
    let settled = settle(cx, &delivery, &inbound, &disposition).await;
    let acked = match settled {
        Ok(()) => {
            if !matches!(disposition, Disposition::Done { .. }) {
                cx.status.set(true); // publishing works (again)
            }
            delivery.acker.ack(BasicAckOptions::default()).await
        }
        Err(e) => {
            // Not ready while the broker takes no publishes (a resource alarm): retries
            // and parking cannot move.
            cx.status.set(false);
            warn!(message_id = disposition.message_id(), error = %e, "could not settle; returning the message to the queue");
            tokio::time::sleep(REQUEUE_AFTER_FAILED_SETTLE.min(cx.confirm_timeout)).await;
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
    };
    match acked {
        Ok(true) => {}
        // The channel was lost after the effect: the broker redelivers and idempotency absorbs it.
        Ok(false) | Err(_) => warn!(
            message_id = disposition.message_id(),
            "acknowledgement not sent (channel lost); the message will be redelivered"
        ),
    }
}

/// Moves a message on to a retry tier or the parking queue, as the disposition says.
async fn settle(
    cx: &Context,
    delivery: &Delivery,
    inbound: &Inbound,
    disposition: &Disposition,
) -> Result<()> {
    let original = delivery.properties.headers().as_ref();
    let routing_key = inbound
        .headers
        .get(ROUTING_KEY)
        .cloned()
        .unwrap_or_else(|| delivery.routing_key.as_str().to_string());
    let props = |table: FieldTable| republished(&delivery.properties).with_headers(table);
    // The broker refuses a user_id that is not the gateway's own: a copy carries the
    // publisher's user sealed instead, so it stays bound to its platform.
    let mut carried = Vec::new();
    if let Some(user) = &inbound.user_id {
        carried.push((BROKER_USER_HEADER, user.clone()));
        carried.push((
            BROKER_USER_SEAL_HEADER,
            cx.sealer.seal_broker_user(user, &inbound.body),
        ));
    }
    match disposition {
        Disposition::Done { .. } => Ok(()),
        Disposition::Retry { tier, attempts, .. } => {
            let mut extra = vec![
                (ATTEMPT_HEADER, attempts.to_string()),
                (ROUTING_KEY, routing_key),
            ];
            extra.extend(carried);
            let table = headers::with(original, &extra);
            publish_within(
                cx.confirm_timeout,
                &cx.publisher,
                &cx.topology.retry_exchange(),
                &Topology::retry_key(*tier),
                &inbound.body,
                props(table),
            )
            .await
        }
        Disposition::Park {
            message_id,
            attempts,
            error,
            mapping,
        } => {
            let mut extra = park_headers(message_id, *attempts, error, mapping, routing_key);
            extra.extend(carried);
            let table = headers::with(original, &extra);
            publish_within(
                cx.confirm_timeout,
                &cx.publisher,
                &cx.topology.dead_letter_exchange(),
                "",
                &inbound.body,
                props(table),
            )
            .await
        }
    }
}

/// A delivery's properties for a copy the gateway publishes: all of them, persistent,
/// except `user_id` (only the original publisher may carry its own).
fn republished(p: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default().with_delivery_mode(2);
    macro_rules! copy {
        ($($get:ident => $with:ident),*) => {
            $(if let Some(v) = p.$get() { out = out.$with(v.clone()); })*
        };
    }
    copy!(content_type => with_content_type, content_encoding => with_content_encoding,
        priority => with_priority, correlation_id => with_correlation_id,
        reply_to => with_reply_to, expiration => with_expiration,
        message_id => with_message_id, timestamp => with_timestamp, kind => with_type,
        app_id => with_app_id, cluster_id => with_cluster_id);
    out
}

pub(crate) fn park_headers(
    message_id: &str,
    attempts: u32,
    error: &GatewayError,
    mapping: &str,
    routing_key: String,
) -> Vec<(&'static str, String)> {
    vec![
        (MESSAGE_ID, message_id.to_string()),
        (STAGE, error.stage.as_str().to_string()),
        (ERROR_CLASS, error.class.as_str().to_string()),
        (ERROR, error.reason()),
        (FIELD, error.field.clone().unwrap_or_default()),
        (ATTEMPTS, attempts.to_string()),
        (MAPPING_VERSION, mapping.to_string()),
        (PARKED_AT, chrono::Utc::now().to_rfc3339()),
        (PARKED_BY, hostname()),
        (ROUTING_KEY, routing_key),
    ]
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
