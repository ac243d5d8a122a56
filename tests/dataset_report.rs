//! The programme dataset's aggregate report (issue 19) on a fixture of 40 referrals whose
//! figures were counted by hand from the fixture's rules below: small counts shown as
//! "<5" and never as themselves, the others and every total rounded to 5 from the true
//! figures, means and medians only from five referrals or more; the HTML self-contained
//! and escaped; and the report in a real browser (Chromium headless, as tests/console.rs
//! uses): a screenshot (`target/dataset-report.png`), the DOM it rendered, a PDF printed
//! from it (`target/dataset-report.pdf`).

use std::collections::BTreeMap;
#[path = "common/browser.rs"]
mod browser;

use browser::{chromium, target};

use clw_gateway::dataset::report::{Cell, Report, Suppression};
use clw_gateway::dataset::row::{DatasetRow, ScoreChange, Totals};

// The fixture: referral i of 0..40, each field a rule of i.

fn month(i: usize) -> &'static str {
    match i {
        0..12 => "2026-01",
        12..15 => "2026-02",
        15..23 => "2026-03",
        _ => "2026-04",
    }
}

fn practice(i: usize) -> &'static str {
    match i {
        0..18 => "A81001",
        18..31 => "A81002",
        31..38 => "A81003",
        _ => "B82099",
    }
}

fn response(i: usize) -> Option<&'static str> {
    match i {
        _ if i % 10 == 9 => Some("declined"),
        36..=38 => None,
        _ => Some("accepted"),
    }
}

fn contacts(i: usize) -> u32 {
    if response(i) == Some("accepted") {
        [0, 1, 2, 3, 4, 6, 11, 2][i % 8]
    } else {
        0
    }
}

fn decile(i: usize) -> Option<u8> {
    [
        Some(1),
        Some(1),
        Some(1),
        Some(2),
        Some(2),
        Some(3),
        Some(5),
        Some(8),
        Some(10),
        None,
    ][i % 10]
}

const AGES: [&str; 15] = [
    "18-24", "25-34", "25-34", "35-44", "35-44", "35-44", "45-54", "45-54", "45-54", "45-54",
    "55-64", "55-64", "65-74", "75+", "unknown",
];

fn counts(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), *n))
        .collect()
}

fn row(i: usize) -> DatasetRow {
    let c = contacts(i);
    let swemwbs = match (c, i % 3) {
        (0, _) => None,
        (2.., 1..) => {
            let first = 18.0 + (i % 5) as f64;
            let last = first + (i % 4) as f64 - 1.0;
            Some(ScoreChange {
                first,
                last,
                change: Some(last - first),
                count: 2,
            })
        }
        _ => Some(ScoreChange {
            first: 20.0,
            last: 20.0,
            change: None,
            count: 1,
        }),
    };
    let reasons: Vec<String> = [(2, "loneliness"), (5, "money"), (7, "housing")]
        .iter()
        .filter(|(m, _)| i.is_multiple_of(*m))
        .map(|(_, r)| r.to_string())
        .collect();
    DatasetRow {
        person: format!("P-{i:032x}"),
        programme: "healthy-links".into(),
        practice_code: Some(practice(i).into()),
        referral_month: month(i).into(),
        age_band: AGES[i % 15].into(),
        gender: match i % 3 {
            _ if i == 13 => Some("other".into()),
            0 => Some("female".into()),
            1 => Some("male".into()),
            _ => None,
        },
        deprivation_index: decile(i).map(|_| "simd".into()),
        deprivation_decile: decile(i),
        reason_categories: if reasons.is_empty() {
            vec!["other (uncategorised)".into()]
        } else {
            reasons
        },
        consent: "full".into(),
        response: response(i).map(String::from),
        days_to_response: response(i).map(|_| 1 + (i % 7) as i64),
        days_to_first_contact: (c > 0).then_some(3 + (i % 5) as i64),
        contacts: c,
        contacts_by_mode: counts(&[("face-to-face", c.div_ceil(2)), ("telephone", c / 2)]),
        swemwbs,
        onward_referrals: counts(&[
            ("housing", u32::from(i.is_multiple_of(6))),
            ("debt advice", 2 * u32::from(i.is_multiple_of(9))),
            ("mental health", u32::from(i == 5 || i == 6)),
        ]),
        signposting: counts(&[
            ("physical activity", u32::from(i.is_multiple_of(2))),
            ("social groups", u32::from(i.is_multiple_of(3))),
        ]),
        closure_reason: match i % 4 {
            _ if i >= 30 => None,
            0 => Some("goals met".into()),
            1 => Some("disengaged".into()),
            2 => Some("moved away".into()),
            _ => None,
        },
        open: i >= 30,
        ..Default::default()
    }
}

