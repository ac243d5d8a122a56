//! The data-flow diagram: practices (grouped by programme) send referrals through the
//! gateway to each programme's destinations, labelled with the agreement each receives
//! data under; platforms send events back through the gateway to the record writers that
//! write to the practices. One self-contained SVG: no script, no external reference.

use std::fmt::Write as _;

use super::pack::{Destination, Pack};
use crate::model::markup::escape as esc;

const WIDTH: i32 = 1180;
const BOX_W: i32 = 300;
const BOX_H: i32 = 54;
const GAP: i32 = 16;
const LEFT: i32 = 20;
const RIGHT: i32 = WIDTH - 20 - BOX_W;
const GW_X: i32 = 440;
const GW_W: i32 = 140;

/// A box of up to three lines at (x, y).
fn node(out: &mut String, x: i32, y: i32, class: &str, lines: &[String]) {
    let _ = write!(
        out,
        r#"<rect class="{class}" x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>"#
    );
    for (i, line) in lines.iter().take(3).enumerate() {
        let weight = if i == 0 { " font-weight=\"bold\"" } else { "" };
        let _ = write!(
            out,
            r#"<text x="{}" y="{}"{weight}>{}</text>"#,
            x + 8,
            y + 17 + 15 * i as i32,
            esc(&clip(line, 44))
        );
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn arrow(out: &mut String, from: (i32, i32), to: (i32, i32), label: &str, class: &str) {
    let _ = write!(
        out,
        r#"<line class="{class}" x1="{}" y1="{}" x2="{}" y2="{}" marker-end="url(#head)"/>"#,
        from.0, from.1, to.0, to.1
    );
    if !label.is_empty() {
        let _ = write!(
            out,
            r#"<text class="label" x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (from.0 + to.0) / 2,
            (from.1 + to.1) / 2 - 4,
            esc(&clip(label, 30))
        );
    }
}

fn listed(items: &[String], n: usize) -> String {
    let shown: Vec<&str> = items.iter().take(n).map(String::as_str).collect();
    match items.len().saturating_sub(n) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

fn agreement(d: &Destination) -> String {
    d.agreement
        .as_deref()
        .map(|a| format!("agreement {a}"))
        .unwrap_or_else(|| "no agreement".into())
}

/// The diagram for `p`, with no blank line in it (so it can sit inside Markdown).
pub fn render(p: &Pack) -> String {
    // Practices, one group per programme.
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for r in &p.routes {
        let who = if r.practice == "*" {
            "every practice".to_string()
        } else if r.nation.is_empty() {
            r.practice.clone()
        } else {
            format!("{} ({})", r.practice, r.nation)
        };
        match groups.iter_mut().find(|(g, _)| *g == r.programme) {
            Some((_, list)) => list.push(who),
            None => groups.push((r.programme.clone(), vec![who])),
        }
    }
    let rows_top = groups.len().max(p.destinations.len()).max(1) as i32;
    let rows_bottom = p.writers.len().max(p.platforms.len()) as i32;
    let top = 60;
    let bottom_start = top + rows_top * (BOX_H + GAP) + 50;
    let height = bottom_start + rows_bottom * (BOX_H + GAP) + 30;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-labelledby="df-title df-desc" font-family="sans-serif" font-size="12"><title id="df-title">Data flow: practices to programmes and back</title><desc id="df-desc">Generated from the gateway's configuration {}: referrals from practices pass through the gateway to programme destinations under their agreements; events from platforms come back through the gateway to record writers.</desc><defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs><style>rect{{stroke:#333;stroke-width:1}}.practice{{fill:#e8f1fb}}.dest{{fill:#eaf6ea}}.writer{{fill:#fdf3e3}}.platform{{fill:#f3eaf8}}.gateway{{fill:#fff;stroke-width:2}}line{{stroke:#444;stroke-width:1.3}}line.back{{stroke-dasharray:5 3}}.label{{fill:#333;font-size:10px}}.heading{{font-weight:bold;font-size:14px}}</style>"##,
        esc(&p.about.config_digest)
    );
    let _ = write!(
        out,
        r#"<text class="heading" x="{LEFT}" y="30">Practices</text><text class="heading" x="{GW_X}" y="30">clw-gateway</text><text class="heading" x="{RIGHT}" y="30">Programmes' destinations</text>"#
    );
    let gw_y = top;
    let gw_h = height - top - 30;
    let _ = write!(
        out,
        r#"<rect class="gateway" x="{GW_X}" y="{gw_y}" width="{GW_W}" height="{gw_h}" rx="8"/><text x="{}" y="{}" text-anchor="middle" font-weight="bold">{}</text><text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        GW_X + GW_W / 2,
        gw_y + 22,
        esc(&p.about.instance),
        GW_X + GW_W / 2,
        gw_y + 40,
        esc(&format!("in: {}", p.about.source))
    );
    let y_of = |i: usize, base: i32| base + i as i32 * (BOX_H + GAP);
    for (i, (programme, practices)) in groups.iter().enumerate() {
        let y = y_of(i, top);
        node(
            &mut out,
            LEFT,
            y,
            "practice",
            &[programme.clone(), listed(practices, 3)],
        );
        arrow(
            &mut out,
            (LEFT + BOX_W, y + BOX_H / 2),
            (GW_X, y + BOX_H / 2),
            "referrals",
            "out",
        );
    }
    for (i, d) in p.destinations.iter().enumerate() {
        let y = y_of(i, top);
        node(
            &mut out,
            RIGHT,
            y,
            "dest",
            &[
                format!("{} ({})", d.name, d.kind),
                format!("programmes: {}", listed(&d.programmes, 2)),
                d.channel.endpoint.clone(),
            ],
        );
        arrow(
            &mut out,
            (GW_X + GW_W, y + BOX_H / 2),
            (RIGHT, y + BOX_H / 2),
            &agreement(d),
            "out",
        );
    }
    if rows_bottom > 0 {
        let _ = write!(
            out,
            r#"<text class="heading" x="{LEFT}" y="{}">Practice records (record writers)</text><text class="heading" x="{RIGHT}" y="{}">Platforms writing back</text>"#,
            bottom_start - 14,
            bottom_start - 14
        );
    }
    for (i, w) in p.writers.iter().enumerate() {
        let y = y_of(i, bottom_start);
        let practices = if w.practices.iter().any(|x| x == "*") {
            "practices: every one without its own writers".to_string()
        } else {
            format!("practices: {}", listed(&w.practices, 3))
        };
        node(
            &mut out,
            LEFT,
            y,
            "writer",
            &[format!("{} ({})", w.name, w.kind), practices, agreement(w)],
        );
        arrow(
            &mut out,
            (GW_X, y + BOX_H / 2),
            (LEFT + BOX_W, y + BOX_H / 2),
            "record entries",
            "back",
        );
    }
    for (i, pl) in p.platforms.iter().enumerate() {
        let y = y_of(i, bottom_start);
        node(
            &mut out,
            RIGHT,
            y,
            "platform",
            &[
                pl.name.clone(),
                format!("answers for: {}", listed(&pl.answers_for, 2)),
                pl.programme.clone().unwrap_or_default(),
            ],
        );
        arrow(
            &mut out,
            (RIGHT, y + BOX_H / 2),
            (GW_X + GW_W, y + BOX_H / 2),
            "events",
            "back",
        );
    }
    out.push_str("</svg>");
    out
}
