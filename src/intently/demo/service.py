"""Building the demo workspace: the synthetic world loaded through the real services.

Nothing here writes a table the product's own paths would not: accounts, deals and
sales activities go through the CRM push services (100, 100 and 50 a call, as the API
takes them); website visits are Segment-format events through the collector (parsed,
resolved against the workspace's IP ranges, uploaded as a range file, and flushed as
the collector flushes); Bombora, G2 and LinkedIn arrive as their export files through
their importers; segments and thresholds through their services; then one full scoring
run places every account on the journey.

Score history: a scoring run notes the day's score and stage (`journey_days`) for the
day it runs, not for the `as_of` it scores at, and places stages as of now; so the demo
has one day of history per account (today), not 90 days of it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine

from intently import schema
from intently.accounts.schemas import AccountIn, AccountsPush
from intently.accounts.service import push_accounts
from intently.accounts.tables import accounts as accounts_t
from intently.activities.schemas import ActivitiesPush
from intently.activities.service import push_activities
from intently.auth import repository as auth_repo
from intently.catalog import ACCOUNT_SCORE, SCORE_COLUMNS
from intently.custom_fields import service as custom_fields_service
from intently.custom_fields.schemas import CustomFieldIn, LabelType
from intently.deals.schemas import DealsPush
from intently.deals.service import push_deals
from intently.demo import world as w
from intently.events import service as events_service
from intently.ingest import bombora, g2, linkedin
from intently.ingest.collector import Collector, parse_body
from intently.ingest.resolvers import IpResolver, upload_ranges
from intently.kit.csvout import CsvWriter
from intently.kit.db import read_tx, write_tx
from intently.kit.errors import BadRequest, Conflict
from intently.kit.timefmt import format_ms
from intently.pipeline import run_scoring
from intently.segments import service as segments_service
from intently.segments.schemas import MembersChange, SegmentIn
from intently.settings import Settings
from intently.signals.tables import signals as signals_t

# progress(what is being done, fraction of the whole build done)
Progress = Callable[[str, float], None]

# The share of the build's time each step takes (measured on 5,000 accounts), so one bar
# moves evenly from start to end.
_STEPS = (
    ("Generating the world", 0.11),
    ("Accounts", 0.03),
    ("Deals and sales activities", 0.05),
    ("Website visits", 0.44),
    ("Bombora, G2 and LinkedIn", 0.31),
    ("Segments and scoring", 0.06),
)
# Workspace tables the reset leaves: the workspace and who signs in to it.
_KEPT_TABLES = frozenset({"workspaces", "users", "api_keys", "web_sessions"})

CUSTOM_FIELDS: tuple[tuple[str, LabelType, tuple[str, ...]], ...] = (
    ("Industry", "singleSelection", tuple(w.INDUSTRIES)),
    ("Country", "singleSelection", tuple(w.COUNTRIES)),
    ("Company Size", "singleSelection", tuple(s[0] for s in w.SIZES)),
    ("Employees", "number", ()),
)


@dataclass(frozen=True, slots=True)
class DemoSummary:
    workspace_id: int
    workspace_name: str
    accounts: int
    deals: int
    activities: int
    contacts: int
    web_events: int
    signals: dict[str, int]  # stored signals by source
    segments: int
    stages: dict[str, int]  # accounts by journey stage
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)  # seconds per step


class _Steps:
    """Turns each step's own progress (0..1) into the whole build's, and times the steps."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.index = -1
        self.done_before = 0.0
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def next(self) -> None:
        now = time.perf_counter()
        if self.index >= 0:
            name, share = _STEPS[self.index]
            self.seconds[name] = round(now - self.started, 3)
            self.done_before += share
        self.started = now
        self.index += 1
        self.part(0.0)

    def part(self, fraction: float) -> None:
        if self.progress is None or self.index >= len(_STEPS):
            return
        name, share = _STEPS[self.index]
        self.progress(name, min(1.0, self.done_before + share * max(0.0, min(1.0, fraction))))

    def finish(self) -> None:
        self.next()
        if self.progress is not None:
            self.progress("Done", 1.0)


