//! The parking queue is a conveyor into the store, never a list people read: each
//! parked message is recorded in the store (reason, headers, body) and only then acked.
//! Listing and replaying work from the store, so reading the queue (which on a quorum
//! queue counts towards its delivery limit) never happens to see what is parked.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use tracing::{info, warn};

use super::headers::{
    self, ATTEMPTS, ERROR, ERROR_CLASS, FIELD, MAPPING_VERSION, MESSAGE_ID, STAGE,
};
use super::{Topology, connect};
use crate::error::Result;
use crate::intake::Headers;
use crate::sources::shutdown::Shutdown;
use crate::store::{ParkedRecord, Store};

/// Most messages one command drains from the queue or lists.
const MAX_SCAN: usize = 100_000;

/// What the store keeps of a message found in the parking queue.
pub fn record_of(
    topology: &Topology,
    h: &Headers,
    content_type: Option<String>,
    body: Vec<u8>,
) -> ParkedRecord {
    let get = |k: &str| h.get(k).filter(|v| !v.is_empty()).cloned();
    // Parked by RabbitMQ itself (its delivery limit), not by the gateway.
    let by_broker = !h.contains_key(STAGE);
    ParkedRecord {
        flow: topology.flow().as_str().to_string(),
        message_id: get(MESSAGE_ID)
            .or_else(|| get("ce-id"))
            .unwrap_or_else(|| "(no ce-id)".into()),
        stage: if by_broker {
            "broker".into()
        } else {
            get(STAGE).unwrap_or_default()
        },
        error_class: if by_broker {
            "permanent".into()
        } else {
            get(ERROR_CLASS).unwrap_or_default()
        },
        field: get(FIELD),
        reason: if by_broker {
            format!(
                "dead-lettered by RabbitMQ ({})",
                get("x-first-death-reason").unwrap_or_else(|| "unknown reason".into())
            )
        } else {
            get(ERROR).unwrap_or_default()
        },
        attempts: get(ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(0),
        mapping: get(MAPPING_VERSION),
        origin: "amqp".into(),
        headers: h.clone(),
        content_type,
        body,
    }
}

fn record_delivery(topology: &Topology, d: &Delivery) -> ParkedRecord {
    record_of(
        topology,
        &headers::from_table(d.properties.headers().as_ref()),
        d.properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_string()),
        d.data.clone(),
    )
}

/// Moves whatever waits in the parking queue into the store (each acked only once
/// recorded); how many were moved.
pub async fn drain(url: &str, topology: &Topology, store: &Store) -> Result<usize> {
    let conn = connect(url, "clw-gateway dlq").await?;
    let ch = conn.create_channel().await?;
    let mut moved = 0;
    while moved < MAX_SCAN {
        let Some(m) = ch
            .basic_get(
                ShortString::from(topology.parked_queue()),
                BasicGetOptions { no_ack: false },
            )
            .await?
        else {
            break;
        };
        store.park(&record_delivery(topology, &m.delivery)).await?;
        m.delivery.acker.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    let _ = ch.close(200, ShortString::from("drained")).await;
    let _ = conn.close(200, ShortString::from("drained")).await;
    Ok(moved)
}

/// The recorder a running gateway keeps on the parking queue: every parked message goes
/// into the store as it arrives. A message is held (not requeued) while the store is
/// down, so its delivery count does not climb towards the queue's limit.
pub async fn record(url: String, topology: Topology, store: Store, mut shutdown: Shutdown) {
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_triggered() {
        let session = async {
            let conn = connect(&url, "clw-gateway parking recorder").await?;
            let ch = conn.create_channel().await?;
            topology.declare(&ch).await?;
            ch.basic_qos(16, BasicQosOptions::default()).await?;
            let mut consumer = ch
                .basic_consume(
                    ShortString::from(topology.parked_queue()),
                    ShortString::from(""),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let mut stop = shutdown.clone();
            loop {
                let next = tokio::select! {
                    n = consumer.next() => n,
                    _ = stop.wait() => break,
                };
                let Some(delivery) = next else { break };
                let delivery = delivery?;
                let rec = record_delivery(&topology, &delivery);
                let mut wait = Duration::from_millis(200);
                loop {
                    match store.park(&rec).await {
                        Ok(_) => break,
                        Err(e) => {
                            warn!(error = %e, "cannot record a parked message; holding it and retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {},
                                _ = stop.wait() => return Ok::<_, crate::error::GatewayError>(()),
                            }
                            wait = (wait * 2).min(Duration::from_secs(30));
                        }
                    }
                }
                delivery.acker.ack(BasicAckOptions::default()).await?;
                info!(message_id = %rec.message_id, flow = %rec.flow, "parked message recorded");
            }
            let _ = conn.close(200, ShortString::from("shutdown")).await;
            Ok(())
        };
        let ended = session.await;
        if shutdown.is_triggered() {
            return;
        }
        {
            let why = ended
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "the consumer ended".into());
            {
                warn!(error = %why, "parking recorder stopped; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = shutdown.wait() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
