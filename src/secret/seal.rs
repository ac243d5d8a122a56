//! Who an event came from, in a form only the gateway can make.
//!
//! A door that verified a platform (the signed HTTP door, a spreadsheet upload, a
//! poller of the gateway's own destination) queues the event inside a *sealed
//! envelope*: the origin and the event, with an HMAC-SHA256 over both made with the
//! gateway's own key (kept in the store, so every instance sharing it shares the key).
//! The message-back front trusts the seal, never a header: a publisher on the AMQP
//! events door can set any header it likes, but cannot make a seal.
//!
//! ```text
//! {"clw_sealed": {"origin": "platform:leeds-links", "seal": "<hex>"}, "event": {...}}
//! seal = HMAC-SHA256(key, "clw-origin-v1\n" + origin + "\n" + the event's bytes as queued)
//! ```
//!
//! The broker's own authentication is carried the same way: a message published by a
//! platform's broker user carries RabbitMQ's validated `user_id`, which the gateway
//! cannot republish (the broker refuses a `user_id` that is not the publisher's own),
//! so a retried or parked copy carries the user in [`BROKER_USER_HEADER`] sealed by
//! [`BROKER_USER_SEAL_HEADER`] instead.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::error::{GatewayError, Result, Stage};

/// The header a gateway-republished copy carries the broker-validated publisher in.
pub const BROKER_USER_HEADER: &str = "x-clw-broker-user";
/// The seal over [`BROKER_USER_HEADER`] and the body.
pub const BROKER_USER_SEAL_HEADER: &str = "x-clw-broker-user-seal";

/// The envelope's top-level key: a body that has it is judged as sealed.
const SEALED_KEY: &str = "clw_sealed";

type HmacSha256 = Hmac<Sha256>;

/// Where a queued event comes from, as the gateway verified it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// A platform of `[message_back.platforms]`, verified by its door.
    Platform(String),
    /// A poller of the named destination, reading the gateway's own record there.
    Poller(String),
    /// The gateway itself: its own clock's decisions about a referral (a reminder, a
    /// close as not responded).
    Gateway,
}

impl Origin {
    /// Its name in an envelope and a queue's headers ("platform:leeds-links").
    pub fn tag(&self) -> String {
        match self {
            Origin::Platform(p) => format!("platform:{p}"),
            Origin::Poller(d) => format!("poller:{d}"),
            Origin::Gateway => "gateway:lifecycle".into(),
        }
    }

    fn from_tag(tag: &str) -> Option<Origin> {
        match tag.split_once(':')? {
            ("platform", p) if !p.is_empty() => Some(Origin::Platform(p.to_string())),
            ("poller", d) if !d.is_empty() => Some(Origin::Poller(d.to_string())),
            ("gateway", "lifecycle") => Some(Origin::Gateway),
            _ => None,
        }
    }

    /// How it is named in reasons and logs ("platform leeds-links").
    pub fn describe(&self) -> String {
        match self {
            Origin::Platform(p) => format!("platform {p:?}"),
            Origin::Poller(d) => format!("the poller of destination {d:?}"),
            Origin::Gateway => "the gateway's own referral lifecycle".into(),
        }
    }
}

/// The gateway's sealing key.
#[derive(Clone)]
pub struct Sealer {
    key: std::sync::Arc<[u8]>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Seal {
    origin: String,
    seal: String,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "clw_sealed")]
    sealed: Seal,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// What a body turned out to be.
#[derive(Debug)]
pub enum Opened<'a> {
    /// A sealed envelope whose seal holds: the origin and the event's bytes.
    Sealed { origin: Origin, event: &'a [u8] },
    /// Not an envelope: a body as some publisher sent it.
    Plain,
}