def workspace_has_data(engine: Engine, workspace_name: str) -> bool:
    """The workspace exists and holds accounts."""
    with read_tx(engine) as conn:
        ws = auth_repo.workspace_id_by_name(conn, workspace_name.strip())
        if ws is None:
            return False
        n = conn.execute(
            select(func.count()).select_from(accounts_t).where(accounts_t.c.workspace_id == ws)
        ).scalar()
    return bool(n)


def wipe_workspace(engine: Engine, workspace_name: str) -> None:
    """Delete everything the workspace holds except the workspace and its users and keys."""
    with write_tx(engine) as conn:
        ws = auth_repo.workspace_id_by_name(conn, workspace_name.strip())
        if ws is None:
            return
        for table in reversed(schema.metadata.sorted_tables):
            if table.name in _KEPT_TABLES or "workspace_id" not in table.c:
                continue
            conn.execute(delete(table).where(table.c.workspace_id == ws))


def build_demo(
    engine: Engine,
    workspace_name: str = "Demo",
    accounts: int = 5000,
    seed: int = w.DEFAULT_SEED,
    progress: Progress | None = None,
    *,
    now: int | None = None,
    reset: bool = False,
) -> DemoSummary:
    """Create (or with `reset`, rebuild) the demo workspace and score it.

    Refuses a workspace that already holds accounts unless `reset` is given: the demo
    must not mix its world into real data or into an earlier demo.
    """
    name = workspace_name.strip()
    if not name:
        raise BadRequest("workspace should not be empty")
    if not 1 <= accounts <= 200_000:
        raise BadRequest(f"accounts should be from 1 to 200000; got {accounts}")
    if workspace_has_data(engine, name):
        if not reset:
            raise Conflict(
                f"Workspace '{name}' already holds accounts; rebuild it with reset "
                "(`intently demo --reset`) or choose another workspace"
            )
        wipe_workspace(engine, name)
    t0 = time.perf_counter()
    steps = _Steps(progress)
    steps.next()
    world = w.generate(accounts, seed, now)
    with write_tx(engine) as conn:
        ws = auth_repo.workspace_id_by_name(conn, name) or auth_repo.create_workspace(conn, name)

    steps.next()
    aids = _load_accounts(engine, ws, world, steps)
    steps.next()
    contacts = _load_crm(engine, ws, world, steps)
    with tempfile.TemporaryDirectory(prefix="intently-demo-") as tmp:
        folder = Path(tmp)
        steps.next()
        web_events = _load_website(engine, ws, world, folder, steps)
        steps.next()
        _load_vendor_files(engine, ws, world, folder, steps)
    steps.next()
    segments = _segments_and_thresholds(engine, ws, world, aids)
    steps.part(0.1)

    def scored(done: int, total: int) -> None:
        steps.part(0.1 + 0.9 * done / max(1, total))

    run_scoring(engine, ws, full=True, on_progress=scored)
    steps.finish()
    return _summary(engine, ws, name, world, contacts, web_events, segments, t0, steps.seconds)


# ---- the CRM ------------------------------------------------------------------------------------


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _load_accounts(engine: Engine, ws: int, world: w.World, steps: _Steps) -> list[str]:
    """Custom fields, then the accounts (the API's 100 a call); their ids in world order."""
    for label, kind, options in CUSTOM_FIELDS:
        custom_fields_service.create(
            engine, ws, CustomFieldIn(label=label, labelType=kind, options=list(options) or None)
        )
    aids: list[str] = []
    total = len(world.companies)
    for part in _chunks(world.companies, 100):
        body = AccountsPush(accounts=[_account(c) for c in part])
        for result in push_accounts(engine, ws, body):
            if result["status"] == "failed":
                raise RuntimeError(f"demo account {result['domain']}: {result.get('reason')}")
            aids.append(result["rtp_aid"])
        steps.part(len(aids) / total)
    return aids


