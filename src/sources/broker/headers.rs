//! AMQP header tables ⇄ the gateway's string header map.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::intake::Headers;
use crate::intake::envelope::ATTEMPT_HEADER;

/// Headers the gateway writes on retry and parking; stripped when a message is replayed.
pub const STAGE: &str = "x-clw-stage";
pub const ERROR_CLASS: &str = "x-clw-error-class";
pub const ERROR: &str = "x-clw-error";
pub const FIELD: &str = "x-clw-field";
pub const ATTEMPTS: &str = "x-clw-attempts";
pub const MAPPING_VERSION: &str = "x-clw-mapping-version";
pub const PARKED_AT: &str = "x-clw-parked-at";
pub const PARKED_BY: &str = "x-clw-parked-by";
pub const ROUTING_KEY: &str = "x-clw-routing-key";
/// The id the gateway knows a parked message by (for an event from a platform's own
/// door, `<platform>:<event id>`, not its `ce-id`).
pub const MESSAGE_ID: &str = "x-clw-message-id";

/// Text and integer headers as strings; other AMQP types are not used by CloudEvents.
pub fn from_table(table: Option<&FieldTable>) -> Headers {
    let mut out = Headers::new();
    let Some(t) = table else { return out };
    for (k, v) in t.inner() {
        let s = match v {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.as_str().to_string(),
            AMQPValue::ShortShortInt(n) => n.to_string(),
            AMQPValue::ShortShortUInt(n) => n.to_string(),
            AMQPValue::ShortInt(n) => n.to_string(),
            AMQPValue::ShortUInt(n) => n.to_string(),
            AMQPValue::LongInt(n) => n.to_string(),
            AMQPValue::LongUInt(n) => n.to_string(),
            AMQPValue::LongLongInt(n) => n.to_string(),
            AMQPValue::Boolean(b) => b.to_string(),
            _ => continue,
        };
        out.insert(k.as_str().to_string(), s);
    }
    out
}

/// Copies `original` (keeping RabbitMQ's own x-death history) and sets `extra` as text.
pub fn with(original: Option<&FieldTable>, extra: &[(&str, String)]) -> FieldTable {
    let mut t = original.cloned().unwrap_or_default();
    for (k, v) in extra {
        t.insert(
            ShortString::from(*k),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    t
}

/// A copy of `original` without the gateway's retry and parking headers, nor RabbitMQ's
/// dead-letter history: what a replayed message starts again with.
pub fn cleaned(original: Option<&FieldTable>) -> FieldTable {
    let mut t = FieldTable::default();
    if let Some(o) = original {
        for (k, v) in o.inner() {
            if !is_history(k.as_str()) {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    t
}

/// A header of a message's retry and parking history (the gateway's or RabbitMQ's),
/// dropped when it is replayed.
pub fn is_history(name: &str) -> bool {
    [
        STAGE,
        ERROR_CLASS,
        ERROR,
        FIELD,
        ATTEMPTS,
        MAPPING_VERSION,
        PARKED_AT,
        PARKED_BY,
        ROUTING_KEY,
        MESSAGE_ID,
        ATTEMPT_HEADER,
    ]
    .contains(&name)
        || name == "x-death"
        || name.starts_with("x-first-death")
        || name.starts_with("x-last-death")
        || name == "x-delivery-count"
}

/// String headers as an AMQP table.
pub fn to_table(headers: &Headers) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in headers {
        t.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    t
}
