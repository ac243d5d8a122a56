//! The pure half of the front: an event's bytes to the checked canonical event, bound to
//! the origin that sent it (a door's seal, the broker user that published it, or the
//! spool's platform), and the serial key it is planned under. Nothing here reads the
//! store.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::intake::envelope::{attempts_before, body_digest, check_message_id, check_size};

impl MessageBackFront {
    /// The message's id and attempts, and the event in it, checked: the pure half.
    pub(super) fn decode_event(
        &self,
        inbound: &Inbound,
    ) -> std::result::Result<Decoded<Taken>, Refusal> {
        let digest = body_digest(&inbound.body);
        let previous = attempts_before(&inbound.headers);
        let attempts = previous + 1;
        let refuse = |id: &str, error: GatewayError| Refusal {
            message_id: id.to_string(),
            attempts,
            error,
        };
        let (origin, mut ev) =
            crate::flows::decode_heavy(inbound.body.len(), || self.take(inbound))
                .map_err(|e| refuse(&digest, e))?;
        let message_id = queued_id(&id_prefix(&origin), &ev.event_id);
        let sanitised = ev.strip_forbidden();
        check_message_id(&message_id, "event_id").map_err(|e| refuse(&digest, e))?;
        Ok(Decoded {
            serial: Some(serial_key(&origin, &ev)),
            message_id,
            attempts,
            content: Taken {
                origin,
                event: ev,
                digest,
                sanitised,
            },
        })
    }

    /// Size, envelope, the origin (a door's seal, else the transport's binding), the
    /// platform's mapping for plain events, the canonical checks.
    pub fn take(&self, inbound: &Inbound) -> Result<(Origin, MessageBack)> {
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
            // The door that sealed it made it canonical and checked it: read, not
            // mapped again. Its platform must still be configured.
            Opened::Sealed { origin, event } => {
                let ev: MessageBack = read_canonical(event)?;
                match &origin {
                    Origin::Platform(name) => {
                        self.platform(name)?;
                    }
                    Origin::Poller(_) | Origin::Gateway => ev.check_with(self.rules.chi_check)?,
                }
                Ok((origin, ev))
            }
            Opened::Plain => {
                let p = self.plain_platform(inbound)?;
                let body: Value = crate::intake::json::parse_bounded(&inbound.body)?;
                let ev = to_canonical(p, &p.mapping, &body, &BTreeMap::new(), &self.metrics)?;
                Ok((Origin::Platform(p.name.clone()), ev))
            }
        }
    }

    pub(super) fn platform(&self, name: &str) -> Result<&Platform> {
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
    pub(super) fn plain_platform(&self, inbound: &Inbound) -> Result<&Platform> {
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
}

/// The key events about one referral are planned under, read from the event alone: how
/// it names the referral — the gateway's message id, else the platform's reference,
/// else the patient with the programme. A platform names its referrals one way, so its
/// events about one referral share a key; an event naming the same referral another
/// way (a poller's and a platform's, say) may be planned beside it, as two instances'
/// events may (hazard H-12).
pub(super) fn serial_key(origin: &Origin, ev: &MessageBack) -> String {
    use crate::model::identifiers::{IdentifierKind, patient_key};
    let r = &ev.referral;
    if let Some(id) = &r.message_id {
        return format!("events-of/referral/{id}");
    }
    if let Some(reference) = &r.platform_reference {
        return format!("events-of/{}/reference/{reference}", origin.tag());
    }
    // A digest of the number, never the number: keys may be seen in a debugger or log.
    let number = r.patient.as_ref().and_then(|p| {
        p.nhs_number
            .as_deref()
            .map(|n| patient_key(IdentifierKind::Nhs, n))
            .or_else(|| {
                p.chi_number
                    .as_deref()
                    .map(|n| patient_key(IdentifierKind::Chi, n))
            })
    });
    format!(
        "events-of/{}/patient/{}/{}",
        origin.tag(),
        r.programme.as_deref().unwrap_or("-"),
        number.as_deref().unwrap_or("-")
    )
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
pub(super) fn not_an_event<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> GatewayError {
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
pub(super) fn read_canonical(bytes: &[u8]) -> Result<MessageBack> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(not_an_event)
}

/// The broker user that published a plain event: RabbitMQ's validated `user_id`, or on
/// a copy the gateway republished (a retry, a parked message replayed) the user it
/// sealed then. An unsealed or mis-sealed header is not a user.
pub(super) fn verified_broker_user(inbound: &Inbound, sealer: &Sealer) -> Option<String> {
    if let Some(user) = &inbound.user_id {
        return Some(user.clone());
    }
    let user = inbound.headers.get(BROKER_USER_HEADER)?;
    let seal = inbound.headers.get(BROKER_USER_SEAL_HEADER)?;
    sealer
        .broker_user_holds(user, seal, &inbound.body)
        .then(|| user.clone())
}
