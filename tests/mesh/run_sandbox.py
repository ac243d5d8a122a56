#!/usr/bin/env python3
"""Run NHS England's MESH sandbox (PyPI `mesh-sandbox`) as a test double for clw-gateway.

Usage: run_sandbox.py PORT        (PORT 0 = any free port)

Starts the sandbox in this process (uvicorn, one worker, no child processes) on
http://127.0.0.1:PORT with

* AUTH_MODE=full   - every request needs a valid `Authorization: NHSMESH ...` header,
                     HMAC-SHA256 checked against the mailbox password;
* STORE_MODE=memory - nothing on disk; `DELETE /messageexchange/admin/reset` empties every
                     mailbox and reloads the mailboxes and workflows;
* SHARED_KEY=TestKey - the environment's shared HMAC key. Fixed: whatever SHARED_KEY,
                     AUTH_MODE or STORE_MODE the caller's environment holds is ignored.

Mailboxes and workflows come from mailboxes.jsonl and workflows.jsonl in the directory
named by $MESH_SANDBOX_DATA_DIR, by default tests/mesh/data next to this file (the
sandbox's own canned files are not used).

Protocol for the test that starts it (like tests/fhir-server/server.mjs):
* stdout carries exactly one line, `listening <port>`, written once
  /messageexchange/_ping answers; everything else (logs, warnings) goes to stderr.
* The process exits when its stdin reaches end of file (the test dropped its end of the
  pipe, or died), on SIGTERM and on SIGINT. Set MESH_SANDBOX_IGNORE_STDIN=1 to run it
  detached with stdin at /dev/null.
* A non-zero exit before the `listening` line means it could not start (message on stderr).

MESH_SANDBOX_VERBOSE=1 turns on the sandbox's debug log and uvicorn's access log.
See tests/mesh/README.md for the mailboxes, their passwords and the differences from MESH.
"""

import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"
SHARED_KEY = "TestKey"
HERE = os.path.dirname(os.path.abspath(__file__))
READY_TIMEOUT_S = 60
SHUTDOWN_GRACE_S = 5


def fail(message: str, code: int = 2) -> "None":
    print(f"run_sandbox.py: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def parse_port(argv: list) -> int:
    if len(argv) != 2:
        fail("usage: run_sandbox.py PORT   (0 = any free port)")
    try:
        port = int(argv[1])
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        fail(f"not a port number: {argv[1]!r}")
    return port


def data_dir() -> str:
    path = os.environ.get("MESH_SANDBOX_DATA_DIR") or os.path.join(HERE, "data")
    path = os.path.abspath(path)
    for name in ("mailboxes.jsonl", "workflows.jsonl"):
        if not os.path.isfile(os.path.join(path, name)):
            fail(f"{os.path.join(path, name)} is missing (MESH_SANDBOX_DATA_DIR={path})")
    return path


def main(argv: list) -> None:
    port = parse_port(argv)
    data = data_dir()
    verbose = os.environ.get("MESH_SANDBOX_VERBOSE", "") not in ("", "0")

    # Keep stdout for the one protocol line: anything else written to fd 1 (by us, the
    # sandbox, uvicorn or a library) goes to stderr, so an unread pipe can never fill up.
    protocol = os.fdopen(os.dup(1), "w", encoding="ascii")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    # mesh-sandbox reads its configuration from the environment (once, lazily).
    os.environ.update(AUTH_MODE="full", STORE_MODE="memory", SHARED_KEY=SHARED_KEY, ENV="local")
    if not verbose:
        import warnings

        warnings.simplefilter("ignore")  # FastAPI deprecation warnings at import time

    import logging

    import uvicorn
    from mesh_sandbox import dependencies
    from mesh_sandbox.api import app
    from mesh_sandbox.store.memory_store import MemoryStore

    class TestDataStore(MemoryStore):
        """The in-memory store, with mailboxes and workflows from our data directory."""

        def initialise(self):
            self._canned_data_dir = data
            super().initialise()

    # Handshakes counted per mailbox, so a test can see a client keeps MESH's rule (one at
    # start, then at most one a day): GET /test/handshakes/{mailbox} -> {"count": n}.
    handshakes: dict = {}

    @app.middleware("http")
    async def count_handshakes(request, call_next):
        response = await call_next(request)
        parts = request.url.path.strip("/").split("/")
        if (
            request.method == "POST"
            and len(parts) == 2
            and parts[0] == "messageexchange"
            and parts[1] != "admin"
            and response.status_code < 300
        ):
            handshakes[parts[1].upper()] = handshakes.get(parts[1].upper(), 0) + 1
        return response

    @app.get("/test/handshakes/{mailbox}", include_in_schema=False)
    async def handshake_count(mailbox: str):
        return {"count": handshakes.get(mailbox.upper(), 0)}

    # get_store() builds `MemoryStore` looked up in the dependencies module at call time;
    # admin reset calls initialise() again, which keeps using the same directory.
    dependencies.MemoryStore = TestDataStore
    if not verbose:
        logging.getLogger("mesh-sandbox").setLevel(logging.WARNING)
    try:
        store = dependencies.get_store()  # load the data now, so a bad file fails here
    except Exception as e:  # noqa: BLE001 - report any parse error and stop
        fail(f"cannot load the mailboxes/workflows in {data}: {e!r}")
    if not store.mailboxes:
        fail(f"no mailboxes in {os.path.join(data, 'mailboxes.jsonl')}")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as e:
        fail(f"cannot listen on {HOST}:{port}: {e}")
    sock.listen(128)
    port = sock.getsockname()[1]

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="debug" if verbose else "warning",
            access_log=verbose,
            timeout_graceful_shutdown=2,
        )
    )

    ready = threading.Event()

    def announce() -> None:
        url = f"http://{HOST}:{port}/messageexchange/_ping"
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no $http_proxy
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with direct.open(url, timeout=2) as r:
                    if r.status == 200:
                        ready.set()
                        protocol.write(f"listening {port}\n")
                        protocol.close()
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        print(f"run_sandbox.py: {url} did not answer within {READY_TIMEOUT_S} s", file=sys.stderr, flush=True)
        os._exit(1)

    def stop_at_end_of_stdin() -> None:
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        if not ready.is_set():
            print(
                "run_sandbox.py: stdin is closed, so stopping at once"
                " (set MESH_SANDBOX_IGNORE_STDIN=1 to run it detached)",
                file=sys.stderr,
                flush=True,
            )
        server.should_exit = True
        time.sleep(SHUTDOWN_GRACE_S)  # still here: shutdown hangs, so leave anyway
        os._exit(0)

    threading.Thread(target=announce, name="announce", daemon=True).start()
    if os.environ.get("MESH_SANDBOX_IGNORE_STDIN", "") in ("", "0"):
        threading.Thread(target=stop_at_end_of_stdin, name="stdin", daemon=True).start()
    # Runs in this (main) thread; uvicorn handles SIGTERM/SIGINT by shutting down.
    server.run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv)
