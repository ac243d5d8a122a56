//! The readable document every record write carries: what happened, for whom, by whom,
//! the codes it carries (so they can be entered by hand if the system drops one), and
//! the link worker's summary when consent lets it travel.

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

/// The document, line by line. With `read_codes`, Read v2 codes are listed too.
pub fn lines(e: &RecordEntry, read_codes: bool) -> Vec<String> {
    let mut out = vec![TITLE.to_string(), String::new()];
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
    out.push(String::new());
    out.push(format!("What happened: {}", e.headline));
    out.push(format!("When: {}", e.event.occurred_at));
    if let Some(p) = &e.practitioner {
        let who: Vec<&str> = [p.name.as_deref(), p.role.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !who.is_empty() {
            out.push(format!("Recorded by: {}", who.join(", ")));
        }
    }
    out.push(String::new());
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
    out.push(String::new());
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
        other => other,
    }
}

/// The document as text (CRLF-free, one line per line).
pub fn text(e: &RecordEntry, read_codes: bool) -> String {
    let mut t = lines(e, read_codes).join("\n");
    t.push('\n');
    t
}
