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

use std::sync::Arc;

use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::OnceCell;

use super::http::{Http, endpoint, host_of};
use super::terms::{HasHttp, destination_config};
use super::{Build, Job, Report, Reports, Sent, Sink, Step};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::record::RecordEntry;
use crate::record::itk::{self, Sender};
use crate::secret::Secret;

pub const FLOW: Flow = Flow::MessageBack;

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
        /// How often the mailbox's inbox is read for non-delivery reports about what
        /// the gateway sent (default 5 minutes; `0s` turns reading off).
        #[serde(default = "default_reports_every", with = "humantime_serde")]
        pub reports_every: Option<std::time::Duration>,
    }
}

fn default_reports_every() -> Option<std::time::Duration> {
    Some(std::time::Duration::from_secs(300))
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
    let mesh = Arc::new(Mesh {
        name: b.name.to_string(),
        base: base?,
        http: http?,
        mailbox: c.mailbox.to_ascii_uppercase(),
        password: password?,
        shared_key: shared_key?,
        workflow: c.workflow_id.clone(),
        sender_ods: c.sender_ods.clone(),
        sender_name: c.sender_name.clone(),
        local_id: c.local_id,
        format: c.format,
        handshake: OnceCell::new(),
    });
    let reports = c
        .reports_every
        .filter(|every| !every.is_zero())
        .map(|every| {
            Arc::new(InboxReports {
                mesh: mesh.clone(),
                every,
                others: Default::default(),
            }) as Arc<dyn Reports>
        });
    Some(Box::new(MeshDestination { mesh, reports }))
}

/// The writer, and the reader of its mailbox's reports, sharing one client.
struct MeshDestination {
    mesh: Arc<Mesh>,
    reports: Option<Arc<dyn Reports>>,
}

impl std::ops::Deref for MeshDestination {
    type Target = Mesh;
    fn deref(&self) -> &Mesh {
        &self.mesh
    }
}

struct Mesh {
    name: String,
    base: Url,
    http: Http,
    mailbox: String,
    password: String,
    shared_key: String,
    workflow: String,
    sender_ods: String,
    sender_name: String,
    local_id: LocalId,
    format: Format,
    handshake: OnceCell<()>,
}

/// The journal's step: the MESH message id the send got.
const SEND: &str = "mesh-send";

/// `NHSMESH mailbox:nonce:count:time:hmac`: HMAC-SHA256 with the shared key over
/// `mailbox:nonce:count:password:time` (time `yyyyMMddHHmm`, UTC).
pub fn auth_header(
    mailbox: &str,
    password: &str,
    key: &str,
    nonce: &str,
    count: u32,
    time: &str,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{mailbox}:{nonce}:{count}:{password}:{time}").as_bytes());
    format!(
        "NHSMESH {mailbox}:{nonce}:{count}:{time}:{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

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

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(alias = "messageID")]
    message_id: String,
}

impl Mesh {
    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/messageexchange/{}{path}", self.mailbox));
        u
    }

    fn authorised(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let nonce = uuid::Uuid::new_v4().to_string();
        let time = chrono::Utc::now().format("%Y%m%d%H%M").to_string();
        r.header(
            "Authorization",
            auth_header(
                &self.mailbox,
                &self.password,
                &self.shared_key,
                &nonce,
                0,
                &time,
            ),
        )
        .header("Accept", "application/vnd.mesh.v2+json")
    }

    /// MESH wants a handshake from each client; once per process is enough here.
    async fn handshake(&self) -> Result<()> {
        self.handshake
            .get_or_try_init(|| async {
                let r = self
                    .authorised(self.http.client.post(self.url("")))
                    .header(
                        "Mex-ClientVersion",
                        concat!("clw-gateway/", env!("CARGO_PKG_VERSION")),
                    )
                    .header("Mex-OSName", std::env::consts::OS)
                    .header("Mex-OSVersion", "unknown");
                self.http
                    .send(r, &host_of(&self.base))
                    .await
                    .map(drop)
                    .map_err(|mut e| {
                        e.message = format!("MESH handshake: {}", e.message);
                        e.sent = false;
                        e
                    })
            })
            .await
            .copied()
    }

    /// Whether a message with this local id is in our outbox already (tracking).
    async fn already_sent(&self, local_id: &str) -> Result<Option<String>> {
        let r = self.authorised(
            self.http
                .client
                .get(self.url(&format!("/outbox/tracking/{local_id}"))),
        );
        let resp = self
            .http
            .send_raw(r, &host_of(&self.base))
            .await
            .map_err(|mut e| {
                e.sent = false;
                e
            })?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            // Several with this id: it went (more than once, before this journal).
            StatusCode::MULTIPLE_CHOICES => Ok(Some("(several)".into())),
            s if s.is_success() => {
                let body: Value =
                    serde_json::from_slice(&self.http.body(resp).await?).unwrap_or(Value::Null);
                Ok(Some(
                    ["messageId", "message_id"]
                        .iter()
                        .find_map(|k| body.get(*k).and_then(Value::as_str))
                        .unwrap_or("(tracked)")
                        .to_string(),
                ))
            }
            _ => Err(self.http.check(resp).err().unwrap_or_else(|| {
                GatewayError::transient(Stage::Deliver, format!("{}: tracking failed", self.name))
            })),
        }
    }

    async fn post(&self, job: &Job<'_>, e: &RecordEntry, local_id: &str) -> Result<String> {
        let sender = Sender {
            ods_code: &self.sender_ods,
            name: &self.sender_name,
            mailbox: &self.mailbox,
        };
        let message = itk::message(e, job.message_id, &sender, &e.event.occurred_at);
        let (body, content_type, ext) = match self.format {
            Format::Xml => (message.to_xml().into_bytes(), "application/fhir+xml", "xml"),
            Format::Json => (
                serde_json::to_vec(&message.to_json()).unwrap_or_default(),
                "application/fhir+json",
                "json",
            ),
        };
        let patient_name = [
            e.patient.name.given.join(" "),
            e.patient.name.family.clone().unwrap_or_default(),
        ]
        .join(" ")
        .trim()
        .to_string();
        let subject = format!(
            "Consultation report for {patient_name}, NHS Number {}, seen at {}, ODS Code {}",
            e.patient.nhs_number.as_deref().unwrap_or_default(),
            self.sender_name,
            self.sender_ods
        );
        let r = self
            .authorised(self.http.client.post(self.url("/outbox")))
            .header("Mex-From", &self.mailbox)
            .header("Mex-To", gp_provider(e)?)
            .header("Mex-WorkflowID", &self.workflow)
            .header("Mex-FileName", format!("{}.{ext}", uuid::Uuid::new_v4()))
            .header("Mex-LocalID", local_id)
            .header("Mex-Subject", sanitise(&subject))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        let resp = self.http.send(r, &host_of(&self.base)).await?;
        let answer = self.http.body(resp).await?;
        serde_json::from_slice::<SendAnswer>(&answer)
            .map(|a| a.message_id)
            .map_err(|_| {
                let mut e = GatewayError::transient(
                    Stage::Deliver,
                    format!(
                        "{}: MESH accepted the message without a message id",
                        self.name
                    ),
                );
                e.sent = true;
                e
            })
    }
}