impl Sealer {
    pub fn new(key: &[u8]) -> Sealer {
        Sealer { key: key.into() }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                m.update(b"\n");
            }
            m.update(p);
        }
        m
    }

    /// The sealed envelope of `event` (its JSON bytes) from `origin`.
    pub fn seal(&self, origin: &Origin, event: &[u8]) -> Vec<u8> {
        let tag = origin.tag();
        let mac = self.mac(&[b"clw-origin-v1", tag.as_bytes(), event]);
        let head = serde_json::to_string(&Seal {
            origin: tag,
            seal: hex::encode(mac.finalize().into_bytes()),
        })
        .unwrap_or_default();
        let mut out = Vec::with_capacity(event.len() + head.len() + 32);
        out.extend_from_slice(format!("{{\"{SEALED_KEY}\":{head},\"event\":").as_bytes());
        out.extend_from_slice(event);
        out.push(b'}');
        out
    }

    /// Opens a body: a sealed envelope must hold its seal (a broken or forged one is an
    /// error, never read as plain); anything else is plain.
    pub fn open<'a>(&self, body: &'a [u8]) -> Result<Opened<'a>> {
        if !looks_sealed(body) {
            return Ok(Opened::Plain);
        }
        let forged = |why: &str| {
            GatewayError::invalid(
                Stage::Envelope,
                SEALED_KEY,
                format!(
                    "the event claims to come from one of the gateway's doors, but {why}: it was \
                     not made by this gateway (a forgery, or a copy altered after it was queued)"
                ),
            )
        };
        let env: Envelope<'a> =
            serde_json::from_slice(body).map_err(|_| forged("its envelope is malformed"))?;
        let origin = Origin::from_tag(&env.sealed.origin)
            .ok_or_else(|| forged("its origin is not one the gateway writes"))?;
        let seal = hex::decode(&env.sealed.seal).map_err(|_| forged("its seal is not hex"))?;
        let event = env.event.get().as_bytes();
        self.mac(&[b"clw-origin-v1", env.sealed.origin.as_bytes(), event])
            .verify_slice(&seal)
            .map_err(|_| forged("its seal does not match"))?;
        Ok(Opened::Sealed { origin, event })
    }

    /// A keyed digest of one value (hex, 128 bits): what the store keeps to tell whether
    /// a field changed between versions without keeping the field.
    pub fn digest(&self, label: &str, value: &[u8]) -> String {
        let full = self
            .mac(&[b"clw-digest-v1", label.as_bytes(), value])
            .finalize()
            .into_bytes();
        hex::encode(&full[..16])
    }

    /// The seal a gateway-republished copy carries for the broker user that published
    /// `body`.
    pub fn seal_broker_user(&self, user: &str, body: &[u8]) -> String {
        hex::encode(
            self.mac(&[b"clw-broker-user-v1", user.as_bytes(), body])
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `seal` is this gateway's seal of `user` over `body`.
    pub fn broker_user_holds(&self, user: &str, seal: &str, body: &[u8]) -> bool {
        hex::decode(seal).is_ok_and(|s| {
            self.mac(&[b"clw-broker-user-v1", user.as_bytes(), body])
                .verify_slice(&s)
                .is_ok()
        })
    }
}

/// A body whose first key is the envelope's (JSON whitespace allowed before it).
fn looks_sealed(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii_start();
    trimmed
        .strip_prefix(b"{")
        .map(|rest| rest.trim_ascii_start())
        .is_some_and(|rest| rest.starts_with(format!("\"{SEALED_KEY}\"").as_bytes()))
}

/// A new random key (32 bytes from the OS, via two v4 UUIDs' randomness).
pub fn new_key() -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(b"a key of the gateway's own")
    }

    #[test]
    fn a_sealed_event_opens_with_its_origin_and_exact_bytes() {
        let event = br#"{"event_id":"e1", "type":"contact"}"#;
        for origin in [
            Origin::Platform("leeds-links".into()),
            Origin::Poller("fhir-platform".into()),
        ] {
            let body = sealer().seal(&origin, event);
            match sealer().open(&body).unwrap() {
                Opened::Sealed {
                    origin: o,
                    event: e,
                } => {
                    assert_eq!(o, origin);
                    assert_eq!(e, event);
                }
                Opened::Plain => panic!("sealed read as plain"),
            }
        }
    }

    #[test]
    fn a_forged_or_altered_envelope_is_refused_never_read_as_plain() {
        let body = sealer().seal(&Origin::Platform("a".into()), br#"{"event_id":"e1"}"#);
        let text = String::from_utf8(body.clone()).unwrap();
        let other_platform = text.replace("platform:a", "platform:b");
        let other_event = text.replace("e1", "e2");
        let other_key = Sealer::new(b"someone else's key")
            .seal(&Origin::Platform("a".into()), br#"{"event_id":"e1"}"#);
        for bad in [
            other_platform.into_bytes(),
            other_event.into_bytes(),
            other_key,
            br#" { "clw_sealed": {"origin": "platform:a", "seal": "00"}, "event": {}}"#.to_vec(),
            br#"{"clw_sealed": 1}"#.to_vec(),
        ] {
            let e = sealer().open(&bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("clw_sealed"));
        }
        assert!(matches!(
            sealer().open(br#"{"event_id": "e1"}"#).unwrap(),
            Opened::Plain
        ));
    }

    #[test]
    fn the_broker_user_seal_binds_user_and_body() {
        let s = sealer();
        let seal = s.seal_broker_user("leeds", b"body");
        assert!(s.broker_user_holds("leeds", &seal, b"body"));
        assert!(!s.broker_user_holds("york", &seal, b"body"));
        assert!(!s.broker_user_holds("leeds", &seal, b"other"));
        assert!(!s.broker_user_holds("leeds", "zz", b"body"));
    }
}
