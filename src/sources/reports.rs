//! Reports from a destination that something it accepted did not reach its recipient
//! (MESH's non-delivery reports): each is matched to the message whose send got the id
//! it names, audited against that message (`undelivered`, with the destination's code
//! and description), counted, logged by id, and only then taken from the inbox. A report
//! that names nothing the gateway sent is left where it is, for a person, and logged.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::deliver::{Report, Reports};
use crate::engine::metrics::{self, Metrics};
use crate::error::Result;
use crate::model::state::AuditAction;
use crate::sources::shutdown::Shutdown;
use crate::store::{AuditEntry, Store, Write};

/// Reads `destination`'s reports until shutdown.
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
        "reading the destination's delivery reports"
    );
    loop {
        if let Err(e) = once(&destination, reports.as_ref(), &store, &metrics).await {
            warn!(destination, error = %e, "reading delivery reports failed; trying again next time");
        }
        if !shutdown.pause(reports.every()).await {
            return;
        }
    }
}

/// One reading: returns how many reports were matched and taken.
pub async fn once(
    destination: &str,
    reports: &dyn Reports,
    store: &Store,
    metrics: &Metrics,
) -> Result<usize> {
    let mut taken = 0;
    for report in reports.waiting().await? {
        let about = match &report.about {
            Some(id) => store.effect_by_value(destination, id).await?,
            None => None,
        };
        let Some((flow, message_id)) = about else {
            warn!(
                destination,
                report = report.id,
                about = report.about.as_deref().unwrap_or("-"),
                code = report.code,
                "a delivery report names nothing the gateway sent; left in the inbox for a person"
            );
            continue;
        };
        store
            .write(Write::Audit(AuditEntry {
                actor: destination.to_string(),
                action: AuditAction::Undelivered,
                flow: flow.clone(),
                message_id: message_id.clone(),
                destination: Some(destination.to_string()),
                fields: Vec::new(),
                agreement: None,
                detail: Some(detail(&report)),
            }))
            .await?;
        metrics
            .undelivered_reports
            .get_or_create(&metrics::dest(&flow, destination))
            .inc();
        error!(
            destination,
            message_id,
            report = report.id,
            code = report.code,
            "the destination reports a message it accepted did not reach its recipient"
        );
        // Recorded first, then taken: a crash between the two reads it again, and the
        // audit says so twice rather than never.
        reports.taken(&report).await?;
        taken += 1;
    }
    Ok(taken)
}

fn detail(r: &Report) -> String {
    format!(
        "non-delivery report {} for {}: code {} ({}); the message did not reach the practice \
         record: check the patient's registered practice, then have the event sent again under \
         a new id",
        r.id,
        r.about.as_deref().unwrap_or("-"),
        r.code,
        if r.description.is_empty() {
            "no description"
        } else {
            &r.description
        }
    )
}
