//! FHIR R4 record writer (UK Core): one transaction per event into the practice's
//! record — first a CarePlan for the plan and requested actions when the event states
//! one, then an Encounter for a contact (its NHS Data Dictionary mechanism, location and
//! attendance outcome), an Observation (category survey, valueQuantity, a component per
//! item or subscale) for a score of any structured scale, a Procedure for an accepted
//! or onward referral, an Observation for a decline or a closure, the referral's Task moved to its state, and a Communication
//! carrying the readable summary with its codes (a GP system may drop a code it does
//! not know). Every resource carries the event's identifier and is created with
//! `ifNoneExist` on it; the Task is a conditional update on the referral's identifier —
//! so a resend, or a second copy, writes nothing twice.

use futures_util::future::BoxFuture;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use super::fhir::search_value;
use super::http::auth::{Auth, OAuth2Config};
use super::http::{Http, endpoint, host_of};
use super::terms::{HasHttp, destination_config};
use super::{Build, Job, Sent, Sink};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::model::identifiers::NHS_NUMBER_SYSTEM;
use crate::model::message_back::EventType;
use crate::record::{CodedEntry, RecordEntry, document};
use crate::secret::Secret;

pub const FLOW: Flow = Flow::MessageBack;

/// A record writer: it writes events, never a referral's later messages.
pub const LATER: &[crate::model::lifecycle::Change] = &[];

/// It keeps no files of its own.
pub fn kept(_: &Config) -> Option<super::Kept<'_>> {
    None
}

/// The transaction POST into the practice's record.
pub fn channel(c: &Config) -> super::channel::Channel {
    super::channel::Channel::http("POST (FHIR R4 transaction Bundle)", &c.base_url, c.http())
        .bearer(c.token.as_ref(), c.oauth2.as_ref())
}

const FHIR_JSON: &str = "application/fhir+json";

destination_config! { @http
    /// `kind = "fhir-record"`
    pub struct Config {
        /// The practice record's FHIR R4 base.
        pub base_url: String,
        pub token: Option<Secret>,
        pub oauth2: Option<OAuth2Config>,
        /// A json mapping producing the record entry (default: gp-record).
        #[serde(default = "default_mapping")]
        pub mapping: String,
        /// System of the identifier each written resource carries (value: the event id).
        #[serde(default = "default_event_system")]
        pub identifier_system: String,
        /// System of the referral's identifier (the referral flow's message id), on
        /// the Task that stands for the referral.
        #[serde(default = "default_referral_system")]
        pub referral_identifier_system: String,
        /// Which CHI system URI to write for Scottish patients.
        #[serde(default = "default_chi_system")]
        pub chi_system: String,
        /// Read v2 codes beside SNOMED CT. Unset, the practice's nation decides: on for
        /// Scottish practices (their systems still code in Read v2), off elsewhere.
        #[serde(default)]
        pub read_codes: Option<bool>,
    }
}

fn default_mapping() -> String {
    "gp-record".into()
}
fn default_event_system() -> String {
    "https://clw-gateway.org/Id/message-back-event".into()
}
fn default_referral_system() -> String {
    super::fhir::REFERRAL_IDENTIFIER_SYSTEM.into()
}
fn default_chi_system() -> String {
    crate::model::identifiers::CHI_SYSTEMS[0].into()
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Json);
    let base = endpoint(b, "base_url", c.base_url.trim_end_matches('/'));
    let http = Http::build(b, c.http());
    let auth = Auth::build(b, c.token.as_ref(), c.oauth2.as_ref());
    Some(Box::new(FhirRecord {
        name: b.name.to_string(),
        base: base?,
        auth: auth?,
        http: http?,
        systems: Systems {
            event: c.identifier_system.clone(),
            referral: c.referral_identifier_system.clone(),
            chi: c.chi_system.clone(),
            read_codes: c.read_codes,
        },
    }))
}

struct FhirRecord {
    name: String,
    base: Url,
    auth: Auth,
    http: Http,
    systems: Systems,
}

struct Systems {
    event: String,
    referral: String,
    chi: String,
    /// None: the practice's nation decides.
    read_codes: Option<bool>,
}

