"""Resolving a website visit to an account: group traits, business email, IP databases.

The collector asks in the spec's order and the first answer wins: `match_group` (a
`group` call's traits), `match_email` (an `identify` with a business email), then
`IpResolver.lookup` (the workspace's uploaded ranges, then each MaxMind `.mmdb` in the
order configured), then its own record of earlier resolutions of the anonymous id.
Free-mail domains never match, and neither do ISP, hosting, CDN, VPN and mobile
networks: they say who runs the network, not where the visitor works.

Confidence by method: group traits 0.95, business email 0.9, workspace ranges 0.9,
MaxMind Enterprise 0.8, MaxMind Domain 0.7.

This module holds the resolver and the writes to a workspace's ranges; the evidence
without an IP is in `matches.py`, IP arithmetic in `ipnets.py`, the `.mmdb` records in
`mmdb.py` and the ranges file in `ipranges.py`, all re-exported here.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection, Engine

from intently.ingest.files import FileLimits
from intently.ingest.ipnets import (
    MAPPED_PREFIX,
    SPECIAL4,
    SPECIAL6,
    Intervals,
    cidr_bounds,
    is_special_ip,
)
from intently.ingest.ipranges import (
    BATCH,
    KIND,
    MIN_PREFIX,
    OPTIONAL,
    REQUIRED,
    SOURCE,
    WHAT,
    RangeFile,
    RangeRow,
    begin_change,
    check_row,
    ranges_version,
    set_version,
)
from intently.ingest.matches import (
    CONFIDENCE_DOMAIN,
    CONFIDENCE_EMAIL,
    CONFIDENCE_ENTERPRISE,
    CONFIDENCE_GROUP,
    CONFIDENCE_RANGES,
    Match,
    free_email_domains,
    is_free_email_domain,
    is_network_domain,
    match_email,
    match_group,
    network_domains,
)
from intently.ingest.mmdb import (
    NETWORK_USER_TYPES,
    Mmdb,
    Owner,
    Refusal,
    check_files,
    names_network,
    owner_refusal,
)
from intently.ingest.tables import ip_ranges
from intently.kit.db import fetch_all, read_tx, write_tx
from intently.kit.errors import BadRequest
from intently.signals.store import IngestRun, RunReport, ingest_run

__all__ = [
    "BATCH",
    "CONFIDENCE_DOMAIN",
    "CONFIDENCE_EMAIL",
    "CONFIDENCE_ENTERPRISE",
    "CONFIDENCE_GROUP",
    "CONFIDENCE_RANGES",
    "KIND",
    "MIN_PREFIX",
    "NETWORK_USER_TYPES",
    "OPTIONAL",
    "REQUIRED",
    "SOURCE",
    "WHAT",
    "IpResolver",
    "Match",
    "ProgressFn",
    "Refusal",
    "check_ip_databases",
    "count_ranges",
    "database_paths",
    "delete_ranges",
    "free_email_domains",
    "is_free_email_domain",
    "is_network_domain",
    "is_special_ip",
    "match_email",
    "match_group",
    "names_network",
    "network_domains",
    "ranges_version",
    "upload_ranges",
]

_AF4, _AF6 = socket.AF_INET, socket.AF_INET6
_inet_pton = socket.inet_pton

_INVALID = Refusal("invalid", "not an IPv4 or IPv6 address")
_PRIVATE = Refusal(
    "private", "a private, loopback, link-local, multicast or reserved address never resolves"
)
_UNKNOWN = Refusal("unknown", "no uploaded range and no IP database knows this address")

# ---- the resolver ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WsRanges:
    """A workspace's ranges as loaded, with the version of them that was read."""

    version: int
    v4: Intervals[Match]
    v6: Intervals[Match]


_RANGES_SQL = "SELECT network, domain, company FROM ip_ranges WHERE workspace_id = {m}"


def database_paths(setting: str) -> list[str]:
    """`Settings.ip_databases` (comma separated) as a list of paths."""
    return [p.strip() for p in setting.split(",") if p.strip()]


def check_ip_databases(setting: str) -> None:
    """Every database of `Settings.ip_databases` opens and passes its checks; else
    BadRequest naming the file (for `intently serve` to refuse to start)."""
    check_files(database_paths(setting))


