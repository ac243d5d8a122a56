//! Pseudonymous person ids: repeat referrals of one person linked across extracts,
//! never reversible without a key.
//!
//! An unkeyed hash of an NHS or CHI number is no protection: there are only about 10^9
//! valid ten-digit numbers, so anyone can hash them all and read the hash back. Both
//! steps here are therefore keyed HMAC-SHA256, each over a domain-separated message so
//! that neither value can be mistaken for, or replayed as, the other:
//!
//! ```text
//! PersonRef = hex HMAC-SHA256(link key,      "clw-gateway/person/v1\0" + kind + "\0" + digits)
//! pseudonym = "P-" + hex of the first 16 bytes of
//!             HMAC-SHA256(pseudonym key, "clw-gateway/pseudonym/v1\0" + PersonRef as hex)
//! ```
//!
//! `kind` is `nhs` or `chi`, so the same ten digits as an NHS number and as a CHI number
//! are two people. The [`PersonRef`] is what the gateway keeps in its dataset facts in
//! place of any identifier, under the deployment's link key. The pseudonym is what an
//! extract shows, under `dataset.pseudonym_key`: a second key, so that an extract's
//! reader who somehow obtained stored refs still cannot join them to an extract, and so
//! that the pseudonyms can be re-issued (a new key) without losing the links.
//!
//! Both formats are pinned by known-answer tests: changing either breaks the linkage of
//! every extract made before, so a change needs a new version tag, never an edit.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{GatewayError, Result};
use crate::model::identifiers::IdentifierKind;
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The configuration key of the pseudonymisation key.
pub const PSEUDONYM_KEY: &str = "dataset.pseudonym_key";

/// The shortest key accepted: 32 bytes, the HMAC-SHA256 output size.
pub const MIN_KEY_BYTES: usize = 32;

const PERSON_DOMAIN: &[u8] = b"clw-gateway/person/v1\0";
const PSEUDONYM_DOMAIN: &[u8] = b"clw-gateway/pseudonym/v1\0";
/// The pseudonym keeps 128 of the HMAC's 256 bits: no collision is to be expected
/// below about 10^19 people.
const PSEUDONYM_BYTES: usize = 16;

