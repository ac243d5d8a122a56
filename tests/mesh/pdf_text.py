#!/usr/bin/env python3
"""Print the text of a PDF, extracted by pypdf in strict mode: an independent check of
the PDFs clw-gateway writes.

Usage: pdf_text.py FILE     the PDF file
       pdf_text.py -        stdin holds the PDF as base64 (as in a FHIR Binary.content;
                            whitespace and line breaks are ignored)

Prints (UTF-8) each page's text followed by a newline, with a line holding only a form
feed (\\f) between pages. Exit status 0 on success; 2 on a usage error; 1 with a message on
stderr when the input cannot be read, is not base64, or is not a valid PDF: pypdf in strict
mode raised an error (no %PDF- header, no %%EOF, broken objects...) or logged a warning
(strict mode still silently repairs e.g. a wrong cross-reference offset; that counts as
invalid here).
"""

import base64
import binascii
import io
import logging
import sys


def fail(message: str, code: int = 1) -> None:
    print(f"pdf_text.py: {message}", file=sys.stderr)
    sys.exit(code)


class Repairs(logging.Handler):
    """Collects what pypdf logs at WARNING or above."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def read_input(arg: str) -> bytes:
    if arg == "-":
        text = sys.stdin.buffer.read()
        try:
            return base64.b64decode(b"".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            fail(f"stdin is not base64: {e}")
    try:
        with open(arg, "rb") as f:
            return f.read()
    except OSError as e:
        fail(f"cannot read {arg}: {e.strerror}")
    return b""  # unreachable


def main(argv: list) -> None:
    if len(argv) != 2:
        fail("usage: pdf_text.py FILE | -   (- = base64 of a PDF on stdin)", 2)
    data = read_input(argv[1])
    source = "stdin" if argv[1] == "-" else argv[1]
    if not data.startswith(b"%PDF-"):
        fail(f"{source} is not a PDF: it does not start with %PDF- (starts {data[:16]!r})")

    import warnings

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # Even in strict mode pypdf repairs some damage (e.g. a wrong cross-reference offset)
    # and only logs a warning: count any warning as "not valid".
    repairs = Repairs()
    logging.getLogger("pypdf").addHandler(repairs)
    logging.getLogger("pypdf").propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reader = PdfReader(io.BytesIO(data), strict=True)
            pages = [page.extract_text() for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        fail(f"{source} is not a valid PDF: {type(e).__name__}: {e}")
    problems = repairs.messages + [str(w.message) for w in caught]
    if problems:
        fail(f"{source} is not a valid PDF: pypdf had to repair it: {'; '.join(problems)}")
    if not pages:
        fail(f"{source} is not a valid PDF: it has no pages")
    sys.stdout.reconfigure(encoding="utf-8")
    sys.stdout.write("\n\f\n".join(pages) + "\n")


if __name__ == "__main__":
    main(sys.argv)
