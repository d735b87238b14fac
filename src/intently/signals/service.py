"""The signals API's use cases: the generic push, an account's signals, sources and their
settings, ingest runs and rejects. The store itself (`store`, `IngestRun`) is
`signals/store.py`, which every importer shares.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from intently.accounts import repository as accounts_repo
from intently.catalog import BUILTIN_SOURCES, SIGNAL_TYPES
from intently.kit.db import read_tx, write_tx
from intently.kit.errors import BadRequest, Conflict, NotFound
from intently.kit.ids import check_aid, is_id
from intently.kit.pagination import Cursor, CursorCodec, page
from intently.kit.timefmt import format_ms, format_us, now_us, parse_iso8601
from intently.kit.validation import Strict, validate
from intently.signals import repository as repo
from intently.signals.schemas import SOURCE_SETTINGS, SignalsPush, default_settings
from intently.signals.store import (
    SignalIn,
    content_key,
    known_sources,
    read_source_config,
    reap_stopped_runs,
    source_config,
    store,
)

# ---- the API: generic push, an account's signals, sources, runs, rejects ------------------


def push_signals(engine: Engine, ws: int, body: SignalsPush) -> list[dict[str, Any]]:
    """POST /signals: per-item results; an unknown source or type fails only its item."""
    results: list[dict[str, Any]] = [{} for _ in body.signals]
    ok: list[tuple[int, SignalIn]] = []
    with write_tx(engine) as conn:
        sources = known_sources(conn, ws)
        for index, item in enumerate(body.signals):
            res: dict[str, Any] = {"index": index, "id": item.id, "domain": item.domain}
            results[index] = res
            types = SIGNAL_TYPES.get(item.source)
            if item.source not in sources:
                res |= {"status": "failed", "reason": f"Unknown source '{item.source}'"}
                continue
            if types is not None and item.type not in types:
                res |= {
                    "status": "failed",
                    "reason": f"Unknown type '{item.type}' for source '{item.source}' "
                    f"(one of {', '.join(types)})",
                }
                continue
            occurred = parse_iso8601(item.occurredAt)
            topic = (item.topic or "").strip()
            key = (
                "id:" + item.id
                if item.id
                else content_key(item.domain, item.type, topic, occurred, item.value)
            )
            ok.append(
                (
                    index,
                    SignalIn(
                        domain=item.domain,
                        source=item.source,
                        type=item.type,
                        occurred_at=occurred,
                        natural_key=key,
                        value=item.value,
                        topic=topic,
                        provider="api",
                        match_method="domain",
                        confidence=1.0,
                    ),
                )
            )
        outcomes = store(conn, ws, [s for _, s in ok])
    for (index, _), outcome in zip(ok, outcomes, strict=True):
        results[index]["status"] = outcome
    return results


def public_signal(row: tuple[Any, ...]) -> dict[str, Any]:
    sid, source, type_, topic, occurred, value, provider, method, confidence, _key, received = row
    return {
        "signalId": sid,
        "source": source,
        "type": type_,
        "topic": topic or None,
        "occurredAt": format_ms(occurred),
        "value": value,
        "provider": provider,
        "matchMethod": method,
        "confidence": confidence,
        "receivedAt": format_ms(received),
    }


def account_signals(
    engine: Engine,
    codec: CursorCodec,
    ws: int,
    aid: str,
    *,
    limit: int,
    cursor: str | None,
    source: str | None,
) -> dict[str, Any]:
    """GET /accounts/{rtp_aid}/signals: newest first, keyset-paginated."""
    check_aid(aid)
    with read_tx(engine) as conn:
        domain = accounts_repo.domain_of(conn, ws, aid)
        if domain is None:
            raise NotFound(f"Account '{aid}' not found")
        before: tuple[int, str] | None = None
        sync_us = now_us()
        if cursor is not None:
            c = codec.decode(cursor, "account-signals:" + aid, ws)
            occurred, _, sid = c.after.partition(":")
            before, sync_us = (int(occurred), sid), c.sync_us
            source = c.filters.get("source")
        rows = repo.signals_page(conn, ws, domain, before=before, limit=limit, source=source)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        filters = {"source": source} if source is not None else {}
        next_cursor = codec.encode(
            Cursor("account-signals:" + aid, ws, f"{last[4]}:{last[0]}", sync_us, filters)
        )
    return page([public_signal(r) for r in rows], next_cursor, format_us(sync_us))


def list_sources(engine: Engine, ws: int) -> list[dict[str, Any]]:
    with read_tx(engine) as conn:
        custom = repo.custom_source_names(conn, ws)
        out = [
            {
                "name": s,
                "builtin": True,
                "types": list(SIGNAL_TYPES[s]),
                "settings": source_config(conn, ws, s, default_settings(s)),
            }
            for s in BUILTIN_SOURCES
        ]
    return out + [{"name": s, "builtin": False, "types": None, "settings": None} for s in custom]


def register_source(engine: Engine, ws: int, name: str) -> tuple[dict[str, Any], bool]:
    if name in BUILTIN_SOURCES:
        raise Conflict(f"Source '{name}' is built in")
    with write_tx(engine) as conn:
        created = repo.add_custom_source(conn, ws, name, now_us())
    return {"name": name, "builtin": False, "types": None, "settings": None}, created


def _settings_model(source: str) -> type[Strict]:
    model = SOURCE_SETTINGS.get(source)
    if model is None:
        raise NotFound(f"Source '{source}' has no settings (one of {', '.join(SOURCE_SETTINGS)})")
    return model


def get_source_settings(engine: Engine, ws: int, source: str) -> dict[str, Any]:
    _settings_model(source)
    return read_source_config(engine, ws, source, default_settings(source))


def put_source_settings(
    engine: Engine, ws: int, source: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Replace the given settings (others keep their value); the whole result is validated."""
    model = _settings_model(source)
    with write_tx(engine) as conn:
        merged = source_config(conn, ws, source, default_settings(source)) | body
        checked = validate(model, merged).model_dump()
        repo.put_source_config(conn, ws, source, checked, now_us())
    return checked


