"""The skeleton every connector to an outside system stands on.

A connector (the Bombora, G2 and LinkedIn pullers; CRM syncs and destinations next) keeps
in its own module only what is its vendor's: URL paths, auth headers, paging parameters,
and how a record becomes a `SignalIn`. What they all do the same way lives here:

- `read_connection`: the connection's credentials, config and resume point, and
  `record_refusal` for a connection that cannot be used as it is set;
- `VendorApi`: one HTTP client with the retry policy of `http.py`, the credentials kept
  out of every message; `http_client` gives it the caller's client or one of its own on
  the guarded path (`kit/outbound.py`), so a base URL is checked at every connection;
- `windows`: the span from the resume point to now, cut into windows;
- `run_pull`: the ingest run and its report around a pull, the resume point moved after
  each stored window, and the outcome recorded on the connection.

The resume point moves only once what lies before it is committed, so a pull that stops
halfway reads some records again the next time (duplicates), never leaves a gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import httpx
from sqlalchemy.engine import Engine

from intently.ingest.connections import get_connection, save_state
from intently.ingest.files import FileFormatError
from intently.ingest.http import GaveUp, RetryPolicy
from intently.kit import outbound
from intently.kit.errors import BadRequest, IntentlyError
from intently.settings import Settings
from intently.signals.store import IngestRun, RunReport

T = TypeVar("T")

# What a pull's reading yields each time what it has read may be committed: the
# connection's new state (its resume point).
Checkpoints = Iterator[dict[str, Any]]


class ConnectorError(IntentlyError):
    """The outside system refused, kept failing, or answered something unusable.

    A pull ends on it with a failed report (and the error kept on the connection) rather
    than an exception: the next pull starts again from the resume point.
    """

    status = 502


# ---- the connection ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VendorConnection:
    """A connection as a connector reads it: credentials decrypted, config, resume point."""

    provider: str
    credentials: dict[str, Any]
    config: dict[str, Any]
    state: dict[str, Any]

    def credential(self, name: str) -> str:
        """A credential as text; '' when it is not set."""
        return str(self.credentials.get(name) or "")


def read_connection(engine: Engine, ws: int, provider: str, settings: Settings) -> VendorConnection:
    """The workspace's connection to `provider`; NotFound when there is none."""
    row = get_connection(engine, ws, provider, key=settings.credentials_key)
    return VendorConnection(
        provider=provider,
        credentials=dict(row["credentials"] or {}),
        config=dict(row["config"] or {}),
        state=dict(row["state"] or {}),
    )


@contextmanager
def record_refusal(engine: Engine, ws: int, provider: str) -> Iterator[None]:
    """Keep a BadRequest raised inside (the connection cannot be used as it is set) on the
    connection as a failed pull, then let it go on to the caller."""
    try:
        yield
    except BadRequest as exc:
        save_state(engine, ws, provider, state=None, status="failed", error=exc.custom_message)
        raise


# ---- the vendor's API ----------------------------------------------------------------------


# The longest one request to a vendor may take, from connecting to its answer's last byte
# (a report download included); a connector may ask for another.
DEADLINE_S = 600.0


@contextmanager
def http_client(
    client: httpx.Client | None,
    settings: Settings,
    timeout: httpx.Timeout | float,
    deadline_s: float = DEADLINE_S,
) -> Iterator[httpx.Client]:
    """The caller's client (tests pass one), or one of the connector's own on the guarded
    path (`kit/outbound.py`: each connection's address checked and pinned, so the
    credentials never go to an address the operator has not allowed), closed after."""
    if client is not None:
        yield client
        return
    policy = outbound.Policy.of(settings)
    with outbound.client(policy, deadline_s=deadline_s, timeout=timeout) as own:
        yield own


