//! What a destination's inbox says back (MESH's), read on a schedule, each message
//! recorded before it is taken — so nothing the gateway is owed expires unread:
//!
//! - a **non-delivery report** about a message it sent: audited (`undelivered`),
//!   counted, logged;
//! - an **acknowledgement** (ITK3 response): recorded as the delivery's sub-state in the
//!   effect journal (`ack-infrastructure`, `ack-business`: received → filed or rejected)
//!   and audited (`acknowledged`); a rejection parks the event for a person with the
//!   code and its meaning, and alerts;
//! - anything else, or a report or acknowledgement naming nothing the gateway sent:
//!   kept whole in the store (`inbox_kept`), counted and audited (`kept`).
//!
//! Then sends still without an acknowledgement past the destination's time are told to
//! a person once (`ack-overdue`, an error in the log) and counted per practice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::deliver::{Ack, AckLevel, AckOutcome, Report, ReportKind, Reports};
use crate::engine::metrics::{self, Metrics};
use crate::error::Result;
use crate::model::Headers;
use crate::model::state::AuditAction;
use crate::sources::shutdown::Shutdown;
use crate::store::{AuditEntry, ParkedRecord, Store, Write};

/// Reads `destination`'s inbox until shutdown: a full page again at once, else after
/// `every`.
pub async fn run(
    destination: String,
    reports: Arc<dyn Reports>,
    store: Store,
    metrics: Metrics,
    mut shutdown: Shutdown,
) {
    info!(
        destination,
        every_s = reports.every().as_secs(),
        "reading the destination's inbox"
    );
    let mut counted = HashSet::new();
    loop {
        let full = match once(&destination, reports.as_ref(), &store, &metrics).await {
            Ok(read) => reports.full_page().is_some_and(|page| read >= page),
            Err(e) => {
                warn!(destination, error = %e, "reading the inbox failed; trying again next time");
                false
            }
        };
        if let Err(e) = overdue(
            &destination,
            reports.as_ref(),
            &store,
            &metrics,
            &mut counted,
        )
        .await
        {
            warn!(destination, error = %e, "checking overdue acknowledgements failed");
        }
        if !full && !shutdown.pause(reports.every()).await {
            return;
        }
    }
}

/// One reading: how many inbox messages were recorded and taken.
pub async fn once(
    destination: &str,
    reports: &dyn Reports,
    store: &Store,
    metrics: &Metrics,
) -> Result<usize> {
    let mut taken = 0;
    for report in reports.waiting().await? {
        match &report.kind {
            ReportKind::NonDelivery { about, .. } => {
                match find(store, destination, about.as_deref()).await? {
                    Some(sent) => undelivered(destination, &report, &sent, store, metrics).await?,
                    None => {
                        keep(
                            destination,
                            &report,
                            "a report naming nothing the gateway sent",
                            store,
                            metrics,
                        )
                        .await?
                    }
                }
            }
            ReportKind::Acknowledgement(ack) => {
                match find(store, destination, Some(&ack.about)).await? {
                    Some(sent) => acknowledged(destination, ack, &sent, store, metrics).await?,
                    None => {
                        keep(
                            destination,
                            &report,
                            "an acknowledgement naming nothing the gateway sent",
                            store,
                            metrics,
                        )
                        .await?
                    }
                }
            }
            ReportKind::Unrecognised { .. } => {
                keep(
                    destination,
                    &report,
                    "not a report or acknowledgement the gateway reads",
                    store,
                    metrics,
                )
                .await?
            }
        }
        // Recorded first, then taken: a crash between the two reads it again, and the
        // record is written twice (idempotently) rather than never.
        reports.taken(&report).await?;
        taken += 1;
    }
    Ok(taken)
}

/// (flow, message id) of what the gateway sent that `about` names (an id the send got
/// or the message carried, as the journal recorded it).
async fn find(
    store: &Store,
    destination: &str,
    about: Option<&str>,
) -> Result<Option<(String, String)>> {
    match about {
        Some(id) => store.effect_by_value(destination, id).await,
        None => Ok(None),
    }
}

