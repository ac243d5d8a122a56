//! The extract: one [`DatasetRow`] per referral of a programme in a period, built from
//! the facts the fronts recorded, a page of referrals at a time (so 100,000 referrals
//! stream in bounded memory). Referrals whose consent was declined, or whose person is on
//! the opt-out list, are counted in [`Totals`] and never become rows.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::bands::{days_between, month_of};
use super::facts::{EventFacts, ReferralFacts};
use super::pseudonym::{PersonRef, Pseudonymiser};
use super::row::{DatasetRow, ScoreChange, Totals};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::CodeMap;
use crate::store::Store;
use crate::store::dataset::DatasetReferralRow;

/// What a reason with no category is counted as: never dropped.
pub const UNCATEGORISED: &str = "other (uncategorised)";
/// Referrals read per page.
const PAGE: i64 = 500;

/// Which referrals: a programme, referred on days `from..=to` (YYYY-MM-DD), and, for a
/// practice's report, that practice's only.
#[derive(Debug, Clone, Default)]
pub struct Period {
    pub programme: String,
    pub from: String,
    pub to: String,
    /// A practice code: only its referrals (rows and totals).
    pub practice: Option<String>,
}

/// The code maps a row's categories come from (their `dataset` column) — the same maps
/// the PRSB refsets are bound in.
#[derive(Clone, Default)]
pub struct CodeMaps {
    /// Reasons for referral (SNOMED CT, needs and concerns) → category: `referral-reasons`.
    pub reasons: Option<Arc<CodeMap>>,
    /// Onward referrals (support offered) and closures (outcomes) → SNOMED CT and
    /// category: `social-prescribing`, by its `platform` column.
    pub events: Option<Arc<CodeMap>>,
}

impl CodeMaps {
    pub fn of(set: &crate::mapping::MappingSet) -> CodeMaps {
        CodeMaps {
            reasons: set.codes.get("referral-reasons").cloned(),
            events: set.codes.get("social-prescribing").cloned(),
        }
    }

    /// The events map's entry in column `to` for platform key `key`.
    fn event(&self, key: &str, to: &str) -> Option<&crate::mapping::spec::CodeEntry> {
        self.events
            .as_ref()?
            .lookup("platform", key, to)
            .ok()
            .flatten()
    }

    /// The reporting category (the `dataset` column's display) of platform key `key`.
    fn category(&self, key: &str) -> String {
        self.event(key, "dataset")
            .map(|c| c.display.clone())
            .unwrap_or_else(|| UNCATEGORISED.to_string())
    }
}

/// Builds rows: pseudonyms under the extract's key, reasons, support and outcomes in the
/// code maps' reporting categories (`dataset` column) and the PRSB code sets, people on
/// the opt-out list left out.
pub struct Extractor<'a> {
    pub store: &'a Store,
    pub pseudonyms: &'a Pseudonymiser,
    pub codes: CodeMaps,
    /// Person references of the opted-out.
    pub opted_out: HashSet<String>,
}

