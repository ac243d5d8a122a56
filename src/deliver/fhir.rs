//! FHIR R4 destination: the mapped ServiceRequest and a Task that asks the CLW service to
//! fulfil it (status `requested`, intent `order`, code `fulfill`, focus the
//! ServiceRequest — the closed-loop referral pattern), posted as one transaction Bundle.
//! Both carry the gateway's identifier (value = message id) and are created with
//! `ifNoneExist` on it, so a resend finds them instead of making copies. Requests are
//! built with reqwest (not fhir-sdk's client, which retries POSTs on timeout).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use super::http::auth::{Auth, OAuth2Config};
use super::http::{Http, endpoint, host_of};
use super::terms::{HasHttp, destination_config};
use super::{Build, Job, Poller, Sent, Sink};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::lifecycle::{Change, Operation};
use crate::model::Flow;
use crate::secret::Secret;

const FHIR_JSON: &str = "application/fhir+json";

pub const FLOW: Flow = Flow::Referral;

/// Every later message, on the ServiceRequest and Task it made (found by the gateway's
/// identifier): an update replaces the ServiceRequest, an ending revokes it and cancels
/// the Task, a reminder adds a note and business status to the Task.
pub const LATER: &[Change] = super::EVERY_LATER;

/// It keeps no files of its own.
pub fn kept(_: &Config) -> Option<super::Kept<'_>> {
    None
}

/// The transaction POST, and the Task search when polling is on.
pub fn channel(c: &Config) -> super::channel::Channel {
    let what = match c.poll_every {
        Some(_) => "POST (FHIR R4 transaction Bundle); GET of its Tasks when polling",
        None => "POST (FHIR R4 transaction Bundle)",
    };
    super::channel::Channel::http(what, &c.base_url, c.http())
        .bearer(c.token.as_ref(), c.oauth2.as_ref())
}

destination_config! { @http
    /// `kind = "fhir"`
    pub struct Config {
        /// The FHIR base, e.g. `https://clw.example.org/fhir`.
        pub base_url: String,
        pub token: Option<Secret>,
        pub oauth2: Option<OAuth2Config>,
        /// A json mapping producing the ServiceRequest.
        pub mapping: String,
        /// System of the identifier the gateway gives the ServiceRequest and Task (their
        /// value is the message id), used for conditional create.
        #[serde(default = "default_identifier_system")]
        pub identifier_system: String,
        /// Poll the Tasks the gateway created this often (`Task?_lastUpdated=gt...`)
        /// and turn their status changes into message-back events. Off when absent.
        #[serde(default, with = "humantime_serde")]
        pub poll_every: Option<std::time::Duration>,
    }
}

/// The system of the identifier a referral's ServiceRequest and Task carry (value: the
/// referral's message id). The `fhir-record` writer updates the same Task by it.
pub const REFERRAL_IDENTIFIER_SYSTEM: &str = "https://clw-gateway.org/Id/referral";

fn default_identifier_system() -> String {
    REFERRAL_IDENTIFIER_SYSTEM.into()
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Json);
    let base = endpoint(b, "base_url", c.base_url.trim_end_matches('/'));
    let http = Http::build(b, c.http());
    let auth = Auth::build(b, c.token.as_ref(), c.oauth2.as_ref());
    if c.poll_every.is_some_and(|d| d.is_zero()) {
        b.problem("poll_every", "must be above zero");
    }
    let client = Arc::new(FhirClient {
        name: b.name.to_string(),
        base: base?,
        auth: auth?,
        identifier_system: c.identifier_system.clone(),
        http: http?,
    });
    Some(Box::new(FhirDestination {
        poller: c.poll_every.map(|every| {
            Arc::new(TaskPoller {
                client: client.clone(),
                every,
            }) as Arc<dyn Poller>
        }),
        client,
    }))
}

struct FhirDestination {
    client: Arc<FhirClient>,
    poller: Option<Arc<dyn Poller>>,
}

/// What sending and polling share.
struct FhirClient {
    name: String,
    base: Url,
    auth: Auth,
    identifier_system: String,
    http: Http,
}

impl std::ops::Deref for FhirDestination {
    type Target = FhirClient;
    fn deref(&self) -> &FhirClient {
        &self.client
    }
}