def public_run(row: dict[str, Any]) -> dict[str, Any]:
    reasons = row["reasons"] or {}
    return {
        "runId": row["id"],
        "source": row["source"],
        "kind": row["kind"],
        "label": row["label"],
        "status": row["status"],
        "startedAt": format_ms(row["started_at"]),
        "finishedAt": format_ms(row["finished_at"]) if row["finished_at"] else None,
        "read": row["read"],
        "accepted": row["accepted"],
        "updated": row["updated"],
        "duplicate": row["duplicate"],
        "rejected": row["rejected"],
        "rejectedByReason": reasons.get("rejected", {}),
        "skipped": row["skipped"],
        "skippedByReason": reasons.get("skipped", {}),
        "error": row["error"],
    }


def list_runs(
    engine: Engine,
    codec: CursorCodec,
    ws: int,
    *,
    limit: int,
    cursor: str | None,
    source: str | None,
) -> dict[str, Any]:
    """Newest first."""
    before = None
    sync_us = now_us()
    if cursor is not None:
        c = codec.decode(cursor, "ingest-runs", ws)
        before, sync_us, source = c.after, c.sync_us, c.filters.get("source")
    reap_stopped_runs(engine, ws)
    with read_tx(engine) as conn:
        rows = repo.runs_page(conn, ws, before=before, limit=limit, source=source)
    more = len(rows) > limit
    rows = rows[:limit]
    filters = {"source": source} if source is not None else {}
    nxt = (
        codec.encode(Cursor("ingest-runs", ws, rows[-1]["id"], sync_us, filters)) if more else None
    )
    return page([public_run(r) for r in rows], nxt, format_us(sync_us))


def get_run(engine: Engine, ws: int, run_id: str) -> dict[str, Any]:
    if not is_id(run_id):
        raise BadRequest("Invalid runId format")
    reap_stopped_runs(engine, ws)
    with read_tx(engine) as conn:
        row = repo.get_run(conn, ws, run_id)
    if row is None:
        raise NotFound(f"Run '{run_id}' not found")
    return public_run(row)


def public_reject(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "rejectId": row["id"],
        "runId": row["run_id"],
        "source": row["source"],
        "line": row["line"],
        "reason": row["reason"],
        "detail": row["detail"],
        "record": row["record"],
        "ref": row["ref"],
        "status": row["status"],
        "createdAt": format_ms(row["created_at"]),
    }


REJECT_FILTERS = ("source", "reason", "runId", "status")


def list_rejects(
    engine: Engine,
    codec: CursorCodec,
    ws: int,
    *,
    limit: int,
    cursor: str | None,
    filters: dict[str, str | None],
) -> dict[str, Any]:
    """Oldest first; `status` defaults to `open` (`all` lists every status)."""
    after = None
    sync_us = now_us()
    if cursor is not None:
        c = codec.decode(cursor, "signal-rejects", ws)
        after, sync_us, filters = c.after, c.sync_us, c.filters
    status = filters.get("status") or "open"
    with read_tx(engine) as conn:
        rows = repo.rejects_page(
            conn,
            ws,
            after=after,
            limit=limit,
            source=filters.get("source"),
            reason=filters.get("reason"),
            run_id=filters.get("runId"),
            status=None if status == "all" else status,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    kept = {k: v for k, v in filters.items() if v is not None}
    nxt = (
        codec.encode(Cursor("signal-rejects", ws, rows[-1]["id"], sync_us, kept)) if more else None
    )
    return page([public_reject(r) for r in rows], nxt, format_us(sync_us))
