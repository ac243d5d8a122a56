//! The PRSB-shaped referral payload (schemas/prsb-referral.v1.schema.json) and the
//! deterministic keys that make redelivery harmless.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::model::Referral;

pub const PAYLOAD_SCHEMA_ID: &str = "https://clw-gateway.org/schemas/prsb-referral.v1.schema.json";

/// Namespace for idempotency keys (a fixed random UUID; changing it would re-key every delivery).
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6b1e_7f0c_3c55_4a8e_9a1d_2f4e_8c7b_5d10);

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    message_id: &'a str,
    standard: &'static str,
    referral: &'a Referral,
}

pub fn referral_payload(message_id: &str, referral: &Referral) -> Value {
    serde_json::to_value(Payload {
        schema: PAYLOAD_SCHEMA_ID,
        message_id,
        standard: "PRSB Referral to social prescribing services v1.1",
        referral,
    })
    .unwrap_or(Value::Null)
}

/// The same (flow, message, destination) always gets the same key, across instances
/// and restarts, so a receiver can drop a repeat.
pub fn idempotency_key(flow: &str, message_id: &str, destination: &str) -> String {
    Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("{flow}\n{message_id}\n{destination}").as_bytes(),
    )
    .to_string()
}

/// Dotted names of the fields present in a payload, for the audit log (names, never values).
pub fn field_names(payload: &Value) -> Vec<String> {
    fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(child, &name, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|child| walk(child, prefix, out)),
            Value::Null => {}
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    if let Some(r) = payload.get("referral") {
        walk(r, "", &mut out);
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_distinct() {
        assert_eq!(
            idempotency_key("referral", "m1", "a"),
            idempotency_key("referral", "m1", "a")
        );
        assert_ne!(
            idempotency_key("referral", "m1", "a"),
            idempotency_key("referral", "m1", "b")
        );
    }

    #[test]
    fn field_names_have_no_values() {
        let v = serde_json::json!({"referral": {"person_demographics": {"nhs_number": "9912003888",
            "name": {"given": ["A", "B"]}}}});
        assert_eq!(
            field_names(&v),
            vec![
                "person_demographics.name.given",
                "person_demographics.nhs_number"
            ]
        );
    }
}