def _account(c: w.Company) -> AccountIn:
    tags = [c.industry.lower().replace(" ", "-")]
    if c.fit >= 0.6:
        tags.append("icp-fit")
    if c.customer:
        tags.append("customer")
    return AccountIn(
        domain=c.domain,
        name=c.name,
        externalId=c.external_id,
        shortName=c.name.split(" ")[0],
        linkedinUrl=c.linkedin_url,
        tags=tags,
        customFields={
            "INDUSTRY_C": c.industry,
            "COUNTRY_C": c.country,
            "COMPANY_SIZE_C": c.size,
            "EMPLOYEES_C": c.employees,
        },
    )


def _load_crm(engine: Engine, ws: int, world: w.World, steps: _Steps) -> int:
    """Deals (100 a call) and sales activities with their contacts (50 a call)."""
    companies = world.companies
    total = len(world.deals) + len(world.activities)
    done = 0
    for part in _chunks(world.deals, 100):
        body = DealsPush.model_validate({"deals": [_deal(d, companies[d.company]) for d in part]})
        push_deals(engine, ws, body)
        done += len(part)
        steps.part(done / max(1, total))
    contacts: set[str] = set()
    for part in _chunks(sorted(world.activities, key=lambda a: a.at), 50):
        items = []
        for a in part:
            c = companies[a.company]
            contacts.add(c.people[a.person].email)
            items.append(_activity(a, c))
        results = push_activities(engine, ws, ActivitiesPush.model_validate({"activities": items}))
        bad = [r for r in results if r["status"] != "created"]
        if bad:
            raise RuntimeError(f"demo activity {bad[0]['externalActivityId']}: {bad[0]}")
        done += len(part)
        steps.part(done / max(1, total))
    return len(contacts)


def _rep(index: int) -> tuple[str, str]:
    name, local = w.REPS[index]
    return name, f"{local}@{w.SELLER_DOMAIN}"


def _deal(d: w.Deal, c: w.Company) -> dict[str, Any]:
    owner, email = _rep(d.owner)
    return {
        "externalDealId": d.external_id,
        "name": d.name,
        "amount": d.amount,
        "stageId": d.stage.lower().replace(" ", "_"),
        "stageLabel": d.stage,
        "pipelineId": w.PIPELINE[0],
        "pipelineLabel": w.PIPELINE[1],
        "startDate": format_ms(d.created),
        "closedDate": format_ms(d.closed) if d.closed is not None else None,
        "ownerName": owner,
        "ownerEmail": email,
        "ownerId": email.split("@")[0],
        "dealCurrencyCode": "USD",
        "associatedAccounts": [{"externalId": c.external_id, "domain": c.domain, "name": c.name}],
    }


def _activity(a: w.Activity, c: w.Company) -> dict[str, Any]:
    owner, email = _rep(a.owner)
    p = c.people[a.person]
    item: dict[str, Any] = {
        "externalActivityId": a.external_id,
        "activityType": a.kind,
        "occurredAt": format_ms(a.at),
        "domain": c.domain,
        "accountName": c.name,
        "subject": a.subject,
        "ownerEmail": email,
        "ownerName": owner,
        "direction": a.direction,
        "contacts": [
            {
                "email": p.email,
                "name": p.name,
                "title": p.title,
                "department": p.department,
                "seniority": p.seniority,
            }
        ],
    }
    if a.kind == "call":
        item |= {"callTitle": a.subject, "durationMinutes": a.minutes, "outcome": a.outcome}
    else:
        item |= {
            "from": {"name": owner, "email": email},
            "openCount": a.opens,
            "clickCount": a.clicks,
            "replyCount": a.replies,
        }
    return item


# ---- the website -------------------------------------------------------------------------------

_encode = msgspec.json.Encoder().encode
_USER_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"


