//! /healthz (the process is up), /readyz (store and broker reachable), /metrics
//! (Prometheus); and, on a listener of its own, the platform event ingress.

pub mod console;
pub mod gauges;
pub mod ingress;
pub mod serve;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

use crate::engine::SourceStatus;
use crate::error::{GatewayError, Result, Stage};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
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

pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    bind_key(addr, "http.listen").await
}

/// Listens on `addr`; the error names the config `key`.
pub async fn bind_key(addr: SocketAddr, key: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        GatewayError::invalid(Stage::Config, key, format!("cannot listen on {addr}: {e}"))
    })
}

pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    limits: serve::Limits,
    shutdown: Shutdown,
) -> Result<()> {
    serve::serve(listener, router(state), limits, "http", shutdown).await
}
