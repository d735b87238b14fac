"""Bombora Company Surge: the weekly file importer and the report API puller.

One signal per (domain, topic, week): source `bombora`, type `surge`, value the composite
score (0-100), on the Monday (UTC) of its week. The file importer and the puller read
rows through the same mapping (`_import_rows`), so a file and a pull of the same week
are duplicates of each other.

The puller speaks Bombora's partner Company Surge API (sentry.bombora.com, HTTP Basic
auth, 60 calls a minute per endpoint). Documented: `POST /v4/Surge/Create` and its body
fields (`Topics` int[], `ScoreThreshold` default 60, `TopicThreshold` default 1);
report generation is asynchronous. Assumed where the public pages stop: topics are
listed by `GET /v2/cmp/GetMyTopics` as `[{"Id", "Name"}]` (bare or under `"Topics"`);
Create answers `{"Success", "Id", "Message"}`; `GET /v2/Surge/TryGetResult?id=` answers
JSON (`{"Success": false, "Message"}`, or HTTP 202) while the report is being built and
the report itself as CSV with the Company Surge file's columns once it is ready; rows
without a week column belong to the current UTC week.
"""

from __future__ import annotations

import base64
import logging
import random
import tempfile
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
from sqlalchemy.engine import Connection, Engine

from intently.accounts import repository as accounts_repo
from intently.accounts.profile import country_of, size_lower_bound
from intently.ingest.connector import (
    Checkpoints,
    ConnectorError,
    VendorApi,
    http_client,
    read_connection,
    record_refusal,
    run_pull,
)
from intently.ingest.files import CsvInput, FileFormatError, FileLimits
from intently.ingest.http import GaveUp, Retryable, RetryPolicy, retry_after_seconds
from intently.kit.db import tick
from intently.kit.domains import try_normalise_domain
from intently.kit.errors import BadRequest
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.kit.validation import MAX_EMPLOYEES, MAX_PROFILE_TEXT
from intently.settings import Settings
from intently.signals.schemas import default_settings
from intently.signals.store import IngestRun, RunReport, SignalIn, ingest_run, read_source_config

log = logging.getLogger(__name__)

SOURCE = "bombora"
WHAT = "Bombora Company Surge file"

REQUIRED = {
    "domain": ("Domain", "Company Domain", "Domain Name"),
    "topic": ("Topic", "Topic Name"),
    "score": ("Composite Score", "Score", "Topic Score"),
}
# Company Name, Category, Bucket Code and the metro columns are part of the format but
# carry nothing kept; like any other column they are read past (and kept in a reject's
# record). Size, Industry and Domain Origin Country fill the company profile of the
# domain's account where it is still unset (ProfileFill).
# Company Surge files as Bombora delivers them stamp each row (`Date Stamp`); any day
# names its week, so each row counts on the Monday of its own stamp.
OPTIONAL = {
    "week": (
        "Week", "Week Start", "Week Of", "Week Starting", "Week Start Date", "Date", "Date Stamp",
    ),
    "size": ("Size", "Company Size", "Employee Size"),
    "industry": ("Industry",),
    "country": ("Domain Origin Country", "Country"),
}  # fmt: skip

NO_WEEK = (
    "{name} has no Week or Date Stamp column: pass --week YYYY-MM-DD (the week the file is "
    "for) or add a Week column"
)

# Rows per store() transaction: large enough to amortise the per-batch statements,
# small enough that a batch's keys and rollup deltas stay a few MB.
BATCH = 10_000
# Distinct domain cells remembered; ADAT files repeat each domain for every topic.
DOMAIN_CACHE = 250_000
_EPOCH = date(1970, 1, 1)
_INVALID = "!"  # a cached domain cell that is not a domain (no domain is "!")
_BAD_WEEK = ("", -1)


def monday_of(day: date) -> date:
    """The ISO week's Monday: every day of a week is the same Bombora week."""
    return day - timedelta(days=day.weekday())