class IpResolver:
    """Per process; thread-safe; workspace ranges cached in memory and reloaded when they change.

    Lookups read an immutable snapshot of a workspace's ranges, so they take no lock;
    loading swaps in a new snapshot. The `.mmdb` readers map private copies of the files
    (reopened when a file changes) and are shared.
    """

    def __init__(self, engine: Engine, mmdb_paths: list[str]) -> None:
        self.engine = engine
        self._dbs: list[Mmdb] = []
        try:
            for path in mmdb_paths:
                self._dbs.append(Mmdb(path))
        except BadRequest:
            self.close()
            raise
        self._ranges: dict[int, _WsRanges] = {}
        self._load_lock = threading.Lock()
        self._marker = "?" if engine.dialect.name == "sqlite" else "%s"

    @property
    def databases(self) -> list[str]:
        """The providers of the open `.mmdb` files, in lookup order."""
        return [db.provider for db in self._dbs]

    def refresh(self, ws: int) -> None:
        """Cheap check (one query) whether the workspace's ranges changed; reload if so."""
        cached = self._ranges.get(ws)
        if cached is None:
            self._load(ws, stale=None)
            return
        with read_tx(self.engine) as conn:
            version = ranges_version(conn, ws)
        if version != cached.version:
            self._load(ws, stale=cached)

    def lookup(self, ws: int, ip: str) -> Match | None:
        """Workspace ranges first (most specific network wins), then each mmdb in order."""
        found = self._resolve(ws, ip)
        return found if type(found) is Match else None

    def explain(self, ws: int, ip: str) -> Match | Refusal:
        """The match, or why there is none (for `intently ip lookup`)."""
        return self._resolve(ws, ip)

    def close(self) -> None:
        for db in self._dbs:
            db.close()
        self._dbs = []
        self._ranges = {}

    def _resolve(self, ws: int, ip: str) -> Match | Refusal:
        try:
            if ":" in ip:
                n = int.from_bytes(_inet_pton(_AF6, ip), "big")
                v6 = n >> 32 != MAPPED_PREFIX
                if not v6:
                    n &= 0xFFFFFFFF
                    ip = socket.inet_ntop(_AF4, n.to_bytes(4, "big"))
            else:
                n = int.from_bytes(_inet_pton(_AF4, ip), "big")
                v6 = False
        except (OSError, TypeError, ValueError):
            return _INVALID
        special = SPECIAL6 if v6 else SPECIAL4
        i = bisect_right(special.starts, n) - 1
        if i >= 0 and n <= special.ends[i]:
            return _PRIVATE
        ranges = self._ranges.get(ws)
        if ranges is None:
            ranges = self._load(ws, stale=None)
        table = ranges.v6 if v6 else ranges.v4
        starts = table.starts
        if starts:
            i = bisect_right(starts, n) - 1
            if i >= 0 and n <= table.ends[i]:
                return table.values[i]
        # Every database is asked: one that knows the network as an ISP's, a host's or a
        # carrier's vetoes the others' domain; otherwise the first domain in order wins,
        # unless what a database says of the network's ISP and user makes it the ISP's.
        # A database that cannot read its record is passed over (and named if nothing
        # else answers).
        found: Match | None = None
        failed: Refusal | None = None
        owners: list[tuple[str, Owner]] = []
        for db in self._dbs:
            if v6 and not db.ipv6:
                continue
            verdict, owner = db.look(ip)
            if owner is not None:
                owners.append((db.name, owner))
            if verdict is None:
                continue
            if type(verdict) is Refusal:
                if verdict.reason == "error":
                    failed = failed or verdict
                    continue
                return verdict
            if found is None:
                found = verdict  # type: ignore[assignment]
        if found is None:
            return failed or _UNKNOWN
        for name, owner in owners:
            why = owner_refusal(found.domain, owner.isp, owner.organization, owner.asn)
            if why is not None:
                return Refusal("network", f"{name}: {why}")
        return found

    def _load(self, ws: int, stale: _WsRanges | None) -> _WsRanges:
        """Read the workspace's ranges, unless another thread did while this one waited
        (the cache no longer holds `stale`, the snapshot this caller found)."""
        with self._load_lock:
            current = self._ranges.get(ws)
            if current is not None and current is not stale:
                return current
            with read_tx(self.engine) as conn:
                # The version first: a change committed between the two reads is then
                # in the rows and makes the next refresh load again (never the reverse).
                version = ranges_version(conn, ws)
                rows = fetch_all(conn, _RANGES_SQL.format(m=self._marker), (ws,))
            v4: list[tuple[int, int, Match]] = []
            v6: list[tuple[int, int, Match]] = []
            for network, domain, company in rows:
                ip_version, first, last = cidr_bounds(network)
                match = Match(domain, "ip", "ranges", CONFIDENCE_RANGES, company)
                (v6 if ip_version == 6 else v4).append((first, last, match))
            loaded = _WsRanges(version, Intervals(v4), Intervals(v6))
            self._ranges[ws] = loaded
            return loaded


