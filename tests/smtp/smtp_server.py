#!/usr/bin/env python3
"""An SMTP server for the mail record writer's tests (tests/mail.rs): aiosmtpd, with
STARTTLS required before anything else and AUTH (PLAIN or LOGIN, only over TLS) required
before MAIL FROM, as NHSmail's submission service requires them.

Usage: smtp_server.py --cert PEM --key PEM --user NAME --password SECRET --dir FOLDER
                      [--port N] [--implicit-tls]

With --implicit-tls it speaks TLS from the first byte (as on port 465) instead, AUTH
still required.

Listens on 127.0.0.1 (port 0: any free port) and prints "ready <port>" on stdout once
listening. Each message it accepts is written to FOLDER, one file per message
(<n>-<time>.eml, the raw bytes as received), atomically: written under a hidden name, then renamed. A message is written
before it is answered.

Faults, for the tests to script (files in FOLDER, each taken when used):
  .drop-after-data   the next message is written, then the connection is closed
                     without an answer (the client cannot know it was taken)
  .refuse-data-4xx   the next message is refused with 451 (try again later)

Stops when its stdin closes (the test dropped it) or on SIGTERM.
"""

import argparse
import asyncio
import os
import signal
import ssl
import sys
import threading
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Store:
    """Writes each accepted message to the folder, atomically."""

    def __init__(self, folder: str):
        self.folder = folder
        self.count = 0

    def take_flag(self, name: str) -> bool:
        try:
            os.unlink(os.path.join(self.folder, name))
            return True
        except FileNotFoundError:
            return False

    def write(self, data: bytes) -> None:
        self.count += 1
        name = f"{self.count:04d}-{time.time_ns()}.eml"
        tmp = os.path.join(self.folder, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.folder, name))


class Handler:
    def __init__(self, store: Store):
        self.store = store

    async def handle_DATA(self, server, session, envelope):
        if self.store.take_flag(".refuse-data-4xx"):
            return "451 4.3.0 Try again later (test fault)"
        self.store.write(envelope.original_content or envelope.content)
        if self.store.take_flag(".drop-after-data"):
            # Taken, but the answer never reaches the client.
            server.transport.abort()
            return "250 2.0.0 Accepted (never sent)"
        return "250 2.0.0 Accepted"


def authenticator(user: str, password: str):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--implicit-tls", action="store_true")
    a = p.parse_args()

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(a.cert, a.key)
    store = Store(a.dir)
    handler = Handler(store)
    check = authenticator(a.user, a.password)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory():
        if a.implicit_tls:
            # The whole connection is TLS: aiosmtpd only counts STARTTLS as TLS for
            # auth_require_tls, so it is off here (it warns about that in its log).
            return SMTP(
                handler,
                hostname="smtp.test",
                auth_required=True,
                auth_require_tls=False,
                authenticator=check,
                loop=loop,
            )
        return SMTP(
            handler,
            hostname="smtp.test",
            tls_context=tls,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=check,
            loop=loop,
        )

    server = loop.run_until_complete(
        loop.create_server(
            factory,
            host="127.0.0.1",
            port=a.port,
            ssl=tls if a.implicit_tls else None,
        )
    )
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def watch_stdin():
        # EOF: the test that started this server is gone.
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    loop.run_until_complete(stop.wait())
    server.close()


if __name__ == "__main__":
    main()
