//! One error taxonomy for every stage (ARCHITECTURE.md "Errors").
//!
//! Messages never carry patient values: they name the field (a FHIR path or a
//! JSON pointer) and say what is wrong with it.

use std::fmt;
use std::time::Duration;

/// What the pipeline does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Will never succeed as sent: park at once.
    Permanent,
    /// May succeed later: next retry tier, parked after the last.
    Transient,
    /// Not an error: nothing is sent, the outcome is recorded.
    Policy,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
            ErrorClass::Policy => "policy",
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
    /// sending): its effect is unknown, not absent.
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

    pub fn policy(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Policy, Stage::Policy, message)
    }

    /// A permanent input error about one field.
    pub fn invalid(stage: Stage, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::permanent(stage, message).at(field)
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
