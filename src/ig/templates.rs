//! The DPIA annex and the DSA field schedule: templates in docs/information-governance/
//! (compiled in, so a pack is the same wherever it is made) whose `{{placeholder}}`
//! lines are answered from the pack. What configuration cannot answer the templates ask
//! the organisation themselves (`> **For the organisation:** …`), kept verbatim.

use std::fmt::Write as _;

use super::markdown::{self as md, code, codes, text, texts};
use super::pack::*;
use crate::error::{GatewayError, Result, Stage};

pub const DPIA_ANNEX: &str = include_str!("../../docs/information-governance/dpia-annex.md");
pub const DSA_SCHEDULE: &str =
    include_str!("../../docs/information-governance/dsa-field-schedule.md");

/// Every placeholder the templates may use, and what answers it.
pub const PLACEHOLDERS: &[&str] = &[
    "pack.about",
    "dpia.need",
    "dpia.nature",
    "dpia.scope",
    "dpia.context",
    "dpia.purposes",
    "dpia.necessity",
    "dpia.risks",
    "dpia.measures",
    "dpia.signoff",
    "caldicott.1",
    "caldicott.2",
    "caldicott.3",
    "caldicott.4",
    "caldicott.5",
    "caldicott.6",
    "caldicott.7",
    "caldicott.8",
    "dsa.agreements",
    "dsa.schedule",
    "dsa.transfers",
    "dsa.retention",
    "dsa.access",
    "dsa.dataset",
    "dsa.findings",
];

/// `template` with each `{{name}}` replaced by its block; an unknown name is an error.
pub fn fill(template: &str, p: &Pack) -> Result<String> {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(bad("an unclosed {{ in a template"));
        };
        let name = after[..end].trim();
        out.push_str(
            block(name, p)
                .ok_or_else(|| bad(&format!("unknown placeholder {name}")))?
                .trim_end(),
        );
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn bad(message: &str) -> GatewayError {
    GatewayError::invalid(Stage::Config, "docs/information-governance", message)
}

fn all_routes(p: &Pack) -> impl Iterator<Item = &Destination> {
    p.destinations.iter().chain(&p.writers)
}

fn block(name: &str, p: &Pack) -> Option<String> {
    Some(match name {
        "pack.about" => md::about(&p.about),
        "dpia.need" | "caldicott.1" | "dpia.purposes" => purposes(p),
        "dpia.nature" => nature(p),
        "dpia.scope" => scope(p),
        "dpia.context" | "caldicott.8" => context(p),
        "dpia.necessity" | "caldicott.6" => necessity(p),
        "dpia.risks" => md::hazards(&p.hazards),
        "dpia.measures" => measures(p),
        "dpia.signoff" => signoff(p),
        "caldicott.2" => md::routes(&p.routes),
        "caldicott.3" => minimum(p),
        "caldicott.4" | "dsa.access" => md::console(&p.console),
        "caldicott.5" => responsibilities(p),
        "caldicott.7" => shared_back(p),
        "dsa.agreements" => p.agreements.iter().map(md::agreement).collect(),
        "dsa.schedule" => schedule(p),
        "dsa.transfers" => transfers(p),
        "dsa.retention" => retention(p),
        "dsa.dataset" => md::dataset(&p.dataset),
        "dsa.findings" => md::findings(&p.findings),
        _ => return None,
    })
}

fn purposes(p: &Pack) -> String {
    let mut out = String::new();
    for a in &p.agreements {
        let _ = writeln!(
            out,
            "- Agreement {} ({}): {}",
            code(&a.id),
            codes(&a.used_by),
            texts(&a.purposes, "*no purpose configured*")
        );
    }
    if out.is_empty() {
        out.push_str("- *No agreement is declared: no purpose is configured.*\n");
    }
    let flows = if p.writers.is_empty() {
        "the referral flow (GP to programme)"
    } else {
        "the referral flow (GP to programme) and the message back (programme to the GP record)"
    };
    let _ = writeln!(out, "\nThe gateway runs {flows}.");
    out
}

