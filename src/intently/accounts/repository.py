"""Queries for accounts. Set-based: every bulk path is one statement for all its rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from intently.accounts.tables import accounts as a
from intently.catalog import FIT_SCORE, GRADE, PROFILE_COLUMNS, PROFILE_FIELDS, SCORE_COLUMNS
from intently.kit.db import fetch_all, in_values, iter_rows, json_param, json_value, param_marker
from intently.kit.pagination import PAGE_BYTES
from intently.segments.tables import segment_members as sm

# The fields both databases render the same way, as JSON object arguments.
_PLAIN_FIELDS = (
    "  'externalId', external_id, 'name', name, 'domain', domain, 'rtp_aid', id,\n"
    "  'rtp_account_score', rtp_account_score, 'rtp_journey_stage', rtp_journey_stage,\n"
    + "".join(f"  '{c}', {c},\n" for c in SCORE_COLUMNS.values())
)

# The company profile and ICP fit (extension fields, null where unset), after Recotap's.
_EXTENSION_FIELDS = "".join(
    f",\n  '{name}', {column}"
    for name, column in (*PROFILE_FIELDS.items(), (FIT_SCORE, FIT_SCORE), (GRADE, GRADE))
    if name != "shortName"
)

# An account item (E1) rendered by the database as JSON text, so a page of 100 costs the
# server one fetch and no per-field Python. One bound parameter: the active custom field
# keys (a JSON array on SQLite, a text array on PostgreSQL), in their display order.
_ITEM_JSON_SQLITE = """json_object(
PLAIN_FIELDS  'rtp_last_account_date', CASE WHEN rtp_last_account_date IS NULL THEN NULL ELSE
    strftime('%Y-%m-%dT%H:%M:%S', rtp_last_account_date / 1000000, 'unixepoch')
    || '.' || printf('%03d', (rtp_last_account_date / 1000) % 1000) || 'Z' END,
  'customFields', CUSTOM_FIELDS,
  'segments', json((SELECT json_group_array(json(s)) FROM (
    SELECT json_object('segmentId', sg.id, 'name', sg.name) AS s
    FROM segment_members sm JOIN segments sg
      ON sg.workspace_id = sm.workspace_id AND sg.id = sm.segment_id
    WHERE sm.workspace_id = accounts.workspace_id AND sm.account_id = accounts.id
      AND sg.status = 'active' ORDER BY sg.id))),
  'shortName', short_name, 'linkedinUrl', linkedin_url, 'tags', json(tags)EXTENSION_FIELDS)"""

_ITEM_JSON_POSTGRES = """json_build_object(
PLAIN_FIELDS  'rtp_last_account_date', CASE WHEN rtp_last_account_date IS NULL THEN NULL ELSE
    to_char(to_timestamp(rtp_last_account_date / 1000000) AT TIME ZONE 'UTC',
            'YYYY-MM-DD"T"HH24:MI:SS')
    || '.' || lpad(((rtp_last_account_date / 1000) %% 1000)::text, 3, '0') || 'Z' END,
  'customFields', CUSTOM_FIELDS,
  'segments', (SELECT coalesce(json_agg(json_build_object('segmentId', sg.id, 'name', sg.name)
      ORDER BY sg.id), '[]'::json)
    FROM segment_members sm JOIN segments sg
      ON sg.workspace_id = sm.workspace_id AND sg.id = sm.segment_id
    WHERE sm.workspace_id = accounts.workspace_id AND sm.account_id = accounts.id
      AND sg.status = 'active'),
  'shortName', short_name, 'linkedinUrl', linkedin_url, 'tags', tagsEXTENSION_FIELDS)::text"""


# customFields: every active key in order, null where unset. A workspace without custom
# fields gets a constant instead of a subquery per row (a sixth of a page's cost).
_CUSTOM_FIELDS_SQLITE = """json((SELECT json_group_object(k.value,
      (SELECT value FROM json_each(accounts.custom_fields) WHERE key = k.value))
    FROM json_each(?) k))"""
_CUSTOM_FIELDS_POSTGRES = """(SELECT coalesce(json_object_agg(k.key,
      accounts.custom_fields -> k.key ORDER BY k.n), '{}'::json)
    FROM unnest(%s::text[]) WITH ORDINALITY AS k(key, n))"""


def _item_sql(template: str, custom_fields: str) -> str:
    return (
        template.replace("PLAIN_FIELDS", _PLAIN_FIELDS)
        .replace("CUSTOM_FIELDS", custom_fields)
        .replace("EXTENSION_FIELDS", _EXTENSION_FIELDS)
    )


_ITEMS: dict[str, tuple[str, str, Callable[[list[str]], Any]]] = {
    # dialect: (item with keys, item without keys, keys as a parameter)
    "sqlite": (
        _item_sql(_ITEM_JSON_SQLITE, _CUSTOM_FIELDS_SQLITE),
        _item_sql(_ITEM_JSON_SQLITE, "json(?)"),
        json_param,
    ),
    "postgresql": (
        _item_sql(_ITEM_JSON_POSTGRES, _CUSTOM_FIELDS_POSTGRES),
        _item_sql(_ITEM_JSON_POSTGRES, "%s::json"),
        list,
    ),
}


def _item_json(conn: Connection, keys: list[str]) -> tuple[str, Any]:
    """The item expression and its one parameter, for these active custom field keys."""
    with_keys, without_keys, as_param = _ITEMS[conn.dialect.name]
    if not keys:
        return without_keys, "{}"
    return with_keys, as_param(keys)


# Columns an upsert may change.
WRITABLE = ("name", "external_id", "linkedin_url", "tags", "custom_fields", *PROFILE_COLUMNS)


def by_domains(conn: Connection, ws: int, domains: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = list(set(domains))
    if not wanted:
        return {}
    cond, params = in_values(conn, "domain", wanted)
    m = param_marker(conn)
    names = ("id", "domain", *WRITABLE)
    rows = fetch_all(
        conn,
        f"SELECT {', '.join(names)} FROM accounts WHERE workspace_id = {m} AND {cond}",
        (ws, *params),
    )
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        r = dict(zip(names, row, strict=True))
        r["tags"] = json_value(r["tags"])
        r["custom_fields"] = json_value(r["custom_fields"])
        out[r["domain"]] = r
    return out


def by_external_ids(
    conn: Connection, ws: int, ext_ids: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """externalId -> (rtp_aid, domain) of the accounts that hold them."""
    wanted = list(set(ext_ids))
    if not wanted:
        return {}
    cond, params = in_values(conn, "external_id", wanted)
    m = param_marker(conn)
    sql = f"SELECT external_id, id, domain FROM accounts WHERE workspace_id = {m} AND {cond}"
    return {r[0]: (r[1], r[2]) for r in fetch_all(conn, sql, (ws, *params))}


# The bulk paths below are the API's hottest writes; they skip SQLAlchemy's per-row
# parameter processing and hand the driver plain tuples (JSON pre-encoded).
# A new account has no scores yet, so no model version either (it stays NULL).
_INSERT_COLUMNS = tuple(c.name for c in a.columns if c.name != "score_model_version")
_JSON_COLUMNS = frozenset({"tags", "custom_fields"})


def insert_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert full account rows (dicts with every column)."""
    if not rows:
        return
    m = param_marker(conn)
    sql = (
        f"INSERT INTO accounts ({', '.join(_INSERT_COLUMNS)}) "
        f"VALUES ({', '.join([m] * len(_INSERT_COLUMNS))})"
    )
    conn.exec_driver_sql(
        sql,
        [
            tuple(json_param(r[c]) if c in _JSON_COLUMNS else r[c] for c in _INSERT_COLUMNS)
            for r in rows
        ],
    )


