//! A referral's later messages (ARCHITECTURE.md "A referral's life"). A Bundle whose
//! ServiceRequest identifier the gateway has seen is a version of that referral: a
//! cancellation (status `revoked` / `entered-in-error`), a withdrawal (its Consent now
//! shares nothing), an amendment (fields changed) or an unchanged copy. The gateway's
//! own instructions — remind or close an unanswered referral — arrive sealed. Each
//! becomes an [`Operation`] for the destinations that have the referral; the platform
//! never gets a second referral for one ServiceRequest. Anything the gateway cannot
//! place with certainty is held for a person.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Plan, Planned};
use crate::deliver::Destination;
use crate::error::{GatewayError, Result, Stage};
use crate::model::Flow;
use crate::model::lifecycle::{Change, Identity, Lifecycle, Operation, changed_fields};
use crate::secret::seal::Sealer;
use crate::store::{AuditEntry, Store, Write};

/// A referral Bundle decoded, before the store says what it is to the referral.
pub struct Drafted {
    /// What it is as a new referral (sent, or withheld by consent).
    pub planned: Planned,
    pub digest: String,
    pub identity: Option<Identity>,
    /// The ServiceRequest's status when it cancels (`revoked`, `entered-in-error`).
    pub cancels: Option<String>,
    /// Its consent now shares nothing (denied, inactive, rejected).
    pub declined: bool,
    /// What its consent shares (full, codes-only, declined), configuration applied
    /// where it records none.
    pub consent: String,
    /// field -> keyed digest of the whole canonical referral.
    pub fingerprint: BTreeMap<String, String>,
}

/// What a referral message turned out to be, handed from `decode` to `plan`.
pub enum Taken {
    Bundle(Box<Drafted>),
    Instruction(Instruction),
}

/// The gateway's own instruction about an unanswered referral, queued sealed on the
/// referral transport by the unanswered-referral sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instruction {
    /// The message id it is queued and recorded under.
    pub id: String,
    /// `remind` or `close`.
    pub change: String,
    pub referral_id: String,
    /// Why, for the receiver (no patient data).
    pub reason: String,
}

/// The store half of the referral front: versions and instructions.
pub struct Versions {
    pub store: Store,
    pub sealer: Sealer,
    /// Every referral destination (a later version goes where the referral went).
    pub destinations: Vec<Arc<Destination>>,
    pub metrics: crate::engine::metrics::Metrics,
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Why a later version was held: the referral ended before it came.
fn after_end(state: Lifecycle, reason: &str) -> GatewayError {
    GatewayError::invalid(
        Stage::Policy,
        "referral_details.status",
        format!(
            "the referral this version belongs to has ended ({}: {reason}); nothing was sent. \
             A referral that is needed again is a new referral with a new ServiceRequest \
             identifier",
            state.as_str()
        ),
    )
}

impl Versions {
    /// The keyed fingerprint of a canonical referral.
    pub fn fingerprint(&self, canonical: &Value) -> BTreeMap<String, String> {
        crate::model::lifecycle::fingerprint(canonical, |name, value| {
            self.sealer.digest(name, value.as_bytes())
        })
    }

