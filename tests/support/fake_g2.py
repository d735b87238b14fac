"""A fake G2 data API on 127.0.0.1, speaking the documented v1 wire format over real HTTP.

`GET /api/v1/ahoy/remote-event-streams` answers JSON:API pages (`data`, `links.self`/`next`,
`meta.page_count`/`record_count`) filtered by `filter[start_time]`/`filter[end_time]`
(inclusive), paged by `page[number]`/`page[size]`; each event's company is either in
`included` (with `relationships.company.data`) or only behind `links.related`, which
`GET /api/v1/ahoy/companies/{id}` serves. Every request must carry
`Authorization: Token token=<token>`. Failures (429 with Retry-After, 5xx, slow answers)
are scripted per path, and every request is recorded for the tests to inspect.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

EVENTS = "/api/v1/ahoy/remote-event-streams"
COMPANIES = "/api/v1/ahoy/companies/"


@dataclass
class Event:
    id: str
    time: str  # ISO 8601
    tag: str
    company: str | None  # company id
    title: str = ""
    url: str = ""
    # "included": the company in `included` and relationships.company.data;
    # "related": only relationships.company.links.related (the shape the singer tap reads);
    # "none": no company relationship at all.
    embed: str = "related"


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Script:
    """Answer `status` (with headers) instead of the real page, `times` times (None: always)."""

    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = 1
    page: int | None = None  # only for this page[number] of the events
    start: str | None = None  # only for this filter[start_time] (one window of a pull)
    delay: float = 0.0  # seconds to wait before answering (for client timeouts)
    body: Any = None  # the error body; a JSON:API errors list when None


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None  # a malformed event time: served whatever the filters say


class FakeG2:
    def __init__(self, token: str) -> None:
        self.token = token
        self.events: list[Event] = []
        self.companies: dict[str, dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.scripts: list[Script] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A client that timed out leaves a closed socket behind; that is expected here.
        self._server.handle_error = lambda *a: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeG2:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- test helpers ----------------------------------------------------------------------

    def company(self, cid: str, name: str, domain: str | None, **extra: Any) -> None:
        self.companies[cid] = {"name": name, "legal_name": name, "domain": domain, **extra}

    def add(self, *events: Event) -> None:
        self.events.extend(events)

    def script(self, script: Script) -> None:
        with self._lock:
            self.scripts.append(script)

    def event_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == EVENTS]

    def company_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(COMPANIES)]

    # ---- the server ----------------------------------------------------------------------------

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/vnd.api+json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _scripted(self, path: str, query: dict[str, str]) -> Script | None:
        page = int(query.get("page[number]", "1"))
        with self._lock:
            for s in self.scripts:
                if not path.startswith(s.path) or (s.page is not None and s.page != page):
                    continue
                if s.start is not None and query.get("filter[start_time]") != s.start:
                    continue
                if s.times is not None:
                    if s.times <= 0:
                        continue
                    s.times -= 1
                return s
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append(Request(parts.path, query, dict(h.headers.items())))
        if h.headers.get("Authorization") != f"Token token={self.token}":
            self._send(h, 401, {"errors": [{"status": "401", "title": "Unauthorized"}]})
            return
        script = self._scripted(parts.path, query)
        if script is not None:
            time.sleep(script.delay)
            if script.status != 200:
                body = script.body
                if body is None:
                    body = {"errors": [{"status": str(script.status)}]}
                self._send(h, script.status, body, script.headers)
                return
        if parts.path == EVENTS:
            self._send(h, 200, self._events_page(query))
        elif parts.path.startswith(COMPANIES):
            cid = parts.path[len(COMPANIES) :]
            attrs = self.companies.get(cid)
            if attrs is None:
                self._send(h, 404, {"errors": [{"status": "404", "title": "Not Found"}]})
            else:
                self._send(h, 200, {"data": self._company_resource(cid)})
        else:
            self._send(h, 404, {"errors": [{"status": "404", "title": "Not Found"}]})

    def _company_resource(self, cid: str) -> dict[str, Any]:
        return {
            "id": cid,
            "type": "companies",
            "attributes": self.companies[cid],
            "links": {"self": f"{self.url}{COMPANIES}{cid}"},
        }

    def _events_page(self, query: dict[str, str]) -> dict[str, Any]:
        size = int(query.get("page[size]", "100"))
        number = int(query.get("page[number]", "1"))
        start = _instant(query["filter[start_time]"]) if "filter[start_time]" in query else None
        end = _instant(query["filter[end_time]"]) if "filter[end_time]" in query else None

        def inside(e: Event) -> bool:
            t = _instant(e.time)
            return t is None or ((start is None or t >= start) and (end is None or t <= end))

        chosen = sorted((e for e in self.events if inside(e)), key=lambda e: (e.time, e.id))
        page_count = max(1, -(-len(chosen) // size))
        rows = chosen[(number - 1) * size : number * size]
        data, included = [], {}
        for e in rows:
            rel: dict[str, Any] = {}
            if e.company is not None and e.embed != "none":
                rel = {"links": {"related": f"{self.url}{COMPANIES}{e.company}"}}
                if e.embed == "included":
                    rel["data"] = {"type": "companies", "id": e.company}
                    if e.company in self.companies:
                        included[e.company] = self._company_resource(e.company)
            data.append(
                {
                    "id": e.id,
                    "type": "remote_event_streams",
                    "attributes": {
                        "time": e.time,
                        "tag": e.tag,
                        "title": e.title,
                        "url": e.url,
                        "visitor_id": "v-" + e.id,
                        "product_ids": [],
                        "category_ids": [],
                    },
                    "relationships": {"company": rel},
                }
            )

        def link(n: int) -> str:
            return f"{self.url}{EVENTS}?" + urlencode({**query, "page[number]": str(n)})

        links = {"self": link(number), "last": link(page_count)}
        if number < page_count:
            links["next"] = link(number + 1)
        body: dict[str, Any] = {
            "data": data,
            "links": links,
            "meta": {"record_count": len(chosen), "page_count": page_count},
        }
        if included:
            body["included"] = list(included.values())
        return body
