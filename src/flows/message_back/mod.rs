//! The message-back front: a platform's event (JSON, any of the doors) through that
//! platform's mapping to the canonical event, checked; bound to the platform that sent
//! it (a door's seal, the broker user that published it, or the spool's platform);
//! linked to the referral it is about — only among the referrals delivered to that
//! platform's destinations (the gateway's message id, the platform's own reference, or
//! the patient's number with the programme) — with the patient checked; coded from the
//! code map; and sent to the practice's record writers. An event that cannot be linked
//! with certainty is parked with a reason and nothing is written — never a best guess.

mod checks;
mod coding;
mod config;
mod decode;
mod link;
mod projection;
mod wired;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::json;

use super::{Decoded, Front, Plan, Planned, Refusal};
use crate::deliver::Destination;
use crate::engine::Inbound;
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::CodeMap;
use crate::model::Flow;
use crate::model::message_back::MessageBack;
use crate::secret::seal::{BROKER_USER_HEADER, BROKER_USER_SEAL_HEADER, Opened, Origin, Sealer};
use crate::store::{ReferralRecord, Store, Write};

pub use checks::{bind_programme, check_event_for, to_canonical};
use checks::{check_patient, check_programme, check_when};
pub use coding::coded_entries;
use coding::detail;
pub use config::{MessageBackConfig, PatientItem, PlatformConfig};
pub use decode::map_event;
pub(crate) use projection::canonical;
pub use wired::{EVENT_CODES, MessageBackWiring, Platform};

/// The closing reason of a referral the gateway closed because the service did not
/// respond (`[lifecycle]` `close_after`): only the gateway's own events carry it.
pub const NOT_RESPONDED: &str = "not-responded";

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

/// What the poller of `destination` is named by in the store and in queued event ids.
pub fn poll_source(destination: &str) -> String {
    format!("fhir-tasks-{destination}")
}

/// What an origin's event ids are prefixed with.
pub fn id_prefix(origin: &Origin) -> String {
    match origin {
        Origin::Platform(p) => p.clone(),
        Origin::Poller(d) => poll_source(d),
        Origin::Gateway => "gateway".into(),
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
    routes: Option<crate::policy::routing::Routes>,
    store: Store,
    max_bytes: usize,
    sealer: Sealer,
    plain: PlainEvents,
    future_skew: std::time::Duration,
    metrics: crate::engine::metrics::Metrics,
    rules: crate::intake::Rules,
    dataset: Option<Arc<crate::dataset::Recorder>>,
}

/// What may answer which referrals: the referral destinations spoken for, where the
/// sender's references are recorded, and what its events must say of the patient.
struct Scope<'a> {
    origin: &'a Origin,
    destinations: BTreeSet<String>,
    references: &'a [(String, &'static str)],
    require: &'a [PatientItem],
}

/// An event decoded, checked and bound to the origin it came from.
pub struct Taken {
    pub origin: Origin,
    pub event: MessageBack,
    /// SHA-256 of the bytes it came in.
    digest: String,
    /// The fields forbidden control characters were left out of.
    sanitised: Vec<String>,
}

/// The message back's row in the flow table.
pub const ROW: super::FlowRow = super::FlowRow {
    flow: Flow::MessageBack,
    queue_unit: "event",
    spool_folder: "events",
    input: crate::mapping::spec::InputKind::Json,
    event_type: EVENT_TYPE,
    front: |p| {
        let mb = p.message_back?;
        Some(Box::new(
            MessageBackFront::new(
                mb,
                p.store.clone(),
                p.max_bytes,
                p.sealer.clone(),
                p.plain_events.clone(),
                p.metrics.clone(),
                p.rules.clone(),
            )
            .with_dataset(p.dataset.clone()),
        ))
    },
};