fn fixture() -> Vec<DatasetRow> {
    (0..40).map(row).collect()
}

const TOTALS: Totals = Totals {
    referrals: 45,
    consent_declined: 3,
    opted_out: 2,
};
const PERIOD: (&str, &str) = ("2026-01-01", "2026-04-30");

fn report_of(programme: &str, rows: &[DatasetRow], s: &Suppression) -> Report {
    Report::build(programme, rows, &TOTALS, PERIOD, s)
}

fn report() -> Report {
    report_of("Healthy Links (Fife)", &fixture(), &Suppression::default())
}

/// Rows as shown: each label with its cells.
type Shown = Vec<(String, Vec<String>)>;

/// A section's rows and total, as shown.
fn shown(r: &Report, id: &str) -> (Shown, Option<Vec<String>>) {
    let s = r.section(id).unwrap_or_else(|| panic!("a section {id}"));
    let cells = |c: &[Cell]| -> Vec<String> { c.iter().map(Cell::to_string).collect() };
    (
        s.rows
            .iter()
            .map(|r| (r.label.clone(), cells(&r.cells)))
            .collect(),
        s.total.as_ref().map(|t| cells(&t.cells)),
    )
}

/// `(label, [cells])` written as literals.
fn rows(want: &[(&str, &[&str])]) -> Shown {
    want.iter()
        .map(|(l, c)| (l.to_string(), c.iter().map(|s| s.to_string()).collect()))
        .collect()
}

/// A one-column section as shown: its rows and its total.
fn assert_one_column(r: &Report, id: &str, want: &[(&str, &str)], total: Option<&str>) {
    let want: Vec<(&str, &[&str])> = want
        .iter()
        .map(|(l, c)| (*l, std::slice::from_ref(c)))
        .collect();
    let (got, got_total) = shown(r, id);
    assert_eq!(got, rows(&want), "{id}");
    assert_eq!(got_total, total.map(|t| vec![t.to_string()]), "{id} total");
}

/// The fixture's true small counts, counted from its rules (not by the report): what
/// the report must hide.
fn how_many(keep: impl Fn(usize) -> bool) -> usize {
    (0..40).filter(|i| keep(*i)).count()
}

#[test]
fn the_fixture_has_the_small_counts_the_report_hides() {
    assert_eq!(how_many(|i| month(i) == "2026-02"), 3);
    assert_eq!(how_many(|i| practice(i) == "B82099"), 2);
    assert_eq!(how_many(|i| response(i) == Some("declined")), 4);
    assert_eq!(how_many(|i| response(i).is_none()), 3);
    assert_eq!(how_many(|i| contacts(i) == 1), 4);
    assert_eq!(how_many(|i| decile(i) == Some(3)), 4);
    let f = fixture();
    let onward = |category: &str| -> u32 {
        f.iter()
            .filter_map(|r| r.onward_referrals.get(category))
            .sum()
    };
    assert_eq!(onward("mental health"), 2);
    assert_eq!(
        f.iter()
            .filter(|r| r.gender.as_deref() == Some("other"))
            .count(),
        1
    );
    assert_eq!(f.iter().map(|r| r.contacts).sum::<u32>(), 112);
}