impl Extractor<'_> {
    /// Streams the period's rows to `row`, answering the totals.
    pub async fn run(
        &self,
        period: &Period,
        mut row: impl FnMut(DatasetRow) -> Result<()>,
    ) -> Result<Totals> {
        let mut totals = Totals::default();
        let mut after = None;
        loop {
            let page = self
                .store
                .dataset_referrals(
                    &period.programme,
                    &period.from,
                    &period.to,
                    after.as_ref(),
                    PAGE,
                )
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some((last.referred_on.clone(), last.message_id.clone()));
            let ids: Vec<String> = page.iter().map(|r| r.message_id.clone()).collect();
            let mut events: BTreeMap<String, Vec<EventFacts>> = BTreeMap::new();
            let endings: BTreeMap<String, (String, i64)> = self
                .store
                .endings(&ids)
                .await?
                .into_iter()
                .map(|(id, state, at)| (id, (state, at)))
                .collect();
            for e in self.store.dataset_events(&ids).await? {
                events
                    .entry(e.referral_id.clone())
                    .or_default()
                    .push(parse(&e.facts, "dataset_events.facts")?);
            }
            for r in &page {
                let facts: ReferralFacts = parse(&r.facts, "dataset_referrals.facts")?;
                if period
                    .practice
                    .as_ref()
                    .is_some_and(|p| facts.practice_code.as_ref() != Some(p))
                {
                    continue;
                }
                totals.referrals += 1;
                if facts.consent == "declined" {
                    totals.consent_declined += 1;
                    continue;
                }
                if r.person_ref
                    .as_ref()
                    .is_some_and(|p| self.opted_out.contains(p))
                {
                    totals.opted_out += 1;
                    continue;
                }
                let mut evs = events.remove(&r.message_id).unwrap_or_default();
                evs.sort_by(|a, b| a.on.cmp(&b.on));
                let mut out = self.row(r, facts, &evs, &period.to);
                if let Some((state, at)) = endings.get(&r.message_id) {
                    end_row(&mut out, state, *at, &r.referred_on, &period.to);
                }
                row(out)?;
            }
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        Ok(totals)
    }

    fn row(
        &self,
        r: &DatasetReferralRow,
        f: ReferralFacts,
        evs: &[EventFacts],
        to: &str,
    ) -> DatasetRow {
        let day = |e: &EventFacts| days_between(&f.referred_on, &e.on);
        let first = |kind: &str| evs.iter().find(|e| e.kind == kind);
        let response = evs
            .iter()
            .find(|e| e.kind == "referral-accepted" || e.kind == "referral-declined");
        let contacts: Vec<&EventFacts> = evs.iter().filter(|e| e.kind == "contact").collect();
        let mut by_mode = BTreeMap::new();
        for c in &contacts {
            *by_mode
                .entry(c.contact_mode.clone().unwrap_or_else(|| "unknown".into()))
                .or_insert(0) += 1;
        }
        let count = |kind: &str| {
            let mut m: BTreeMap<String, u32> = BTreeMap::new();
            for e in evs.iter().filter(|e| {
                e.kind == "onward-referral"
                    && e.onward_kind.as_deref().unwrap_or("referral") == kind
            }) {
                *m.entry(e.onward_category.clone().unwrap_or_default())
                    .or_insert(0) += 1;
            }
            m
        };
        let closed = first("closed");
        let declined = first("referral-declined");
        let ons4: Vec<_> = evs.iter().filter_map(|e| e.ons4.clone()).collect();
        let mut categories = Vec::new();
        let mut codes = Vec::new();
        for reason in &f.reasons {
            let snomed = reason
                .system
                .as_deref()
                .is_none_or(|s| s == crate::record::SNOMED_SYSTEM);
            if snomed && !codes.contains(&reason.code) {
                codes.push(reason.code.clone());
            }
            let category = self
                .codes
                .reasons
                .as_ref()
                .filter(|_| snomed)
                .and_then(|m| m.lookup("snomed", &reason.code, "dataset").ok().flatten())
                .map(|c| c.display.clone())
                .unwrap_or_else(|| UNCATEGORISED.to_string());
            if !categories.contains(&category) {
                categories.push(category);
            }
        }
        if categories.is_empty() {
            categories.push(UNCATEGORISED.to_string());
        }
        // Support offered: each onward referral or signposting by category, and its
        // SNOMED CT code (support offered code set) beside any the platform coded.
        let mut support = BTreeMap::new();
        let mut support_codes = Vec::new();
        let mut outcome_codes = Vec::new();
        let push = |codes: &mut Vec<String>, c: Option<String>| {
            if let Some(c) = c
                && !codes.contains(&c)
            {
                codes.push(c);
            }
        };
        for e in evs {
            if e.kind == "onward-referral" {
                let key = match e.onward_kind.as_deref() {
                    Some("signposting") => "signposting".to_string(),
                    _ => format!("onward.{}", e.onward_category.as_deref().unwrap_or("")),
                };
                *support.entry(self.codes.category(&key)).or_insert(0) += 1;
                push(
                    &mut support_codes,
                    self.codes.event(&key, "snomed").map(|c| c.code.clone()),
                );
            }
            for c in &e.support_offered {
                push(&mut support_codes, Some(c.code.clone()));
            }
            for c in &e.outcomes {
                push(&mut outcome_codes, Some(c.code.clone()));
            }
        }
        let outcome = closed
            .and_then(|c| c.closure_reason.as_ref())
            .map(|r| self.codes.category(&format!("closed.{r}")));
        DatasetRow {
            person: r
                .person_ref
                .as_deref()
                .and_then(PersonRef::from_hex)
                .map(|p| self.pseudonyms.pseudonym(&p))
                .unwrap_or_default(),
            programme: r.programme.clone(),
            practice_code: f.practice_code.clone(),
            practice_code_system: f.practice_code_system.clone(),
            nation: f.nation.clone(),
            referral_month: month_of(&f.referred_on).unwrap_or_default(),
            age_band_5y: f.age_band_5y.clone(),
            age_band: f.age_band.clone(),
            gender: f.gender.clone(),
            ethnic_category: f.ethnic_category.clone(),
            deprivation_index: f.deprivation_index.clone(),
            deprivation_decile: f.deprivation_decile,
            referral_source: f.referral_source.clone(),
            reason_categories: categories,
            reason_codes: codes,
            consent: f.consent.clone(),
            response: response.map(|e| e.kind.trim_start_matches("referral-").to_string()),
            days_to_response: response.and_then(day),
            days_to_first_contact: contacts.first().and_then(|c| day(c)),
            contacts: contacts.len() as u32,
            contacts_by_mode: by_mode,
            contact_minutes: contacts.iter().filter_map(|c| c.contact_minutes).sum(),
            swemwbs: scores(evs, "SWEMWBS"),
            wemwbs: scores(evs, "WEMWBS"),
            ons4_first: ons4.first().cloned(),
            ons4_last: (ons4.len() > 1).then(|| ons4.last().cloned()).flatten(),
            onward_referrals: count("referral"),
            signposting: count("signposting"),
            closure_reason: closed.and_then(|c| c.closure_reason.clone()),
            practice_acknowledgements: evs.iter().filter_map(|e| e.practice_ack.clone()).fold(
                BTreeMap::new(),
                |mut m, a| {
                    *m.entry(a).or_insert(0) += 1;
                    m
                },
            ),
            support_offered: support,
            support_codes,
            outcome,
            outcome_codes,
            // An episode ends when it is closed, or when the programme declined it.
            days_open: match closed.or(declined) {
                Some(end) => day(end),
                None => days_between(&f.referred_on, to),
            },
            open: closed.is_none() && declined.is_none(),
            lifecycle: "open".into(),
        }
    }
}

/// A referral the practice or the gateway ended: no longer open, its days counted to
/// the ending (when that came first and within the period).
fn end_row(row: &mut DatasetRow, state: &str, at_ms: i64, referred_on: &str, to: &str) {
    row.lifecycle = state.to_string();
    let Some(day) = chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|d| d.date_naive().format("%Y-%m-%d").to_string())
    else {
        return;
    };
    if day.as_str() <= to && row.open {
        row.open = false;
        row.days_open = days_between(referred_on, &day);
    }
}

/// First and last score of one instrument, and the change.
fn scores(evs: &[EventFacts], instrument: &str) -> Option<ScoreChange> {
    let all: Vec<f64> = evs
        .iter()
        .filter(|e| e.instrument.as_deref() == Some(instrument))
        .filter_map(|e| e.score)
        .collect();
    let (first, last) = (*all.first()?, *all.last()?);
    Some(ScoreChange {
        first,
        last,
        change: (all.len() > 1).then_some(last - first),
        count: all.len() as u32,
    })
}

fn parse<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| {
        GatewayError::permanent(
            Stage::Store,
            format!("{what} is not what it should be: {e}"),
        )
    })
}
