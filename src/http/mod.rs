//! /healthz (the process is up), /readyz (store and broker reachable), /metrics
//! (Prometheus); and, on a listener of its own, the platform event ingress.

pub mod awaiting;
pub mod ingress;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

use crate::broker::BrokerStatus;
use crate::error::{GatewayError, Result, Stage};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::Store;

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub metrics: Metrics,
    /// One per flow consuming from the broker; none in spool mode.
    pub broker: Vec<Arc<BrokerStatus>>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let store_ok = s.store.ping().await.is_ok();
    let broker = (!s.broker.is_empty()).then(|| s.broker.iter().all(|b| b.is_consuming()));
    let ready = store_ok && broker.unwrap_or(true);
    let body = json!({
        "ready": ready,
        "store": if store_ok { "ok" } else { "unreachable" },
        "broker": match broker { None => "not-configured", Some(true) => "ok", Some(false) => "unreachable" },
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

pub async fn serve(listener: TcpListener, state: HttpState, mut shutdown: Shutdown) -> Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
        .map_err(|e| GatewayError::transient(Stage::Config, format!("HTTP server: {e}")))
}