fn nature(p: &Pack) -> String {
    let mut out = format!(
        "Referrals arrive from the practices' systems through {}; the gateway checks each, \
         applies consent and the destination's allow-list, maps it and sends it. Nothing is \
         sent that the allow-list does not name.\n\n",
        text(&p.about.source)
    );
    out.push_str(&transfers(p));
    if !p.platforms.is_empty() {
        out.push_str("What programmes send back arrives through:\n\n");
        out.push_str(&md::platforms(&p.platforms));
    }
    out.push_str(
        "Data is deleted when its retention period ends, by the gateway's own retention task \
         (and `clw-gateway purge`), each deletion audited:\n\n",
    );
    out.push_str(&md::retention(&p.retention));
    out
}

fn scope(p: &Pack) -> String {
    let mut out = String::from(
        "| destination | flow | fields | identifiable | free text | sensitive sections |\n\
         |---|---|---|---|---|---|\n",
    );
    for d in all_routes(p) {
        let n = |f: fn(&Field) -> bool| d.fields.iter().filter(|x| f(x)).count();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            code(&d.name),
            text(&d.flow),
            d.fields.len(),
            n(|f| f.identifiable),
            n(|f| f.free_text),
            codes(&d.sensitive_agreed)
        );
    }
    out.push_str(
        "\nAll of it is health data (special category, UK GDPR Article 9). Each destination's \
         fields are listed in full in the DSA field schedule.\n\nPractices and programmes:\n\n",
    );
    out.push_str(&md::routes(&p.routes));
    out
}

fn context(p: &Pack) -> String {
    let mut out =
        String::from("Consent recorded with the referral decides what leaves the practice:\n\n");
    out.push_str(&md::consent(&p.consent));
    if let Some(f) = &p.dataset.opt_out {
        let _ = writeln!(
            out,
            "The national data opt-out list ({}) is applied to the programme dataset.\n",
            code(f)
        );
    }
    out
}

fn necessity(p: &Pack) -> String {
    let mut out = String::from(
        "| agreement | controllers | Article 6 | Article 9 | confidentiality | processors | sub-processors |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let opt = |v: &Option<String>| v.as_deref().map(text).unwrap_or("*not configured*".into());
    for a in &p.agreements {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            code(&a.id),
            texts(&a.controllers, "*not configured*"),
            opt(&a.lawful_basis),
            opt(&a.special_category),
            opt(&a.confidentiality),
            texts(&a.processors, "none"),
            texts(&a.sub_processors, "none")
        );
    }
    out.push('\n');
    out.push_str(&minimum(p));
    out
}

fn minimum(p: &Pack) -> String {
    let mut out = String::from(
        "Each destination receives only the canonical fields its allow-list names (a mapping \
         that reads anything else is refused at start-up); free text goes only under full \
         consent; risks, safeguarding and gender history go only where the agreement names \
         them.\n\n| destination | allow-list | sensitive sections withheld |\n|---|---|---|\n",
    );
    for d in all_routes(p) {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            code(&d.name),
            codes(&d.allow),
            codes(&d.sensitive_withheld)
        );
    }
    out.push('\n');
    out
}

fn measures(p: &Pack) -> String {
    let mut out = String::from("In transit, and where data rests:\n\n");
    out.push_str(&transfers(p));
    out.push_str(&minimum(p));
    out.push_str(
        "Every delivery, withholding, replay, dismissal, extract and generation of this pack is \
         audited (who, what, which fields — never values). Access to the console:\n\n",
    );
    out.push_str(&md::console(&p.console));
    out.push_str("What `check` reports about the agreements:\n\n");
    out.push_str(&md::findings(&p.findings));
    out
}