def _web_events(world: w.World) -> Iterator[dict[str, Any]]:
    """Each page view as the website's Segment snippet sends it (identify + track for forms)."""
    for n, v in enumerate(world.page_views):
        at = format_ms(v.at)
        context = {
            "ip": v.ip,
            "userAgent": _USER_AGENT,
            "page": {"path": v.path, "url": w.SITE + v.path, "title": v.title},
        }
        if v.event is None:
            yield {
                "type": "page",
                "messageId": f"demo-{world.seed}-{n}",
                "anonymousId": v.visitor,
                "timestamp": at,
                "name": v.title,
                "context": context,
            }
            continue
        yield {
            "type": "identify",
            "messageId": f"demo-{world.seed}-{n}-id",
            "anonymousId": v.visitor,
            "timestamp": at,
            "traits": {"email": v.email},
            "context": context,
        }
        yield {
            "type": "track",
            "messageId": f"demo-{world.seed}-{n}",
            "anonymousId": v.visitor,
            "timestamp": at,
            "event": v.event,
            "properties": {"form": "demo-request"},
            "context": context,
        }


def _load_website(engine: Engine, ws: int, world: w.World, folder: Path, steps: _Steps) -> int:
    """The companies' office ranges as an IP-to-company file, then every visit through the
    collector, as `/v1/batch` requests of 500 events would bring them."""
    ranges = folder / "demo-ip-ranges.csv"
    with ranges.open("w", newline="", encoding="utf-8") as f:
        out = CsvWriter(f, defuse=False)  # read by the range importer, not a spreadsheet
        out.writerow(["network", "domain", "company"])
        out.writerows((c.network, c.domain, c.name) for c in world.companies)
    upload_ranges(engine, ws, ranges)
    settings = Settings(collector_batch=10_000)
    collector = Collector(
        engine, settings, resolver=IpResolver(engine, []), clock=lambda: world.now
    )
    total = len(world.page_views)
    written = 0
    batch: list[dict[str, Any]] = []
    sent = 0

    def send() -> None:
        nonlocal written
        parsed = parse_body(
            _encode({"batch": batch, "sentAt": format_ms(world.now)}), None,
            received=world.now, peer=None,
        )  # fmt: skip
        if parsed.problems:
            p = parsed.problems[0]
            raise RuntimeError(f"demo web event refused: {p.field}: {p.message}")
        collector.accept(ws, parsed.events)
        batch.clear()
        if collector.pending >= settings.collector_batch:
            result = collector.flush()
            if result.failed:
                raise RuntimeError(f"collector flush failed: {'; '.join(result.errors)}")
            written += result.written
            steps.part(sent / max(1, total))

    try:
        for event in _web_events(world):
            batch.append(event)
            if event["type"] != "identify":
                sent += 1
            if len(batch) >= 500:
                send()
        if batch:
            send()
        result = collector.flush()
        if result.failed:
            raise RuntimeError(f"collector flush failed: {'; '.join(result.errors)}")
        written += result.written
    finally:
        collector.resolver.close()
    return written


# ---- Bombora, G2, LinkedIn ---------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: Iterator[list[Any]]) -> Path:
    """A vendor's export file, values as the vendor writes them: an importer reads it."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = CsvWriter(f, defuse=False)
        out.writerow(header)
        out.writerows(rows)
    return path


def _load_vendor_files(
    engine: Engine, ws: int, world: w.World, folder: Path, steps: _Steps
) -> None:
    """Each vendor's export file, written as the vendor lays it out, through its importer."""
    cs = world.companies
    surge = _write_csv(
        folder / "bombora-company-surge.csv",
        ["Domain", "Company Name", "Size", "Industry", "Topic", "Composite Score", "Week"],
        (
            [cs[r.company].domain, cs[r.company].name, cs[r.company].size,
             cs[r.company].industry, r.topic, r.score, r.week.isoformat()]
            for r in world.bombora
        ),
    )  # fmt: skip
    bombora.import_file(engine, ws, surge)
    steps.part(0.4)
    events = _write_csv(
        folder / "g2-buyer-intent.csv",
        ["Id", "Time", "Tag", "Title", "URL", "Company Name", "Company Domain"],
        (
            [e.event_id, format_ms(e.at), e.tag, e.title, e.url, cs[e.company].name,
             cs[e.company].domain]
            for e in world.g2
        ),
    )  # fmt: skip
    g2.import_file(engine, ws, events)
    steps.part(0.5)
    ads = _write_csv(
        folder / "linkedin-company-engagement.csv",
        ["Company Name", "Organization URN", "Campaign", "Start Date", "End Date",
         "Impressions", "Clicks", "Engagements", "Leads"],
        (
            [cs[r.company].name, f"urn:li:organization:{cs[r.company].linkedin_id}", r.campaign,
             r.start.isoformat(), r.end.isoformat(), r.impressions, r.clicks, r.engagements,
             r.leads]
            for r in world.linkedin
        ),
    )  # fmt: skip
    linkedin.import_file(engine, ws, ads)
    steps.part(1.0)


