//! ITK3 responses (ITK008M): the acknowledgements a practice's system sends back for a
//! message that asked for them. Read from FHIR STU3 XML or JSON: the MessageHeader's
//! `response.identifier` (the message answered) and `response.code`, and the ITK3
//! response code the OperationOutcome carries, classified by the ITK3 response code
//! table (ITK3 Messaging Distribution, "ITK3 Response Codes"): prefixes 1 and 2 are the
//! infrastructure acknowledgement, 3 the business one; 20013 is "received", 30001 and
//! 30004 "filed", 20007 and 20008 (duplicates: already processed) count as filed, every
//! other code is negative and final.

use serde_json::Value;

use crate::deliver::{Ack, AckLevel, AckOutcome};

/// (code, positive, meaning) — the ITK3 response codes.
const CODES: &[(&str, bool, &str)] = &[
    ("10001", false, "Handling Specification Error"),
    ("10002", false, "Infrastructure Level Response Value - Processing Error"),
    ("10003", false, "Business Level Response Value - Processing Error"),
    ("10004", false, "Message Definition Value - Processing Error"),
    ("10005", false, "Message Definition Version Value - Processing Error"),
    ("10007", false, "Sender Reference Value - Processing Error"),
    ("10008", false, "Handling Specification Business Rule Error"),
    ("10009", false, "Unreadable message received"),
    ("10010", false, "Recipient Type - Processing Error"),
    ("20001", false, "Unrecognised Recipient Person"),
    ("20002", false, "Unrecognised Recipient Organisation"),
    ("20003", false, "Unrecognised Sender"),
    ("20004", false, "Non-Approved file type received as an attachment"),
    ("20005", false, "Unsupported file type received as an attachment"),
    ("20006", false, "ITK3 Header validation failure"),
    ("20007", false, "Duplicate Message received"),
    ("20008", false, "Duplicate Document received"),
    ("20009", false, "Payload validation failure"),
    ("20010", false, "Unrecognised Payload Recipient Organisation"),
    ("20011", false, "Unrecognised Payload Recipient Person"),
    ("20012", false, "Unauthorised Sender"),
    ("20013", true, "Success"),
    ("20014", false, "Unable to Process Replacement Document"),
    ("20015", false, "Message too large"),
    ("30001", true, "Patient known here"),
    ("30002", false, "Patient not known here"),
    ("30003", false, "Patient no longer at this clinical setting"),
    ("30004", true, "Patient known here and recently deceased"),
];

/// The meaning of an ITK3 response code, if it is one.
pub fn meaning(code: &str) -> Option<&'static str> {
    CODES.iter().find(|c| c.0 == code).map(|c| c.2)
}

/// What the response's code says of the message it answers.
pub fn classify(code: &str, response_code: &str) -> (AckLevel, AckOutcome) {
    let level = if code.starts_with('3') {
        AckLevel::Business
    } else {
        AckLevel::Infrastructure
    };
    let outcome = match code {
        // Already processed: the practice has it (ITK3: a duplicate is not refiled).
        "20007" | "20008" => AckOutcome::Filed,
        _ => match CODES.iter().find(|c| c.0 == code) {
            Some((_, true, _)) if level == AckLevel::Business => AckOutcome::Filed,
            Some((_, true, _)) => AckOutcome::Received,
            Some((_, false, _)) => AckOutcome::Rejected,
            // A code the table does not list: the header's own verdict decides.
            None if response_code == "ok" && level == AckLevel::Business => AckOutcome::Filed,
            None if response_code == "ok" => AckOutcome::Received,
            None => AckOutcome::Rejected,
        },
    };
    (level, outcome)
}

/// The acknowledgement a body holds, or None when it is not an ITK3 response.
pub fn parse(body: &[u8]) -> Option<Ack> {
    let text = std::str::from_utf8(body).ok()?.trim_start_matches('\u{feff}');
    let (identifier, response_code, code, display) = if text.trim_start().starts_with('<') {
        from_xml(text)?
    } else {
        from_json(&serde_json::from_str(text).ok()?)?
    };
    let (level, outcome) = classify(&code, &response_code);
    let display = meaning(&code)
        .map(str::to_string)
        .or(display)
        .unwrap_or_default();
    Some(Ack {
        about: identifier,
        level,
        code,
        display,
        outcome,
    })
}

type Fields = (String, String, String, Option<String>);

/// A five-digit ITK3 response code.
fn is_code(c: &str) -> bool {
    c.len() == 5 && c.bytes().all(|b| b.is_ascii_digit())
}

