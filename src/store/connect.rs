//! Opening the store: the connection pool with each backend's settings, TLS verified
//! for a remote PostgreSQL, an owner-only SQLite file, migrations, and the writer and
//! look-up tasks started.

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use tokio::sync::mpsc;

use super::{Backend, Store, lookup, writer};
use crate::error::{GatewayError, Result, Stage};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long the store may take: to lend a connection, and to run one statement (or one
/// batch of the writer). A store that does not answer in time is reported unavailable
/// rather than waited on.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub acquire: Duration,
    pub statement: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            acquire: Duration::from_secs(10),
            statement: Duration::from_secs(30),
        }
    }
}

impl Store {
    /// Connects with the default timeouts (see [`Store::connect_with`]).
    pub async fn connect(url: &str, max_connections: u32, batch_max: usize) -> Result<Store> {
        Self::connect_with(url, max_connections, batch_max, Timeouts::default()).await
    }

    /// Connects, runs migrations and starts the writer task.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        batch_max: usize,
        timeouts: Timeouts,
    ) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            ensure_sqlite_parent(url)?;
        }
        let url = &verified_tls(url)?;
        let options: AnyConnectOptions = url.parse().map_err(|e| {
            GatewayError::invalid(Stage::Config, "store.url", format!("cannot be parsed: {e}"))
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(timeouts.acquire)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; FULL keeps a commit durable
                        // through power loss (group commit pays for the fsync).
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        // 1 MiB of page cache per connection (SQLite's default is 2 MiB):
                        // the store's working set is small and each pool connection has one.
                        sqlx::query("PRAGMA cache_size = -1024")
                            .execute(&mut *conn)
                            .await?;
                    } else {
                        // The server ends a statement that runs too long (a lock wait, a
                        // stuck plan); the writer's own deadline covers a silent network.
                        sqlx::query(&format!(
                            "SET statement_timeout = {}",
                            timeouts.statement.as_millis()
                        ))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| {
                GatewayError::transient(Stage::Store, format!("cannot connect to the store: {e}"))
            })?;
        MIGRATOR.run(&pool).await.map_err(|e| {
            GatewayError::permanent(Stage::Store, format!("store migrations failed: {e}"))
        })?;
        let (tx, rx) = mpsc::channel(batch_max.max(1) * 4);
        tokio::spawn(writer::run(
            pool.clone(),
            rx,
            batch_max.max(1),
            timeouts.statement + Duration::from_secs(2),
        ));
        let (lookups, lrx) = mpsc::channel(batch_max.max(1) * 4);
        tokio::spawn(lookup::run(pool.clone(), lrx, batch_max.max(1)));
        Ok(Store {
            pool,
            backend,
            writer: tx,
            lookups,
        })
    }
}

/// A PostgreSQL URL with TLS that checks the server's certificate and name
/// (`sslmode=verify-full`) unless the URL says otherwise or the server is on this
/// machine: `prefer`, PostgreSQL's default, takes any certificate, or none.
pub fn verified_tls(url: &str) -> Result<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(url.to_string());
    }
    let mut u = url::Url::parse(url).map_err(|e| {
        GatewayError::invalid(Stage::Config, "store.url", format!("cannot be parsed: {e}"))
    })?;
    if u.query_pairs().any(|(k, _)| k == "sslmode") {
        return Ok(url.to_string());
    }
    let local = match u.host() {
        None => true,
        // postgres: is not a scheme the URL standard knows, so its host is opaque text.
        Some(url::Host::Domain(d)) => {
            let d = d.trim_start_matches('[').trim_end_matches(']');
            d == "localhost"
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
    };
    // A socket path in `host=` is this machine too.
    let socket = u
        .query_pairs()
        .any(|(k, v)| k == "host" && v.starts_with('/'));
    if local || socket {
        return Ok(url.to_string());
    }
    u.query_pairs_mut().append_pair("sslmode", "verify-full");
    Ok(u.to_string())
}

fn ensure_sqlite_parent(url: &str) -> Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            GatewayError::invalid(
                Stage::Config,
                "store.url",
                format!("cannot create {}: {e}", parent.display()),
            )
        })?;
    }
    // The database holds patient data: created owner-only (SQLite's own creation
    // follows the umask); its -wal and -shm files take the main file's mode.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_checks_the_server_certificate_unless_local_or_said_otherwise() {
        let tls = |u: &str| super::verified_tls(u).unwrap();
        assert_eq!(
            tls("postgres://clw@db.internal/clw_gateway"),
            "postgres://clw@db.internal/clw_gateway?sslmode=verify-full"
        );
        assert_eq!(
            tls("postgres://clw@db.internal:5432/g?application_name=x"),
            "postgres://clw@db.internal:5432/g?application_name=x&sslmode=verify-full"
        );
        for kept in [
            "postgres://clw@db.internal/g?sslmode=require",
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://postgres@localhost/test",
            "postgres://postgres@[::1]/test",
            "postgres:///test?host=/run/postgresql",
            "sqlite://data/clw.db?mode=rwc",
        ] {
            assert_eq!(tls(kept), kept);
        }
    }
}