#[test]
fn counts_are_hidden_under_five_and_rounded_to_five_as_counted_by_hand() {
    let r = report();
    assert_eq!(
        (r.referrals.to_string(), r.in_report.to_string()),
        ("45".into(), "40".into())
    );
    assert_eq!(r.consent_declined.to_string(), "<5", "3 declined consent");
    assert_eq!(r.opted_out.to_string(), "<5", "2 opted out");
    // 12, 3, 8, 17.
    let months = [
        ("2026-01", "10"),
        ("2026-02", "<5"),
        ("2026-03", "10"),
        ("2026-04", "15"),
    ];
    assert_one_column(&r, "months", &months, Some("40"));
    // 33, 4, 3.
    let response = [("accepted", "35"), ("declined", "<5"), ("awaiting", "<5")];
    assert_one_column(&r, "response", &response, Some("40"));
    // 12, 4, 9, 8, 3, 4.
    let bands = [
        ("0", "10"),
        ("1", "<5"),
        ("2", "10"),
        ("3-5", "10"),
        ("6-10", "<5"),
        ("11+", "<5"),
    ];
    assert_one_column(&r, "contacts", &bands, Some("40"));
    // 62, 50; 112.
    assert_one_column(
        &r,
        "modes",
        &[("face-to-face", "60"), ("telephone", "50")],
        Some("110"),
    );
    // 8, 8, 7, 7, 10 (open).
    let closures = [
        ("disengaged", "10"),
        ("goals met", "10"),
        ("moved away", "5"),
        ("not recorded", "5"),
        ("still open", "10"),
    ];
    assert_one_column(&r, "closures", &closures, Some("40"));
    // 6, 20, 8, 14; a referral may have several: no total.
    let reasons = [
        ("housing", "5"),
        ("loneliness", "20"),
        ("money", "10"),
        ("other (uncategorised)", "15"),
    ];
    assert_one_column(&r, "reasons", &reasons, None);
    // 12, 8, 4, 0, 4, 0, 0, 4, 0, 4, 4: a true zero is 0.
    let deciles = [
        ("1 (most deprived)", "10"),
        ("2", "10"),
        ("3", "<5"),
        ("4", "0"),
        ("5", "<5"),
        ("6", "0"),
        ("7", "0"),
        ("8", "<5"),
        ("9", "0"),
        ("10 (least deprived)", "<5"),
        ("unknown", "<5"),
    ];
    assert_one_column(&r, "deprivation", &deciles, Some("40"));
    assert!(
        r.section("deprivation")
            .unwrap()
            .note
            .as_ref()
            .unwrap()
            .contains("SIMD")
    );
    // 3, 6, 9, 12, 4, 2, 2, 2.
    let ages = [
        ("18-24", "<5"),
        ("25-34", "5"),
        ("35-44", "10"),
        ("45-54", "10"),
        ("55-64", "<5"),
        ("65-74", "<5"),
        ("75+", "<5"),
        ("unknown", "<5"),
    ];
    assert_one_column(&r, "ages", &ages, Some("40"));
    // 14, 12, 1, 13.
    let genders = [
        ("female", "15"),
        ("male", "10"),
        ("other", "<5"),
        ("not recorded", "15"),
    ];
    assert_one_column(&r, "gender", &genders, Some("40"));
}

#[test]
fn totals_are_rounded_from_the_true_figures_so_no_hidden_cell_is_recovered() {
    let r = report();
    // Per practice: referrals, accepted, with a contact, contacts.
    let (got, total) = shown(&r, "practices");
    let want: [(&str, &[&str]); 4] = [
        ("A81001", &["20", "15", "15", "60"]), // 18, 17, 14, 58
        ("A81002", &["15", "10", "10", "45"]), // 13, 11, 10, 46
        ("A81003", &["5", "5", "<5", "10"]),   // 7, 5, 4, 8
        ("B82099", &["<5", "0", "0", "0"]),    // 2, 0, 0, 0
    ];
    assert_eq!(got, rows(&want));
    // 40, 33, 28, 112: accepted shows 35 though its cells shown add to 30.
    assert_eq!(total.unwrap(), ["40", "35", "30", "110"]);
    // Onward referrals 10, 7, 2 = 19: the total, 20, less the cells shown, 15, is 5 —
    // not the hidden 2.
    let onward = [
        ("debt advice", "10"),
        ("housing", "5"),
        ("mental health", "<5"),
    ];
    assert_one_column(&r, "onward", &onward, Some("20"));
    let signposting = [("physical activity", "20"), ("social groups", "15")];
    assert_one_column(&r, "signposting", &signposting, Some("35"));
}

