//! HMAC-SHA256 request signatures, the same scheme both ways: the webhook destination
//! signs what it sends, the event ingress verifies what platforms send.
//!
//! ```text
//! X-CLW-Timestamp: 1764672000                       (Unix seconds when signed)
//! X-CLW-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body bytes>")>
//! ```
//!
//! A receiver recomputes the HMAC over the timestamp header, a full stop and the body
//! exactly as received, compares it in constant time, and refuses a timestamp outside
//! its replay window. Several `v1=` values, comma-separated, may be sent while a secret
//! is being rotated; any one matching is enough.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "X-CLW-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-CLW-Signature";
/// Names which secret signed, so a receiver can hold two during a rotation.
pub const KEY_ID_HEADER: &str = "X-CLW-Key-Id";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `X-CLW-Signature` value for `body` signed at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Why a signed request was refused. Says nothing about the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    MissingTimestamp,
    BadTimestamp,
    /// Older or newer than the replay window allows.
    Stale,
    MissingSignature,
    Mismatch,
}

impl SignatureError {
    pub fn describe(self) -> &'static str {
        match self {
            SignatureError::MissingTimestamp => "X-CLW-Timestamp header is missing",
            SignatureError::BadTimestamp => "X-CLW-Timestamp is not Unix seconds",
            SignatureError::Stale => "X-CLW-Timestamp is outside the replay window",
            SignatureError::MissingSignature => "X-CLW-Signature header is missing",
            SignatureError::Mismatch => "X-CLW-Signature does not match the body",
        }
    }
}

/// A request's signature headers, read and checked before its body is: the timestamp
/// (within `window_secs` of `now`) and the MACs it offers (at most 8 `v1=` values).
#[derive(Debug, Clone, PartialEq)]
pub struct Offered {
    pub timestamp: i64,
    macs: Vec<Vec<u8>>,
}

/// Reads the signature headers; refuses a missing, malformed or stale one.
pub fn offered(
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: i64,
    window_secs: i64,
) -> Result<Offered, SignatureError> {
    let ts = timestamp.ok_or(SignatureError::MissingTimestamp)?.trim();
    if ts.is_empty() || ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadTimestamp);
    }
    let ts: i64 = ts.parse().map_err(|_| SignatureError::BadTimestamp)?;
    if (now - ts).abs() > window_secs {
        return Err(SignatureError::Stale);
    }
    let header = signature.ok_or(SignatureError::MissingSignature)?;
    let macs: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h.trim()).ok())
        .filter(|m| m.len() == 32)
        .take(8)
        .collect();
    if macs.is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    Ok(Offered {
        timestamp: ts,
        macs,
    })
}

impl Offered {
    /// The MAC that matched `body` under one of `secrets` (each computed once, compared
    /// with every value offered in constant time): what was verified, whatever the
    /// header's spelling (hex case, order, extra values).
    pub fn matching(&self, secrets: &[&[u8]], body: &[u8]) -> Result<Vec<u8>, SignatureError> {
        use subtle::ConstantTimeEq;
        for secret in secrets {
            let expected = mac(secret, self.timestamp, body).finalize().into_bytes();
            if let Some(m) = self
                .macs
                .iter()
                .find(|m| bool::from(expected.as_slice().ct_eq(m.as_slice())))
            {
                return Ok(m.clone());
            }
        }
        Err(SignatureError::Mismatch)
    }
}

/// Checks a request's signature headers against `secrets` (any may match), with the
/// timestamp within `window_secs` of `now` either way.
pub fn verify(
    secrets: &[&[u8]],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    window_secs: i64,
) -> Result<i64, SignatureError> {
    let o = offered(timestamp, signature, now, window_secs)?;
    o.matching(secrets, body)?;
    Ok(o.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let sig = sign(b"k1", 1000, b"{\"a\":1}");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
        let ok = verify(&[b"k1"], Some("1000"), Some(&sig), b"{\"a\":1}", 1010, 300);
        assert_eq!(ok, Ok(1000));
        let v = |secrets: &[&[u8]], ts: Option<&str>, s: Option<&str>, body: &[u8], now| {
            verify(secrets, ts, s, body, now, 300)
        };
        assert_eq!(
            v(&[b"k1"], Some("1000"), Some(&sig), b"{\"a\":2}", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(&[b"k2"], Some("1000"), Some(&sig), b"{\"a\":1}", 1000),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed too.
        assert_eq!(
            v(&[b"k1"], Some("1001"), Some(&sig), b"{\"a\":1}", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(&[b"k1"], Some("1000"), Some(&sig), b"{\"a\":1}", 1400),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v(&[b"k1"], Some("1000"), Some(&sig), b"{\"a\":1}", 600),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v(&[b"k1"], None, Some(&sig), b"", 1000),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            v(&[b"k1"], Some("-5"), Some(&sig), b"", 1000),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            v(&[b"k1"], Some("1000"), Some("sha1=00"), b"", 1000),
            Err(SignatureError::MissingSignature)
        );
        // Rotation: the new secret, or either of two signatures.
        let both = format!("v1=00ff,{sig}");
        assert_eq!(
            v(
                &[b"k0", b"k1"],
                Some("1000"),
                Some(&both),
                b"{\"a\":1}",
                1000
            ),
            Ok(1000)
        );
    }

    #[test]
    fn matches_an_independent_hmac() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Our framing is "<ts>." + body.
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"7.what do ya want for nothing?");
        assert_eq!(
            sign(b"Jefe", 7, b"what do ya want for nothing?"),
            format!("v1={}", hex::encode(m.finalize().into_bytes()))
        );
    }
}
