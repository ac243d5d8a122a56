//! The referral front: envelope and size, FHIR Bundle → canonical referral, routing by
//! practice, consent. What comes out is the released referral as canonical JSON and the
//! destinations its programme uses.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::lifecycle::{Drafted, Instruction, Taken, Versions};
use super::{Decoded, Front, Plan, Planned, Refusal};
use crate::deliver::Destination;
use crate::engine::Inbound;
use crate::error::{GatewayError, Stage};
use crate::intake::envelope::{attempts_before, body_digest, check_message_id, check_size};
use crate::intake::{Envelope, decode_referral_with};
use crate::model::{ConsentState, Flow};
use crate::policy::prsb::{MissingMandatory, note_missing};
use crate::policy::routing::Routes;
use crate::policy::{Release, apply_consent, read_consent};
use crate::store::{AuditEntry, Write};

/// What the referral flow needs beyond its destinations.
pub struct ReferralWiring {
    /// Practice → programme → destinations; None sends every referral to `destinations`.
    pub routes: Option<Routes>,
    /// The destinations referrals can go to (every one a route names, or the fixed list).
    pub destinations: Vec<Arc<Destination>>,
    pub consent_not_recorded: ConsentState,
    pub consent_covers: Vec<crate::policy::CodeRef>,
    /// Read v2 reasons for referral → SNOMED CT of the same code set (`read2-reasons`),
    /// when the mappings folder has it.
    pub read2: Option<Arc<crate::mapping::CodeMap>>,
    pub missing_mandatory: MissingMandatory,
}

pub struct ReferralFront {
    routes: Option<Routes>,
    destinations: Vec<Arc<Destination>>,
    consent_not_recorded: ConsentState,
    consent_covers: Vec<crate::policy::CodeRef>,
    read2: Option<Arc<crate::mapping::CodeMap>>,
    max_bytes: usize,
    rules: crate::intake::Rules,
    missing_mandatory: MissingMandatory,
    metrics: crate::engine::metrics::Metrics,
    dataset: Option<Arc<crate::dataset::Recorder>>,
    /// A referral's later versions and the gateway's instructions; None (benches, unit
    /// tests) takes every message as a new referral.
    versions: Option<Versions>,
}

/// The referral flow's row in the flow table.
pub const ROW: super::FlowRow = super::FlowRow {
    flow: Flow::Referral,
    queue_unit: "referral",
    spool_folder: "referrals",
    input: crate::mapping::spec::InputKind::Fhir,
    event_type: crate::intake::envelope::REFERRAL_EVENT_TYPE,
    front: |p| {
        Some(Box::new(
            ReferralFront::new(p.referrals, p.max_bytes, p.rules.clone(), p.metrics.clone())
                .with_dataset(p.dataset.clone())
                .with_versions(Versions {
                    store: p.store.clone(),
                    sealer: p.sealer.clone(),
                    destinations: p.referrals.destinations.clone(),
                    metrics: p.metrics.clone(),
                }),
        ))
    },
};

impl ReferralFront {
    pub fn new(
        wiring: &ReferralWiring,
        max_bytes: usize,
        rules: crate::intake::Rules,
        metrics: crate::engine::metrics::Metrics,
    ) -> ReferralFront {
        ReferralFront {
            routes: wiring.routes.clone(),
            destinations: wiring.destinations.clone(),
            consent_not_recorded: wiring.consent_not_recorded,
            consent_covers: wiring.consent_covers.clone(),
            read2: wiring.read2.clone(),
            max_bytes,
            rules,
            missing_mandatory: wiring.missing_mandatory,
            metrics,
            dataset: None,
            versions: None,
        }
    }

    /// Ties later messages to the referral their ServiceRequest identifier names, and
    /// takes the gateway's sealed instructions.
    pub fn with_versions(mut self, versions: Versions) -> Self {
        self.versions = Some(versions);
        self
    }

    /// Records the dataset's facts of every referral it takes (sent or withheld).
    pub fn with_dataset(mut self, dataset: Option<Arc<crate::dataset::Recorder>>) -> Self {
        self.dataset = dataset;
        self
    }

