//! The single writer: takes queued writes, commits up to `batch_max` of them in one
//! transaction, and answers each caller once its write is durable.

use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::mpsc;

use super::{AuditEntry, Job, now_ms, shaped_chunks};
use crate::model::state::{DeliveryState, MessageState};
use std::time::Duration;

use crate::error::{GatewayError, Stage};

#[derive(Debug, Clone)]
pub enum Write {
    /// A message arrived (or arrived again): record it as received unless it is settled.
    Received {
        flow: String,
        message_id: String,
        source: String,
        body_sha256: String,
    },
    /// The outcome of one processing attempt. Releases the claims of its deliveries; a
    /// delivered message or delivery is never downgraded.
    Outcome {
        flow: String,
        message_id: String,
        state: MessageState,
        attempts: i64,
        error: Option<ErrorSummary>,
        deliveries: Vec<DeliveryUpdate>,
        audit: Vec<AuditEntry>,
    },
    Audit(AuditEntry),
    /// Every destination has the message (found by a later copy or a replay after a
    /// person resolved it): delivered, without touching its attempt count.
    Settled {
        flow: String,
        message_id: String,
        audit: AuditEntry,
    },
    /// Claims (flow, message, destination) effects for `owner` until `expires_at`: taken
    /// when free, already this owner's, or expired; never when delivered or unknown.
    /// Answers with the destinations claimed.
    Claim(Claim),
    /// A step of a keyless effect: started before the request, done after.
    Effect(EffectRecord),
    /// How much of a spreadsheet file is complete.
    Sheet {
        destination: String,
        file: String,
        committed_bytes: i64,
        rows: i64,
    },
    /// What the gateway keeps of a referral for the message back.
    Referral {
        message_id: String,
        programme: String,
        practice: Option<String>,
        patient_key: Option<String>,
        /// JSON: patient, practice, referrer, consent.
        record: String,
    },
    /// An event linked to its referral; a second copy changes nothing.
    ReferralEvent {
        event_message_id: String,
        referral_id: String,
        kind: String,
        occurred_at: String,
        detail: Option<String>,
    },
    /// Where a poller got to.
    Cursor {
        source: String,
        cursor: String,
    },
    /// Several writes committed together.
    Many(Vec<Write>),
}

#[derive(Debug, Clone)]
pub struct Claim {
    pub flow: String,
    pub message_id: String,
    /// (destination, idempotency key)
    pub destinations: Vec<(String, String)>,
    pub owner: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct EffectRecord {
    pub flow: String,
    pub message_id: String,
    pub destination: String,
    pub step: String,
    pub state: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ErrorSummary {
    pub class: String,
    pub stage: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub destination: String,
    pub state: DeliveryState,
    pub idempotency_key: String,
    pub response_status: Option<i64>,
    pub last_error: Option<String>,
}

pub(super) async fn run(
    pool: AnyPool,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    timeout: Duration,
) {
    let mut batch = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut batch, batch_max).await > 0 {
        let writes: Vec<&Write> = batch.iter().map(|j| &j.write).collect();
        match bounded(timeout, commit(&pool, &writes)).await {
            Ok(mut answers) => {
                for job in batch.drain(..).rev() {
                    let _ = job.reply.send(Ok(answers.pop().unwrap_or_default()));
                }
            }
            // One bad write must not fail its neighbours: retry each on its own. But a
            // store that is down or not answering fails the whole batch at once, not
            // one write at a time for minutes.
            Err(Failure::Refused(_)) if batch.len() > 1 => {
                for job in batch.drain(..) {
                    let r = bounded(timeout, commit(&pool, &[&job.write]))
                        .await
                        .map(|mut a| a.pop().unwrap_or_default())
                        .map_err(Failure::into_error);
                    let _ = job.reply.send(r);
                }
            }
            Err(f) => {
                let e = f.into_error();
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Why a commit failed: the store refused this batch, or the store itself is
/// unavailable (unreachable, timed out, shutting down, busy).
enum Failure {
    Refused(sqlx::Error),
    Unavailable(GatewayError),
}

impl Failure {
    fn into_error(self) -> GatewayError {
        match self {
            Failure::Refused(e) => e.into(),
            Failure::Unavailable(e) => e,
        }
    }
}

/// Whether an error says the store is unavailable rather than that a write was bad.
pub(super) fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08), operator intervention (57: admin
            // shutdown, statement timeout), insufficient resources (53). SQLite: busy
            // or locked (5, 6).
            code.starts_with("08")
                || code.starts_with("57")
                || code.starts_with("53")
                || code == "5"
                || code == "6"
        }
        _ => false,
    }
}

async fn bounded<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = sqlx::Result<T>>,
) -> std::result::Result<T, Failure> {
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if unavailable(&e) => Err(Failure::Unavailable(e.into())),
        Ok(Err(e)) => Err(Failure::Refused(e)),
        Err(_) => Err(Failure::Unavailable(GatewayError::transient(
            Stage::Store,
            format!("the store did not answer within {}s", timeout.as_secs()),
        ))),
    }
}

