//! Lamplight (lamplight-publishing.co.uk datain API; github.com/mattparker/lamplight-phpclient
//! docs): every request is a POST of form fields carrying `lampid`, `project` and `key`.
//! Lamplight will not create the referred person itself, so a delivery is: find the
//! person (when `match_field` is set: `people/some/role/{role}/{field}/{value}`, a
//! 'contains' search over published profiles, checked here for an exact match), else
//! `people/add/role/{role}` (the person mapping) → profile id; then `referral/add/` (the
//! referral mapping) with `attendee` = that id. Answers are JSON:
//! `{"data": {"id": N, ...}, "meta": ...}` or `{"error": code, "msg": "..."}`.
//!
//! Lamplight takes no idempotency key, so each step is journalled in the store (see
//! `Journal`): started before its request, done with the record id after. A retry or
//! a restart reuses the profile id and never adds a referral twice; a step found
//! started but not done (a timeout after sending, a crash before the record) is an
//! unknown outcome, parked for a person to check, never resent blindly. Errors name
//! the operation, never a search path (it carries the person's identifier) nor
//! Lamplight's own message text.

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::http::{Http, endpoint, form_fields, host_of};
use super::terms::{HasHttp, destination_config};
use super::{Build, Job, Journal, Sent, Sink, Step};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::secret::Secret;

pub const FLOW: Flow = Flow::Referral;

/// None: its API adds people and referrals but cannot amend or close one; a later message
/// is held for a person, who makes the change in Lamplight.
pub const LATER: &[crate::model::lifecycle::Change] = &[];

/// It keeps no files of its own.
pub fn kept(_: &Config) -> Option<super::Kept<'_>> {
    None
}

/// Form POSTs carrying the key beside `lampid` and `project` (`LamplightDestination::call`).
pub fn channel(c: &Config) -> super::channel::Channel {
    super::channel::Channel::http("POST (form fields)", &c.base_url, c.http())
        .auth("API key in the form body, with the Lamplight ID and project")
        .credential("key", &c.key)
}

destination_config! { @http
    /// `kind = "lamplight"`
    pub struct Config {
        /// Up to and including `/api`.
        #[serde(default = "default_base_url")]
        pub base_url: String,
        /// The Lamplight ID and project from the publishing settings' access parameters.
        pub lampid: String,
        pub project: String,
        /// The API key.
        pub key: Secret,
        /// Role of the profile created for the person referred (user, contact, ...).
        #[serde(default = "default_role")]
        pub role: String,
        /// A form mapping for `people/add` (the person's profile).
        pub person_mapping: String,
        /// Find before create: a publishable Lamplight profile field that identifies a
        /// person (as Lamplight names it in search paths, e.g. `NHS_number`)...
        pub match_field: Option<String>,
        /// ...and the person mapping's field holding the value to look for.
        pub match_from: Option<String>,
        /// Lamplight's search takes the value in its URL path, where Lamplight's and any
        /// proxy's access logs keep it (an NHS number, say): `match_field` works only
        /// when this says the exposure is accepted.
        #[serde(default)]
        pub match_value_in_url: bool,
        /// A form mapping for `referral/add`.
        pub mapping: String,
    }
}

fn default_base_url() -> String {
    "https://lamplight.online/api".into()
}
fn default_role() -> String {
    "user".into()
}

/// The person mapping's slot.
const PERSON: &str = "person";

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Form);
    b.mapping(
        PERSON,
        "person_mapping",
        &c.person_mapping,
        OutputFormat::Form,
    );
    if c.match_field.is_some() != c.match_from.is_some() {
        b.problem("match_field", "set match_field and match_from together");
    }
    if c.match_field.is_some() && !c.match_value_in_url {
        b.problem(
            "match_field",
            "Lamplight's search puts the value looked for (match_from) in its URL path, where \
             Lamplight's and any proxy's access logs keep it; set match_value_in_url = true to \
             accept that exposure, or leave match_field unset (a person is then created each time)",
        );
    }
    let url = endpoint(b, "base_url", &c.base_url);
    let http = Http::build(b, c.http());
    let key = b.secret("key", &c.key);
    Some(Box::new(LamplightDestination {
        name: b.name.to_string(),
        base: c.base_url.trim_end_matches('/').to_string(),
        host: host_of(&url?),
        role: c.role.clone(),
        credentials: [
            ("lampid".into(), c.lampid.clone()),
            ("project".into(), c.project.clone()),
            ("key".into(), key?),
        ],
        matching: c.match_field.clone().zip(c.match_from.clone()),
        http: http?,
    }))
}

struct LamplightDestination {
    name: String,
    base: String,
    host: String,
    role: String,
    credentials: [(String, String); 3],
    /// (Lamplight search field, person-mapping field with the value).
    matching: Option<(String, String)>,
    http: Http,
}

impl Sink for LamplightDestination {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(self.deliver(job))
    }

    fn resends_safely(&self) -> bool {
        false
    }

    fn reference_step(&self) -> Option<&'static str> {
        Some(REFERRAL)
    }
}

/// The journal's steps.
const PROFILE: &str = "lamplight-profile";
const REFERRAL: &str = "lamplight-referral";

impl LamplightDestination {
    async fn deliver(&self, job: &Job<'_>) -> Result<Sent> {
        let j = job.journal;
        let person = job
            .rendered
            .slot(PERSON)
            .map(|o| o.fields.as_slice())
            .unwrap_or_default();
        // The profile first: its own step, so an interrupted people/add is not
        // mistaken for an interrupted referral/add.
        let profile = self.profile(j, person).await?;
        let mut fields: Vec<(String, String)> = form_fields(job.fields())
            .into_iter()
            .filter(|(k, _)| k != "attendee")
            .collect();
        fields.push(("attendee".into(), profile.to_string()));
        j.once(REFERRAL, "referral/add", self.make("referral/add/", fields))
            .await?;
        Ok(Sent { status: Some(200) })
    }

