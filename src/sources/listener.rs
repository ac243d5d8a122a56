//! Serving a listener anyone on the network can reach, bounded: at most
//! `max_connections` at once (one more is closed at once, not queued), and a connection
//! that has not sent a request's headers within `header_timeout` — a slow or idle
//! client — is closed. `axum::serve` has neither, so connections are served by hyper's
//! HTTP/1 server directly. What a request may then take (its body, its whole answer) is
//! bounded by the handlers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::warn;

use crate::error::{GatewayError, Result, Stage};
use crate::sources::shutdown::Shutdown;

/// The client's address, in each request's extensions (for throttling sign-ins).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn new(header_timeout: Duration, max_connections: usize) -> Limits {
        Limits {
            header_timeout,
            max_connections,
        }
    }
}

/// How long open connections get to finish once shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until shutdown, within `limits`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    what: &'static str,
    mut shutdown: Shutdown,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                warn!(listener = what, error = %e, "cannot accept a connection");
                if !shutdown.pause(Duration::from_millis(100)).await {
                    break;
                }
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: closed at once, so a flood cannot hold memory or descriptors.
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(
            router.clone().layer(axum::Extension(Peer(peer))),
        );
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.wait() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
        });
    }
    let _ = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
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