/// A bound value: the store uses only text and integers.
#[derive(Debug, Clone)]
enum Param {
    Text(Option<String>),
    Int(Option<i64>),
}

fn text(s: &str) -> Param {
    Param::Text(Some(s.to_string()))
}

/// One statement's worth of rows for a table.
struct Table {
    insert: &'static str,
    columns: usize,
    /// Columns of the conflict key (a leading prefix of the row).
    key: usize,
    /// Text after VALUES (...): the upsert rule.
    conflict: &'static str,
}

const RECEIVED: Table = Table {
    insert: "INSERT INTO messages (flow, message_id, state, attempts, source, body_sha256, received_at, updated_at)",
    columns: 8,
    key: 2,
    conflict: "ON CONFLICT (flow, message_id) DO UPDATE SET updated_at = excluded.updated_at, \
               body_sha256 = COALESCE(messages.body_sha256, excluded.body_sha256), \
               source = COALESCE(messages.source, excluded.source)",
};

const OUTCOME: Table = Table {
    insert: "INSERT INTO messages (flow, message_id, state, attempts, error_class, error_stage, last_error, received_at, updated_at)",
    columns: 9,
    key: 2,
    conflict: "ON CONFLICT (flow, message_id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts, \
               error_class = excluded.error_class, error_stage = excluded.error_stage, \
               last_error = excluded.last_error, updated_at = excluded.updated_at \
               WHERE messages.state <> 'delivered' OR excluded.state = 'delivered'",
};

const SETTLED: Table = Table {
    insert: "INSERT INTO messages (flow, message_id, state, attempts, received_at, updated_at)",
    columns: 6,
    key: 2,
    conflict: "ON CONFLICT (flow, message_id) DO UPDATE SET state = excluded.state, \
               error_class = NULL, error_stage = NULL, last_error = NULL, updated_at = excluded.updated_at \
               WHERE messages.state <> 'delivered'",
};

const DELIVERY: Table = Table {
    insert: "INSERT INTO deliveries (flow, message_id, destination, state, attempts, idempotency_key, \
             response_status, last_error, delivered_at, updated_at)",
    columns: 10,
    key: 3,
    conflict: "ON CONFLICT (flow, message_id, destination) DO UPDATE SET state = excluded.state, \
               attempts = deliveries.attempts + 1, response_status = excluded.response_status, \
               last_error = excluded.last_error, delivered_at = excluded.delivered_at, \
               updated_at = excluded.updated_at, claimed_by = NULL, claim_expires_at = NULL \
               WHERE deliveries.state <> 'delivered'",
};

const AUDIT: Table = Table {
    insert: "INSERT INTO audit_log (id, at, actor, action, flow, message_id, destination, fields, agreement, detail)",
    columns: 10,
    key: 1,
    conflict: "",
};

