//! `[message_back]`: the platforms that send events and what each may answer — the
//! message-back front's own section of the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageBackConfig {
    /// Record writers (message-back destinations) for practices the routes file gives
    /// none.
    pub writers: Vec<String>,
    /// The platforms that send events, by the name in their door
    /// (`/v1/events/{platform}`).
    pub platforms: BTreeMap<String, PlatformConfig>,
    /// The platform every file dropped in the events spool comes from (spool mode):
    /// whoever can write that folder speaks for it. Without one, only events the
    /// gateway's own doors queued are taken from the spool; others are parked.
    pub spool_platform: Option<String>,
    /// A referral with no event back after this long is counted as awaiting a response.
    #[serde(with = "humantime_serde")]
    pub no_response_after: Duration,
    /// How far ahead of the gateway's clock an event's dates may be (a platform's clock
    /// or zone a little off); later ones are refused as impossible.
    #[serde(with = "humantime_serde")]
    pub future_skew: Duration,
}

impl Default for MessageBackConfig {
    fn default() -> Self {
        MessageBackConfig {
            writers: vec!["practice-folder".into()],
            platforms: BTreeMap::new(),
            spool_platform: None,
            no_response_after: Duration::from_secs(14 * 24 * 3600),
            future_skew: Duration::from_secs(3600),
        }
    }
}

impl MessageBackConfig {
    /// The embedded default's: a platform `clw-event` that reads the `outbox` folder's
    /// referrals and drops canonical events in the events spool.
    pub fn embedded() -> Self {
        MessageBackConfig {
            platforms: BTreeMap::from([(
                "clw-event".to_string(),
                PlatformConfig {
                    destinations: vec!["outbox".into()],
                    ..PlatformConfig::default()
                },
            )]),
            spool_platform: Some("clw-event".into()),
            ..MessageBackConfig::default()
        }
    }
}

/// What an event must say of the patient, checked against the referral it links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatientItem {
    /// The NHS number or the CHI number (whichever the referral carries).
    Number,
    DateOfBirth,
    FamilyName,
}

impl PatientItem {
    /// The canonical event's field for it.
    pub fn field(self) -> &'static str {
        match self {
            PatientItem::Number => "referral.patient.nhs_number",
            PatientItem::DateOfBirth => "referral.patient.date_of_birth",
            PatientItem::FamilyName => "referral.patient.family_name",
        }
    }

    /// How it is named to people ("the date of birth").
    pub fn describe(self) -> &'static str {
        match self {
            PatientItem::Number => "the NHS or CHI number",
            PatientItem::DateOfBirth => "the date of birth",
            PatientItem::FamilyName => "the family name",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// A message-back inbound mapping (json input) from the platform's event format.
    #[serde(default = "default_event_mapping")]
    pub mapping: String,
    /// A mapping for its spreadsheet uploads (one row as JSON).
    #[serde(default = "default_upload_mapping")]
    pub upload_mapping: String,
    /// The one programme it serves, if only one: its spreadsheet rows naming the patient
    /// only are looked up in it, and its events may name no other programme's referrals.
    pub programme: Option<String>,
    /// The referral destinations it speaks for: its events link only to referrals
    /// delivered to one of these, and its references are looked up only among theirs.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// The RabbitMQ user it publishes to the AMQP events door as: a message is taken as
    /// this platform's only when the broker validated that user (`user_id`).
    pub broker_user: Option<String>,
    /// What each event must say of the patient (default: the NHS or CHI number and the
    /// date of birth); an event lacking one is refused.
    #[serde(default = "default_require_patient")]
    pub require_patient: Vec<PatientItem>,
    /// The HMAC-SHA256 secret it signs HTTP requests with; without one its HTTP door
    /// is closed.
    pub secret: Option<Secret>,
    /// A second secret accepted during a rotation.
    pub previous_secret: Option<Secret>,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            mapping: default_event_mapping(),
            upload_mapping: default_upload_mapping(),
            programme: None,
            destinations: Vec::new(),
            broker_user: None,
            require_patient: default_require_patient(),
            secret: None,
            previous_secret: None,
        }
    }
}

fn default_require_patient() -> Vec<PatientItem> {
    vec![PatientItem::Number, PatientItem::DateOfBirth]
}

fn default_event_mapping() -> String {
    "clw-event".into()
}
fn default_upload_mapping() -> String {
    "sheet-event".into()
}
