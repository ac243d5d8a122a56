//! The report as text (the terminal: aligned tables with `#` bars), as a text PDF of the
//! same tables listed (through the document writer's [`crate::record::pdf::render`],
//! unchanged), and as JSON with the same figures.

use serde_json::{Value, json};

use super::{Report, Section, TableRow};
use crate::record::pdf;

/// The longest `#` bar in the text.
const TEXT_BAR: u32 = 30;

/// How a table's rows are set out: in aligned columns with bars (a terminal's fixed-width
/// font), or listed, `label: cell, cell` (the PDF's Helvetica, whose spaces neither line
/// up nor survive the document writer's wrapping, which joins words with one space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Aligned,
    Listed,
}

impl Report {
    fn title(&self) -> String {
        format!("{}: programme report", self.programme)
    }

    /// The report as lines of text, the title first.
    pub fn text_lines(&self) -> Vec<String> {
        self.lines(Layout::Aligned)
    }

    fn lines(&self, layout: Layout) -> Vec<String> {
        let mut lines = vec![self.title()];
        lines.extend(self.header_lines());
        lines.push(String::new());
        lines.push("How the figures are protected".into());
        lines.extend(self.suppression.methods().iter().map(|p| format!("- {p}")));
        for section in &self.sections {
            lines.push(String::new());
            lines.extend(table(section, layout));
        }
        lines
    }

    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let mut text = self.text_lines().join("\n");
        text.push('\n');
        text
    }

    /// The report as a PDF of its text: the tables listed, without charts. (For the
    /// charts, print the HTML to PDF in a browser.)
    pub fn to_pdf(&self) -> Vec<u8> {
        pdf::render(&self.title(), &self.lines(Layout::Listed))
    }

    /// The same figures as JSON: counts and statistics as numbers, withheld figures as
    /// the strings the report shows (`"<5"`, `"<5 referrals"`).
    pub fn to_json(&self) -> Value {
        let row = |r: &TableRow| {
            json!({
                "label": r.label,
                "cells": r.cells.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
            })
        };
        let sections: Vec<Value> = self
            .sections
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "title": s.title,
                    "label_heading": s.label_heading,
                    "columns": s.columns,
                    "rows": s.rows.iter().map(row).collect::<Vec<_>>(),
                    "total": s.total.as_ref().map(row),
                    "note": s.note,
                })
            })
            .collect();
        json!({
            "programme": self.programme,
            "period": { "from": self.period.0, "to": self.period.1 },
            "generated_at": self.generated_at,
            "suppression": self.suppression,
            "referrals": self.referrals.to_json(),
            "in_report": self.in_report.to_json(),
            "left_out": {
                "consent_declined": self.consent_declined.to_json(),
                "opted_out": self.opted_out.to_json(),
            },
            "methods": self.suppression.methods(),
            "sections": sections,
        })
    }
}

/// A section as lines: its title, the headings, a line a row, the total, the note.
fn table(section: &Section, layout: Layout) -> Vec<String> {
    let mut rows: Vec<(&str, Vec<String>)> =
        vec![(section.label_heading.as_str(), section.columns.clone())];
    let cells = |r: &TableRow| -> Vec<String> { r.cells.iter().map(ToString::to_string).collect() };
    rows.extend(section.rows.iter().map(|r| (r.label.as_str(), cells(r))));
    rows.extend(section.total.iter().map(|r| (r.label.as_str(), cells(r))));
    let mut out = vec![
        section.title.clone(),
        "=".repeat(section.title.chars().count()),
    ];
    match layout {
        Layout::Aligned => out.extend(aligned(section, &rows)),
        Layout::Listed => out.extend(
            rows.iter()
                .map(|(label, cells)| format!("  {label}: {}", cells.join(", "))),
        ),
    }
    if let Some(note) = &section.note {
        out.push(format!("Note: {note}"));
    }
    out
}

/// The rows (the headings first) in columns, with a bar after a charted row's figure.
fn aligned(section: &Section, rows: &[(&str, Vec<String>)]) -> Vec<String> {
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let columns = rows.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|(_, c)| c.get(i).map(|s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let bars = if section.chart {
        section.bars(TEXT_BAR)
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for (i, (label, cells)) in rows.iter().enumerate() {
        let mut line = format!("{label:<label_width$}");
        for (cell, width) in cells.iter().zip(widths.iter().copied()) {
            line.push_str(&format!("  {cell:>width$}"));
        }
        // Row i of the table is the section's row i - 1 (the headings come first).
        if let Some(Some(bar)) = i.checked_sub(1).and_then(|r| bars.get(r)) {
            line.push_str("  ");
            line.push_str(&"#".repeat(*bar as usize));
        }
        out.push(line.trim_end().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::report::{Cell, Suppression};

    #[test]
    fn a_table_aligned_with_bars_for_shown_counts_only() {
        let s = Suppression::default();
        let section = Section {
            id: "t",
            title: "Things".into(),
            label_heading: "Thing".into(),
            columns: vec!["Referrals".into()],
            rows: vec![
                TableRow {
                    label: "apples".into(),
                    cells: vec![s.show(20)],
                },
                TableRow {
                    label: "pears".into(),
                    cells: vec![s.show(2)],
                },
            ],
            total: Some(TableRow {
                label: "Total".into(),
                cells: vec![s.show(22)],
            }),
            chart: true,
            note: Some("A note.".into()),
        };
        let lines = table(&section, Layout::Aligned);
        assert_eq!(
            lines,
            [
                "Things",
                "======",
                "Thing   Referrals",
                "apples         20  ##############################",
                "pears          <5",
                "Total          20",
                "Note: A note.",
            ]
        );
        assert_eq!(
            table(&section, Layout::Listed)[2..],
            [
                "  Thing: Referrals",
                "  apples: 20",
                "  pears: <5",
                "  Total: 20",
                "Note: A note."
            ]
        );
        assert_eq!(section.total.unwrap().cells, [Cell::Count(20)]);
    }
}