const EFFECT: Table = Table {
    insert: "INSERT INTO effects (flow, message_id, destination, step, state, value, updated_at)",
    columns: 7,
    key: 4,
    conflict: "ON CONFLICT (flow, message_id, destination, step) DO UPDATE SET state = excluded.state, \
               value = COALESCE(excluded.value, effects.value), updated_at = excluded.updated_at \
               WHERE effects.state <> 'done'",
};

const SHEET: Table = Table {
    insert: "INSERT INTO sheet_files (destination, file, committed_bytes, rows_written, updated_at)",
    columns: 5,
    key: 2,
    conflict: "ON CONFLICT (destination, file) DO UPDATE SET committed_bytes = excluded.committed_bytes, \
               rows_written = excluded.rows_written, updated_at = excluded.updated_at",
};

const REFERRAL: Table = Table {
    insert: "INSERT INTO referrals (message_id, programme, practice, patient_key, record, created_at, updated_at)",
    columns: 7,
    key: 1,
    conflict: "ON CONFLICT (message_id) DO UPDATE SET updated_at = excluded.updated_at",
};

const REFERRAL_EVENT: Table = Table {
    insert: "INSERT INTO referral_events (event_message_id, referral_id, kind, occurred_at, detail, recorded_at)",
    columns: 6,
    key: 1,
    conflict: "ON CONFLICT (event_message_id) DO NOTHING",
};

const CURSOR: Table = Table {
    insert: "INSERT INTO poll_cursors (source, cursor, updated_at)",
    columns: 3,
    key: 1,
    conflict: "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
};

/// Rows of every table for a set of writes, and the claims (run one by one, as each
/// answers with what it took).
#[derive(Default)]
struct Rows {
    received: Vec<Vec<Param>>,
    outcome: Vec<Vec<Param>>,
    settled: Vec<Vec<Param>>,
    delivery: Vec<Vec<Param>>,
    audit: Vec<Vec<Param>>,
    effect: Vec<Vec<Param>>,
    sheet: Vec<Vec<Param>>,
    referral: Vec<Vec<Param>>,
    referral_event: Vec<Vec<Param>>,
    cursor: Vec<Vec<Param>>,
    /// (index of the write in the batch, claim)
    claims: Vec<(usize, Claim)>,
}

impl Rows {
    fn add(&mut self, index: usize, w: &Write, now: i64) {
        match w {
            Write::Received {
                flow,
                message_id,
                source,
                body_sha256,
            } => self.received.push(vec![
                text(flow),
                text(message_id),
                text(MessageState::Received.as_str()),
                Param::Int(Some(0)),
                text(source),
                text(body_sha256),
                Param::Int(Some(now)),
                Param::Int(Some(now)),
            ]),
            Write::Outcome {
                flow,
                message_id,
                state,
                attempts,
                error,
                deliveries,
                audit,
            } => {
                self.outcome.push(vec![
                    text(flow),
                    text(message_id),
                    text(state.as_str()),
                    Param::Int(Some(*attempts)),
                    Param::Text(error.as_ref().map(|e| e.class.clone())),
                    Param::Text(error.as_ref().map(|e| e.stage.clone())),
                    Param::Text(error.as_ref().map(|e| e.reason.clone())),
                    Param::Int(Some(now)),
                    Param::Int(Some(now)),
                ]);
                for d in deliveries {
                    self.delivery.push(vec![
                        text(flow),
                        text(message_id),
                        text(&d.destination),
                        text(d.state.as_str()),
                        Param::Int(Some(1)),
                        text(&d.idempotency_key),
                        Param::Int(d.response_status),
                        Param::Text(d.last_error.clone()),
                        Param::Int((d.state == DeliveryState::Delivered).then_some(now)),
                        Param::Int(Some(now)),
                    ]);
                }
                for a in audit {
                    self.audit.push(audit_row(a, now));
                }
            }
            Write::Audit(a) => self.audit.push(audit_row(a, now)),
            Write::Settled {
                flow,
                message_id,
                audit,
            } => {
                self.settled.push(vec![
                    text(flow),
                    text(message_id),
                    text(MessageState::Delivered.as_str()),
                    Param::Int(Some(1)),
                    Param::Int(Some(now)),
                    Param::Int(Some(now)),
                ]);
                self.audit.push(audit_row(audit, now));
            }
            Write::Claim(c) => self.claims.push((index, c.clone())),
            Write::Effect(e) => self.effect.push(vec![
                text(&e.flow),
                text(&e.message_id),
                text(&e.destination),
                text(&e.step),
                text(&e.state),
                Param::Text(e.value.clone()),
                Param::Int(Some(now)),
            ]),
            Write::Sheet {
                destination,
                file,
                committed_bytes,
                rows,
            } => self.sheet.push(vec![
                text(destination),
                text(file),
                Param::Int(Some(*committed_bytes)),
                Param::Int(Some(*rows)),
                Param::Int(Some(now)),
            ]),
            Write::Referral {
                message_id,
                programme,
                practice,
                patient_key,
                record,
            } => self.referral.push(vec![
                text(message_id),
                text(programme),
                Param::Text(practice.clone()),
                Param::Text(patient_key.clone()),
                text(record),
                Param::Int(Some(now)),
                Param::Int(Some(now)),
            ]),
            Write::ReferralEvent {
                event_message_id,
                referral_id,
                kind,
                occurred_at,
                detail,
            } => self.referral_event.push(vec![
                text(event_message_id),
                text(referral_id),
                text(kind),
                text(occurred_at),
                Param::Text(detail.clone()),
                Param::Int(Some(now)),
            ]),
            Write::Cursor { source, cursor } => {
                self.cursor
                    .push(vec![text(source), text(cursor), Param::Int(Some(now))])
            }
            Write::Many(all) => all.iter().for_each(|w| self.add(index, w, now)),
        }
    }

