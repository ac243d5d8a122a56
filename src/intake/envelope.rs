//! CloudEvents 1.0 binary mode: attributes travel as `ce-*` headers, the payload is the body.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::{GatewayError, Result, Stage};

pub type Headers = BTreeMap<String, String>;

pub const REFERRAL_EVENT_TYPE: &str = "uk.nhs.socialprescribing.referral.v1";
/// How many times the gateway has tried this message before (set when it goes to a retry tier).
pub const ATTEMPT_HEADER: &str = "x-clw-attempt";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    pub id: Option<String>,
    pub source: Option<String>,
    pub event_type: Option<String>,
    pub time: Option<String>,
    pub subject: Option<String>,
    pub content_type: Option<String>,
    /// Attempts already made, from [`ATTEMPT_HEADER`]; 0 on first delivery.
    pub previous_attempts: u32,
}

impl Envelope {
    /// Reads and checks the envelope of an incoming referral event.
    pub fn from_headers(headers: &Headers, content_type: Option<&str>) -> Result<Envelope> {
        let get = |k: &str| headers.get(k).filter(|v| !v.is_empty()).cloned();
        if let Some(v) = get("ce-specversion")
            && v != "1.0"
        {
            return Err(GatewayError::invalid(
                Stage::Envelope,
                "ce-specversion",
                format!("unsupported CloudEvents version {v:?}; expected 1.0"),
            ));
        }
        let event_type = get("ce-type");
        if let Some(t) = &event_type
            && t != REFERRAL_EVENT_TYPE
        {
            return Err(GatewayError::invalid(
                Stage::Envelope,
                "ce-type",
                format!("{t:?} is not a referral event; expected {REFERRAL_EVENT_TYPE}"),
            ));
        }
        let content_type = content_type
            .map(str::to_string)
            .or_else(|| get("content-type"));
        if let Some(ct) = &content_type {
            let media = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if media != "application/fhir+json" && media != "application/json" {
                return Err(GatewayError::invalid(
                    Stage::Envelope,
                    "content-type",
                    format!("{media:?} is not supported; send application/fhir+json"),
                ));
            }
        }
        let previous_attempts = match get(ATTEMPT_HEADER) {
            Some(v) => v.parse().map_err(|_| {
                GatewayError::invalid(Stage::Envelope, ATTEMPT_HEADER, "must be a whole number")
            })?,
            None => 0,
        };
        Ok(Envelope {
            id: get("ce-id"),
            source: get("ce-source"),
            event_type,
            time: get("ce-time"),
            subject: get("ce-subject"),
            content_type,
            previous_attempts,
        })
    }
}

/// The idempotency key when nothing better is known: a digest of the source bytes
/// (never of re-serialised JSON).
pub fn body_digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Refuses a body over the configured limit before it is parsed.
pub fn check_size(len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(GatewayError::invalid(
            Stage::Envelope,
            "body",
            format!("message is {len} bytes, over the {max}-byte limit (intake.max_message_bytes)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_attributes() {
        let e = Envelope::from_headers(
            &h(&[
                ("ce-id", "abc"),
                ("ce-specversion", "1.0"),
                ("ce-type", REFERRAL_EVENT_TYPE),
                ("x-clw-attempt", "2"),
            ]),
            Some("application/fhir+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(e.id.as_deref(), Some("abc"));
        assert_eq!(e.previous_attempts, 2);
    }

    #[test]
    fn refuses_wrong_type_and_content_type() {
        let e = Envelope::from_headers(&h(&[("ce-type", "other")]), None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ce-type"));
        let e = Envelope::from_headers(&h(&[]), Some("text/xml")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("content-type"));
    }

    #[test]
    fn size_limit() {
        assert!(check_size(10, 10).is_ok());
        assert_eq!(
            check_size(11, 10).unwrap_err().field.as_deref(),
            Some("body")
        );
    }
}
