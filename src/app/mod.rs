//! The application, built from a configuration the same way by `serve`, `check`,
//! `bench` and the tests: the wiring plan, the store, the engine, one pipeline per
//! flow of the flow table, the transport that feeds them, and the side tasks each
//! owner contributes (listeners, doors, pollers, report readers, recorders, gauges,
//! retention).

pub mod extracts;
pub mod retention;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::info;

use crate::config::Config;
use crate::engine::metrics::Metrics;
use crate::engine::{Engine, Pipeline, SourceStatus};
use crate::error::{GatewayError, Result, Stage};
use crate::flows::{FLOWS, Parts};
use crate::http::{self, HttpState, gauges};
use crate::secret::seal::Sealer;
use crate::sources::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::sources::{ingress, listener};
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
            Err(e) => Err(GatewayError::permanent(
                Stage::Config,
                format!("gateway task failed: {e}"),
            )),
        }
    }

    pub fn trigger(&self) -> &ShutdownTrigger {
        &self.trigger
    }
}

/// A configuration built: everything made and checked, nothing running yet.
pub struct Application {
    pub config: Config,
    pub wiring: Wiring,
    pub store: Store,
    pub metrics: Metrics,
    sealer: Sealer,
    /// One per flow that is on, in the flow table's order.
    pub pipelines: Vec<Arc<Pipeline>>,
}

impl Application {
    /// Builds the wiring plan (a configuration problem stops here, reported whole), the
    /// store (migrated), the engine and each flow's pipeline.
    pub async fn build(config: Config) -> Result<Application> {
        let wiring = Wiring::build(&config).map_err(|e| e.into_error())?;
        Self::from_wiring(config, wiring).await
    }

    /// Builds from a wiring plan already made (and reported on) by the caller.
    pub async fn from_wiring(config: Config, wiring: Wiring) -> Result<Application> {
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
        let sealer = Sealer::new(&store.seal_key().await?);
        let engine = Arc::new(Engine::new(store.clone(), metrics.clone(), config.engine()));
        let mb = wiring.message_back.as_ref();
        let rules = config.intake.rules();
        let dataset = crate::dataset::recorder_for(&config.dataset, &store).await?;
        let parts = Parts {
            referrals: &wiring.referrals,
            message_back: mb,
            store: &store,
            sealer: &sealer,
            metrics: &metrics,
            max_bytes: config.intake.max_message_bytes,
            rules: &rules,
            plain_events: wiring
                .transport
                .plain_events(mb.and_then(|m| m.spool_platform.clone())),
            dataset,
        };
        let pipelines = FLOWS
            .iter()
            .filter_map(|row| (row.front)(&parts))
            .map(|front| Arc::new(Pipeline::new(engine.clone(), front)))
            .collect();
        Ok(Application {
            config,
            wiring,
            store,
            metrics,
            sealer,
            pipelines,
        })
    }