    /// The person's profile id: from the journal, found by `match_field`, or made.
    async fn profile(&self, j: Journal<'_>, person: &[(String, Value)]) -> Result<i64> {
        if let Some((field, from)) = &self.matching
            && !matches!(j.step(PROFILE).await?, Step::Done(_))
            && let Some(id) = self.find(field, from, person).await?
        {
            // Found (again): what an interrupted people/add made, or an older profile.
            j.done(PROFILE, &id.to_string()).await?;
            return Ok(id);
        }
        let path = format!("people/add/role/{}", self.role);
        let id = j
            .once(PROFILE, "people/add", self.make(&path, form_fields(person)))
            .await?;
        id.parse().map_err(|_| {
            GatewayError::permanent(
                Stage::Store,
                format!(
                    "{}: the journal holds a profile id that is not a number",
                    self.name
                ),
            )
        })
    }

    /// A record-making request; the id of the record made, as text.
    async fn make(&self, path: &str, fields: Vec<(String, String)>) -> Result<String> {
        let op = path.trim_end_matches('/');
        let body = self.call(op, path, fields).await?;
        record_id(&self.name, op, body).map(|id| id.to_string())
    }

    /// The one published profile whose `field` is exactly the person's `from` value;
    /// None when there is none, or the person has no such value.
    async fn find(
        &self,
        field: &str,
        from: &str,
        person: &[(String, Value)],
    ) -> Result<Option<i64>> {
        let Some(value) = person
            .iter()
            .find(|(k, _)| k == from)
            .and_then(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let mut path = format!("people/some/role/{}/", self.role);
        path.extend(url::form_urlencoded::byte_serialize(field.as_bytes()));
        path.push('/');
        path.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
        // A search changes nothing: whatever goes wrong, it is an error to retry, not
        // "no match" (which would make a second profile).
        let body = self
            .call(
                "people search",
                &path,
                vec![("return".into(), "full".into())],
            )
            .await
            .map_err(|mut e| {
                e.sent = false;
                e
            })?;
        if let Some(code) = lamplight_error(&body) {
            return Err(GatewayError::permanent(
                Stage::Deliver,
                format!(
                    "{}: people search refused: Lamplight error {code}",
                    self.name
                ),
            ));
        }
        let Some(records) = body.get("data").and_then(Value::as_array) else {
            return Err(GatewayError::transient(
                Stage::Deliver,
                format!("{}: people search answered without a data list", self.name),
            ));
        };
        let exact: Vec<i64> = records
            .iter()
            .filter(|r| r.get(field).and_then(Value::as_str) == Some(value))
            .filter_map(|r| r.get("id").and_then(as_id))
            .collect();
        match exact[..] {
            [] => Ok(None),
            [id] => Ok(Some(id)),
            _ => Err(GatewayError::permanent(
                Stage::Deliver,
                format!(
                    "{}: {} published Lamplight profiles have this person's {field}; merge them in Lamplight, then replay",
                    self.name,
                    exact.len()
                ),
            )),
        }
    }

    /// POSTs form fields plus credentials (Lamplight recommends POST for every call);
    /// the JSON answer. `op` names the call in errors (never `path`).
    async fn call(&self, op: &str, path: &str, mut fields: Vec<(String, String)>) -> Result<Value> {
        fields.extend(self.credentials.iter().cloned());
        let url = format!("{}/{path}", self.base);
        let named = |mut e: GatewayError| {
            e.message = format!("{}: {op}: {}", self.name, e.message);
            e
        };
        let resp = self
            .http
            .send(self.http.client.post(&url).form(&fields), &self.host)
            .await
            .map_err(named)?;
        let body = self.http.body(resp).await.map_err(named)?;
        serde_json::from_slice(&body).map_err(|_| {
            let mut e = GatewayError::transient(
                Stage::Deliver,
                format!(
                    "{}: {op} answered 2xx with something that is not JSON",
                    self.name
                ),
            );
            e.sent = true;
            e
        })
    }
}

fn as_id(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Lamplight's error code, when the answer is an error. Its message text is not
/// kept: it may echo the data sent.
fn lamplight_error(body: &Value) -> Option<String> {
    let code = body
        .get("error")
        .filter(|e| !e.is_null() && *e != &Value::Bool(false))?;
    Some(match code {
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.len() <= 12 && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
            s.clone()
        }
        _ => "(unreadable)".into(),
    })
}

/// The id of the record a datain call made.
fn record_id(name: &str, op: &str, body: Value) -> Result<i64> {
    if let Some(code) = lamplight_error(&body) {
        // Lamplight's codes (1xxx, 9999) are all about the data or the account's
        // settings: sending the same again will not help.
        return Err(GatewayError::permanent(
            Stage::Deliver,
            format!(
                "{name}: {op} refused it: Lamplight error {code} (see Lamplight's API error codes)"
            ),
        ));
    }
    let id = match body.get("data") {
        Some(Value::Object(d)) => d.get("id").and_then(as_id),
        Some(v) => as_id(v),
        None => None,
    };
    id.filter(|&i| i > 0).ok_or_else(|| {
        // A 2xx without the record: it may have been made.
        let mut e = GatewayError::transient(
            Stage::Deliver,
            format!("{name}: {op} answered without a record id"),
        );
        e.sent = true;
        e
    })
}
