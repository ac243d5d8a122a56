//! The message-back front: a platform's event (JSON, any of the doors) through that
//! platform's mapping to the canonical event, checked; bound to the platform that sent
//! it (a door's seal, the broker user that published it, or the spool's platform);
//! linked to the referral it is about — only among the referrals delivered to that
//! platform's destinations (the gateway's message id, the platform's own reference, or
//! the patient's number with the programme) — with the patient checked; coded from the
//! code map; and sent to the practice's record writers. An event that cannot be linked
//! with certainty is parked with a reason and nothing is written — never a best guess.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Front, Plan, Refusal};
use crate::config::PatientItem;
use crate::deliver::Destination;
use crate::engine::Inbound;
use crate::error::{GatewayError, Result, Stage};
use crate::intake::envelope::{ATTEMPT_HEADER, body_digest, check_message_id, check_size};
use crate::mapping::CodeMap;
use crate::model::Flow;
use crate::model::identifiers::{IdentifierKind, patient_key};
use crate::model::message_back::{EventType, MessageBack};
use crate::record::{Code, CodedEntry};
use crate::seal::{BROKER_USER_HEADER, BROKER_USER_SEAL_HEADER, Opened, Origin, Sealer};
use crate::store::{ReferralRecord, Store, Write};
use crate::wiring::{MessageBackWiring, Platform};

/// The CloudEvents type of a message-back event.
pub const EVENT_TYPE: &str = "uk.nhs.socialprescribing.messageback.v1";
/// The platform a publisher on the AMQP door says it is: never trusted, but one that
/// disagrees with the platform the broker authenticated is refused.
pub const PLATFORM_HEADER: &str = "x-clw-platform";
/// The embedded default's platform, whose events keep their own ids.
pub const DEFAULT_PLATFORM: &str = "clw-event";

/// The id an event is queued and recorded under: its event id, named by the platform
/// (or poller) it came from (the embedded default platform's ids are taken as they are).
pub fn queued_id(prefix: &str, event_id: &str) -> String {
    if prefix == DEFAULT_PLATFORM {
        event_id.to_string()
    } else {
        format!("{prefix}:{event_id}")
    }
}

/// What an origin's event ids are prefixed with.
pub fn id_prefix(origin: &Origin) -> String {
    match origin {
        Origin::Platform(p) => p.clone(),
        Origin::Poller(d) => super::poll::source_name(d),
    }
}

/// Where events that carry no door's seal come from on this gateway's transport.
#[derive(Debug, Clone, PartialEq)]
pub enum PlainEvents {
    /// The AMQP events door: each platform by the broker user it publishes as.
    Broker,
    /// The events spool: every file from this platform (or none: such files are parked).
    Spool(Option<String>),
}

pub struct MessageBackFront {
    platforms: BTreeMap<String, Arc<Platform>>,
    codes: Arc<CodeMap>,
    wiring_writers: BTreeMap<String, Arc<Destination>>,
    default_writers: Vec<Arc<Destination>>,
    routes: Option<crate::routing::Routes>,
    store: Store,
    max_bytes: usize,
    sealer: Sealer,
    plain: PlainEvents,
    future_skew: std::time::Duration,
}

/// What may answer which referrals: the referral destinations spoken for, where the
/// sender's references are recorded, and what its events must say of the patient.
struct Scope<'a> {
    origin: &'a Origin,
    destinations: BTreeSet<String>,
    references: &'a [(String, &'static str)],
    require: &'a [PatientItem],
}

/// An event decoded and bound to the origin it came from.
pub struct Decoded {
    pub origin: Origin,
    pub event: MessageBack,
}

impl MessageBackFront {
    pub fn new(
        w: &MessageBackWiring,
        store: Store,
        max_bytes: usize,
        sealer: Sealer,
        plain: PlainEvents,
    ) -> MessageBackFront {
        MessageBackFront {
            platforms: w.platforms.clone(),
            codes: w.codes.clone(),
            wiring_writers: w.writers.clone(),
            default_writers: w.default_writers.clone(),
            routes: w.routes.clone(),
            store,
            max_bytes,
            sealer,
            plain,
            future_skew: w.future_skew,
        }
    }

