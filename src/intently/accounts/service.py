"""Accounts: bulk push with upsert, custom field updates, externalId mapping, listing."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from intently.accounts import repository as repo
from intently.accounts.present import items_json
from intently.accounts.schemas import AccountIn, AccountsPush, ExternalIdsPatch
from intently.catalog import (
    ACCOUNT_SCORE,
    ALL_SCORES,
    COMPUTED_FIT,
    FIT_SCORE,
    GRADE,
    PROFILE_COLUMNS,
    PROFILE_FIELDS,
)
from intently.custom_fields import definition as cf_definition
from intently.custom_fields import repository as cf_repo
from intently.events.repository import record as record_events
from intently.events.schemas import Event
from intently.fit.model import active_scorer
from intently.kit.db import read_clock, read_tx, tick, write_tx
from intently.kit.errors import BadRequest, NotFound
from intently.kit.ids import check_aid, new_id
from intently.kit.pagination import Cursor, CursorCodec, page
from intently.kit.timefmt import format_us, now_us
from intently.segments import definition as segments_definition
from intently.segments import repository as segments_repo

# ---- reading ---------------------------------------------------------------------------


def list_accounts(
    engine: Engine,
    codec: CursorCodec,
    ws: int,
    *,
    limit: int,
    cursor: str | None,
    last_sync_us: int | None,
    domains: list[str] | None,
) -> dict[str, Any]:
    """A page of E1. The walk's syncTimestamp is fixed on its first page (kit.db.tick)."""
    with read_tx(engine) as conn:
        if cursor is not None:
            c = codec.decode(cursor, "accounts", ws)
            after, sync_us = c.after, c.sync_us
            last_sync_us = c.filters.get("lastSync")
            domains = c.filters.get("domains")
        else:
            after, sync_us = "", read_clock(conn, ws)
        rows, more = repo.page(
            conn,
            ws,
            after=after,
            limit=limit,
            changed_after=last_sync_us,
            domains=domains,
            keys=cf_repo.active_keys(conn, ws),
        )
    next_cursor = None
    if more:
        filters: dict[str, Any] = {}
        if last_sync_us is not None:
            filters["lastSync"] = last_sync_us
        if domains is not None:
            filters["domains"] = domains
        next_cursor = codec.encode(Cursor("accounts", ws, rows[-1][0], sync_us, filters))
    return page(items_json(rows), next_cursor, format_us(sync_us))


def get_account(engine: Engine, ws: int, aid: str) -> msgspec.Raw:
    check_aid(aid)
    with read_tx(engine) as conn:
        item = repo.get_item(conn, ws, aid, cf_repo.active_keys(conn, ws))
    if item is None:
        raise NotFound(f"Account '{aid}' not found")
    return msgspec.Raw(item)


def missing_external_ids(engine: Engine, ws: int, limit: int) -> list[dict[str, Any]]:
    with read_tx(engine) as conn:
        return [
            {"name": r.name, "domain": r.domain} for r in repo.missing_external_ids(conn, ws, limit)
        ]


# ---- pushing (E2) ----------------------------------------------------------------------


