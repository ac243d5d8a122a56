//! Lamplight (lamplight-publishing.co.uk datain API; github.com/mattparker/lamplight-phpclient
//! docs): every request is a POST of form fields carrying `lampid`, `project` and `key`.
//! Lamplight will not create the referred person itself, so a delivery is: find the
//! person (when `match_field` is set: `people/some/role/{role}/{field}/{value}`, a
//! 'contains' search over published profiles, checked here for an exact match), else
//! `people/add/role/{role}` (the person mapping) → profile id; then `referral/add/` (the
//! referral mapping) with `attendee` = that id. Answers are JSON:
//! `{"data": {"id": N, ...}, "meta": ...}` or `{"error": code, "msg": "..."}`.
//!
//! Lamplight takes no idempotency key. The profile id made for a message is kept for
//! the process's lifetime, so a retry (e.g. after referral/add timed out) does not make
//! a second profile; after a restart, only `match_field` finds it again.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::Mutex;

use super::http::{Http, endpoint, form_fields, host_of};
use super::terms::{HasHttp, destination_config};
use super::{Build, Job, Sent, Sink};
use crate::config::Secret;
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;

pub const FLOW: Flow = Flow::Referral;

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
        profiles: Mutex::new(HashMap::new()),
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
    /// message id → profile id created or found for it.
    profiles: Mutex<HashMap<String, i64>>,
}

impl Sink for LamplightDestination {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let person = job
                .rendered
                .slot(PERSON)
                .map(|o| o.fields.as_slice())
                .unwrap_or_default();
            self.deliver(job, person).await
        })
    }
}

impl LamplightDestination {
    /// `person` is the rendered person mapping (form fields), `req` the referral.
    async fn deliver(&self, req: &Job<'_>, person: &[(String, Value)]) -> Result<Sent> {
        let known = self.profiles.lock().await.get(req.message_id).copied();
        let profile = match known {
            Some(id) => id,
            None => {
                let found = match &self.matching {
                    Some((field, from)) => self.find(field, from, person).await?,
                    None => None,
                };
                let id = match found {
                    Some(id) => id,
                    None => {
                        let path = format!("people/add/role/{}", self.role);
                        record_id(
                            &self.name,
                            &path,
                            self.call(&path, form_fields(person)).await?,
                        )?
                    }
                };
                self.profiles
                    .lock()
                    .await
                    .insert(req.message_id.to_string(), id);
                id
            }
        };
        let mut fields: Vec<(String, String)> = form_fields(req.fields())
            .into_iter()
            .filter(|(k, _)| k != "attendee")
            .collect();
        fields.push(("attendee".into(), profile.to_string()));
        let path = "referral/add/";
        record_id(&self.name, path, self.call(path, fields).await?)?;
        self.profiles.lock().await.remove(req.message_id);
        Ok(Sent { status: Some(200) })
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
        let body = self
            .call(&path, vec![("return".into(), "full".into())])
            .await?;
        if lamplight_error(&body).is_some() {
            // "Nothing published matches" comes back as an error code.
            return Ok(None);
        }
        let exact: Vec<i64> = body
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| r.get(field).and_then(Value::as_str) == Some(value))
            .filter_map(|r| r.get("id").and_then(Value::as_i64))
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
    /// the JSON answer.
    async fn call(&self, path: &str, mut fields: Vec<(String, String)>) -> Result<Value> {
        fields.extend(self.credentials.iter().cloned());
        let url = format!("{}/{path}", self.base);
        let resp = self
            .http
            .send(self.http.client.post(&url).form(&fields), &self.host)
            .await?;
        resp.json().await.map_err(|_| {
            GatewayError::transient(
                Stage::Deliver,
                format!(
                    "{}: {path} answered with something that is not JSON",
                    self.name
                ),
            )
        })
    }
}

/// Lamplight's error code and message, when the answer is an error.
fn lamplight_error(body: &Value) -> Option<(String, String)> {
    let code = body
        .get("error")
        .filter(|e| !e.is_null() && *e != &Value::Bool(false))?;
    let msg = body
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    Some((code.to_string(), msg.to_string()))
}

/// The id of the record a datain call made.
fn record_id(name: &str, path: &str, body: Value) -> Result<i64> {
    if let Some((code, msg)) = lamplight_error(&body) {
        // Lamplight's codes (1xxx, 9999) are all about the data or the account's
        // settings: sending the same again will not help.
        return Err(GatewayError::permanent(
            Stage::Deliver,
            format!("{name}: {path} refused it: Lamplight error {code}: {msg}"),
        ));
    }
    let id = match body.get("data") {
        Some(Value::Object(d)) => d.get("id").and_then(Value::as_i64),
        Some(v) => v.as_i64(),
        None => None,
    };
    id.filter(|&i| i > 0).ok_or_else(|| {
        GatewayError::transient(
            Stage::Deliver,
            format!("{name}: {path} answered without a record id"),
        )
    })
}