    async fn plan_event(&self, inbound: &Inbound) -> std::result::Result<Plan, Refusal> {
        let digest = body_digest(&inbound.body);
        let previous: u32 = inbound
            .headers
            .get(ATTEMPT_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let attempts = previous + 1;
        let refuse = |id: &str, error: GatewayError| Refusal {
            message_id: id.to_string(),
            attempts,
            error,
        };
        let fallback = digest.clone();
        let decoded = super::decode_heavy(inbound.body.len(), || self.decode(inbound))
            .map_err(|e| refuse(&fallback, e))?;
        let Decoded {
            origin,
            event: mut ev,
        } = decoded;
        let message_id = queued_id(&id_prefix(&origin), &ev.event_id);
        let sanitised = ev.strip_forbidden();
        check_message_id(&message_id, "event_id").map_err(|e| refuse(&fallback, e))?;
        let scope = self.scope(&origin).map_err(|e| refuse(&message_id, e))?;
        let referral = self
            .link(&ev, &scope)
            .await
            .map_err(|e| refuse(&message_id, e))?;
        check_programme(&ev, &referral).map_err(|e| refuse(&message_id, e))?;
        check_patient(&ev, &referral, &scope).map_err(|e| refuse(&message_id, e))?;
        check_when(&ev, &referral, chrono::Utc::now(), self.future_skew)
            .map_err(|e| refuse(&message_id, e))?;
        let coded = coded_entries(&ev, &self.codes).map_err(|e| refuse(&message_id, e))?;
        let targets = self.writers_for(&referral);
        if targets.is_empty() {
            // Nowhere to write it: parked for a person, never settled as done.
            return Err(refuse(
                &message_id,
                GatewayError::invalid(
                    Stage::Policy,
                    "practice",
                    format!(
                        "no record writer for the referral's practice ({}): set message_back.writers or a route's record_writers",
                        referral.practice.as_deref().unwrap_or("unknown")
                    ),
                ),
            ));
        }
        let narrative = referral.record.get("consent").and_then(Value::as_str) == Some("full");
        // The referral's state with this event counted: it only moves forward.
        let mut events = self
            .store
            .referral_events(&referral.message_id)
            .await
            .map_err(|e| refuse(&message_id, e))?;
        if !events.iter().any(|e| e.event_message_id == message_id) {
            events.push(crate::store::EventRow {
                event_message_id: message_id.clone(),
                kind: ev.event_type.as_str().into(),
                occurred_at: ev.occurred_at.clone(),
                detail: None,
                recorded_at: 0,
            });
        }
        let state = crate::store::derived_state(&events);
        let mut canonical = canonical(&ev, &referral, coded, narrative);
        canonical["referral"]["state"] = json!(state);
        let mut remember = vec![Write::ReferralEvent {
            event_message_id: message_id.clone(),
            referral_id: referral.message_id.clone(),
            kind: ev.event_type.as_str().into(),
            occurred_at: ev.occurred_at.clone(),
            detail: detail(&ev),
        }];
        if !sanitised.is_empty() {
            let detail = format!(
                "control characters XML 1.0 and FHIR forbid were left out of {}",
                sanitised.join(", ")
            );
            remember.push(Write::Audit(crate::store::AuditEntry::note(
                crate::engine::AuditAction::Sanitised,
                Flow::MessageBack,
                &message_id,
                sanitised,
                detail,
            )));
        }
        Ok(Plan {
            message_id,
            attempts,
            digest,
            canonical,
            targets,
            remember,
            serial: Some(format!("events-of/{}", referral.message_id)),
        })
    }

    /// Size, envelope, the origin (a door's seal, else the transport's binding), the
    /// platform's mapping for plain events, the canonical checks.
    pub fn decode(&self, inbound: &Inbound) -> Result<Decoded> {
        check_size(inbound.body.len(), self.max_bytes)?;
        if let Some(t) = inbound.headers.get("ce-type").filter(|t| !t.is_empty())
            && t != EVENT_TYPE
        {
            return Err(GatewayError::invalid(
                Stage::Envelope,
                "ce-type",
                format!("{t:?} is not a message-back event; expected {EVENT_TYPE}"),
            ));
        }
        match self.sealer.open(&inbound.body)? {
            Opened::Sealed { origin, event } => {
                let mut ev: MessageBack = read_canonical(event)?;
                if let Origin::Platform(name) = &origin {
                    let p = self.platform(name)?;
                    check_event_for(p, &mut ev)?;
                } else {
                    ev.check()?;
                }
                Ok(Decoded { origin, event: ev })
            }
            Opened::Plain => {
                let p = self.plain_platform(inbound)?;
                let body: Value = crate::intake::json::parse_bounded(&inbound.body)?;
                let mut ev = map_event(&p.mapping, &body, &BTreeMap::new())?;
                check_event_for(p, &mut ev)?;
                Ok(Decoded {
                    origin: Origin::Platform(p.name.clone()),
                    event: ev,
                })
            }
        }
    }

    fn platform(&self, name: &str) -> Result<&Platform> {
        self.platforms.get(name).map(Arc::as_ref).ok_or_else(|| {
            GatewayError::invalid(
                Stage::Policy,
                "platform",
                format!(
                    "the event comes from platform {name:?}, which is not in [message_back.platforms] \
                     (removed since it was queued?): nothing was written"
                ),
            )
        })
    }

    /// The platform a plain event comes from: the one the broker authenticated as its
    /// publisher, or the spool's.
    fn plain_platform(&self, inbound: &Inbound) -> Result<&Platform> {
        let p = match &self.plain {
            PlainEvents::Broker => {
                let user = verified_broker_user(inbound, &self.sealer).ok_or_else(|| {
                    GatewayError::invalid(
                        Stage::Policy,
                        "user_id",
                        "an event on the AMQP events door is taken only from a platform's own broker \
                         user, as the broker validated it (the user_id property): this one carries \
                         none, so the platform that sent it cannot be established; nothing was written",
                    )
                })?;
                self.platforms
                    .values()
                    .find(|p| p.broker_user.as_deref() == Some(user.as_str()))
                    .map(Arc::as_ref)
                    .ok_or_else(|| {
                        GatewayError::invalid(
                            Stage::Policy,
                            "user_id",
                            format!(
                                "broker user {user:?} published it, and no platform in \
                                 [message_back.platforms] has that broker_user: nothing was written"
                            ),
                        )
                    })?
            }
            PlainEvents::Spool(Some(name)) => self.platform(name)?,
            PlainEvents::Spool(None) => {
                return Err(GatewayError::invalid(
                    Stage::Policy,
                    "message_back.spool_platform",
                    "a file in the events spool that no gateway door queued, and no platform is \
                     configured for the spool (message_back.spool_platform): the platform that \
                     sent it cannot be established; nothing was written",
                ));
            }
        };
        if let Some(said) = inbound
            .headers
            .get(PLATFORM_HEADER)
            .filter(|h| !h.is_empty())
            && *said != p.name
        {
            return Err(GatewayError::invalid(
                Stage::Policy,
                PLATFORM_HEADER,
                format!(
                    "says platform {said:?}, but the event was published as platform {:?}'s: \
                     nothing was written",
                    p.name
                ),
            ));
        }
        Ok(p)
    }

    /// Which referrals an origin may answer.
    fn scope<'a>(&'a self, origin: &'a Origin) -> Result<Scope<'a>> {
        Ok(match origin {
            Origin::Platform(name) => {
                let p = self.platform(name)?;
                Scope {
                    origin,
                    destinations: p.destinations.clone(),
                    references: &p.references,
                    require: &p.require_patient,
                }
            }
            // The gateway's own record at the destination names the referral.
            Origin::Poller(d) => Scope {
                origin,
                destinations: BTreeSet::from([d.clone()]),
                references: &[],
                require: &[],
            },
        })
    }

    /// The referral the event names, among those delivered to the sender's
    /// destinations: by message id, by the platform's own reference, or by the
    /// patient's number in the programme — exactly one, or the event is parked.
    async fn link(&self, ev: &MessageBack, scope: &Scope<'_>) -> Result<ReferralRecord> {
        let link = &ev.referral;
        let unknown = |how: &str| {
            GatewayError::invalid(
                Stage::Policy,
                "referral",
                format!(
                    "no referral the gateway sent to {} matches its {how}: nothing was written; \
                     check the reference the platform holds, then replay",
                    scope.origin.describe()
                ),
            )
        };
        if let Some(id) = &link.message_id {
            let r = self
                .store
                .referral(id)
                .await?
                .ok_or_else(|| unknown("message_id"))?;
            return match self.sent_to(&r, scope).await? {
                true => Ok(r),
                false => Err(not_sent_to(scope)),
            };
        }
        if matches!(scope.origin, Origin::Poller(_)) {
            return Err(unknown(
                "record (a poller's event names the referral by message_id)",
            ));
        }
        if let Some(reference) = &link.platform_reference {
            if scope.references.is_empty() {
                return Err(no_references(scope));
            }
            let ids = self
                .store
                .referral_by_platform_reference(reference, scope.references)
                .await?;
            let mut found = Vec::new();
            for id in &ids {
                if let Some(r) = self.store.referral(id).await?
                    && self.sent_to(&r, scope).await?
                {
                    found.push(r);
                }
            }
            return match found.len() {
                1 => Ok(found.remove(0)),
                0 => Err(unknown("platform_reference")),
                _ => Err(GatewayError::invalid(
                    Stage::Policy,
                    "referral.platform_reference",
                    "more than one referral has this platform reference; nothing was written",
                )),
            };
        }
        let programme = link.programme.as_deref().unwrap_or_default();
        let patient = link.patient.clone().unwrap_or_default();
        let key = match (&patient.nhs_number, &patient.chi_number) {
            (Some(n), _) => patient_key(IdentifierKind::Nhs, n),
            (None, Some(c)) => patient_key(IdentifierKind::Chi, c),
            (None, None) => return Err(unknown("patient")),
        };
        let mut open = Vec::new();
        let mut elsewhere = 0;
        for (r, closed) in self.store.referrals_for_patient(programme, &key).await? {
            if closed {
                continue;
            }
            if self.sent_to(&r, scope).await? {
                open.push(r);
            } else {
                elsewhere += 1;
            }
        }
        match open.len() {
            1 => Ok(open.remove(0)),
            0 if elsewhere > 0 => Err(not_sent_to(scope)),
            0 => Err(unknown("patient's number in the programme")),
            n => Err(GatewayError::invalid(
                Stage::Policy,
                "referral",
                format!(
                    "{n} open referrals in this programme have the patient's number: name the referral \
                     (message_id or platform_reference); nothing was written"
                ),
            )),
        }
    }

    /// Whether the referral was delivered to one of the destinations in scope.
    async fn sent_to(&self, r: &ReferralRecord, scope: &Scope<'_>) -> Result<bool> {
        Ok(self
            .store
            .delivered_to(&r.message_id)
            .await?
            .iter()
            .any(|d| scope.destinations.contains(d)))
    }

    fn writers_for(&self, r: &ReferralRecord) -> Vec<Arc<Destination>> {
        let named = self
            .routes
            .as_ref()
            .and_then(|routes| routes.writers_for(r.practice.as_deref(), &r.programme));
        match named {
            Some(names) => names
                .iter()
                .filter_map(|n| self.wiring_writers.get(n).cloned())
                .collect(),
            None => self.default_writers.clone(),
        }
    }
}

impl Front for MessageBackFront {
    fn flow(&self) -> Flow {
        Flow::MessageBack
    }