def parse_week(text: str) -> date:
    """A week cell (ISO date or date-time, ISO week `2026-W48`, or M/D/YYYY) to its Monday."""
    t = text.strip()
    if not t:
        raise ValueError(text)
    try:
        d = date.fromisoformat(t)
    except ValueError:
        try:
            d = datetime.fromisoformat(t).date()
        except ValueError:
            try:
                d = date.fromisoformat(t + "-1")  # ISO week without a weekday
            except ValueError:
                d = datetime.strptime(t.split(" ", 1)[0], "%m/%d/%Y").date()
    return monday_of(d)


def _week_key(monday: date) -> tuple[str, int]:
    return monday.isoformat(), (monday - _EPOCH).days * US_PER_DAY


def _import_rows(
    run: IngestRun,
    inp: CsvInput,
    cols: dict[str, int],
    week: date | None,
    settings: dict[str, Any],
) -> None:
    """Map every row of `inp` to a signal, a skip or a reject (shared by file and pull).

    The hot path of a million-row import: every per-cell decision that repeats (domain
    normalisation, topic folding, week parsing) is cached by the raw cell text, and the
    loop binds what it touches to locals.
    """
    di, ti, si = cols["domain"], cols["topic"], cols["score"]
    wi = cols.get("week")
    header = inp.header
    dname, tname, sname = header[di].strip(), header[ti].strip(), header[si].strip()
    wname = header[wi].strip() if wi is not None else ""
    width = max(di, ti, si, -1 if wi is None else wi) + 1
    threshold = float(settings["surgeThreshold"])
    followed = {str(t).strip().casefold() for t in settings["topics"]}
    fallback = _week_key(week) if week is not None else None
    profiles = ProfileFill(run, cols)
    note = profiles.note if profiles.active else None

    domains: dict[str, str] = {}  # cell -> domain, "" (empty) or _INVALID
    topics: dict[str, tuple[str, str, bool]] = {}  # cell -> (topic, folded, followed)
    weeks: dict[str, tuple[str, int]] = {}  # cell -> week key, or _BAD_WEEK
    report = run.report
    add, skip, reject, record = run.add, run.skip, run.reject, inp.record
    signal = SignalIn

    for line, cells in inp.rows():
        report.read += 1
        if len(cells) < width:
            cells = cells + [""] * (width - len(cells))

        raw = cells[di]
        domain = domains.get(raw)
        if domain is None:
            domain = (try_normalise_domain(raw) or _INVALID) if raw.strip() else ""
            if len(domains) >= DOMAIN_CACHE:
                domains.clear()
            domains[raw] = domain
        if not domain or domain is _INVALID:
            if not domain:
                reject("missing_domain", f"{dname} is empty", record(cells), line=line)
            else:
                reject(
                    "invalid_domain",
                    f"{dname} '{raw}' is not a domain name",
                    record(cells),
                    line=line,
                )
            continue
        if note is not None:
            note(domain, cells)

        raw = cells[ti]
        t = topics.get(raw)
        if t is None:
            name = raw.strip()
            folded = name.casefold()
            t = (name, folded, not followed or folded in followed)
            if len(topics) < DOMAIN_CACHE:
                topics[raw] = t
        if not t[0]:
            reject("missing_topic", f"{tname} is empty", record(cells), line=line)
            continue

        raw = cells[si]
        try:
            score = float(raw)
        except ValueError:
            score = -1.0
        if not 0.0 <= score <= 100.0:  # NaN fails this too
            reject(
                "invalid_score",
                f"{sname} '{raw}' is not a number from 0 to 100",
                record(cells),
                line=line,
            )
            continue

        if wi is None:
            wk = fallback
        else:
            raw = cells[wi]
            wk = weeks.get(raw)
            if wk is None:
                if raw.strip():
                    try:
                        wk = _week_key(parse_week(raw))
                    except ValueError:
                        wk = _BAD_WEEK
                else:
                    wk = fallback or _BAD_WEEK
                if len(weeks) < 1000:
                    weeks[raw] = wk
            if wk is _BAD_WEEK:
                detail = (
                    f"{wname} is empty (pass --week YYYY-MM-DD for rows without one)"
                    if not raw.strip()
                    else f"{wname} '{raw}' is not a date (YYYY-MM-DD)"
                )
                reject("invalid_date", detail, record(cells), line=line)
                continue
        assert wk is not None  # a file without a week column never gets here without one

        if not t[2]:
            skip("topic_not_followed")
            continue
        if score < threshold:
            skip("below_threshold")
            continue
        add(
            signal(
                domain,
                SOURCE,
                "surge",
                wk[1],
                f"{domain}|{t[1]}|{wk[0]}",
                score,
                t[0],
                SOURCE,
                "domain",
                1.0,
            )
        )


