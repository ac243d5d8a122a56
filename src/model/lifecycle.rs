//! A referral's identity across the messages about it, and what one of them does to it
//! (ARCHITECTURE.md "A referral's life"). The message id keeps exactly-once; the
//! practice's ServiceRequest identifier, with the organisation that made it, ties a
//! referral's versions together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::state::{Change, Lifecycle};

/// The practice's identifier of a referral: ServiceRequest.identifier (system and value),
/// with the organisation that made it (the referrer's, else the GP practice's code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub organisation: String,
    pub system: String,
    pub value: String,
}

impl Identity {
    /// The key its versions are stored and ordered under.
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.organisation, self.system, self.value)
    }
}

/// What a message about an existing referral asks of each destination that has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub change: Change,
    /// The referral it is about: its first message id (the id platforms were given).
    pub referral_id: String,
    /// The practice's identifier, when the referral has one.
    pub identity: Option<Identity>,
    /// The canonical fields changed (an amendment): names only.
    pub changed: Vec<String>,
    /// Why, in words a receiver can show (no patient data).
    pub reason: String,
    /// When the gateway took it (RFC 3339).
    pub at: String,
}

impl Operation {
    /// The notice a destination receives for a change that carries no referral
    /// (cancel, withdraw, remind, close): who it is about and why, nothing of the patient.
    pub fn notice(&self) -> Value {
        serde_json::json!({ "lifecycle": self.lifecycle() })
    }

    /// The `lifecycle` object: a notice's whole body, and beside an update's referral.
    pub fn lifecycle(&self) -> Value {
        let mut lifecycle = serde_json::json!({
            "event": self.change.event_name(),
            "referral_id": self.referral_id,
            "reason": self.reason,
            "at": self.at,
        });
        if let Some(i) = &self.identity {
            lifecycle["service_request_identifier"] = serde_json::json!({"system": i.system, "value": i.value, "assigner": i.organisation});
        }
        if !self.changed.is_empty() {
            lifecycle["changed"] = serde_json::json!(self.changed);
        }
        lifecycle
    }
}

/// The leaves of a canonical referral (dotted names, array items by position) with a
/// digest of each value made by `digest`: what a later version is compared with, so the
/// store keeps which fields changed without keeping what they held.
pub fn fingerprint(
    canonical: &Value,
    digest: impl Fn(&str, &str) -> String,
) -> BTreeMap<String, String> {
    fn walk(v: &Value, name: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let n = if name.is_empty() {
                        k.clone()
                    } else {
                        format!("{name}.{k}")
                    };
                    walk(child, &n, out);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    walk(child, &format!("{name}[{i}]"), out);
                }
            }
            Value::Null => {}
            leaf => out.push((name.to_string(), leaf.to_string())),
        }
    }
    let mut leaves = Vec::new();
    walk(canonical, "", &mut leaves);
    leaves
        .into_iter()
        .map(|(name, value)| {
            let d = digest(&name, &value);
            (name, d)
        })
        .collect()
}

/// The fields (dotted names without positions, each once) whose digests differ.
pub fn changed_fields(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| strip_positions(k))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn strip_positions(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut depth = 0;
    for c in name.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn plain(name: &str, value: &str) -> String {
        format!("{name}={value}")
    }

    #[test]
    fn changed_fields_name_what_differs_and_nothing_else() {
        let a = json!({"person": {"telecom": [{"value": "0113 1"}], "name": "A"}, "x": 1});
        let b = json!({"person": {"telecom": [{"value": "0113 2"}], "name": "A"}, "y": 2});
        let (fa, fb) = (fingerprint(&a, plain), fingerprint(&b, plain));
        assert_eq!(
            changed_fields(&fa, &fb),
            vec!["person.telecom.value", "x", "y"]
        );
        assert!(changed_fields(&fa, &fa).is_empty());
    }

    #[test]
    fn a_notice_names_the_referral_and_nothing_of_the_patient() {
        let op = Operation {
            change: Change::Cancel,
            referral_id: "ref-1".into(),
            identity: Some(Identity {
                organisation: "B86003".into(),
                system: "https://practice.example/referrals".into(),
                value: "R-1".into(),
            }),
            changed: Vec::new(),
            reason: "cancelled by the practice".into(),
            at: "2026-12-07T10:00:00Z".into(),
        };
        let n = op.notice();
        assert_eq!(n["lifecycle"]["event"], "cancelled");
        assert_eq!(n["lifecycle"]["service_request_identifier"]["value"], "R-1");
        assert_eq!(n.as_object().unwrap().len(), 1);
    }
}
