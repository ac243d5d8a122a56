//! The ITK3 messages the MESH writer sends, valid and not only well formed: every event
//! type, with full and codes-only consent, in both Send Document versions and both of
//! FHIR's forms, checked by an independent validator (tests/itk/validate.py, common/itk.rs)
//! against base FHIR STU3 and the ITK3 / GP Connect rules of the version its workflow
//! names. Broken messages show the validator fails when it should.

mod common;

use clw_gateway::model::message_back::EventType;
use clw_gateway::record::RecordEntry;
use clw_gateway::record::itk::{self, SendDocument, Sender};
use clw_gateway::record::stu3::El;
use common::itk::{Itk, check, check_forms, report, validate_itk, validate_itk_xml};
use serde_json::{Value, json};

const MAILBOX: &str = "CLWGW0001";
const SENDER: Sender<'static> = Sender {
    ods_code: "X99CLW",
    name: "Links",
    mailbox: MAILBOX,
};

/// Every event of the golden records (tests/fixtures/record-golden): one of each type
/// and more, each with full and codes-only consent, as the `gp-record` mapping wrote it.
fn entries() -> Vec<(String, RecordEntry)> {
    let dir = common::repo_path("tests/fixtures/record-golden");
    let mut out: Vec<(String, RecordEntry)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|f| {
            let name = f.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".folder.json")?.to_string();
            let payload: Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            Some((stem, RecordEntry::from_payload(&payload).unwrap()))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn message(version: SendDocument, stem: &str, e: &RecordEntry) -> El {
    itk::message_for(version, e, stem, &SENDER, &e.event.occurred_at)
}

/// One contact event's message in JSON, to break.
fn contact(version: SendDocument) -> Value {
    let (stem, e) = entries()
        .into_iter()
        .find(|(s, _)| s == "contact.full")
        .unwrap();
    message(version, &stem, &e).to_json()
}

#[test]
fn the_golden_records_hold_every_event_type() {
    let every = [
        EventType::ReferralAccepted,
        EventType::ReferralDeclined,
        EventType::Contact,
        EventType::Assessment,
        EventType::OnwardReferral,
        EventType::Closed,
    ];
    // A new event type fails to compile here until it is listed above.
    for t in every {
        match t {
            EventType::ReferralAccepted
            | EventType::ReferralDeclined
            | EventType::Contact
            | EventType::Assessment
            | EventType::OnwardReferral
            | EventType::Closed => {}
        }
    }
    let entries = entries();
    for t in every {
        for consent in ["full", "codes-only"] {
            assert!(
                entries
                    .iter()
                    .any(|(s, e)| e.event.event_type == t && s.ends_with(consent)),
                "no golden record of a {} event with {consent} consent",
                t.as_str()
            );
        }
    }
}

/// Every event's message in `version`, as JSON and as XML (the same message in both),
/// validated on `workflow`.
fn every_event_validates(version: SendDocument, workflow: &str) {
    let entries = entries();
    let rendered: Vec<(String, Value, String)> = entries
        .iter()
        .map(|(stem, e)| {
            let m = message(version, stem, e);
            (stem.clone(), m.to_json(), m.to_xml())
        })
        .collect();
    let forms: Vec<(&Value, &str)> = rendered.iter().map(|(_, j, x)| (j, x.as_str())).collect();
    if let Err(errors) = check_forms(&forms, workflow, Some(MAILBOX)) {
        let names: Vec<String> = rendered
            .iter()
            .enumerate()
            .map(|(i, (stem, _, _))| format!("message-{i} = {stem}"))
            .collect();
        panic!("{workflow}: {errors:#?}\nwhere {names:#?}");
    }
}

#[test]
fn every_event_validates_as_send_document_1x() {
    every_event_validates(SendDocument::V1, "GPFED_CONSULT_REPORT");
}

#[test]
fn every_event_validates_as_send_document_2x() {
    every_event_validates(SendDocument::V2, "GPCONNECT_SEND_DOCUMENT");
}

#[test]
fn the_workflow_chooses_the_shape_the_validator_wants() {
    for workflow in ["GPFED_CONSULT_REPORT", "GPCONNECT_SEND_DOCUMENT"] {
        let m = contact(itk::version_of(workflow));
        validate_itk(&m, workflow).unwrap_or_else(|e| panic!("{workflow}: {e:#?}"));
    }
    // What the gateway used to send on the 2.x workflow: the 1.x shape.
    let errors = validate_itk(&contact(SendDocument::V1), "GPCONNECT_SEND_DOCUMENT").unwrap_err();
    assert_has(&errors, "GPCM-SD-044: 2.x");
    assert_has(&errors, "careSettingTypeExtension");
    let errors = validate_itk(&contact(SendDocument::V2), "GPFED_CONSULT_REPORT").unwrap_err();
    assert_has(&errors, "GPCM-SD-044: 1.x");
}

#[track_caller]
fn assert_has(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "no failure naming {needle:?} in {errors:#?}"
    );
}

