//! PRSB Social Prescribing Information Standard v1.1 sections both flows carry: risks
//! (mandatory, with "no known risks" said outright), safeguarding, reasonable
//! adjustments, "referral to", plan and requested actions, and what would disclose a
//! person's gender history. Each is its own canonical section so a destination's
//! allow-list names it on its own (docs/prsb-mapping.md).

use serde::{Deserialize, Serialize};

use super::{Coded, ContactPoint, Organisation};

fn is_false(b: &bool) -> bool {
    !*b
}

/// PRSB "Risks" (M, 1..1): the risks recorded, or an explicit "no known risks" — never
/// silence, which the standard reads as "not recorded".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risks {
    /// The practice (or link worker) recorded that there are no known risks.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_known_risks: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<Risk>,
}

impl Risks {
    /// Whether it says anything: risks listed or "no known risks".
    pub fn is_recorded(&self) -> bool {
        self.no_known_risks || !self.entries.is_empty()
    }
}

/// One "Risks record entry": the risk (coded `<281694009 |Finding of at risk|` or text),
/// when it started and ended, and a comment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    #[serde(default, skip_serializing_if = "Coded::is_empty")]
    pub risk: Coded,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Recorded in words the person's consent does not let travel (codes only): the
    /// entry says a risk is recorded, not what it is.
    #[serde(default, skip_serializing_if = "is_false")]
    pub words_withheld: bool,
}

/// One PRSB "Safeguarding concerns" entry (refset `999002381000000108` or text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeguardingConcern {
    #[serde(default, skip_serializing_if = "Coded::is_empty")]
    pub concern: Coded,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Recorded in words the person's consent does not let travel (codes only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub words_withheld: bool,
}

/// PRSB "Individual requirements".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndividualRequirements {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasonable_adjustments: Vec<ReasonableAdjustment>,
}

impl IndividualRequirements {
    pub fn is_empty(&self) -> bool {
        self.reasonable_adjustments.is_empty()
    }
}

/// One "Reasonable adjustment record entry" (flag `1108111000000107`, the adjustment
/// coded or as text, and detail).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonableAdjustment {
    pub adjustment: Coded,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// PRSB "Referral to" (M): who the referral is addressed to — the service (coded from the
/// Services refset `1127531000000102` or text), the organisation, a named person or
/// role, and contact details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Coded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialty: Option<Coded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Coded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<Organisation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telecom: Vec<ContactPoint>,
}

impl ReferralTo {
    /// Whether it names anyone: a service, an organisation or a person.
    pub fn is_named(&self) -> bool {
        self.service.is_some() || self.organisation.is_some() || self.name.is_some()
    }
}

/// PRSB "Plan and requested actions" (first in every communication back): what the
/// referrer or GP is asked to do, what the person will do, and what was agreed — or
/// "no actions required", said outright.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanActions {
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_actions_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_professionals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_person: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreed_with_person: Option<String>,
}

impl PlanActions {
    /// Whether any action is written.
    pub fn has_actions(&self) -> bool {
        self.for_professionals.is_some()
            || self.for_person.is_some()
            || self.agreed_with_person.is_some()
    }
}

/// What would disclose a person's gender history: a sex recorded at birth that differs
/// from the gender, or a gender-identity statement. Sent only to a destination whose
/// agreement lists `gender_history` (Gender Recognition Act 2004 s22).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenderHistory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex_recorded_at_birth: Option<Coded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender_identity: Option<Coded>,
}

/// Canonical sections that leave only for a destination whose allow-list names them:
/// everything else a mapping reads is checked at start-up, these are withheld at send
/// time (a mapping may read them; a destination not agreed for them gets nothing of
/// them, and the audit says so).
pub const SENSITIVE_SECTIONS: [&str; 3] = ["risks", "safeguarding", "gender_history"];

/// Whether a canonical path lies in a sensitive section.
pub fn in_sensitive_section(path: &str) -> bool {
    SENSITIVE_SECTIONS.iter().any(|s| {
        path.strip_prefix(s)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// Leaves out the words of one coded-or-text item and its comment (codes-only
/// consent); marks it when nothing coded is left to say what it is. Answers whether
/// anything was removed.
fn strip_item_words(item: &mut Coded, comment: &mut Option<String>, withheld: &mut bool) -> bool {
    let had = item.strip_text() | comment.take().is_some();
    if had && item.code.is_none() {
        *withheld = true;
    }
    had
}

impl Risks {
    /// Leaves out every risk's words (codes-only consent); answers whether any went.
    pub fn strip_words(&mut self) -> bool {
        self.entries.iter_mut().fold(false, |acc, r| {
            strip_item_words(&mut r.risk, &mut r.comment, &mut r.words_withheld) | acc
        })
    }
}

/// Leaves out every safeguarding concern's words (codes-only consent); answers whether
/// any went.
pub fn strip_safeguarding_words(concerns: &mut [SafeguardingConcern]) -> bool {
    concerns.iter_mut().fold(false, |acc, c| {
        strip_item_words(&mut c.concern, &mut c.comment, &mut c.words_withheld) | acc
    })
}