class ProfileFill:
    """The profile a file's rows tell of each domain, written with each batch of signals.

    Only where the account's field is still unset: a CRM or API value always wins, and
    a domain without an account gets none (a file does not create accounts). One
    statement per batch; the accounts it changes are stamped with the workspace clock,
    so an API delta sync sees them.
    """

    COLUMNS = ("industry", "employee_count", "country")
    CACHE = 1000  # distinct Size and country cells remembered; a file has a handful

    def __init__(self, run: IngestRun, cols: dict[str, int]) -> None:
        self.run = run
        self.at = tuple(cols.get(k) for k in ("industry", "size", "country"))
        self.active = any(i is not None for i in self.at)
        self.pending: dict[str, tuple[str | None, int | None, str | None]] = {}
        self.sizes: dict[str, int | None] = {}
        self.countries: dict[str, str | None] = {}
        if self.active:
            previous = run.on_flush

            def write(conn: Connection) -> None:
                if previous is not None:
                    previous(conn)
                self.write(conn)

            run.on_flush = write

    def note(self, domain: str, cells: list[str]) -> None:
        if domain in self.pending:
            return  # a file repeats each domain for every topic
        ii, si, ci = self.at
        industry = size = country = None
        if ii is not None and ii < len(cells):
            text = cells[ii].strip()
            industry = text if 0 < len(text) <= MAX_PROFILE_TEXT else None
        if si is not None and si < len(cells):
            raw = cells[si]
            if raw in self.sizes:
                size = self.sizes[raw]
            else:
                size = size_lower_bound(raw)
                size = size if size is not None and size <= MAX_EMPLOYEES else None
                if len(self.sizes) < self.CACHE:
                    self.sizes[raw] = size
        if ci is not None and ci < len(cells):
            raw = cells[ci]
            if raw in self.countries:
                country = self.countries[raw]
            else:
                country = country_of(raw)
                if len(self.countries) < self.CACHE:
                    self.countries[raw] = country
        if industry is None and size is None and country is None:
            return
        self.pending[domain] = (industry, size, country)
        if len(self.pending) >= BATCH:
            self.run.flush()

    def write(self, conn: Connection) -> None:
        rows = [(d, *v) for d, v in self.pending.items()]
        self.pending = {}
        if rows:
            clock = tick(conn, self.run.ws)
            accounts_repo.set_profiles(
                conn, self.run.ws, self.COLUMNS, rows, clock, only_unset=True
            )


def _progress(
    inp: CsvInput, on_progress: Callable[[RunReport, int, int], None] | None
) -> Callable[[RunReport], None] | None:
    if on_progress is None:
        return None
    return lambda r: on_progress(r, inp.bytes_read(), inp.total_bytes)


def import_file(
    engine: Engine,
    ws: int,
    path: str | Path,
    *,
    week: date | None = None,
    on_progress: Callable[[RunReport, int, int], None] | None = None,
    batch_size: int = BATCH,
    limits: FileLimits | None = None,
) -> RunReport:
    """Import a Company Surge file (CSV or .csv.gz); `week` for rows without a week or date.

    A file that breaks off (cut short, over a limit) ends the run `failed`, the rows before
    the break stored.
    """
    with CsvInput(path, what=WHAT, limits=limits) as inp:
        cols = inp.columns(REQUIRED, OPTIONAL)
        if "week" not in cols and week is None:
            raise FileFormatError(NO_WEEK.format(name=inp.path.name))
        settings = read_source_config(engine, ws, SOURCE, default_settings(SOURCE))
        label = inp.path.name
        if "week" not in cols and week is not None:
            label += f" (week {monday_of(week).isoformat()})"
        with ingest_run(
            engine, ws, SOURCE, "file", label,
            batch_size=batch_size, on_progress=_progress(inp, on_progress),
            stop_on=FileFormatError,
        ) as run:  # fmt: skip
            _import_rows(run, inp, cols, monday_of(week) if week else None, settings)
    return run.report


