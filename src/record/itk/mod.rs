//! GP Connect Send Document: an ITK3 message (FHIR STU3) carrying the event's readable
//! summary as a PDF — MessageHeader (ITK message handling: business and infrastructure
//! acknowledgements requested, for action, the Send Document message definition, event
//! ITK007C) focused on a document Bundle of Composition (SNOMED 371531000 "Report of
//! clinical encounter"), Binary (the PDF), Patient, Organization and Practitioner
//! ([`payload`]). MESH routes it to the registered practice; no destination is named here.
//!
//! Two versions of the specification are in use, told apart by the MESH workflow
//! ([`SendDocument`]): 1.x ("Send Consultation Report") and 2.x, whose receivers identify
//! the document by its Composition rather than by the handling keys.

mod payload;

use uuid::Uuid;

use super::RecordEntry;
use super::stu3::{El, obj, resource, s};

pub use payload::{CARE_SETTING, COMPOSITION_TITLE};

const NHS_PROFILE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";
const CARECONNECT: &str = "https://fhir.hl7.org.uk/STU3/StructureDefinition/";
const RFC4122: &str = "https://tools.ietf.org/html/rfc4122";

/// The message definition both versions name (GPCM-SD-043). The 2.x conformance list
/// spells it `…-MessageDefinition-Instance-1`, but its element guidance gives this URL,
/// and ITK3 2.5.1 took "Instance" out of message definition URLs.
const MESSAGE_DEFINITION: &str =
    "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-GPConnectSendDocument-MessageDefinition-1";

/// Which GP Connect Send Document specification a message follows. A receiver picks its
/// handler by the MESH workflow, so the workflow configured decides the shape written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendDocument {
    /// 1.x, "Send Consultation Report" (workflow `GPFED_CONSULT_REPORT`): the one
    /// document type, named by the `LocalExtension` handling key.
    V1,
    /// 2.x (workflow `GPCONNECT_SEND_DOCUMENT`): any document type, named by
    /// `Composition.type` and the sending service's care setting; `LocalExtension` is
    /// `None`.
    V2,
}

impl SendDocument {
    /// The MESH workflow a message of this version is sent on.
    pub fn workflow(self) -> &'static str {
        match self {
            SendDocument::V1 => "GPFED_CONSULT_REPORT",
            SendDocument::V2 => "GPCONNECT_SEND_DOCUMENT",
        }
    }

    /// The MESH workflow the practice's ITK3 responses to it come back on.
    pub fn ack_workflow(self) -> &'static str {
        match self {
            SendDocument::V1 => "GPFED_CONSULT_REPORT_ACK",
            SendDocument::V2 => "GPCONNECT_SEND_DOCUMENT_ACK",
        }
    }

    /// The `LocalExtension` handling key (GPCM-SD-044): 1.x names the use case; 2.x
    /// asks for `None`, since receivers must not identify the document by it.
    fn local_extension(self) -> &'static str {
        match self {
            SendDocument::V1 => "SendDocument-ConsultationReport",
            SendDocument::V2 => "None",
        }
    }
}

/// The version a MESH workflow id (or its `…_ACK` workflow) belongs to: the 2.x
/// workflow, else 1.x — the shape every other workflow has always been sent.
pub fn version_of(workflow: &str) -> SendDocument {
    if workflow.starts_with(SendDocument::V2.workflow()) {
        SendDocument::V2
    } else {
        SendDocument::V1
    }
}

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

/// A Bundle's business identifier: its own id, as a UUID.
fn uuid_identifier(id: &Uuid) -> El {
    obj(vec![("system", s(RFC4122)), ("value", s(id.to_string()))])
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

/// The Send Document 1.x message for one event; `timestamp` when it was made.
pub fn message(e: &RecordEntry, message_id: &str, sender: &Sender<'_>, timestamp: &str) -> El {
    message_for(SendDocument::V1, e, message_id, sender, timestamp)
}

/// The ITK3 message for one event as `version` of Send Document describes it;
/// `timestamp` when it was made.
pub fn message_for(
    version: SendDocument,
    e: &RecordEntry,
    message_id: &str,
    sender: &Sender<'_>,
    timestamp: &str,
) -> El {
    let ids = Ids::of(message_id);
    let header = message_header(version, &ids, message_id, sender, timestamp);
    let header_organisation = payload::organisation(
        &ids.sender,
        &format!("{NHS_PROFILE}CareConnect-ITK-Header-Organization-1"),
        sender,
    );
    let document = payload::document_bundle(version, &ids, e, sender, timestamp);
    resource(
        "Bundle",
        vec![
            ("id", s(ids.bundle.to_string())),
            ("meta", meta(&format!("{NHS_PROFILE}ITK-Message-Bundle-1"))),
            ("identifier", uuid_identifier(&ids.bundle)),
            ("type", s("message")),
            (
                "entry",
                El::List(vec![
                    entry(&ids.header, header),
                    entry(&ids.sender, header_organisation),
                    entry(&ids.document, document),
                ]),
            ),
        ],
    )
}

/// The MessageHeader: ITK message handling (both acknowledgements requested, for action,
/// the Send Document message definition, the event's id as sender reference, the
/// version's local extension), event ITK007C, focused on the document.
fn message_header(
    version: SendDocument,
    ids: &Ids,
    message_id: &str,
    sender: &Sender<'_>,
    timestamp: &str,
) -> El {
    let key = |url: &str, value: (&str, El)| obj(vec![("url", s(url)), value]);
    let recipient_type = obj(vec![
        (
            "system",
            s("https://fhir.nhs.uk/STU3/CodeSystem/ITK-RecipientType-1"),
        ),
        ("code", s("FA")),
        ("display", s("For Action")),
    ]);
    let handling = obj(vec![
        (
            "url",
            s(format!("{NHS_PROFILE}Extension-ITK-MessageHandling-2")),
        ),
        (
            "extension",
            El::List(vec![
                key("BusAckRequested", ("valueBoolean", El::Bool(true))),
                key("InfAckRequested", ("valueBoolean", El::Bool(true))),
                key("RecipientType", ("valueCoding", recipient_type)),
                key(
                    "MessageDefinition",
                    (
                        "valueReference",
                        obj(vec![("reference", s(MESSAGE_DEFINITION))]),
                    ),
                ),
                key("SenderReference", ("valueString", s(message_id))),
                key(
                    "LocalExtension",
                    ("valueString", s(version.local_extension())),
                ),
            ]),
        ),
    ]);
    resource(
        "MessageHeader",
        vec![
            ("id", s(ids.header.to_string())),
            ("meta", meta(&format!("{NHS_PROFILE}ITK-MessageHeader-2"))),
            ("extension", El::List(vec![handling])),
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

#[cfg(test)]
mod tests;
