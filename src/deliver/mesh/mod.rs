//! MESH record writer (England): GP Connect Send Document — the event's ITK3 message
//! (FHIR STU3, XML by default) posted to our MESH outbox, addressed by MESH's automated
//! routing to the patient's registered practice (`GPPROVIDER_{NHS}_{YYYYMMDD}_{SURNAME}`),
//! workflow `GPFED_CONSULT_REPORT` (configurable: `GPCONNECT_SEND_DOCUMENT` in GP Connect
//! Send Document 2.x). Every request carries a fresh `NHSMESH` authorisation header
//! (HMAC-SHA256 over mailbox, nonce, count, password and time; MESH refuses a token
//! used twice).
//!
//! MESH keeps no idempotency of its own. The send is journalled in the store; with
//! `local_id = "event"` (the default) `Mex-LocalID` is the event's own id, so after a
//! crash between posting and recording the answer, MESH's tracking by local id says
//! whether it went (nothing is resent when it did). With `local_id = "ods"` (the
//! sender's ODS code, as Send Document 2.x asks) that question cannot be asked, and an
//! interrupted send is parked for a person instead.
//!
//! The mailbox's inbox is read for what MESH and the practices send back
//! (`inbox.rs`): non-delivery reports, the ITK3 acknowledgements every message asks
//! for (`response.rs`), anything else kept for a person. The MESH client rules
//! (handshake, polling bounds, single-use tokens, the 5 MB limit) are `client.rs`'s.

mod client;
mod inbox;
pub mod response;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::http::{Http, endpoint};
use super::terms::{HasHttp, destination_config};
use super::{Build, Job, Reports, Sent, Sink, Step};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::record::RecordEntry;
use crate::record::itk::{self, Sender};
use crate::secret::Secret;
use client::{Mesh, Outgoing};
use inbox::InboxReports;


pub const FLOW: Flow = Flow::MessageBack;

/// A record writer: it writes events, never a referral's later messages.
pub const LATER: &[crate::model::lifecycle::Change] = &[];

/// It keeps no files of its own.
pub fn kept(_: &Config) -> Option<super::Kept<'_>> {
    None
}

/// The MESH API: `auth_header` on every request, with the client certificate `tls` names.
pub fn channel(c: &Config) -> super::channel::Channel {
    let ch = super::channel::Channel::http("MESH API (ITK3 message)", &c.base_url, c.http());
    let mailbox = c.mailbox.to_ascii_uppercase();
    let endpoint = format!("{} (mailbox {mailbox})", ch.endpoint);
    super::channel::Channel { endpoint, ..ch }
        .auth("MESH authorisation header (mailbox and password, HMAC-SHA256 with the shared key)")
        .credential("password", &c.password)
        .credential("shared_key", &c.shared_key)
}

destination_config! { @http
    /// `kind = "mesh"`
    pub struct Config {
        /// The MESH API base (e.g. `https://msg.intspineservices.nhs.uk`).
        pub base_url: String,
        /// Our MESH mailbox id.
        pub mailbox: String,
        pub password: Secret,
        /// The environment's shared HMAC key.
        pub shared_key: Secret,
        #[serde(default = "default_workflow")]
        pub workflow_id: String,
        /// The sending organisation (Mex-LocalID with `local_id = "ods"`, and the
        /// message's sender Organization).
        pub sender_ods: String,
        pub sender_name: String,
        #[serde(default)]
        pub local_id: LocalId,
        /// `xml` (ITK3 requires it) or `json`.
        #[serde(default)]
        pub format: Format,
        /// A json mapping producing the record entry (default: gp-record).
        #[serde(default = "default_mapping")]
        pub mapping: String,
        /// How often the mailbox's inbox is read for what MESH and the practices send
        /// back (default 5 minutes; MESH's bounds: every 5 minutes at most, daily at
        /// least; only a loopback sandbox may be read faster, or not at all with `0s`).
        #[serde(default = "default_reports_every", with = "humantime_serde")]
        pub reports_every: Option<std::time::Duration>,
        /// How long the practice system's infrastructure acknowledgement may take
        /// before a person is told (alert, metric per practice).
        #[serde(default = "default_infrastructure_within", with = "humantime_serde")]
        pub infrastructure_ack_within: std::time::Duration,
        /// How long the practice's business acknowledgement (filed or not) may take.
        #[serde(default = "default_business_within", with = "humantime_serde")]
        pub business_ack_within: std::time::Duration,
    }
}