class _Batch:
    """The in-memory state of one push, so repeats inside a request see earlier items."""

    def __init__(self, conn: Connection, ws: int, body: AccountsPush):
        self.ws = ws
        self.upsert = body.upsert
        self.defs = cf_definition.definitions(conn, ws)
        self.by_domain = repo.by_domains(conn, ws, (i.domain for i in body.accounts))
        self.ext_owner: dict[str, str] = {
            ext: domain
            for ext, (_aid, domain) in repo.by_external_ids(
                conn, ws, (i.externalId for i in body.accounts if i.externalId)
            ).items()
        }
        for row in self.by_domain.values():
            if row["external_id"]:
                self.ext_owner[row["external_id"]] = row["domain"]
        self.inserts: dict[str, dict[str, Any]] = {}
        self.updates: dict[str, dict[str, Any]] = {}

    def apply(self, index: int, acc: AccountIn, clock: int) -> dict[str, Any]:
        ext = acc.externalId if acc.externalId and acc.externalId.strip() else None
        result: dict[str, Any] = {
            "index": index,
            "externalId": ext,
            "domain": acc.domain,
            "rtp_aid": None,
            "status": "failed",
        }
        cur = self.by_domain.get(acc.domain)
        if cur is not None and not self.upsert:
            result["reason"] = f"Account with domain '{acc.domain}' already exists"
            return result
        if ext is not None:
            owner = self.ext_owner.get(ext)
            if owner is not None and owner != acc.domain:
                result["reason"] = f"externalId '{ext}' already belongs to account '{owner}'"
                return result
        if acc.customFields:
            problem = cf_definition.check_values(acc.customFields, self.defs)
            if problem:
                result["reason"] = problem
                return result
        row: dict[str, Any]
        if cur is None:
            row = {
                "workspace_id": self.ws,
                "id": new_id(),
                "domain": acc.domain,
                "name": acc.name.strip(),
                "external_id": ext,
                "linkedin_url": acc.linkedinUrl,
                "tags": list(acc.tags or []),
                "custom_fields": cf_definition.merge({}, acc.customFields or {}),
                **dict.fromkeys(ALL_SCORES, 0.0),
                "rtp_journey_stage": None,
                **dict.fromkeys(PROFILE_COLUMNS + COMPUTED_FIT, None),
                **_profile(acc),
                "rtp_last_account_date": None,
                "created_at": now_us(),
                "changed_at": clock,
            }
            self.inserts[row["id"]] = row
            self.by_domain[acc.domain] = row
            status = "created"
        else:
            new = {
                "name": acc.name.strip(),
                "external_id": ext if ext is not None else cur["external_id"],
                **_profile(acc),
                "linkedin_url": acc.linkedinUrl
                if acc.linkedinUrl is not None
                else cur["linkedin_url"],
                "tags": list(acc.tags) if acc.tags is not None else cur["tags"],
                "custom_fields": cf_definition.merge(
                    cur["custom_fields"] or {}, acc.customFields or {}
                ),
            }
            if any(cur[k] != v for k, v in new.items()):
                if cur["external_id"] and cur["external_id"] != new["external_id"]:
                    self.ext_owner.pop(cur["external_id"], None)
                cur.update(new)
                if cur["id"] not in self.inserts:
                    self.updates[cur["id"]] = cur
            row = cur
            status = "updated"
        if ext is not None:
            self.ext_owner[ext] = acc.domain
        result["rtp_aid"] = row["id"]
        result["status"] = status
        return result


def _grade_new(conn: Connection, ws: int, rows: list[dict[str, Any]]) -> None:
    """A new account's fit score and grade, so its first item already carries them (and a
    delta sync that read it then is never missing them). A changed profile is graded again
    by the next scoring run, as a change like any other."""
    if not rows:
        return
    fit = active_scorer(conn, ws, now_us())
    for row in rows:
        values = tuple(row[c] for c in fit.columns)
        row[FIT_SCORE], row[GRADE] = fit.fit_and_grade(values, row[ACCOUNT_SCORE])


def _profile(acc: AccountIn) -> dict[str, Any]:
    """The profile columns an item sets: the fields it sent (an upsert keeps the rest)."""
    sent = {column: getattr(acc, field) for field, column in PROFILE_FIELDS.items()}
    return {column: value for column, value in sent.items() if value is not None}


def created_event(row: dict[str, Any]) -> Event:
    return Event(
        "account.created",
        row["id"],
        None,
        {"domain": row["domain"], "name": row["name"], "externalId": row["external_id"]},
    )


def push_accounts(engine: Engine, ws: int, body: AccountsPush) -> list[dict[str, Any]]:
    """E2: create (or with upsert, update) accounts; one result per item, in order."""
    try:
        with write_tx(engine) as conn:
            return _push(conn, ws, body, per_item=False)
    except IntegrityError:
        # The database refused something the checks above let through (a concurrent
        # writer outside the workspace lock, or a constraint added by an operator).
        # Redo item by item, each in a savepoint, so each result says what happened.
        with write_tx(engine) as conn:
            return _push(conn, ws, body, per_item=True)