#[test]
fn medians_and_means_only_from_five_referrals_or_more() {
    let r = report();
    let (timing, _) = shown(&r, "timing");
    // 37 responses, days 1..7 by i % 7: median 4; 28 first contacts, 3..7: median 5.
    assert_eq!(
        timing,
        rows(&[
            ("Response", &["35", "4.0"]),
            ("First contact", &["30", "5.0"])
        ])
    );
    let (summary, _) = shown(&r, "contact-summary");
    let want: [(&str, &[&str]); 3] = [
        ("Referrals with a contact", &["30"]),
        ("Contacts", &["110"]),
        ("Mean contacts per referral with a contact", &["4.0"]), // 112 / 28
    ];
    assert_eq!(summary, rows(&want));
    // 16 episodes with two scores: means 19.875, 20.6875, 0.8125; 11 rose, 2 same, 3 fell.
    let (swemwbs, _) = shown(&r, "swemwbs");
    let values: Vec<&str> = swemwbs.iter().map(|(_, c)| c[0].as_str()).collect();
    assert_eq!(values, ["15", "19.9", "20.7", "0.8", "10", "<5", "<5"]);

    // Four referrals: 4 responses, 3 first contacts, 1 with two scores.
    let few = report_of("Few", &fixture()[..4], &Suppression::default());
    let (timing, _) = shown(&few, "timing");
    let withheld: [(&str, &[&str]); 2] = [
        ("Response", &["<5", "<5 referrals"]),
        ("First contact", &["<5", "<5 referrals"]),
    ];
    assert_eq!(timing, rows(&withheld));
    assert_eq!(shown(&few, "contact-summary").0[2].1, ["<5 referrals"]);
    assert!(
        shown(&few, "swemwbs").0[1..4]
            .iter()
            .all(|(_, c)| c[0] == "<5 referrals")
    );
    // A threshold of 3, no rounding: days 1, 2, 3, 4 → 2.5; 4, 5, 6 → 5; contacts 1, 2, 3.
    let three = Suppression {
        below: 3,
        round_to: 1,
    };
    let few = report_of("Few", &fixture()[..4], &three);
    let (timing, _) = shown(&few, "timing");
    assert_eq!(
        timing,
        rows(&[
            ("Response", &["4", "2.5"]),
            ("First contact", &["3", "5.0"])
        ])
    );
    assert_eq!(shown(&few, "contact-summary").0[2].1, ["2.0"]);
}

/// The texts of an HTML fragment's elements, entities decoded.
fn texts(fragment: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(std::mem::take(&mut current));
            }
            '>' => in_tag = false,
            c if !in_tag => current.push(c),
            _ => {}
        }
    }
    out.push(current);
    out.into_iter()
        .map(|t| {
            t.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .filter(|t| !t.trim().is_empty())
        .collect()
}

/// A section's table in an HTML page: each row's texts.
fn table_in(html: &str, id: &str) -> Vec<Vec<String>> {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id}"));
    let section = &html[start..];
    let section = &section[..section.find("</section>").unwrap()];
    let table = &section[section.find("<table").unwrap()..];
    table
        .split("<tr")
        .skip(1)
        .map(|tr| {
            let tr = tr.split("</tr>").next().unwrap_or_default();
            texts(&tr[tr.find('>').map_or(0, |i| i + 1)..])
        })
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// What the browser must show of the months table: 12, 3, 8, 17 and 40 referrals.
fn assert_months_table(html: &str) {
    let want: Vec<Vec<String>> = [
        &["Month", "Referrals"][..],
        &["2026-01", "10"],
        &["2026-02", "<5"],
        &["2026-03", "10"],
        &["2026-04", "15"],
        &["Total", "40"],
    ]
    .iter()
    .map(|r| strings(r))
    .collect();
    assert_eq!(table_in(html, "months"), want);
}

#[test]
fn the_html_shows_the_figures_hides_the_small_ones_and_names_no_url() {
    let html = report().to_html();
    assert_months_table(&html);
    let practices = table_in(&html, "practices");
    assert_eq!(practices[4], strings(&["B82099", "<5", "0", "0", "0"]));
    // The chart: 2026-02's bar is not drawn, its value is "<5", and 3 is nowhere.
    let chart = html
        .split("2026-02: ")
        .nth(1)
        .unwrap()
        .split("</g>")
        .next()
        .unwrap();
    assert!(chart.contains("width=\"0\""), "{chart}");
    assert!(
        chart.contains(">&lt;5</text>") && !chart.contains(">3<"),
        "{chart}"
    );
    let months = &html[html.find("id=\"months\"").unwrap()..];
    let months = &months[..months.find("</section>").unwrap()];
    assert!(
        !months.contains(">3<") && !months.contains(": 3<"),
        "the true 3 shown"
    );
    assert!(
        html.contains("<dt>Rows left out</dt><dd>consent declined &lt;5, opted out &lt;5</dd>")
    );

    // Self-contained: nothing fetched, nothing run.
    let lower = html.to_lowercase();
    for outside in [
        "http:", "https:", "src=", "href=", "url(", "@import", "<script", "<link", "<img",
    ] {
        assert!(!lower.contains(outside), "{outside} in the report");
    }
    assert!(lower.contains("@media print"), "a print stylesheet");

    // Every string escaped: the programme's name and a category.
    let mut rows = fixture();
    rows[0]
        .onward_referrals
        .insert("<img src=x onerror=alert(1)>".into(), 9);
    let hostile = report_of(
        "Links <script>alert('x')</script> & Co",
        &rows,
        &Suppression::default(),
    );
    let html = hostile.to_html();
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "markup from the data"
    );
    assert!(html.contains(
        "<h1 id=\"programme\">Links &lt;script&gt;alert('x')&lt;/script&gt; &amp; Co</h1>"
    ));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
}