impl Sink for FhirRecord {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let entry = RecordEntry::from_payload(job.payload())?;
            let bundle = transaction(&entry, job.message_id, &self.systems)?;
            let make = || {
                self.http
                    .client
                    .post(self.base.clone())
                    .header(CONTENT_TYPE, FHIR_JSON)
                    .header(ACCEPT, FHIR_JSON)
                    .header("X-Request-ID", job.idempotency_key)
                    .json(&bundle)
            };
            let resp = self
                .auth
                .send(&self.http, &host_of(&self.base), make)
                .await
                .and_then(|r| self.http.check(r))?;
            let status = resp.status().as_u16();
            let body: Value =
                serde_json::from_slice(&self.http.body(resp).await?).unwrap_or(Value::Null);
            super::fhir::check_response(&self.name, &body)?;
            Ok(Sent {
                status: Some(status),
            })
        })
    }
}

/// A CodeableConcept for a coded entry: SNOMED CT (or the local code), Read v2 beside
/// it when asked, and the display as text.
fn concept(c: &CodedEntry, read_codes: bool) -> Value {
    let codings: Vec<Value> = c
        .codes(read_codes)
        .into_iter()
        .map(|code| json!({"system": code.system, "code": code.code, "display": code.display}))
        .collect();
    let text = c.primary().map(|p| p.display.clone()).unwrap_or_default();
    json!({"coding": codings, "text": text})
}

/// The patient as a logical reference: the NHS (or CHI) number the practice knows them by.
fn subject(e: &RecordEntry, s: &Systems) -> Result<Value> {
    let identifier = match (&e.patient.nhs_number, &e.patient.chi_number) {
        (Some(n), _) => json!({"system": NHS_NUMBER_SYSTEM, "value": n}),
        (None, Some(c)) => json!({"system": s.chi, "value": c}),
        (None, None) => {
            return Err(GatewayError::invalid(
                Stage::Map,
                "patient",
                "the referral has neither an NHS nor a CHI number, so the record cannot be addressed",
            ));
        }
    };
    Ok(json!({"identifier": identifier}))
}

/// Where an Encounter's attendance outcome (NHS Data Dictionary ATTENDED OR DID NOT
/// ATTEND) is written.
const ATTENDANCE_EXTENSION: &str =
    "https://clw-gateway.org/fhir/StructureDefinition/attendance-outcome";

/// A canonical coded value (system, code, display, text) as a CodeableConcept.
fn coded_concept(c: &crate::model::Coded) -> Value {
    let mut coding = json!({});
    for (k, v) in [
        ("system", &c.system),
        ("code", &c.code),
        ("display", &c.display),
    ] {
        if let Some(v) = v {
            coding[k] = json!(v);
        }
    }
    let mut out = json!({"coding": [coding]});
    if let Some(t) = c.text.as_ref().or(c.display.as_ref()) {
        out["text"] = json!(t);
    }
    out
}

/// An NHS Data Dictionary code (its words the Dictionary's: the platform's own text,
/// where consent let it travel, is in the readable document).
fn nhs_dd_concept(c: &crate::model::Coded) -> Value {
    coded_concept(&crate::model::Coded {
        text: None,
        ..c.clone()
    })
}

/// PRSB "Plan and requested actions" as a CarePlan (status active, intent plan): one
/// activity per action, not started, or the description "No actions required". None
/// when the event states no plan. The referral it answers is in `supportingInfo` (R4's
/// `CarePlan.basedOn` may name only another CarePlan).
fn care_plan(e: &RecordEntry, subject: &Value, referral: &Value) -> Option<Value> {
    let p = e.event.plan.as_ref()?;
    let mut plan = json!({
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "title": "Social prescribing: plan and requested actions",
        "subject": subject,
        "created": e.event.occurred_at,
        "supportingInfo": [referral],
    });
    if p.no_actions_required {
        plan["description"] = json!("No actions required");
        return Some(plan);
    }
    let activities: Vec<Value> = [
        ("For the GP or referrer", &p.for_professionals),
        ("For the person", &p.for_person),
        ("Agreed with the person", &p.agreed_with_person),
    ]
    .into_iter()
    .filter_map(|(who, text)| {
        let text = text.as_deref()?;
        Some(json!({"detail": {"status": "not-started", "description": format!("{who}: {text}")}}))
    })
    .collect();
    if activities.is_empty() {
        return None;
    }
    plan["activity"] = json!(activities);
    Some(plan)
}

