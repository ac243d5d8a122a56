//! Wires a configuration into a running gateway: store, pipeline, HTTP, and one source
//! (RabbitMQ when a broker is configured, else the spool folders).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::info;

use crate::broker::{self, BrokerSource, BrokerStatus};
use crate::config::Config;
use crate::engine::{Engine, Pipeline};
use crate::error::Result;
use crate::flows::referral::ReferralFront;
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::spool::{SpoolDirs, SpoolSource};
use crate::store::Store;
use crate::wiring::Wiring;

pub struct Running {
    trigger: ShutdownTrigger,
    task: JoinHandle<Result<()>>,
    pub http_addr: Option<SocketAddr>,
    pub store: Store,
    pub metrics: Metrics,
}

impl Running {
    /// Triggers a graceful stop and waits for it.
    pub async fn stop(self) -> Result<()> {
        self.trigger.trigger();
        self.wait().await
    }

    pub async fn wait(self) -> Result<()> {
        match self.task.await {
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
    let store = Store::connect(
        &config.store_url(),
        config.store.max_connections,
        config.store.batch_max,
    )
    .await?;
    let metrics = Metrics::new();
    let engine = Arc::new(Engine::new(store.clone(), metrics.clone(), &config));
    let pipeline = Arc::new(Pipeline::new(
        engine,
        Box::new(ReferralFront::new(
            &wiring.referrals,
            config.intake.max_message_bytes,
        )),
    ));
    if config.broker.is_none() {
        // Exist before start returns, so files can be dropped at once.
        SpoolDirs::for_flow(&config.spool_dir(), "referrals").create()?;
    }
    let (trigger, shutdown) = shutdown::channel();
    let broker_status = config
        .broker
        .as_ref()
        .map(|_| Arc::new(BrokerStatus::default()));

    let mut http_addr = None;
    let http_task = if config.http.enabled {
        let listener = http::bind(config.http.listen).await?;
        http_addr = listener.local_addr().ok();
        info!(addr = ?http_addr, "serving /healthz /readyz /metrics");
        let state = HttpState {
            store: store.clone(),
            metrics: metrics.clone(),
            broker: broker_status.clone(),
        };
        Some(tokio::spawn(http::serve(listener, state, shutdown.clone())))
    } else {
        None
    };

    let task_store = store.clone();
    let task = tokio::spawn(async move {
        let result = run_source(&config, pipeline, broker_status, shutdown).await;
        if let Some(h) = http_task {
            let _ = h.await;
        }
        task_store.close().await;
        result
    });
    Ok(Running {
        trigger,
        task,
        http_addr,
        store,
        metrics,
    })
}

async fn run_source(
    config: &Config,
    pipeline: Arc<Pipeline>,
    status: Option<Arc<BrokerStatus>>,
    shutdown: Shutdown,
) -> Result<()> {
    match (&config.broker, status) {
        (Some(b), Some(status)) => {
            BrokerSource {
                url: b.url.clone(),
                name: config.gateway.instance.clone(),
                prefetch: b.prefetch,
                topology: broker::topology(config, b),
                pipeline,
                status,
            }
            .run(shutdown)
            .await
        }
        _ => {
            SpoolSource {
                dirs: SpoolDirs::for_flow(&config.spool_dir(), "referrals"),
                owner: pipeline.owner().to_string(),
                poll_interval: config.spool.poll_interval,
                concurrency: config.spool.concurrency,
                max_bytes: config.intake.max_message_bytes,
                pipeline,
            }
            .run(shutdown)
            .await
        }
    }
}
