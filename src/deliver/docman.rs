//! Docman record writer (England and Scotland): the Docman API's "Post Document" with
//! the Inbound Document Model — `CaptureSource`, `Sender`, `RecipientOdsCode` (the
//! patient's practice), `Patient`, `Document` (the readable summary as a PDF),
//! `ClinicalCodes` ("to be sent into the clinical system": SNOMED CT, with Read v2 for
//! Scottish practices), `Notes` (at most 255 characters) and the flags
//! (`ActionRequired` when the plan asks the GP or referrer to act). The members of
//! the `Sender`, `Patient`, `Document` and `ClinicalCode` objects are set out in
//! docs/decisions/0008-docman-inbound-document.md with what is and is not confirmed.
//!
//! Docman takes no idempotency key: the post is journalled in the store, never sent
//! twice, and a post whose answer was lost is an unknown outcome for a person to check.

use base64::Engine as _;
use futures_util::future::BoxFuture;
use reqwest::Url;
use serde_json::{Value, json};

use super::http::auth::{Auth, OAuth2Config};
use super::http::{Http, endpoint, host_of};
use super::terms::{HasHttp, destination_config};
use super::{Build, Job, Sent, Sink};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::record::{READ2_SYSTEM, RecordEntry, SNOMED_SYSTEM, document, pdf};
use crate::secret::Secret;

pub const FLOW: Flow = Flow::MessageBack;

/// A record writer: it writes events, never a referral's later messages.
pub const LATER: &[crate::model::lifecycle::Change] = &[];

/// It keeps no files of its own.
pub fn kept(_: &Config) -> Option<super::Kept<'_>> {
    None
}

/// The Post Document request.
pub fn channel(c: &Config) -> super::channel::Channel {
    super::channel::Channel::http("POST (JSON Inbound Document, PDF inside)", &c.url, c.http())
        .bearer(c.token.as_ref(), c.oauth2.as_ref())
}

destination_config! { @http
    /// `kind = "docman"`
    pub struct Config {
        /// The Post Document endpoint.
        pub url: String,
        pub token: Option<Secret>,
        pub oauth2: Option<OAuth2Config>,
        /// 2 for Docman Connect, 100 for Docman 10.
        #[serde(default = "default_capture_source")]
        pub capture_source: u32,
        pub sender_ods: String,
        pub sender_name: String,
        /// Read v2 codes beside SNOMED CT. Unset, the practice's nation decides: on for
        /// Scottish practices (their systems still code in Read v2), off elsewhere.
        #[serde(default)]
        pub read_codes: Option<bool>,
        /// A json mapping producing the record entry (default: gp-record).
        #[serde(default = "default_mapping")]
        pub mapping: String,
    }
}

fn default_capture_source() -> u32 {
    2
}
fn default_mapping() -> String {
    "gp-record".into()
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Json);
    let url = endpoint(b, "url", &c.url);
    let http = Http::build(b, c.http());
    let auth = Auth::build(b, c.token.as_ref(), c.oauth2.as_ref());
    if ![2, 100].contains(&c.capture_source) {
        b.problem(
            "capture_source",
            "must be 2 (Docman Connect) or 100 (Docman 10)",
        );
    }
    if c.sender_ods.is_empty() || c.sender_ods.len() > 10 {
        b.problem("sender_ods", "must be an ODS code (1 to 10 characters)");
    }
    Some(Box::new(Docman {
        url: url?,
        http: http?,
        auth: auth?,
        filing: Filing {
            capture_source: c.capture_source,
            sender_ods: c.sender_ods.clone(),
            sender_name: c.sender_name.clone(),
            read_codes: c.read_codes,
        },
    }))
}

struct Docman {
    url: Url,
    http: Http,
    auth: Auth,
    filing: Filing,
}

/// Docman's name for a code system.
fn scheme(system: &str) -> &'static str {
    match system {
        SNOMED_SYSTEM => "SNOMED",
        READ2_SYSTEM => "READ2",
        _ => "LOCAL",
    }
}