# ---- segments, thresholds -----------------------------------------------------------------------

DYNAMIC_SEGMENTS = (
    ("Hot accounts (score 50+)", {"field": ACCOUNT_SCORE, "op": "gte", "value": 50}),
    (
        "Researching us on G2 (30 days)",
        {"signal": {"source": "g2"}, "window_days": 30, "op": "gte", "value": 1},
    ),
    ("Open opportunities", {"deal": {"status": "open"}, "op": "gte", "value": 1}),
    (
        "ICP fit, surging on Bombora",
        {
            "all": [
                {"field": "tags", "op": "contains", "value": "icp-fit"},
                {"surge": {"source": "bombora"}, "op": "eq", "value": True},
            ]
        },
    ),
)
STATIC_SEGMENT = "Tier 1 target list"
THRESHOLDS = (
    {"score": ACCOUNT_SCORE, "value": 60.0},
    {"score": SCORE_COLUMNS["g2"], "value": 50.0},
)


def _segments_and_thresholds(engine: Engine, ws: int, world: w.World, aids: list[str]) -> int:
    """A hand-picked static list of the best-fitting accounts, a few dynamic segments (their
    members follow the scoring run), and the thresholds whose crossing records events."""
    events_service.put_thresholds(engine, ws, [dict(t) for t in THRESHOLDS])
    tier1 = segments_service.create(engine, ws, SegmentIn(name=STATIC_SEGMENT, type="static"))
    best = sorted(range(len(aids)), key=lambda i: -world.companies[i].fit)[
        : max(1, len(aids) // 33)
    ]
    for part in _chunks([aids[i] for i in best], 1000):
        segments_service.add_accounts(engine, ws, tier1["segmentId"], MembersChange(rtp_aids=part))
    for name, rules in DYNAMIC_SEGMENTS:
        segments_service.create(engine, ws, SegmentIn(name=name, type="dynamic", rules=rules))
    return 1 + len(DYNAMIC_SEGMENTS)


# ---- the summary ---------------------------------------------------------------------------------


def _summary(
    engine: Engine,
    ws: int,
    name: str,
    world: w.World,
    contacts: int,
    web_events: int,
    segments: int,
    t0: float,
    steps: dict[str, float],
) -> DemoSummary:
    with read_tx(engine) as conn:
        by_source: dict[Any, Any] = dict(
            conn.execute(
                select(signals_t.c.source, func.count())
                .where(signals_t.c.workspace_id == ws)
                .group_by(signals_t.c.source)
            ).all()
        )
        stages: dict[Any, Any] = dict(
            conn.execute(
                select(accounts_t.c.rtp_journey_stage, func.count())
                .where(accounts_t.c.workspace_id == ws)
                .group_by(accounts_t.c.rtp_journey_stage)
            ).all()
        )
    return DemoSummary(
        workspace_id=ws,
        workspace_name=name,
        accounts=len(world.companies),
        deals=len(world.deals),
        activities=len(world.activities),
        contacts=contacts,
        web_events=web_events,
        signals={str(k): int(v) for k, v in sorted(by_source.items())},
        segments=segments,
        stages={str(k): int(v) for k, v in stages.items()},
        seconds=time.perf_counter() - t0,
        steps=steps,
    )