fn audit(destination: &str, sent: &(String, String), action: AuditAction, detail: String) -> Write {
    Write::Audit(AuditEntry {
        actor: destination.to_string(),
        action,
        flow: sent.0.clone(),
        message_id: sent.1.clone(),
        destination: Some(destination.to_string()),
        fields: Vec::new(),
        agreement: None,
        detail: Some(detail),
    })
}

async fn undelivered(
    destination: &str,
    r: &Report,
    sent: &(String, String),
    store: &Store,
    metrics: &Metrics,
) -> Result<()> {
    let ReportKind::NonDelivery {
        about,
        code,
        description,
    } = &r.kind
    else {
        return Ok(());
    };
    let detail = format!(
        "non-delivery report {} for {}: code {code} ({}); the message did not reach the practice \
         record: check the patient's registered practice, then have the event sent again under \
         a new id",
        r.id,
        about.as_deref().unwrap_or("-"),
        if description.is_empty() {
            "no description"
        } else {
            description
        }
    );
    store
        .write(audit(destination, sent, AuditAction::Undelivered, detail))
        .await?;
    metrics
        .undelivered_reports
        .get_or_create(&metrics::dest(&sent.0, destination))
        .inc();
    error!(
        destination,
        message_id = sent.1,
        report = r.id,
        code,
        "the destination reports a message it accepted did not reach its recipient"
    );
    Ok(())
}

/// Records an acknowledgement as the delivery's sub-state: a later, lesser answer never
/// replaces a final one; a final answer (filed, rejected) also closes the business level,
/// since nothing follows a negative code and a duplicate means already filed.
async fn acknowledged(
    destination: &str,
    ack: &Ack,
    sent: &(String, String),
    store: &Store,
    metrics: &Metrics,
) -> Result<()> {
    let value = format!("{} {} {}", ack.outcome.as_str(), ack.code, ack.display);
    let mut levels = vec![ack.level];
    if ack.outcome != AckOutcome::Received && ack.level == AckLevel::Infrastructure {
        levels.push(AckLevel::Business);
    }
    for level in levels {
        let had = store
            .effect(&sent.0, &sent.1, destination, level.step())
            .await?;
        let final_already = had
            .and_then(|(_, v)| v)
            .is_some_and(|v| !v.starts_with(AckOutcome::Received.as_str()));
        if final_already {
            continue;
        }
        store
            .write(Write::Effect(crate::store::writer_types::EffectRecord {
                flow: sent.0.clone(),
                message_id: sent.1.clone(),
                destination: destination.to_string(),
                step: level.step().into(),
                state: "done".into(),
                value: Some(value.clone()),
            }))
            .await?;
    }
    let detail = format!(
        "{} acknowledgement: {} — ITK3 {} {}",
        ack.level.as_str(),
        match ack.outcome {
            AckOutcome::Received => "received by the practice's system",
            AckOutcome::Filed => "filed at the practice",
            AckOutcome::Rejected => "rejected by the practice",
        },
        ack.code,
        ack.display
    );
    store
        .write(audit(destination, sent, AuditAction::Acknowledged, detail))
        .await?;
    if sent.0 == crate::model::Flow::MessageBack.as_str() {
        store
            .dataset_event_acknowledged(&sent.1, ack.outcome.as_str())
            .await?;
    }
    metrics
        .acknowledgements
        .get_or_create(&metrics::AckLabels {
            destination: destination.to_string(),
            level: ack.level.as_str().into(),
            outcome: ack.outcome.as_str().into(),
        })
        .inc();
    if ack.outcome == AckOutcome::Rejected {
        rejected(destination, ack, sent, store).await?;
    }
    Ok(())
}

/// A practice refused what MESH delivered: parked for a person with the code and its
/// meaning (never the patient's details), and an error in the log for the alert.
async fn rejected(
    destination: &str,
    ack: &Ack,
    sent: &(String, String),
    store: &Store,
) -> Result<()> {
    let reason = format!(
        "{destination}: the practice's system rejected the message ({} acknowledgement, ITK3 {} \
         {}): it is not in the practice record. Check with the practice (e.g. the patient's \
         registration), then have the event sent again under a new id",
        ack.level.as_str(),
        ack.code,
        ack.display
    );
    store
        .park(&ParkedRecord {
            flow: sent.0.clone(),
            message_id: sent.1.clone(),
            stage: "acknowledge".into(),
            error_class: "permanent".into(),
            field: None,
            reason: reason.clone(),
            attempts: 0,
            mapping: None,
            origin: format!("inbox:{destination}"),
            headers: Headers::new(),
            content_type: None,
            body: Vec::new(),
        })
        .await?;
    error!(
        destination,
        message_id = sent.1,
        code = ack.code,
        "a practice rejected a message the gateway sent: parked for a person"
    );
    Ok(())
}