    /// Everything the referral flow decides is decided from the message alone: no store
    /// read, so the whole plan is made in `decode`.
    fn plan_now(&self, inbound: &Inbound) -> Result<Decoded<Taken>, Refusal> {
        let digest = body_digest(&inbound.body);
        let previous = attempts_before(&inbound.headers);
        // A bad ce-id is refused; its record goes under the digest, not the bad value.
        let fallback = inbound
            .headers
            .get("ce-id")
            .filter(|id| check_message_id(id, "ce-id").is_ok())
            .cloned()
            .unwrap_or_else(|| digest.clone());
        let refuse = |message_id: &str, attempts: u32, error: GatewayError| Refusal {
            message_id: message_id.to_string(),
            attempts,
            error,
        };
        if let Some(v) = &self.versions {
            match v.sealer.open(&inbound.body) {
                Ok(crate::secret::seal::Opened::Plain) => {}
                Ok(crate::secret::seal::Opened::Sealed {
                    origin: crate::secret::seal::Origin::Gateway,
                    event,
                }) => {
                    let i: Instruction = serde_json::from_slice(event).map_err(|e| {
                        refuse(
                            &fallback,
                            previous + 1,
                            GatewayError::invalid(
                                Stage::Envelope,
                                "lifecycle",
                                format!("the gateway's instruction cannot be read: {e}"),
                            ),
                        )
                    })?;
                    return Ok(Decoded {
                        message_id: i.id.clone(),
                        attempts: previous + 1,
                        serial: Some(i.referral_id.clone()),
                        content: Taken::Instruction(i),
                    });
                }
                Ok(crate::secret::seal::Opened::Sealed { origin, .. }) => {
                    return Err(refuse(
                        &fallback,
                        previous + 1,
                        GatewayError::invalid(
                            Stage::Envelope,
                            "clw_sealed",
                            format!(
                                "sealed by {}, which queues events, never referrals",
                                origin.describe()
                            ),
                        ),
                    ));
                }
                Err(e) => return Err(refuse(&fallback, previous + 1, e)),
            }
        }
        let (env, decoded) = check_size(inbound.body.len(), self.max_bytes)
            .and_then(|()| {
                Envelope::from_headers(&inbound.headers, inbound.content_type.as_deref())
            })
            .and_then(|env| Ok((env, decode_referral_with(&inbound.body, &self.rules)?)))
            .map_err(|e| refuse(&fallback, previous + 1, e))?;
        let (message_id, field) = match (env.id, decoded.message_header_id, decoded.bundle_id) {
            (Some(id), _, _) => (id, "ce-id"),
            (None, Some(id), _) => (id, "MessageHeader.id"),
            (None, None, Some(id)) => (id, "Bundle.id"),
            (None, None, None) => (digest.clone(), "body"),
        };
        check_message_id(&message_id, field).map_err(|e| refuse(&digest, previous + 1, e))?;
        let attempts = env.previous_attempts + 1;
        let identity = decoded.identity.clone().filter(|_| self.versions.is_some());
        let status = decoded.referral.referral_details.status.clone();
        let cancels = matches!(status.as_str(), "revoked" | "entered-in-error").then_some(status);
        if let Some(status) = &cancels
            && identity.is_none()
        {
            return Err(refuse(&message_id, attempts, not_a_new_referral(status)));
        }

        let codes = decoded
            .referral
            .gp_practice
            .as_ref()
            .map(|p| p.practice_codes())
            .unwrap_or_default();
        // The practice is known by the code its programme was chosen by (the routes
        // name one), else by the first it has.
        let (practice, programme, targets): (Option<String>, String, Vec<Arc<Destination>>) =
            match &self.routes {
                None => (
                    codes.first().map(|(_, c)| c.to_string()),
                    DEFAULT_PROGRAMME.into(),
                    self.destinations.clone(),
                ),
                Some(r) => {
                    let (code, programme, names) = r
                        .route_codes(&codes)
                        .map_err(|e| refuse(&message_id, attempts, e))?;
                    (
                        Some(code.to_string()),
                        programme.to_string(),
                        self.destinations
                            .iter()
                            .filter(|d| names.contains(&d.name))
                            .cloned()
                            .collect(),
                    )
                }
            };
        let mut referral = decoded.referral;
        let coded = match &self.read2 {
            Some(map) => crate::policy::read2::code_reasons(
                &mut referral.referral_details.reasons_for_referral,
                map,
            ),
            None => Vec::new(),
        };
        let consent_note = read_consent(&mut referral.consent, &self.consent_covers);
        let missing = note_missing(&mut referral);
        if !missing.is_empty() {
            self.count_missing(practice.as_deref(), &missing, attempts);
            // A cancellation is never held back for what it lacks.
            if self.missing_mandatory == MissingMandatory::Park && cancels.is_none() {
                return Err(refuse(&message_id, attempts, parked_for(&missing)));
            }
        }
        let mut remember = vec![remembered(&message_id, &programme, practice, &referral)];
        if !missing.is_empty() {
            remember.push(Write::Audit(AuditEntry::note(
                crate::engine::AuditAction::Incomplete,
                Flow::Referral,
                &message_id,
                missing.iter().map(|m| m.to_string()).collect(),
                "mandatory items of the PRSB Social Prescribing standard not in the referral; \
                 sent without them (referrals.missing_mandatory = \"record\")"
                    .into(),
            )));
        }
        if !coded.is_empty() {
            remember.push(Write::Audit(AuditEntry::note(
                crate::engine::AuditAction::Coded,
                Flow::Referral,
                &message_id,
                vec!["referral_details.reasons_for_referral".into()],
                coded.join("; "),
            )));
        }
        if let Some(note) = consent_note {
            remember.push(Write::Audit(AuditEntry::note(
                crate::engine::AuditAction::Consent,
                Flow::Referral,
                &message_id,
                Vec::new(),
                note,
            )));
        }
        let shared = match referral.consent.state {
            ConsentState::NotRecorded => self.consent_not_recorded,
            recorded => recorded,
        };
        let facts: Vec<Write> = self
            .dataset
            .iter()
            .map(|d| d.referral(&message_id, &programme, &referral, shared))
            .collect();
        remember.extend(facts.iter().cloned());
        let fingerprint = match (&self.versions, &identity) {
            (Some(v), Some(_)) => serde_json::to_value(&referral)
                .map(|c| v.fingerprint(&c))
                .unwrap_or_default(),
            _ => Default::default(),
        };
        let draft = |planned: Planned, declined: bool| Decoded {
            message_id: message_id.clone(),
            attempts,
            serial: identity.as_ref().map(|i| i.key()),
            content: Taken::Bundle(Box::new(Drafted {
                planned,
                digest: digest.clone(),
                identity: identity.clone(),
                cancels: cancels.clone(),
                declined,
                consent: shared.as_str().to_string(),
                fingerprint: fingerprint.clone(),
            })),
        };
        let release = apply_consent(referral, self.consent_not_recorded);
        if let Release::Withheld(reason) = release {
            return Ok(draft(
                Planned::Withheld {
                    message_id: message_id.clone(),
                    attempts,
                    reason,
                    // Only the dataset's facts: a referral nothing was sent for keeps no
                    // patient record for the message back.
                    remember: facts,
                },
                true,
            ));
        }
        let canonical = serde_json::to_value(release.referral()).map_err(|e| {
            refuse(
                &message_id,
                attempts,
                GatewayError::permanent(Stage::Intake, format!("canonical referral: {e}")),
            )
        })?;
        remember.extend(super::filtered(
            Flow::Referral,
            &message_id,
            &canonical,
            &targets,
        ));
        Ok(draft(
            Planned::Send(Plan {
                message_id: message_id.clone(),
                attempts,
                digest: digest.clone(),
                canonical,
                targets,
                remember,
                operation: None,
            }),
            false,
        ))
    }
}