impl Sink for FhirDestination {
    fn poller(&self) -> Option<Arc<dyn Poller>> {
        self.poller.clone()
    }

    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            if let Some(op) = job.operation {
                return self.lifecycle(job, op).await;
            }
            let bundle = transaction(job.payload(), &self.identifier_system, job.message_id)?;
            let make = || {
                self.http
                    .client
                    .post(self.base.clone())
                    .header(CONTENT_TYPE, FHIR_JSON)
                    .header(ACCEPT, FHIR_JSON)
                    .header("X-Request-ID", job.idempotency_key)
                    .json(&bundle)
            };
            let host = host_of(&self.base);
            let resp = match self
                .auth
                .send(&self.http, &host, make)
                .await
                .and_then(|r| self.http.check(r))
            {
                Ok(resp) => resp,
                Err(mut e) => {
                    e.message
                        .push_str(" (the server refused the ServiceRequest/Task transaction)");
                    return Err(e);
                }
            };
            let status = resp.status().as_u16();
            let body: Value =
                serde_json::from_slice(&self.http.body(resp).await?).unwrap_or(Value::Null);
            check_response(&self.name, &body)?;
            Ok(Sent {
                status: Some(status),
            })
        })
    }
}

/// The code system of the reasons the gateway gives a Task it cancels (its poller leaves
/// such Tasks alone: they are the gateway's own doing, not the platform's answer).
pub const LIFECYCLE_SYSTEM: &str = "https://clw-gateway.org/CodeSystem/referral-lifecycle";

impl FhirClient {
    /// The base with `segments` added (`Task`, `ServiceRequest/ID`).
    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| GatewayError::permanent(Stage::Config, "base_url cannot be a base"))?
            .extend(segments);
        Ok(url)
    }

    /// The one resource of `kind` carrying the gateway's identifier of the referral.
    async fn find(&self, kind: &str, referral_id: &str) -> Result<Value> {
        let mut url = self.url(&[kind])?;
        url.query_pairs_mut().append_pair(
            "identifier",
            &format!("{}|{}", self.identifier_system, referral_id),
        );
        let make = || self.http.client.get(url.clone()).header(ACCEPT, FHIR_JSON);
        let resp = self
            .http
            .check(self.auth.send(&self.http, &host_of(&self.base), make).await?)?;
        let bundle: Value = serde_json::from_slice(&self.http.body(resp).await?).unwrap_or(Value::Null);
        let found: Vec<&Value> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .filter(|r| r["resourceType"] == kind)
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(GatewayError::permanent(
                Stage::Deliver,
                format!(
                    "{}: the server holds no {kind} for referral {referral_id} (removed at the \
                     platform?): nothing was changed",
                    self.name
                ),
            )),
            _ => Err(GatewayError::permanent(
                Stage::Deliver,
                format!(
                    "{}: the server holds more than one {kind} for referral {referral_id}: \
                     nothing was changed",
                    self.name
                ),
            )),
        }
    }

    /// Replaces a resource by its id, if it is still the version read (`If-Match`).
    async fn put(&self, resource: &Value, key: &str) -> Result<u16> {
        let kind = resource["resourceType"].as_str().unwrap_or_default();
        let id = resource["id"].as_str().unwrap_or_default();
        let url = self.url(&[kind, id])?;
        let version = resource.pointer("/meta/versionId").and_then(Value::as_str);
        let make = || {
            let r = self
                .http
                .client
                .put(url.clone())
                .header(CONTENT_TYPE, FHIR_JSON)
                .header(ACCEPT, FHIR_JSON)
                .header("X-Request-ID", key)
                .json(resource);
            match version {
                Some(v) => r.header("If-Match", format!("W/\"{v}\"")),
                None => r,
            }
        };
        let resp = self
            .http
            .check(self.auth.send(&self.http, &host_of(&self.base), make).await?)?;
        Ok(resp.status().as_u16())
    }
}

