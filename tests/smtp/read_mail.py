#!/usr/bin/env python3
"""Reads an email (.eml) with the standard library's parser (an independent check of
what clw-gateway's mail writer sends) and prints it as JSON:

  {"headers": {"Message-ID": "...", ...},          the top-level headers, decoded
   "defects": ["..."],                               what the strict parser found wrong
   "text": "...",                                     the text/plain body, decoded
   "attachments": [{"filename": "...", "content_type": "...",
                    "base64": "..."}]}               each attachment, its bytes as base64

Usage: read_mail.py FILE. Exit status 0 on success, 1 with a message on stderr when the
file cannot be read or parsed.
"""

import base64
import email
import email.policy
import json
import sys


def main(argv: list) -> None:
    if len(argv) != 2:
        print("usage: read_mail.py FILE", file=sys.stderr)
        sys.exit(2)
    try:
        with open(argv[1], "rb") as f:
            raw = f.read()
    except OSError as e:
        print(f"read_mail.py: cannot read {argv[1]}: {e.strerror}", file=sys.stderr)
        sys.exit(1)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    defects = [type(d).__name__ for d in msg.defects]
    text = None
    attachments = []
    for part in msg.walk():
        defects += [type(d).__name__ for d in part.defects]
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            attachments.append(
                {
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "base64": base64.b64encode(part.get_payload(decode=True)).decode(),
                }
            )
        elif part.get_content_type() == "text/plain" and text is None:
            text = part.get_content()
    out = {
        "headers": {k: str(v) for k, v in msg.items()},
        "defects": defects,
        "text": text,
        "attachments": attachments,
    }
    sys.stdout.reconfigure(encoding="utf-8")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