    /// What a Bundle is to the referral its identifier names.
    pub async fn decide(&self, d: Drafted, message_id: &str, attempts: u32) -> Result<Planned> {
        let Some(identity) = d.identity.clone() else {
            return Ok(d.planned);
        };
        let key = identity.key();
        // A copy or retry decides as the first attempt did.
        let (referral_id, change, changed) = match self.store.version(message_id).await? {
            Some(v) => (v.referral_id, v.change, v.fields),
            None => match self.store.latest_version(&key).await? {
                None => return self.new_referral(d, message_id, &key),
                Some(latest) => {
                    let ended = self.store.ended(&latest.referral_id).await?;
                    let change = match (&d.cancels, &ended) {
                        (Some(_), Some(e)) if e.state == Lifecycle::Cancelled => Change::Unchanged,
                        (_, Some(e)) => return Err(after_end(e.state, &e.reason)),
                        (Some(_), None) => Change::Cancel,
                        (None, None) if d.declined => Change::Withdraw,
                        (None, None) => Change::Amend,
                    };
                    let changed = changed_fields(&latest.fingerprint, &d.fingerprint);
                    let change = if change == Change::Amend && changed.is_empty() {
                        Change::Unchanged
                    } else {
                        change
                    };
                    (latest.referral_id, change, changed)
                }
            },
        };
        if change == Change::New {
            return self.new_referral(d, message_id, &key);
        }
        let reason = match change {
            Change::Cancel => format!(
                "the practice cancelled the referral (ServiceRequest status {})",
                d.cancels.as_deref().unwrap_or("revoked")
            ),
            Change::Withdraw => "the patient withdrew consent to share with the social \
                                 prescribing service: nothing more will be shared"
                .into(),
            Change::Amend => "the practice corrected the referral".into(),
            _ => "a copy of the referral's latest version: nothing changed".into(),
        };
        let op = Operation {
            change,
            referral_id: referral_id.clone(),
            identity: Some(identity),
            changed: if change == Change::Amend {
                changed
            } else {
                Vec::new()
            },
            reason,
            at: now_text(),
        };
        let canonical = match (&d.planned, change) {
            (Planned::Send(p), Change::Amend) => p.canonical.clone(),
            _ => op.notice(),
        };
        self.operation(OpPlan {
            message_id,
            attempts,
            digest: d.digest,
            canonical,
            op,
            identity_key: Some(key),
            fingerprint: d.fingerprint,
            consent: Some(d.consent),
        })
        .await
    }

    /// The first message about an identifier: the referral itself, its version recorded.
    fn new_referral(&self, d: Drafted, message_id: &str, key: &str) -> Result<Planned> {
        if let Some(status) = &d.cancels {
            return Err(GatewayError::invalid(
                Stage::Policy,
                "referral_details.status",
                format!(
                    "the ServiceRequest's status is {status}: it cancels a referral the gateway \
                     has no record of sending (no earlier message carried its identifier), so \
                     nothing was sent; if the referral went to the programme some other way, \
                     cancel it there, then dismiss this"
                ),
            ));
        }
        let mut planned = d.planned;
        if let Planned::Send(p) = &mut planned {
            p.remember.push(Write::Version {
                message_id: message_id.to_string(),
                referral_id: message_id.to_string(),
                identity: Some(key.to_string()),
                change: Change::New,
                fields: Vec::new(),
                fingerprint: serde_json::to_string(&d.fingerprint).unwrap_or_default(),
                consent: Some(d.consent),
            });
        }
        Ok(planned)
    }

    /// A sealed instruction from the sweep: remind or close an unanswered referral.
    pub async fn instruction(&self, i: Instruction, attempts: u32) -> Result<Planned> {
        let change = match Change::parse(&i.change) {
            Some(c @ (Change::Remind | Change::Close)) => c,
            _ => {
                return Err(GatewayError::invalid(
                    Stage::Envelope,
                    "lifecycle.change",
                    format!("{:?} is not an instruction the gateway makes", i.change),
                ));
            }
        };
        let op = Operation {
            change,
            referral_id: i.referral_id.clone(),
            identity: None,
            changed: Vec::new(),
            reason: i.reason.clone(),
            at: now_text(),
        };
        let canonical = op.notice();
        self.operation(OpPlan {
            message_id: &i.id,
            attempts,
            digest: crate::intake::envelope::body_digest(
                serde_json::to_string(&i).unwrap_or_default().as_bytes(),
            ),
            canonical,
            op,
            identity_key: None,
            fingerprint: BTreeMap::new(),
            consent: None,
        })
        .await
    }