def update_many(conn: Connection, ws: int, rows: list[dict[str, Any]], clock: int) -> None:
    """Write the WRITABLE fields of each row (a dict with `id` and those fields)."""
    if not rows:
        return
    m = param_marker(conn)
    sets = ", ".join(f"{c} = {m}" for c in (*WRITABLE, "changed_at"))
    sql = f"UPDATE accounts SET {sets} WHERE workspace_id = {m} AND id = {m}"
    conn.exec_driver_sql(
        sql,
        [
            (
                *(json_param(r[c]) if c in _JSON_COLUMNS else r[c] for c in WRITABLE),
                clock,
                ws,
                r["id"],
            )
            for r in rows
        ],
    )


# The profile columns' types, for the arrays PostgreSQL unnests in set_profiles.
_PG_TYPES = {"employee_count": "bigint", "annual_revenue": "double precision"}


def set_profiles(
    conn: Connection,
    ws: int,
    columns: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    clock: int,
    *,
    only_unset: bool,
) -> list[str]:
    """Write profile `columns` of the accounts with these domains; the domains changed.

    `rows` are (domain, *values), domains normalised and distinct; a None value leaves
    the column as it is. `only_unset`: fill a column only where it is still NULL (a
    vendor file never overrides what a CRM or the API said). One statement for all rows.
    """
    if not rows:
        return []
    assert set(columns) <= set(PROFILE_COLUMNS)
    if only_unset:
        sets = [f"{c} = COALESCE(accounts.{c}, v.{c})" for c in columns]
        differs = [f"(accounts.{c} IS NULL AND v.{c} IS NOT NULL)" for c in columns]
    else:
        sets = [f"{c} = COALESCE(v.{c}, accounts.{c})" for c in columns]
        distinct = "IS NOT" if conn.dialect.name == "sqlite" else "IS DISTINCT FROM"
        differs = [f"(v.{c} IS NOT NULL AND accounts.{c} {distinct} v.{c})" for c in columns]
    m = param_marker(conn)
    params: tuple[Any, ...]
    if conn.dialect.name == "sqlite":
        # One JSON array of rows: no limit on bound variables, and values keep their types.
        picks = ", ".join(f"json_extract(value, '$[{i}]') AS {c}" for i, c in enumerate(columns, 1))
        source = f"(SELECT json_extract(value, '$[0]') AS domain, {picks} FROM json_each({m})) v"
        params = (json_param([list(r) for r in rows]),)
    else:
        arrays = ", ".join(f"{m}::{_PG_TYPES.get(c, 'text')}[]" for c in columns)
        source = f"unnest({m}::text[], {arrays}) AS v(domain, {', '.join(columns)})"
        params = tuple([r[i] for r in rows] for i in range(len(columns) + 1))
    sql = (
        f"UPDATE accounts SET {', '.join(sets)}, changed_at = {m} FROM {source} "
        f"WHERE accounts.workspace_id = {m} AND accounts.domain = v.domain "
        f"AND ({' OR '.join(differs)}) RETURNING accounts.domain"
    )
    return [r[0] for r in fetch_all(conn, sql, (clock, *params, ws))]