impl FhirDestination {
    /// A later change to a referral this destination holds.
    async fn lifecycle(&self, job: &Job<'_>, op: &Operation) -> Result<Sent> {
        let referral = op.referral_id.as_str();
        let status = match op.change {
            Change::Amend => {
                let found = self.find("ServiceRequest", referral).await?;
                let mut sr = job.payload().clone();
                sr["id"] = found["id"].clone();
                sr["meta"] = found["meta"].clone();
                let gateway = json!({"system": self.identifier_system, "value": referral});
                let mut ids: Vec<Value> = sr["identifier"].as_array().cloned().unwrap_or_default();
                ids.retain(|i| i["system"] != self.identifier_system.as_str());
                ids.push(gateway);
                sr["identifier"] = Value::Array(ids);
                self.put(&sr, job.idempotency_key).await?
            }
            Change::Remind => {
                let mut task = self.find("Task", referral).await?;
                let text = format!("Reminder from the referrer's gateway: {} [{}]", op.reason, job.message_id);
                let notes = task["note"].as_array().cloned().unwrap_or_default();
                // A resend finds its own note: nothing is added twice.
                if notes.iter().any(|n| n["text"] == text.as_str()) {
                    return Ok(Sent { status: Some(200) });
                }
                let mut notes = notes;
                notes.push(json!({"time": op.at, "text": text}));
                task["note"] = Value::Array(notes);
                task["businessStatus"] = json!({"text": "Reminder: no response from the service"});
                self.put(&task, job.idempotency_key).await?
            }
            Change::Cancel | Change::Withdraw | Change::Close => {
                let mut sr = self.find("ServiceRequest", referral).await?;
                if sr["status"] != "revoked" {
                    sr["status"] = json!("revoked");
                    self.put(&sr, job.idempotency_key).await?;
                }
                let mut task = self.find("Task", referral).await?;
                if task["status"] != "cancelled" {
                    task["status"] = json!("cancelled");
                    task["statusReason"] = json!({
                        "coding": [{
                            "system": LIFECYCLE_SYSTEM,
                            "code": op.change.event_name(),
                        }],
                        "text": op.reason,
                    });
                    task["businessStatus"] = json!({"text": op.reason});
                    self.put(&task, job.idempotency_key).await?;
                }
                200
            }
            Change::New | Change::Unchanged => 200,
        };
        Ok(Sent {
            status: Some(status),
        })
    }
}

/// Polls the Tasks this destination created: a Task's status is what the platform did
/// with the referral (accepted, rejected, completed, cancelled). Each status a Task
/// reaches becomes one event, whose id is the Task and the status, so polling it again
/// adds nothing.
struct TaskPoller {
    client: Arc<FhirClient>,
    every: std::time::Duration,
}

impl Poller for TaskPoller {
    fn every(&self) -> std::time::Duration {
        self.every
    }

    fn poll<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(Vec<crate::model::message_back::MessageBack>, Option<String>)>> {
        Box::pin(async move {
            let c = &self.client;
            let mut url = c.url(&["Task"])?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("_sort", "_lastUpdated")
                    .append_pair("_count", "100");
                if let Some(since) = cursor {
                    q.append_pair("_lastUpdated", &format!("gt{since}"));
                }
            }
            let make = || c.http.client.get(url.clone()).header(ACCEPT, FHIR_JSON);
            let resp = c
                .http
                .check(c.auth.send(&c.http, &host_of(&c.base), make).await?)?;
            let bundle: Value =
                serde_json::from_slice(&c.http.body(resp).await?).map_err(|_| {
                    GatewayError::transient(
                        Stage::Deliver,
                        format!(
                            "{}: the Task search answered something that is not JSON",
                            c.name
                        ),
                    )
                })?;
            let mut events = Vec::new();
            let mut next = cursor.map(str::to_string);
            for task in bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| &e["resource"])
            {
                if let Some(updated) = task.pointer("/meta/lastUpdated").and_then(Value::as_str)
                    && next.as_deref().is_none_or(|n| updated > n)
                {
                    next = Some(updated.to_string());
                }
                if let Some(ev) = task_event(task, &c.identifier_system) {
                    events.push(ev);
                }
            }
            Ok((events, next))
        })
    }
}

/// The event a Task's status means, for Tasks the gateway made (its identifier).
fn task_event(task: &Value, system: &str) -> Option<crate::model::message_back::MessageBack> {
    use crate::model::message_back::{Closure, EventType, MessageBack};
    let referral = task["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"] == system)?["value"]
        .as_str()?
        .to_string();
    let id = task["id"].as_str()?;
    let status = task["status"].as_str()?;
    // A Task the gateway itself cancelled (the practice's cancellation, a withdrawal, a
    // close as not responded) is not the platform's answer.
    if task.pointer("/statusReason/coding/0/system").and_then(Value::as_str)
        == Some(LIFECYCLE_SYSTEM)
    {
        return None;
    }
    let when = task["lastModified"]
        .as_str()
        .or_else(|| task.pointer("/meta/lastUpdated").and_then(Value::as_str))?
        .to_string();
    let reason = || {
        let r = &task["statusReason"];
        crate::model::Coded {
            system: r
                .pointer("/coding/0/system")
                .and_then(Value::as_str)
                .map(str::to_string),
            code: r
                .pointer("/coding/0/code")
                .and_then(Value::as_str)
                .map(str::to_string),
            display: r
                .pointer("/coding/0/display")
                .and_then(Value::as_str)
                .map(str::to_string),
            text: r["text"].as_str().map(str::to_string),
        }
    };
    let (event_type, closed, declined) = match status {
        "accepted" | "in-progress" => (EventType::ReferralAccepted, None, None),
        "rejected" => (EventType::ReferralDeclined, None, Some(reason())),
        "completed" => (
            EventType::Closed,
            Some(Closure {
                reason: "completed".into(),
                outcome: task["statusReason"]["text"].as_str().map(str::to_string),
            }),
            None,
        ),
        "cancelled" => (
            EventType::Closed,
            Some(Closure {
                reason: "cancelled".into(),
                outcome: None,
            }),
            None,
        ),
        _ => return None,
    };
    // in-progress implies accepted: one event for both, so keyed on "accepted".
    let key = if status == "in-progress" {
        "accepted"
    } else {
        status
    };
    Some(MessageBack {
        declined_reason: declined,
        closed,
        ..MessageBack::about(format!("task-{id}-{key}"), event_type, when, referral)
    })
}

