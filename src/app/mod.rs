//! Wires a configuration into a running gateway: store, pipeline, HTTP, and one source
//! (RabbitMQ when a broker is configured, else the spool folders).

pub mod retention;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::info;

use crate::config::Config;
use crate::engine::SourceStatus;
use crate::engine::metrics::Metrics;
use crate::engine::{Engine, Pipeline};
use crate::error::Result;
use crate::flows::message_back::{MessageBackFront, PlainEvents};
use crate::flows::referral::ReferralFront;
use crate::http::gauges;
use crate::http::{self, HttpState};
use crate::sources::broker::{self, BrokerSource};
use crate::sources::ingress;
use crate::sources::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::sources::spool::{SpoolDirs, SpoolSource};
use crate::store::Store;
use crate::wiring::Wiring;

pub struct Running {
    trigger: ShutdownTrigger,
    task: JoinHandle<Result<()>>,
    pub http_addr: Option<SocketAddr>,
    /// Where the event ingress listens, when it is on.
    pub ingress_addr: Option<SocketAddr>,
    pub store: Store,
    pub metrics: Metrics,
}

impl Running {
    /// Triggers a graceful stop and waits for it.
    pub async fn stop(self) -> Result<()> {
        self.trigger.trigger();
        self.wait().await
    }

    pub async fn wait(mut self) -> Result<()> {
        self.wait_mut().await
    }

    /// Triggers a graceful stop and waits for it, leaving the handle in place (its
    /// store and metrics stay readable).
    pub async fn stop_in_place(&mut self) -> Result<()> {
        self.trigger.trigger();
        self.wait_mut().await
    }

    async fn wait_mut(&mut self) -> Result<()> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(crate::error::GatewayError::permanent(
                crate::error::Stage::Config,
                format!("gateway task failed: {e}"),
            )),
        }
    }

    pub fn trigger(&self) -> &ShutdownTrigger {
        &self.trigger
    }
}

/// Starts everything and returns once the store is migrated and HTTP is listening. A
/// configuration problem (any the wiring plan finds) stops start-up, reported whole.
pub async fn start(config: Config) -> Result<Running> {
    let wiring = Wiring::build(&config).map_err(|e| e.into_error())?;
    start_wired(config, wiring).await
}

