"""Delivering the outbox: claim due deliveries, send them concurrently, record each result.

At least once: a delivery is claimed with a lease (`locked_until`), sent, and only then
marked delivered. A dispatcher that dies between the two leaves a lease that runs out,
and the delivery goes again, carrying the same event id so receivers can deduplicate.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from sqlalchemy.engine import Connection, Engine

from intently.events.present import public as event_public
from intently.kit.db import read_tx, write_tx
from intently.kit.ids import new_id
from intently.kit.timefmt import format_ms, now_us
from intently.settings import Settings
from intently.webhooks import repository as repo
from intently.webhooks.repository import Claimed
from intently.webhooks.service import AttemptResult, make_client, send

log = logging.getLogger("intently.webhooks")

_encode = msgspec.json.Encoder().encode
LEASE_MARGIN_S = 30.0
IDLE_S = 0.5
RECORD_BATCH = 500


def backoff_s(settings: Settings, attempts: int) -> float:
    """Wait before try attempts+1: min(max, base * 2**(attempts-1)), less up to a quarter
    (jitter, so a receiver that comes back is not hit by every retry at once)."""
    delay = min(
        settings.webhook_backoff_max_s, settings.webhook_backoff_base_s * 2 ** max(0, attempts - 1)
    )
    return delay * (1 - random.random() * 0.25)


def lease_s(settings: Settings, batch: int) -> float:
    """How long a claim holds: every send of the batch may wait its turn and time out."""
    rounds = math.ceil(batch / settings.webhook_concurrency)
    return settings.webhook_timeout_s * rounds + LEASE_MARGIN_S


def claim(
    engine: Engine,
    settings: Settings,
    limit: int,
    workspace_id: int | None = None,
    skip: Collection[tuple[int, str]] = (),
) -> list[Claimed]:
    """Claim up to `limit` due deliveries, none of the webhooks in `skip`."""
    now = now_us()
    until = now + int(lease_s(settings, limit) * 1_000_000)
    with write_tx(engine) as conn:
        return repo.claim(conn, now, until, limit, workspace_id, skip)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One send's result, waiting to be recorded."""

    delivery: Claimed
    result: AttemptResult
    final: bool  # nothing left to try (the webhook or event is gone)
    done: Future[None]


