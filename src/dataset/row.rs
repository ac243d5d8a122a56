//! One row of the programme dataset: one referral, both halves — who was referred, from
//! where and why (coarsely), and what happened — with no direct identifier. The extract's
//! schema is `schemas/dataset-extract.v1.schema.json`; its field names are these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the row's shape (the extract's schema version).
pub const ROW_VERSION: &str = "1";

/// A wellbeing score's first and last value in the episode, and the change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreChange {
    pub first: f64,
    pub last: f64,
    /// `last - first` (positive is better for SWEMWBS / WEMWBS); absent with one score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<f64>,
    /// How many scores the episode has.
    pub count: u32,
}

/// ONS4 items (each 0–10), as first or last recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ons4Items {
    pub life_satisfaction: f64,
    pub worthwhile: f64,
    pub happy_yesterday: f64,
    pub anxious_yesterday: f64,
}

/// One referral as the dataset shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    /// `P-` + 32 hex: stable across extracts under one pseudonym key.
    pub person: String,
    pub programme: String,
    /// The practice's ODS code, or its Scottish practice code (by name in
    /// `practice_code_system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practice_code: Option<String>,
    /// `ods` | `scottish-practice-code`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practice_code_system: Option<String>,
    /// england | scotland | wales | northern-ireland
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nation: Option<String>,
    /// YYYY-MM
    pub referral_month: String,
    /// "0-4" … "90+", or "unknown".
    pub age_band_5y: String,
    /// "0-17", "18-24" … "75+", or "unknown".
    pub age_band: String,
    /// As recorded (FHIR administrative gender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// The ethnic category code as recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethnic_category: Option<String>,
    /// simd | imd (or the operator's index name), with the decile 1 (most deprived) – 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprivation_index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprivation_decile: Option<u8>,
    /// The requester's role (its display or code), e.g. "General practitioner".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral_source: Option<String>,
    /// Reasons for referral as reporting categories (each reason once; a reason with no
    /// category is "other (uncategorised)").
    pub reason_categories: Vec<String>,
    /// The same reasons by the PRSB needs and concerns code set (SNOMED CT codes).
    pub reason_codes: Vec<String>,
    /// full | codes-only | not-recorded (a declined referral has no row).
    pub consent: String,
    /// accepted | declined, once the programme answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_to_response: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_to_first_contact: Option<i64>,
    pub contacts: u32,
    /// Contacts by mode (face-to-face, telephone, …).
    pub contacts_by_mode: BTreeMap<String, u32>,
    pub contact_minutes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swemwbs: Option<ScoreChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wemwbs: Option<ScoreChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ons4_first: Option<Ons4Items>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ons4_last: Option<Ons4Items>,
    /// Onward referrals by category.
    pub onward_referrals: BTreeMap<String, u32>,
    /// Signposting by category.
    pub signposting: BTreeMap<String, u32>,
    /// Support offered (onward referrals and signposting) by reporting category.
    #[serde(default)]
    pub support_offered: BTreeMap<String, u32>,
    /// The support offered as SNOMED CT codes (the PRSB support offered code set).
    #[serde(default)]
    pub support_codes: Vec<String>,
    /// The closure as its reporting category (outcomes), once closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Outcomes the platform coded (the PRSB outcomes code set).
    #[serde(default)]
    pub outcome_codes: Vec<String>,
    /// The events' record entries by what the practice acknowledged (where the record
    /// writer is acknowledged: received, filed, rejected).
    #[serde(default)]
    pub practice_acknowledgements: BTreeMap<String, u32>,
    /// Why the episode ended, once closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closure_reason: Option<String>,
    /// Days from referral to its end (closed, or declined by the programme), or to the
    /// extract's end date while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_open: Option<i64>,
    /// Whether the episode is still open at the extract's end date (neither closed nor
    /// declined, nor ended by the practice or the gateway).
    pub open: bool,
    /// How the practice or the gateway ended the referral: open | cancelled | withdrawn
    /// (consent) | expired (closed: the service did not respond).
    #[serde(default = "open_lifecycle")]
    pub lifecycle: String,
}

fn open_lifecycle() -> String {
    "open".into()
}

/// What an extract or report covers, and what it left out of its rows (counted only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Every referral the programme received in the period.
    pub referrals: u64,
    /// Left out of the rows: consent declined.
    pub consent_declined: u64,
    /// Left out of the rows: the person is on the configured opt-out list.
    pub opted_out: u64,
}
