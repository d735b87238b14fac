"""A fake LinkedIn Marketing API on 127.0.0.1, for the puller's tests, over real HTTP.

It speaks the documented wire format of the two calls the puller makes:

- `GET /rest/adAnalytics?q=analytics&pivot=MEMBER_COMPANY&timeGranularity=DAILY
  &dateRange=(start:(year:Y,month:M,day:D),end:(...))&accounts=List(urn%3Ali%3A...)&fields=...`
  answers `{"paging": {...}, "elements": [...]}`, one element per organization and day,
  each with `pivotValues`, `dateRange` and the requested metrics (no pagination);
- `GET /rest/organizations/{id}` answers the organization (`vanityName`,
  `localizedName`, `localizedWebsite`) or 404.

Requests without `Authorization: Bearer <token>` get LinkedIn's 401. Tests script
failures (429 with Retry-After, 5xx, a stalled answer) and read back every request.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

_RANGE_RE = re.compile(
    r"\(start:\(year:(\d+),month:(\d+),day:(\d+)\),end:\(year:(\d+),month:(\d+),day:(\d+)\)\)"
)
_ACCOUNTS_RE = re.compile(r"List\((.*)\)")


@dataclass
class Seen:
    """One request as the server saw it (the query string raw, as sent)."""

    path: str
    query: str
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        for part in self.query.split("&"):
            key, _, value = part.partition("=")
            if key == name:
                return value
        return None

    def date_range(self) -> tuple[date, date]:
        m = _RANGE_RE.fullmatch(self.param("dateRange") or "")
        assert m is not None, self.query
        g = [int(x) for x in m.groups()]
        return date(g[0], g[1], g[2]), date(g[3], g[4], g[5])


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0  # sleep this long, then answer normally (a timeout for the client)


@dataclass
class FakeLinkedIn:
    token: str
    # (organization id, day) -> metrics
    days: dict[tuple[int, date], dict[str, int]] = field(default_factory=dict)
    # organization id -> the organization's JSON; ids missing here answer 404
    orgs: dict[int, dict[str, Any]] = field(default_factory=dict)
    org_status: int | None = None  # e.g. 403 for every organization lookup
    # adAnalytics answers in order: a Failure, or None for a normal answer; then `default`.
    script: list[Failure | None] = field(default_factory=list)
    default: Failure | None = None
    seen: list[Seen] = field(default_factory=list)

    def put(self, org: int, day: date, **metrics: int) -> None:
        self.days[(org, day)] = metrics

    def analytics_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path == "/rest/adAnalytics"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeLinkedIn:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                fake.seen.append(Seen(path, query, {k: v for k, v in self.headers.items()}))
                status, headers, body = fake.answer(path, query, self.headers.get("Authorization"))
                try:
                    data = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- the API ---------------------------------------------------------------------

    def answer(self, path: str, query: str, auth: str | None) -> tuple[int, dict[str, str], Any]:
        if auth != f"Bearer {self.token}":
            return (
                401,
                {},
                {
                    "status": 401,
                    "serviceErrorCode": 65600,
                    "code": "INVALID_ACCESS_TOKEN",
                    "message": "Invalid access token",
                },
            )
        if path == "/rest/adAnalytics":
            failure = self.script.pop(0) if self.script else self.default
            if failure is not None:
                if failure.stall_s:
                    time.sleep(failure.stall_s)
                else:
                    return (
                        failure.status,
                        failure.headers,
                        {
                            "status": failure.status,
                            "message": f"fake failure {failure.status}",
                        },
                    )
            return self._analytics(Seen(path, query, {}))
        m = re.fullmatch(r"/rest/organizations/(\d+)", path)
        if m:
            if self.org_status is not None:
                return self.org_status, {}, {"status": self.org_status, "message": "Not allowed"}
            org = self.orgs.get(int(m.group(1)))
            if org is None:
                return 404, {}, {"status": 404, "message": "Not found"}
            return 200, {}, {"id": int(m.group(1)), **org}
        return 404, {}, {"status": 404, "message": f"No resource {path}"}

    def _analytics(self, req: Seen) -> tuple[int, dict[str, str], Any]:
        def bad(message: str) -> tuple[int, dict[str, str], Any]:
            return 400, {}, {"status": 400, "message": message}

        if req.param("q") != "analytics":
            return bad("q must be analytics")
        if req.param("pivot") != "MEMBER_COMPANY":
            return bad("this fake knows only the MEMBER_COMPANY pivot")
        if req.param("timeGranularity") != "DAILY":
            return bad("this fake knows only DAILY granularity")
        if not _RANGE_RE.fullmatch(req.param("dateRange") or ""):
            return bad("dateRange is malformed")
        accounts = _ACCOUNTS_RE.fullmatch(req.param("accounts") or "")
        if accounts is None or not all(
            unquote(a).startswith("urn:li:sponsoredAccount:") for a in accounts.group(1).split(",")
        ):
            return bad("accounts must be List(urn:li:sponsoredAccount:...)")
        fields = set((req.param("fields") or "").split(","))
        start, end = req.date_range()
        elements = []
        for (org, day), metrics in sorted(self.days.items()):
            if not start <= day <= end:
                continue
            ymd = {"year": day.year, "month": day.month, "day": day.day}
            # LinkedIn answers every requested metric, 0 when there was none.
            element: dict[str, Any] = {
                f: 0 for f in fields if f not in ("pivotValues", "dateRange")
            }
            element |= {
                "pivotValues": [f"urn:li:organization:{org}"],
                "dateRange": {"start": ymd, "end": ymd},
                **metrics,
            }
            elements.append({k: v for k, v in element.items() if k in fields})
        return 200, {}, {"paging": {"start": 0, "count": 10, "links": []}, "elements": elements}


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
