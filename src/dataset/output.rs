//! The row-level extract written out: CSV (one row per referral, a header naming each
//! column) or JSON (schemas/dataset-extract.v1.schema.json), streamed as rows are built,
//! and audited — who, when, which programme, how many rows.

use std::collections::{BTreeMap, HashSet};

use super::config::DatasetConfig;
use super::extract::{CodeMaps, Extractor, Period};
use super::pseudonym::{PSEUDONYM_KEY, PersonRef, Pseudonymiser};
use super::row::{DatasetRow, ROW_VERSION, Totals};
use crate::error::{GatewayError, Result, Stage};
use crate::model::identifiers::IdentifierKind;
use crate::store::{AuditEntry, Store, Write};

/// The JSON extract's `$schema`.
pub const SCHEMA_ID: &str = "https://clw-gateway.org/schemas/dataset-extract.v1.schema.json";

/// How an extract is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// The pseudonymiser under `dataset.pseudonym_key`: the row-level extract refuses to run
/// without it.
pub fn pseudonymiser(config: &DatasetConfig) -> Result<Pseudonymiser> {
    let secret = config.pseudonym_key.as_ref().ok_or_else(|| {
        GatewayError::config(
            PSEUDONYM_KEY,
            "is not set: the row-level extract refuses to run without the key its \
             pseudonyms are made under",
        )
    })?;
    Pseudonymiser::from_secret(secret)
}

/// The person references of everyone on the opt-out list (one NHS or CHI number per
/// line; a 10-digit number is taken as either, as the file does not say which).
pub fn opted_out(config: &DatasetConfig, link_key: &[u8]) -> Result<HashSet<String>> {
    let Some(path) = &config.opt_out else {
        return Ok(HashSet::new());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        GatewayError::config(
            "dataset.opt_out",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let mut out = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let digits: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.is_empty() || digits.starts_with('#') {
            continue;
        }
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GatewayError::config(
                "dataset.opt_out",
                format!(
                    "{} line {}: not a 10-digit NHS or CHI number",
                    path.display(),
                    i + 1
                ),
            ));
        }
        for kind in [IdentifierKind::Nhs, IdentifierKind::Chi] {
            out.insert(PersonRef::of(link_key, kind, &digits).as_str().to_string());
        }
    }
    Ok(out)
}

/// Everything an extract needs besides the period.
pub struct ExtractJob<'a> {
    pub store: &'a Store,
    pub config: &'a DatasetConfig,
    /// The code maps categories come from.
    pub codes: CodeMaps,
    pub actor: &'a str,
}

impl ExtractJob<'_> {
    /// Builds the extractor (the key and opt-out list read now).
    async fn extractor<'p>(&'p self, pseudonyms: &'p Pseudonymiser) -> Result<Extractor<'p>> {
        let link_key = self.store.dataset_link_key().await?;
        Ok(Extractor {
            store: self.store,
            pseudonyms,
            codes: self.codes.clone(),
            opted_out: opted_out(self.config, &link_key)?,
        })
    }

    /// Streams every row of the period to `row`, then audits the extract.
    pub async fn rows(
        &self,
        period: &Period,
        what: &str,
        row: impl FnMut(DatasetRow) -> Result<()>,
    ) -> Result<(Totals, u64)> {
        let pseudonyms = pseudonymiser(self.config)?;
        self.rows_under(&pseudonyms, period, what, row).await
    }

    /// Every row of the period, for an aggregate report: it shows no person, so the
    /// pseudonyms are made under a key of this report's own, then forgotten — no
    /// `pseudonym_key` needed. Audited like an extract.
    pub async fn report_rows(&self, period: &Period) -> Result<(Vec<DatasetRow>, Totals)> {
        let pseudonyms = Pseudonymiser::new(&crate::secret::seal::new_key())?;
        let mut rows = Vec::new();
        let (totals, _) = self
            .rows_under(&pseudonyms, period, "report", |r| {
                rows.push(r);
                Ok(())
            })
            .await?;
        Ok((rows, totals))
    }

    /// The aggregate report of the period as `format` (html, json or pdf) bytes, small
    /// counts suppressed under `dataset.suppress_below` and the rest rounded to
    /// `dataset.round_to`.
    pub async fn report(&self, period: &Period, format: &str) -> Result<Vec<u8>> {
        let (rows, totals) = self.report_rows(period).await?;
        let suppression = super::report::Suppression {
            below: self.config.suppress_below,
            round_to: self.config.round_to,
        };
        let title = match &period.practice {
            Some(p) => format!("{} — practice {p}", period.programme),
            None => period.programme.clone(),
        };
        let report = super::report::Report::build(
            &title,
            &rows,
            &totals,
            (&period.from, &period.to),
            &suppression,
        );
        Ok(match format {
            "json" => serde_json::to_vec_pretty(&report.to_json()).unwrap_or_default(),
            "pdf" => report.to_pdf(),
            _ => report.to_html().into_bytes(),
        })
    }

    async fn rows_under(
        &self,
        pseudonyms: &Pseudonymiser,
        period: &Period,
        what: &str,
        row: impl FnMut(DatasetRow) -> Result<()>,
    ) -> Result<(Totals, u64)> {
        let extractor = self.extractor(pseudonyms).await?;
        let mut n = 0u64;
        let mut row = row;
        let totals = extractor
            .run(period, |r| {
                n += 1;
                row(r)
            })
            .await?;
        self.store
            .write(Write::Audit(AuditEntry {
                actor: self.actor.to_string(),
                action: crate::model::state::AuditAction::Extracted,
                flow: "dataset".into(),
                message_id: match &period.practice {
                    Some(p) => format!("{}/{p}:{}..{}", period.programme, period.from, period.to),
                    None => format!("{}:{}..{}", period.programme, period.from, period.to),
                },
                destination: None,
                fields: Vec::new(),
                agreement: None,
                detail: Some(format!(
                    "{what}: {n} rows of {} referrals (left out: consent declined {}, opted out {})",
                    totals.referrals, totals.consent_declined, totals.opted_out
                )),
            }))
            .await?;
        Ok((totals, n))
    }

    /// Writes the period's extract to `out` in `format`; answers the totals.
    pub async fn write(
        &self,
        period: &Period,
        format: Format,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<Totals> {
        let io = |e: std::io::Error| {
            GatewayError::permanent(Stage::Deliver, format!("cannot write the extract: {e}"))
        };
        match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(COLUMNS).map_err(|e| io(e.into()))?;
                let (totals, _) = self
                    .rows(period, "csv extract", |r| {
                        w.write_record(csv_record(&r)).map_err(|e| io(e.into()))
                    })
                    .await?;
                w.flush().map_err(io)?;
                Ok(totals)
            }
            Format::Json => {
                write!(
                    out,
                    "{{\"$schema\":\"{SCHEMA_ID}\",\"version\":\"{ROW_VERSION}\",\"programme\":{},\"from\":{},\"to\":{},\"rows\":[",
                    json(&period.programme),
                    json(&period.from),
                    json(&period.to)
                )
                .map_err(io)?;
                let mut first = true;
                let (totals, _) = self
                    .rows(period, "json extract", |r| {
                        if !first {
                            out.write_all(b",").map_err(io)?;
                        }
                        first = false;
                        serde_json::to_writer(&mut *out, &r).map_err(|e| io(e.into()))
                    })
                    .await?;
                write!(out, "],\"totals\":{}}}", serde_json::json!(totals)).map_err(io)?;
                Ok(totals)
            }
        }
    }
}

