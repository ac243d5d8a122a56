//! The readable document every record write carries, in the order the PRSB standard
//! asks: the plan and requested actions first (or "no actions required"), then what
//! happened, for whom, by whom, scores with their history, interventions, risks and
//! safeguarding, the codes it carries (so they can be entered by hand if the system
//! drops one), and the link worker's summary when consent lets it travel. Nothing empty
//! is written.

use super::RecordEntry;

/// The document's title.
pub const TITLE: &str = "Social prescribing: message back to the practice";

/// A name as "SMITH, Richard".
fn name(e: &RecordEntry) -> String {
    let n = &e.patient.name;
    let family = n.family.clone().unwrap_or_default();
    let given = n.given.join(" ");
    match (family.is_empty(), given.is_empty()) {
        (false, false) => format!("{family}, {given}"),
        (false, true) => family,
        _ => given,
    }
}

/// "943 476 5919", as printed on letters.
pub fn spaced(number: &str) -> String {
    if number.len() == 10 && number.bytes().all(|b| b.is_ascii_digit()) {
        format!("{} {} {}", &number[..3], &number[3..6], &number[6..])
    } else {
        number.to_string()
    }
}

/// One part of the document: a heading (for renderings that show one) and its lines.
pub struct Block {
    pub title: &'static str,
    pub lines: Vec<String>,
}

/// The document, line by line, in the order the PRSB standard asks: who and where, the
/// plan and requested actions first, then what happened (the contact's codes, a score
/// with its earlier scores and subscales), the interventions, risks and safeguarding,
/// the codes, and the link worker's summary. A part with nothing to say is left out.
/// With `read_codes`, Read v2 codes are listed too.
pub fn lines(e: &RecordEntry, read_codes: bool) -> Vec<String> {
    let mut out = vec![TITLE.to_string(), String::new()];
    out.extend(header(e));
    for b in blocks(e, read_codes) {
        out.push(String::new());
        out.extend(b.lines);
    }
    out
}

/// Who the document is about, their practice and the referral.
pub fn header(e: &RecordEntry) -> Vec<String> {
    let mut out = Vec::new();
    let mut id = Vec::new();
    if let Some(n) = &e.patient.nhs_number {
        id.push(format!("NHS number {}", spaced(n)));
    }
    if let Some(c) = &e.patient.chi_number {
        id.push(format!("CHI number {}", spaced(c)));
    }
    if let Some(d) = &e.patient.date_of_birth {
        id.push(format!("born {d}"));
    }
    out.push(format!("Patient: {}  ({})", name(e), id.join(", ")));
    if let Some(code) = e.practice.code() {
        let code = match &e.practice.scottish_practice_code {
            Some(_) => format!("practice code {code}"),
            None => code.to_string(),
        };
        out.push(format!(
            "Practice: {} ({code})",
            e.practice.name.as_deref().unwrap_or("registered practice")
        ));
    }
    out.push(format!(
        "Referral: {}{}",
        e.referral.message_id,
        e.referral
            .programme
            .as_deref()
            .map(|p| format!(" (programme {p})"))
            .unwrap_or_default()
    ));
    out
}

/// The document's parts after the header, in order, each with something to say.
pub fn blocks(e: &RecordEntry, read_codes: bool) -> Vec<Block> {
    [
        ("Plan and requested actions", plan(e)),
        ("What happened", happened(e)),
        ("Interventions", super::sections::interventions(&e.event)),
        ("Risks and safeguarding", super::sections::risks(e)),
        ("Codes", codes(e, read_codes)),
        ("Link worker's summary", summary(e)),
    ]
    .into_iter()
    .filter(|(_, lines)| !lines.is_empty())
    .map(|(title, lines)| Block { title, lines })
    .collect()
}

/// Text the platform wrote, its first line after `label`, the rest indented beneath.
fn labelled(out: &mut Vec<String>, label: &str, text: &str) {
    let mut ls = text.lines();
    out.push(format!("{label}{}", ls.next().unwrap_or_default()));
    out.extend(ls.map(|l| format!("    {l}")));
}

