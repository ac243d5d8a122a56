"""The ITK3 Message Distribution and GP Connect Send Document rules for one message,
each failure naming the requirement it breaks (GPCM-SD-…: nhsconnect/gpconnect-messaging
`_data/senddoc_requirements.yml` for 1.x, the Send Document 2.x conformance list for 2.x;
ITK3 profile names for the ITK3 standard's own rules).

`check(message, workflow, mailbox)` returns (failures, warnings): warnings are
requirements the gateway knowingly does not meet (it has no such data), kept visible.
"""

import base64

from stu3 import resources

NHS = "https://fhir.nhs.uk/STU3/StructureDefinition/"
CC = "https://fhir.hl7.org.uk/STU3/StructureDefinition/"
SNOMED = "http://snomed.info/sct"
HANDLING = NHS + "Extension-ITK-MessageHandling-2"
CARE_SETTING = CC + "Extension-CareConnect-CareSettingType-1"
MESSAGE_DEFINITION = ("https://fhir.nhs.uk/STU3/MessageDefinition/"
                      "ITK-GPConnectSendDocument-MessageDefinition-1")
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
SDS_USER = "https://fhir.nhs.uk/Id/sds-user-id"

V1, V2 = "1.x", "2.x"
WORKFLOWS = {"GPFED_CONSULT_REPORT": V1, "GPCONNECT_SEND_DOCUMENT": V2}
# GPCM-SD-115: 1.x names the one type; 2.x lists the approved document types.
DOCUMENT_TYPES = {V1: {"371531000"}, V2: {"371531000", "149701000000109"}}


class Report:
    def __init__(self):
        self.failures, self.warnings = [], []

    def fail(self, requirement, text):
        self.failures.append(f"{requirement}: {text}")

    def warn(self, requirement, text):
        self.warnings.append(f"{requirement}: {text}")

    def need(self, ok, requirement, text):
        if not ok:
            self.fail(requirement, text)
        return ok


def check(message, workflow, mailbox=None):
    r = Report()
    version = WORKFLOWS.get(workflow)
    if not r.need(version, "GPCM-SD-057",
                  f"workflow {workflow!r} is not a Send Document workflow ({sorted(WORKFLOWS)})"):
        return r.failures, r.warnings
    for path, res in resources(message, "Bundle"):
        meta = res.get("meta") or {}
        r.need(meta.get("profile"), "GPCM-SD-108",
               f"{path} ({res.get('resourceType')}) has no meta.profile")
    r.need(_profiled(message, NHS + "ITK-Message-Bundle-1"), "ITK-Message-Bundle-1",
           "the message Bundle's profile")
    r.need(message.get("type") == "message", "ITK-Message-Bundle-1", "Bundle.type is message")
    ident = message.get("identifier") or {}
    r.need(ident.get("system") and ident.get("value"), "ITK-Message-Bundle-1",
           "the message Bundle has an identifier")
    headers = _of(message, "MessageHeader")
    if not r.need(len(headers) == 1, "ITK-MessageHeader-2",
                  f"one MessageHeader, found {len(headers)}"):
        return r.failures, r.warnings
    document = _header(r, version, message, headers[0], mailbox)
    if document is not None:
        _document(r, version, document, message)
    return r.failures, r.warnings


def _profiled(res, profile):
    return profile in ((res or {}).get("meta") or {}).get("profile", [])


def _of(bundle, kind):
    return [e["resource"] for e in bundle.get("entry") or []
            if (e.get("resource") or {}).get("resourceType") == kind]


def _resolve(bundle, ref):
    """The entry of `bundle` a Reference points at, or None."""
    target = (ref or {}).get("reference")
    for e in bundle.get("entry") or []:
        if target is not None and e.get("fullUrl") == target:
            return e.get("resource")
    return None


