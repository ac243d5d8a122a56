use serde::{Deserialize, Serialize};

use super::prsb::{GenderHistory, IndividualRequirements, ReferralTo, Risks, SafeguardingConcern};

/// A code from a code system, with its display term and any free text that came with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coded {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Coded {
    /// Whether it says nothing at all.
    pub fn is_empty(&self) -> bool {
        self.system.is_none()
            && self.code.is_none()
            && self.display.is_none()
            && self.text.is_none()
    }

    /// Leaves out the free text; answers whether there was any.
    pub fn strip_text(&mut self) -> bool {
        self.text.take().is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonName {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub prefix: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub given: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub lines: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactPoint {
    /// phone | email | sms | ... (FHIR ContactPoint.system)
    pub system: String,
    pub value: String,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactPreferences {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_contact_method: Option<Coded>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_contact_times: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_written_communication_format: Option<Coded>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<Coded>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter_required: Option<bool>,
}

/// PRSB "Person demographics".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonDemographics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi_number: Option<String>,
    pub name: PersonName,
    /// FHIR date (YYYY, YYYY-MM or YYYY-MM-DD).
    pub date_of_birth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub telecom: Vec<ContactPoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ethnic_category: Option<Coded>,
}

/// An organisation, identified by its ODS code (England, Wales, Northern Ireland) or, for a
/// Scottish GP practice, its Scottish practice code — each under its own name, never one
/// as the other.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Organisation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ods_code: Option<String>,
    /// A Scottish GP practice's code (5 digits).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scottish_practice_code: Option<String>,
    /// The nation its code places it in (the GP practice's decides Scottish defaults,
    /// such as Read v2 beside SNOMED in its record).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nation: Option<Nation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub telecom: Vec<ContactPoint>,
}

/// A UK nation, as a practice's code places it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nation {
    England,
    Scotland,
    Wales,
    NorthernIreland,
}

impl Nation {
    pub fn as_str(self) -> &'static str {
        match self {
            Nation::England => "england",
            Nation::Scotland => "scotland",
            Nation::Wales => "wales",
            Nation::NorthernIreland => "northern-ireland",
        }
    }

    /// The nation of a practice with ODS code `ods`: Welsh practice codes begin with W,
    /// Northern Ireland's with Z; the rest are England's.
    pub fn of_ods(ods: &str) -> Nation {
        match ods.as_bytes().first() {
            Some(b'W') => Nation::Wales,
            Some(b'Z') => Nation::NorthernIreland,
            _ => Nation::England,
        }
    }
}

impl Organisation {
    /// Its practice codes that are present, each with the canonical field that carries
    /// it (what routes look a practice up by, in this order).
    pub fn practice_codes(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(c) = &self.ods_code {
            out.push(("gp_practice.ods_code", c.as_str()));
        }
        if let Some(c) = &self.scottish_practice_code {
            out.push(("gp_practice.scottish_practice_code", c.as_str()));
        }
        out
    }
}

/// PRSB "Referrer details".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Referrer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Coded>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub identifiers: Vec<Identifier>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub telecom: Vec<ContactPoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<Organisation>,
    /// The referrer's service (PRSB M: coded from the Services refset
    /// `1127531000000102`, or text).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<Coded>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub specialty: Option<Coded>,
}

/// PRSB "Referral details" with "Reason for referral" and "What matters to me".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferralDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_request_id: Option<String>,
    /// FHIR dateTime the referral was made (ServiceRequest.authoredOn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referral_date: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    pub service_requested: Coded,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_of_referral: Option<Coded>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub reasons_for_referral: Vec<Coded>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what_matters_to_me: Option<String>,
    /// PRSB "Referral method" (national codes: how the referral was made).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub referral_method: Option<Coded>,
    /// PRSB "Return response to": where the outcome goes, beside the GP.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub return_response_to: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentState {
    /// Share everything the destination's allow-list permits.
    Full,
    /// Share coded items only; no narrative.
    CodesOnly,
    /// Share nothing onward.
    Declined,
    /// No Consent in the referral: configuration decides.
    #[default]
    NotRecorded,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Full => "full",
            ConsentState::CodesOnly => "codes-only",
            ConsentState::Declined => "declined",
            ConsentState::NotRecorded => "not-recorded",
        }
    }
}

/// PRSB "Consent" (to share with the social prescribing service).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsentInfo {
    pub state: ConsentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
    /// What the permitting Consents say they are for (their scope, category and
    /// purpose codings): the policy takes them as consent to share with a social
    /// prescribing service only when the deployment lists one. Not sent onward.
    #[serde(skip)]
    pub purposes: Vec<Coded>,
}

/// The canonical referral: PRSB "Referral to social prescribing services".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Referral {
    pub person_demographics: PersonDemographics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_preferences: Option<ContactPreferences>,
    pub referral_details: ReferralDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer_details: Option<Referrer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gp_practice: Option<Organisation>,
    /// The CLW organisation the referral is addressed to, when the referral names one
    /// (schema v1; v2 carries the whole of PRSB "Referral to" in `referral_to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referred_to: Option<Organisation>,
    /// PRSB "Referral to" (M).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub referral_to: Option<ReferralTo>,
    /// PRSB "Risks" (M): None when the referral says nothing (a gap, recorded).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub risks: Option<Risks>,
    /// PRSB "Safeguarding": a sensitive section, sent only where agreed.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub safeguarding: Vec<SafeguardingConcern>,
    /// PRSB "Individual requirements" (reasonable adjustments).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub individual_requirements: Option<IndividualRequirements>,
    /// What would disclose gender history: sent only where agreed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gender_history: Option<GenderHistory>,
    pub consent: ConsentInfo,
    /// The mandatory PRSB items the practice's referral did not carry (canonical field
    /// names), so a platform can tell "not recorded" from "not agreed".
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub not_recorded: Vec<String>,
}