impl ReferralFront {
    /// Counts each missing item once per referral (its first attempt), by practice.
    fn count_missing(&self, practice: Option<&str>, missing: &[&str], attempts: u32) {
        if attempts > 1 {
            return;
        }
        for item in missing {
            self.metrics
                .missing_items
                .get_or_create(&crate::engine::metrics::MissingItemLabels {
                    practice: practice.unwrap_or("none").to_string(),
                    item: item.to_string(),
                })
                .inc();
        }
    }
}

/// Why a referral missing mandatory items is parked (under `missing_mandatory = "park"`),
/// naming the first as the field and all of them in the reason.
fn parked_for(missing: &[&str]) -> GatewayError {
    GatewayError::invalid(
        Stage::Policy,
        missing[0],
        format!(
            "mandatory items of the PRSB Social Prescribing standard are missing: {}; \
             referrals.missing_mandatory = \"park\" holds such a referral for a person: \
             complete it at the practice and send it again, or replay it",
            missing.join(", ")
        ),
    )
}

/// A ServiceRequest whose status cancels a referral (`revoked`, `entered-in-error`) is never
/// delivered as a new one. Without an identifier (ServiceRequest.identifier) nothing ties
/// it to the referral it cancels: it is held for a person, who cancels at the platform.
fn not_a_new_referral(status: &str) -> GatewayError {
    GatewayError::invalid(
        Stage::Policy,
        "referral_details.status",
        format!(
            "the ServiceRequest's status is {status}: this message cancels a referral rather \
             than making one, and it carries no ServiceRequest.identifier to tie it to the \
             referral it cancels, so nothing was sent; if the referral was sent earlier, cancel \
             it at the programme's platform, then dismiss this"
        ),
    )
}

