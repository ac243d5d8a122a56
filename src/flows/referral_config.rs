//! `[referrals]`: where referrals go and what a referral without a recorded consent
//! may share — the referral front's own section of the configuration.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::GatewayError;
use crate::model::ConsentState;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Destinations every referral is delivered to (when no `routes` file is given).
    #[serde(default = "default_flow_destinations")]
    pub destinations: Vec<String>,
    /// A routes file (practice → programme → destinations); replaces `destinations`.
    #[serde(default)]
    pub routes: Option<PathBuf>,
    /// What a referral without a Consent resource may share.
    #[serde(default = "default_consent_not_recorded")]
    pub consent_not_recorded: ConsentState,
    /// The scope, category or purpose codes that make a Consent consent to share with
    /// a social prescribing service; any other active Consent is read as not recorded.
    /// Empty by default: no national code says so, each deployment decides.
    #[serde(default)]
    pub consent_covers: Vec<crate::policy::CodeRef>,
    /// A referral missing a mandatory PRSB item: `record` (send it; the gap is audited
    /// and counted per practice) or `park` (hold it for a person, naming the items).
    #[serde(default)]
    pub missing_mandatory: crate::policy::prsb::MissingMandatory,
}

fn default_flow_destinations() -> Vec<String> {
    vec!["outbox".into()]
}
/// Without a recorded decision, share codes but no narrative.
fn default_consent_not_recorded() -> ConsentState {
    ConsentState::CodesOnly
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            destinations: default_flow_destinations(),
            routes: None,
            consent_not_recorded: default_consent_not_recorded(),
            consent_covers: Vec::new(),
            missing_mandatory: Default::default(),
        }
    }
}

impl FlowConfig {
    /// Every problem in the section; `known` tells whether a destination is configured.
    pub fn problems(&self, known: impl Fn(&str) -> bool) -> Vec<GatewayError> {
        let mut errs = Vec::new();
        if self.consent_not_recorded == ConsentState::NotRecorded {
            errs.push(GatewayError::config(
                "referrals.consent_not_recorded",
                "must be full, codes-only or declined",
            ));
        }
        // With a routes file the routes name the destinations (checked when it loads).
        if self.routes.is_some() {
            return errs;
        }
        if self.destinations.is_empty() {
            errs.push(GatewayError::config(
                "referrals.destinations",
                "name at least one destination",
            ));
        }
        for (i, name) in self.destinations.iter().enumerate() {
            if !known(name) {
                errs.push(GatewayError::config(
                    format!("referrals.destinations[{i}]"),
                    format!("no destination named {name:?} in [destinations]"),
                ));
            }
        }
        errs
    }
}
