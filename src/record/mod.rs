//! What every record writer shares: the GP record entry a message-back event becomes
//! (the `gp-record` mapping's output), read back as a typed view, and the readable
//! document written beside the codes — because a GP system may drop a code it does not
//! know, every write says in words what happened and which codes it carries.

pub mod document;
pub mod itk;
pub mod nhs_dd;
pub mod pdf;
mod sections;
pub mod stu3;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{GatewayError, Result, Stage};
use crate::model::message_back::MessageBack;
use crate::model::{PersonName, Risks, SafeguardingConcern};

/// A code in one system.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Code {
    pub system: String,
    pub code: String,
    pub display: String,
}

/// One coded entry: SNOMED CT where a national code exists, Read v2 beside it for
/// Scottish practices, a local code where no national one exists, and a value for
/// scores.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
pub struct CodedEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snomed: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read2: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// UCUM unit of `value` (`{score}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl CodedEntry {
    /// The code a record is keyed on: SNOMED CT, else the local code.
    pub fn primary(&self) -> Option<&Code> {
        self.snomed.as_ref().or(self.local.as_ref())
    }

    /// Every code it carries, Read v2 only when `read_codes`.
    pub fn codes(&self, read_codes: bool) -> Vec<&Code> {
        [&self.snomed, &self.read2, &self.local]
            .into_iter()
            .flatten()
            .filter(|c| read_codes || c.system != READ2_SYSTEM)
            .collect()
    }
}

pub const READ2_SYSTEM: &str = "http://read.info/readv2";
pub const SNOMED_SYSTEM: &str = "http://snomed.info/sct";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Patient {
    pub nhs_number: Option<String>,
    pub chi_number: Option<String>,
    #[serde(default)]
    pub name: PersonName,
    pub date_of_birth: Option<String>,
    pub gender: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Practice {
    pub ods_code: Option<String>,
    /// A Scottish GP practice's code (5 digits).
    #[serde(default)]
    pub scottish_practice_code: Option<String>,
    #[serde(default)]
    pub nation: Option<crate::model::Nation>,
    pub name: Option<String>,
}

impl Practice {
    /// The code the practice is named by: its Scottish practice code when the referral
    /// carries one (a Scottish practice), else its ODS code.
    pub fn code(&self) -> Option<&str> {
        self.scottish_practice_code
            .as_deref()
            .or(self.ods_code.as_deref())
    }

    /// The canonical field [`Practice::code`] comes from, for errors.
    pub fn code_field(&self) -> &'static str {
        if self.scottish_practice_code.is_some() {
            "practice.scottish_practice_code"
        } else {
            "practice.ods_code"
        }
    }

    pub fn is_scottish(&self) -> bool {
        self.nation == Some(crate::model::Nation::Scotland) || self.scottish_practice_code.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ReferralRef {
    pub message_id: String,
    pub programme: Option<String>,
    /// sent | accepted | declined | in-progress | closed, with this event counted.
    pub state: Option<String>,
    /// The platform's free-text items the referral's consent left out of this event
    /// (canonical names), so the document can say what it does not carry.
    #[serde(default)]
    pub withheld: Vec<String>,
    /// Sensitive sections (risks, safeguarding) the event carried that this writer's
    /// agreement does not name: left out, and the document says so.
    #[serde(default)]
    pub withheld_by_agreement: Vec<String>,
    /// The referral's earlier scores on the event's instrument, oldest first (an
    /// assessment event's history).
    #[serde(default)]
    pub earlier_scores: Vec<EarlierScore>,
}

/// One earlier score on the same instrument.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
pub struct EarlierScore {
    /// The day it was recorded (YYYY-MM-DD).
    pub date: String,
    pub score: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Practitioner {
    pub name: Option<String>,
    pub role: Option<String>,
}

/// A GP record entry, as a record writer reads its payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordEntry {
    pub event: MessageBack,
    pub headline: String,
    #[serde(default)]
    pub coded: Vec<CodedEntry>,
    pub summary: Option<String>,
    pub referral: ReferralRef,
    pub patient: Patient,
    #[serde(default)]
    pub practice: Practice,
    pub practitioner: Option<Practitioner>,
    /// PRSB "Risks" (a sensitive section: absent unless the writer's agreement names it).
    #[serde(default)]
    pub risks: Option<Risks>,
    /// PRSB "Safeguarding" concerns (a sensitive section, as `risks`).
    #[serde(default)]
    pub safeguarding: Vec<SafeguardingConcern>,
}

impl RecordEntry {
    pub fn from_payload(payload: &Value) -> Result<RecordEntry> {
        serde_path_to_error::deserialize(payload).map_err(|e| {
            GatewayError::invalid(
                Stage::Map,
                e.path().to_string(),
                format!(
                    "the gp-record payload is not a record entry: {}",
                    crate::error::serde_reason(&e.inner().to_string())
                ),
            )
        })
    }
}