/// The Inbound Document Model an entry becomes, for a test sender (property tests).
#[cfg(test)]
pub(crate) fn render_for_test(e: &RecordEntry) -> Result<Value> {
    Filing {
        capture_source: default_capture_source(),
        sender_ods: "X99TST".into(),
        sender_name: "Test sender".into(),
        read_codes: Some(true),
    }
    .document(e)
}

/// What Docman's document says of who sends it and how.
struct Filing {
    capture_source: u32,
    sender_ods: String,
    sender_name: String,
    read_codes: Option<bool>,
}

impl std::ops::Deref for Docman {
    type Target = Filing;
    fn deref(&self) -> &Filing {
        &self.filing
    }
}

impl Filing {
    fn document(&self, e: &RecordEntry) -> Result<Value> {
        let recipient = e
            .practice
            .code()
            .filter(|o| !o.is_empty() && o.len() <= 10)
            .ok_or_else(|| {
                GatewayError::invalid(
                    Stage::Map,
                    e.practice.code_field(),
                    "the referral names no practice code (1 to 10 characters) to send the document to",
                )
            })?;
        let read_codes = self.read_codes.unwrap_or(e.practice.is_scottish());
        let lines = document::lines(e, read_codes);
        let pdf = pdf::render(document::TITLE, &lines);
        let codes: Vec<Value> = e
            .coded
            .iter()
            .flat_map(|c| {
                c.codes(read_codes).into_iter().map(move |code| {
                    let mut v = json!({
                        "Scheme": scheme(&code.system),
                        "Code": code.code,
                        "Description": code.display,
                    });
                    if let Some(value) = c.value {
                        v["Value"] = json!(value.to_string());
                        v["Unit"] = json!(c.unit.clone().unwrap_or_default());
                    }
                    v
                })
            })
            .collect();
        let mut patient = json!({
            "FamilyName": e.patient.name.family,
            "GivenNames": e.patient.name.given.join(" "),
            "DateOfBirth": e.patient.date_of_birth,
            "Gender": e.patient.gender,
        });
        match (&e.patient.nhs_number, &e.patient.chi_number) {
            (Some(n), _) => patient["NhsNumber"] = json!(n),
            (None, Some(c)) => patient["ChiNumber"] = json!(c),
            (None, None) => {
                return Err(GatewayError::invalid(
                    Stage::Map,
                    "patient",
                    "the referral has neither an NHS nor a CHI number to file the document against",
                ));
            }
        }
        let notes: String = e.headline.chars().take(255).collect();
        Ok(json!({
            "CaptureSource": self.capture_source,
            "Sender": {"OdsCode": self.sender_ods, "Name": self.sender_name},
            "RecipientOdsCode": recipient,
            "Patient": patient,
            "Document": {
                "Description": document::TITLE,
                "EventDate": e.event.occurred_at,
                "FileExtension": "pdf",
                "FileContent": base64::engine::general_purpose::STANDARD.encode(pdf),
            },
            "ActionRequired": action_required(e),
            "MedicationChanged": false,
            "Urgent": false,
            "ClinicalCodes": codes,
            "Notes": notes,
            "Revision": false,
            "Inpatient": false,
        }))
    }
}

/// Whether the link worker asked the practice to act: an action for the GP or referrer
/// in the plan (also when consent kept its words back: the document says to ask).
fn action_required(e: &RecordEntry) -> bool {
    e.event
        .plan
        .as_ref()
        .is_some_and(|p| p.for_professionals.is_some())
        || e.referral
            .withheld
            .iter()
            .any(|w| w == "plan.for_professionals")
}

impl Sink for Docman {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let e = RecordEntry::from_payload(job.payload())?;
            let body = self.document(&e)?;
            let status = job
                .journal
                .once("docman-post", "the Docman Post Document", async {
                    let make = || {
                        self.http
                            .client
                            .post(self.url.clone())
                            .header("X-Correlation-ID", job.idempotency_key)
                            .json(&body)
                    };
                    let resp = self.http.check(
                        self.auth
                            .send(&self.http, &host_of(&self.url), make)
                            .await?,
                    )?;
                    Ok(resp.status().as_u16().to_string())
                })
                .await?;
            Ok(Sent {
                status: status.parse().ok(),
            })
        })
    }

    fn resends_safely(&self) -> bool {
        false
    }
}
