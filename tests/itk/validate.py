#!/usr/bin/env python3
"""Validates GP Connect Send Document messages (ITK3, FHIR STU3), independently of the
gateway's own code: first against base FHIR STU3 (stu3.py: the `fhir.resources` STU3
models, every nested resource under its own, and the invariants the models leave out),
then against the ITK3 and Send Document rules of the version the MESH workflow names
(itk3.py), each failure naming its requirement.

    validate.py --workflow GPFED_CONSULT_REPORT [--mailbox MAILBOX] [--same] FILE...

Each FILE is a message in FHIR's JSON (`.json`) or XML (`.xml`) form; `-` reads JSON
from standard input. With `--same`, files of one name but for the extension are one
message in its two forms, and must read as the same STU3 content. Prints {"ok": …, "errors": […], "warnings": […]} — with several
files each line names its file — and exits 1 when anything failed. Warnings are
requirements the message knowingly does not meet; they do not fail it.
"""

import argparse
import json
import sys

import itk3
import stu3


def validate(parsed, workflow, mailbox):
    if parsed.message is None:
        return parsed.failures, []
    failures = parsed.failures + stu3.invariants(parsed.message)
    rules, warnings = itk3.check(parsed.message, workflow, mailbox)
    return failures + rules, warnings


def read(name):
    if name == "-":
        return stu3.parse_json(sys.stdin.buffer.read())
    with open(name, "rb") as f:
        raw = f.read()
    return stu3.parse_xml(raw) if name.endswith(".xml") else stu3.parse_json(raw)


def same(forms):
    """Each message's forms (by file name less its extension) read as one content."""
    out = []
    for stem, parsed in sorted(forms.items()):
        if len({p.canonical for p in parsed}) > 1:
            out.append(f"{stem}: its JSON and XML forms are not the same STU3 content")
    return out


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--workflow", required=True, help="the MESH workflow it is sent on")
    args.add_argument("--mailbox", help="the sender's MESH mailbox (GPCM-SD-046)")
    args.add_argument("--same", action="store_true",
                      help="NAME.json and NAME.xml must be the same message")
    args.add_argument("files", nargs="+", help="messages: .json, .xml, or - (JSON)")
    a = args.parse_args()
    errors, warnings, forms = [], [], {}
    for name in a.files:
        parsed = read(name)
        forms.setdefault(name.rsplit(".", 1)[0], []).append(parsed)
        failed, warned = validate(parsed, a.workflow, a.mailbox)
        prefix = f"{name}: " if len(a.files) > 1 else ""
        errors += [prefix + e for e in failed]
        warnings += [prefix + w for w in warned]
    if a.same:
        errors += same(forms)
    json.dump({"ok": not errors, "errors": errors, "warnings": warnings}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
