//! The store (sqlx; SQLite by default, PostgreSQL by URL): message state, per-destination
//! idempotency and the audit log. Writes go through one writer task that groups them into
//! transactions (group commit), so many in-flight messages share one fsync.

mod config;
mod lookup;
mod parked;
mod purge;
mod referrals;
mod retention;
pub mod timeline;
mod writer;
pub mod writer_types {
    pub use super::writer::{Claim, DeliveryUpdate, EffectRecord, ErrorSummary};
}

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

pub use config::StoreConfig;
pub use retention::RetentionConfig;

use crate::error::{GatewayError, Result, Stage};
use crate::model::state::{AuditAction, DeliveryState};
pub use lookup::Known;
pub use parked::{PARKED, ParkedBody, ParkedRecord, ParkedRow, REPLAYED};
pub use referrals::{EventRow, ReferralRecord, derived_state};
pub use writer::Write;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub flow: String,
    pub message_id: String,
    pub state: String,
    pub attempts: i64,
    pub source: Option<String>,
    pub error_class: Option<String>,
    pub error_stage: Option<String>,
    pub last_error: Option<String>,
    pub received_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub destination: String,
    pub state: String,
    pub attempts: i64,
    pub idempotency_key: String,
    pub response_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub actor: String,
    pub action: AuditAction,
    pub flow: String,
    pub message_id: String,
    pub destination: Option<String>,
    /// Field names only, never values.
    pub fields: Vec<String>,
    pub agreement: Option<String>,
    pub detail: Option<String>,
}