# ---- writing a workspace's ranges ------------------------------------------------------------


def _chunks(items: list[str], size: int = 1000) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_UPDATE = (
    update(ip_ranges)
    .where(ip_ranges.c.workspace_id == bindparam("b_ws"))
    .where(ip_ranges.c.network == bindparam("b_network"))
    .values(
        domain=bindparam("b_domain"),
        company=bindparam("b_company"),
        created_at=bindparam("b_stamp"),
    )
)


def _apply(
    conn: Connection, ws: int, rows: list[RangeRow], stamp: int, *, touch: bool
) -> tuple[list[str], bool]:
    """Write a batch of rows: per row `created`, `updated` or `duplicate` (a row is created
    when any of its networks is new), and whether anything changed. `touch` stamps
    unchanged rows too (replace removes the rows it did not stamp)."""
    wanted = sorted({n for r in rows for n in r.networks})
    stored: dict[str, tuple[str, str | None]] = {}
    for part in _chunks(wanted):
        q = select(ip_ranges.c.network, ip_ranges.c.domain, ip_ranges.c.company).where(
            ip_ranges.c.workspace_id == ws, ip_ranges.c.network.in_(part)
        )
        stored.update((n, (d, c)) for n, d, c in conn.execute(q))
    state = dict(stored)
    outcomes: list[str] = []
    for row in rows:
        value = (row.domain, row.company)
        outcome = "duplicate"
        for net in row.networks:
            before = state.get(net)
            if before is None:
                outcome = "created"
            elif before != value and outcome == "duplicate":
                outcome = "updated"
            state[net] = value
        outcomes.append(outcome)
    inserts = [
        {"workspace_id": ws, "network": n, "domain": d, "company": c, "created_at": stamp}
        for n, (d, c) in state.items()
        if n not in stored
    ]
    changes = [
        {"b_ws": ws, "b_network": n, "b_domain": d, "b_company": c, "b_stamp": stamp}
        for n, (d, c) in state.items()
        if n in stored and stored[n] != (d, c)
    ]
    if inserts:
        conn.execute(ip_ranges.insert(), inserts)
    if changes:
        conn.execute(_UPDATE, changes)
    if touch:
        same = [n for n in state if n in stored and stored[n] == state[n]]
        for part in _chunks(same):
            conn.execute(
                update(ip_ranges)
                .where(ip_ranges.c.workspace_id == ws, ip_ranges.c.network.in_(part))
                .values(created_at=stamp)
            )
    return outcomes, bool(inserts or changes)


def _count(run: IngestRun, outcomes: list[str]) -> None:
    r = run.report
    r.accepted += outcomes.count("created")
    r.updated += outcomes.count("updated")
    r.duplicate += outcomes.count("duplicate")


def _counted(report: RunReport, outcomes: list[str]) -> RunReport:
    """A copy of the report with outcomes not yet committed counted in (for progress)."""
    return dataclasses.replace(
        report,
        accepted=report.accepted + outcomes.count("created"),
        updated=report.updated + outcomes.count("updated"),
        duplicate=report.duplicate + outcomes.count("duplicate"),
    )


ProgressFn = Callable[[RunReport, int, int], None]


