//! Whether the gateway runs on RabbitMQ or on the spool folders, decided once: one
//! [`Transport`] value, built by the wiring plan, answers for every flow — its source,
//! its door, its parking recorder, its sweep and its replay target. Nothing else looks
//! at whether a broker is configured.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::broker::{BrokerConfig, BrokerSource, Topology, dlq};
use super::door::Door;
use super::parking::{self, Replayed, Selection, Target};
use super::shutdown::Shutdown;
use super::spool::{SpoolConfig, SpoolDirs, SpoolSource};
use crate::engine::{Pipeline, SourceStatus};
use crate::error::Result;
use crate::flows::message_back::PlainEvents;
use crate::flows::row;
use crate::model::Flow;
use crate::secret::seal::Sealer;
use crate::store::{PARKED, ParkedRow, Store};

/// How many parked records a listing reads at most.
const MAX_LISTED: i64 = 100_000;

/// The gateway's one transport.
#[derive(Debug, Clone)]
pub enum Transport {
    Broker(Broker),
    Spool(Spool),
}

/// RabbitMQ: one topology per flow, retry tiers, parking queues.
#[derive(Debug, Clone)]
pub struct Broker {
    pub config: BrokerConfig,
    /// The retry tiers' delays (the engine's), declared as queues.
    pub tiers: Vec<Duration>,
    /// Names the instance's connections.
    pub instance: String,
    /// Bytes of bodies in flight at once, per consumer.
    pub max_in_flight_bytes: usize,
}

/// The embedded default: a folder per flow (inbox, processing, done, failed).
#[derive(Debug, Clone)]
pub struct Spool {
    pub dir: PathBuf,
    pub config: SpoolConfig,
    pub max_bytes: usize,
}

impl Transport {
    pub fn is_broker(&self) -> bool {
        matches!(self, Transport::Broker(_))
    }

    /// A flow's exchanges and queues, on the broker.
    pub fn topology(&self, flow: Flow) -> Option<Topology> {
        match self {
            Transport::Broker(b) => Some(b.config.topology(flow, &b.tiers)),
            Transport::Spool(_) => None,
        }
    }

    /// A flow's folders, on the spool.
    pub fn spool_dirs(&self, flow: Flow) -> Option<SpoolDirs> {
        match self {
            Transport::Spool(s) => Some(SpoolDirs::for_flow(&s.dir, row(flow).spool_folder)),
            Transport::Broker(_) => None,
        }
    }

    /// Where events that carry no door's seal come from on this transport.
    pub fn plain_events(&self, spool_platform: Option<String>) -> PlainEvents {
        match self {
            Transport::Broker(_) => PlainEvents::Broker,
            Transport::Spool(_) => PlainEvents::Spool(spool_platform),
        }
    }

    /// Where the doors queue the events they take.
    pub fn door(&self, sealer: Sealer) -> Door {
        self.door_for(Flow::MessageBack, "ingress", sealer)
    }

    /// Where a flow's sealed messages are queued: `what` names the connection.
    pub fn door_for(&self, flow: Flow, what: &str, sealer: Sealer) -> Door {
        match self {
            Transport::Broker(b) => Door::broker(
                &b.config,
                format!("{} {what}", b.instance),
                b.config.topology(flow, &b.tiers),
                sealer,
            ),
            Transport::Spool(s) => Door::spool(
                SpoolDirs::for_flow(&s.dir, row(flow).spool_folder).inbox,
                sealer,
            ),
        }
    }

    /// Makes what the flows' sources need before the gateway says it has started (the
    /// spool's folders exist, so files can be dropped at once).
    pub fn prepare(&self, flows: &[Flow]) -> Result<()> {
        for flow in flows {
            if let Some(dirs) = self.spool_dirs(*flow) {
                dirs.create()?;
            }
        }
        Ok(())
    }