def _header(r, version, message, header, mailbox):
    """The MessageHeader and its handling keys; returns the document it is focused on."""
    r.need(_profiled(header, NHS + "ITK-MessageHeader-2"), "ITK-MessageHeader-2",
           "the MessageHeader's profile")
    handling = [x for x in header.get("extension") or [] if x.get("url") == HANDLING]
    if r.need(len(handling) == 1, "ITK-MessageHeader-2",
              "one Extension-ITK-MessageHandling-2 on the MessageHeader"):
        _handling(r, version, handling[0].get("extension") or [])
    event = header.get("event") or {}
    r.need(event.get("system") == "https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2"
           and event.get("code") == "ITK007C", "GPCM-SD-047",
           f"event is ITK007C from ITK-MessageEvent-2, found {event.get('code')!r}")
    sender = _resolve(message, header.get("sender"))
    r.need(sender and sender.get("resourceType") == "Organization"
           and _profiled(sender, NHS + "CareConnect-ITK-Header-Organization-1"), "GPCM-SD-045",
           "MessageHeader.sender references a CareConnect-ITK-Header-Organization-1 "
           "in the message Bundle")
    r.need(header.get("timestamp"), "GPCM-SD-048", "MessageHeader.timestamp is given")
    endpoint = (header.get("source") or {}).get("endpoint")
    r.need(endpoint and (mailbox is None or endpoint == mailbox), "GPCM-SD-046",
           f"MessageHeader.source.endpoint is the sender's MESH mailbox "
           f"{mailbox or ''}, found {endpoint!r}".replace("  ", " "))
    r.need("destination" not in header and "receiver" not in header, "GPCM-SD-049",
           "no destination or receiver: MESH routes to the registered practice")
    focus = header.get("focus") or []
    if not r.need(len(focus) == 1, "GPCM-SD-103", f"one focus, found {len(focus)}"):
        return None
    document = _resolve(message, focus[0])
    if not r.need(document and document.get("resourceType") == "Bundle"
                  and document.get("type") == "document"
                  and _profiled(document, NHS + "ITK-Document-Bundle-1"), "GPCM-SD-103",
                  "MessageHeader.focus references an ITK-Document-Bundle-1 document Bundle "
                  "in the message Bundle"):
        return None
    r.need(len(_of(message, "Bundle")) == 1, "FHIR-PAY-01", "one document per transmission")
    return document


def _handling(r, version, keys):
    by_url = {}
    for k in keys:
        by_url.setdefault(k.get("url"), []).append(k)
    for url, found in by_url.items():
        r.need(len(found) == 1, "Extension-ITK-MessageHandling-2",
               f"handling key {url} given {len(found)} times")

    def key(url):
        return (by_url.get(url) or [{}])[0]

    r.need(key("BusAckRequested").get("valueBoolean") is True, "GPCM-SD-040",
           "handling key BusAckRequested is true")
    r.need(key("InfAckRequested").get("valueBoolean") is True, "GPCM-SD-041",
           "handling key InfAckRequested is true")
    recipient = key("RecipientType").get("valueCoding") or {}
    r.need(recipient.get("system") == "https://fhir.nhs.uk/STU3/CodeSystem/ITK-RecipientType-1"
           and recipient.get("code") == "FA", "GPCM-SD-039",
           f"handling key RecipientType is FA (for action), found {recipient.get('code')!r}")
    definition = (key("MessageDefinition").get("valueReference") or {}).get("reference")
    r.need(definition == MESSAGE_DEFINITION, "GPCM-SD-043",
           f"handling key MessageDefinition is {MESSAGE_DEFINITION}, found {definition!r}")
    reference = key("SenderReference").get("valueString")
    r.need(isinstance(reference, str) and 0 < len(reference.strip()) <= 255, "GPCM-SD-042",
           "handling key SenderReference identifies the activity (1 to 255 characters)")
    local = key("LocalExtension").get("valueString")
    if version == V1:
        r.need(local == "SendDocument-ConsultationReport", "GPCM-SD-044",
               f"1.x: handling key LocalExtension is SendDocument-ConsultationReport, "
               f"found {local!r}")
    else:
        # The 2.x conformance list writes NONE, its element guidance None.
        r.need(isinstance(local, str) and local.lower() == "none", "GPCM-SD-044",
               f"2.x: handling key LocalExtension is None, found {local!r}")


def _document(r, version, document, message):
    compositions = _of(document, "Composition")
    first = ((document.get("entry") or [{}])[0].get("resource") or {})
    if not r.need(len(compositions) == 1 and first is compositions[0]
                  and _profiled(first, CC + "CareConnect-Composition-1"), "GPCM-SD-104",
                  "the document's first entry is its one CareConnect-Composition-1"):
        return
    c = compositions[0]
    r.need(c.get("status") == "final", "GPCM-SD-114", "Composition.status is final")
    codes = {x.get("code") for x in (c.get("type") or {}).get("coding") or []
             if x.get("system") == SNOMED}
    r.need(codes & DOCUMENT_TYPES[version], "GPCM-SD-115",
           f"{version}: Composition.type is SNOMED CT {sorted(DOCUMENT_TYPES[version])}, "
           f"found {sorted(codes)}")
    r.need(c.get("date"), "GPCM-SD-116", "Composition.date is given")
    r.need(c.get("confidentiality") in ("N", "R"), "GPCM-SD-117",
           "Composition.confidentiality is N or R")
    _participants(r, document, c, message)
    _attachments(r, document, c)
    if version == V2:
        care = [x for x in c.get("extension") or [] if x.get("url") == CARE_SETTING]
        coding = ((care or [{}])[0].get("valueCodeableConcept") or {}).get("coding") or []
        r.need(len(care) == 1 and any(x.get("system") == SNOMED and x.get("code")
                                      for x in coding), "CareConnect-Composition-1",
               "2.x: Composition.extension careSettingTypeExtension names the sending "
               "service's care setting in SNOMED CT")
    else:
        _v1_gaps(r, c)


