//! How one batch of writes becomes SQL: rows gathered per table, inserted by multi-row
//! upserts of a few fixed shapes, then the claims run one by one. Apart from the
//! writer's queueing and failure handling, which need none of this.

use sqlx::{Any, Row, Transaction};

use super::writer::{Claim, Write};
use super::{AuditEntry, shaped_chunks};
use crate::model::state::{DeliveryState, MessageState};

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

const APPENDED: Table = Table {
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

const DATASET_REFERRAL: Table = Table {
    insert: "INSERT INTO dataset_referrals (message_id, programme, referred_on, person_ref, facts, recorded_at)",
    columns: 6,
    key: 1,
    conflict: "ON CONFLICT (message_id) DO NOTHING",
};

const DATASET_EVENT: Table = Table {
    insert: "INSERT INTO dataset_events (event_message_id, referral_id, facts, recorded_at)",
    columns: 4,
    key: 1,
    conflict: "ON CONFLICT (event_message_id) DO NOTHING",
};

const VERSION: Table = Table {
    insert: "INSERT INTO referral_versions (message_id, referral_id, identity, change, fields, fingerprint, consent, created_at)",
    columns: 8,
    key: 1,
    conflict: "ON CONFLICT (message_id) DO NOTHING",
};

const ENDED: Table = Table {
    insert: "INSERT INTO referral_lifecycle (referral_id, state, by_message, reason, changed_at)",
    columns: 5,
    key: 1,
    conflict: "ON CONFLICT (referral_id) DO NOTHING",
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
pub(super) struct Rows {
    received: Vec<Vec<Param>>,
    outcome: Vec<Vec<Param>>,
    settled: Vec<Vec<Param>>,
    delivery: Vec<Vec<Param>>,
    audit: Vec<Vec<Param>>,
    effect: Vec<Vec<Param>>,
    appended: Vec<Vec<Param>>,
    referral: Vec<Vec<Param>>,
    referral_event: Vec<Vec<Param>>,
    dataset_referral: Vec<Vec<Param>>,
    dataset_event: Vec<Vec<Param>>,
    cursor: Vec<Vec<Param>>,
    version: Vec<Vec<Param>>,
    ended: Vec<Vec<Param>>,
    /// (index of the write in the batch, claim)
    claims: Vec<(usize, Claim)>,
}

impl Rows {
    pub(super) fn add(&mut self, index: usize, w: &Write, now: i64) {
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
            Write::Appended {
                destination,
                file,
                committed_bytes,
                rows,
            } => self.appended.push(vec![
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
            Write::DatasetReferral {
                message_id,
                programme,
                referred_on,
                person_ref,
                facts,
            } => self.dataset_referral.push(vec![
                text(message_id),
                text(programme),
                text(referred_on),
                Param::Text(person_ref.clone()),
                text(facts),
                Param::Int(Some(now)),
            ]),
            Write::DatasetEvent {
                event_message_id,
                referral_id,
                facts,
            } => self.dataset_event.push(vec![
                text(event_message_id),
                text(referral_id),
                text(facts),
                Param::Int(Some(now)),
            ]),
            Write::Cursor { source, cursor } => {
                self.cursor
                    .push(vec![text(source), text(cursor), Param::Int(Some(now))])
            }
            Write::Version {
                message_id,
                referral_id,
                identity,
                change,
                fields,
                fingerprint,
                consent,
            } => self.version.push(vec![
                text(message_id),
                text(referral_id),
                Param::Text(identity.clone()),
                text(change.as_str()),
                text(&serde_json::to_string(fields).unwrap_or_else(|_| "[]".into())),
                text(fingerprint),
                Param::Text(consent.clone()),
                Param::Int(Some(now)),
            ]),
            Write::Ended {
                referral_id,
                state,
                by_message,
                reason,
            } => self.ended.push(vec![
                text(referral_id),
                text(state.as_str()),
                text(by_message),
                text(reason),
                Param::Int(Some(now)),
            ]),
            Write::Many(all) => all.iter().for_each(|w| self.add(index, w, now)),
        }
    }

    /// Whether one upsert statement would touch the same key twice (PostgreSQL refuses).
    pub(super) fn has_repeated_keys(&self) -> bool {
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
            || repeated(&self.appended, APPENDED.key)
            || repeated(&self.referral, REFERRAL.key)
            || repeated(&self.referral_event, REFERRAL_EVENT.key)
            || repeated(&self.dataset_referral, DATASET_REFERRAL.key)
            || repeated(&self.dataset_event, DATASET_EVENT.key)
            || repeated(&self.cursor, CURSOR.key)
            || repeated(&self.version, VERSION.key)
            || repeated(&self.ended, ENDED.key)
    }

    /// Inserts every row, then runs the claims; answers each claim's write index with
    /// the destinations it took.
    pub(super) async fn insert(
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
        insert(tx, &APPENDED, &self.appended).await?;
        insert(tx, &REFERRAL, &self.referral).await?;
        insert(tx, &REFERRAL_EVENT, &self.referral_event).await?;
        insert(tx, &DATASET_REFERRAL, &self.dataset_referral).await?;
        insert(tx, &DATASET_EVENT, &self.dataset_event).await?;
        insert(tx, &CURSOR, &self.cursor).await?;
        insert(tx, &VERSION, &self.version).await?;
        insert(tx, &ENDED, &self.ended).await?;
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
