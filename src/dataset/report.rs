//! The programme dataset's aggregate report (issue 19): what a programme's referrals did
//! in a period, per month and practice, response and time to first contact, contacts per
//! referral, SWEMWBS change, onward referrals, closures, and the deprivation, age and
//! gender profile — as tables with bar charts, rendered as text (the terminal, and a
//! text PDF) and as one self-contained HTML file an evaluator opens offline and prints.
//!
//! Safe to share: every count goes through [`Suppression::show`] — a count of 1 up to
//! `below` (default 5) is shown as `<5`, every other count is rounded to the nearest
//! `round_to` (default 5) — and a mean or median is shown only when it comes from at
//! least `below` referrals. Totals are computed from the true figures and rounded the
//! same way, independently of their cells: a suppressed cell cannot be recovered by
//! subtracting the cells shown from the total shown, as each of them is known only to
//! within ±2 at the defaults (see [`Suppression`]). The report holds only the shown
//! figures: the true counts never reach a renderer. `docs/dataset-report.md` is the
//! evaluator's account.
//!
//! - [`Report::build`] (in `build`): the sections from the rows;
//! - [`Report::to_html`] (in `html`): the HTML file, charts as inline SVG;
//! - [`Report::to_text`], [`Report::to_pdf`], [`Report::to_json`] (in `text`).

mod build;
mod html;
mod text;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dataset::row::{DatasetRow, Totals};

/// How small counts are hidden and the others rounded.
///
/// Why both: hiding only the small cells is undone by subtraction (a total of 23 less
/// the cells shown, 20, gives the hidden 3). Rounding every cell and every total to the
/// nearest 5, each from its own true figure, leaves differencing a range: a total shown
/// as 25 is 23–27, cells shown as 10 and 10 are 8–12 each, so the hidden cell is
/// anything from −1 to 11 — no better than `<5` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Suppression {
    /// Counts from 1 to `below - 1` are shown as `<{below}`; a mean or median from fewer
    /// referrals is not shown.
    pub below: u64,
    /// Every other count is rounded to the nearest multiple (halves up), and never below
    /// one multiple; 0 or 1 rounds nothing.
    pub round_to: u64,
}

impl Default for Suppression {
    fn default() -> Self {
        Suppression {
            below: 5,
            round_to: 5,
        }
    }
}

impl Suppression {
    /// A count as the report shows it. A true zero is shown as 0: an empty cell
    /// identifies no one, and hiding it would hide that nothing happened.
    pub fn show(&self, n: u64) -> Cell {
        if n == 0 {
            return Cell::Count(0);
        }
        if n < self.below {
            return Cell::Suppressed { below: self.below };
        }
        let step = self.round_to.max(1);
        let rounded = n.saturating_add(step / 2) / step * step;
        Cell::Count(rounded.max(step))
    }

    /// A mean or median over `n` referrals: shown (to one decimal) only when `n` is at
    /// least `below`, and never from none.
    pub fn statistic(&self, n: u64, value: impl FnOnce() -> f64) -> Cell {
        let least = self.below.max(1);
        if n < least {
            return Cell::TooFew { below: least };
        }
        let v = value();
        if v.is_finite() {
            Cell::Value((v * 10.0).round() / 10.0)
        } else {
            Cell::TooFew { below: least }
        }
    }

    /// The methods note: how the figures were protected, in the renderers' words.
    pub fn methods(&self) -> Vec<String> {
        let b = self.below;
        let r = self.round_to.max(1);
        vec![
            format!(
                "Counts from 1 to {} are shown as \"<{b}\". Every other count is rounded to \
                 the nearest {r} (halves up; never below {r}); a true zero is shown as 0.",
                b.saturating_sub(1)
            ),
            "Totals are computed from the true figures and rounded the same way, each on \
             its own, so cells need not add up to their total, and subtracting the cells \
             shown from a total gives only a range, not a hidden count."
                .to_string(),
            format!(
                "Means and medians are shown only when they come from at least {} \
                 referrals; otherwise \"<{} referrals\".",
                b.max(1),
                b.max(1)
            ),
            "Rows left out of the dataset (consent declined, opted out) are counted only, \
             and their counts are protected the same way."
                .to_string(),
        ]
    }
}

/// One figure as the report shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    /// A count, rounded (or a true zero).
    Count(u64),
    /// A count from 1 to `below - 1`, shown as `<{below}`.
    Suppressed { below: u64 },
    /// A mean or median, to one decimal.
    Value(f64),
    /// A mean or median from fewer than `below` referrals: `<{below} referrals`.
    TooFew { below: u64 },
}

impl Cell {
    /// The figure in JSON: a number, or a string for what is withheld.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Cell::Count(n) => (*n).into(),
            Cell::Value(v) => (*v).into(),
            _ => self.to_string().into(),
        }
    }

    /// The count a chart's bar may draw: only what is shown.
    pub fn shown_count(&self) -> Option<u64> {
        match self {
            Cell::Count(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether the cell withholds its figure.
    pub fn is_withheld(&self) -> bool {
        matches!(self, Cell::Suppressed { .. } | Cell::TooFew { .. })
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Count(n) => write!(f, "{n}"),
            Cell::Suppressed { below } => write!(f, "<{below}"),
            Cell::Value(v) => write!(f, "{v:.1}"),
            Cell::TooFew { below } => write!(f, "<{below} referrals"),
        }
    }
}

/// A table's row: a label and its figures, one a column.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub label: String,
    pub cells: Vec<Cell>,
}