fn default_reports_every() -> Option<std::time::Duration> {
    Some(std::time::Duration::from_secs(300))
}

fn default_infrastructure_within() -> std::time::Duration {
    std::time::Duration::from_secs(4 * 3600)
}

/// Under MESH's 5-day expiry, so a missing answer is chased while it still can come.
fn default_business_within() -> std::time::Duration {
    std::time::Duration::from_secs(3 * 86_400)
}

/// MESH's polling bounds (NHS England's MESH client rules): at most every 5 minutes, at
/// least daily — so never off, or acknowledgements and reports would go unread. A sandbox
/// on this machine (a loopback address) may be read at any pace, or not at all (tests).
fn polling_problem(every: std::time::Duration, base: &reqwest::Url) -> Option<&'static str> {
    let minutes = |m: u64| std::time::Duration::from_secs(m * 60);
    if super::http::is_loopback(base) {
        None
    } else if every.is_zero() {
        Some(
            "MESH asks that an inbox be polled at least daily: reading cannot be turned off \
             (acknowledgements and non-delivery reports would go unread and expire)",
        )
    } else if every < minutes(5) {
        Some("MESH asks that an inbox be polled at most every 5 minutes")
    } else if every > minutes(24 * 60) {
        Some("MESH asks that an inbox be polled at least daily (24h at most)")
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalId {
    #[default]
    Event,
    Ods,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Xml,
    Json,
}

fn default_workflow() -> String {
    "GPFED_CONSULT_REPORT".into()
}
fn default_mapping() -> String {
    "gp-record".into()
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Json);
    let base = endpoint(b, "base_url", c.base_url.trim_end_matches('/'));
    let http = Http::build(b, c.http());
    let password = b.secret("password", &c.password);
    let shared_key = b.secret("shared_key", &c.shared_key);
    for (key, v) in [
        ("mailbox", &c.mailbox),
        ("workflow_id", &c.workflow_id),
        ("sender_ods", &c.sender_ods),
    ] {
        if v.is_empty() || !v.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            b.problem(key, "must be letters, digits and underscores");
        }
    }
    let base = base?;
    if let Some(why) = c.reports_every.and_then(|every| polling_problem(every, &base)) {
        b.problem("reports_every", why);
        return None;
    }
    let mesh = Arc::new(Mesh::new(
        b.name,
        base,
        http?,
        &c.mailbox,
        password?,
        shared_key?,
    ));
    let reports = c
        .reports_every
        .filter(|every| !every.is_zero())
        .map(|every| {
            Arc::new(InboxReports {
                mesh: mesh.clone(),
                every,
                infrastructure_within: c.infrastructure_ack_within,
                business_within: c.business_ack_within,
            }) as Arc<dyn Reports>
        });
    Some(Box::new(MeshDestination {
        mesh,
        reports,
        workflow: c.workflow_id.clone(),
        sender_ods: c.sender_ods.clone(),
        sender_name: c.sender_name.clone(),
        local_id: c.local_id,
        format: c.format,
    }))
}

/// The writer, and the reader of its mailbox's inbox, sharing one client.
struct MeshDestination {
    mesh: Arc<Mesh>,
    reports: Option<Arc<dyn Reports>>,
    workflow: String,
    sender_ods: String,
    sender_name: String,
    local_id: LocalId,
    format: Format,
}

/// The journal's step: the MESH message id the send got.
pub(super) const SEND: &str = "mesh-send";