/// `change` applied to the 1.x contact message must fail naming each of `requirements`.
#[track_caller]
fn broken(change: impl FnOnce(&mut Value), requirements: &[&str]) {
    let mut m = contact(SendDocument::V1);
    validate_itk(&m, "GPFED_CONSULT_REPORT").expect("the message as written is valid");
    change(&mut m);
    let errors = check(&[Itk::Json(&m)], "GPFED_CONSULT_REPORT", Some(MAILBOX)).unwrap_err();
    for r in requirements {
        assert_has(&errors, r);
    }
}

fn at<'a>(m: &'a mut Value, pointer: &str) -> &'a mut Value {
    m.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}"))
}

const HEADER: &str = "/entry/0/resource";
const COMPOSITION: &str = "/entry/2/resource/entry/0/resource";
const PRACTITIONER: &str = "/entry/2/resource/entry/4/resource";

#[test]
fn a_missing_profile_fails() {
    broken(
        |m| {
            at(m, PRACTITIONER).as_object_mut().unwrap().remove("meta");
        },
        &["GPCM-SD-108", "GPCM-SD-107"],
    );
}

#[test]
fn a_dangling_reference_fails() {
    broken(
        |m| {
            *at(m, &format!("{COMPOSITION}/subject/reference")) =
                json!("urn:uuid:00000000-0000-0000-0000-000000000000")
        },
        &["is not an entry of the bundle", "GPCM-SD-106"],
    );
    broken(
        |m| {
            *at(m, &format!("{HEADER}/focus/0/reference")) =
                json!("urn:uuid:00000000-0000-0000-0000-000000000000")
        },
        &["is not an entry of the bundle", "GPCM-SD-103"],
    );
}

#[test]
fn a_wrong_handling_flag_fails() {
    let key = |i: usize| format!("{HEADER}/extension/0/extension/{i}");
    broken(
        |m| *at(m, &format!("{}/valueBoolean", key(0))) = json!(false),
        &["GPCM-SD-040"],
    );
    // A boolean written as a string: FHIR's JSON form has real booleans.
    broken(
        |m| *at(m, &format!("{}/valueBoolean", key(1))) = json!("true"),
        &["STU3 JSON", "GPCM-SD-041"],
    );
    broken(
        |m| *at(m, &format!("{}/valueCoding/code", key(2))) = json!("FI"),
        &["GPCM-SD-039"],
    );
    broken(
        |m| {
            at(m, &format!("{HEADER}/extension/0/extension"))
                .as_array_mut()
                .unwrap()
                .remove(4);
        },
        &["GPCM-SD-042"],
    );
}

#[test]
fn a_wrong_header_fails() {
    broken(
        |m| *at(m, &format!("{HEADER}/event/code")) = json!("ITK008M"),
        &["GPCM-SD-047"],
    );
    broken(
        |m| *at(m, &format!("{HEADER}/source/endpoint")) = json!("SOMEONE01"),
        &["GPCM-SD-046"],
    );
    // MessageHeader.timestamp is an instant: a day alone (an event dated by day) is not.
    broken(
        |m| *at(m, &format!("{HEADER}/timestamp")) = json!("2026-11-25"),
        &["STU3 Bundle.entry[0].resource.timestamp"],
    );
    broken(
        |m| {
            at(m, HEADER)["receiver"] = json!({"reference": "urn:uuid:x"});
        },
        &["GPCM-SD-049"],
    );
}

