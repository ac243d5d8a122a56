//! CloudEvents 1.0 binary mode: attributes travel as `ce-*` headers, the payload is the body.

use sha2::{Digest, Sha256};

use crate::error::{GatewayError, Result, Stage};
pub use crate::model::Headers;

pub const REFERRAL_EVENT_TYPE: &str = "uk.nhs.socialprescribing.referral.v1";
/// How many times the gateway has tried this message before (set when it goes to a retry tier).
pub const ATTEMPT_HEADER: &str = "x-clw-attempt";

/// Attempts already made, as far as the headers say: for recording a message whose
/// envelope may itself be what is wrong (an unreadable count reads as none).
pub fn attempts_before(headers: &crate::model::Headers) -> u32 {
    headers
        .get(ATTEMPT_HEADER)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

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
        let id = get("ce-id");
        if let Some(id) = &id {
            check_message_id(id, "ce-id")?;
        }
        Ok(Envelope {
            id,
            source: get("ce-source"),
            event_type,
            time: get("ce-time"),
            subject: get("ce-subject"),
            content_type,
            previous_attempts,
        })
    }
}

/// Longest message id accepted: ids are keys in the store, file names and headers.
pub const MAX_ID_LEN: usize = 128;

/// Checks a message id (a `ce-id`, a Bundle or MessageHeader id): 1 to 128 of
/// `A-Z a-z 0-9 . _ - : @ / + =`, so it is safe as a store key, a header value, a
/// file name part and in a FHIR search. The error names `field`, never the value.
pub fn check_message_id(id: &str, field: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-:@/+=".contains(c);
    let why = if id.is_empty() {
        "is empty"
    } else if id.len() > MAX_ID_LEN {
        "is longer than 128 characters"
    } else if !id.chars().all(ok_char) {
        "holds a character other than A-Z a-z 0-9 . _ - : @ / + ="
    } else {
        return Ok(());
    };
    Err(GatewayError::invalid(
        Stage::Envelope,
        field,
        format!("message id {why}"),
    ))
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
    fn message_ids_are_checked_naming_the_header() {
        for ok in [
            "abc",
            "urn:uuid:0d0b5e8c-6a38-4d4b-9f55-2b6b1f6f0a06",
            "sha256:00ff",
            "a.b_c-d@e/f+g=h",
        ] {
            assert!(check_message_id(ok, "ce-id").is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            "has space",
            "semi;colon",
            "new\nline",
            "é",
            long.as_str(),
        ] {
            let e = check_message_id(bad, "ce-id").unwrap_err();
            assert_eq!(e.field.as_deref(), Some("ce-id"));
            assert!(
                bad.is_empty() || !e.reason().contains(bad),
                "{}",
                e.reason()
            );
        }
        let e = Envelope::from_headers(&h(&[("ce-id", "bad id")]), None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ce-id"));
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
