"""The website collector: Segment-compatible events in; web events, visitor identities and
`website` signals out.

Request path (`endpoints.py`): the body is parsed and validated with msgspec
(`tracking.py`), and the valid events are appended to an in-process buffer; nothing is
written to the database while the sender waits. A flusher thread writes the buffer every
`collector_flush_ms` (default 500 ms), or as soon as `collector_batch` (default 2,000)
events wait, in one transaction per workspace (per `collector_batch` events): the web
events (deduplicated on messageId), the resolved account of each, the visitor
identities, and the `website` signals (through `signals.store.store`).

Durability: an accepted event lives only in this process's memory until its flush
commits. **A crash (kill -9, power loss) loses what is buffered: normally the events of
the last flush window, `collector_flush_ms` (500 ms by default) plus the flush under
way.** When writing falls behind, at most `BUFFER_FLUSHES` x `collector_batch` events
(20,000 by default) wait; beyond that requests are answered 503 with Retry-After, so
senders retry rather than lose data, and the window stays bounded. A normal stop
(SIGTERM) flushes first. A flush that fails (database down or locked) keeps its events
and retries with backoff.

Resolution, first match wins, recorded on the event and its signal (method, provider,
confidence): (1) the event's own evidence (group traits `website`/`domain`, an identify
business email) or an identity set earlier for its anonymous id, user id or group id by
a group, identify or alias call; (2) the IP resolver (workspace ranges, then MaxMind
databases); (3) an earlier IP resolution of the same anonymous id (method
`anonymous_id`, confidence x 0.9). When a group or identify call gives an anonymous id
an identity, its unresolved page and form events of the last 30 days are resolved and
become signals too (back-fill).

Trust (docs/deploy.md, "The collector's trust model"): the write key is public, so a
group or identify claim is the browser's word. Claims are bounded: one anonymous id may
claim `collector_claims_per_visitor` domains, one client address (the connection's, not
`context.ip`) `collector_claims_per_address`, per `collector_claims_window_s`; a claim
beyond is kept on its event but resolves nothing (skipped `identity_limit`). And a claim
weighs less than server-side evidence: an event resolved only by a claim (method
`group` or `email`) makes a `page_view` signal at most (never `high_value_page_view` or
`form_submit`) with confidence x `CLAIMED_CONFIDENCE`, unless the IP resolver puts the
event's address in the same domain. So does an IP match of a `context.ip` that differs
from the connection's address. A trusted sender (`collector_trusted_senders`: a relay or
backend) is believed: its claims count in full (provider `trusted-sender`, kept with the
visitor's identity) and are not bounded per address.

Accounting: refused events (malformed: 400; over 32 KB: 413) are kept as rejects
(`invalid_event`, `event_too_large`) with the field and value at fault, and each flush
adds its counts (read, accepted, duplicate, rejected, skipped `do_not_track`) to the
workspace's ingest run of the day (kind `collector`, label `collector YYYY-MM-DD`).

IP retention: raw IPs (`web_events.ip`) are set to NULL once older (by receipt) than the
workspace's `ipRetentionDays` (default 7; 0 never stores them). The flusher does it at
most every `PURGE_EVERY_S` (5 minutes); `intently website purge-ips` does it on demand.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.ingest.matches import Match, match_email, match_group
from intently.ingest.resolvers import IpResolver, database_paths
from intently.ingest.tracking import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    BodyError,
    Problem,
    WebEvent,
    parse_body,
)
from intently.ingest.webevents import (
    Counts,
    Identity,
    collector_run,
    count_run,
    insert_rejects,
    insert_web_events,
    load_claims,
    load_identities,
    purge_claims,
    purge_ips,
    resolve_stored,
    save_claims,
    save_identities,
    stored_message_ids,
    unresolved_events,
)
from intently.ingest.websignals import SOURCE, SignalRules, page_topic, signal_of
from intently.ingest.writekeys import WriteKeyCache
from intently.kit.db import read_tx, write_tx
from intently.kit.ids import new_id
from intently.kit.metrics import COLLECTOR_WRITTEN
from intently.kit.secrets import get_or_create_secret
from intently.kit.timefmt import US_PER_DAY, US_PER_SECOND, now_us
from intently.settings import Settings
from intently.signals import repository as signals_repo
from intently.signals.schemas import default_settings
from intently.signals.store import SignalIn, source_config, store

# The collector's face to endpoints, the CLI and the demo; the request side's parsing is
# `tracking.py`, the signals `websignals.py`, the queries `webevents.py`.
__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_EVENT_BYTES",
    "BodyError",
    "BufferFull",
    "Collector",
    "FlushResult",
    "Problem",
    "page_topic",
    "parse_body",
    "purge_ips",
]

log = logging.getLogger("intently.collector")

# Events (and rejects to record) that may wait, in flushes' worth: then requests get 503.
BUFFER_FLUSHES = 10
BACKFILL_US = 30 * US_PER_DAY
ANONYMOUS_ID_DECAY = 0.9
CLAIMED = frozenset({"group", "email"})  # match methods that rest on the browser's word
CLAIMED_CONFIDENCE = 0.5
TRUSTED_PROVIDER = "trusted-sender"  # the provider of a claim a trusted sender made
PURGE_EVERY_S = 300.0
CONFIG_CACHE_SECONDS = 5.0
MAX_BACKOFF_S = 30.0


# ---- the buffer and the flusher ----------------------------------------------------------


@dataclass
class FlushResult:
    written: int = 0  # new web events stored
    duplicate: int = 0
    signals: int = 0  # signals created (including back-filled ones)
    backfilled: int = 0  # of those, signals of earlier events a new identity resolved
    failed: int = 0  # events kept in the buffer for the next flush
    errors: list[str] = field(default_factory=list)


class ClaimBounds:
    """The claims of one flush chunk, in arrival order, against the bounds: a visitor
    (`v:`) and an address (`a:`) may each claim so many distinct domains in the window."""

    def __init__(
        self,
        known: dict[str, set[str]],
        per_visitor: int,
        per_address: int,
        subjects: Callable[[WebEvent], tuple[str, ...]],
    ) -> None:
        self.known, self.per_visitor, self.per_address = known, per_visitor, per_address
        self.subjects = subjects
        self.new: list[tuple[str, str]] = []  # (subject, domain) claims to record

    def allow(self, e: WebEvent, domain: str) -> bool:
        subjects = self.subjects(e)
        for s in subjects:
            have = self.known.get(s, set())
            bound = self.per_visitor if s.startswith("v:") else self.per_address
            if e.trusted and s.startswith("a:"):
                continue  # a relay's one address carries every visitor's claims
            if domain not in have and len(have) >= bound:
                return False
        for s in subjects:
            have = self.known.setdefault(s, set())
            if domain not in have:
                have.add(domain)
                self.new.append((s, domain))
        return True


class BufferFull(Exception):
    """More events wait than the collector holds: the sender should retry later."""


class Collector:
    """Buffer of accepted events per workspace, and the thread that writes it."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        resolver: IpResolver | None = None,
        clock: Callable[[], int] = now_us,
        max_buffered: int | None = None,
    ) -> None:
        self.engine = engine
        self.flush_s = settings.collector_flush_ms / 1000
        self.batch = settings.collector_batch
        self.max_buffered = max_buffered or BUFFER_FLUSHES * settings.collector_batch
        self.clock = clock
        self.resolver = (
            resolver
            if resolver is not None
            else IpResolver(engine, database_paths(settings.ip_databases))
        )
        self.keys = WriteKeyCache(engine)
        self.claims_per_visitor = settings.collector_claims_per_visitor
        self.claims_per_address = settings.collector_claims_per_address
        self.claims_window_us = settings.collector_claims_window_s * US_PER_SECOND
        self._address_key: bytes | None = None
        self._pending: dict[int, list[WebEvent]] = {}
        self._rejects: dict[int, list[Problem]] = {}
        self._counts: dict[int, Counts] = {}
        self._size = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._configs: dict[int, tuple[dict[str, Any], float]] = {}
        self._last_purge = time.monotonic()

    # -- the request side --

    @property
    def pending(self) -> int:
        return self._size

    @property
    def full(self) -> bool:
        """Refuse requests before reading them: parsing what cannot be kept slows the flush."""
        return self._size >= self.max_buffered

    def accept(
        self,
        ws: int,
        events: list[WebEvent],
        problems: Sequence[Problem] = (),
        *,
        skipped: str | None = None,
        skipped_count: int = 0,
    ) -> None:
        """Buffer a request's events and rejects; raises BufferFull instead of growing forever."""
        added = len(events) + len(problems)
        with self._lock:
            if self._size + added > self.max_buffered and added:
                raise BufferFull(f"{self._size:,} events are waiting to be written")
            if events:
                self._pending.setdefault(ws, []).extend(events)
            if problems:
                self._rejects.setdefault(ws, []).extend(problems)
            counts = self._counts.get(ws)
            if counts is None:
                counts = self._counts[ws] = Counts()
            counts.read += added + skipped_count
            for p in problems:
                counts.rejected[p.reason] += 1
            if skipped is not None and skipped_count:
                counts.skipped[skipped] += skipped_count
            self._size += added
            full = self._size >= self.batch
        if full:
            self._wake.set()

    def website_settings(self, ws: int) -> dict[str, Any]:
        """The workspace's website settings, cached for CONFIG_CACHE_SECONDS."""
        hit = self._configs.get(ws)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        with read_tx(self.engine) as conn:
            cfg = source_config(conn, ws, SOURCE, default_settings(SOURCE))
        self._configs[ws] = (cfg, time.monotonic() + CONFIG_CACHE_SECONDS)
        return cfg

    def cached_settings(self, ws: int) -> dict[str, Any] | None:
        hit = self._configs.get(ws)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    # -- the flusher --

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="intently-collector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread, then write what is left (retrying briefly if the database fails)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        deadline = time.monotonic() + timeout
        while self._size and time.monotonic() < deadline:
            if self.flush().failed:
                time.sleep(min(1.0, self.flush_s))
        if self._size:
            log.error("collector stopped with %d events it could not write", self._size)
        self.resolver.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if failures:
                # Back off from a failing database; a full buffer must not turn this into
                # a tight loop (requests get 503 meanwhile).
                self._stop.wait(min(MAX_BACKOFF_S, self.flush_s * 2**failures))
            else:
                self._wake.wait(self.flush_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                result = self.flush()
            except Exception:  # the thread must survive anything a flush can raise
                log.exception("collector flush failed")
                failures += 1
                continue
            failures = failures + 1 if result.failed else 0
            if time.monotonic() - self._last_purge >= PURGE_EVERY_S:
                self._last_purge = time.monotonic()
                try:
                    purge_ips(self.engine, now=self.clock())
                    purge_claims(self.engine, self.clock() - self.claims_window_us)
                except Exception:
                    log.exception("purging old IP addresses or claims failed")

    def flush(self) -> FlushResult:
        """Write everything buffered now; what fails stays buffered for the next flush."""
        result = FlushResult()
        with self._flush_lock:
            with self._lock:
                pending, rejects, counts = self._pending, self._rejects, self._counts
                self._pending, self._rejects, self._counts = {}, {}, {}
            for ws in sorted(set(pending) | set(rejects) | set(counts)):
                events = pending.get(ws, [])
                problems = rejects.get(ws, [])
                c = counts.get(ws) or Counts()
                for start in range(0, max(len(events), 1), self.batch):
                    chunk = events[start : start + self.batch]
                    # The rejects and counts go with the first chunk.
                    first = start == 0
                    try:
                        self._write(
                            ws, chunk, problems if first else [], c if first else Counts(), result
                        )
                    except Exception as exc:
                        rest = events[start:]
                        self._requeue(ws, rest, problems if first else [], c if first else None)
                        result.failed += len(rest) + (len(problems) if first else 0)
                        result.errors.append(f"workspace {ws}: {type(exc).__name__}: {exc}")
                        log.warning(
                            "collector: writing %d events of workspace %d failed (%s: %s); "
                            "they stay buffered",
                            len(rest), ws, type(exc).__name__, exc,
                        )  # fmt: skip
                        break
                    with self._lock:
                        self._size -= len(chunk) + (len(problems) if first else 0)
        return result

    def _requeue(
        self, ws: int, events: list[WebEvent], problems: list[Problem], counts: Counts | None
    ) -> None:
        with self._lock:
            if events:
                self._pending[ws] = events + self._pending.get(ws, [])
            if problems:
                self._rejects[ws] = problems + self._rejects.get(ws, [])
            if counts is not None:
                current = self._counts.get(ws)
                if current is None:
                    self._counts[ws] = counts
                else:
                    counts.add(current)
                    self._counts[ws] = counts

    def _write(
        self,
        ws: int,
        events: list[WebEvent],
        problems: list[Problem],
        counts: Counts,
        result: FlushResult,
    ) -> None:
        """One workspace's chunk in one transaction."""
        now = self.clock()
        if events:
            self.resolver.refresh(ws)
            if self._address_key is None:
                # Before the write transaction: making the secret is a write of its own.
                self._address_key = get_or_create_secret(self.engine, "collector-claims").encode()
        with write_tx(self.engine) as conn:
            # Serialises flushes of the workspace across processes (PostgreSQL), so the
            # message ids read below are still the stored ones at insert time.
            signals_repo.lock_signals(conn, ws)
            rules = SignalRules.of(source_config(conn, ws, SOURCE, default_settings(SOURCE)))
            fresh, duplicate = self._fresh(conn, ws, events)
            signals, backfilled, refused = self._resolve_and_store(conn, ws, fresh, rules, now)
            outcomes = store(conn, ws, signals) if signals else []
            created = sum(1 for o in outcomes if o == "created")
            # A new Counts: the given one goes back to the buffer if this transaction
            # fails, and its retry counts this chunk's refused claims again.
            skipped = Counter(counts.skipped)
            if refused:
                skipped["identity_limit"] += refused
            counts = Counts(
                read=counts.read,
                accepted=counts.accepted + len(fresh),
                duplicate=counts.duplicate + duplicate,
                rejected=counts.rejected,
                skipped=skipped,
            )
            if counts.read or counts.accepted or counts.duplicate or problems:
                day = datetime.fromtimestamp(now / US_PER_SECOND, tz=UTC).date().isoformat()
                run_id = collector_run(conn, ws, f"collector {day}", now)
                insert_rejects(conn, ws, run_id, problems)
                count_run(conn, ws, run_id, counts, now)
        result.written += len(fresh)
        COLLECTOR_WRITTEN.inc(len(fresh))
        result.duplicate += duplicate
        result.signals += created
        result.backfilled += backfilled

    @staticmethod
    def _fresh(conn: Connection, ws: int, events: list[WebEvent]) -> tuple[list[WebEvent], int]:
        """The events whose messageId is new to the workspace, and how many were not."""
        seen: set[str] = set()
        unique: list[WebEvent] = []
        for e in events:
            if e.message_id not in seen:
                seen.add(e.message_id)
                unique.append(e)
        stored = stored_message_ids(conn, ws, list(seen)) if seen else set()
        fresh = [e for e in unique if e.message_id not in stored]
        return fresh, len(events) - len(fresh)

    def _resolve_and_store(
        self, conn: Connection, ws: int, events: list[WebEvent], rules: SignalRules, now: int
    ) -> tuple[list[SignalIn], int, int]:
        """Resolve, insert the events, update identities, back-fill; returns the signals,
        how many of them were back-filled, and how many claims were over their bounds."""
        if not events:
            return [], 0, 0
        keys: set[str] = set()
        for e in events:
            e.match = None  # a retried chunk resolves afresh (and re-learns its identities)
            if e.anonymous_id:
                keys.add(e.anonymous_id)
            if e.user_id:
                keys.add("user:" + e.user_id)
            if e.group_id:
                keys.add("group:" + e.group_id)
            if e.previous_id:
                keys.update((e.previous_id, "user:" + e.previous_id))
        identities = load_identities(conn, ws, sorted(keys))
        changed: dict[str, Identity] = {}
        established: dict[str, Identity] = {}  # anonymous id -> its new group/email identity

        def remember(key: str, ident: Identity) -> None:
            old = identities.get(key)
            if ident[1] == "ip" and old is not None and old[1] != "ip":
                return  # group and email beat ip
            if old != ident:
                identities[key] = changed[key] = ident

        # Pass 1: group and identify evidence, so the pages of this flush resolve with it.
        own = [(e, m) for e in events if (m := self._own_match(e)) is not None]
        bounds = self._bound_claims(conn, ws, own, now)
        refused: set[int] = set()  # events whose claim was over a bound: left unresolved
        for e, m in own:
            if not bounds.allow(e, m.domain):
                refused.add(id(e))
                continue
            e.match = m
            ident: Identity = (m.domain, m.method, m.provider, m.confidence)
            if e.anonymous_id:
                remember(e.anonymous_id, ident)
                established[e.anonymous_id] = ident
            if e.user_id:
                remember("user:" + e.user_id, ident)
            if e.type == "group" and e.group_id:
                remember("group:" + e.group_id, ident)
        # Alias calls: the earlier id and the new user id share what either is known as.
        for e in events:
            if e.type == "alias" and e.previous_id and e.user_id:
                linked = self._alias(e.previous_id, e.user_id, identities, remember)
                if linked is not None:
                    e.match = Match(*linked)
                    if identities.get(e.previous_id) == linked:
                        established.setdefault(e.previous_id, linked)
        # Pass 2: everything else, in arrival order.
        for e in events:
            if e.match is None and id(e) not in refused:
                e.match = self._match(ws, e, identities, remember)
        keep_ip = rules.ip_retention_days > 0
        rows = []
        signals: list[SignalIn] = []
        for e in events:
            m = e.match
            rows.append(
                (
                    ws, new_id(), e.message_id, e.type, e.event, e.anonymous_id, e.user_id,
                    e.occurred_at, e.received_at, e.url, e.path, e.title, e.referrer,
                    e.ip if keep_ip else None,
                    m.domain if m else None, m.method if m else None,
                    m.provider if m else None, m.confidence if m else None,
                    e.doc,
                )
            )  # fmt: skip
            if m is not None:
                w, claimed = self._weighed(
                    ws, m, e.peer if e.ip_claimed else e.ip, ip_claimed=e.ip_claimed
                )
                s = signal_of(
                    rules, w, e.message_id, e.type, e.event, e.path, e.url, e.occurred_at,
                    claimed=claimed,
                )  # fmt: skip
                if s is not None:
                    signals.append(s)
        insert_web_events(conn, rows)
        save_identities(conn, ws, changed, now)
        save_claims(conn, ws, bounds.new, now)
        backfill = self._backfill(conn, ws, established, rules, now)
        return signals + backfill, len(backfill), len(refused)

    def _bound_claims(
        self, conn: Connection, ws: int, own: list[tuple[WebEvent, Match]], now: int
    ) -> ClaimBounds:
        """The claims of this chunk checked against each visitor's and address's bound."""
        of_event = {id(e): self._subjects(ws, e) for e, _ in own}  # an HMAC each: once
        subjects = sorted({s for pair in of_event.values() for s in pair})
        known = load_claims(conn, ws, subjects, now - self.claims_window_us)
        return ClaimBounds(
            known, self.claims_per_visitor, self.claims_per_address, lambda e: of_event[id(e)]
        )

    def _subjects(self, ws: int, e: WebEvent) -> tuple[str, ...]:
        """Who makes a claim: the visitor (`v:`) and the connection's address (`a:`)."""
        visitor = e.anonymous_id or ("user:" + e.user_id if e.user_id else None)
        out: tuple[str, ...] = ("v:" + visitor,) if visitor else ()
        if e.peer and self._address_key is not None:
            digest = hmac.new(
                self._address_key, f"{ws}:{e.peer}".encode(), hashlib.sha256
            ).hexdigest()
            out += ("a:" + digest[:40],)
        return out

    def _weighed(
        self, ws: int, m: Match, ip: str | None, *, ip_claimed: bool = False
    ) -> tuple[Match, bool]:
        """(the match, whether it rests on a claim alone): a claimed identity (or an IP
        match of a claimed `context.ip`), unless the event's evidenced address `ip`
        resolves to the same domain, loses confidence and signal_of gives it page-view
        weight at most."""
        if m.method not in CLAIMED and not (ip_claimed and m.method == "ip"):
            return m, False
        if m.provider == TRUSTED_PROVIDER:
            return m, False
        if ip:
            by_ip = self.resolver.lookup(ws, ip)
            if by_ip is not None and by_ip.domain == m.domain:
                return m, False
        return Match(m.domain, m.method, m.provider, m.confidence * CLAIMED_CONFIDENCE), True

    @staticmethod
    def _alias(
        previous: str,
        user: str,
        identities: dict[str, Identity],
        remember: Callable[[str, Identity], None],
    ) -> Identity | None:
        """Link `previous` (an anonymous or user id) and `user`: the first group or email
        identity among them goes to those without one; returns it."""
        keys = ("user:" + user, previous, "user:" + previous)
        known = [identities.get(k) for k in keys]
        ident = next((i for i in known if i is not None and i[1] != "ip"), None)
        if ident is None:
            return None
        for key, old in zip(keys, known, strict=True):
            if old is None or old[1] == "ip":
                remember(key, ident)
        return ident

    @staticmethod
    def _own_match(e: WebEvent) -> Match | None:
        m = match_group(e.group_traits) if e.type == "group" else None
        if m is None and e.email:
            m = match_email(e.email)
        if m is not None and e.trusted:
            # Kept with the identity, so the visitor's later events carry the trust too.
            return Match(m.domain, m.method, TRUSTED_PROVIDER, m.confidence)
        return m

    def _match(
        self,
        ws: int,
        e: WebEvent,
        identities: dict[str, Identity],
        remember: Callable[[str, Identity], None],
    ) -> Match | None:
        # (1) an identity a group or identify call gave this visitor, user or group
        for key in (
            e.anonymous_id,
            "user:" + e.user_id if e.user_id else None,
            "group:" + e.group_id if e.group_id else None,
        ):
            ident = identities.get(key) if key else None
            if ident is not None and ident[1] != "ip":
                return Match(ident[0], ident[1], ident[2], ident[3])
        # (2) the IP address (one the sender only claims is not learnt for the visitor)
        if e.ip:
            m = self.resolver.lookup(ws, e.ip)
            if m is not None:
                if e.anonymous_id and not e.ip_claimed:
                    remember(e.anonymous_id, (m.domain, "ip", m.provider, m.confidence))
                return m
        # (3) where this visitor's IP resolved before
        ident = identities.get(e.anonymous_id) if e.anonymous_id else None
        if ident is not None and ident[1] == "ip":
            return Match(ident[0], "anonymous_id", ident[2], ident[3] * ANONYMOUS_ID_DECAY)
        return None

    def _backfill(
        self,
        conn: Connection,
        ws: int,
        established: dict[str, Identity],
        rules: SignalRules,
        now: int,
    ) -> list[SignalIn]:
        """Resolve the earlier unresolved events of visitors that just got an identity."""
        if not established:
            return []
        rows = unresolved_events(conn, ws, sorted(established), now - BACKFILL_US)
        updates = []
        signals: list[SignalIn] = []
        for eid, message_id, etype, event, anonymous_id, occurred, path, url in rows:
            domain, method, provider, confidence = established[anonymous_id]
            updates.append((domain, method, provider, confidence, eid))
            m, claimed = self._weighed(ws, Match(domain, method, provider, confidence), None)
            s = signal_of(
                rules, m, message_id, etype, event, path, url, int(occurred), claimed=claimed
            )
            if s is not None:
                signals.append(s)
        resolve_stored(conn, ws, updates)
        return signals