/// "Plan and requested actions" — first, and never silent: the actions, "no actions
/// required", that the link worker's words were not shared, or that none were stated.
fn plan(e: &RecordEntry) -> Vec<String> {
    const LABEL: &str = "Plan and requested actions";
    let mut out = Vec::new();
    match &e.event.plan {
        Some(p) if p.no_actions_required => {
            out.push(format!("{LABEL}: no actions required"));
        }
        Some(p) if p.has_actions() => {
            out.push(format!("{LABEL}:"));
            for (who, text) in [
                ("For the GP or referrer: ", &p.for_professionals),
                ("For the person: ", &p.for_person),
                ("Agreed with the person: ", &p.agreed_with_person),
            ] {
                if let Some(t) = text {
                    labelled(&mut out, &format!("  {who}"), t);
                }
            }
        }
        _ if e.referral.withheld.iter().any(|w| w.starts_with("plan.")) => out.push(format!(
            "{LABEL}: given by the link worker, not shared under the patient's consent \
             (coded information only); ask the link worker service"
        )),
        _ => out.push(format!("{LABEL}: none stated by the link worker")),
    }
    out
}

/// What happened, when, who recorded it, how and where a contact took place and whether
/// it did, and a score with the referral's earlier scores and its subscales.
fn happened(e: &RecordEntry) -> Vec<String> {
    let mut out = vec![
        format!("What happened: {}", e.headline),
        format!("When: {}", e.event.occurred_at),
    ];
    if let Some(p) = &e.practitioner {
        let who: Vec<&str> = [p.name.as_deref(), p.role.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !who.is_empty() {
            out.push(format!("Recorded by: {}", who.join(", ")));
        }
    }
    out.extend(super::sections::contact(&e.event));
    out.extend(super::sections::scores(e));
    out
}

fn codes(e: &RecordEntry, read_codes: bool) -> Vec<String> {
    let mut out = Vec::new();
    if e.coded.is_empty() {
        out.push("Codes: none for this event".into());
    } else {
        out.push("Codes (enter by hand if your system did not file them):".into());
        for entry in &e.coded {
            for c in entry.codes(read_codes) {
                let label = match c.system.as_str() {
                    super::SNOMED_SYSTEM => "SNOMED CT",
                    super::READ2_SYSTEM => "Read v2",
                    _ => "Local code",
                };
                let value = entry
                    .value
                    .map(|v| format!("  value {v}"))
                    .unwrap_or_default();
                out.push(format!("  {label:<10} {:<16} {}{value}", c.code, c.display));
            }
        }
    }
    out
}

fn summary(e: &RecordEntry) -> Vec<String> {
    let mut out = Vec::new();
    match &e.summary {
        Some(s) => {
            out.push("Link worker's summary:".into());
            out.extend(s.lines().map(|l| format!("  {l}")));
        }
        None => out.push(
            "Link worker's summary: not shared (the patient agreed to share coded information only, or none was written)"
                .into(),
        ),
    }
    if !e.referral.withheld.is_empty() {
        let mut items: Vec<&str> = e
            .referral
            .withheld
            .iter()
            .map(|w| withheld_item(w))
            .collect();
        items.dedup();
        out.push(format!(
            "Not shared under the patient's consent (coded information only): {}",
            items.join("; ")
        ));
    }
    out
}

/// How a withheld item is named to a clinician.
fn withheld_item(field: &str) -> &str {
    match field {
        "summary" => "the link worker's summary",
        "declined_reason.text" | "declined_reason.display" => {
            "the service's words on why it declined"
        }
        "closed.outcome" => "the outcome in the link worker's words",
        "onward_referral.to" => "the name of the service referred on to",
        "practitioner" => "the link worker's name and role",
        "plan.for_professionals" | "plan.for_person" | "plan.agreed_with_person" => {
            "the plan and requested actions in the link worker's words"
        }
        "contact.outcome.text" => "the contact's outcome in the link worker's words",
        "needs" | "support_offered" | "outcomes" => {
            "needs, support offered or outcomes recorded in words only"
        }
        other => other,
    }
}

/// The document as text (CRLF-free, one line per line).
pub fn text(e: &RecordEntry, read_codes: bool) -> String {
    let mut t = lines(e, read_codes).join("\n");
    t.push('\n');
    t
}