def set_external_ids(
    conn: Connection, ws: int, pairs: list[tuple[str, str | None]], clock: int
) -> None:
    """Set external_id per (rtp_aid, value); callers clear before they set, for uniqueness."""
    if not pairs:
        return
    conn.execute(
        update(a)
        .where(a.c.workspace_id == bindparam("ws"), a.c.id == bindparam("aid"))
        .values(external_id=bindparam("ext"), changed_at=bindparam("clock")),
        [{"ws": ws, "aid": aid, "ext": ext, "clock": clock} for aid, ext in pairs],
    )


def touch(conn: Connection, ws: int, ids: Iterable[str], clock: int) -> None:
    """Mark accounts changed (their returned data changed through another table)."""
    params = [{"ws": ws, "aid": aid, "clock": clock} for aid in set(ids)]
    if params:
        conn.execute(
            update(a)
            .where(a.c.workspace_id == bindparam("ws"), a.c.id == bindparam("aid"))
            .values(changed_at=bindparam("clock")),
            params,
        )


def touch_segment_members(conn: Connection, ws: int, segment_id: str, clock: int) -> None:
    members = select(sm.c.account_id).where(sm.c.workspace_id == ws, sm.c.segment_id == segment_id)
    conn.execute(
        update(a).where(a.c.workspace_id == ws, a.c.id.in_(members)).values(changed_at=clock)
    )


def touch_with_custom_field(conn: Connection, ws: int, key: str, clock: int) -> None:
    """Mark changed every account holding a value for custom field `key`."""
    m = param_marker(conn)
    if conn.dialect.name == "sqlite":
        has_key = f"EXISTS (SELECT 1 FROM json_each(accounts.custom_fields) WHERE key = {m})"
    else:
        has_key = f"jsonb_exists(custom_fields, {m})"
    conn.exec_driver_sql(
        f"UPDATE accounts SET changed_at = {m} WHERE workspace_id = {m} AND {has_key}",
        (clock, ws, key),
    )