/// One section of the report: a table, with a bar chart of its first column if `chart`.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// A stable name (the HTML element's id, the JSON key's value).
    pub id: &'static str,
    pub title: String,
    /// The heading over the labels.
    pub label_heading: String,
    /// The headings over the cells.
    pub columns: Vec<String>,
    pub rows: Vec<TableRow>,
    /// The total, where the rows are exclusive (each referral in one row) or summed.
    pub total: Option<TableRow>,
    pub chart: bool,
    pub note: Option<String>,
}

/// The aggregate report: the header's figures and the sections, every figure as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub programme: String,
    /// From and to, as given.
    pub period: (String, String),
    /// RFC 3339, UTC, to the second.
    pub generated_at: String,
    pub suppression: Suppression,
    /// Every referral the programme received in the period (`Totals::referrals`).
    pub referrals: Cell,
    /// The referrals the report's rows are.
    pub in_report: Cell,
    /// Left out of the rows: consent declined.
    pub consent_declined: Cell,
    /// Left out of the rows: on the opt-out list.
    pub opted_out: Cell,
    pub sections: Vec<Section>,
}

impl Report {
    /// The report on `rows` (the programme's rows for the period: the caller selects
    /// them) with `totals` for the header.
    pub fn build(
        programme: &str,
        rows: &[DatasetRow],
        totals: &Totals,
        period: (&str, &str),
        suppression: &Suppression,
    ) -> Report {
        let s = suppression;
        Report {
            programme: programme.to_string(),
            period: (period.0.to_string(), period.1.to_string()),
            generated_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            suppression: *s,
            referrals: s.show(totals.referrals),
            in_report: s.show(rows.len() as u64),
            consent_declined: s.show(totals.consent_declined),
            opted_out: s.show(totals.opted_out),
            sections: build::sections(rows, period, s),
        }
    }

    /// The section named `id`.
    pub fn section(&self, id: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.id == id)
    }

    /// The header's lines, `term: value`, shared by every renderer.
    fn header_lines(&self) -> Vec<String> {
        vec![
            format!("Period: {} to {}", self.period.0, self.period.1),
            format!("Referrals in the period: {}", self.referrals),
            format!("Referrals in this report: {}", self.in_report),
            format!(
                "Rows left out: consent declined {}, opted out {}",
                self.consent_declined, self.opted_out
            ),
            format!("Generated: {}", self.generated_at),
        ]
    }
}

impl Section {
    /// The chart's bar lengths, the longest `longest`: one per row, from its first cell,
    /// and none for a cell that shows no count (withheld), so a chart draws nothing the
    /// table does not show.
    pub fn bars(&self, longest: u32) -> Vec<Option<u32>> {
        let shown: Vec<Option<u64>> = self
            .rows
            .iter()
            .map(|r| r.cells.first().and_then(Cell::shown_count))
            .collect();
        let max = shown.iter().flatten().copied().max().unwrap_or(0).max(1);
        shown
            .into_iter()
            .map(|n| n.map(|n| ((n as f64 / max as f64) * f64::from(longest)).round() as u32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_are_hidden_and_the_others_rounded_to_five() {
        let s = Suppression::default();
        let shown: Vec<String> = [0, 1, 4, 5, 7, 8, 12, 13, 17, 18, 102]
            .iter()
            .map(|n| s.show(*n).to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "0", "<5", "<5", "5", "5", "10", "10", "15", "15", "20", "100"
            ]
        );
        assert_eq!(s.show(u64::MAX).shown_count().map(|n| n % 5), Some(0));
    }

    #[test]
    fn other_thresholds_and_no_rounding() {
        let s = Suppression {
            below: 10,
            round_to: 10,
        };
        assert_eq!(s.show(9), Cell::Suppressed { below: 10 });
        assert_eq!(s.show(9).to_string(), "<10");
        assert_eq!(s.show(10), Cell::Count(10));
        assert_eq!(s.show(14), Cell::Count(10));
        assert_eq!(s.show(15), Cell::Count(20), "halves up");
        let plain = Suppression {
            below: 0,
            round_to: 0,
        };
        assert_eq!(plain.show(1), Cell::Count(1));
        assert_eq!(plain.show(7), Cell::Count(7));
        assert_eq!(plain.statistic(0, || 1.0), Cell::TooFew { below: 1 });
    }

    #[test]
    fn statistics_only_from_enough_referrals_and_never_not_a_number() {
        let s = Suppression::default();
        assert_eq!(s.statistic(4, || 3.0).to_string(), "<5 referrals");
        assert_eq!(s.statistic(5, || 3.04).to_string(), "3.0");
        assert_eq!(s.statistic(5, || 2.25).to_json(), serde_json::json!(2.3));
        assert_eq!(s.statistic(9, || f64::NAN), Cell::TooFew { below: 5 });
        assert_eq!(s.show(3).to_json(), serde_json::json!("<5"));
        assert_eq!(s.show(13).to_json(), serde_json::json!(15));
        assert!(s.show(3).is_withheld() && !s.show(0).is_withheld());
    }
}