/// Starts from a wiring plan already built (and reported on) by the caller.
pub async fn start_wired(config: Config, wiring: Wiring) -> Result<Running> {
    info!(
        mappings = wiring.mappings.iter().count(),
        code_maps = wiring.mappings.codes.len(),
        destinations = wiring.destinations.len(),
        "configuration wired"
    );
    let store = Store::connect_with(
        &config.store_url(),
        config.store.max_connections,
        config.store.batch_max,
        config.store.timeouts(),
    )
    .await?;
    let metrics = Metrics::new();
    let sealer = crate::secret::seal::Sealer::new(&store.seal_key().await?);
    let engine = Arc::new(Engine::new(store.clone(), metrics.clone(), &config));
    let referrals = Arc::new(Pipeline::new(
        engine.clone(),
        Box::new(ReferralFront::new(
            &wiring.referrals,
            config.intake.max_message_bytes,
        )),
    ));
    let events = wiring.message_back.as_ref().map(|mb| {
        Arc::new(Pipeline::new(
            engine.clone(),
            Box::new(MessageBackFront::new(
                mb,
                store.clone(),
                config.intake.max_message_bytes,
                sealer.clone(),
                match config.broker {
                    Some(_) => PlainEvents::Broker,
                    None => PlainEvents::Spool(mb.spool_platform.clone()),
                },
            )),
        ))
    });
    let mut flows = vec![(referrals, "referrals")];
    if let Some(e) = &events {
        flows.push((e.clone(), "events"));
    }
    if config.broker.is_none() {
        // Exist before start returns, so files can be dropped at once.
        for (_, folder) in &flows {
            SpoolDirs::for_flow(&config.spool_dir(), folder).create()?;
        }
    }
    let (trigger, shutdown) = shutdown::channel();
    let statuses: Vec<Arc<SourceStatus>> = flows
        .iter()
        .map(|(p, _)| Arc::new(SourceStatus::new(p.flow().as_str(), &metrics)))
        .collect();

    let mut http_addr = None;
    let mut side_tasks = Vec::new();
    // A task that runs until shutdown and has nothing to report.
    fn background(
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<()>> {
        tokio::spawn(async move {
            task.await;
            Ok(())
        })
    }
    if config.http.enabled {
        let listener = crate::sources::listener::bind(config.http.listen).await?;
        http_addr = listener.local_addr().ok();
        info!(addr = ?http_addr, "serving /healthz /readyz /metrics");
        let state = HttpState {
            store: store.clone(),
            metrics: metrics.clone(),
            sources: statuses.clone(),
            broker_mode: config.broker.is_some(),
            console: wiring.console.clone().map(|access| {
                Arc::new(crate::http::console::Console::new(
                    config.clone(),
                    store.clone(),
                    access,
                    wiring.destinations.values().cloned().collect(),
                ))
            }),
        };
        let limits = crate::sources::listener::Limits::new(
            config.http.header_timeout,
            config.http.max_connections,
        );
        side_tasks.push(tokio::spawn(http::serve(
            listener,
            state,
            limits,
            shutdown.clone(),
        )));
    }
    let mut ingress_addr = None;
    if let Some(mb) = &wiring.message_back {
        let door = Arc::new(crate::sources::door::Door::new(&config, sealer.clone())?);
        if config.ingress.enabled {
            let listener =
                crate::sources::listener::bind_key(config.ingress.listen, "ingress.listen").await?;
            ingress_addr = listener.local_addr().ok();
            info!(addr = ?ingress_addr, "accepting platform events at /v1/events/{{platform}}");
            let state = ingress::State::new(
                &config.ingress,
                mb,
                door.clone(),
                store.clone(),
                metrics.clone(),
            );
            let limits = crate::sources::listener::Limits::new(
                config.ingress.header_timeout,
                config.ingress.max_connections,
            );
            side_tasks.push(tokio::spawn(ingress::serve(
                listener,
                state,
                limits,
                shutdown.clone(),
            )));
        }
        for (name, d) in &wiring.destinations {
            if let Some(reports) = d.reports() {
                let task = crate::sources::reports::run(
                    name.clone(),
                    reports,
                    store.clone(),
                    metrics.clone(),
                    shutdown.clone(),
                );
                side_tasks.push(background(task));
            }
            if let Some(poller) = d.poller() {
                let task = crate::sources::poll::run(
                    name.clone(),
                    poller,
                    store.clone(),
                    door.clone(),
                    shutdown.clone(),
                );
                side_tasks.push(background(task));
            }
        }
    }
    {
        let (store, metrics, shutdown) = (store.clone(), metrics.clone(), shutdown.clone());
        let after = wiring.message_back.as_ref().map(|mb| mb.no_response_after);
        side_tasks.push(background(gauges::run(store, metrics, after, shutdown)));
    }
    {
        let task = crate::app::retention::run(
            config.clone(),
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        side_tasks.push(background(task));
    }
    // What lands in a parking queue is recorded in the store as it arrives.
    if let Some(b) = &config.broker {
        for (pipeline, _) in &flows {
            let topology = broker::flow_topology(&config, b, pipeline.flow());
            let task = crate::sources::broker::dlq::record(
                b.url.clone(),
                topology,
                store.clone(),
                shutdown.clone(),
            );
            side_tasks.push(background(task));
        }
    }

    let task_store = store.clone();
    let task = tokio::spawn(async move {
        let sources = flows
            .into_iter()
            .enumerate()
            .map(|(i, (pipeline, folder))| {
                run_source(
                    &config,
                    pipeline,
                    folder,
                    statuses[i].clone(),
                    sealer.clone(),
                    shutdown.clone(),
                )
            });
        let results = futures_util::future::join_all(sources).await;
        for h in side_tasks {
            let _ = h.await;
        }
        task_store.close().await;
        results.into_iter().collect::<Result<Vec<()>>>().map(drop)
    });
    Ok(Running {
        trigger,
        task,
        http_addr,
        ingress_addr,
        store,
        metrics,
    })
}

async fn run_source(
    config: &Config,
    pipeline: Arc<Pipeline>,
    folder: &str,
    status: Arc<SourceStatus>,
    sealer: crate::secret::seal::Sealer,
    shutdown: Shutdown,
) -> Result<()> {
    match &config.broker {
        Some(b) => {
            BrokerSource {
                url: b.url.clone(),
                // The referral consumer keeps the instance's own name (operators find
                // its connection by it); others add the flow.
                name: if folder == "referrals" {
                    config.gateway.instance.clone()
                } else {
                    format!("{} {folder}", config.gateway.instance)
                },
                prefetch: b.prefetch,
                topology: broker::flow_topology(config, b, pipeline.flow()),
                pipeline,
                status,
                budget: Arc::new(tokio::sync::Semaphore::new(
                    config.intake.max_in_flight_bytes,
                )),
                budget_bytes: config.intake.max_in_flight_bytes,
                confirm_timeout: b.confirm_timeout,
                sealer,
            }
            .run(shutdown)
            .await
        }
        None => {
            SpoolSource {
                dirs: SpoolDirs::for_flow(&config.spool_dir(), folder),
                owner: pipeline.owner().to_string(),
                poll_interval: config.spool.poll_interval,
                concurrency: config.spool.concurrency,
                max_bytes: config.intake.max_message_bytes,
                pipeline,
                status,
            }
            .run(shutdown)
            .await
        }
    }
}