/// HMAC-SHA256 of the parts, one after the other.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length (a long one is hashed first): this cannot fail.
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Refuses a key shorter than [`MIN_KEY_BYTES`], naming its configuration key and never
/// quoting it.
pub fn check_key(config_key: &str, key: &[u8]) -> Result<()> {
    if key.len() < MIN_KEY_BYTES {
        return Err(GatewayError::config(
            config_key,
            format!(
                "is {} bytes; a pseudonymisation key must be at least {MIN_KEY_BYTES} \
                 (e.g. the 64 characters of `openssl rand -hex 32`), or its numbers \
                 could be recovered by trying every key",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// A person's keyed reference: 64 lower-case hex characters, the same for every referral
/// of one person under one link key. Its `Debug` says nothing of the value, to keep it
/// out of logs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonRef(String);

impl PersonRef {
    /// The reference of an NHS or CHI `number` under `link_key`. The number is
    /// normalised as `crate::model::identifiers` does (white space between the digit
    /// groups removed), so "943 476 5919" and "9434765919" are one person. It should
    /// have been validated first; anything else still gives a reference, never an error,
    /// and never the number back. The link key should be checked with [`check_key`] when
    /// it is configured.
    pub fn of(link_key: &[u8], kind: IdentifierKind, number: &str) -> PersonRef {
        let tag: &[u8] = match kind {
            IdentifierKind::Nhs => b"nhs",
            IdentifierKind::Chi => b"chi",
        };
        let digits: String = number.chars().filter(|c| !c.is_whitespace()).collect();
        let mac = hmac(link_key, &[PERSON_DOMAIN, tag, b"\0", digits.as_bytes()]);
        PersonRef(hex::encode(mac))
    }

    /// A reference read back from the store: 64 lower-case hex characters, or None.
    pub fn from_hex(hex: &str) -> Option<PersonRef> {
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| PersonRef(hex.to_string()))
    }

    /// The 64 hex characters, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonRef(..)")
    }
}

/// Turns person references into the pseudonyms an extract shows. Its `Debug` never
/// prints the key.
#[derive(Clone)]
pub struct Pseudonymiser {
    key: Box<[u8]>,
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymiser(..)")
    }
}

impl Pseudonymiser {
    /// A pseudonymiser with `key`, refused when shorter than [`MIN_KEY_BYTES`] (the
    /// error names [`PSEUDONYM_KEY`]).
    pub fn new(key: &[u8]) -> Result<Pseudonymiser> {
        check_key(PSEUDONYM_KEY, key)?;
        Ok(Pseudonymiser { key: key.into() })
    }

    /// A pseudonymiser with the configured secret's text as its key.
    pub fn from_secret(secret: &Secret) -> Result<Pseudonymiser> {
        let key = secret
            .read()
            .map_err(|why| GatewayError::config(PSEUDONYM_KEY, why))?;
        Pseudonymiser::new(key.as_bytes())
    }

    /// `P-` and 32 hex characters: stable for one reference under one key, unrelated
    /// under another.
    pub fn pseudonym(&self, r: &PersonRef) -> String {
        let mac = hmac(&self.key, &[PSEUDONYM_DOMAIN, r.as_str().as_bytes()]);
        format!("P-{}", hex::encode(&mac[..PSEUDONYM_BYTES]))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const LINK: &[u8] = b"link-key-for-tests-0123456789abcdef";
    const KEY: &[u8] = b"pseudonym-key-for-tests-0123456789";

    fn nhs(number: &str) -> PersonRef {
        PersonRef::of(LINK, IdentifierKind::Nhs, number)
    }

    /// Known answers computed independently (Python's `hmac` module): the formats are
    /// pinned, as every earlier extract's links depend on them.
    #[test]
    fn known_answers() {
        let r = nhs("9434765919");
        assert_eq!(
            r.as_str(),
            "120427f79ef4efa4803366774016da97865da8c9001bc787ee9b4ba97d91d2da"
        );
        let p = Pseudonymiser::new(KEY).unwrap();
        assert_eq!(p.pseudonym(&r), "P-da1e06bf17f9f92e1aaa111a89f06b64");
    }

    #[test]
    fn stable_across_calls_and_spacing() {
        let p = Pseudonymiser::new(KEY).unwrap();
        let a = nhs("9434765919");
        assert_eq!(a, nhs("9434765919"));
        assert_eq!(a, nhs("943 476 5919"));
        assert_eq!(p.pseudonym(&a), p.pseudonym(&nhs("943 476 5919")));
        let again = Pseudonymiser::new(KEY).unwrap();
        assert_eq!(p.pseudonym(&a), again.pseudonym(&a));
        assert_ne!(a, nhs("9912003888"));
    }

    #[test]
    fn nhs_and_chi_with_the_same_digits_are_two_people() {
        let as_nhs = PersonRef::of(LINK, IdentifierKind::Nhs, "0402568877");
        let as_chi = PersonRef::of(LINK, IdentifierKind::Chi, "0402568877");
        assert_ne!(as_nhs, as_chi);
        let p = Pseudonymiser::new(KEY).unwrap();
        assert_ne!(p.pseudonym(&as_nhs), p.pseudonym(&as_chi));
    }

    #[test]
    fn another_key_gives_other_values() {
        let other_link = b"another-link-key-for-tests-0123456789";
        assert_ne!(
            nhs("9434765919"),
            PersonRef::of(other_link, IdentifierKind::Nhs, "9434765919")
        );
        let r = nhs("9434765919");
        let a = Pseudonymiser::new(KEY).unwrap();
        let b = Pseudonymiser::new(b"another-pseudonym-key-0123456789ab").unwrap();
        assert_ne!(a.pseudonym(&r), b.pseudonym(&r));
    }

    #[test]
    fn a_short_key_is_refused_by_name() {
        let e = Pseudonymiser::new(&KEY[..31]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(PSEUDONYM_KEY));
        assert!(e.message.contains("at least 32"), "{}", e.message);
        assert!(!e.message.contains("pseudonym-key"), "quotes the key");
        assert!(Pseudonymiser::new(&KEY[..32]).is_ok());
        assert!(Pseudonymiser::new(b"").is_err());
    }

    #[test]
    fn from_a_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, [KEY, b"\n".as_slice()].concat()).unwrap();
        let secret = Secret {
            env: None,
            file: Some(file.clone()),
        };
        let p = Pseudonymiser::from_secret(&secret).unwrap();
        let r = nhs("9434765919");
        assert_eq!(
            p.pseudonym(&r),
            Pseudonymiser::new(KEY).unwrap().pseudonym(&r)
        );
        std::fs::write(&file, "short\n").unwrap();
        let e = Pseudonymiser::from_secret(&secret).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(PSEUDONYM_KEY));
        let e = Pseudonymiser::from_secret(&Secret::from_env("CLW_TEST_NO_SUCH_VAR_19"));
        assert_eq!(e.unwrap_err().field.as_deref(), Some(PSEUDONYM_KEY));
    }

    #[test]
    fn shapes_and_no_digits_or_key_shown() {
        let p = Pseudonymiser::new(KEY).unwrap();
        for number in ["9434765919", "9912003888", "0402568877"] {
            let r = nhs(number);
            let pseudonym = p.pseudonym(&r);
            assert_eq!(r.as_str().len(), 64);
            assert!(pseudonym.starts_with("P-") && pseudonym.len() == 34);
            assert!(pseudonym[2..].bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(!r.as_str().contains(number), "{number} in its ref");
            assert!(!pseudonym.contains(number), "{number} in its pseudonym");
            assert!(!format!("{r:?}").contains(number));
        }
        assert_eq!(format!("{p:?}"), "Pseudonymiser(..)");
        assert_eq!(format!("{:?}", nhs("9434765919")), "PersonRef(..)");
    }

    #[test]
    fn a_stored_ref_reads_back() {
        let r = nhs("9434765919");
        assert_eq!(PersonRef::from_hex(r.as_str()), Some(r.clone()));
        assert_eq!(PersonRef::from_hex(&r.as_str()[..63]), None);
        assert_eq!(PersonRef::from_hex(&r.as_str().to_uppercase()), None);
        assert_eq!(
            PersonRef::from_hex(&format!("{}g", &r.as_str()[..63])),
            None
        );
        assert_eq!(PersonRef::from_hex("9434765919"), None);
    }

    /// Twenty thousand numbers of each kind: no two refs and no two pseudonyms alike,
    /// and an NHS number never meets a CHI number.
    #[test]
    fn no_collisions_over_many_numbers() {
        let p = Pseudonymiser::new(KEY).unwrap();
        let mut refs = HashSet::new();
        let mut pseudonyms = HashSet::new();
        for i in 0..20_000u64 {
            // Spread over the number space, not just its first digits.
            let number = format!("{:010}", (i * 2_654_435_761) % 10_000_000_000);
            for kind in [IdentifierKind::Nhs, IdentifierKind::Chi] {
                let r = PersonRef::of(LINK, kind, &number);
                assert!(pseudonyms.insert(p.pseudonym(&r)), "pseudonym collision");
                assert!(refs.insert(r), "ref collision");
            }
        }
        assert_eq!(refs.len(), 40_000);
        assert_eq!(pseudonyms.len(), 40_000);
    }
}