    /// Consumes one flow until shutdown.
    pub async fn run(
        &self,
        pipeline: Arc<Pipeline>,
        status: Arc<SourceStatus>,
        sealer: Sealer,
        shutdown: Shutdown,
    ) -> Result<()> {
        let flow = pipeline.flow();
        match self {
            Transport::Broker(b) => {
                BrokerSource {
                    url: b.config.url.clone(),
                    // The referral consumer keeps the instance's own name (operators find
                    // its connection by it); others add the flow's folder.
                    name: match flow {
                        Flow::Referral => b.instance.clone(),
                        _ => format!("{} {}", b.instance, row(flow).spool_folder),
                    },
                    prefetch: b.config.prefetch,
                    topology: b.config.topology(flow, &b.tiers),
                    pipeline,
                    status,
                    budget: Arc::new(tokio::sync::Semaphore::new(b.max_in_flight_bytes)),
                    budget_bytes: b.max_in_flight_bytes,
                    confirm_timeout: b.config.confirm_timeout,
                    sealer,
                }
                .run(shutdown)
                .await
            }
            Transport::Spool(s) => {
                SpoolSource {
                    dirs: SpoolDirs::for_flow(&s.dir, row(flow).spool_folder),
                    owner: pipeline.owner().to_string(),
                    poll_interval: s.config.poll_interval,
                    concurrency: s.config.concurrency,
                    max_bytes: s.max_bytes,
                    pipeline,
                    status,
                }
                .run(shutdown)
                .await
            }
        }
    }

    /// The task that records what lands in a flow's parking queue in the store as it
    /// arrives (the spool parks straight into its failed/ folder and the store).
    pub fn recorder(
        &self,
        flow: Flow,
        store: Store,
        shutdown: Shutdown,
    ) -> Option<BoxFuture<'static, ()>> {
        match self {
            Transport::Broker(b) => Some(Box::pin(dlq::record(
                b.config.url.clone(),
                b.config.topology(flow, &b.tiers),
                store,
                shutdown,
            ))),
            Transport::Spool(_) => None,
        }
    }

    /// Brings into the store whatever the flow's source parked that it lacks (the
    /// parking queue's contents, or files in the spool's failed/ folder).
    pub async fn sweep(&self, flow: Flow, store: &Store) -> Result<usize> {
        match self {
            Transport::Broker(b) => {
                let topology = b.config.topology(flow, &b.tiers);
                dlq::drain(&b.config.url, &topology, store).await
            }
            Transport::Spool(s) => {
                let dirs = SpoolDirs::for_flow(&s.dir, row(flow).spool_folder);
                super::spool::sweep_failed(&dirs, flow, store, s.max_bytes).await
            }
        }
    }

    /// Where replayed messages of `flow` go back in.
    pub async fn replay_target(&self, flow: Flow) -> Result<Target> {
        match self {
            Transport::Broker(b) => {
                let topology = b.config.topology(flow, &b.tiers);
                Target::broker(&b.config.url, &topology).await
            }
            Transport::Spool(s) => Ok(Target::spool(SpoolDirs::for_flow(
                &s.dir,
                row(flow).spool_folder,
            ))),
        }
    }

    /// The flow's parked messages still waiting for a person, oldest first, after
    /// sweeping in what the source parked.
    pub async fn parked(&self, flow: Flow, store: &Store) -> Result<Vec<ParkedRow>> {
        self.sweep(flow, store).await?;
        store
            .parked(Some(flow.as_str()), Some(PARKED), MAX_LISTED)
            .await
    }

    /// Sweeps, then replays the selection (each message once), audited with `actor`.
    pub async fn replay(
        &self,
        flow: Flow,
        store: &Store,
        selection: Selection<'_>,
        actor: &str,
    ) -> Result<Replayed> {
        self.sweep(flow, store).await?;
        let target = self.replay_target(flow).await?;
        let r = parking::replay(&target, store, flow, selection, actor).await;
        target.close().await;
        r
    }

    /// Whether the broker answers (None on the spool: nothing to reach).
    pub async fn reachable(&self) -> Option<Result<()>> {
        match self {
            Transport::Broker(b) => Some(
                match super::broker::connect(&b.config.url, "clw-gateway check").await {
                    Ok(c) => {
                        let _ = c.close(200, "check".into()).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            ),
            Transport::Spool(_) => None,
        }
    }
}