/// A header value: printable, no line breaks.
fn sanitise(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(500).collect()
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
            self.handshake().await?;
            let j = job.journal;
            match j.step(SEND).await? {
                Step::Done(_) => return Ok(Sent { status: Some(202) }),
                Step::Started(_) if self.local_id == LocalId::Event => {
                    // Interrupted after posting? MESH's tracking by our local id says.
                    if let Some(id) = self.already_sent(&local_id).await? {
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

/// The mailbox's inbox, read for MESH's non-delivery reports (`Mex-MessageType: REPORT`):
/// each names the message it is about (`Mex-LinkedMsgID`, the id our send got) and why
/// (`Mex-StatusCode`, `Mex-StatusEvent`, `Mex-StatusDescription`). Other messages (a
/// practice's ITK acknowledgements) are left in the inbox untouched.
struct InboxReports {
    mesh: Arc<Mesh>,
    every: std::time::Duration,
    /// Inbox messages already seen not to be reports: not asked about again while they
    /// stay in the inbox.
    others: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl InboxReports {
    fn others(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.others.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn list(&self) -> Result<Vec<String>> {
        let m = &self.mesh;
        let r = m.authorised(m.http.client.get(m.url("/inbox")));
        let resp = m.http.send(r, &host_of(&m.base)).await?;
        let body: Value = serde_json::from_slice(&m.http.body(resp).await?).map_err(|e| {
            GatewayError::transient(Stage::Deliver, format!("{}: inbox list: {e}", m.name))
        })?;
        Ok(body
            .get("messages")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The report `id` is, or None for any other kind of message.
    async fn report(&self, id: &str) -> Result<Option<Report>> {
        let m = &self.mesh;
        let r = m.authorised(m.http.client.head(m.url(&format!("/inbox/{id}"))));
        let resp = m.http.send(r, &host_of(&m.base)).await?;
        let h = resp.headers();
        let get = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .map(sanitise)
                .filter(|v| !v.is_empty())
        };
        if !get("mex-messagetype").is_some_and(|t| t.eq_ignore_ascii_case("REPORT")) {
            return Ok(None);
        }
        let description = [get("mex-statusevent"), get("mex-statusdescription")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        Ok(Some(Report {
            id: id.to_string(),
            about: get("mex-linkedmsgid"),
            code: get("mex-statuscode").unwrap_or_else(|| "?".into()),
            description,
        }))
    }
}

impl Reports for InboxReports {
    fn every(&self) -> std::time::Duration {
        self.every
    }

    fn waiting(&self) -> BoxFuture<'_, Result<Vec<Report>>> {
        Box::pin(async move {
            self.mesh.handshake().await?;
            let ids = self.list().await?;
            // Forget what has left the inbox; skip what is known not to be a report.
            let unknown: Vec<String> = {
                let mut others = self.others();
                others.retain(|id| ids.contains(id));
                ids.iter()
                    .filter(|id| !others.contains(*id))
                    .cloned()
                    .collect()
            };
            let mut reports = Vec::new();
            for id in unknown {
                match self.report(&id).await? {
                    Some(r) => reports.push(r),
                    None => {
                        self.others().insert(id);
                    }
                }
            }
            Ok(reports)
        })
    }

    fn taken<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let m = &self.mesh;
            let path = format!("/inbox/{}/status/acknowledged", report.id);
            let r = m.authorised(m.http.client.put(m.url(&path)));
            m.http.send(r, &host_of(&m.base)).await.map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_authorisation_header_matches_the_mesh_test_vector() {
        // mailbox:nonce:count:password:time, key TestKey (mesh-sandbox / mesh-client).
        let h = auth_header(
            "X26ABC1",
            "password",
            "TestKey",
            "2c001608-5f09-4840-9611-bea43e666a30",
            1,
            "201511201038",
        );
        assert_eq!(
            h,
            "NHSMESH X26ABC1:2c001608-5f09-4840-9611-bea43e666a30:1:201511201038:\
             9712e9dd1aa836431fa50134c333fceda28dc7e380675d9b0d359477f56d034a"
        );
    }
}
