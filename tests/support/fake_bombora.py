"""A fake of Bombora's partner Company Surge API on 127.0.0.1, for the puller's tests.

It speaks the wire format `intently.ingest.bombora` documents (and assumes where the
public pages stop): HTTP Basic auth on every call; `GET /v2/cmp/GetMyTopics` lists the
account's topics; `POST /v4/Surge/Create` takes `Topics` (ids) and `ScoreThreshold` and
answers `{"Success", "Id", "Message"}`; `GET /v2/Surge/TryGetResult?id=` answers JSON
while the report is being built and the report as CSV once it is ready, filtered by
the report's topics and threshold as Bombora would.

Tests script failures per path (`fail`): an HTTP status with headers, a delay before
answering (client timeouts), a connection closed without an answer, or a body cut off
halfway. Every request is recorded with the time of the injected clock, if any.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPORT_COLUMNS = ["Company Name", "Domain", "Size", "Industry", "Category", "Topic",
                  "Composite Score", "Bucket Code"]  # fmt: skip


@dataclass
class Fault:
    """One scripted answer: `status` (with headers, body), `delay` seconds, `drop`, `truncate`."""

    kind: str
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"Message":"Service Unavailable"}'
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    at: float  # the injected clock, else time.monotonic()
    authorization: str
    body: Any


@dataclass
class SurgeRow:
    domain: str
    topic_id: int
    score: int
    company: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class FakeBombora:
    """The server's state: the account's topics and surge data, reports, scripted faults."""

    def __init__(
        self,
        username: str,
        password: str,
        topics: dict[int, str],
        rows: list[SurgeRow],
        *,
        ready_after: int = 1,
        clock: Callable[[], float] | None = None,
        report_columns: list[str] | None = None,
    ) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.expected_auth = f"Basic {token}"
        self.topics = topics
        self.rows = rows
        self.ready_after = ready_after  # TryGetResult answers "processing" this many - 1 times
        self.clock = clock or time.monotonic
        self.columns = report_columns or REPORT_COLUMNS
        self.faults: dict[str, list[Fault]] = {}
        self.seen: list[Seen] = []
        self.reports: dict[str, dict[str, Any]] = {}
        self.echo_auth_on_400 = False  # a server that leaks the header into its error body
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- scripting --------------------------------------------------------------------

    def fail(self, path: str, *faults: Fault) -> None:
        with self._lock:
            self.faults.setdefault(path, []).extend(faults)

    def calls(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ---- serving ----------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[FakeBombora]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left: nothing to report

        self._server = Server(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        auth = h.headers.get("Authorization") or ""
        with self._lock:
            self.seen.append(Seen(method, parts.path, query, self.clock(), auth, body))
            queue = self.faults.get(parts.path)
            fault = queue.pop(0) if queue else None
        if fault is not None:
            if fault.kind == "delay":
                time.sleep(fault.delay)
            elif fault.kind == "drop":
                h.close_connection = True
                return
            elif fault.kind == "status":
                self._send(h, fault.status, fault.body, "application/json", fault.headers)
                return
        if auth != self.expected_auth:
            self._send(h, 401, b'{"Message":"Authorization has been denied for this request."}')
            return
        if method == "GET" and parts.path == "/v2/cmp/GetMyTopics":
            items = [{"Id": i, "Name": n} for i, n in sorted(self.topics.items())]
            self._json(h, 200, items)
        elif method == "POST" and parts.path == "/v4/Surge/Create":
            self._create(h, body, auth)
        elif method == "GET" and parts.path == "/v2/Surge/TryGetResult":
            self._result(h, query.get("id", ""), fault)
        else:
            self._json(h, 404, {"Message": f"No HTTP resource was found for {parts.path}"})

    def _create(self, h: BaseHTTPRequestHandler, body: Any, auth: str) -> None:
        topics = body.get("Topics") if isinstance(body, dict) else None
        threshold = body.get("ScoreThreshold", 60) if isinstance(body, dict) else None
        if (
            not isinstance(topics, list)
            or not topics
            or not all(isinstance(t, int) and t in self.topics for t in topics)
            or not isinstance(threshold, int)
            or not 0 <= threshold <= 100
        ):
            message: dict[str, Any] = {"Success": False, "Message": "Invalid request"}
            if self.echo_auth_on_400:
                message["Debug"] = {"Authorization": auth, "Decoded": _decode(auth)}
            self._json(h, 400, message)
            return
        with self._lock:
            report_id = f"R{len(self.reports) + 1:04d}"
            self.reports[report_id] = {"topics": topics, "threshold": threshold, "polls": 0}
        self._json(h, 200, {"Success": True, "Id": report_id, "Message": "Report queued"})

    def _result(self, h: BaseHTTPRequestHandler, report_id: str, fault: Fault | None) -> None:
        report = self.reports.get(report_id)
        if report is None:
            self._json(h, 404, {"Success": False, "Message": f"Report {report_id} not found"})
            return
        with self._lock:
            report["polls"] += 1
            polls = report["polls"]
        if polls < self.ready_after:
            self._json(h, 200, {"Success": False, "Message": "Report is still processing"})
            return
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(self.columns)
        for r in self.rows:
            if r.topic_id in report["topics"] and r.score >= report["threshold"]:
                values = {
                    "Company Name": r.company or r.domain.split(".")[0].title(),
                    "Domain": r.domain,
                    "Size": "51-200 employees",
                    "Industry": "Software",
                    "Category": "Technology",
                    "Topic": self.topics[r.topic_id],
                    "Composite Score": str(r.score),
                    "Bucket Code": "A" if r.score >= 80 else "B",
                    **r.extra,
                }
                w.writerow([values.get(c, "") for c in self.columns])
        data = out.getvalue().encode()
        if fault is not None and fault.kind == "truncate":
            # Promise the whole report, send half of it, hang up.
            h.send_response(200)
            h.send_header("Content-Type", "text/csv")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        self._send(h, 200, data, "text/csv; charset=utf-8")

    def _json(self, h: BaseHTTPRequestHandler, status: int, doc: Any) -> None:
        self._send(h, status, json.dumps(doc).encode())

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str = "application/json; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)


def _decode(auth: str) -> str:
    try:
        return base64.b64decode(auth.removeprefix("Basic ")).decode()
    except ValueError:
        return ""