def _push(conn: Connection, ws: int, body: AccountsPush, *, per_item: bool) -> list[dict[str, Any]]:
    clock = tick(conn, ws)
    segment = None
    if body.segmentId is not None:
        segment = segments_definition.require_open_static(conn, ws, body.segmentId)
    batch = _Batch(conn, ws, body)
    results = [batch.apply(i, acc, clock) for i, acc in enumerate(body.accounts)]
    _grade_new(conn, ws, list(batch.inserts.values()))
    joined = [r["rtp_aid"] for r in results if r["status"] != "failed"]
    if not per_item:
        repo.insert_many(conn, list(batch.inserts.values()))
        record_events(conn, ws, [created_event(row) for row in batch.inserts.values()], seq=clock)
        repo.update_many(conn, ws, list(batch.updates.values()), clock)
        if segment is not None:
            segments_repo.add_members(conn, ws, segment, joined, clock)
        return results
    for r in results:
        if r["status"] == "failed":
            continue
        aid = r["rtp_aid"]
        try:
            with conn.begin_nested():
                if aid in batch.inserts:
                    row = batch.inserts.pop(aid)
                    repo.insert_many(conn, [row])
                    record_events(conn, ws, [created_event(row)], seq=clock)
                elif aid in batch.updates:
                    repo.update_many(conn, ws, [batch.updates.pop(aid)], clock)
                if segment is not None:
                    segments_repo.add_members(conn, ws, segment, [aid], clock)
        except IntegrityError:
            r.update(
                status="failed",
                rtp_aid=None,
                reason=f"Account with domain '{r['domain']}' could not be saved: "
                "the database refused it",
            )
    return results


# ---- custom field values (E3) ----------------------------------------------------------


def update_custom_fields(
    engine: Engine, ws: int, ident: str, values: dict[str, Any], *, by_external_id: bool
) -> None:
    if not by_external_id:
        check_aid(ident)
    with write_tx(engine) as conn:
        clock = tick(conn, ws)  # first: two updates of one account must not interleave
        found = (
            repo.get_by_external_id(conn, ws, ident)
            if by_external_id
            else repo.get_custom_fields(conn, ws, ident)
        )
        if found is None:
            raise NotFound(f"Account '{ident}' not found")
        problem = cf_definition.check_values(values, cf_definition.definitions(conn, ws))
        if problem:
            raise BadRequest(problem)
        merged = cf_definition.merge(found["custom_fields"] or {}, values)
        if merged != (found["custom_fields"] or {}):
            repo.set_custom_fields(conn, ws, found["id"], merged, clock)


# ---- externalId mappings (E5) ----------------------------------------------------------


def map_external_ids(
    engine: Engine, ws: int, body: ExternalIdsPatch, raw_domains: list[str]
) -> dict[str, Any]:
    """E5. `raw_domains` are the domains as sent, for `notFound`."""
    # Normalised domain -> externalId, ordered by each domain's last mapping (it wins).
    final: dict[str, str] = {}
    for m in body.mappings:
        final.pop(m.domain, None)
        final[m.domain] = m.externalId
    with write_tx(engine) as conn:
        clock = tick(conn, ws)
        found = repo.by_domains(conn, ws, final.keys())
        holders = repo.by_external_ids(conn, ws, final.values())
        not_found = [d for d in final if d not in found]
        # Desired externalId per account: the mapped ones, and holders losing theirs.
        want: dict[str, str | None] = {}
        current: dict[str, str | None] = {row["id"]: row["external_id"] for row in found.values()}
        for domain, ext in final.items():
            if domain in found:
                want[found[domain]["id"]] = ext
        for ext, (aid, _domain) in holders.items():
            current.setdefault(aid, ext)
            # It holds an id that a mapped account takes over (unless mapped itself).
            taken = any(v == ext for k, v in want.items() if k != aid)
            if taken and want.get(aid) != ext:
                want.setdefault(aid, None)
        # An externalId wanted by two accounts goes to the one mapped last.
        owner: dict[str, str] = {}
        for holder, value in want.items():
            if value is not None:
                owner[value] = holder
        for holder, value in list(want.items()):
            if value is not None and owner[value] != holder:
                want[holder] = None
        changes = {aid: ext for aid, ext in want.items() if current.get(aid) != ext}
        repo.set_external_ids(conn, ws, [(aid, None) for aid in changes], clock)
        repo.set_external_ids(
            conn, ws, [(aid, ext) for aid, ext in changes.items() if ext is not None], clock
        )
    mapped_ids = {found[d]["id"] for d in final if d in found}
    updated = sum(1 for aid in mapped_ids if aid in changes and changes[aid] is not None)
    return {
        "matched": len(mapped_ids),
        "updated": updated,
        "notFound": _as_sent(body, raw_domains, not_found),
    }


def _as_sent(body: ExternalIdsPatch, raw_domains: list[str], normalised: list[str]) -> list[str]:
    missing = set(normalised)
    out: list[str] = []
    seen: set[str] = set()
    for raw, m in zip(raw_domains, body.mappings, strict=True):
        if m.domain in missing and m.domain not in seen:
            seen.add(m.domain)
            out.append(raw)
    return out
