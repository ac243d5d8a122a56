//! The message back as the wiring plan built it: each platform with its mapping,
//! secrets, the destinations it speaks for and what its events must say of the patient;
//! the code map, the record writers and the routes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::PatientItem;
use crate::deliver::Destination;
use crate::mapping::{CodeMap, Mapping};
use crate::policy::routing::Routes;

/// What the message-back flow needs.
pub struct MessageBackWiring {
    /// By the name in their door.
    pub platforms: BTreeMap<String, Arc<Platform>>,
    /// The code map coded entries come from (`social-prescribing`).
    pub codes: Arc<CodeMap>,
    /// Record writers for practices the routes give none.
    pub default_writers: Vec<Arc<Destination>>,
    /// Every record writer, by name.
    pub writers: BTreeMap<String, Arc<Destination>>,
    pub routes: Option<Routes>,
    pub no_response_after: std::time::Duration,
    /// The platform files dropped in the events spool come from.
    pub spool_platform: Option<String>,
    pub future_skew: std::time::Duration,
}

/// A platform that sends events, and what it may answer.
pub struct Platform {
    pub name: String,
    pub mapping: Arc<Mapping>,
    pub upload_mapping: Arc<Mapping>,
    pub programme: Option<String>,
    /// HMAC secrets its HTTP requests may be signed with (current first).
    pub secrets: Vec<String>,
    /// The referral destinations it speaks for: its events link only to referrals
    /// delivered to one of them.
    pub destinations: BTreeSet<String>,
    /// Where its own references are recorded: (destination, journal step), for those
    /// of its destinations whose kind records one.
    pub references: Vec<(String, &'static str)>,
    /// The broker user it publishes to the AMQP events door as.
    pub broker_user: Option<String>,
    /// How the CHI numbers its events name are checked (`intake.chi_check`).
    pub chi_check: crate::model::identifiers::ChiCheck,
    /// What each of its events must say of the patient.
    pub require_patient: Vec<PatientItem>,
}

impl Platform {
    /// Whether its mapping sets `referral.platform_reference` itself (so it links by
    /// reference, which needs a destination that records references).
    pub fn maps_reference(&self) -> bool {
        [&self.mapping, &self.upload_mapping].iter().any(|m| {
            m.fields
                .iter()
                .any(|f| f.to == "referral.platform_reference")
        })
    }
}

/// The code map message-back events are coded from.
pub const EVENT_CODES: &str = "social-prescribing";
