//! Lamplight (lamplight-publishing.co.uk datain API; github.com/mattparker/lamplight-phpclient
//! docs): every request is a POST of form fields carrying `lampid`, `project` and `key`.
//! Lamplight will not create the referred person itself, so a delivery is two calls:
//! `people/add/role/{role}` (the person mapping) → profile id, then `referral/add/`
//! (the referral mapping) with `attendee` = that id. Answers are JSON:
//! `{"data": {"id": N, ...}, "meta": ...}` or `{"error": code, "msg": "..."}`.
//!
//! Lamplight takes no idempotency key. The profile id made for a message is kept for
//! the process's lifetime, so a retry (e.g. after referral/add timed out) does not make
//! a second profile; after a restart it would, and Lamplight's duplicate check on
//! import is then the safety net.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Mutex;

use super::http::{Http, form_fields, parse_url, require_secret};
use super::{Delivered, DeliveryRequest};
use crate::config::LamplightConfig;
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::Mapping;

pub struct LamplightDestination {
    name: String,
    base: String,
    host: String,
    role: String,
    credentials: [(String, String); 3],
    /// Renders the person's profile from the canonical referral.
    pub person_mapping: Arc<Mapping>,
    pub constants: std::collections::BTreeMap<String, String>,
    http: Http,
    /// message id → profile id created for it.
    profiles: Mutex<HashMap<String, i64>>,
}

impl LamplightDestination {
    pub fn new(name: &str, c: &LamplightConfig, person_mapping: Arc<Mapping>) -> Result<Self> {
        let url = parse_url(name, "base_url", &c.base_url)?;
        let key = require_secret(name, "key", c.key_env.as_deref(), c.key_file.as_ref())?;
        Ok(LamplightDestination {
            name: name.to_string(),
            base: c.base_url.trim_end_matches('/').to_string(),
            host: url.host_str().unwrap_or("").to_string(),
            role: c.role.clone(),
            credentials: [
                ("lampid".into(), c.lampid.clone()),
                ("project".into(), c.project.clone()),
                ("key".into(), key),
            ],
            person_mapping,
            constants: c.constants.clone(),
            http: Http::new(name, c.connect_timeout, c.timeout)?,
            profiles: Mutex::new(HashMap::new()),
        })
    }

    /// `person` is the rendered person mapping (form fields), `req` the referral.
    pub async fn deliver(
        &self,
        req: &DeliveryRequest<'_>,
        person: &[(String, Value)],
    ) -> Result<Delivered> {
        let known = self.profiles.lock().await.get(req.message_id).copied();
        let profile = match known {
            Some(id) => id,
            None => {
                let id = self
                    .post(
                        &format!("people/add/role/{}", self.role),
                        form_fields(person),
                    )
                    .await?;
                self.profiles
                    .lock()
                    .await
                    .insert(req.message_id.to_string(), id);
                id
            }
        };
        let mut fields: Vec<(String, String)> = form_fields(req.fields)
            .into_iter()
            .filter(|(k, _)| k != "attendee")
            .collect();
        fields.push(("attendee".into(), profile.to_string()));
        self.post("referral/add/", fields).await?;
        self.profiles.lock().await.remove(req.message_id);
        Ok(Delivered { status: Some(200) })
    }

    /// POSTs form fields plus credentials; the id Lamplight answers with.
    async fn post(&self, path: &str, mut fields: Vec<(String, String)>) -> Result<i64> {
        fields.extend(self.credentials.iter().cloned());
        let url = format!("{}/{path}", self.base);
        let resp = self
            .http
            .send(self.http.client.post(&url).form(&fields), &self.host)
            .await?;
        let body: Value = resp.json().await.map_err(|_| {
            GatewayError::transient(
                Stage::Deliver,
                format!(
                    "{}: {path} answered with something that is not JSON",
                    self.name
                ),
            )
        })?;
        if let Some(code) = body
            .get("error")
            .filter(|e| !e.is_null() && *e != &Value::Bool(false))
        {
            let msg = body
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            // Lamplight's codes (1xxx, 9999) are all about the data or the account's
            // settings: sending the same again will not help.
            return Err(GatewayError::permanent(
                Stage::Deliver,
                format!(
                    "{}: {path} refused it: Lamplight error {code}: {msg}",
                    self.name
                ),
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
                format!("{}: {path} answered without a record id", self.name),
            )
        })
    }
}