    fn plan<'a>(
        &'a self,
        inbound: &'a Inbound,
    ) -> BoxFuture<'a, std::result::Result<Plan, Refusal>> {
        Box::pin(self.plan_event(inbound))
    }
}

/// A platform event mapped to the canonical event (not yet checked).
pub fn map_event(
    mapping: &crate::mapping::Mapping,
    input: &Value,
    constants: &BTreeMap<String, String>,
) -> Result<MessageBack> {
    let doc = mapping
        .apply(input, constants)
        .map_err(crate::deliver::combine)?
        .document;
    serde_path_to_error::deserialize(&doc).map_err(not_an_event)
}

/// Why a document is not a canonical event: the field, and serde's reason without the
/// value it met.
fn not_an_event<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> GatewayError {
    GatewayError::invalid(
        Stage::Map,
        e.path().to_string(),
        format!(
            "not a message-back event: {}",
            crate::error::serde_reason(&e.inner().to_string())
        ),
    )
}

/// A canonical event's bytes, as a door queued them.
fn read_canonical(bytes: &[u8]) -> Result<MessageBack> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(not_an_event)
}

/// Every check an event from platform `p` must pass before it is queued or planned:
/// bound to the programme the platform serves, the canonical checks, the patient
/// items the platform must name, and no reference it could not be linked by.
pub fn check_event_for(p: &Platform, ev: &mut MessageBack) -> Result<()> {
    bind_programme(ev, p.programme.as_deref())?;
    ev.check()?;
    let patient = ev.referral.patient.clone().unwrap_or_default();
    for item in &p.require_patient {
        let present = match item {
            PatientItem::Number => patient.nhs_number.is_some() || patient.chi_number.is_some(),
            PatientItem::DateOfBirth => patient.date_of_birth.is_some(),
            PatientItem::FamilyName => patient.family_name.is_some(),
        };
        if !present {
            return Err(GatewayError::invalid(
                Stage::Policy,
                item.field(),
                format!(
                    "platform {:?} must name the patient in every event ({}; require_patient), and \
                     this event does not: nothing was written",
                    p.name,
                    required_items(&p.require_patient)
                ),
            ));
        }
    }
    if ev.referral.platform_reference.is_some() && p.references.is_empty() {
        return Err(GatewayError::invalid(
            Stage::Policy,
            "referral.platform_reference",
            format!(
                "platform {:?} has no destination that records the references it returns, so no \
                 referral can be found by one: name the referral by message_id, or by programme \
                 and the patient's number",
                p.name
            ),
        ));
    }
    Ok(())
}

