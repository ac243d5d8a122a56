//! The report's sections from the dataset's rows: true counts here, shown figures out.

use std::collections::{BTreeMap, BTreeSet};

use super::{Cell, Section, Suppression, TableRow};
use crate::dataset::row::DatasetRow;
use activity::{contact_summary, contacts, modes, sums, swemwbs, timing};
use profile::{ages, deprivation, genders};

mod activity;
mod profile;

/// Labels for what is not recorded; listed after the others.
const UNKNOWN: &str = "unknown";
const NOT_RECORDED: &str = "not recorded";
/// Months filled in between the first and last at most (20 years): a stray year in a
/// period or a row does not make a table of thousands of empty months.
const MAX_MONTHS: i64 = 240;

/// Every section, in the report's order.
pub(super) fn sections(rows: &[DatasetRow], period: (&str, &str), s: &Suppression) -> Vec<Section> {
    vec![
        months(rows, period, s),
        practices(rows, s),
        response(rows, s),
        timing(rows, s),
        contacts(rows, s),
        contact_summary(rows, s),
        modes(rows, s),
        swemwbs(rows, s),
        sums(rows, s, "onward", "Onward referrals by category", |r| {
            &r.onward_referrals
        }),
        sums(rows, s, "signposting", "Signposting by category", |r| {
            &r.signposting
        }),
        closures(rows, s),
        reasons(rows, s),
        deprivation(rows, s),
        ages(rows, s),
        genders(rows, s),
    ]
}

/// A section of one count column, its rows in the order given.
fn counts(
    id: &'static str,
    title: &str,
    label_heading: &str,
    column: &str,
    rows: Vec<(String, u64)>,
    total: Option<u64>,
    s: &Suppression,
) -> Section {
    Section {
        id,
        title: title.to_string(),
        label_heading: label_heading.to_string(),
        columns: vec![column.to_string()],
        rows: rows
            .into_iter()
            .map(|(label, n)| TableRow {
                label,
                cells: vec![s.show(n)],
            })
            .collect(),
        total: total.map(|n| TableRow {
            label: "Total".into(),
            cells: vec![s.show(n)],
        }),
        chart: true,
        note: None,
    }
}

/// Each referral counted once under each label `labels` gives it.
fn tally<I>(rows: &[DatasetRow], labels: impl Fn(&DatasetRow) -> I) -> BTreeMap<String, u64>
where
    I: IntoIterator<Item = String>,
{
    let mut out = BTreeMap::new();
    for r in rows {
        let once: BTreeSet<String> = labels(r).into_iter().collect();
        for label in once {
            *out.entry(label).or_insert(0) += 1;
        }
    }
    out
}

/// The labels in order, "unknown" and "not recorded" last.
fn known_first(map: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let (mut known, rest): (Vec<_>, Vec<_>) = map
        .into_iter()
        .partition(|(l, _)| l != UNKNOWN && l != NOT_RECORDED);
    known.extend(rest);
    known
}

/// `YYYY-MM…` as a month number (year × 12 + month − 1).
fn month_number(s: &str) -> Option<i64> {
    let (y, m) = (s.get(..4)?, s.get(5..7)?);
    if s.as_bytes().get(4) != Some(&b'-')
        || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (y, m): (i64, i64) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12).contains(&m).then_some(y * 12 + m - 1)
}

fn months(rows: &[DatasetRow], period: (&str, &str), s: &Suppression) -> Section {
    let mut by_month = tally(rows, |r| [r.referral_month.clone()]);
    // Months without a referral shown as 0, from the period's start to its end (and any
    // row outside it).
    let numbers: Vec<i64> = by_month
        .keys()
        .map(String::as_str)
        .chain([period.0, period.1])
        .filter_map(month_number)
        .collect();
    if let (Some(first), Some(last)) = (numbers.iter().min(), numbers.iter().max())
        && last - first < MAX_MONTHS
    {
        for m in *first..=*last {
            let label = format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1);
            by_month.entry(label).or_insert(0);
        }
    }
    let mut section = counts(
        "months",
        "Referrals per month",
        "Month",
        "Referrals",
        by_month.into_iter().collect(),
        Some(rows.len() as u64),
        s,
    );
    section.note = Some("By the month the referral was made.".into());
    section
}

fn practice_of(r: &DatasetRow) -> String {
    r.practice_code
        .clone()
        .unwrap_or_else(|| NOT_RECORDED.into())
}

fn accepted(r: &DatasetRow) -> bool {
    r.response.as_deref() == Some("accepted")
}

