"""Base FHIR STU3 (3.0.2): the message read by the `fhir.resources` STU3 models, every
nested resource under its own model, plus the invariants and required bindings those
models do not enforce for the elements an ITK3 Send Document message uses.

Each function returns a list of failures; an empty list is a pass.
"""

import base64
import json

from fhir.resources.STU3.bundle import Bundle
from lxml import etree
from pydantic import ValidationError

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"

# Required bindings of the coded elements the message uses: (resource, element) → codes.
# The models accept any string here, so they are checked by hand.
REQUIRED_CODES = {
    ("Bundle", "type"): {"document", "message", "transaction", "transaction-response",
                         "batch", "batch-response", "history", "searchset", "collection"},
    ("Composition", "status"): {"preliminary", "final", "amended", "entered-in-error"},
    ("Composition", "confidentiality"): {"U", "L", "M", "N", "R", "V"},
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
}
NARRATIVE_STATUS = {"generated", "extensions", "additional", "empty"}
NAME_USE = {"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"}

# txt-1: only basic HTML formatting; these are the elements it rules out.
XHTML_FORBIDDEN = {"head", "body", "script", "form", "base", "link", "xlink", "iframe",
                   "object", "applet", "frame", "frameset", "style", "meta", "input"}


class Parsed:
    """A message as read: `message` the dict its rules are checked on (None when it could
    not be read), `canonical` the STU3 model's own JSON of it (None when the models
    refused it), and the failures met reading it."""

    def __init__(self, message, model, failures):
        self.message = message
        self.canonical = model.model_dump_json() if model is not None else None
        self.failures = failures


def parse_json(text):
    """The message from its JSON form."""
    try:
        data = json.loads(text)
    except ValueError as e:
        return Parsed(None, None, [f"STU3 JSON: not JSON: {e}"])
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        return Parsed(None, None, ["STU3 JSON: the message is not a Bundle resource"])
    model, failures = _model(lambda: Bundle.model_validate(data))
    if model is not None:
        failures += _same_shape(data, json.loads(model.model_dump_json()), "Bundle")
    return Parsed(data, model, failures)


def parse_xml(raw):
    """The message from its XML form (its rules are checked on the model's JSON of it).
    Checks that it is well formed, in the FHIR namespace, and that every element is one
    STU3 knows, in the order STU3 defines (FHIR's XML form is order-sensitive)."""
    try:
        root = etree.fromstring(raw)
    except etree.XMLSyntaxError as e:
        return Parsed(None, None, [f"STU3 XML: not well-formed XML: {e}"])
    if root.tag != f"{{{FHIR_NS}}}Bundle":
        return Parsed(None, None, [f"STU3 XML: the root element is {root.tag}, "
                                   f"not a Bundle in {FHIR_NS}"])
    model, failures = _model(lambda: Bundle.model_validate_xml(raw))
    if model is None:
        return Parsed(None, None, failures)
    written = model.model_dump_xml()
    failures += _same_elements(root, etree.fromstring(
        written.encode() if isinstance(written, str) else written))
    return Parsed(json.loads(model.model_dump_json()), model, failures)


def _model(build):
    try:
        return build(), []
    except ValidationError as e:
        return None, [f"STU3 {_path(er['loc'])}: {er['msg']}" for er in e.errors()]
    except KeyError as e:
        # fhir.resources looks a resourceType up among STU3's models.
        return None, [f"STU3: {e.args[0]} is not an STU3 resource type"]
    except (ValueError, TypeError) as e:
        return None, [f"STU3: {e}"]


def _path(loc):
    out = "Bundle"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _shape(v):
    if isinstance(v, dict):
        return {k: _shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_shape(x) for x in v]
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return "string" if isinstance(v, str) else type(v).__name__


