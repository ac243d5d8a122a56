//! FHIR R4 destination: the mapped ServiceRequest and a Task that asks the CLW service to
//! fulfil it (status `requested`, intent `order`, code `fulfill`, focus the
//! ServiceRequest — the closed-loop referral pattern), posted as one transaction Bundle.
//! Both carry the gateway's identifier (value = message id) and are created with
//! `ifNoneExist` on it, so a resend finds them instead of making copies. Requests are
//! built with reqwest (not fhir-sdk's client, which retries POSTs on timeout).

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

use super::http::{Http, parse_url, read_secret};
use super::{Delivered, DeliveryRequest};
use crate::config::FhirConfig;
use crate::error::{GatewayError, Result, Stage};

const FHIR_JSON: &str = "application/fhir+json";

pub struct FhirDestination {
    name: String,
    base: reqwest::Url,
    token: Option<String>,
    identifier_system: String,
    http: Http,
}

impl FhirDestination {
    pub fn new(name: &str, c: &FhirConfig) -> Result<Self> {
        let base = parse_url(name, "base_url", c.base_url.trim_end_matches('/'))?;
        Ok(FhirDestination {
            name: name.to_string(),
            base,
            token: read_secret(name, "token", c.token_env.as_deref(), c.token_file.as_ref())?,
            identifier_system: c.identifier_system.clone(),
            http: Http::new(name, c.connect_timeout, c.timeout)?,
        })
    }

    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> Result<Delivered> {
        let bundle = transaction(req.payload, &self.identifier_system, req.message_id)?;
        let mut r = self
            .http
            .client
            .post(self.base.clone())
            .header(CONTENT_TYPE, FHIR_JSON)
            .header(ACCEPT, FHIR_JSON)
            .header("X-Request-ID", req.idempotency_key)
            .json(&bundle);
        if let Some(t) = &self.token {
            r = r.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let host = self.base.host_str().unwrap_or("").to_string();
        let resp = match self.http.send(r, &host).await {
            Ok(resp) => resp,
            Err(mut e) => {
                e.message
                    .push_str(" (the server refused the ServiceRequest/Task transaction)");
                return Err(e);
            }
        };
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        check_response(&self.name, &body)?;
        Ok(Delivered {
            status: Some(status),
        })
    }
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
    let condition = format!("identifier={system}|{message_id}");
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

/// A transaction-response whose entries all succeeded (201 created, 200 found).
fn check_response(name: &str, body: &Value) -> Result<()> {
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
