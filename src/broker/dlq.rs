//! The parking queue, seen by people: list what is parked and why; replay it once the
//! cause is fixed. Listing takes each message without acking and closes the channel, so
//! RabbitMQ puts every one back.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions};
use lapin::types::ShortString;

use super::consumer::publish_confirmed;
use super::headers::{
    self, ATTEMPTS, ERROR, ERROR_CLASS, FIELD, MAPPING_VERSION, PARKED_AT, STAGE,
};
use super::{Topology, connect};
use crate::engine::AuditAction;
use crate::error::Result;
use crate::intake::Headers;
use crate::model::Flow;
use crate::store::{AuditEntry, Store, Write};

/// Most messages one `dlq` command looks at.
const MAX_SCAN: usize = 100_000;

#[derive(Debug, Clone, PartialEq)]
pub struct ParkedMessage {
    pub message_id: String,
    pub stage: String,
    pub error_class: String,
    pub reason: String,
    pub field: String,
    pub attempts: String,
    pub parked_at: String,
    /// The mapping (name@version) behind the failing payload.
    pub mapping: String,
    pub body_bytes: usize,
}

impl ParkedMessage {
    fn from_headers(h: &Headers, body_bytes: usize) -> ParkedMessage {
        let get = |k: &str| h.get(k).cloned().unwrap_or_default();
        // Parked by RabbitMQ itself (delivery limit or reject), not by the gateway.
        let by_broker = !h.contains_key(STAGE);
        ParkedMessage {
            message_id: h
                .get("ce-id")
                .cloned()
                .unwrap_or_else(|| "(no ce-id)".into()),
            stage: if by_broker {
                "broker".into()
            } else {
                get(STAGE)
            },
            error_class: if by_broker {
                "permanent".into()
            } else {
                get(ERROR_CLASS)
            },
            reason: if by_broker {
                format!(
                    "dead-lettered by RabbitMQ ({})",
                    h.get("x-first-death-reason").cloned().unwrap_or_default()
                )
            } else {
                get(ERROR)
            },
            field: get(FIELD),
            attempts: get(ATTEMPTS),
            parked_at: get(PARKED_AT),
            mapping: get(MAPPING_VERSION),
            body_bytes,
        }
    }
}

pub async fn list(url: &str, topology: &Topology) -> Result<Vec<ParkedMessage>> {
    let conn = connect(url, "clw-gateway dlq list").await?;
    let ch = conn.create_channel().await?;
    let mut out = Vec::new();
    let mut last = None;
    while out.len() < MAX_SCAN {
        let Some(m) = ch
            .basic_get(
                ShortString::from(topology.parked_queue()),
                BasicGetOptions { no_ack: false },
            )
            .await?
        else {
            break;
        };
        let h = headers::from_table(m.delivery.properties.headers().as_ref());
        out.push(ParkedMessage::from_headers(&h, m.delivery.data.len()));
        last = Some(m.delivery.acker);
    }
    // Hand every message read back to the parking queue, unchanged.
    if let Some(acker) = last {
        acker
            .nack(BasicNackOptions {
                multiple: true,
                requeue: true,
            })
            .await?;
    }
    let _ = ch.close(200, ShortString::from("listed")).await;
    let _ = conn.close(200, ShortString::from("listed")).await;
    Ok(out)
}

/// Which parked messages to replay.
pub enum Selection<'a> {
    All,
    Id(&'a str),
}

/// Republishes the selected parked messages to the flow's queue, without their parking
/// headers and with a fresh attempt count, and audits each replay. Returns the ids replayed.
pub async fn replay(
    url: &str,
    topology: &Topology,
    selection: Selection<'_>,
    store: &Store,
    actor: &str,
) -> Result<Vec<String>> {
    let conn = connect(url, "clw-gateway dlq replay").await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut replayed = Vec::new();
    let mut scanned = 0;
    while scanned < MAX_SCAN {
        let Some(m) = ch
            .basic_get(
                ShortString::from(topology.parked_queue()),
                BasicGetOptions { no_ack: false },
            )
            .await?
        else {
            break;
        };
        scanned += 1;
        let d = &m.delivery;
        let h = headers::from_table(d.properties.headers().as_ref());
        let id = h.get("ce-id").cloned().unwrap_or_default();
        let wanted = match selection {
            Selection::All => true,
            Selection::Id(want) => id == want,
        };
        if !wanted {
            continue; // left unacked: back to the parking queue when the channel closes
        }
        let props = d
            .properties
            .clone()
            .with_headers(headers::cleaned(d.properties.headers().as_ref()))
            .with_delivery_mode(2);
        publish_confirmed(&ch, &topology.requeue_exchange(), "", &d.data, props).await?;
        store
            .write(Write::Audit(AuditEntry {
                actor: actor.to_string(),
                action: AuditAction::Replayed,
                flow: if topology.unit == "event" {
                    Flow::MessageBack
                } else {
                    Flow::Referral
                }
                .as_str()
                .into(),
                message_id: id.clone(),
                destination: None,
                fields: Vec::new(),
                agreement: None,
                detail: Some(format!(
                    "replayed from {} (was: {})",
                    topology.parked_queue(),
                    h.get(ERROR)
                        .cloned()
                        .unwrap_or_else(|| "dead-lettered by RabbitMQ".into())
                )),
            }))
            .await?;
        d.acker.ack(BasicAckOptions::default()).await?;
        replayed.push(id);
        if matches!(selection, Selection::Id(_)) {
            break;
        }
    }
    let _ = ch.close(200, ShortString::from("replayed")).await;
    let _ = conn.close(200, ShortString::from("replayed")).await;
    Ok(replayed)
}