class Sender:
    """A send pool, one pooled HTTP client, and a recorder thread that writes results in
    batches (one transaction for all the results that came in meanwhile).

    No webhook has more than `webhook_concurrency_per_webhook` sends in flight: a claimed
    delivery beyond that is given back at once, still due, and `busy()` names the
    webhooks at their cap so that the next claim passes over them. A receiver that does
    not answer so holds a few send slots until its deadline, never all of them.
    """

    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.client: httpx.Client = make_client(settings)
        self.pool = ThreadPoolExecutor(
            max_workers=settings.webhook_concurrency, thread_name_prefix="webhook-send"
        )
        self._results: queue.Queue[Outcome | None] = queue.Queue()
        self._sending: dict[tuple[int, str], int] = {}  # sends in flight per webhook
        self._sending_lock = threading.Lock()
        self._recorder = threading.Thread(
            target=self._record_loop, name="webhook-record", daemon=True
        )
        self._recorder.start()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self._results.put(None)
        self._recorder.join()
        self.client.close()

    def busy(self) -> set[tuple[int, str]]:
        """The webhooks (workspace, id) with as many sends in flight as they may have."""
        cap = self.settings.webhook_concurrency_per_webhook
        with self._sending_lock:
            return {key for key, n in self._sending.items() if n >= cap}

    def _take(self, claimed: list[Claimed]) -> list[Claimed]:
        """The deliveries that fit under their webhook's cap (counted as in flight); the
        others are given back."""
        cap = self.settings.webhook_concurrency_per_webhook
        take, give_back = [], []
        with self._sending_lock:
            for d in claimed:
                key = (d.workspace_id, d.webhook_id)
                n = self._sending.get(key, 0)
                if n < cap:
                    self._sending[key] = n + 1
                    take.append(d)
                else:
                    give_back.append(d)
        if give_back:
            with write_tx(self.engine) as conn:
                repo.release(conn, give_back)
        return take

    def _sent(self, d: Claimed) -> None:
        key = (d.workspace_id, d.webhook_id)
        with self._sending_lock:
            n = self._sending.pop(key, 1) - 1
            if n > 0:
                self._sending[key] = n

    def submit(self, claimed: list[Claimed]) -> list[Future[None]]:
        """Send each claimed delivery on the pool, those over their webhook's cap given back;
        each future ends once its result is recorded."""
        claimed = self._take(claimed)
        if not claimed:
            return []
        with read_tx(self.engine) as conn:
            events = repo.events_by_key(conn, {(d.workspace_id, d.event_id) for d in claimed})
            hooks = repo.webhooks_by_key(conn, {(d.workspace_id, d.webhook_id) for d in claimed})
        futures: list[Future[None]] = []
        for d in claimed:
            done: Future[None] = Future()
            event = events.get((d.workspace_id, d.event_id))
            hook = hooks.get((d.workspace_id, d.webhook_id))
            self.pool.submit(self._send, d, event, hook, done)
            futures.append(done)
        return futures

    def _send(
        self, d: Claimed, event: object | None, hook: dict[str, object] | None, done: Future[None]
    ) -> None:
        try:
            if hook is None or event is None:
                # The webhook was deleted (with its deliveries) or the event is gone:
                # nothing to send, and nothing to try again.
                what = "webhook" if hook is None else "event"
                result = AttemptResult(False, None, f"{what} no longer exists", 0)
            else:
                result = send(
                    self.client,
                    self.settings,
                    url=str(hook["url"]),
                    secret=str(hook["secret"]),
                    body=_encode(event_public(event)),
                    event_id=d.event_id,
                    webhook_id=d.webhook_id,
                    delivery_id=d.id,
                )
        except Exception as exc:  # a bug, not the receiver: the claim runs out, it goes again
            log.exception("webhook delivery %s failed to send", d.id)
            done.set_exception(exc)
            return
        finally:
            self._sent(d)
        self._results.put(Outcome(d, result, hook is None or event is None, done))

    def _record_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._results.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < RECORD_BATCH:
                try:
                    item = self._results.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                record(self.engine, self.settings, batch)
            except Exception as exc:  # the database is down: the claims run out, they go again
                log.exception("webhook dispatcher: recording %d results failed", len(batch))
                for o in batch:
                    o.done.set_exception(exc)
                continue
            for o in batch:
                o.done.set_result(None)


def record(engine: Engine, settings: Settings, outcomes: list[Outcome]) -> None:
    """Attempts, the deliveries' new states and the webhooks' bookkeeping, in one transaction.

    A result applies to its delivery only while the claim holds (no other dispatcher took
    the row after the lease ran out); the attempt is recorded either way, it happened."""
    now = now_us()
    attempts = []
    delivered = []
    for o in outcomes:
        d, r = o.delivery, o.result
        attempts.append(
            {
                "workspace_id": d.workspace_id,
                "id": new_id(),
                "delivery_id": d.id,
                "webhook_id": d.webhook_id,
                "attempt": d.attempts + 1,
                "at": now,
                "duration_ms": r.duration_ms,
                "status_code": r.status_code,
                "error": r.error,
            }
        )
        if r.ok:
            delivered.append(
                {
                    "w": d.workspace_id,
                    "i": d.id,
                    "token": d.token,
                    "n": d.attempts + 1,
                    "at": now,
                    "code": r.status_code,
                }
            )
    with write_tx(engine) as conn:
        hooks = repo.hooks_state(
            conn, {(o.delivery.workspace_id, o.delivery.webhook_id) for o in outcomes}
        )
        # A webhook deleted meanwhile took its deliveries and attempts with it.
        repo.add_attempts(
            conn, [a for a in attempts if (a["workspace_id"], a["webhook_id"]) in hooks]
        )
        repo.mark_delivered(conn, delivered)
        changed: dict[tuple[int, str], dict[str, object]] = {}
        for o in outcomes:
            key = (o.delivery.workspace_id, o.delivery.webhook_id)
            hook = hooks.get(key)
            if hook is None:
                continue
            if o.result.ok:
                hook.update(consecutive_failures=0, last_success_at=now)
                changed.setdefault(key, {}).update(consecutive_failures=0, last_success_at=now)
                continue
            if not _record_failure(conn, settings, o, hook, now):
                continue
            changes = changed.setdefault(key, {})
            changes.update(consecutive_failures=hook["consecutive_failures"], last_failure_at=now)
            if hook["status"] == "disabled" and "disabled_reason" in hook:
                changes.update(
                    status="disabled",
                    disabled_at=now,
                    updated_at=now,
                    disabled_reason=hook["disabled_reason"],
                )
        for (ws, wid), changes in changed.items():
            repo.update_webhook(conn, ws, wid, changes)


