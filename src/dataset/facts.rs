//! The typed facts the dataset keeps of each referral and event, recorded when the
//! referral is taken and each event planned: what a dataset row needs, with no direct
//! identifier (no number, name, address, postcode, date of birth or free text). Dates are
//! kept to the day inside the store; rows show only months and day counts.

use serde::{Deserialize, Serialize};

use super::bands::{age_on, coarse_band, five_year_band};
use super::deprivation::Deprivation;
use super::row::Ons4Items;
use crate::model::message_back::{EventType, MessageBack, day_of};
use crate::model::{Coded, Referral};

/// A code as the dataset keeps it: system and code, never the text beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeFact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub code: String,
}

impl CodeFact {
    fn of(c: &Coded) -> Option<CodeFact> {
        c.code.as_ref().map(|code| CodeFact {
            system: c.system.clone(),
            code: code.clone(),
        })
    }
}

/// What the dataset keeps of a referral.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferralFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practice_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practice_code_system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nation: Option<String>,
    /// YYYY-MM-DD.
    pub referred_on: String,
    pub age_band_5y: String,
    pub age_band: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethnic_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprivation_index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprivation_decile: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral_source: Option<String>,
    #[serde(default)]
    pub reasons: Vec<CodeFact>,
    /// full | codes-only | declined | not-recorded (as the policy read it).
    pub consent: String,
}

impl ReferralFacts {
    /// The facts of a referral taken on `taken_on` (the day it arrived, used when the
    /// referral carries no date), its deprivation decile looked up from its postcode —
    /// which is not kept.
    pub fn of(
        r: &Referral,
        taken_on: chrono::NaiveDate,
        deprivation: Option<&Deprivation>,
    ) -> ReferralFacts {
        let referred = r
            .referral_details
            .referral_date
            .as_deref()
            .and_then(day_of)
            .unwrap_or(taken_on);
        let age = age_on(&r.person_demographics.date_of_birth, referred);
        let (band5, band) = match age {
            Some(a) => (five_year_band(a), coarse_band(a)),
            None => (super::UNKNOWN, super::UNKNOWN),
        };
        let practice = r.gp_practice.as_ref();
        let (practice_code, practice_code_system) = match practice {
            Some(p) if p.scottish_practice_code.is_some() => (
                p.scottish_practice_code.clone(),
                Some("scottish-practice-code".to_string()),
            ),
            Some(p) if p.ods_code.is_some() => (p.ods_code.clone(), Some("ods".to_string())),
            _ => (None, None),
        };
        let decile = deprivation.and_then(|d| {
            r.person_demographics
                .address
                .as_ref()
                .and_then(|a| a.postcode.as_deref())
                .and_then(|pc| d.lookup(pc))
        });
        let source = r
            .referrer_details
            .as_ref()
            .and_then(|d| d.role.as_ref())
            .and_then(|role| role.display.clone().or(role.code.clone()));
        ReferralFacts {
            practice_code,
            practice_code_system,
            nation: practice
                .and_then(|p| p.nation)
                .map(|n| n.as_str().to_string()),
            referred_on: referred.format("%Y-%m-%d").to_string(),
            age_band_5y: band5.to_string(),
            age_band: band.to_string(),
            gender: r.person_demographics.gender.clone(),
            ethnic_category: r
                .person_demographics
                .ethnic_category
                .as_ref()
                .and_then(|e| e.code.clone()),
            deprivation_index: decile.as_ref().map(|d| d.index.clone()),
            deprivation_decile: decile.map(|d| d.decile),
            referral_source: source,
            reasons: r
                .referral_details
                .reasons_for_referral
                .iter()
                .filter_map(CodeFact::of)
                .collect(),
            consent: r.consent.state.as_str().to_string(),
        }
    }
}

/// What the dataset keeps of an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFacts {
    /// referral-accepted | referral-declined | contact | assessment | onward-referral | closed
    pub kind: String,
    /// YYYY-MM-DD: the day it happened (a contact's or assessment's own date when given).
    pub on: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instrument: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ons4: Option<Ons4Items>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onward_category: Option<String>,
    /// referral | signposting
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onward_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub support_offered: Vec<CodeFact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<CodeFact>,
    /// What the practice said of the record entry written for it, where its record
    /// writer is acknowledged (MESH): received | filed | rejected. Set when the
    /// acknowledgement arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practice_ack: Option<String>,
}

impl EventFacts {
    pub fn of(ev: &MessageBack) -> EventFacts {
        let own_date = match ev.event_type {
            EventType::Contact => ev.contact.as_ref().and_then(|c| c.date.as_deref()),
            EventType::Assessment => ev.assessment.as_ref().and_then(|a| a.date.as_deref()),
            _ => None,
        };
        let on = own_date
            .and_then(day_of)
            .or_else(|| day_of(&ev.occurred_at))
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let a = ev.assessment.as_ref();
        EventFacts {
            kind: ev.event_type.as_str().to_string(),
            on,
            contact_mode: ev.contact.as_ref().map(|c| c.mode.clone()),
            contact_minutes: ev.contact.as_ref().and_then(|c| c.duration_minutes),
            instrument: a.map(|a| a.instrument.clone()),
            score: a.and_then(|a| a.score),
            ons4: a.and_then(|a| a.items.as_ref()).map(|i| Ons4Items {
                life_satisfaction: i.life_satisfaction,
                worthwhile: i.worthwhile,
                happy_yesterday: i.happy_yesterday,
                anxious_yesterday: i.anxious_yesterday,
            }),
            onward_category: ev.onward_referral.as_ref().map(|o| o.category.clone()),
            onward_kind: ev.onward_referral.as_ref().map(|o| o.kind.clone()),
            closure_reason: ev.closed.as_ref().map(|c| c.reason.clone()),
            support_offered: ev.support_offered.iter().filter_map(CodeFact::of).collect(),
            outcomes: ev.outcomes.iter().filter_map(CodeFact::of).collect(),
            practice_ack: None,
        }
    }
}