/// "the NHS or CHI number, the date of birth"
fn required_items(items: &[PatientItem]) -> String {
    items
        .iter()
        .map(|i| i.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The broker user that published a plain event: RabbitMQ's validated `user_id`, or on
/// a copy the gateway republished (a retry, a parked message replayed) the user it
/// sealed then. An unsealed or mis-sealed header is not a user.
fn verified_broker_user(inbound: &Inbound, sealer: &Sealer) -> Option<String> {
    if let Some(user) = &inbound.user_id {
        return Some(user.clone());
    }
    let user = inbound.headers.get(BROKER_USER_HEADER)?;
    let seal = inbound.headers.get(BROKER_USER_SEAL_HEADER)?;
    sealer
        .broker_user_holds(user, seal, &inbound.body)
        .then(|| user.clone())
}

fn not_sent_to(scope: &Scope<'_>) -> GatewayError {
    let mut names: Vec<&str> = scope.destinations.iter().map(String::as_str).collect();
    names.sort();
    GatewayError::invalid(
        Stage::Policy,
        "referral",
        format!(
            "{} asked about a referral the gateway did not send to it (it was not delivered to \
             any of its destinations: {}): nothing was written",
            scope.origin.describe(),
            names.join(", ")
        ),
    )
}

fn no_references(scope: &Scope<'_>) -> GatewayError {
    GatewayError::invalid(
        Stage::Policy,
        "referral.platform_reference",
        format!(
            "{} has no destination that records the references it returns: nothing was written",
            scope.origin.describe()
        ),
    )
}

/// A platform that serves one programme speaks for that programme only: its events
/// are bound to it, and one that names another is refused.
pub fn bind_programme(ev: &mut MessageBack, serves: Option<&str>) -> Result<()> {
    let Some(serves) = serves else {
        return Ok(());
    };
    match &ev.referral.programme {
        Some(named) if named != serves => Err(GatewayError::invalid(
            Stage::Policy,
            "referral.programme",
            format!("names programme {named:?}, but the platform serves {serves:?} only"),
        )),
        _ => {
            ev.referral.programme = Some(serves.to_string());
            Ok(())
        }
    }
}

/// An event that names a programme links only to that programme's referrals: a
/// mistyped reference, or another service's patient, is parked, never written to a
/// record the platform has no part in.
fn check_programme(ev: &MessageBack, r: &ReferralRecord) -> Result<()> {
    match &ev.referral.programme {
        Some(named) if *named != r.programme => Err(GatewayError::invalid(
            Stage::Policy,
            "referral.programme",
            format!(
                "names programme {named:?}, but the referral it links to is of programme {:?}: \
                 nothing was written; check the reference the platform holds",
                r.programme
            ),
        )),
        _ => Ok(()),
    }
}

/// Wrong-patient protection: the items the sender must name are there, the referral
/// holds a value to compare each with, and whatever the event says of the patient
/// agrees with the referral it is linked to. The error names the field, never a value.
fn check_patient(ev: &MessageBack, r: &ReferralRecord, scope: &Scope<'_>) -> Result<()> {
    let p = ev.referral.patient.clone().unwrap_or_default();
    let theirs = |k: &str| {
        r.record
            .pointer(&format!("/patient/{k}"))
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    let family = r
        .record
        .pointer("/patient/name/family")
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty());
    for item in scope.require {
        let held = match item {
            PatientItem::Number => theirs("nhs_number").or(theirs("chi_number")),
            PatientItem::DateOfBirth => theirs("date_of_birth"),
            PatientItem::FamilyName => family,
        };
        if held.is_none() {
            return Err(GatewayError::invalid(
                Stage::Policy,
                item.field(),
                format!(
                    "the referral holds no value for this item, which every event from {} must \
                     match (require_patient): it cannot be answered safely; nothing was written",
                    scope.origin.describe()
                ),
            ));
        }
    }
    let compact = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let same_name = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    let checks = [
        (
            "nhs_number",
            p.nhs_number.as_deref(),
            theirs("nhs_number"),
            true,
        ),
        (
            "chi_number",
            p.chi_number.as_deref(),
            theirs("chi_number"),
            true,
        ),
        (
            "date_of_birth",
            p.date_of_birth.as_deref(),
            theirs("date_of_birth"),
            true,
        ),
        ("family_name", p.family_name.as_deref(), family, false),
    ];
    for (field, said, known, exact) in checks {
        if let Some(said) = said {
            let agrees = match known {
                Some(k) if exact => compact(k) == compact(said),
                Some(k) => same_name(k, said),
                // The referral has none to compare: the event's cannot be trusted.
                None => false,
            };
            if !agrees {
                return Err(GatewayError::invalid(
                    Stage::Policy,
                    format!("referral.patient.{field}"),
                    "does not match the patient of the referral it names: a possible wrong patient, so \
                     nothing was written; check both records, then correct the event and send it again",
                ));
            }
        }
    }
    Ok(())
}

/// An event cannot have happened before its referral was made, nor (beyond `skew`) after
/// now: such a date is a platform's mistake, never written as if true.
fn check_when(
    ev: &MessageBack,
    r: &ReferralRecord,
    now: chrono::DateTime<chrono::Utc>,
    skew: std::time::Duration,
) -> Result<()> {
    let referred = r
        .record
        .get("referral_date")
        .and_then(Value::as_str)
        .and_then(crate::model::message_back::day_of)
        .or_else(|| chrono::DateTime::from_timestamp_millis(r.created_at).map(|t| t.date_naive()));
    let latest = now + chrono::Duration::from_std(skew).unwrap_or_default();
    for (field, d) in ev.dates() {
        let instant = match chrono::DateTime::parse_from_rfc3339(d) {
            Ok(t) => t.with_timezone(&chrono::Utc),
            // A date alone: its first moment.
            Err(_) => match crate::model::message_back::day_of(d) {
                Some(day) => day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
                None => continue,
            },
        };
        if instant > latest {
            return Err(GatewayError::invalid(
                Stage::Policy,
                field,
                format!(
                    "is in the future (more than {} ahead of the gateway's clock): nothing was \
                     written; correct the date at the platform, then send the event again",
                    humantime::format_duration(skew)
                ),
            ));
        }
        if let (Some(referred), Some(day)) = (referred, crate::model::message_back::day_of(d))
            && day < referred
        {
            return Err(GatewayError::invalid(
                Stage::Policy,
                field,
                "is before the referral was made: nothing was written; correct the date at the \
                 platform, then send the event again",
            ));
        }
    }
    Ok(())
}

/// The key an event is coded by in the code map's `platform` column.
fn code_key(ev: &MessageBack) -> (String, &'static str) {
    match ev.event_type {
        EventType::ReferralAccepted => ("referral.accepted".into(), "type"),
        EventType::ReferralDeclined => ("referral.declined".into(), "type"),
        EventType::Contact => (
            format!(
                "contact.{}",
                ev.contact.as_ref().map(|c| c.mode.as_str()).unwrap_or("")
            ),
            "contact.mode",
        ),
        EventType::Assessment => (
            format!(
                "score.{}",
                ev.assessment
                    .as_ref()
                    .map(|a| a.instrument.to_ascii_lowercase())
                    .unwrap_or_default()
            ),
            "assessment.instrument",
        ),
        EventType::OnwardReferral => match &ev.onward_referral {
            Some(o) if o.kind == "signposting" => ("signposting".into(), "onward_referral.kind"),
            Some(o) => (format!("onward.{}", o.category), "onward_referral.category"),
            None => (String::new(), "onward_referral"),
        },
        EventType::Closed => (
            format!(
                "closed.{}",
                ev.closed.as_ref().map(|c| c.reason.as_str()).unwrap_or("")
            ),
            "closed.reason",
        ),
    }
}

/// The coded entries for an event, from the code map: an unknown category is parked
/// naming the field, not written uncoded.
pub fn coded_entries(ev: &MessageBack, codes: &CodeMap) -> Result<Vec<CodedEntry>> {
    let (key, field) = code_key(ev);
    let row = codes.row("platform", &key).ok_or_else(|| {
        GatewayError::invalid(
            Stage::Map,
            field,
            format!(
                "{key:?} is not in code map {} (platform column): add it there, then replay",
                codes.name
            ),
        )
    })?;
    let code = |column: &str| {
        row.get(column).map(|c| Code {
            system: codes.systems.get(column).cloned().unwrap_or_default(),
            code: c.code.clone(),
            display: c.display.clone(),
        })
    };
    let mut entry = CodedEntry {
        snomed: code("snomed"),
        read2: code("read2"),
        local: code("local"),
        value: None,
        unit: None,
    };
    if entry.primary().is_none() {
        return Err(GatewayError::invalid(
            Stage::Map,
            field,
            format!(
                "{key:?} has neither a SNOMED CT nor a local code in code map {}",
                codes.name
            ),
        ));
    }
    let mut out = Vec::new();
    if let Some(a) = &ev.assessment {
        match (&a.items, a.score) {
            (Some(items), _) => {
                // ONS4: the instrument, then each item with its value.
                out.push(entry.clone());
                for (item, display, v) in [
                    (
                        "ons4-life-satisfaction",
                        "ONS4: life satisfaction (0-10)",
                        items.life_satisfaction,
                    ),
                    (
                        "ons4-worthwhile",
                        "ONS4: things done in life are worthwhile (0-10)",
                        items.worthwhile,
                    ),
                    (
                        "ons4-happy-yesterday",
                        "ONS4: happiness yesterday (0-10)",
                        items.happy_yesterday,
                    ),
                    (
                        "ons4-anxious-yesterday",
                        "ONS4: anxiety yesterday (0-10)",
                        items.anxious_yesterday,
                    ),
                ] {
                    out.push(CodedEntry {
                        local: Some(Code {
                            system: codes.systems.get("local").cloned().unwrap_or_default(),
                            code: item.into(),
                            display: display.into(),
                        }),
                        value: Some(v),
                        unit: Some("{score}".into()),
                        ..Default::default()
                    });
                }
                return Ok(out);
            }
            (None, Some(score)) => {
                entry.value = Some(score);
                entry.unit = Some("{score}".into());
            }
            (None, None) => {}
        }
    }
    out.push(entry);
    Ok(out)
}

/// A line for the referral's timeline, with no patient value ("SWEMWBS 21").
fn detail(ev: &MessageBack) -> Option<String> {
    match ev.event_type {
        EventType::Assessment => ev.assessment.as_ref().map(|a| match (a.score, &a.items) {
            (Some(s), _) => format!("{} {s}", a.instrument),
            _ => a.instrument.clone(),
        }),
        EventType::Contact => ev.contact.as_ref().map(|c| c.mode.clone()),
        EventType::OnwardReferral => ev
            .onward_referral
            .as_ref()
            .map(|o| format!("{}: {}", o.kind, o.category)),
        EventType::Closed => ev.closed.as_ref().map(|c| c.reason.clone()),
        _ => None,
    }
}

/// What record writers' mappings read (`canonical-event`): the event (without the
/// platform's free text unless consent allows narrative), its headline, coded entries,
/// the summary when allowed, and the referral (with what its consent withheld from this
/// event), patient and practice it belongs to.
pub(crate) fn canonical(
    ev: &MessageBack,
    r: &ReferralRecord,
    coded: Vec<CodedEntry>,
    narrative: bool,
) -> Value {
    let mut event = ev.clone();
    let withheld = if narrative {
        Vec::new()
    } else {
        withhold_free_text(&mut event)
    };
    let summary = event.summary.take();
    json!({
        "headline": event.headline(narrative),
        "event": event,
        "coded": coded,
        "summary": summary,
        "referral": {
            "message_id": r.message_id,
            "programme": r.programme,
            "referral_date": r.record.get("referral_date"),
            "withheld": withheld,
        },
        "patient": r.record.get("patient"),
        "practice": r.record.get("practice"),
    })
}

/// Removes every text the platform wrote (only texts the gateway owns travel under
/// codes-only or unrecorded consent: code map displays and the headline it builds);
/// answers with the canonical names of what was removed, for the readable document.
fn withhold_free_text(event: &mut MessageBack) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut gone = |field: &'static str, had: bool| {
        if had {
            out.push(field);
        }
    };
    gone("summary", event.summary.take().is_some());
    if let Some(d) = &mut event.declined_reason {
        gone("declined_reason.text", d.text.take().is_some());
        gone("declined_reason.display", d.display.take().is_some());
    }
    if let Some(c) = &mut event.closed {
        gone("closed.outcome", c.outcome.take().is_some());
    }
    if let Some(o) = &mut event.onward_referral {
        gone("onward_referral.to", !std::mem::take(&mut o.to).is_empty());
    }
    gone("practitioner", event.practitioner.take().is_some());
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{MessageBack, PatientItem, canonical};
    use crate::store::ReferralRecord;

    fn referral(consent: &str) -> ReferralRecord {
        ReferralRecord {
            message_id: "ref-1".into(),
            programme: "default".into(),
            practice: Some("GP5".into()),
            record: json!({"consent": consent, "patient": {"nhs_number": "9912003888"}}),
            created_at: 0,
        }
    }

    fn event(extra: Value) -> MessageBack {
        let mut e = json!({
            "event_id": "e1",
            "occurred_at": "2026-11-25T10:00:00Z",
            "referral": {"message_id": "ref-1"},
            "summary": "Talked about the allotment; feels less alone.",
        });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        serde_json::from_value(e).unwrap()
    }

    /// The patient is always named: an item the platform must give is checked against
    /// the referral, and a referral that holds no value for it cannot be answered.
    #[test]
    fn a_required_item_the_referral_does_not_hold_cannot_be_answered() {
        let origin = crate::seal::Origin::Platform("links".into());
        let require = [PatientItem::Number, PatientItem::DateOfBirth];
        let scope = super::Scope {
            origin: &origin,
            destinations: Default::default(),
            references: &[],
            require: &require,
        };
        let ev = event(json!({
            "type": "contact",
            "contact": {"mode": "telephone", "date": "2026-11-25"},
            "referral": {"message_id": "ref-1",
                         "patient": {"nhs_number": "9912003888", "date_of_birth": "1970-09-11"}},
        }));
        let mut r = referral("full");
        r.record["patient"]["date_of_birth"] = json!("1970-09-11");
        super::check_patient(&ev, &r, &scope).unwrap();
        let mut without = referral("full");
        without.record["patient"] = json!({"nhs_number": "9912003888"});
        let e = super::check_patient(&ev, &without, &scope).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("referral.patient.date_of_birth"));
        assert!(e.message.contains("holds no value"), "{}", e.message);
        assert!(!e.message.contains("1970"), "no value quoted");
    }

    /// Before its referral, or later than the allowed skew: refused naming the field.
    #[test]
    fn an_event_dated_before_its_referral_or_in_the_future_is_refused() {
        let mut r = referral("full");
        r.record["referral_date"] = json!("2026-11-20T10:15:00+00:00");
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let skew = std::time::Duration::from_secs(3600);
        let at = |occurred: &str, contact: &str| {
            event(json!({
                "type": "contact",
                "occurred_at": occurred,
                "contact": {"mode": "telephone", "date": contact},
            }))
        };
        let field = |e: &MessageBack| {
            super::check_when(e, &r, now, skew)
                .err()
                .and_then(|e| e.field)
        };
        assert_eq!(field(&at("2026-11-20", "2026-11-20")), None, "the same day");
        assert_eq!(
            field(&at("2026-12-04T12:59:00Z", "2026-12-04")),
            None,
            "within the skew"
        );
        assert_eq!(
            field(&at("2026-11-19", "2026-11-20")).as_deref(),
            Some("occurred_at")
        );
        assert_eq!(
            field(&at("2026-11-25", "2026-11-19")).as_deref(),
            Some("contact.date")
        );
        assert_eq!(
            field(&at("2026-12-04T13:01:00Z", "2026-12-04")).as_deref(),
            Some("occurred_at")
        );
        assert_eq!(
            field(&at("2026-11-25", "2026-12-05")).as_deref(),
            Some("contact.date")
        );
    }

    /// Free text travels only under full consent: the summary, a decline's own words and
    /// a closure's outcome are withheld from every writer's input otherwise, and the
    /// headline falls back to coded displays.
    #[test]
    fn free_text_is_withheld_unless_consent_is_full() {
        let declined = event(json!({
            "type": "referral-declined",
            "declined_reason": {"text": "Patient moving to Spain"},
        }));
        let closed = event(json!({
            "type": "closed",
            "closed": {"reason": "completed", "outcome": "Back at work, sleeping better"},
        }));
        for ev in [&declined, &closed] {
            let shown = canonical(ev, &referral("full"), vec![], true).to_string();
            let withheld = canonical(ev, &referral("limited"), vec![], false);
            assert!(shown.contains("allotment"), "{shown}");
            assert_eq!(withheld["summary"], Value::Null);
            let text = withheld.to_string();
            for words in ["allotment", "Spain", "sleeping"] {
                assert!(!text.contains(words), "{words} withheld: {text}");
            }
        }
        let shown = canonical(&declined, &referral("full"), vec![], true);
        assert!(shown["headline"].as_str().unwrap().contains("Spain"));
        let shown = canonical(&closed, &referral("full"), vec![], true).to_string();
        assert!(shown.contains("sleeping better"), "{shown}");
    }
}