    /// Whether one upsert statement would touch the same key twice (PostgreSQL refuses).
    fn has_repeated_keys(&self) -> bool {
        fn repeated(rows: &[Vec<Param>], key_len: usize) -> bool {
            let mut seen = std::collections::HashSet::new();
            rows.iter().any(|r| {
                let key: Vec<Option<&str>> = r[..key_len]
                    .iter()
                    .map(|p| match p {
                        Param::Text(t) => t.as_deref(),
                        Param::Int(_) => None,
                    })
                    .collect();
                !seen.insert(key)
            })
        }
        repeated(&self.received, RECEIVED.key)
            || repeated(&self.outcome, OUTCOME.key)
            || repeated(&self.settled, SETTLED.key)
            || repeated(&self.delivery, DELIVERY.key)
            || repeated(&self.effect, EFFECT.key)
            || repeated(&self.sheet, SHEET.key)
            || repeated(&self.referral, REFERRAL.key)
            || repeated(&self.referral_event, REFERRAL_EVENT.key)
            || repeated(&self.cursor, CURSOR.key)
    }

    /// Inserts every row, then runs the claims; answers each claim's write index with
    /// the destinations it took.
    async fn insert(
        self,
        tx: &mut Transaction<'_, Any>,
        now: i64,
    ) -> sqlx::Result<Vec<(usize, Vec<String>)>> {
        insert(tx, &RECEIVED, &self.received).await?;
        insert(tx, &OUTCOME, &self.outcome).await?;
        insert(tx, &SETTLED, &self.settled).await?;
        insert(tx, &DELIVERY, &self.delivery).await?;
        insert(tx, &AUDIT, &self.audit).await?;
        insert(tx, &EFFECT, &self.effect).await?;
        insert(tx, &SHEET, &self.sheet).await?;
        insert(tx, &REFERRAL, &self.referral).await?;
        insert(tx, &REFERRAL_EVENT, &self.referral_event).await?;
        insert(tx, &CURSOR, &self.cursor).await?;
        let mut answers = Vec::with_capacity(self.claims.len());
        for (index, c) in self.claims {
            answers.push((index, claim(tx, &c, now).await?));
        }
        Ok(answers)
    }
}