class VendorApi:
    """A vendor's HTTP API over one client: the retry policy, and the credentials kept out
    of every message.

    A subclass makes one try of a request in a function of its own (its auth, headers and
    messages are the vendor's), raising `http.Retryable` for what is worth another try,
    and runs it through `call`; `error` is the vendor's `ConnectorError`.
    """

    error: ClassVar[type[ConnectorError]] = ConnectorError

    def __init__(
        self,
        client: httpx.Client,
        retries: RetryPolicy,
        sleep: Callable[[float], None],
        secrets: Iterable[str],
        *,
        mask: str = "***",
        base_url: str = "",
        vendor_url: str = "",
    ) -> None:
        self.client, self.retries, self.sleep = client, retries, sleep
        # Longest first, so that no secret is left half-replaced inside another.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._mask = mask
        # The vendor's error sentences are shown only from the vendor's own host: from a
        # base URL elsewhere (an operator-allowed internal host, say) a body could be
        # another server's reply, and only its status is shown.
        host = urlsplit(base_url).hostname
        self._shows_answers = bool(host) and host == urlsplit(vendor_url).hostname

    def scrub(self, text: str) -> str:
        """`text` with every secret masked, in case a server or a library echoed one."""
        for secret in self._secrets:
            text = text.replace(secret, self._mask)
        return text

    def answer(self, text: str, limit: int) -> str:
        """Part of what the vendor answered, for a message: scrubbed, then cut to `limit`
        (so no secret survives in part); '' unless the base URL is on the vendor's host."""
        return self.scrub(text)[:limit] if self._shows_answers else ""

    def call(
        self,
        once: Callable[[], T],
        gave_up: Callable[[GaveUp], str],
        on_retry: Callable[[int, str, float], None] | None = None,
    ) -> T:
        """`once()` under the retry policy; when the tries stop, raises `error` with the
        sentence `gave_up` makes of it, scrubbed."""
        try:
            return self.retries.call(once, self.sleep, on_retry)
        except GaveUp as exc:
            raise self.error(self.scrub(gave_up(exc))) from None
        except outbound.TargetRefused as exc:  # not worth another try: refused before sending
            raise self.error(self.scrub(f"the connection's base_url is refused: {exc}")) from None


# ---- the pull -------------------------------------------------------------------------------


def windows(start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    """[start, stop) cut into consecutive half-open windows of at most `size`, oldest first."""
    while start < stop:
        end = min(stop, start + size)
        yield start, end
        start = end


def run_pull(
    engine: Engine,
    ws: int,
    provider: str,
    label: str,
    read: Callable[[IngestRun], Checkpoints],
    *,
    scrub: Callable[[str], str],
    keep_partial: bool = False,
    name_errors: bool = False,
) -> RunReport:
    """One pull: an ingest run (kind `pull`) around `read(run)`, and its outcome on the
    connection.

    `read` adds what it reads to the run and yields the connection's new state whenever
    what it read so far may be committed; the run's batch is written first, then the
    state saved, so the resume point never passes an unstored record. A `ConnectorError`
    or a `FileFormatError` ends the pull with a failed report: with `keep_partial`, what
    was read since the last checkpoint is written first; with `name_errors`, the report's
    error starts with the error's class name. Any other exception is recorded the same
    way and raised. Every message goes through `scrub`.
    """
    run = IngestRun(engine, ws, provider, "pull", label)
    try:
        for state in read(run):
            run.flush()
            save_state(engine, ws, provider, state=state, status="running")
    except (ConnectorError, FileFormatError) as exc:
        message = scrub(exc.custom_message)
        if keep_partial:
            run.flush()
        report = run.finish(error=f"{type(exc).__name__}: {message}" if name_errors else message)
        save_state(engine, ws, provider, state=None, status="failed", error=message)
        return report
    except BaseException as exc:
        message = scrub(f"{type(exc).__name__}: {exc}")
        run.finish(error=message)
        save_state(engine, ws, provider, state=None, status="failed", error=message)
        raise
    report = run.finish()
    save_state(engine, ws, provider, state=None, status="done")
    return report