def _participants(r, document, c, message):
    patient = _resolve(document, c.get("subject"))
    if r.need(patient and patient.get("resourceType") == "Patient"
              and _profiled(patient, CC + "CareConnect-Patient-1"), "GPCM-SD-106",
              "Composition.subject references a CareConnect-Patient-1 in the document"):
        ids = [i for i in patient.get("identifier") or [] if i.get("system") == NHS_NUMBER]
        r.need(ids and ids[0].get("value"), "GPCM-SD-035", "the Patient's NHS number")
        r.need([n for n in patient.get("name") or [] if n.get("use") == "official"],
               "GPCM-SD-036", "the Patient's name with use official")
        birth = patient.get("birthDate") or ""
        r.need(len(birth) == 10, "GPCM-SD-037", "the Patient's birth date as YYYY-MM-DD")
    authors = [_resolve(document, a) for a in c.get("author") or []]
    practitioners = [a for a in authors if a and a.get("resourceType") == "Practitioner"]
    r.need(authors and all(authors) and practitioners
           and all(_profiled(p, CC + "CareConnect-Practitioner-1") for p in practitioners),
           "GPCM-SD-107", "Composition.author references a CareConnect-Practitioner-1 "
           "in the document")
    for p in practitioners:
        if r.need(p.get("name"), "GPCM-SD-033", "the Practitioner's name"):
            if not [n for n in p["name"] if n.get("use") == "official"]:
                r.warn("GPCM-SD-033", "the Practitioner's name has no use official")
        if not [i for i in p.get("identifier") or [] if i.get("system") == SDS_USER]:
            r.warn("GPCM-SD-032", "the Practitioner has no SDS user id")
    org = _resolve(document, c.get("custodian"))
    if r.need(org and org.get("resourceType") == "Organization"
              and _profiled(org, CC + "CareConnect-Organization-1"), "GPCM-SD-105",
              "Composition.custodian references a CareConnect-Organization-1 "
              "in the document"):
        ods = [i.get("value") for i in org.get("identifier") or [] if i.get("system") == ODS]
        r.need(ods and ods[0], "GPCM-SD-029", "the sending Organization's ODS code")
        r.need(org.get("name"), "GPCM-SD-030", "the sending Organization's name")
        header_ods = {i.get("value") for o in _of(message, "Organization")
                      for i in o.get("identifier") or []}
        r.need(ods and ods[0] in header_ods, "GPCM-SD-028",
               "the custodian is the sending organisation (the ODS code of the header's)")
        if not [t for t in org.get("telecom") or [] if t.get("system") == "phone"]:
            r.warn("GPCM-SD-031", "the sending Organization has no telephone number")


def _attachments(r, document, c):
    entries = [e for s in c.get("section") or [] for e in s.get("entry") or []]
    r.need(entries, "GPCM-SD-109", "a Composition.section holds the attachment")
    targets = [_resolve(document, e) for e in entries]
    r.need(all(t and t.get("resourceType") == "Binary"
               and _profiled(t, NHS + "ITK-Attachment-Binary-1") for t in targets),
           "GPCM-SD-110", "every Composition.section.entry references an "
           "ITK-Attachment-Binary-1 in the document")
    for b in _of(document, "Binary"):
        r.need(any(t is b for t in targets), "GPCM-SD-109",
               "every attachment is a Composition.section entry")
    if targets and targets[0] and targets[0].get("resourceType") == "Binary":
        primary = targets[0]
        try:
            pdf = base64.b64decode(primary.get("content") or "", validate=True)
        except ValueError:
            pdf = b""
        r.need(pdf, "GPCM-SD-111", "the attachment is base64 encoded")
        r.need(primary.get("contentType") == "application/pdf" and pdf.startswith(b"%PDF-"),
               "GPCM-SD-124", "the primary attachment (the first section entry, "
               "GPCM-SD-112) is the report as a PDF")


def _v1_gaps(r, c):
    """1.x's fixed texts for a consultation report, which a social prescribing message
    back is not: reported, not failed."""
    if c.get("title") != "Consultation report":
        r.warn("GPCM-SD-118", f"1.x: Composition.title is {c.get('title')!r}, "
               "not 'Consultation report'")
    if not c.get("text"):
        r.warn("GPCM-SD-119", "1.x: no Composition.text consultation report summary")
