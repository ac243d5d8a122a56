//! One error taxonomy for every stage (ARCHITECTURE.md "Errors").
//!
//! Messages never carry patient values: they name the field (a FHIR path or a
//! JSON pointer) and say what is wrong with it.

use std::fmt;
use std::time::Duration;

/// A serde error's reason without the input it quotes: serde says
/// `invalid type: string "9912003888", expected u32` — the value may be an NHS number —
/// and this says `invalid type: expected u32`. Unknown fields and variants are named by
/// their kind only (their names come from the input too).
pub fn serde_reason(reason: &str) -> String {
    let expected = |rest: &str| {
        rest.split_once(", expected ")
            .map(|(_, e)| format!("expected {e}"))
            .unwrap_or_default()
    };
    for (lead, says) in [
        ("invalid type: ", "invalid type"),
        ("invalid value: ", "invalid value"),
        ("invalid length ", "invalid length"),
        ("unknown variant ", "not one of the values allowed"),
        ("unknown field ", "a field this format does not have"),
    ] {
        if let Some(rest) = reason.strip_prefix(lead) {
            let e = expected(rest);
            return if e.is_empty() {
                says.to_string()
            } else {
                format!("{says}: {e}")
            };
        }
    }
    // `missing field `x`` names the format's own field; anything else is kept only if
    // it quotes nothing.
    if reason.starts_with("missing field ") || !(reason.contains('"') || reason.contains('`')) {
        reason.to_string()
    } else {
        "not of the form this field takes".to_string()
    }
}

/// What the pipeline does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Will never succeed as sent: park at once.
    Permanent,
    /// May succeed later: next retry tier, parked after the last.
    Transient,
    /// The effect may have happened (a request that may have arrived, at a destination
    /// that cannot tell a second copy from the first): parked for a person to check and
    /// `clw-gateway resolve`, never sent again on a guess.
    Unknown,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
            ErrorClass::Unknown => "unknown",
        }
    }
}

/// The pipeline stage that raised the error (also a parking-queue header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Envelope,
    Intake,
    Policy,
    Map,
    Validate,
    Deliver,
    Store,
    Broker,
    Config,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Envelope => "envelope",
            Stage::Intake => "intake",
            Stage::Policy => "policy",
            Stage::Map => "map",
            Stage::Validate => "validate",
            Stage::Deliver => "deliver",
            Stage::Store => "store",
            Stage::Broker => "broker",
            Stage::Config => "config",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayError {
    pub class: ErrorClass,
    pub stage: Stage,
    /// FHIR path, JSON pointer or config key the error is about.
    pub field: Option<String>,
    pub message: String,
    /// A destination's Retry-After, honoured when choosing the retry tier.
    pub retry_after: Option<Duration>,
    /// The HTTP status a destination answered with, when it answered.
    pub status: Option<u16>,
    /// The request may have reached the destination (it timed out or broke off after
    /// sending): its effect is unknown, not absent. The engine turns such an error into
    /// [`ErrorClass::Unknown`] unless the destination de-duplicates resends.
    pub sent: bool,
}

impl GatewayError {
    pub fn new(class: ErrorClass, stage: Stage, message: impl Into<String>) -> Self {
        GatewayError {
            class,
            stage,
            field: None,
            message: message.into(),
            retry_after: None,
            status: None,
            sent: false,
        }
    }

    pub fn permanent(stage: Stage, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, stage, message)
    }

    pub fn transient(stage: Stage, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, stage, message)
    }

    /// An outcome a person must establish (see [`ErrorClass::Unknown`]).
    pub fn unknown(stage: Stage, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Unknown, stage, message)
    }

    pub fn is_unknown(&self) -> bool {
        self.class == ErrorClass::Unknown
    }

    /// A permanent input error about one field.
    pub fn invalid(stage: Stage, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::permanent(stage, message).at(field)
    }

    /// A configuration problem, naming its key.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(Stage::Config, key, message)
    }

    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    pub fn is_transient(&self) -> bool {
        self.class == ErrorClass::Transient
    }

    /// "field: message" — the reason a practice IT person reads.
    /// Several errors as one: `lead` decides what happens (class, stage, Retry-After,
    /// status); the message gives every reason, and no one field is named when there
    /// are several. The one way errors combine (mapping errors, destinations' errors).
    pub fn combined(lead: GatewayError, reasons: Vec<String>) -> GatewayError {
        if reasons.len() <= 1 {
            return lead;
        }
        GatewayError {
            message: reasons.join("; "),
            field: None,
            ..lead
        }
    }

    pub fn reason(&self) -> String {
        match &self.field {
            Some(f) => format!("{f}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} error at {}: {}",
            self.class.as_str(),
            self.stage.as_str(),
            self.reason()
        )
    }
}

impl std::error::Error for GatewayError {}

impl From<sqlx::Error> for GatewayError {
    fn from(e: sqlx::Error) -> Self {
        // Store errors are retried: a busy or restarting database is the usual cause.
        GatewayError::transient(Stage::Store, format!("store: {e}"))
    }
}

impl From<lapin::Error> for GatewayError {
    fn from(e: lapin::Error) -> Self {
        GatewayError::transient(Stage::Broker, format!("broker: {e}"))
    }
}

pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::serde_reason;

    /// A serde error never carries the value it met into a reason.
    #[test]
    fn serde_reasons_quote_no_input() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        #[serde(deny_unknown_fields)]
        struct S {
            n: u32,
            kind: Kind,
        }
        #[derive(Debug, serde::Deserialize)]
        enum Kind {
            A,
        }
        for input in [
            r#"{"n": "9912003888", "kind": "A"}"#,
            r#"{"n": -9912003888, "kind": "A"}"#,
            r#"{"n": 1, "kind": "9912003888"}"#,
            r#"{"n": 1, "kind": "A", "9912003888": 1}"#,
            r#"{"n": [9912003888], "kind": "A"}"#,
        ] {
            let e = serde_json::from_str::<S>(input).unwrap_err();
            let raw = e.to_string();
            let reason = serde_reason(raw.split(" at line").next().unwrap());
            assert!(!reason.contains("9912003888"), "{input}: {reason}");
            assert!(!reason.is_empty());
        }
        assert_eq!(
            serde_reason("invalid type: string \"9912003888\", expected u32"),
            "invalid type: expected u32"
        );
        assert_eq!(serde_reason("missing field `type`"), "missing field `type`");
    }
}
