//! The ITK3 payload: the document Bundle of Composition, Binary (the PDF), Patient,
//! Organization and Practitioner, as each Send Document version asks for it.

use base64::Engine as _;
use uuid::Uuid;

use super::{CARECONNECT, Ids, NHS_PROFILE, SendDocument, Sender};
use super::{entry, meta, reference, uuid_identifier};
use crate::record::stu3::{El, obj, resource, s};
use crate::record::{RecordEntry, document, pdf};

const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// The Composition's title; 2.x puts the document's title first in the MESH subject.
pub const COMPOSITION_TITLE: &str = "Social prescribing: message back";

/// The sending service's care setting, which 2.x requires on the Composition: a code,
/// its display. The UK Core Care Setting Type value set (the SNOMED CT UK "Services"
/// reference set) has no social prescribing service; a link worker service is a
/// community health service.
pub const CARE_SETTING: (&str, &str) = ("413294000", "Community health services");

/// The sending organisation, under `profile` (the message header's or the document's).
pub(super) fn organisation(id: &Uuid, profile: &str, sender: &Sender<'_>) -> El {
    resource(
        "Organization",
        vec![
            ("id", s(id.to_string())),
            ("meta", meta(profile)),
            (
                "identifier",
                El::List(vec![obj(vec![
                    ("system", s(ODS)),
                    ("value", s(sender.ods_code)),
                ])]),
            ),
            ("name", s(sender.name)),
        ],
    )
}

/// The document Bundle: Composition, Binary (the PDF), Patient, Organization and
/// Practitioner.
pub(super) fn document_bundle(
    version: SendDocument,
    ids: &Ids,
    e: &RecordEntry,
    sender: &Sender<'_>,
    timestamp: &str,
) -> El {
    resource(
        "Bundle",
        vec![
            ("id", s(ids.document.to_string())),
            ("meta", meta(&format!("{NHS_PROFILE}ITK-Document-Bundle-1"))),
            ("identifier", uuid_identifier(&ids.document)),
            ("type", s("document")),
            (
                "entry",
                El::List(vec![
                    entry(&ids.composition, composition(version, ids, e, timestamp)),
                    entry(&ids.binary, binary(&ids.binary, e)),
                    entry(&ids.patient, patient(&ids.patient, e)),
                    entry(
                        &ids.organisation,
                        organisation(
                            &ids.organisation,
                            &format!("{CARECONNECT}CareConnect-Organization-1"),
                            sender,
                        ),
                    ),
                    entry(&ids.practitioner, practitioner(&ids.practitioner, e)),
                ]),
            ),
        ],
    )
}

/// A SNOMED CT concept as a CodeableConcept.
fn snomed(code: &str, display: &str) -> El {
    obj(vec![(
        "coding",
        El::List(vec![obj(vec![
            ("system", s(crate::record::SNOMED_SYSTEM)),
            ("code", s(code)),
            ("display", s(display)),
        ])]),
    )])
}

/// The Composition: a "Report of clinical encounter" (a type both versions approve)
/// whose sections say, in order, the plan and requested actions, what happened
/// (pointing at the PDF), and the rest of the readable document. 2.x adds the sending
/// service's care setting, by which its receivers file the document.
fn composition(version: SendDocument, ids: &Ids, e: &RecordEntry, timestamp: &str) -> El {
    let mut fields = vec![
        ("id", s(ids.composition.to_string())),
        (
            "meta",
            meta(&format!("{CARECONNECT}CareConnect-Composition-1")),
        ),
    ];
    if version == SendDocument::V2 {
        let (code, display) = CARE_SETTING;
        fields.push((
            "extension",
            El::List(vec![obj(vec![
                (
                    "url",
                    s(format!(
                        "{CARECONNECT}Extension-CareConnect-CareSettingType-1"
                    )),
                ),
                ("valueCodeableConcept", snomed(code, display)),
            ])]),
        ));
    }
    fields.extend([
        ("identifier", uuid_identifier(&ids.composition)),
        ("status", s("final")),
        ("type", snomed("371531000", "Report of clinical encounter")),
        ("subject", reference(&ids.patient)),
        ("date", s(timestamp)),
        ("author", El::List(vec![reference(&ids.practitioner)])),
        ("title", s(COMPOSITION_TITLE)),
        ("confidentiality", s("N")),
        ("custodian", reference(&ids.organisation)),
        ("section", El::List(sections(ids, e))),
    ]);
    resource("Composition", fields)
}

