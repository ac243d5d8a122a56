//! The mailbox's inbox, read for everything the gateway is owed: MESH's non-delivery and
//! error reports (`Mex-MessageType: REPORT`, e.g. the EPL codes of a wrong-practice
//! route), the practices' ITK3 acknowledgements (the `…_ACK` workflows), and anything
//! else — each classified here and taken (acknowledged to MESH) only once
//! `sources::reports` has recorded it, so nothing expires in the inbox unseen.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::client::{INBOX_PAGE, InboxMessage, Mesh};
use super::response;
use crate::deliver::{AckLevel, Report, ReportKind, Reports};
use crate::error::Result;

pub struct InboxReports {
    pub mesh: Arc<Mesh>,
    pub every: Duration,
    /// How long each acknowledgement may take before a person is told.
    pub infrastructure_within: Duration,
    pub business_within: Duration,
}

/// What one inbox message is.
fn classify(m: &InboxMessage) -> ReportKind {
    let workflow = m.header("mex-workflowid");
    if m.header("mex-messagetype")
        .is_some_and(|t| t.eq_ignore_ascii_case("REPORT"))
    {
        let description = [m.header("mex-statusevent"), m.header("mex-statusdescription")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        return ReportKind::NonDelivery {
            about: m.header("mex-linkedmsgid"),
            code: m.header("mex-statuscode").unwrap_or_else(|| "?".into()),
            description,
        };
    }
    let is_ack = workflow
        .as_deref()
        .is_some_and(|w| w.to_ascii_uppercase().ends_with("_ACK"));
    match response::parse(&m.body).filter(|_| is_ack) {
        Some(ack) => ReportKind::Acknowledgement(ack),
        None => ReportKind::Unrecognised { workflow },
    }
}

impl Reports for InboxReports {
    fn every(&self) -> Duration {
        self.every
    }

    fn full_page(&self) -> Option<usize> {
        Some(INBOX_PAGE)
    }

    fn waiting(&self) -> BoxFuture<'_, Result<Vec<Report>>> {
        Box::pin(async move {
            self.mesh.handshake().await?;
            let mut out = Vec::new();
            for id in self.mesh.inbox().await? {
                let m = self.mesh.read(&id).await?;
                out.push(Report {
                    id,
                    kind: classify(&m),
                    headers: m.headers,
                    body: m.body,
                });
            }
            Ok(out)
        })
    }

    fn taken<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.mesh.acknowledge(&report.id))
    }

    fn sent_step(&self) -> Option<&'static str> {
        Some(super::SEND)
    }

    fn ack_within(&self, level: AckLevel) -> Option<Duration> {
        Some(match level {
            AckLevel::Infrastructure => self.infrastructure_within,
            AckLevel::Business => self.business_within,
        })
    }
}