fn audit_row(a: &AuditEntry, now: i64) -> Vec<Param> {
    vec![
        // Time-ordered ids: entries of the same millisecond list in the order written.
        text(&uuid::Uuid::now_v7().to_string()),
        Param::Int(Some(now)),
        text(&a.actor),
        text(a.action.as_str()),
        text(&a.flow),
        text(&a.message_id),
        Param::Text(a.destination.clone()),
        Param::Text((!a.fields.is_empty()).then(|| a.fields.join(","))),
        Param::Text(a.agreement.clone()),
        Param::Text(a.detail.clone()),
    ]
}

/// `$1, $2, ...` groups for `rows` rows of `columns` columns, numbered from `start`.
fn placeholders(rows: usize, columns: usize, start: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    let mut n = start;
    for i in 0..rows {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for c in 0..columns {
            n += 1;
            sql.push_str(if c == 0 { "$" } else { ", $" });
            sql.push_str(&n.to_string());
        }
        sql.push(')');
    }
    sql
}

/// Multi-row INSERT (in chunks), numbering placeholders $1.. in order of appearance,
/// which both PostgreSQL and SQLite read positionally.
async fn insert(
    tx: &mut Transaction<'_, Any>,
    table: &Table,
    rows: &[Vec<Param>],
) -> sqlx::Result<()> {
    for chunk in shaped_chunks(rows) {
        let sql = format!(
            "{} VALUES {} {}",
            table.insert,
            placeholders(chunk.len(), table.columns, 0),
            table.conflict
        );
        let mut q = sqlx::query(&sql);
        for row in chunk {
            for p in row {
                q = match p {
                    Param::Text(v) => q.bind(v.clone()),
                    Param::Int(v) => q.bind(*v),
                };
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Takes what can be taken of one claim in one statement; the destinations it took.
async fn claim(tx: &mut Transaction<'_, Any>, c: &Claim, now: i64) -> sqlx::Result<Vec<String>> {
    if c.destinations.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO deliveries (flow, message_id, destination, idempotency_key, state, attempts, \
         updated_at, claimed_by, claim_expires_at) VALUES {} \
         ON CONFLICT (flow, message_id, destination) DO UPDATE SET claimed_by = excluded.claimed_by, \
         claim_expires_at = excluded.claim_expires_at, updated_at = excluded.updated_at \
         WHERE deliveries.state NOT IN ('delivered', 'unknown') AND (deliveries.claimed_by IS NULL \
         OR deliveries.claimed_by = excluded.claimed_by OR deliveries.claim_expires_at < excluded.updated_at) \
         RETURNING destination",
        placeholders(c.destinations.len(), 9, 0)
    );
    let mut q = sqlx::query(&sql);
    for (destination, key) in &c.destinations {
        q = q
            .bind(c.flow.clone())
            .bind(c.message_id.clone())
            .bind(destination.clone())
            .bind(key.clone())
            .bind(DeliveryState::Pending.as_str())
            .bind(0i64)
            .bind(now)
            .bind(c.owner.clone())
            .bind(c.expires_at);
    }
    let rows = q.fetch_all(&mut **tx).await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Commits `writes` in one transaction: one multi-row statement per table when no key
/// repeats, else write by write in order. Answers every write (claims with what they
/// took, others with nothing).
async fn commit(pool: &AnyPool, writes: &[&Write]) -> sqlx::Result<Vec<Vec<String>>> {
    let now = now_ms();
    let mut answers = vec![Vec::new(); writes.len()];
    let mut all = Rows::default();
    for (i, w) in writes.iter().enumerate() {
        all.add(i, w, now);
    }
    let mut tx = pool.begin().await?;
    let claimed = if all.has_repeated_keys() {
        let mut claimed = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            let mut one = Rows::default();
            one.add(i, w, now);
            claimed.extend(one.insert(&mut tx, now).await?);
        }
        claimed
    } else {
        all.insert(&mut tx, now).await?
    };
    tx.commit().await?;
    for (i, took) in claimed {
        answers[i] = took;
    }
    Ok(answers)
}
