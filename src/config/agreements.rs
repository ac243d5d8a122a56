//! `[agreements.ID]` and `[ig]`: what the gateway cannot know from its own wiring — who
//! the controllers are, the lawful basis, the processors, the field schedule an agreement
//! permits and the longest it lets data be kept — and the findings that keep the
//! running configuration in step with those agreements (`check`, start-up when
//! `require_agreements`, and the IG pack).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Config;
use crate::deliver::KeptFiles;
use crate::error::GatewayError;

/// `[ig]`: how strictly agreements are held to, and who answers for the pack.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IgConfig {
    /// Start-up and `check` refuse a destination with no agreement, one naming an
    /// agreement not declared, an allowed field outside its schedule, or retention
    /// longer than it allows. Off: the same are warnings.
    pub require_agreements: bool,
    /// Who answers for the pack (a role or team, e.g. "Information Governance, NHS
    /// Example ICB").
    pub contact: Option<String>,
}

/// `[agreements.ID]`: one data-sharing agreement, as the organisations signed it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementConfig {
    pub title: Option<String>,
    /// The data controllers party to it.
    pub controllers: Vec<String>,
    /// UK GDPR Article 6 basis.
    pub lawful_basis: String,
    /// UK GDPR Article 9 condition (health data is special category).
    pub special_category: Option<String>,
    /// The basis on which the common-law duty of confidentiality is met.
    pub confidentiality: Option<String>,
    #[serde(default)]
    pub purposes: Vec<String>,
    #[serde(default)]
    pub processors: Vec<String>,
    #[serde(default)]
    pub sub_processors: Vec<String>,
    /// The field schedule it permits (canonical names; an entry covers everything under
    /// it). Absent: no schedule declared, so allow-lists are not compared with one.
    pub fields: Option<Vec<String>>,
    /// The longest data received under it may be kept.
    #[serde(default, with = "humantime_serde::option")]
    pub max_retention: Option<Duration>,
    /// When it is next reviewed (YYYY-MM-DD).
    pub review_by: Option<String>,
}

impl AgreementConfig {
    fn problems(&self, id: &str) -> Vec<GatewayError> {
        let key = |k: &str| format!("agreements.{id}.{k}");
        let mut errs = Vec::new();
        if self.controllers.iter().all(|c| c.trim().is_empty()) {
            errs.push(GatewayError::config(
                key("controllers"),
                "name the data controllers party to the agreement",
            ));
        }
        if self.lawful_basis.trim().is_empty() {
            errs.push(GatewayError::config(
                key("lawful_basis"),
                "give the UK GDPR Article 6 basis",
            ));
        }
        if let Some(d) = &self.review_by
            && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
        {
            errs.push(GatewayError::config(
                key("review_by"),
                "must be a date, YYYY-MM-DD",
            ));
        }
        if self
            .fields
            .iter()
            .flatten()
            .any(|f| f.trim().is_empty() || f.contains(char::is_whitespace))
        {
            errs.push(GatewayError::config(
                key("fields"),
                "each entry is a canonical field name (e.g. person_demographics.name)",
            ));
        }
        errs
    }

    /// Whether its schedule covers `field` (an entry covers itself and what is under
    /// it); an agreement with no schedule covers everything.
    pub fn covers(&self, field: &str) -> bool {
        self.fields.as_ref().is_none_or(|list| {
            list.iter()
                .any(|s| field == s || field.starts_with(&format!("{s}.")))
        })
    }
}

/// Every declared agreement's own problems.
pub fn problems(agreements: &BTreeMap<String, AgreementConfig>) -> Vec<GatewayError> {
    agreements
        .iter()
        .flat_map(|(id, a)| a.problems(id))
        .collect()
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warn,
    /// Refused: `[ig] require_agreements` is on.
    Fail,
}

/// The configuration out of step with its agreements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    /// The key to change, e.g. `destinations.leeds-sheet.agreement`.
    pub key: String,
    pub message: String,
}

impl Config {
    /// Where the configuration and its agreements disagree: a destination (or the
    /// dataset) with no agreement or an undeclared one, an allowed field outside the
    /// agreement's schedule, a retention period longer than it allows.
    pub fn agreement_findings(&self) -> Vec<Finding> {
        let level = if self.ig.require_agreements {
            Level::Fail
        } else {
            Level::Warn
        };
        let mut out = Vec::new();
        let mut find = |key: String, message: String| {
            out.push(Finding {
                level,
                key,
                message,
            })
        };
        for (name, d) in self.destinations.iter() {
            let terms = d.terms();
            let Some(id) = terms.agreement else {
                find(
                    format!("destinations.{name}.agreement"),
                    format!(
                        "destination {name} names no data-sharing agreement: set agreement = \"ID\" \
                         and declare it in [agreements.ID]"
                    ),
                );
                continue;
            };
            let Some(agreement) = self.agreements.get(id) else {
                find(
                    format!("destinations.{name}.agreement"),
                    format!(
                        "destination {name} names agreement {id}, which [agreements] does not \
                         declare (its controllers, lawful basis and schedule are unknown)"
                    ),
                );
                continue;
            };
            for field in terms.allow.iter().filter(|f| !agreement.covers(f)) {
                find(
                    format!("destinations.{name}.allow"),
                    format!(
                        "destination {name} may receive {field}, which agreement {id}'s field \
                         schedule does not list"
                    ),
                );
            }
            if let Some(limit) = agreement.max_retention {
                for (key, period) in self.periods_for(d.kept().map(|k| k.files)) {
                    if period > limit {
                        find(
                            format!("retention.{key}"),
                            format!(
                                "retention.{key} keeps data for {}, longer than the {} agreement \
                                 {id} allows (destination {name} receives data under it)",
                                crate::model::dates::period_in_words(period),
                                crate::model::dates::period_in_words(limit)
                            ),
                        );
                    }
                }
            }
        }
        if let Some(id) = &self.dataset.agreement {
            match self.agreements.get(id) {
                None => find(
                    "dataset.agreement".into(),
                    format!(
                        "the dataset names agreement {id}, which [agreements] does not declare"
                    ),
                ),
                Some(a) if a.max_retention.is_some_and(|m| self.retention.dataset > m) => find(
                    "retention.dataset".into(),
                    format!(
                        "retention.dataset keeps the dataset's facts for {}, longer than agreement \
                         {id} allows",
                        crate::model::dates::period_in_words(self.retention.dataset)
                    ),
                ),
                Some(_) => {}
            }
        }
        out
    }

    /// The `[retention]` periods that keep what a destination is sent (by the kind of
    /// files it keeps of its own, if any): the payload-bearing kinds, never the audit
    /// (field names, not values) or the dataset (pseudonymised).
    pub fn periods_for(&self, kept: Option<KeptFiles>) -> Vec<(&'static str, Duration)> {
        let r = &self.retention;
        let mut out = vec![("bodies", r.bodies), ("rows", r.rows)];
        if self.broker.is_none() {
            out.push(("spool_done", r.spool_done));
        }
        if self.message_back().is_some() {
            out.push(("referrals", r.referrals));
        }
        match kept {
            Some(KeptFiles::Outbox) => out.push(("outboxes", r.outboxes)),
            Some(KeptFiles::Sheets) => out.push(("sheets", r.sheets)),
            None => {}
        }
        out
    }
}