/// The transaction: ServiceRequest (with the gateway identifier) and its Task.
pub fn transaction(service_request: &Value, system: &str, message_id: &str) -> Result<Value> {
    let mut sr = service_request.clone();
    let Some(obj) = sr.as_object_mut() else {
        return Err(GatewayError::permanent(
            Stage::Map,
            "the FHIR mapping did not produce a resource",
        ));
    };
    let identifier = json!({"system": system, "value": message_id});
    let ids = obj
        .entry("identifier")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = ids {
        list.push(identifier.clone());
    }
    let condition = format!(
        "identifier={}|{}",
        search_value(system),
        search_value(message_id)
    );
    let sr_url = format!(
        "urn:uuid:{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, condition.as_bytes())
    );
    let mut task = json!({
        "resourceType": "Task",
        "identifier": [identifier],
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{
            "system": "http://hl7.org/fhir/CodeSystem/task-code",
            "code": "fulfill",
            "display": "Fulfill the focal request"
        }]},
        "focus": {"reference": sr_url},
    });
    for (from, to) in [
        ("subject", "for"),
        ("authoredOn", "authoredOn"),
        ("requester", "requester"),
        ("priority", "priority"),
    ] {
        if let Some(v) = sr.get(from) {
            task[to] = v.clone();
        }
    }
    if let Some(owner) = sr.get("performer").and_then(|p| p.get(0)) {
        task["owner"] = owner.clone();
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": sr_url,
                "resource": sr,
                "request": {"method": "POST", "url": "ServiceRequest", "ifNoneExist": condition},
            },
            {
                "resource": task,
                "request": {"method": "POST", "url": "Task", "ifNoneExist": condition},
            }
        ]
    }))
}

/// A token search value: FHIR's escapes (`\\`, `|`, `,`, `$` take a backslash), then
/// percent-encoding for the query string the server parses `ifNoneExist` as.
pub fn search_value(v: &str) -> String {
    let mut escaped = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | '|' | ',' | '$') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    url::form_urlencoded::byte_serialize(escaped.as_bytes()).collect()
}

/// A transaction-response whose entries all succeeded (201 created, 200 found).
pub(super) fn check_response(name: &str, body: &Value) -> Result<()> {
    let entries = body
        .get("entry")
        .and_then(Value::as_array)
        .filter(|_| body.get("type").and_then(Value::as_str) == Some("transaction-response"))
        .ok_or_else(|| {
            GatewayError::transient(
                Stage::Deliver,
                format!("{name}: the answer is not a transaction-response Bundle"),
            )
        })?;
    for (i, e) in entries.iter().enumerate() {
        let status = e
            .pointer("/response/status")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !status.starts_with('2') {
            return Err(GatewayError::permanent(
                Stage::Deliver,
                format!("{name}: transaction entry {i} answered {status:?}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_values_are_escaped_then_encoded() {
        assert_eq!(search_value("msg-1"), "msg-1");
        assert_eq!(search_value("a|b,c$d\\e"), "a%5C%7Cb%5C%2Cc%5C%24d%5C%5Ce");
        assert_eq!(search_value("x&identifier=y"), "x%26identifier%3Dy");
        let b = transaction(
            &json!({"resourceType": "ServiceRequest"}),
            "https://s",
            "m|1",
        )
        .unwrap();
        assert_eq!(
            b["entry"][0]["request"]["ifNoneExist"],
            "identifier=https%3A%2F%2Fs|m%5C%7C1"
        );
    }
}