/// Keeps an inbox message the gateway cannot act on, whole, for a person.
async fn keep(
    destination: &str,
    r: &Report,
    reason: &str,
    store: &Store,
    metrics: &Metrics,
) -> Result<()> {
    let workflow = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("mex-workflowid"))
        .map(|(_, v)| v.as_str());
    if store
        .keep_inbox(destination, &r.id, workflow, reason, &r.headers, &r.body)
        .await?
    {
        store
            .write(Write::Audit(AuditEntry {
                actor: destination.to_string(),
                action: AuditAction::Kept,
                flow: "inbox".into(),
                message_id: r.id.clone(),
                destination: Some(destination.to_string()),
                fields: Vec::new(),
                agreement: None,
                detail: Some(format!(
                    "{reason}; kept in the store ({} bytes)",
                    r.body.len()
                )),
            }))
            .await?;
        metrics
            .inbox_kept
            .get_or_create(&metrics::dest("inbox", destination))
            .inc();
    }
    warn!(
        destination,
        inbox_id = r.id,
        reason,
        "an inbox message kept for a person"
    );
    Ok(())
}

/// Sends past the destination's acknowledgement time: each told to a person once, all
/// counted per practice (`counted`: the gauges set last time, zeroed when they clear).
pub async fn overdue(
    destination: &str,
    reports: &dyn Reports,
    store: &Store,
    metrics: &Metrics,
    counted: &mut HashSet<metrics::OverdueLabels>,
) -> Result<usize> {
    let mut told = 0;
    let mut now_counted = HashSet::new();
    let Some(sent_step) = reports.sent_step() else {
        return Ok(0);
    };
    for level in [AckLevel::Infrastructure, AckLevel::Business] {
        let Some(within) = reports.ack_within(level) else {
            continue;
        };
        let before = crate::store::now_ms() - within.as_millis() as i64;
        let waiting = store
            .awaiting_answer(
                destination,
                sent_step,
                level.step(),
                level.overdue_step(),
                before,
            )
            .await?;
        let mut per_practice: HashMap<String, i64> = HashMap::new();
        for w in &waiting {
            *per_practice
                .entry(w.practice.clone().unwrap_or_else(|| "unknown".into()))
                .or_default() += 1;
        }
        for (practice, n) in per_practice {
            let labels = metrics::OverdueLabels {
                destination: destination.to_string(),
                practice,
                level: level.as_str().into(),
            };
            metrics.acks_overdue.get_or_create(&labels).set(n);
            now_counted.insert(labels);
        }
        for w in waiting.iter().filter(|w| !w.told) {
            // Claimed first: with several instances reading, one tells.
            let claimed = store
                .first_to_record(
                    &w.flow,
                    &w.message_id,
                    destination,
                    level.overdue_step(),
                    &crate::store::now_ms().to_string(),
                )
                .await?;
            if !claimed {
                continue;
            }
            let sent = (w.flow.clone(), w.message_id.clone());
            let detail = format!(
                "no {} acknowledgement within {} of the send: the practice may not have it; \
                 check with the practice (GP Connect Send Document asks that a person is told)",
                level.as_str(),
                crate::model::dates::period_in_words(within)
            );
            store
                .write(audit(destination, &sent, AuditAction::AckOverdue, detail))
                .await?;
            error!(
                destination,
                message_id = w.message_id,
                practice = w.practice.as_deref().unwrap_or("unknown"),
                level = level.as_str(),
                "an acknowledgement is overdue"
            );
            told += 1;
        }
    }
    for cleared in counted.difference(&now_counted) {
        metrics.acks_overdue.get_or_create(cleared).set(0);
    }
    *counted = now_counted;
    Ok(told)
}
