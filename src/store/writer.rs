//! The single writer: takes queued writes, commits up to `batch_max` of them in one
//! transaction, and answers each caller once its write is durable.

use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::mpsc;

use super::rows::Rows;
use super::{AuditEntry, Job, now_ms};
use crate::error::{GatewayError, Stage};
use crate::model::state::{DeliveryState, MessageState};

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
    /// How much of a file a destination appends to is complete (written and synced).
    Appended {
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
    /// The dataset's facts of a referral (no direct identifier); a second copy changes
    /// nothing.
    DatasetReferral {
        message_id: String,
        programme: String,
        referred_on: String,
        person_ref: Option<String>,
        facts: String,
    },
    /// The dataset's facts of an event; a second copy changes nothing.
    DatasetEvent {
        event_message_id: String,
        referral_id: String,
        facts: String,
    },
    /// An event linked to its referral; a second copy changes nothing.
    ReferralEvent {
        event_message_id: String,
        referral_id: String,
        kind: String,
        occurred_at: String,
        detail: Option<String>,
    },
    /// One message about a referral, as a version of it (names and digests only).
    Version {
        message_id: String,
        referral_id: String,
        identity: Option<String>,
        change: crate::model::state::Change,
        fields: Vec<String>,
        /// JSON object: field -> keyed digest.
        fingerprint: String,
        /// What its consent shares now (full, codes-only, declined); None for the
        /// gateway's own.
        consent: Option<String>,
    },
    /// A referral ended by the practice or the gateway; the first end stands.
    Ended {
        referral_id: String,
        state: crate::model::state::Lifecycle,
        by_message: String,
        reason: String,
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