# ---- the report API puller -------------------------------------------------------------

DEFAULT_BASE_URL = "https://sentry.bombora.com"
TOPICS_PATH = "/v2/cmp/GetMyTopics"
CREATE_PATH = "/v4/Surge/Create"
RESULT_PATH = "/v2/Surge/TryGetResult"

REQUESTS_PER_MINUTE = 60
MAX_TRIES = 5
BACKOFF_BASE = 1.0  # seconds before the first retry; doubles each try
BACKOFF_CAP = 60.0
MAX_RETRY_AFTER = 600.0  # a longer Retry-After gives up instead of blocking a worker
POLL_SECONDS = 30.0
MAX_WAIT_SECONDS = 3600.0
# A report created by an earlier pull that gave up is polled again rather than created
# anew (it counts against the account's report quota) while it is younger than this.
PENDING_MAX_AGE_US = US_PER_DAY
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEADLINE_S = 1800.0  # one request, the report download included


class PullError(ConnectorError):
    """The pull gave up: Bombora refused, kept failing, or never finished the report."""


class RateLimiter:
    """At most `limit` requests in any `window` seconds of `clock` (a sliding window)."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.limit, self.window, self.clock, self.sleep = limit, window, clock, sleep
        self._sent: deque[float] = deque()

    def acquire(self) -> None:
        sent = self._sent
        now = self.clock()
        while True:
            while sent and now - sent[0] >= self.window:
                sent.popleft()
            if len(sent) < self.limit:
                break
            self.sleep(self.window - (now - sent[0]))
            now = self.clock()
        sent.append(now)


class BomboraApi(VendorApi):
    """Bombora's report API over one httpx client: Basic auth, the rate limit, retries.

    Transport errors (connection, timeout), 429 and 5xx are retried up to `max_tries`
    with exponential backoff and jitter (429 waits its Retry-After). Credentials travel
    only in the Authorization header and never appear in an error or a log line.
    """

    error = PullError

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        username: str,
        password: str,
        *,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        max_tries: int = MAX_TRIES,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        # No max_retry_after: a 429's wait is checked against MAX_RETRY_AFTER in send().
        retries = RetryPolicy(max_tries, BACKOFF_BASE, BACKOFF_CAP, jitter=jitter)
        super().__init__(
            client, retries, sleep, (token, username, password),
            base_url=base_url, vendor_url=DEFAULT_BASE_URL,
        )  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(username, password)
        self.clock = clock
        self.limiter = RateLimiter(REQUESTS_PER_MINUTE, 60.0, clock=clock, sleep=sleep)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        sink: Path | None = None,
    ) -> tuple[httpx.Response, bytes | None]:
        """One call with its retries; a non-JSON success body is streamed to `sink` (None)."""
        what = f"{method} {path}"
        tries = self.retries.max_tries

        def once() -> tuple[httpx.Response, bytes | None]:
            self.limiter.acquire()
            try:
                with self.client.stream(
                    method, self.base_url + path, params=params, json=json, auth=self._auth
                ) as resp:
                    code = resp.status_code
                    if code == 429 or code >= 500:
                        resp.read()
                        wait = None
                        if code == 429:
                            wait = retry_after_seconds(resp.headers.get("retry-after"))
                            # Checked here rather than by the policy, so that a long wait
                            # gives up even when this was the last try.
                            if wait is not None and wait > MAX_RETRY_AFTER:
                                raise PullError(
                                    f"Bombora asked to wait {wait:.0f} s before {what} "
                                    "(rate limited); try the pull again later"
                                )
                        raise Retryable(f"HTTP {code}", wait)
                    elif code in (401, 403):
                        raise PullError(
                            f"Bombora refused the credentials (HTTP {code} on {what}): "
                            "check the bombora connection's username and password"
                        )
                    elif code >= 400:
                        body = self.answer(resp.read()[:4096].decode("utf-8", "replace"), 300)
                        said = f": {body}" if body else ""
                        raise PullError(f"Bombora answered HTTP {code} to {what}{said}")
                    else:
                        ctype = resp.headers.get("content-type", "")
                        if sink is not None and code == 200 and "json" not in ctype:
                            with sink.open("wb") as fh:
                                for chunk in resp.iter_bytes(1 << 16):
                                    fh.write(chunk)
                            return resp, None
                        return resp, resp.read()
            except httpx.TransportError as exc:
                raise Retryable(type(exc).__name__) from None

        def retrying(attempt: int, problem: str, delay: float) -> None:
            log.info(
                "bombora: %s failed (%s), retry %d of %d in %.1f s",
                what, problem, attempt, tries - 1, delay,
            )  # fmt: skip

        def gave_up(exc: GaveUp) -> str:
            return f"{what} failed {tries} times; last: {exc.problem}"

        return self.call(once, gave_up, retrying)

    def json(self, method: str, path: str, **kw: Any) -> Any:
        resp, body = self.send(method, path, **kw)
        try:
            return msgspec.json.decode(body or b"null")
        except msgspec.DecodeError:
            raise PullError(
                f"Bombora answered {method} {path} with something that is not JSON "
                f"(HTTP {resp.status_code})"
            ) from None

    def topic_ids(self, wanted: list[str]) -> list[int]:
        """Topic ids for the followed topic names (case-insensitive); all when none."""
        data = self.json("GET", TOPICS_PATH)
        items = data.get("Topics", []) if isinstance(data, dict) else data
        by_name: dict[str, int] = {}
        for t in items if isinstance(items, list) else []:
            if isinstance(t, dict) and t.get("Id") is not None and t.get("Name"):
                by_name[str(t["Name"]).strip().casefold()] = int(t["Id"])
        if not wanted:
            if not by_name:
                raise PullError("Bombora lists no topics for this account")
            return sorted(set(by_name.values()))
        unknown = [w for w in wanted if w.strip().casefold() not in by_name]
        if unknown:
            raise PullError(
                f"topics not in this Bombora account: {', '.join(unknown)} (change the "
                "workspace's bombora topics setting)"
            )
        return sorted({by_name[w.strip().casefold()] for w in wanted})

    def create_report(self, topic_ids: list[int], threshold: int) -> str:
        body = {"Topics": topic_ids, "ScoreThreshold": threshold, "TopicThreshold": 1}
        data = self.json("POST", CREATE_PATH, json=body)
        if not isinstance(data, dict) or not data.get("Success") or not data.get("Id"):
            message = data.get("Message") if isinstance(data, dict) else None
            raise PullError(f"Bombora did not create the report: {message or 'no report id'}")
        return str(data["Id"])

    def wait_for_report(
        self, report_id: str, sink: Path, *, poll_seconds: float, max_wait: float
    ) -> None:
        """Poll until the report is ready and stream it to `sink`."""
        deadline = self.clock() + max_wait
        while True:
            resp, body = self.send("GET", RESULT_PATH, params={"id": report_id}, sink=sink)
            if body is None:
                return
            status = ""
            if resp.status_code == 200:
                try:
                    data = msgspec.json.decode(body)
                except msgspec.DecodeError:
                    data = None
                if isinstance(data, dict):
                    status = str(data.get("Status") or "")
                    if status.lower() in ("failed", "error", "cancelled"):
                        raise PullError(
                            f"Bombora could not build report {report_id}: "
                            f"{data.get('Message') or status}"
                        )
                    if data.get("Success") is True:
                        # Not the CSV this puller reads: say so rather than wait it out.
                        raise PullError(
                            f"Bombora answered report {report_id} with JSON, not the CSV "
                            "report this puller reads"
                        )
            if self.clock() >= deadline:
                raise PullError(
                    f"report {report_id} was not ready after {max_wait / 60:.0f} min; "
                    "the next pull waits for the same report"
                )
            self.sleep(poll_seconds)


def pull(
    engine: Engine,
    ws: int,
    *,
    settings: Settings,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    week: date | None = None,
    jitter: Callable[[], float] = random.random,
) -> RunReport:
    """Pull this week's Company Surge report (or `week`'s label for rows without one).

    Creates the report with the workspace's topics and surge threshold, polls until it
    is ready, downloads it, and stores its rows exactly as the file importer would. A
    pull that gives up returns a failed report, records the error on the connection and
    keeps the pending report id, so the next pull polls it instead of creating another.
    """
    connection = read_connection(engine, ws, SOURCE, settings)
    username, password = connection.credential("username"), connection.credential("password")
    config = connection.config
    base_url = str(config.get("base_url") or DEFAULT_BASE_URL)
    problem = None
    if not username or not password:
        problem = (
            "the bombora connection needs credentials username and password: "
            "intently connections set bombora -c username=... -c password=..."
        )
    elif not base_url.startswith(("https://", "http://")):
        problem = f"the bombora connection's base_url '{base_url}' is not an http(s) URL"
    try:
        poll_seconds = float(config.get("poll_seconds", POLL_SECONDS))
        max_wait = float(config.get("max_wait_seconds", MAX_WAIT_SECONDS))
    except (TypeError, ValueError):
        problem = "the bombora connection's poll_seconds and max_wait_seconds must be numbers"
    with record_refusal(engine, ws, SOURCE):
        if problem:
            raise BadRequest(problem)
    cfg = read_source_config(engine, ws, SOURCE, default_settings(SOURCE))
    monday = monday_of(week or datetime.now(UTC).date())
    week_iso = monday.isoformat()
    state = dict(connection.state)

    with http_client(client, settings, TIMEOUT, DEADLINE_S) as http:
        api = BomboraApi(
            http, base_url, username, password, sleep=sleep, clock=clock, jitter=jitter
        )

        def read(run: IngestRun) -> Checkpoints:
            asked = {"topics": [str(t) for t in cfg["topics"]], "threshold": cfg["surgeThreshold"]}
            pending = state.get("pending") or {}
            age = now_us() - int(pending.get("createdAt", 0))
            if (
                pending.get("reportId")
                and pending.get("week") == week_iso
                and pending.get("asked") == asked
                and age < PENDING_MAX_AGE_US
            ):
                report_id = str(pending["reportId"])
            else:
                topic_ids = api.topic_ids(asked["topics"])
                report_id = api.create_report(topic_ids, int(cfg["surgeThreshold"]))
                state["pending"] = {
                    "reportId": report_id,
                    "week": week_iso,
                    "asked": asked,
                    "createdAt": now_us(),
                }
                yield state  # kept before the wait: a pull that gives up leaves it to the next
            run.report.label = f"report {report_id} week {week_iso}"
            with tempfile.TemporaryDirectory(prefix="intently-bombora-") as tmp:
                sink = Path(tmp) / "report.csv"  # not named by the vendor's id: no paths
                # The whole report is on disk before a row is stored: a pull that gives
                # up while downloading writes nothing.
                api.wait_for_report(report_id, sink, poll_seconds=poll_seconds, max_wait=max_wait)
                limits = FileLimits.of(settings)
                with CsvInput(sink, what="Bombora Company Surge report", limits=limits) as inp:
                    cols = inp.columns(REQUIRED, OPTIONAL)
                    _import_rows(run, inp, cols, monday, cfg)
            state.pop("pending", None)
            state.update(week=week_iso, reportId=report_id)
            yield state

        # A failed report names the error's class (`PullError: ...`), as Bombora's always has.
        return run_pull(
            engine, ws, SOURCE, f"week {week_iso}", read, scrub=api.scrub, name_errors=True
        )