def upload_ranges(
    engine: Engine,
    ws: int,
    path: str | Path,
    *,
    replace: bool = False,
    on_progress: ProgressFn | None = None,
    batch_size: int = BATCH,
    limits: FileLimits | None = None,
) -> RunReport:
    """Upload a CSV of `network,domain[,company]` (header optional) as the workspace's ranges.

    Networks may be CIDRs, single addresses or `start-end` ranges (made CIDR blocks),
    IPv4 or IPv6. Bad rows are rejected with their line; the same rows again are
    duplicates. With `replace`, ranges not in the file are removed, and the whole file
    applies in one transaction after a first pass has checked it: all or nothing.
    `limits`: the operator's file limits (the settings' defaults when not given).
    """
    with RangeFile(path, limits) as f:
        inp = f.inp
        total = inp.total_bytes
        half = 2 if replace else 1  # replace reads the file twice

        def progress(report: RunReport) -> None:
            if on_progress is not None:
                on_progress(report, inp.bytes_read() // half, total)

        label = inp.path.name + (" (replace)" if replace else "")
        with ingest_run(
            engine, ws, SOURCE, KIND, label, batch_size=batch_size, on_progress=progress
        ) as run:
            if replace:
                _replace(engine, ws, run, f, path, on_progress, batch_size)
            else:
                _merge(engine, ws, run, f, batch_size)
    return run.report


def _merge(engine: Engine, ws: int, run: IngestRun, f: RangeFile, batch_size: int) -> None:
    """Add and change ranges, one transaction a batch (its rejects and counts follow it)."""
    batch: list[RangeRow] = []

    def write() -> None:
        with write_tx(engine) as conn:
            stamp = begin_change(conn, ws)
            outcomes, changed = _apply(conn, ws, batch, stamp, touch=False)
            if changed:
                set_version(conn, ws, stamp)
        _count(run, outcomes)
        batch.clear()
        run.flush()

    for line, cells in f.rows():
        run.read()
        row = check_row(line, cells, f.cols)
        if isinstance(row, tuple):
            run.reject(row[0], row[1], f.record(cells), line=line)
            continue
        batch.append(row)
        if len(batch) >= batch_size:
            write()
    if batch:
        write()


def _replace(
    engine: Engine,
    ws: int,
    run: IngestRun,
    f: RangeFile,
    path: str | Path,
    on_progress: ProgressFn | None,
    batch_size: int,
) -> None:
    """Check every row (rejects recorded as usual), then apply the good ones and remove the
    rest in one transaction, so readers see the old ranges until the new ones are whole."""
    usable = 0
    for line, cells in f.rows():
        run.read()
        row = check_row(line, cells, f.cols)
        if isinstance(row, tuple):
            run.reject(row[0], row[1], f.record(cells), line=line)
        else:
            usable += 1
    run.flush()
    if usable == 0:
        raise BadRequest(
            f"{f.inp.path.name} has no usable row; the workspace's ranges were left as they were"
        )
    with RangeFile(path, f.inp.limits) as again, write_tx(engine) as conn:
        stamp = begin_change(conn, ws)
        # The sweep below removes rows stamped before this replace: the stamp must be above
        # every row's, including any written by other means than this module.
        newest = conn.execute(
            select(func.max(ip_ranges.c.created_at)).where(ip_ranges.c.workspace_id == ws)
        ).scalar()
        stamp = max(stamp, int(newest or 0) + 1)
        # Counted into the run only once committed: a failed replace wrote nothing.
        outcomes: list[str] = []
        batch: list[RangeRow] = []
        total = again.inp.total_bytes
        for line, cells in again.rows():
            row = check_row(line, cells, again.cols)
            if isinstance(row, tuple):
                continue  # rejected in the first pass
            batch.append(row)
            if len(batch) >= batch_size:
                outcomes += _apply(conn, ws, batch, stamp, touch=True)[0]
                batch.clear()
                if on_progress is not None:
                    so_far = _counted(run.report, outcomes)
                    on_progress(so_far, (total + again.inp.bytes_read()) // 2, total)
        if batch:
            outcomes += _apply(conn, ws, batch, stamp, touch=True)[0]
        conn.execute(
            delete(ip_ranges).where(ip_ranges.c.workspace_id == ws, ip_ranges.c.created_at < stamp)
        )
        set_version(conn, ws, stamp)
    _count(run, outcomes)
    if on_progress is not None:
        on_progress(run.report, total, total)


def delete_ranges(engine: Engine, ws: int) -> int:
    """Remove every range of the workspace; how many there were."""
    with write_tx(engine) as conn:
        stamp = begin_change(conn, ws)
        result = conn.execute(delete(ip_ranges).where(ip_ranges.c.workspace_id == ws))
        removed = int(result.rowcount or 0)
        if removed:
            set_version(conn, ws, stamp)
    return removed


def count_ranges(engine: Engine, ws: int) -> int:
    """How many ranges (CIDR blocks) the workspace has."""
    with read_tx(engine) as conn:
        n = conn.execute(
            select(func.count()).select_from(ip_ranges).where(ip_ranges.c.workspace_id == ws)
        ).scalar()
    return int(n or 0)