def _record_failure(
    conn: Connection, settings: Settings, o: Outcome, hook: dict[str, Any], now: int
) -> bool:
    """A failed attempt: back off, or fail the delivery when its tries are spent, and
    disable the webhook when it has had no success since that delivery first went.
    Updates `hook` in place; returns whether the result applied."""
    d, r = o.delivery, o.result
    attempt = d.attempts + 1
    exhausted = o.final or attempt >= settings.webhook_max_attempts
    values: dict[str, object] = {
        "attempts": attempt,
        "locked_until": None,
        "last_status_code": r.status_code,
        "last_error": r.error,
    }
    if exhausted:
        values["status"] = "failed"
    else:
        values["next_attempt_at"] = now + int(backoff_s(settings, attempt) * 1_000_000)
    if not repo.finish_delivery(conn, d, values):
        return False
    failures = int(hook["consecutive_failures"] or 0) + 1
    hook["consecutive_failures"] = failures
    if not exhausted or hook["status"] != "active":
        return True
    first = repo.first_attempt_at(conn, d.workspace_id, d.id) or now
    last_ok = hook["last_success_at"]
    if last_ok is not None and int(last_ok) >= first:
        return True
    since = "ever" if last_ok is None else f"since {format_ms(int(last_ok))}"
    hook["status"] = "disabled"
    hook["disabled_reason"] = (
        f"Disabled automatically at {format_ms(now)}: delivery {d.id} (event {d.event_id}) "
        f"failed all {attempt} tries from {format_ms(first)}, with no successful delivery "
        f"{since}; {failures} consecutive failed attempts. Last error: {r.error}. Fix the "
        "receiver, then set status to active to resume (waiting deliveries go then) and "
        "retry the failed delivery."
    )
    log.warning("webhook %s disabled: %s", d.webhook_id, r.error)
    return True


def deliver_due(
    engine: Engine,
    settings: Settings,
    *,
    limit: int | None = None,
    workspace_id: int | None = None,
    sender: Sender | None = None,
) -> int:
    """Claim up to `limit` due deliveries (of one workspace, or all), send them and record
    the results; returns how many were attempted (those over a webhook's cap wait for the
    next call)."""
    limit = limit or settings.webhook_concurrency * 2
    own = sender is None
    s = sender or Sender(engine, settings)
    try:
        claimed = claim(engine, settings, limit, workspace_id, s.busy())
        futures = s.submit(claimed)
        for f in futures:
            f.result()
        return len(futures)
    finally:
        if own:
            s.close()


class Dispatcher:
    """A thread that keeps the send pool busy with due deliveries until stopped."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        workspace_id: int | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ):
        self.engine = engine
        self.settings = settings
        self.workspace_id = workspace_id
        self._on_error = on_error
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._inflight = 0
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
        self.attempted = 0

    def start(self) -> Dispatcher:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming and wait for the sends in flight to be recorded."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)

    def _done(self, _f: Future[None]) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    def _run(self) -> None:
        n = self.settings.webhook_concurrency
        sender = Sender(self.engine, self.settings)
        try:
            while not self._stop.is_set():
                with self._cond:
                    # Refill once half the pool is free: fewer, larger claims.
                    while self._inflight > n // 2 and not self._stop.is_set():
                        self._cond.wait(IDLE_S)
                    free = n - self._inflight
                if self._stop.is_set():
                    break
                try:
                    busy = sender.busy()
                    claimed = claim(self.engine, self.settings, free, self.workspace_id, busy)
                    futures = sender.submit(claimed)
                except Exception as exc:  # the database is down: try again shortly
                    log.exception("webhook dispatcher: claiming failed")
                    if self._on_error is not None:
                        self._on_error(exc)
                    self._stop.wait(IDLE_S * 4)
                    continue
                with self._cond:
                    self._inflight += len(futures)
                self.attempted += len(futures)
                for f in futures:
                    f.add_done_callback(self._done)
                if len(futures) < len(claimed):
                    continue  # some webhooks reached their cap: claim again, passing them over
                if not futures:
                    self._stop.wait(IDLE_S)
        finally:
            sender.close()
