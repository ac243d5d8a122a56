//! Where events from the doors that accept them (the HTTP ingress, spreadsheet uploads,
//! pollers) are queued durably before anyone is told they were taken: the events
//! queue (publisher confirm), or the spool's events inbox (synced, renamed in). Each is
//! queued in a sealed envelope naming the origin the door verified (`crate::seal`), so
//! the front knows who sent it whatever headers a copy carries.

use std::path::PathBuf;

use tokio::sync::Mutex as AsyncMutex;

use crate::broker::Topology;
use crate::config::Config;
use crate::error::{GatewayError, Result, Stage};
use crate::flows::message_back::{EVENT_TYPE, queued_id};
use crate::model::Flow;
use crate::model::message_back::MessageBack;
use crate::seal::{Origin, Sealer};

/// Where accepted events go, sealed with their origin.
pub struct Door {
    sealer: Sealer,
    queue: Queue,
}

/// The events queue, or the spool's events inbox.
enum Queue {
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
    pub fn new(config: &Config, sealer: Sealer) -> Result<Door> {
        let queue = match &config.broker {
            Some(b) => Queue::Broker(Box::new(BrokerDoor {
                url: b.url.clone(),
                name: format!("{} ingress", config.gateway.instance),
                topology: crate::broker::flow_topology(config, b, Flow::MessageBack),
                channel: AsyncMutex::new(None),
            })),
            None => Queue::Spool {
                inbox: crate::spool::SpoolDirs::for_flow(&config.spool_dir(), "events").inbox,
            },
        };
        Ok(Door { sealer, queue })
    }

    /// Queues one canonical event from `origin` durably; answers with the id it is
    /// known by (the origin's name and the event's id).
    pub async fn put(&self, origin: &Origin, event: &MessageBack) -> Result<String> {
        let id = queued_id(
            &crate::flows::message_back::id_prefix(origin),
            &event.event_id,
        );
        let json = serde_json::to_vec(event)
            .map_err(|e| GatewayError::permanent(Stage::Intake, format!("event: {e}")))?;
        let body = self.sealer.seal(origin, &json);
        match &self.queue {
            Queue::Spool { inbox } => spool_put(inbox, &id, body).await?,
            Queue::Broker(b) => b.publish(origin, &id, body).await?,
        }
        Ok(id)
    }
}

impl BrokerDoor {
    async fn publish(&self, origin: &Origin, id: &str, body: Vec<u8>) -> Result<()> {
        let mut ch = self.channel.lock().await;
        if ch.as_ref().is_none_or(|c| !c.status().connected()) {
            // Its own connection: a stalled consumer never blocks the door.
            let conn = crate::broker::connect(&self.url, &self.name).await?;
            let c = conn.create_channel().await?;
            c.confirm_select(lapin::options::ConfirmSelectOptions::default())
                .await?;
            self.topology.declare(&c).await?;
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
                (
                    "ce-source",
                    format!("urn:clw-gateway:door:{}", origin.tag()),
                ),
            ],
        );
        let props = lapin::BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        let r = crate::broker::publish_confirmed(
            c,
            &self.topology.exchange(),
            &format!("event.{}", origin.tag()),
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