/// The journal's steps holding the ids the ITK3 message carries, which the practice's
/// acknowledgements answer: the MessageHeader id and the Bundle's tracking id.
const ITK_HEADER: &str = "itk-message";
const ITK_TRACKING: &str = "itk-tracking";
/// When the ITK3 message was first made (its MessageHeader timestamp).
const ITK_MADE: &str = "itk-made";

/// `GPPROVIDER_{NHS}_{YYYYMMDD}_{SURNAME}`: MESH's automated routing to the patient's
/// registered practice (GP Connect Send Document 2.x; date as YYYYMMDD).
pub fn gp_provider(e: &RecordEntry) -> Result<String> {
    let nhs = e.patient.nhs_number.as_deref().ok_or_else(|| {
        GatewayError::invalid(
            Stage::Map,
            "patient.nhs_number",
            "MESH Send Document reaches practices in England only, addressed by the patient's NHS \
             number: this patient has none (a CHI-only patient is Scotland's: give the practice \
             a docman, mail, fhir-record or practice-folder writer)",
        )
    })?;
    let dob = e
        .patient
        .date_of_birth
        .as_deref()
        .filter(|d| d.len() == 10)
        .ok_or_else(|| {
            GatewayError::invalid(
                Stage::Map,
                "patient.date_of_birth",
                "a full date of birth is needed to route to the registered practice",
            )
        })?;
    let surname: String = e
        .patient
        .name
        .family
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphabetic() || *c == '-')
        .collect::<String>()
        .to_ascii_uppercase();
    if surname.is_empty() {
        return Err(GatewayError::invalid(
            Stage::Map,
            "patient.name.family",
            "a surname is needed to route to the registered practice",
        ));
    }
    Ok(format!(
        "GPPROVIDER_{nhs}_{}_{surname}",
        dob.replace('-', "")
    ))
}

impl MeshDestination {
    /// The ITK3 message for `e`, its journal ids recorded first (so an acknowledgement
    /// that arrives however soon can be matched), then posted once.
    async fn post(&self, job: &Job<'_>, e: &RecordEntry, local_id: &str) -> Result<String> {
        let sender = Sender {
            ods_code: &self.sender_ods,
            name: &self.sender_name,
            mailbox: &self.mesh.mailbox,
        };
        let j = job.journal;
        // When the message was first made (GPCM-SD-048), kept so a resend is identical.
        let made = match j.step(ITK_MADE).await? {
            Step::Done(t) => t,
            _ => {
                let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                j.done(ITK_MADE, &t).await?;
                t
            }
        };
        let version = itk::version_of(&self.workflow);
        let message = itk::message_for(version, e, job.message_id, &sender, &made);
        let json = message.to_json();
        if let Some(tracking) = json.get("id").and_then(serde_json::Value::as_str) {
            j.done(ITK_TRACKING, tracking).await?;
        }
        if let Some(header) = json
            .pointer("/entry/0/resource/id")
            .and_then(serde_json::Value::as_str)
        {
            j.done(ITK_HEADER, header).await?;
        }
        let (body, content_type, ext) = match self.format {
            Format::Xml => (message.to_xml().into_bytes(), "application/fhir+xml", "xml"),
            Format::Json => (
                serde_json::to_vec(&json).unwrap_or_default(),
                "application/fhir+json",
                "json",
            ),
        };
        self.mesh
            .post(Outgoing {
                to: gp_provider(e)?,
                workflow: &self.workflow,
                local_id,
                subject: subject(&self.workflow, e, &self.sender_name, &self.sender_ods),
                content_type,
                file_name: format!("{}.{ext}", uuid::Uuid::new_v4()),
                body,
            })
            .await
    }
}

