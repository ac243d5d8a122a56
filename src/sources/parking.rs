//! Replaying parked messages from the store, whichever source parked them: back through
//! the broker's requeue exchange, or back into the spool inbox. Used by `dlq replay` and
//! the operator console. Each selected message is replayed once: the selection is taken
//! from the store before the first is sent, so a message parked again meanwhile waits
//! for the next replay.

use lapin::options::ConfirmSelectOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};

use crate::error::{GatewayError, Result, Stage};
use crate::model::Flow;
use crate::sources::broker::{Topology, connect, headers, publish_confirmed};
use crate::sources::spool::SpoolDirs;
use crate::store::{PARKED, ParkedRow, Store};

/// Which parked messages to replay.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Every message parked when the replay starts.
    All,
    /// Every parked copy of one message id.
    Id(&'a str),
    /// One parking (its key in the store).
    Key(&'a str),
}

/// Where a replayed message goes.
pub enum Target {
    Broker {
        conn: Box<Connection>,
        ch: Channel,
        exchange: String,
    },
    Spool {
        dirs: SpoolDirs,
    },
}

impl Target {
    pub async fn broker(url: &str, topology: &Topology) -> Result<Target> {
        let conn = connect(url, "clw-gateway replay").await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Target::Broker {
            conn: Box::new(conn),
            ch,
            exchange: topology.requeue_exchange(),
        })
    }

    pub fn spool(dirs: SpoolDirs) -> Target {
        Target::Spool { dirs }
    }

    pub async fn close(self) {
        if let Target::Broker { conn, ch, .. } = self {
            let _ = ch.close(200, ShortString::from("replayed")).await;
            let _ = conn.close(200, ShortString::from("replayed")).await;
        }
    }

    /// Sends one parked message back to its flow's source, without its parking history.
    async fn send(&self, store: &Store, p: &ParkedRow) -> Result<()> {
        let Some(parked) = store.parked_body(&p.key).await? else {
            return Err(gone(p));
        };
        match self {
            Target::Broker { ch, exchange, .. } => {
                let body = parked.body.ok_or_else(|| gone(p))?;
                let mut h = parked.headers;
                h.retain(|k, _| !headers::is_history(k));
                let mut props = BasicProperties::default()
                    .with_headers(headers::to_table(&h))
                    .with_delivery_mode(2);
                if let Some(ct) = parked.content_type {
                    props = props.with_content_type(ShortString::from(ct));
                }
                publish_confirmed(ch, exchange, "", &body, props).await
            }
            Target::Spool { dirs } => {
                // The parked file itself goes back when it is still there; else its
                // stored copy is written to the inbox.
                let parked_file = p
                    .origin
                    .strip_prefix("spool:")
                    .map(|name| dirs.failed.join(name));
                match parked_file.filter(|f| f.exists()) {
                    Some(file) => {
                        crate::sources::spool::requeue(&file, dirs).map_err(|e| {
                            io_error("cannot return the parked file to the inbox", e)
                        })?;
                    }
                    None => {
                        let body = parked.body.ok_or_else(|| gone(p))?;
                        let name = format!("replay-{}.json", &p.key[..16]);
                        crate::deliver::write_private(&dirs.inbox, &name, body)
                            .await
                            .map_err(|e| io_error("cannot write the replayed file", e))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The field a replay names when the stored body is gone.
const NO_BODY: &str = "body";

fn gone(p: &ParkedRow) -> GatewayError {
    GatewayError::invalid(
        Stage::Store,
        NO_BODY,
        format!(
            "parked message {} has no stored body (removed by retention, or none was kept: the destination's final answer about what it already has); it cannot be replayed",
            p.message_id
        ),
    )
}

fn io_error(what: &str, e: std::io::Error) -> GatewayError {
    GatewayError::transient(Stage::Intake, format!("{what}: {e}"))
}

/// What a replay did: the message ids sent again (in order), and those that could not
/// be (their stored body removed by retention), each with the reason.
#[derive(Debug, Default)]
pub struct Replayed {
    pub ids: Vec<String>,
    pub not_replayable: Vec<String>,
}

/// Replays the selection, each message once, and audits each with `actor`. A message
/// whose body retention removed is reported and passed over, so one old record does not
/// stop the rest; any other failure (the broker, the store) stops the replay.
pub async fn replay(
    target: &Target,
    store: &Store,
    flow: Flow,
    selection: Selection<'_>,
    actor: &str,
) -> Result<Replayed> {
    let waiting = store
        .parked(Some(flow.as_str()), Some(PARKED), i64::MAX)
        .await?;
    let chosen: Vec<ParkedRow> = waiting
        .into_iter()
        .filter(|p| match selection {
            Selection::All => true,
            Selection::Id(id) => p.message_id == id,
            Selection::Key(key) => p.key == key,
        })
        .collect();
    let mut done = Replayed::default();
    for p in chosen {
        // Sent first, then marked: a crash between the two sends it again, which the
        // engine's idempotency absorbs; the other order could lose it.
        match target.send(store, &p).await {
            Ok(()) => {}
            Err(e) if e.field.as_deref() == Some(NO_BODY) => {
                done.not_replayable.push(e.reason());
                continue;
            }
            Err(e) => return Err(e),
        }
        let detail = format!(
            "replayed after parking at stage {} ({}): {}",
            p.stage, p.error_class, p.reason
        );
        if store.replayed(&p.key, actor, detail).await? {
            done.ids.push(p.message_id);
        }
    }
    Ok(done)
}