def _same_shape(sent, read, path):
    """The models coerce ("true" → true, 5 → "5"): a value whose JSON type differs
    from the one its STU3 element has, or anything the model dropped, is a failure."""
    a, b = _shape(sent), _shape(read)
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in a.keys() | b.keys():
            if k not in b:
                out.append(f"STU3 JSON {path}.{k}: not an element STU3 keeps")
            elif k in a:
                out += _same_shape(sent[k], read[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [f for i, (x, y) in enumerate(zip(sent, read))
                for f in _same_shape(x, y, f"{path}[{i}]")]
    return [f"STU3 JSON {path}: written as {_describe(a)}, STU3 has {_describe(b)}"]


def _describe(shape):
    return {dict: "an object", list: "an array"}.get(type(shape), f"a {shape}")


def _events(root):
    """Each element in document order: its name, its attributes' names, an extension's
    url (the values themselves are normalised when the model writes them back)."""
    return [(el.tag, tuple(sorted(el.attrib.keys())), el.get("url"))
            for el in root.iter() if isinstance(el.tag, str)]


def _same_elements(sent, written):
    """The message as sent against the model's own XML of it: an element out of STU3's
    order, outside the FHIR namespace, or that STU3 would drop shows up as a difference."""
    sent, written = _events(sent), _events(written)
    for i, (a, b) in enumerate(zip(sent, written)):
        if a != b:
            return [f"STU3 XML: element {i + 1} is {a[0]} {list(a[1])}, where STU3's order "
                    f"has {b[0]} {list(b[1])}"]
    if len(sent) != len(written):
        return ["STU3 XML: elements were left out when read as STU3"]
    return []


def invariants(message):
    """The invariants and required bindings of every resource in the message."""
    out = []
    for path, res in resources(message, "Bundle"):
        out += _bindings(path, res)
        if res.get("resourceType") == "Bundle":
            out += _bundle(path, res)
        if res.get("resourceType") == "Binary":
            out += _base64(path, res)
    for path, ext in _all(message, "Bundle", ("extension", "modifierExtension")):
        has_value = any(k.startswith("value") for k in ext)
        if has_value == bool(ext.get("extension")):
            out.append(f"STU3 ext-1 {path}: an extension has either a value or extensions")
    for path, narrative in _all(message, "Bundle", ("text",)):
        out += _narrative(path, narrative)
    for path, name in _all(message, "Bundle", ("name",)):
        if name.get("use") is not None and name["use"] not in NAME_USE:
            out.append(f"STU3 {path}.use: {name['use']!r} is not a name use")
    return out


def resources(resource, path):
    """(path, resource) for the resource and every resource in its bundle entries."""
    yield path, resource
    for i, entry in enumerate(resource.get("entry") or []):
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            yield from resources(entry["resource"], f"{path}.entry[{i}].resource")


def _all(value, path, keys):
    """(path, object) for every object held under one of `keys`, at any depth."""
    if isinstance(value, dict):
        for k, v in value.items():
            items = v if isinstance(v, list) else [v]
            for i, item in enumerate(items):
                p = f"{path}.{k}" + (f"[{i}]" if isinstance(v, list) else "")
                if k in keys and isinstance(item, dict):
                    yield p, item
                yield from _all(item, p, keys)


def _bindings(path, res):
    out = []
    for (kind, element), codes in REQUIRED_CODES.items():
        value = res.get(element)
        if res.get("resourceType") == kind and value is not None and value not in codes:
            out.append(f"STU3 {path}.{element}: {value!r} is not in its required value set")
    return out


def _bundle(path, bundle):
    out = []
    urls = [e.get("fullUrl") for e in bundle.get("entry") or [] if e.get("fullUrl")]
    if len(urls) != len(set(urls)):
        out.append(f"STU3 bdl-7 {path}: fullUrl must be unique in a bundle")
    ident = bundle.get("identifier") or {}
    if bundle.get("type") == "document" and not (ident.get("system") and ident.get("value")):
        out.append(f"STU3 bdl-9 {path}: a document must have an identifier with a system "
                   "and a value")
    first = ((bundle.get("entry") or [{}])[0].get("resource") or {}).get("resourceType")
    for kind, first_kind in (("message", "MessageHeader"), ("document", "Composition")):
        if bundle.get("type") == kind and first != first_kind:
            out.append(f"STU3 {path}: the first resource of a {kind} must be a {first_kind}")
    if bundle.get("type") in ("message", "document"):
        out += _references_resolve(path, bundle, urls)
    return out


def _references_resolve(path, bundle, urls):
    """A message or document is sent whole: every urn:uuid it references is one of its
    own entries (a nested Bundle's references are that Bundle's own)."""
    out = []
    for i, entry in enumerate(bundle.get("entry") or []):
        res = entry.get("resource") or {}
        holder = {k: v for k, v in res.items() if not (res.get("resourceType") == "Bundle"
                                                       and k == "entry")}
        for p, ref in _all(holder, f"{path}.entry[{i}].resource", _REFERENCE_KEYS):
            target = ref.get("reference")
            if isinstance(target, str) and target.startswith("urn:uuid:") and target not in urls:
                out.append(f"STU3 {p}: {target} is not an entry of the bundle")
    return out


_REFERENCE_KEYS = ("subject", "author", "custodian", "entry", "sender", "focus",
                   "valueReference", "party", "encounter", "receiver", "enterer")


def _narrative(path, narrative):
    if "div" not in narrative:
        return []
    out = []
    if narrative.get("status") not in NARRATIVE_STATUS:
        out.append(f"STU3 {path}.status: {narrative.get('status')!r} is not a narrative status")
    try:
        div = etree.fromstring(narrative["div"])
    except etree.XMLSyntaxError as e:
        return out + [f"STU3 {path}.div: not well-formed XHTML: {e}"]
    if div.tag != f"{{{XHTML_NS}}}div":
        out.append(f"STU3 {path}.div: the narrative is a div in the XHTML namespace")
    bad = sorted({etree.QName(el).localname for el in div.iter() if isinstance(el.tag, str)
                  and (etree.QName(el).namespace != XHTML_NS
                       or etree.QName(el).localname in XHTML_FORBIDDEN)})
    if bad:
        out.append(f"STU3 txt-1 {path}.div: elements a narrative may not hold: {bad}")
    if not "".join(div.itertext()).strip():
        out.append(f"STU3 txt-2 {path}.div: the narrative has no text")
    return out


def _base64(path, binary):
    try:
        base64.b64decode(binary.get("content", ""), validate=True)
    except ValueError:
        return [f"STU3 {path}.content: not base64"]
    return []