/// The Composition's sections, in the readable document's order (the plan and requested
/// actions first), each its lines as narrative; "What happened" points at the PDF.
fn sections(ids: &Ids, e: &RecordEntry) -> Vec<El> {
    document::blocks(e, false)
        .into_iter()
        .map(|b| {
            let paragraphs: String = b
                .lines
                .iter()
                .map(|l| format!("<p>{}</p>", xml_text(l.trim_start())))
                .collect();
            let mut section = vec![
                ("title", s(b.title)),
                (
                    "text",
                    obj(vec![
                        ("status", s("generated")),
                        (
                            "div",
                            El::Xhtml(format!(
                                "<div xmlns=\"http://www.w3.org/1999/xhtml\">{paragraphs}</div>"
                            )),
                        ),
                    ]),
                ),
            ];
            if b.title == "What happened" {
                section.push(("entry", El::List(vec![reference(&ids.binary)])));
            }
            obj(section)
        })
        .collect()
}

/// The readable summary as a PDF.
fn binary(id: &Uuid, e: &RecordEntry) -> El {
    let lines = document::lines(e, false);
    let pdf = pdf::render(document::TITLE, &lines);
    resource(
        "Binary",
        vec![
            ("id", s(id.to_string())),
            (
                "meta",
                meta(&format!("{NHS_PROFILE}ITK-Attachment-Binary-1")),
            ),
            ("contentType", s("application/pdf")),
            (
                "content",
                s(base64::engine::general_purpose::STANDARD.encode(pdf)),
            ),
        ],
    )
}

/// The patient: the NHS number (MESH reaches England only), name, gender, birth date.
fn patient(id: &Uuid, e: &RecordEntry) -> El {
    let mut fields = vec![
        ("id", s(id.to_string())),
        ("meta", meta(&format!("{CARECONNECT}CareConnect-Patient-1"))),
    ];
    if let Some(n) = &e.patient.nhs_number {
        fields.push((
            "identifier",
            El::List(vec![obj(vec![
                ("system", s(crate::model::identifiers::NHS_NUMBER_SYSTEM)),
                ("value", s(n)),
            ])]),
        ));
    }
    let mut name = vec![("use", s("official"))];
    if let Some(f) = &e.patient.name.family {
        name.push(("family", s(f)));
    }
    if !e.patient.name.given.is_empty() {
        name.push((
            "given",
            El::List(e.patient.name.given.iter().map(s).collect()),
        ));
    }
    fields.push(("name", El::List(vec![obj(name)])));
    if let Some(g) = &e.patient.gender {
        fields.push(("gender", s(g)));
    }
    if let Some(d) = &e.patient.date_of_birth {
        fields.push(("birthDate", s(d)));
    }
    resource("Patient", fields)
}

/// The link worker who wrote it (by name; a generic one when the platform gave none).
fn practitioner(id: &Uuid, e: &RecordEntry) -> El {
    let name = e
        .practitioner
        .as_ref()
        .and_then(|p| p.name.clone())
        .unwrap_or_else(|| "Social prescribing link worker".into());
    resource(
        "Practitioner",
        vec![
            ("id", s(id.to_string())),
            (
                "meta",
                meta(&format!("{CARECONNECT}CareConnect-Practitioner-1")),
            ),
            ("name", El::List(vec![obj(vec![("text", s(name))])])),
        ],
    )
}

/// Narrative text: markup escaped, characters XML forbids left out.
fn xml_text(s: &str) -> String {
    s.chars()
        .filter(|c| crate::model::markup::xml_allowed(*c))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
