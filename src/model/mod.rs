//! The canonical model in the middle of every flow (DESIGN.md "One pipeline, two flows").
//! Field names follow the PRSB "Referral to social prescribing services" groups; see
//! docs/prsb-mapping.md for each PRSB item → canonical field → FHIR path.

pub mod identifiers;
mod referral;

pub use referral::*;