impl MessageBackFront {
    pub fn new(
        w: &MessageBackWiring,
        store: Store,
        max_bytes: usize,
        sealer: Sealer,
        plain: PlainEvents,
        metrics: crate::engine::metrics::Metrics,
        rules: crate::intake::Rules,
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
            metrics,
            rules,
            dataset: None,
        }
    }

    /// Records the dataset's facts of every event it plans.
    pub fn with_dataset(mut self, dataset: Option<Arc<crate::dataset::Recorder>>) -> Self {
        self.dataset = dataset;
        self
    }

    /// Linked, checked against the referral, coded and addressed: the half that reads
    /// the store, run under the serial key.
    async fn plan_event(&self, d: Decoded<Taken>) -> std::result::Result<Planned, Refusal> {
        let Decoded {
            message_id,
            attempts,
            content:
                Taken {
                    origin,
                    event: ev,
                    digest,
                    sanitised,
                },
            ..
        } = d;
        let refuse = |id: &str, error: GatewayError| Refusal {
            message_id: id.to_string(),
            attempts,
            error,
        };
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
        if ev
            .closed
            .as_ref()
            .is_some_and(|c| c.reason == NOT_RESPONDED)
            && origin != Origin::Gateway
        {
            return Err(refuse(
                &message_id,
                GatewayError::invalid(
                    Stage::Policy,
                    "closed.reason",
                    "\"not-responded\" is the gateway's own closing reason (the service did not \
                     answer the referral in time): a platform that closes a referral says why in \
                     its own words; nothing was written",
                ),
            ));
        }
        let ended = referral.ended.as_ref().map(|e| e.state);
        // After consent is withdrawn, nothing the link worker wrote travels.
        let narrative = referral.consent() == Some("full")
            && ended != Some(crate::model::lifecycle::Lifecycle::Withdrawn);
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
        let state = match ended {
            Some(e) => e.as_str(),
            None => crate::store::derived_state(&events),
        };
        let mut canonical = canonical(&ev, &referral, coded, narrative);
        canonical["referral"]["state"] = json!(state);
        // An event after the referral ended is written as what it is, never as if open.
        if let Some(after) = ended
            .filter(|_| origin != Origin::Gateway)
            .map(|e| match e {
                crate::model::lifecycle::Lifecycle::Cancelled => "the referral was cancelled",
                crate::model::lifecycle::Lifecycle::Withdrawn => "the patient withdrew consent",
                _ => "the gateway closed the referral as not responded",
            })
        {
            let headline = canonical["headline"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            canonical["headline"] = json!(format!("{headline} (after {after})"));
        }
        let earlier = projection::earlier_scores(&ev, &message_id, &events);
        if !earlier.is_empty() {
            canonical["referral"]["earlier_scores"] = json!(earlier);
        }
        let mut remember = vec![Write::ReferralEvent {
            event_message_id: message_id.clone(),
            referral_id: referral.message_id.clone(),
            kind: ev.event_type.as_str().into(),
            occurred_at: ev.occurred_at.clone(),
            detail: detail(&ev),
        }];
        if let Some(d) = &self.dataset {
            remember.push(d.event(&message_id, &referral.message_id, &ev));
        }
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
        remember.extend(super::filtered(
            Flow::MessageBack,
            &message_id,
            &canonical,
            &targets,
        ));
        Ok(Planned::Send(Plan {
            message_id,
            attempts,
            digest,
            canonical,
            targets,
            remember,
            operation: None,
        }))
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
            // The gateway's own decision names the referral it sent.
            Origin::Gateway => Scope {
                origin,
                destinations: BTreeSet::new(),
                references: &[],
                require: &[],
            },
            // The gateway's own record at the destination names the referral.
            Origin::Poller(d) => Scope {
                origin,
                destinations: BTreeSet::from([d.clone()]),
                references: &[],
                require: &[],
            },
        })
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
    type Decoded = Taken;

    fn flow(&self) -> Flow {
        Flow::MessageBack
    }

    fn decode(&self, inbound: &Inbound) -> std::result::Result<Decoded<Taken>, Refusal> {
        self.decode_event(inbound)
    }

    fn plan<'a>(
        &'a self,
        decoded: Decoded<Taken>,
    ) -> BoxFuture<'a, std::result::Result<Planned, Refusal>> {
        Box::pin(self.plan_event(decoded))
    }
}

#[cfg(test)]
mod golden_records;
#[cfg(test)]
mod properties;

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
            ended: None,
            consent_now: None,
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
        let origin = crate::secret::seal::Origin::Platform("links".into());
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
