//! Decode and validate: envelopes, size limits, FHIR referral Bundles → canonical model.

pub mod bundle;
mod config;
pub mod envelope;
pub mod json;
mod referral;

pub use config::{IntakeConfig, Rules};

pub use envelope::{Envelope, Headers};
pub use referral::{
    DecodedReferral, SOCIAL_PRESCRIBING_REFERRAL, decode_referral, decode_referral_with,
};
