//! GP Connect Send Document: an ITK3 message (FHIR STU3) carrying the event's readable
//! summary as a PDF — MessageHeader (ITK message handling: business and infrastructure
//! acknowledgements requested, for action, the Send Document message definition, event
//! ITK007C) focused on a document Bundle of Composition (SNOMED 371531000 "Report of
//! clinical encounter"), Binary (the PDF), Patient, Organization and Practitioner.
//! MESH routes it to the registered practice; no destination is named here.

use base64::Engine as _;
use uuid::Uuid;

use super::stu3::{El, obj, resource, s};
use super::{RecordEntry, document, pdf};

const NHS_PROFILE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";
const CARECONNECT: &str = "https://fhir.hl7.org.uk/STU3/StructureDefinition/";
const RFC4122: &str = "https://tools.ietf.org/html/rfc4122";
const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// Who sends: our organisation and MESH mailbox.
pub struct Sender<'a> {
    pub ods_code: &'a str,
    pub name: &'a str,
    pub mailbox: &'a str,
}

fn meta(profile: &str) -> El {
    obj(vec![("profile", El::List(vec![s(profile)]))])
}

fn reference(id: &Uuid) -> El {
    obj(vec![("reference", s(format!("urn:uuid:{id}")))])
}

fn entry(id: &Uuid, r: El) -> El {
    obj(vec![
        ("fullUrl", s(format!("urn:uuid:{id}"))),
        ("resource", r),
    ])
}

/// A deterministic id for one part of one event's message (so a resend is identical).
fn part(message_id: &str, what: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("clw-gateway/itk/{message_id}/{what}").as_bytes(),
    )
}

/// The ids of one event's message parts.
struct Ids {
    bundle: Uuid,
    header: Uuid,
    sender: Uuid,
    document: Uuid,
    composition: Uuid,
    binary: Uuid,
    patient: Uuid,
    organisation: Uuid,
    practitioner: Uuid,
}

impl Ids {
    fn of(message_id: &str) -> Ids {
        let id = |what| part(message_id, what);
        Ids {
            bundle: id("bundle"),
            header: id("header"),
            sender: id("sender"),
            document: id("document"),
            composition: id("composition"),
            binary: id("binary"),
            patient: id("patient"),
            organisation: id("organisation"),
            practitioner: id("practitioner"),
        }
    }
}

/// The ITK3 message for one event; `timestamp` when it was made.
pub fn message(e: &RecordEntry, message_id: &str, sender: &Sender<'_>, timestamp: &str) -> El {
    let ids = Ids::of(message_id);
    resource(
        "Bundle",
        vec![
            ("id", s(ids.bundle.to_string())),
            ("meta", meta(&format!("{NHS_PROFILE}ITK-Message-Bundle-1"))),
            (
                "identifier",
                obj(vec![
                    ("system", s(RFC4122)),
                    ("value", s(ids.bundle.to_string())),
                ]),
            ),
            ("type", s("message")),
            (
                "entry",
                El::List(vec![
                    entry(
                        &ids.header,
                        message_header(&ids, message_id, sender, timestamp),
                    ),
                    entry(
                        &ids.sender,
                        organisation(
                            &ids.sender,
                            &format!("{NHS_PROFILE}CareConnect-ITK-Header-Organization-1"),
                            sender,
                        ),
                    ),
                    entry(&ids.document, document_bundle(&ids, e, sender, timestamp)),
                ]),
            ),
        ],
    )
}