/// `Mex-Subject`, in the wording each Send Document version requires (GPCM-SD-064 for
/// Send Consultation Report, 1.x; the 2.x MESH configuration for Send Document): both
/// name the patient, as the practice's workflow needs before the message is opened.
fn subject(workflow: &str, e: &RecordEntry, sender_name: &str, sender_ods: &str) -> Option<String> {
    let patient_name = [
        e.patient.name.given.join(" "),
        e.patient.name.family.clone().unwrap_or_default(),
    ]
    .join(" ")
    .trim()
    .to_string();
    let nhs = e.patient.nhs_number.as_deref().unwrap_or_default();
    Some(match itk::version_of(workflow) {
        itk::SendDocument::V1 => format!(
            "Consultation report for {patient_name}, NHS Number {nhs}, seen at {sender_name}, ODS Code {sender_ods}"
        ),
        itk::SendDocument::V2 => format!(
            "{} for {patient_name}, NHS Number: {nhs}, seen at {sender_name}, {sender_ods}, Version: 1",
            itk::COMPOSITION_TITLE
        ),
    })
}

impl Sink for MeshDestination {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let e = RecordEntry::from_payload(job.payload())?;
            // MESH reaches practices in England only: a patient it cannot address (a
            // CHI-only patient at a Scottish practice) is refused before anything starts.
            gp_provider(&e)?;
            let local_id = match self.local_id {
                LocalId::Event => job.idempotency_key.to_string(),
                LocalId::Ods => self.sender_ods.clone(),
            };
            self.mesh.handshake().await?;
            let j = job.journal;
            match j.step(SEND).await? {
                Step::Done(_) => return Ok(Sent { status: Some(202) }),
                Step::Started(_) if self.local_id == LocalId::Event => {
                    // Interrupted after posting? MESH's tracking by our local id says.
                    if let Some(id) = self.mesh.already_sent(&local_id).await? {
                        j.done(SEND, &id).await?;
                        return Ok(Sent { status: Some(202) });
                    }
                    j.store.write(j.record(SEND, "refused", None)).await?;
                }
                _ => {}
            }
            j.once(SEND, "the MESH send", self.post(job, &e, &local_id))
                .await?;
            Ok(Sent { status: Some(202) })
        })
    }

    fn resends_safely(&self) -> bool {
        false
    }

    fn reports(&self) -> Option<Arc<dyn Reports>> {
        self.reports.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_is_polled_within_meshs_bounds_and_never_turned_off() {
        let mesh = reqwest::Url::parse("https://msg.intspineservices.nhs.uk").unwrap();
        let sandbox = reqwest::Url::parse("http://127.0.0.1:8700").unwrap();
        let every = |s: u64| std::time::Duration::from_secs(s);
        for (secs, refused) in [(0, true), (60, true), (299, true), (300, false), (86_400, false), (86_401, true)] {
            assert_eq!(polling_problem(every(secs), &mesh).is_some(), refused, "{secs}s");
        }
        assert!(polling_problem(every(0), &sandbox).is_none(), "a test sandbox may be off");
        assert!(polling_problem(every(1), &sandbox).is_none(), "or fast");
    }

    /// MESH Send Document addresses the patient's practice by NHS number: a CHI-only
    /// patient (Scotland's) is refused naming the field and why, before any request.
    #[test]
    fn a_chi_only_patient_is_refused_naming_why() {
        let entry = RecordEntry::from_payload(&serde_json::json!({
            "event": {"event_id": "e1", "type": "referral-accepted", "occurred_at": "2026-11-25T10:00:00Z",
                      "referral": {"message_id": "r1"}},
            "headline": "Referral accepted",
            "coded": [],
            "referral": {"message_id": "r1"},
            "patient": {"chi_number": "0402568877", "date_of_birth": "1956-02-04",
                        "name": {"family": "SMITH", "given": ["Richard"]}},
            "practice": {"scottish_practice_code": "43210", "nation": "scotland"},
        }))
        .unwrap();
        let e = gp_provider(&entry).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("patient.nhs_number"));
        assert!(e.message.contains("England only"), "{}", e.message);
        assert!(!e.message.contains("0402568877"), "never the number");
    }
}