/// Referrals sent without a routes file belong to this programme.
pub const DEFAULT_PROGRAMME: &str = "default";

/// What the message back needs of a referral: who the patient is (to check events and
/// address the record), their practice, the referrer, and what consent allowed.
fn remembered(
    message_id: &str,
    programme: &str,
    practice: Option<String>,
    r: &crate::model::Referral,
) -> crate::store::Write {
    use crate::model::identifiers::{IdentifierKind, patient_key};
    let p = &r.person_demographics;
    let key = match (&p.nhs_number, &p.chi_number) {
        (Some(n), _) => Some(patient_key(IdentifierKind::Nhs, n)),
        (None, Some(c)) => Some(patient_key(IdentifierKind::Chi, c)),
        (None, None) => None,
    };
    let record = serde_json::json!({
        "patient": p,
        "practice": r.gp_practice,
        "referrer": r.referrer_details,
        "consent": r.consent.state.as_str(),
        "referral_date": r.referral_details.referral_date,
    });
    crate::store::Write::Referral {
        message_id: message_id.to_string(),
        programme: programme.to_string(),
        practice,
        patient_key: key,
        record: record.to_string(),
    }
}

impl Front for ReferralFront {
    type Decoded = Taken;

    fn flow(&self) -> Flow {
        Flow::Referral
    }

    fn decode(&self, inbound: &Inbound) -> Result<Decoded<Taken>, Refusal> {
        super::decode_heavy(inbound.body.len(), || self.plan_now(inbound))
    }

    /// A new referral was planned in `decode`; what a later message is to its referral
    /// needs the store.
    fn plan<'a>(&'a self, decoded: Decoded<Taken>) -> BoxFuture<'a, Result<Planned, Refusal>> {
        Box::pin(async move {
            let Decoded {
                message_id,
                attempts,
                content,
                ..
            } = decoded;
            let refuse = |error: GatewayError| Refusal {
                message_id: message_id.clone(),
                attempts,
                error,
            };
            match (content, &self.versions) {
                (Taken::Bundle(d), Some(v)) => {
                    v.decide(*d, &message_id, attempts).await.map_err(refuse)
                }
                (Taken::Bundle(d), None) => Ok(d.planned),
                (Taken::Instruction(i), Some(v)) => {
                    v.instruction(i, attempts).await.map_err(refuse)
                }
                (Taken::Instruction(_), None) => Err(refuse(GatewayError::permanent(
                    Stage::Intake,
                    "an instruction reached a front that takes none",
                ))),
            }
        })
    }
}
