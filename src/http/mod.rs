//! /healthz (the process is up), /readyz (store and broker reachable), /metrics
//! (Prometheus), and the operator console.

pub mod console;
pub mod gauges;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

use crate::engine::SourceStatus;
use crate::engine::metrics::Metrics;
use crate::error::Result;
use crate::sources::shutdown::Shutdown;
use crate::store::Store;

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub metrics: Metrics,
    /// One per flow's source (broker consumer or spool inbox).
    pub sources: Vec<Arc<SourceStatus>>,
    /// Whether the sources are broker consumers (else spool folders).
    pub broker_mode: bool,
    /// The operator console, when it is on.
    pub console: Option<Arc<console::Console>>,
}

pub fn router(state: HttpState) -> Router {
    let console = state.console.clone();
    let r = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    match console {
        Some(c) => r.merge(console::router(c)),
        None => r,
    }
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    // A store that does not answer is unreachable, not a probe left hanging.
    let store_ok = matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), s.store.ping()).await,
        Ok(Ok(()))
    );
    s.metrics.store_up.set(i64::from(store_ok));
    let sources_ok = s.sources.iter().all(|x| x.is_up());
    let ready = store_ok && sources_ok;
    let word = |up: bool| if up { "ok" } else { "unreachable" };
    let sources: serde_json::Map<String, serde_json::Value> = s
        .sources
        .iter()
        .map(|x| (x.flow().to_string(), json!(word(x.is_up()))))
        .collect();
    let body = json!({
        "ready": ready,
        "store": word(store_ok),
        "broker": if s.broker_mode { word(sources_ok) } else { "not-configured" },
        "sources": sources,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    limits: crate::sources::listener::Limits,
    shutdown: Shutdown,
) -> Result<()> {
    crate::sources::listener::serve(listener, router(state), limits, "http", shutdown).await
}