#[test]
fn text_json_and_pdf_carry_the_same_figures() {
    let r = report();
    let text = r.to_text();
    assert!(
        text.starts_with("Healthy Links (Fife): programme report\n"),
        "{text}"
    );
    // Labels 7 wide, "Referrals" 9: 10 of at most 15 is 20 of 30 #.
    let bar = "#".repeat(20);
    for line in [
        format!("2026-01         10  {bar}"),
        "2026-02         <5".into(),
        "Total           40".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    let json = r.to_json();
    let months = json["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "months")
        .unwrap();
    let cells: Vec<&serde_json::Value> = months["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["cells"][0])
        .collect();
    assert_eq!(
        cells,
        [
            &serde_json::json!(10),
            &serde_json::json!("<5"),
            &serde_json::json!(10),
            &serde_json::json!(15)
        ]
    );
    assert_eq!(months["total"]["cells"][0], 40);
    assert_eq!(json["left_out"]["consent_declined"], "<5");
    assert_eq!(
        json["suppression"],
        serde_json::json!({"below": 5, "round_to": 5})
    );
    let pdf = r.to_pdf();
    assert!(pdf.starts_with(b"%PDF-"));
    let raw = String::from_utf8_lossy(&pdf);
    for want in [
        "(Referrals per month)",
        "(  2026-02: <5)",
        "(  Practice: Referrals, Accepted, With a contact, Contacts)",
        "(  A81003: 5, 5, <5, 10)",
        "(Healthy Links (Fife): programme report)",
    ] {
        assert!(raw.contains(want), "{want} in the PDF");
    }
}

#[test]
fn the_report_in_a_real_browser_a_screenshot_its_figures_and_a_pdf() {
    let work = tempfile::tempdir().unwrap();
    let page = work.path().join("dataset-report.html");
    std::fs::write(&page, report().to_html()).unwrap();

    // The screenshot.
    browser::screenshot(work.path(), &page, 1400, 3800, "dataset-report.png");

    // The DOM as the browser built it: the figures, "<5" where a count is small.
    let dom = chromium(work.path(), &page, &["--dump-dom".into()]);
    assert_months_table(&dom);
    assert_eq!(table_in(&dom, "response")[3], strings(&["awaiting", "<5"]));
    assert_eq!(
        table_in(&dom, "timing")[1..],
        [
            strings(&["Response", "35", "4.0"]),
            strings(&["First contact", "30", "5.0"])
        ]
    );
    assert!(texts(&dom).iter().any(|t| t == "Healthy Links (Fife)"));

    // Printed to PDF, as an evaluator would.
    let pdf = work.path().join("report.pdf");
    chromium(
        work.path(),
        &page,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
    );
    let printed = std::fs::read(&pdf).expect("Chromium printed the PDF");
    assert!(
        printed.starts_with(b"%PDF-") && printed.len() > 10_000,
        "{} bytes",
        printed.len()
    );
    let kept = target("dataset-report.pdf");
    std::fs::copy(&pdf, &kept).unwrap();
    println!(
        "printed to PDF: {} ({} bytes)",
        kept.display(),
        printed.len()
    );
}