/// The transaction for one event.
fn transaction(e: &RecordEntry, message_id: &str, s: &Systems) -> Result<Value> {
    let subject = subject(e, s)?;
    let when = e.event.occurred_at.clone();
    let note = json!([{"text": e.headline}]);
    let referral_ref =
        json!({"identifier": {"system": s.referral, "value": e.referral.message_id}});
    let mut entries = Vec::new();
    let mut create = |kind: &str, mut resource: Value| {
        let value = format!("{message_id}#{kind}");
        resource["identifier"] = json!([{"system": s.event, "value": value}]);
        let rtype = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("{}|{value}", s.event).as_bytes())),
            "resource": resource,
            "request": {
                "method": "POST",
                "url": rtype,
                "ifNoneExist": format!("identifier={}|{}", search_value(&s.event), search_value(&value)),
            },
        }));
    };
    let read_codes = s.read_codes.unwrap_or(e.practice.is_scottish());
    let coded = |i: usize| e.coded.get(i).map(|c| concept(c, read_codes));
    // The plan and requested actions first, as the standard asks.
    if let Some(plan) = care_plan(e, &subject, &referral_ref) {
        create("careplan", plan);
    }
    match e.event.event_type {
        EventType::Contact => {
            let c = e.event.contact.clone().unwrap_or_default();
            let class = match c.mode.as_str() {
                "telephone" | "video" | "text" | "email" => ("VR", "virtual"),
                "home-visit" => ("HH", "home health"),
                _ => ("AMB", "ambulatory"),
            };
            let status = c
                .outcome
                .as_ref()
                .and_then(crate::record::nhs_dd::encounter_status)
                .unwrap_or("finished");
            let mut enc = json!({
                "resourceType": "Encounter",
                "status": status,
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class.0, "display": class.1},
                "subject": subject,
                "basedOn": [referral_ref],
                "period": {"start": c.date.clone().unwrap_or_else(|| when.clone())},
            });
            // The contact's code, then how it took place (NHS Data Dictionary
            // CONSULTATION MECHANISM) as a second type.
            let types: Vec<Value> = coded(0)
                .into_iter()
                .chain(c.method.as_ref().map(nhs_dd_concept))
                .collect();
            if !types.is_empty() {
                enc["type"] = json!(types);
            }
            // Where: a contained Location typed by its ACTIVITY LOCATION TYPE CODE.
            if let Some(l) = &c.location {
                enc["contained"] = json!([{"resourceType": "Location", "id": "where", "type": [nhs_dd_concept(l)]}]);
                enc["location"] = json!([{"location": {"reference": "#where"}}]);
            }
            // Whether it took place: ATTENDED OR DID NOT ATTEND, in an extension (R4's
            // Encounter has no element for it; its status says finished or cancelled).
            if let Some(o) = &c.outcome {
                enc["extension"] = json!([{"url": ATTENDANCE_EXTENSION, "valueCodeableConcept": nhs_dd_concept(o)}]);
            }
            if let Some(m) = c.duration_minutes {
                enc["length"] = json!({"value": m, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"});
            }
            create("encounter", enc);
        }
        EventType::Assessment => {
            let a = e.event.assessment.clone().unwrap_or_default();
            let effective = a.date.clone().unwrap_or_else(|| when.clone());
            let survey = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey", "display": "Survey"}]}]);
            let quantity = |v: f64, unit: Option<&str>| match unit.filter(|u| *u != "{score}") {
                Some(u) => {
                    json!({"value": v, "unit": u, "system": "http://unitsofmeasure.org", "code": u})
                }
                None => {
                    json!({"value": v, "unit": "score", "system": "http://unitsofmeasure.org", "code": "{score}"})
                }
            };
            let Some(first) = e.coded.first() else {
                return Err(GatewayError::invalid(
                    Stage::Map,
                    "coded",
                    "an assessment needs its coded entry",
                ));
            };
            let mut obs = json!({
                "resourceType": "Observation",
                "status": "final",
                "category": survey,
                "code": concept(first, read_codes),
                "subject": subject,
                "effectiveDateTime": effective,
                "basedOn": [referral_ref],
                "note": note,
            });
            if let Some(v) = first.value {
                obs["valueQuantity"] = quantity(v, first.unit.as_deref());
            }
            // ONS4: one component per item; any scale: one per subscale.
            let items = if a.items.is_some() {
                &e.coded[1..e.coded.len().min(5)]
            } else {
                &[]
            };
            let components: Vec<Value> = items
                .iter()
                .map(|item| json!({"code": concept(item, read_codes), "valueQuantity": quantity(item.value.unwrap_or_default(), None)}))
                .chain(a.subscales.iter().map(|sub| {
                    let mut code = sub.code.as_ref().map(coded_concept).unwrap_or_else(|| json!({}));
                    code["text"] = json!(sub.name);
                    json!({"code": code, "valueQuantity": quantity(sub.value, sub.unit.as_deref())})
                }))
                .collect();
            if !components.is_empty() {
                obs["component"] = json!(components);
            }
            create("observation", obs);
        }
        EventType::ReferralAccepted | EventType::OnwardReferral => {
            let Some(code) = coded(0) else {
                return Err(GatewayError::invalid(
                    Stage::Map,
                    "coded",
                    "needs its coded entry",
                ));
            };
            let mut proc = json!({
                "resourceType": "Procedure",
                "status": "completed",
                "code": code,
                "subject": subject,
                "performedDateTime": when,
                "basedOn": [referral_ref],
                "note": note,
            });
            if let Some(o) = &e.event.onward_referral {
                proc["note"] = json!([{"text": format!("{} (to {})", e.headline, o.to)}]);
            }
            create("procedure", proc);
        }
        EventType::ReferralDeclined | EventType::Closed => {
            let Some(code) = coded(0) else {
                return Err(GatewayError::invalid(
                    Stage::Map,
                    "coded",
                    "needs its coded entry",
                ));
            };
            create(
                "observation",
                json!({
                    "resourceType": "Observation",
                    "status": "final",
                    "code": code,
                    "subject": subject,
                    "effectiveDateTime": when,
                    "basedOn": [referral_ref],
                    "note": note,
                }),
            );
        }
    }
    // The readable summary with its codes, always.
    create(
        "communication",
        json!({
            "resourceType": "Communication",
            "status": "completed",
            "subject": subject,
            "sent": when,
            "basedOn": [referral_ref],
            "payload": [{"contentString": document::text(e, read_codes)}],
        }),
    );
    // The referral's Task, moved to its state: created the first time, replaced after.
    let status = match e.referral.state.as_deref() {
        Some("accepted") => "accepted",
        Some("declined") => "rejected",
        Some("in-progress") => "in-progress",
        Some("closed") => "completed",
        // Ended by the practice (cancelled, consent withdrawn) or by the gateway (the
        // service never answered): never shown as done.
        Some("cancelled" | "withdrawn") => "cancelled",
        Some("expired") => "failed",
        _ => "requested",
    };
    let task_id = json!({"system": s.referral, "value": e.referral.message_id});
    entries.push(json!({
        "resource": {
            "resourceType": "Task",
            "identifier": [task_id],
            "status": status,
            "intent": "order",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "871731000000106", "display": "Referral to social prescribing service"}]},
            "for": subject,
            "lastModified": when,
            "businessStatus": {"text": e.headline},
        },
        "request": {
            "method": "PUT",
            "url": format!("Task?identifier={}|{}", search_value(&s.referral), search_value(&e.referral.message_id)),
        },
    }));
    Ok(json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
}

/// The transaction an entry becomes, with the default systems (property tests).
#[cfg(test)]
pub(crate) fn render_for_test(e: &RecordEntry) -> Result<Value> {
    let systems = Systems {
        event: default_event_system(),
        referral: default_referral_system(),
        chi: default_chi_system(),
        read_codes: Some(true),
    };
    transaction(e, "test-message", &systems)
}