    /// The plan of an operation on a referral: to each destination that has it (a
    /// reminder only to those that take one), recorded as a version, the referral ended
    /// when it ends it.
    async fn operation(&self, o: OpPlan<'_>) -> Result<Planned> {
        let OpPlan {
            message_id,
            attempts,
            digest,
            canonical,
            op,
            identity_key,
            fingerprint,
            consent,
        } = o;
        let referral = self.store.referral(&op.referral_id).await?.ok_or_else(|| {
            GatewayError::invalid(
                Stage::Policy,
                "referral",
                format!(
                    "no referral {} in the store (purged by retention?): nothing was sent",
                    op.referral_id
                ),
            )
        })?;
        // Recorded whatever is sent: the version it is (names and digests only).
        let version = Write::Version {
            message_id: message_id.to_string(),
            referral_id: op.referral_id.clone(),
            identity: identity_key,
            change: op.change,
            fields: op.changed.clone(),
            fingerprint: serde_json::to_string(&fingerprint).unwrap_or_default(),
            consent,
        };
        let withheld = |reason: String, remember: Vec<Write>| Planned::Withheld {
            message_id: message_id.to_string(),
            attempts,
            reason,
            remember,
        };
        if let Some(e) = &referral.ended
            && matches!(op.change, Change::Remind | Change::Close)
        {
            return Ok(withheld(
                format!(
                    "the referral has already ended ({}): nothing to do",
                    e.state
                ),
                vec![version],
            ));
        }
        let delivered = self.store.delivered_to(&op.referral_id).await?;
        if delivered.is_empty()
            && op.change != Change::Unchanged
            && self.store.referral_in_flight(&op.referral_id).await?
        {
            return Err(GatewayError::transient(
                Stage::Policy,
                "the referral's first version is still being sent: this later one waits and \
                 is tried again",
            )
            .at("referral"));
        }
        let has: Vec<Arc<Destination>> = self
            .destinations
            .iter()
            .filter(|d| delivered.contains(&d.name))
            .cloned()
            .collect();
        let targets: Vec<Arc<Destination>> = match op.change {
            // Nudges go where a kind can carry one; the rest are counted and shown.
            Change::Remind => {
                for d in has.iter().filter(|d| !d.takes(Change::Remind)) {
                    self.metrics
                        .reminders_shown
                        .get_or_create(&crate::engine::metrics::dest(
                            Flow::Referral.as_str(),
                            &d.name,
                        ))
                        .inc();
                }
                has.into_iter()
                    .filter(|d| d.takes(Change::Remind))
                    .collect()
            }
            Change::Unchanged => Vec::new(),
            _ => has,
        };
        if attempts == 1 {
            self.metrics
                .lifecycle_changes
                .get_or_create(&crate::engine::metrics::KindLabels {
                    kind: op.change.as_str().into(),
                })
                .inc();
        }
        let mut remember = vec![version];
        if let Some(state) = op.change.ends_in() {
            remember.push(Write::Ended {
                referral_id: op.referral_id.clone(),
                state,
                by_message: message_id.to_string(),
                reason: op.reason.clone(),
            });
        }
        remember.push(Write::Audit(AuditEntry::note(
            crate::engine::AuditAction::Lifecycle,
            Flow::Referral,
            message_id,
            op.changed.clone(),
            format!(
                "{} of referral {}: {}",
                op.change.event_name(),
                op.referral_id,
                op.reason
            ),
        )));
        if targets.is_empty() {
            let why = match op.change {
                Change::Unchanged => op.reason.clone(),
                Change::Remind => "no destination that has the referral takes a reminder: it \
                                   is shown in the console and counted"
                    .into(),
                _ => "no destination had the referral (its first version never reached one): \
                      recorded, nothing sent"
                    .into(),
            };
            return Ok(withheld(why, remember));
        }
        Ok(Planned::Send(Plan {
            message_id: message_id.to_string(),
            attempts,
            digest,
            canonical,
            targets,
            remember,
            operation: Some(Box::new(op)),
        }))
    }
}

/// What [`Versions::operation`] plans from.
struct OpPlan<'a> {
    message_id: &'a str,
    attempts: u32,
    digest: String,
    canonical: Value,
    op: Operation,
    identity_key: Option<String>,
    fingerprint: BTreeMap<String, String>,
    consent: Option<String>,
}