fn from_xml(text: &str) -> Option<Fields> {
    let doc = roxmltree::Document::parse(text).ok()?;
    let value = |n: roxmltree::Node, name: &str| {
        n.children()
            .find(|c| c.has_tag_name(name))
            .and_then(|c| c.attribute("value"))
            .map(str::to_string)
    };
    let response = doc
        .descendants()
        .find(|n| n.has_tag_name("MessageHeader"))?
        .children()
        .find(|n| n.has_tag_name("response"))?;
    let identifier = value(response, "identifier")?;
    let response_code = value(response, "code").unwrap_or_default();
    let coding = doc
        .descendants()
        .filter(|n| n.has_tag_name("OperationOutcome"))
        .flat_map(|o| o.descendants().filter(|n| n.has_tag_name("coding")))
        .find(|c| value(*c, "code").is_some_and(|v| is_code(&v)))?;
    Some((
        identifier,
        response_code,
        value(coding, "code")?,
        value(coding, "display"),
    ))
}

fn from_json(v: &Value) -> Option<Fields> {
    let resources: Vec<&Value> = v
        .get("entry")?
        .as_array()?
        .iter()
        .filter_map(|e| e.get("resource"))
        .collect();
    let of_type = |t: &'static str| {
        resources
            .iter()
            .copied()
            .filter(move |r| r.get("resourceType").and_then(Value::as_str) == Some(t))
    };
    let response = of_type("MessageHeader").next()?.get("response")?;
    let coding = of_type("OperationOutcome")
        .flat_map(|o| o.get("issue").and_then(Value::as_array).into_iter().flatten())
        .flat_map(|i| {
            i.pointer("/details/coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|c| c.get("code").and_then(Value::as_str).is_some_and(is_code))?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Some((
        s(response, "identifier")?,
        s(response, "code").unwrap_or_default(),
        s(coding, "code")?,
        s(coding, "display"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(identifier: &str, response: &str, code: &str) -> String {
        format!(
            "<Bundle xmlns=\"http://hl7.org/fhir\"><id value=\"b1\"/><type value=\"message\"/>\
             <entry><resource><MessageHeader><id value=\"h9\"/><event><code value=\"ITK008M\"/></event>\
             <response><identifier value=\"{identifier}\"/><code value=\"{response}\"/></response>\
             </MessageHeader></resource></entry><entry><resource><OperationOutcome><issue>\
             <severity value=\"information\"/><code value=\"informational\"/><details><coding>\
             <system value=\"https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1\"/>\
             <code value=\"{code}\"/><display value=\"As sent\"/></coding></details></issue>\
             </OperationOutcome></resource></entry></Bundle>"
        )
    }

    #[test]
    fn each_kind_of_response_is_read_and_classified() {
        for (code, response, level, outcome) in [
            ("20013", "ok", AckLevel::Infrastructure, AckOutcome::Received),
            ("30001", "ok", AckLevel::Business, AckOutcome::Filed),
            ("30004", "ok", AckLevel::Business, AckOutcome::Filed),
            ("30002", "fatal-error", AckLevel::Business, AckOutcome::Rejected),
            ("20007", "fatal-error", AckLevel::Infrastructure, AckOutcome::Filed),
            ("20008", "fatal-error", AckLevel::Infrastructure, AckOutcome::Filed),
            ("20009", "fatal-error", AckLevel::Infrastructure, AckOutcome::Rejected),
            ("29999", "ok", AckLevel::Infrastructure, AckOutcome::Received),
            ("39999", "fatal-error", AckLevel::Business, AckOutcome::Rejected),
        ] {
            let a = parse(xml("hdr-1", response, code).as_bytes()).unwrap();
            assert_eq!((a.about.as_str(), a.level, a.outcome), ("hdr-1", level, outcome), "{code}");
        }
        let a = parse(xml("hdr-1", "fatal-error", "30002").as_bytes()).unwrap();
        assert_eq!(a.display, "Patient not known here", "the table's words");
    }

    #[test]
    fn json_responses_are_read_and_anything_else_is_not_an_acknowledgement() {
        let json = serde_json::json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "MessageHeader", "response": {"identifier": "h2", "code": "ok"}}},
            {"resource": {"resourceType": "OperationOutcome", "issue": [{"details": {"coding": [
                {"system": "https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1", "code": "30001"}]}}]}}
        ]});
        let a = parse(json.to_string().as_bytes()).unwrap();
        assert_eq!((a.about.as_str(), a.outcome), ("h2", AckOutcome::Filed));
        assert!(parse(b"<Bundle xmlns=\"http://hl7.org/fhir\"/>").is_none());
        assert!(parse(b"not a message at all").is_none());
        assert!(parse(&[0xff, 0xfe, 0x00]).is_none());
    }
}