    /// Starts the flows' sources and every side task; returns once HTTP is listening
    /// and the transport is ready to take messages.
    pub async fn start(self) -> Result<Running> {
        let transport = self.wiring.transport.clone();
        let flows: Vec<_> = self.pipelines.iter().map(|p| p.flow()).collect();
        transport.prepare(&flows)?;
        let (trigger, shutdown) = shutdown::channel();
        let statuses: Vec<Arc<SourceStatus>> = flows
            .iter()
            .map(|f| Arc::new(SourceStatus::new(f.as_str(), &self.metrics)))
            .collect();
        let mut tasks = SideTasks::default();
        let http_addr = self.serve_http(&statuses, &shutdown, &mut tasks).await?;
        let ingress_addr = self.message_back_doors(&shutdown, &mut tasks).await?;
        let after = self
            .wiring
            .message_back
            .as_ref()
            .map(|m| m.no_response_after);
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        tasks.run(gauges::run(
            store.clone(),
            metrics.clone(),
            after,
            shutdown.clone(),
        ));
        tasks.run(retention::run(
            self.config.clone(),
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        tasks.run(extracts::run(
            self.config.clone(),
            store.clone(),
            crate::dataset::extract::CodeMaps::of(&self.wiring.mappings),
            shutdown.clone(),
        ));
        tasks.run(crate::sources::lifecycle::run(
            self.config.lifecycle.clone(),
            store.clone(),
            crate::sources::lifecycle::Doors {
                referrals: Arc::new(transport.door_for(
                    crate::model::Flow::Referral,
                    "lifecycle",
                    self.sealer.clone(),
                )),
                events: self
                    .wiring
                    .message_back
                    .is_some()
                    .then(|| Arc::new(transport.door(self.sealer.clone()))),
            },
            shutdown.clone(),
        ));
        for flow in &flows {
            if let Some(recorder) = transport.recorder(*flow, store.clone(), shutdown.clone()) {
                tasks.run(recorder);
            }
        }
        let (pipelines, sealer) = (self.pipelines, self.sealer);
        let task = tokio::spawn(async move {
            let sources = pipelines
                .into_iter()
                .zip(statuses)
                .map(|(p, status)| transport.run(p, status, sealer.clone(), shutdown.clone()));
            let results = futures_util::future::join_all(sources).await;
            tasks.join().await;
            store.close().await;
            results.into_iter().collect::<Result<Vec<()>>>().map(drop)
        });
        Ok(Running {
            trigger,
            task,
            http_addr,
            ingress_addr,
            store: self.store,
            metrics: self.metrics,
        })
    }

    /// /healthz, /readyz, /metrics and the console, when HTTP is on.
    async fn serve_http(
        &self,
        statuses: &[Arc<SourceStatus>],
        shutdown: &Shutdown,
        tasks: &mut SideTasks,
    ) -> Result<Option<SocketAddr>> {
        let c = &self.config.http;
        if !c.enabled {
            return Ok(None);
        }
        let listener = listener::bind(c.listen).await?;
        let addr = listener.local_addr().ok();
        info!(addr = ?addr, "serving /healthz /readyz /metrics");
        let state = HttpState {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            sources: statuses.to_vec(),
            broker_mode: self.wiring.transport.is_broker(),
            console: self.wiring.console.clone().map(|access| {
                Arc::new(
                    http::console::Console::new(
                        self.store.clone(),
                        access,
                        self.wiring.destinations.values().cloned().collect(),
                        self.wiring.transport.clone(),
                    )
                    .with_reports(self.config.dataset.enabled.then(|| {
                        http::console::report::ReportSource {
                            dataset: self.config.dataset.clone(),
                            codes: crate::dataset::extract::CodeMaps::of(&self.wiring.mappings),
                        }
                    }))
                    // The routes file was read moments ago by the wiring plan; one
                    // unreadable now leaves the page saying so rather than stopping start.
                    .with_ig(match crate::ig::Source::load(&self.config) {
                        Ok(source) => Some(source),
                        Err(e) => {
                            tracing::warn!(reason = %e.reason(), "the IG pack page is off");
                            None
                        }
                    }),
                )
            }),
        };
        let limits = listener::Limits::new(c.header_timeout, c.max_connections);
        tasks.spawn(http::serve(listener, state, limits, shutdown.clone()));
        Ok(addr)
    }

    /// The message back's doors: the signed HTTP ingress, the pollers and the report
    /// readers, each queuing through the one door.
    async fn message_back_doors(
        &self,
        shutdown: &Shutdown,
        tasks: &mut SideTasks,
    ) -> Result<Option<SocketAddr>> {
        let Some(mb) = &self.wiring.message_back else {
            return Ok(None);
        };
        let door = Arc::new(self.wiring.transport.door(self.sealer.clone()));
        let c = &self.config.ingress;
        let mut addr = None;
        if c.enabled {
            let listener = listener::bind_key(c.listen, "ingress.listen").await?;
            addr = listener.local_addr().ok();
            info!(addr = ?addr, "accepting platform events at /v1/events/{{platform}}");
            let state = ingress::State::new(
                c,
                mb,
                door.clone(),
                self.store.clone(),
                self.metrics.clone(),
            );
            let limits = listener::Limits::new(c.header_timeout, c.max_connections);
            tasks.spawn(ingress::serve(listener, state, limits, shutdown.clone()));
        }
        for (name, d) in &self.wiring.destinations {
            if let Some(reports) = d.reports() {
                tasks.run(crate::sources::reports::run(
                    name.clone(),
                    reports,
                    self.store.clone(),
                    self.metrics.clone(),
                    shutdown.clone(),
                ));
            }
            if let Some(poller) = d.poller() {
                tasks.run(crate::sources::poll::run(
                    name.clone(),
                    poller,
                    self.store.clone(),
                    door.clone(),
                    shutdown.clone(),
                ));
            }
        }
        Ok(addr)
    }
}

/// The tasks that run beside the sources until shutdown.
#[derive(Default)]
struct SideTasks(Vec<JoinHandle<Result<()>>>);

impl SideTasks {
    fn spawn(&mut self, task: impl Future<Output = Result<()>> + Send + 'static) {
        self.0.push(tokio::spawn(task));
    }

    /// A task with nothing to report.
    fn run(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn(async move {
            task.await;
            Ok(())
        });
    }

    async fn join(self) {
        for h in self.0 {
            let _ = h.await;
        }
    }
}

/// Builds and starts the gateway a configuration describes.
pub async fn start(config: Config) -> Result<Running> {
    Application::build(config).await?.start().await
}

/// Starts from a wiring plan already built (and reported on) by the caller.
pub async fn start_wired(config: Config, wiring: Wiring) -> Result<Running> {
    Application::from_wiring(config, wiring)
        .await?
        .start()
        .await
}