#[test]
fn a_wrong_document_fails() {
    broken(
        |m| {
            // The section's entry pointing at the Patient instead of the PDF.
            let to = at(m, "/entry/2/resource/entry/2/fullUrl").clone();
            let entries = at(m, &format!("{COMPOSITION}/section"));
            for s in entries.as_array_mut().unwrap() {
                if let Some(e) = s.get_mut("entry") {
                    e[0]["reference"] = to.clone();
                }
            }
        },
        &["GPCM-SD-110", "GPCM-SD-109"],
    );
    broken(
        |m| *at(m, &format!("{COMPOSITION}/status")) = json!("preliminary"),
        &["GPCM-SD-114"],
    );
    broken(
        |m| *at(m, &format!("{COMPOSITION}/type/coding/0/code")) = json!("149701000000109"),
        &["GPCM-SD-115: 1.x"],
    );
}

#[test]
fn base_stu3_failures_fail() {
    // An element STU3 does not have (R4's Composition.category).
    broken(
        |m| at(m, COMPOSITION)["category"] = json!([{"text": "x"}]),
        &["resource.category: Extra inputs are not permitted"],
    );
    // A code outside its required value set, which the models accept.
    broken(
        |m| *at(m, &format!("{COMPOSITION}/status")) = json!("done"),
        &["required value set"],
    );
    // ext-1: an extension with a value and extensions.
    broken(
        |m| at(m, &format!("{HEADER}/extension/0"))["valueString"] = json!("x"),
        &["ext-1"],
    );
    // txt-1: a script in the narrative.
    broken(
        |m| {
            *at(m, &format!("{COMPOSITION}/section/0/text/div")) = json!(
                "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x()</script><p>a</p></div>"
            )
        },
        &["txt-1"],
    );
    // A resource type STU3 does not have.
    broken(
        |m| *at(m, &format!("{PRACTITIONER}/resourceType")) = json!("PractitionerRoleR5"),
        &["is not an STU3 resource type"],
    );
}

#[test]
fn broken_xml_fails() {
    let (stem, e) = entries().into_iter().next().unwrap();
    let xml = message(SendDocument::V1, &stem, &e).to_xml();
    validate_itk_xml(&xml, "GPFED_CONSULT_REPORT").expect("the message as written is valid");
    let cases = [
        // Elements out of STU3's order (FHIR's XML form is order-sensitive).
        (
            xml.replacen("<type value=\"message\"/>", "", 1).replacen(
                "<identifier>",
                "<type value=\"message\"/><identifier>",
                1,
            ),
            "STU3 XML: element",
        ),
        (
            xml.replacen(
                "xmlns=\"http://hl7.org/fhir\"",
                "xmlns=\"http://hl7.org/fhir/R4\"",
                1,
            ),
            "not a Bundle in http://hl7.org/fhir",
        ),
        (xml.replacen("</Bundle>", "", 1), "not well-formed"),
    ];
    for (broken, needle) in cases {
        let errors = validate_itk_xml(&broken, "GPFED_CONSULT_REPORT").unwrap_err();
        assert_has(&errors, needle);
    }
}

#[test]
fn the_gaps_are_reported_not_hidden() {
    // Requirements the gateway cannot meet from what it holds (no telephone number, no
    // SDS user id) or that name a consultation report: warnings, listed every time.
    let r = report(
        &[Itk::Json(&contact(SendDocument::V1))],
        "GPFED_CONSULT_REPORT",
        None,
    );
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    for id in ["GPCM-SD-031", "GPCM-SD-032", "GPCM-SD-118", "GPCM-SD-119"] {
        assert_has(&r.warnings, id);
    }
    let r = report(
        &[Itk::Json(&contact(SendDocument::V2))],
        "GPCONNECT_SEND_DOCUMENT",
        None,
    );
    assert!(
        !r.warnings.iter().any(|w| w.contains("GPCM-SD-118")),
        "{:#?}",
        r.warnings
    );
}