impl AuditEntry {
    /// What the gateway itself noted about a message (no destination, no agreement).
    pub fn note(
        action: AuditAction,
        flow: crate::model::Flow,
        message_id: &str,
        fields: Vec<String>,
        detail: String,
    ) -> AuditEntry {
        AuditEntry {
            actor: "clw-gateway".into(),
            action,
            flow: flow.as_str().into(),
            message_id: message_id.into(),
            destination: None,
            fields,
            agreement: None,
            detail: Some(detail),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub at: i64,
    pub entry: AuditEntry,
}

struct Job {
    write: Write,
    /// What the write took (a claim's destinations), once committed.
    reply: oneshot::Sender<Result<Vec<String>>>,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    writer: mpsc::Sender<Job>,
    lookups: mpsc::Sender<lookup::Lookup>,
}

/// Splits `items` into chunks of a few fixed sizes (largest first). Statements are
/// cached by their SQL text, so a handful of shapes keeps every multi-row statement
/// prepared once instead of re-parsed for each batch size.
pub(crate) fn shaped_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    const SHAPES: [usize; 5] = [128, 32, 8, 2, 1];
    std::iter::from_fn(move || {
        let size = SHAPES.into_iter().find(|&s| s <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

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

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Queues a write and waits until it is committed.
    pub async fn write(&self, write: Write) -> Result<()> {
        self.commit(write).await.map(drop)
    }

    async fn commit(&self, write: Write) -> Result<Vec<String>> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job { write, reply })
            .await
            .map_err(|_| GatewayError::transient(Stage::Store, "store writer has stopped"))?;
        rx.await
            .map_err(|_| GatewayError::transient(Stage::Store, "store writer has stopped"))?
    }

    /// Claims effects before they happen (see [`Write::Claim`]); the destinations taken.
    /// Committed before this returns, so another instance sharing the store sees it.
    pub async fn claim(&self, claim: writer::Claim) -> Result<Vec<String>> {
        self.commit(Write::Claim(claim)).await
    }

    /// One step of a keyless effect, as the journal has it.
    pub async fn effect(
        &self,
        flow: &str,
        message_id: &str,
        destination: &str,
        step: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        let row = sqlx::query(
            "SELECT state, value FROM effects WHERE flow = $1 AND message_id = $2 \
             AND destination = $3 AND step = $4",
        )
        .bind(flow)
        .bind(message_id)
        .bind(destination)
        .bind(step)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// The (flow, message id) whose effect at `destination` produced `value` (a record
    /// id the destination gave), if one did.
    pub async fn effect_by_value(
        &self,
        destination: &str,
        value: &str,
    ) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT flow, message_id FROM effects WHERE destination = $1 AND value = $2 \
             AND state = 'done' ORDER BY updated_at LIMIT 1",
        )
        .bind(destination)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// A spreadsheet file's committed (bytes, rows), if the store knows it.
    pub async fn sheet_file(&self, destination: &str, file: &str) -> Result<Option<(i64, i64)>> {
        let row = sqlx::query(
            "SELECT committed_bytes, rows_written FROM sheet_files WHERE destination = $1 AND file = $2",
        )
        .bind(destination)
        .bind(file)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// The newest spreadsheet file of a destination: (file, rows).
    pub async fn latest_sheet(&self, destination: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT file, rows_written FROM sheet_files WHERE destination = $1 \
             ORDER BY file DESC LIMIT 1",
        )
        .bind(destination)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Queues a write without waiting for its commit. Writes commit in queue order, so a
    /// later awaited write makes this one durable too. For bookkeeping that nothing is
    /// acknowledged on (the "received" mark), so it adds no latency to a message.
    pub async fn write_nowait(&self, write: Write) -> Result<()> {
        let (reply, _) = oneshot::channel();
        self.writer
            .send(Job { write, reply })
            .await
            .map_err(|_| GatewayError::transient(Stage::Store, "store writer has stopped"))
    }

    /// What the store knows of `message_id` (first digest, each destination's state),
    /// answered in batches with other messages' look-ups.
    pub async fn known(&self, flow: &str, message_id: &str) -> Result<Known> {
        let (reply, rx) = oneshot::channel();
        let stopped = || GatewayError::transient(Stage::Store, "store reader has stopped");
        self.lookups
            .send(lookup::Lookup {
                flow: flow.to_string(),
                message_id: message_id.to_string(),
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// A person's answer for an effect whose outcome was unknown: it arrived
    /// (`delivered`), or it did not and may be sent again. Its journalled steps follow
    /// (started steps become done, or free to run again), and the audit log says who.
    /// Errors when the delivery is not waiting on a person.
    pub async fn resolve(
        &self,
        flow: &str,
        message_id: &str,
        destination: &str,
        delivered: bool,
        actor: &str,
    ) -> Result<()> {
        let now = now_ms();
        let (state, step_state) = if delivered {
            (DeliveryState::Delivered, "done")
        } else {
            (DeliveryState::Retrying, "refused")
        };
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE deliveries SET state = $1, updated_at = $2, delivered_at = $3, claimed_by = NULL, \
             claim_expires_at = NULL, last_error = $4 \
             WHERE flow = $5 AND message_id = $6 AND destination = $7 AND state = 'unknown'",
        )
        .bind(state.as_str())
        .bind(now)
        .bind(delivered.then_some(now))
        .bind(format!("resolved by {actor}"))
        .bind(flow)
        .bind(message_id)
        .bind(destination)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(GatewayError::invalid(
                Stage::Store,
                "destination",
                format!(
                    "no delivery of this message to {destination} is waiting on a person (its outcome is not unknown)"
                ),
            ));
        }
        sqlx::query(
            "UPDATE effects SET state = $1, updated_at = $2 \
             WHERE flow = $3 AND message_id = $4 AND destination = $5 AND state = 'started'",
        )
        .bind(step_state)
        .bind(now)
        .bind(flow)
        .bind(message_id)
        .bind(destination)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.write(Write::Audit(AuditEntry {
            actor: actor.to_string(),
            action: AuditAction::Resolved,
            flow: flow.to_string(),
            message_id: message_id.to_string(),
            destination: Some(destination.to_string()),
            fields: Vec::new(),
            agreement: None,
            detail: Some(if delivered {
                "checked at the destination: it arrived; recorded as delivered".into()
            } else {
                "checked at the destination: it did not arrive; free to send again".into()
            }),
        }))
        .await
    }

    /// The key that seals event origins (`crate::secret::seal`): made by the first instance to
    /// ask, then the same for every instance on this store.
    pub async fn seal_key(&self) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO gateway_keys (name, key_hex, created_at) VALUES ('origin-seal', $1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(hex::encode(crate::secret::seal::new_key()))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        let key: String =
            sqlx::query_scalar("SELECT key_hex FROM gateway_keys WHERE name = 'origin-seal'")
                .fetch_one(&self.pool)
                .await?;
        hex::decode(key)
            .map_err(|_| GatewayError::permanent(Stage::Store, "the origin-seal key is not hex"))
    }

    /// Records a verified signed request (platform, signed timestamp, the MAC that
    /// matched) until `expires_at` (ms); false when it was taken before — a replay, by
    /// this instance or any other on the store.
    pub async fn first_use(
        &self,
        platform: &str,
        signed_at: i64,
        mac: &[u8],
        expires_at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO replay_guard (platform, signed_at, mac, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (platform, signed_at, mac) DO NOTHING",
        )
        .bind(platform)
        .bind(signed_at)
        .bind(hex::encode(mac))
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Starts a console session: the SHA-256 of its id, for `operator`, until
    /// `expires_at` (ms).
    pub async fn session_start(
        &self,
        id_sha256: &str,
        operator: &str,
        secret_sha256: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_sha256, operator, secret_sha256, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_sha256)
        .bind(operator)
        .bind(secret_sha256)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The operator of a session that has not expired or ended, with the digest of the
    /// secret they signed in with.
    pub async fn session_operator(&self, id_sha256: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT operator, secret_sha256 FROM console_sessions \
             WHERE id_sha256 = $1 AND expires_at > $2",
        )
        .bind(id_sha256)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Forgets the signed requests past their expiry. Only tidiness: a request that old
    /// is refused as stale before the replay memory is asked.
    pub async fn prune_replays(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM replay_guard WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Forgets a signed request taken by [`Store::first_use`] (nothing came of it, so
    /// the same request may be sent again).
    pub async fn forget_use(&self, platform: &str, signed_at: i64, mac: &[u8]) -> Result<()> {
        sqlx::query("DELETE FROM replay_guard WHERE platform = $1 AND signed_at = $2 AND mac = $3")
            .bind(platform)
            .bind(signed_at)
            .bind(hex::encode(mac))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a session, for every instance.
    pub async fn session_end(&self, id_sha256: &str) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The programme a message belongs to, when the store knows it: a referral's own, or
    /// an event's through the referral it was linked to. None for what never got that far.
    pub async fn programme_of(&self, flow: &str, message_id: &str) -> Result<Option<String>> {
        let sql = if flow == crate::model::Flow::Referral.as_str() {
            "SELECT programme FROM referrals WHERE message_id = $1"
        } else {
            "SELECT r.programme FROM referral_events e JOIN referrals r \
             ON r.message_id = e.referral_id WHERE e.event_message_id = $1"
        };
        let row = sqlx::query(sql)
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn message(&self, flow: &str, message_id: &str) -> Result<Option<MessageRow>> {
        let row = sqlx::query(
            "SELECT flow, message_id, state, attempts, source, error_class, error_stage, last_error, \
             received_at, updated_at FROM messages WHERE flow = $1 AND message_id = $2",
        )
        .bind(flow)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<MessageRow> {
            Ok(MessageRow {
                flow: r.try_get(0)?,
                message_id: r.try_get(1)?,
                state: r.try_get(2)?,
                attempts: r.try_get(3)?,
                source: r.try_get(4)?,
                error_class: r.try_get(5)?,
                error_stage: r.try_get(6)?,
                last_error: r.try_get(7)?,
                received_at: r.try_get(8)?,
                updated_at: r.try_get(9)?,
            })
        })
        .transpose()
    }

    /// Finds messages by id in any flow (for `status`).
    pub async fn find_message(&self, message_id: &str) -> Result<Vec<MessageRow>> {
        let flows: Vec<String> = sqlx::query("SELECT flow FROM messages WHERE message_id = $1")
            .bind(message_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for f in flows {
            out.extend(self.message(&f, message_id).await?);
        }
        Ok(out)
    }

    pub async fn deliveries(&self, flow: &str, message_id: &str) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT destination, state, attempts, idempotency_key, response_status, last_error, delivered_at \
             FROM deliveries WHERE flow = $1 AND message_id = $2 ORDER BY destination",
        )
        .bind(flow)
        .bind(message_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRow {
                    destination: r.try_get(0)?,
                    state: r.try_get(1)?,
                    attempts: r.try_get(2)?,
                    idempotency_key: r.try_get(3)?,
                    response_status: r.try_get(4)?,
                    last_error: r.try_get(5)?,
                    delivered_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    pub async fn audit(&self, flow: &str, message_id: &str) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, destination, fields, agreement, detail FROM audit_log \
             WHERE flow = $1 AND message_id = $2 ORDER BY at, id",
        )
        .bind(flow)
        .bind(message_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let fields: Option<String> = r.try_get(4)?;
                let action: String = r.try_get(2)?;
                Ok(AuditRow {
                    at: r.try_get(0)?,
                    entry: AuditEntry {
                        actor: r.try_get(1)?,
                        action: AuditAction::parse(&action).ok_or_else(|| {
                            GatewayError::permanent(
                                Stage::Store,
                                format!("audit_log holds an unknown action {action:?}"),
                            )
                        })?,
                        flow: flow.to_string(),
                        message_id: message_id.to_string(),
                        destination: r.try_get(3)?,
                        fields: fields
                            .map(|f| {
                                f.split(',')
                                    .filter(|s| !s.is_empty())
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default(),
                        agreement: r.try_get(5)?,
                        detail: r.try_get(6)?,
                    },
                })
            })
            .collect()
    }

    /// Counts messages per state (for `status` with no id, and tests).
    pub async fn count_by_state(&self, flow: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) FROM messages WHERE flow = $1 GROUP BY state ORDER BY state",
        )
        .bind(flow)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
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
    use super::shaped_chunks;

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

    #[test]
    fn shaped_chunks_cover_every_item_in_order_with_few_shapes() {
        for n in 0..300usize {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = shaped_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "n = {n}");
            assert!(chunks.iter().all(|c| [128, 32, 8, 2, 1].contains(&c.len())));
        }
        assert_eq!(
            shaped_chunks(&[0u8; 200])
                .map(<[u8]>::len)
                .collect::<Vec<_>>(),
            [128, 32, 32, 8]
        );
    }
}