def get_item(conn: Connection, ws: int, aid: str, keys: list[str]) -> str | None:
    """One account as its E1 JSON item, or None."""
    m = param_marker(conn)
    item, keys_param = _item_json(conn, keys)
    sql = f"SELECT {item} FROM accounts WHERE workspace_id = {m} AND id = {m}"
    rows = fetch_all(conn, sql, (keys_param, ws, aid))
    return str(rows[0][0]) if rows else None


def get_by_external_id(conn: Connection, ws: int, ext: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(a.c.id, a.c.custom_fields).where(a.c.workspace_id == ws, a.c.external_id == ext)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def get_custom_fields(conn: Connection, ws: int, aid: str) -> dict[str, Any] | None:
    row = (
        conn.execute(select(a.c.id, a.c.custom_fields).where(a.c.workspace_id == ws, a.c.id == aid))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def set_custom_fields(
    conn: Connection, ws: int, aid: str, values: dict[str, Any], clock: int
) -> None:
    conn.execute(
        update(a)
        .where(a.c.workspace_id == ws, a.c.id == aid)
        .values(custom_fields=values, changed_at=clock)
    )


def page(
    conn: Connection,
    ws: int,
    *,
    after: str,
    limit: int,
    changed_after: int | None = None,
    domains: list[str] | None = None,
    segment_id: str | None = None,
    ids: list[str] | None = None,
    keys: list[str],
    budget: int = PAGE_BYTES,
) -> tuple[list[tuple[str, str]], bool]:
    """One keyset page of (rtp_aid, E1 JSON item) in rtp_aid order, and whether more follow.

    The page ends early once its items reach `budget` characters (custom fields can make
    one account megabytes); it always holds at least one. Hand-written SQL through the
    driver: this is the API's hottest read.
    """
    m = param_marker(conn)
    where = [f"workspace_id = {m}", f"id > {m}"]
    params: list[Any] = [ws, after]
    if changed_after is not None:
        where.append(f"changed_at > {m}")
        params.append(changed_after)
    if domains is not None:
        cond, values = in_values(conn, "domain", domains)
        where.append(cond)
        params.extend(values)
    if segment_id is not None:
        where.append(
            f"id IN (SELECT account_id FROM segment_members "
            f"WHERE workspace_id = {m} AND segment_id = {m})"
        )
        params.extend((ws, segment_id))
    if ids is not None:
        cond, values = in_values(conn, "id", ids)
        where.append(cond)
        params.extend(values)
    item, keys_param = _item_json(conn, keys)
    sql = (
        f"SELECT id, {item} FROM accounts WHERE {' AND '.join(where)} "
        f"ORDER BY id LIMIT {int(limit) + 1}"
    )
    rows: list[tuple[str, str]] = []
    size = 0
    more = False
    for aid, item in iter_rows(conn, sql, (keys_param, *params)):
        if len(rows) == limit:
            # The query's last row (limit + 1 are asked for) tells that more follow; it
            # is read to the end, as stopping a query early costs PostgreSQL a cancel.
            more = True
        elif size >= budget:
            more = True
            break  # the rest of the rows are never read
        else:
            rows.append((aid, item))
            size += len(item)
    return rows, more


def missing_external_ids(conn: Connection, ws: int, limit: int) -> list[Any]:
    return list(
        conn.execute(
            select(a.c.name, a.c.domain)
            .where(a.c.workspace_id == ws, a.c.external_id.is_(None))
            .order_by(a.c.id)
            .limit(limit)
        )
    )


def ids_by_domains(conn: Connection, ws: int, domains: Iterable[str]) -> dict[str, str]:
    wanted = list(set(domains))
    if not wanted:
        return {}
    rows = conn.execute(
        select(a.c.domain, a.c.id).where(a.c.workspace_id == ws, a.c.domain.in_(wanted))
    )
    return {r[0]: r[1] for r in rows}


def existing_ids(conn: Connection, ws: int, ids: Iterable[str]) -> set[str]:
    wanted = list(set(ids))
    if not wanted:
        return set()
    return set(
        conn.execute(select(a.c.id).where(a.c.workspace_id == ws, a.c.id.in_(wanted))).scalars()
    )


def domain_of(conn: Connection, ws: int, aid: str) -> str | None:
    m = param_marker(conn)
    rows = fetch_all(
        conn, f"SELECT domain FROM accounts WHERE workspace_id = {m} AND id = {m}", (ws, aid)
    )
    return rows[0][0] if rows else None
