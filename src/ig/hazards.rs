//! The clinical safety case's hazards, read from the hazard log compiled into the binary
//! (docs/clinical-safety/hazard-log.md): each hazard's title, residual risk and status
//! from the summary table, and from its `**Applies to.**` line the flows and destination
//! kinds it bears on — so the pack selects, per route, the hazards that apply.

use crate::error::{GatewayError, Result, Stage};

const LOG: &str = include_str!("../../docs/clinical-safety/hazard-log.md");

/// One hazard as the log states it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoggedHazard {
    pub id: String,
    pub title: String,
    pub residual: String,
    pub status: String,
    /// `referral`, `message-back`.
    pub flows: Vec<String>,
    /// Destination kinds; empty: every kind of those flows.
    pub kinds: Vec<String>,
}

impl LoggedHazard {
    /// Whether it bears on a destination of `kind` serving `flow`.
    pub fn applies(&self, flow: &str, kind: &str) -> bool {
        self.flows.iter().any(|f| f == flow)
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
    }
}

/// Every hazard in the compiled-in log.
pub fn logged() -> Result<Vec<LoggedHazard>> {
    parse(LOG)
}

fn bad(message: String) -> GatewayError {
    GatewayError::invalid(Stage::Config, "docs/clinical-safety/hazard-log.md", message)
}

/// Reads a hazard log: the summary table's rows, then each `## H-NN — title` section's
/// `**Applies to.** flows: …; kinds: …|all.` line.
pub fn parse(text: &str) -> Result<Vec<LoggedHazard>> {
    let mut out: Vec<LoggedHazard> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| [H-")) {
        let cols: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [link, title, _initial, residual, status, ..] = cols.as_slice() else {
            return Err(bad(format!("summary row with too few columns: {line}")));
        };
        let id = link
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or_default();
        out.push(LoggedHazard {
            id: id.to_string(),
            title: title.to_string(),
            residual: residual.to_string(),
            status: status.to_string(),
            flows: Vec::new(),
            kinds: Vec::new(),
        });
    }
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("## H-") {
            let id = format!("H-{}", rest.split_whitespace().next().unwrap_or_default());
            current = out.iter().position(|h| h.id == id);
            if current.is_none() {
                return Err(bad(format!("{id} has a section but no summary row")));
            }
        } else if let Some(rest) = line.strip_prefix("**Applies to.** ") {
            let Some(i) = current.take() else {
                return Err(bad(format!("an Applies-to line outside a hazard: {line}")));
            };
            let (flows, kinds) =
                applies(rest).ok_or_else(|| bad(format!("{}: cannot read {line:?}", out[i].id)))?;
            out[i].flows = flows;
            out[i].kinds = kinds;
        }
    }
    if let Some(h) = out.iter().find(|h| h.flows.is_empty()) {
        return Err(bad(format!("{} has no **Applies to.** line", h.id)));
    }
    Ok(out)
}

/// `flows: a, b; kinds: x, y.` (or `kinds: all.`)
fn applies(rest: &str) -> Option<(Vec<String>, Vec<String>)> {
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let rest = rest.trim().trim_end_matches('.');
    let (flows, kinds) = rest.split_once(';')?;
    let flows = list(flows.trim().strip_prefix("flows:")?);
    let kinds = list(kinds.trim().strip_prefix("kinds:")?);
    let known_flow = |f: &String| crate::model::Flow::parse(f).is_some();
    if flows.is_empty() || !flows.iter().all(known_flow) {
        return None;
    }
    if kinds == ["all"] {
        return Some((flows, Vec::new()));
    }
    if kinds.is_empty()
        || !kinds
            .iter()
            .all(|k| crate::deliver::KINDS.contains(&k.as_str()))
    {
        return None;
    }
    Some((flows, kinds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_log_gives_every_hazard_its_flows_and_known_kinds() {
        let all = logged().unwrap();
        assert!(all.len() >= 21, "{}", all.len());
        for h in &all {
            assert!(!h.flows.is_empty(), "{h:?}");
            assert!(!h.residual.is_empty() && !h.title.is_empty(), "{h:?}");
        }
    }

    #[test]
    fn applies_lines_are_read_strictly() {
        let log = "| [H-01](#h) | t | i | Low × Minor = 1 | Open |\n## H-01 — t\n";
        let with = |line: &str| parse(&format!("{log}{line}\n"));
        let h = with("**Applies to.** flows: referral; kinds: csv, file.").unwrap();
        assert!(h[0].applies("referral", "csv") && !h[0].applies("referral", "webhook"));
        assert!(!h[0].applies("message-back", "csv"));
        let h = with("**Applies to.** flows: referral, message-back; kinds: all.").unwrap();
        assert!(h[0].applies("message-back", "mesh"));
        assert!(with("**Applies to.** flows: referral; kinds: carrier-pigeon.").is_err());
        assert!(with("**Applies to.** flows: elsewhere; kinds: all.").is_err());
        assert!(with("").is_err(), "a hazard without the line is refused");
    }
}
