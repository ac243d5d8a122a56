//! Where events from the doors that accept them (the HTTP ingress, spreadsheet uploads,
//! pollers) are queued durably before anyone is told they were taken: the events
//! queue (publisher confirm), or the spool's events inbox (synced, renamed in).

use std::path::PathBuf;

use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;

use crate::broker::Topology;
use crate::config::Config;
use crate::error::{GatewayError, Result, Stage};
use crate::flows::message_back::EVENT_TYPE;
use crate::model::Flow;

/// Where accepted events go: the events queue, or the spool's events inbox.
pub enum Door {
    // Boxed: the topology and channel are much larger than a folder path.
    Broker(Box<BrokerDoor>),
    Spool { inbox: PathBuf },
}

pub struct BrokerDoor {
    url: String,
    name: String,
    topology: Topology,
    channel: AsyncMutex<Option<lapin::Channel>>,
}

impl Door {
    pub fn new(config: &Config) -> Result<Door> {
        Ok(match &config.broker {
            Some(b) => Door::Broker(Box::new(BrokerDoor {
                url: b.url.clone(),
                name: format!("{} ingress", config.gateway.instance),
                topology: crate::broker::flow_topology(config, b, Flow::MessageBack),
                channel: AsyncMutex::new(None),
            })),
            None => Door::Spool {
                inbox: crate::spool::SpoolDirs::for_flow(&config.spool_dir(), "events").inbox,
            },
        })
    }

    /// Queues one canonical event durably.
    pub async fn put(&self, platform: &str, id: &str, event: &Value) -> Result<()> {
        let body = serde_json::to_vec(event)
            .map_err(|e| GatewayError::permanent(Stage::Intake, format!("event: {e}")))?;
        match self {
            Door::Spool { inbox } => spool_put(inbox, id, body).await,
            Door::Broker(b) => {
                let BrokerDoor {
                    url,
                    name,
                    topology,
                    channel,
                } = b.as_ref();
                let mut ch = channel.lock().await;
                if ch.as_ref().is_none_or(|c| !c.status().connected()) {
                    // Its own connection: a stalled consumer never blocks the door.
                    let conn = crate::broker::connect(url, name).await?;
                    let c = conn.create_channel().await?;
                    c.confirm_select(lapin::options::ConfirmSelectOptions::default())
                        .await?;
                    topology.declare(&c).await?;
                    *ch = Some(c);
                }
                let Some(c) = ch.as_ref() else {
                    return Err(GatewayError::transient(Stage::Broker, "no channel"));
                };
                let headers = crate::broker::headers::with(
                    None,
                    &[
                        ("ce-id", id.to_string()),
                        ("ce-type", EVENT_TYPE.to_string()),
                        ("ce-specversion", "1.0".to_string()),
                        ("ce-source", format!("urn:clw-gateway:ingress:{platform}")),
                    ],
                );
                let props = lapin::BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2)
                    .with_headers(headers);
                let r = crate::broker::publish_confirmed(
                    c,
                    &topology.exchange(),
                    &format!("event.{platform}"),
                    &body,
                    props,
                )
                .await;
                if r.is_err() {
                    *ch = None;
                }
                r
            }
        }
    }
}

/// Writes the event into the spool inbox the way a careful writer does: elsewhere
/// first, synced, then renamed in.
async fn spool_put(inbox: &std::path::Path, id: &str, body: Vec<u8>) -> Result<()> {
    let name = format!(
        "{}-{}.json",
        crate::deliver::safe_file_stem(id),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    crate::deliver::write_private(inbox, &name, body)
        .await
        .map_err(|e| GatewayError::transient(Stage::Intake, format!("cannot queue the event: {e}")))
}