fn signoff(p: &Pack) -> String {
    let mut out = String::new();
    for a in &p.agreements {
        let _ = writeln!(
            out,
            "- Agreement {}: review by {}",
            code(&a.id),
            a.review_by
                .as_deref()
                .map(text)
                .unwrap_or("*no date configured*".into())
        );
    }
    if out.is_empty() {
        out.push_str("- *No agreement is declared.*\n");
    }
    out
}

fn responsibilities(p: &Pack) -> String {
    format!(
        "Operators sign in as themselves and every action is audited under their name ({} \
         configured). IG contact: {}.\n",
        p.console.operators.len(),
        p.about
            .contact
            .as_deref()
            .map(text)
            .unwrap_or_else(|| "*not configured (`[ig] contact`)*".into())
    )
}

fn shared_back(p: &Pack) -> String {
    if p.writers.is_empty() {
        return "The message back is off: nothing the link worker records is written to the GP \
                record by the gateway.\n"
            .into();
    }
    let mut out = String::from(
        "What the link worker records comes back to the practice record, coded, so the GP \
         sees it:\n\n| record writer | kind | practices | fields |\n|---|---|---|---|\n",
    );
    for w in &p.writers {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            code(&w.name),
            text(&w.kind),
            if w.practices.iter().any(|x| x == "*") {
                "every practice without writers of its own".into()
            } else {
                codes(&w.practices)
            },
            codes(&w.allow)
        );
    }
    out.push('\n');
    out
}

fn schedule(p: &Pack) -> String {
    let mut out = String::new();
    let mut agreements: Vec<Option<&str>> =
        p.agreements.iter().map(|a| Some(a.id.as_str())).collect();
    if all_routes(p).any(|d| d.agreement.is_none()) {
        agreements.push(None);
    }
    for id in agreements {
        match id {
            Some(id) => {
                let _ = writeln!(out, "### Agreement {}\n", text(id));
            }
            None => out.push_str("### Destinations with no agreement\n\n"),
        }
        for d in all_routes(p).filter(|d| d.agreement.as_deref() == id) {
            let _ = writeln!(
                out,
                "#### {} ({}, {})\n\nAllow-list: {}\n",
                text(&d.name),
                text(&d.kind),
                text(&d.flow),
                codes(&d.allow)
            );
            out.push_str(&md::fields(&d.fields));
        }
    }
    out
}

fn transfers(p: &Pack) -> String {
    let mut out = String::from(
        "| destination | transport | endpoint | protection | authentication |\n\
         |---|---|---|---|---|\n",
    );
    for d in all_routes(p) {
        let c = &d.channel;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            code(&d.name),
            text(&c.transport),
            code(&c.endpoint),
            text(&c.tls),
            texts(&c.authentication, "none")
        );
    }
    out.push('\n');
    out
}

fn retention(p: &Pack) -> String {
    let mut out = md::retention(&p.retention);
    for a in p.agreements.iter().filter(|a| a.max_retention.is_some()) {
        let _ = writeln!(
            out,
            "- Agreement {} allows data to be kept for at most {}.",
            code(&a.id),
            a.max_retention.as_deref().map(text).unwrap_or_default()
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(template: &str) -> Vec<String> {
        template
            .split("{{")
            .skip(1)
            .filter_map(|s| s.split_once("}}").map(|(n, _)| n.trim().to_string()))
            .collect()
    }

    #[test]
    fn every_placeholder_in_the_templates_is_answered_and_each_answer_is_used_once() {
        let dpia = used(DPIA_ANNEX);
        let dsa = used(DSA_SCHEDULE);
        for name in dpia.iter().chain(&dsa) {
            assert!(PLACEHOLDERS.contains(&name.as_str()), "unknown {name}");
        }
        for name in PLACEHOLDERS {
            let n = dpia.iter().chain(&dsa).filter(|x| x == name).count();
            let want = if *name == "pack.about" { 2 } else { 1 };
            assert_eq!(n, want, "{name} is used {n} times");
        }
    }
}