/// A practice's referrals, accepted, with a contact, and contacts.
fn practice_figures<'a>(rows: impl Iterator<Item = &'a DatasetRow>) -> [u64; 4] {
    rows.fold([0u64; 4], |mut f, r| {
        f[0] += 1;
        f[1] += u64::from(accepted(r));
        f[2] += u64::from(r.contacts > 0);
        f[3] += u64::from(r.contacts);
        f
    })
}

fn practices(rows: &[DatasetRow], s: &Suppression) -> Section {
    let cells = |f: [u64; 4]| f.iter().map(|n| s.show(*n)).collect::<Vec<Cell>>();
    let practices = known_first(tally(rows, |r| [practice_of(r)]));
    Section {
        id: "practices",
        title: "Referrals by practice".into(),
        label_heading: "Practice".into(),
        columns: ["Referrals", "Accepted", "With a contact", "Contacts"]
            .map(String::from)
            .to_vec(),
        rows: practices
            .into_iter()
            .map(|(code, _)| TableRow {
                cells: cells(practice_figures(
                    rows.iter().filter(|r| practice_of(r) == code),
                )),
                label: code,
            })
            .collect(),
        total: Some(TableRow {
            label: "Total".into(),
            cells: cells(practice_figures(rows.iter())),
        }),
        chart: true,
        note: Some("The practice's ODS code (or Scottish practice code).".into()),
    }
}

fn response(rows: &[DatasetRow], s: &Suppression) -> Section {
    let mut by = tally(rows, |r| {
        [r.response.clone().unwrap_or_else(|| "awaiting".into())]
    });
    let mut ordered: Vec<(String, u64)> = ["accepted", "declined", "awaiting"]
        .iter()
        .map(|l| (l.to_string(), by.remove(*l).unwrap_or(0)))
        .collect();
    ordered.extend(by);
    let mut section = counts(
        "response",
        "Response to the referral",
        "Response",
        "Referrals",
        ordered,
        Some(rows.len() as u64),
        s,
    );
    section.note = Some("Awaiting: no response from the programme yet.".into());
    section
}

fn closures(rows: &[DatasetRow], s: &Suppression) -> Section {
    let by = tally(rows, |r| {
        [match (&r.closure_reason, r.open) {
            (_, true) => "still open".to_string(),
            (Some(reason), false) => reason.clone(),
            (None, false) => NOT_RECORDED.to_string(),
        }]
    });
    let mut by = known_first(by);
    // "still open" last of all: it is no outcome.
    by.sort_by_key(|(l, _)| l == "still open");
    let mut section = counts(
        "closures",
        "Outcomes: why episodes closed",
        "Closure reason",
        "Referrals",
        by,
        Some(rows.len() as u64),
        s,
    );
    section.note = Some("Still open at the end of the period: no outcome yet.".into());
    section
}

fn reasons(rows: &[DatasetRow], s: &Suppression) -> Section {
    let by = known_first(tally(rows, |r| r.reason_categories.clone()));
    let mut section = counts(
        "reasons",
        "Reasons for referral by category",
        "Category",
        "Referrals",
        by,
        None,
        s,
    );
    section.note = Some(
        "A referral may give more than one reason: the rows do not add up to the referrals.".into(),
    );
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_numbers() {
        assert_eq!(month_number("2026-01"), Some(2026 * 12));
        assert_eq!(month_number("2026-12-31"), Some(2026 * 12 + 11));
        for bad in ["2026-13", "2026-1", "", "abcd-ef", "2026/01", "20é6-01"] {
            assert_eq!(month_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_months_in_the_period_are_zero_and_a_stray_year_fills_nothing() {
        let s = Suppression::default();
        let row = |m: &str| DatasetRow {
            referral_month: m.into(),
            ..Default::default()
        };
        let section = months(&[row("2026-03")], ("2026-01-01", "2026-04-30"), &s);
        let labels: Vec<&str> = section.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["2026-01", "2026-02", "2026-03", "2026-04"]);
        assert_eq!(section.rows[0].cells, [Cell::Count(0)]);
        assert_eq!(section.rows[2].cells, [Cell::Suppressed { below: 5 }]);
        let stray = months(&[row("2026-03"), row("0001-01")], ("", ""), &s);
        assert_eq!(stray.rows.len(), 2);
    }

    #[test]
    fn nothing_panics_on_no_rows() {
        for section in sections(&[], ("", ""), &Suppression::default()) {
            assert!(
                section.rows.iter().all(|r| !r.cells.is_empty()),
                "{}",
                section.id
            );
        }
    }
}