fn json(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The CSV extract's columns, in order.
pub const COLUMNS: [&str; 43] = [
    "person",
    "programme",
    "practice_code",
    "practice_code_system",
    "nation",
    "referral_month",
    "age_band_5y",
    "age_band",
    "gender",
    "ethnic_category",
    "deprivation_index",
    "deprivation_decile",
    "referral_source",
    "reason_categories",
    "reason_codes",
    "consent",
    "response",
    "days_to_response",
    "days_to_first_contact",
    "contacts",
    "contacts_by_mode",
    "contact_minutes",
    "swemwbs_first",
    "swemwbs_last",
    "swemwbs_change",
    "wemwbs_first",
    "wemwbs_last",
    "wemwbs_change",
    "ons4_first",
    "ons4_last",
    "onward_referrals",
    "signposting",
    "closure_reason",
    "days_open",
    "open",
    "swemwbs_count",
    "wemwbs_count",
    "support_offered",
    "support_codes",
    "outcome",
    "outcome_codes",
    "practice_acknowledgements",
    "lifecycle",
];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

fn counts(m: &BTreeMap<String, u32>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn ons4(o: &Option<super::row::Ons4Items>) -> String {
    o.as_ref()
        .map(|i| {
            format!(
                "{}/{}/{}/{}",
                i.life_satisfaction, i.worthwhile, i.happy_yesterday, i.anxious_yesterday
            )
        })
        .unwrap_or_default()
}

/// One row as CSV cells, in [`COLUMNS`] order.
pub fn csv_record(r: &DatasetRow) -> Vec<String> {
    let score = |s: &Option<super::row::ScoreChange>| {
        (
            opt(&s.as_ref().map(|s| s.first)),
            opt(&s.as_ref().map(|s| s.last)),
            opt(&s.as_ref().and_then(|s| s.change)),
            opt(&s.as_ref().map(|s| s.count)),
        )
    };
    let (sf, sl, sc, sn) = score(&r.swemwbs);
    let (wf, wl, wc, wn) = score(&r.wemwbs);
    vec![
        r.person.clone(),
        r.programme.clone(),
        opt(&r.practice_code),
        opt(&r.practice_code_system),
        opt(&r.nation),
        r.referral_month.clone(),
        r.age_band_5y.clone(),
        r.age_band.clone(),
        opt(&r.gender),
        opt(&r.ethnic_category),
        opt(&r.deprivation_index),
        opt(&r.deprivation_decile),
        opt(&r.referral_source),
        r.reason_categories.join("; "),
        r.reason_codes.join("; "),
        r.consent.clone(),
        opt(&r.response),
        opt(&r.days_to_response),
        opt(&r.days_to_first_contact),
        r.contacts.to_string(),
        counts(&r.contacts_by_mode),
        r.contact_minutes.to_string(),
        sf,
        sl,
        sc,
        wf,
        wl,
        wc,
        ons4(&r.ons4_first),
        ons4(&r.ons4_last),
        counts(&r.onward_referrals),
        counts(&r.signposting),
        opt(&r.closure_reason),
        opt(&r.days_open),
        r.open.to_string(),
        sn,
        wn,
        counts(&r.support_offered),
        r.support_codes.join("; "),
        opt(&r.outcome),
        r.outcome_codes.join("; "),
        counts(&r.practice_acknowledgements),
        r.lifecycle.clone(),
    ]
}
