//! Where events from the doors that accept them (the HTTP ingress, spreadsheet uploads,
//! pollers) are queued durably before anyone is told they were taken: the events
//! queue (publisher confirm), or the spool's events inbox (synced, renamed in). Each is
//! queued in a sealed envelope naming the origin the door verified (`crate::secret::seal`), so
//! the front knows who sent it whatever headers a copy carries.

use std::path::PathBuf;

use tokio::sync::Mutex as AsyncMutex;

use crate::error::{GatewayError, Result, Stage};
use crate::flows::message_back::queued_id;
use crate::model::message_back::MessageBack;
use crate::secret::seal::{Origin, Sealer};
use crate::sources::broker::{BrokerConfig, Topology};

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
    /// The publishing channel, shared: held only to clone or replace, never across a
    /// wait, so publishes go on side by side (their confirms pipelined).
    channel: std::sync::Mutex<Option<lapin::Channel>>,
    /// One (re)connect at a time; while it runs every other request is answered at once.
    connecting: AsyncMutex<()>,
    /// The longest a connect or a publish confirm may take.
    timeout: std::time::Duration,
    /// The CloudEvents type its messages carry (the flow's).
    ce_type: &'static str,
    /// Routing keys are `{unit}.{origin tag}`.
    unit: &'static str,
}

impl Door {
    /// Events queued on the broker's events exchange (publisher confirms), on a
    /// connection of the door's own named `name`.
    pub fn broker(config: &BrokerConfig, name: String, topology: Topology, sealer: Sealer) -> Door {
        let queue = Queue::Broker(Box::new(BrokerDoor {
            url: config.url.clone(),
            name,
            channel: std::sync::Mutex::new(None),
            connecting: AsyncMutex::new(()),
            timeout: config.confirm_timeout,
            ce_type: crate::flows::row(topology.flow()).event_type,
            unit: crate::flows::row(topology.flow()).queue_unit,
            topology,
        }));
        Door { sealer, queue }
    }

    /// Events written into the spool's events inbox.
    pub fn spool(inbox: PathBuf, sealer: Sealer) -> Door {
        Door {
            sealer,
            queue: Queue::Spool { inbox },
        }
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
        self.put_sealed(origin, &id, &json).await?;
        Ok(id)
    }

    /// Queues `json` from `origin` under `id`, sealed (the gateway's own instructions
    /// go this way onto the referral transport).
    pub async fn put_sealed(&self, origin: &Origin, id: &str, json: &[u8]) -> Result<()> {
        let body = self.sealer.seal(origin, json);
        match &self.queue {
            Queue::Spool { inbox } => spool_put(inbox, id, body).await,
            Queue::Broker(b) => b.publish(origin, id, body).await,
        }
    }
}

impl BrokerDoor {
    fn current(&self) -> Option<lapin::Channel> {
        let ch = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        ch.clone().filter(|c| c.status().connected())
    }

    /// The channel, connecting first when there is none: during a broker outage one
    /// request tries (within `timeout`) and the others are refused at once, so nobody
    /// queues behind a connect.
    async fn channel(&self) -> Result<lapin::Channel> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let Ok(_one) = self.connecting.try_lock() else {
            return Err(GatewayError::transient(
                Stage::Broker,
                "the connection to the broker is being made again",
            ));
        };
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let made = tokio::time::timeout(self.timeout, async {
            // Its own connection: a stalled consumer never blocks the door.
            let conn = crate::sources::broker::connect(&self.url, &self.name).await?;
            let c = conn.create_channel().await?;
            c.confirm_select(lapin::options::ConfirmSelectOptions::default())
                .await?;
            self.topology.declare(&c).await?;
            Ok::<_, GatewayError>(c)
        })
        .await
        .map_err(|_| {
            GatewayError::transient(Stage::Broker, "the broker did not answer a connect in time")
        })??;
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = Some(made.clone());
        Ok(made)
    }

    async fn publish(&self, origin: &Origin, id: &str, body: Vec<u8>) -> Result<()> {
        let c = self.channel().await?;
        let headers = crate::sources::broker::headers::with(
            None,
            &[
                ("ce-id", id.to_string()),
                ("ce-type", self.ce_type.to_string()),
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
        let r = crate::sources::broker::publish_within(
            self.timeout,
            &c,
            &self.topology.exchange(),
            &format!("{}.{}", self.unit, origin.tag()),
            &body,
            props,
        )
        .await;
        if r.is_err() {
            // Made again by the next request.
            *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = None;
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