/// The MessageHeader: ITK message handling (both acknowledgements requested, for action,
/// the Send Document message definition), event ITK007C, focused on the document.
fn message_header(ids: &Ids, message_id: &str, sender: &Sender<'_>, timestamp: &str) -> El {
    let handling = |url: &str, value: (&str, El)| obj(vec![("url", s(url)), value]);
    resource(
        "MessageHeader",
        vec![
            ("id", s(ids.header.to_string())),
            ("meta", meta(&format!("{NHS_PROFILE}ITK-MessageHeader-2"))),
            (
                "extension",
                El::List(vec![obj(vec![
                    (
                        "url",
                        s(format!("{NHS_PROFILE}Extension-ITK-MessageHandling-2")),
                    ),
                    (
                        "extension",
                        El::List(vec![
                            handling("BusAckRequested", ("valueBoolean", El::Bool(true))),
                            handling("InfAckRequested", ("valueBoolean", El::Bool(true))),
                            handling(
                                "RecipientType",
                                (
                                    "valueCoding",
                                    obj(vec![
                                        (
                                            "system",
                                            s(
                                                "https://fhir.nhs.uk/STU3/CodeSystem/ITK-RecipientType-1",
                                            ),
                                        ),
                                        ("code", s("FA")),
                                        ("display", s("For Action")),
                                    ]),
                                ),
                            ),
                            handling(
                                "MessageDefinition",
                                (
                                    "valueReference",
                                    obj(vec![(
                                        "reference",
                                        s(
                                            "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-GPConnectSendDocument-MessageDefinition-1",
                                        ),
                                    )]),
                                ),
                            ),
                            handling("SenderReference", ("valueString", s(message_id))),
                            handling(
                                "LocalExtension",
                                ("valueString", s("SendDocument-ConsultationReport")),
                            ),
                        ]),
                    ),
                ])]),
            ),
            (
                "event",
                obj(vec![
                    (
                        "system",
                        s("https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2"),
                    ),
                    ("code", s("ITK007C")),
                    ("display", s("ITK GP Connect Send Document")),
                ]),
            ),
            ("sender", reference(&ids.sender)),
            ("timestamp", s(timestamp)),
            ("source", obj(vec![("endpoint", s(sender.mailbox))])),
            ("focus", El::List(vec![reference(&ids.document)])),
        ],
    )
}

/// The sending organisation, under `profile` (the message header's or the document's).
fn organisation(id: &Uuid, profile: &str, sender: &Sender<'_>) -> El {
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
fn document_bundle(ids: &Ids, e: &RecordEntry, sender: &Sender<'_>, timestamp: &str) -> El {
    resource(
        "Bundle",
        vec![
            ("id", s(ids.document.to_string())),
            ("meta", meta(&format!("{NHS_PROFILE}ITK-Document-Bundle-1"))),
            (
                "identifier",
                obj(vec![
                    ("system", s(RFC4122)),
                    ("value", s(ids.document.to_string())),
                ]),
            ),
            ("type", s("document")),
            (
                "entry",
                El::List(vec![
                    entry(&ids.composition, composition(ids, e, timestamp)),
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

/// The Composition: a "Report of clinical encounter" whose sections say, in order, the
/// plan and requested actions, what happened (pointing at the PDF), and the rest of the
/// readable document.
fn composition(ids: &Ids, e: &RecordEntry, timestamp: &str) -> El {
    let title = "Social prescribing: message back";
    resource(
        "Composition",
        vec![
            ("id", s(ids.composition.to_string())),
            (
                "meta",
                meta(&format!("{CARECONNECT}CareConnect-Composition-1")),
            ),
            (
                "identifier",
                obj(vec![
                    ("system", s(RFC4122)),
                    ("value", s(ids.composition.to_string())),
                ]),
            ),
            ("status", s("final")),
            (
                "type",
                obj(vec![(
                    "coding",
                    El::List(vec![obj(vec![
                        ("system", s("http://snomed.info/sct")),
                        ("code", s("371531000")),
                        ("display", s("Report of clinical encounter")),
                    ])]),
                )]),
            ),
            ("subject", reference(&ids.patient)),
            ("date", s(timestamp)),
            ("author", El::List(vec![reference(&ids.practitioner)])),
            ("title", s(title)),
            ("confidentiality", s("N")),
            ("custodian", reference(&ids.organisation)),
            ("section", El::List(sections(ids, e))),
        ],
    )
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
