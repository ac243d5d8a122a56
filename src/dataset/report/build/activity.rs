//! What happened to the referrals: time to response and first contact, contacts, onward
//! referrals and signposting, SWEMWBS change.

use std::collections::BTreeMap;

use super::{Cell, Section, Suppression, TableRow, counts, known_first};
use crate::dataset::row::DatasetRow;

/// The middle value (the mean of the two middle ones for an even count); not a number
/// for none (which [`Suppression::statistic`] never shows).
fn median(mut values: Vec<i64>) -> f64 {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if !n.is_multiple_of(2) => values[n / 2] as f64,
        _ => (values[n / 2 - 1] as f64 + values[n / 2] as f64) / 2.0,
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

pub(super) fn timing(rows: &[DatasetRow], s: &Suppression) -> Section {
    let line = |label: &str, days: Vec<i64>| {
        let n = days.len() as u64;
        TableRow {
            label: label.into(),
            cells: vec![s.show(n), s.statistic(n, || median(days))],
        }
    };
    Section {
        id: "timing",
        title: "Time to response and to first contact".into(),
        label_heading: "From referral to".into(),
        columns: vec!["Referrals".into(), "Median days".into()],
        rows: vec![
            line(
                "Response",
                rows.iter().filter_map(|r| r.days_to_response).collect(),
            ),
            line(
                "First contact",
                rows.iter()
                    .filter_map(|r| r.days_to_first_contact)
                    .collect(),
            ),
        ],
        total: None,
        chart: false,
        note: Some(format!(
            "Over the referrals with each date; a median from fewer than {} referrals is not \
             shown.",
            s.below.max(1)
        )),
    }
}

/// Contacts per referral: the number a GP system's record loses.
pub(super) fn contacts(rows: &[DatasetRow], s: &Suppression) -> Section {
    const BANDS: [(&str, u32, u32); 6] = [
        ("0", 0, 0),
        ("1", 1, 1),
        ("2", 2, 2),
        ("3-5", 3, 5),
        ("6-10", 6, 10),
        ("11+", 11, u32::MAX),
    ];
    let bands = BANDS
        .iter()
        .map(|(label, lo, hi)| {
            let n = rows
                .iter()
                .filter(|r| (*lo..=*hi).contains(&r.contacts))
                .count();
            (label.to_string(), n as u64)
        })
        .collect();
    counts(
        "contacts",
        "Contacts per referral",
        "Contacts",
        "Referrals",
        bands,
        Some(rows.len() as u64),
        s,
    )
}

pub(super) fn contact_summary(rows: &[DatasetRow], s: &Suppression) -> Section {
    let with: Vec<f64> = rows
        .iter()
        .filter(|r| r.contacts > 0)
        .map(|r| f64::from(r.contacts))
        .collect();
    let n = with.len() as u64;
    let all: u64 = rows.iter().map(|r| u64::from(r.contacts)).sum();
    Section {
        id: "contact-summary",
        title: "Contacts in all".into(),
        label_heading: "Figure".into(),
        columns: vec!["Value".into()],
        rows: vec![
            TableRow {
                label: "Referrals with a contact".into(),
                cells: vec![s.show(n)],
            },
            TableRow {
                label: "Contacts".into(),
                cells: vec![s.show(all)],
            },
            TableRow {
                label: "Mean contacts per referral with a contact".into(),
                cells: vec![s.statistic(n, || mean(&with))],
            },
        ],
        total: None,
        chart: false,
        note: None,
    }
}

/// The sum over the rows of one map of counts by category, and its total.
fn sum_maps(
    rows: &[DatasetRow],
    map: impl Fn(&DatasetRow) -> &BTreeMap<String, u32>,
) -> (Vec<(String, u64)>, u64) {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        for (k, v) in map(r) {
            *out.entry(k.clone()).or_insert(0) += u64::from(*v);
        }
    }
    let total = out.values().sum();
    (known_first(out), total)
}

pub(super) fn sums(
    rows: &[DatasetRow],
    s: &Suppression,
    id: &'static str,
    title: &str,
    map: impl Fn(&DatasetRow) -> &BTreeMap<String, u32>,
) -> Section {
    let (by, total) = sum_maps(rows, map);
    counts(id, title, "Category", "Number", by, Some(total), s)
}

pub(super) fn modes(rows: &[DatasetRow], s: &Suppression) -> Section {
    let (by, total) = sum_maps(rows, |r| &r.contacts_by_mode);
    counts(
        "modes",
        "Contacts by mode",
        "Mode",
        "Contacts",
        by,
        Some(total),
        s,
    )
}

pub(super) fn swemwbs(rows: &[DatasetRow], s: &Suppression) -> Section {
    // (first, last, change) of the episodes with two or more usable scores.
    let scored: Vec<(f64, f64, f64)> = rows
        .iter()
        .filter_map(|r| r.swemwbs.as_ref())
        .filter(|c| c.count >= 2)
        .map(|c| (c.first, c.last, c.change.unwrap_or(c.last - c.first)))
        .filter(|(a, b, c)| a.is_finite() && b.is_finite() && c.is_finite())
        .collect();
    let n = scored.len() as u64;
    let mean_of = |f: fn(&(f64, f64, f64)) -> f64| {
        let v: Vec<f64> = scored.iter().map(f).collect();
        s.statistic(n, || mean(&v))
    };
    let count = |label: &str, keep: fn(f64) -> bool| TableRow {
        label: label.into(),
        cells: vec![s.show(scored.iter().filter(|x| keep(x.2)).count() as u64)],
    };
    let stat = |label: &str, cell: Cell| TableRow {
        label: label.into(),
        cells: vec![cell],
    };
    Section {
        id: "swemwbs",
        title: "SWEMWBS change".into(),
        label_heading: "Figure".into(),
        columns: vec!["Value".into()],
        rows: vec![
            stat("Referrals with two or more scores", s.show(n)),
            stat("Mean first score", mean_of(|x| x.0)),
            stat("Mean last score", mean_of(|x| x.1)),
            stat("Mean change", mean_of(|x| x.2)),
            count("Score rose", |c| c > 0.0),
            count("Score unchanged", |c| c == 0.0),
            count("Score fell", |c| c < 0.0),
        ],
        total: None,
        chart: false,
        note: Some(
            "Short Warwick-Edinburgh Mental Wellbeing Scale, first and last score of each \
             episode with two or more; a higher score is better."
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![5, 1, 3]), 3.0);
        assert_eq!(median(vec![4, 1, 3, 2]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn not_a_number_scores_are_left_out() {
        let s = Suppression {
            below: 1,
            round_to: 1,
        };
        let scored = |first: f64| DatasetRow {
            swemwbs: Some(crate::dataset::row::ScoreChange {
                first,
                last: 20.0,
                change: None,
                count: 2,
            }),
            ..Default::default()
        };
        let section = swemwbs(&[scored(f64::NAN), scored(18.0)], &s);
        assert_eq!(section.rows[0].cells, [Cell::Count(1)]);
        assert_eq!(section.rows[3].cells, [Cell::Value(2.0)]);
    }
}
