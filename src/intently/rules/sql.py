"""A rule compiled to one boolean SQL expression over `accounts` (SQLite and PostgreSQL).

Every positive leaf compiles to an expression that is true or false, never NULL (missing
values are false), so a negative operator and `not` are a plain SQL NOT, as in memory.
Signals, deals and activities are correlated subqueries on the account's domain.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date
from typing import Any

from sqlalchemy import (
    Boolean,
    Double,
    Integer,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    type_coerce,
    union,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Text

from intently.accounts.tables import accounts as a
from intently.activities.tables import activities as act
from intently.deals.tables import deal_accounts as da
from intently.deals.tables import deals as d
from intently.kit.timefmt import US_PER_DAY
from intently.rules.terms import (
    BUILTIN_FIELDS,
    COMPARE,
    NEGATIVE,
    Context,
    DealStageMap,
    ascii_lower,
    date_text,
    day_of_date,
)
from intently.rules.tree import (
    ActivityLeaf,
    All,
    AnyOf,
    DealLeaf,
    FieldLeaf,
    Not,
    NumCmp,
    Rule,
    SignalLeaf,
    SurgeLeaf,
)
from intently.signals.tables import signal_daily as sd

_SQLITE_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*"
_PG_DATE_RE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Strings every JSON encoder writes unescaped: printable ASCII but the quote, the
# backslash and the slash (which some encoders escape).
_PLAIN_JSON = re.compile(r"[ !#-.0-\[\]-~]+")
_ID_CHUNK = 5000
_PREFILTER_UP_TO = 20


def compile_rule(rule: Rule, ws: int, ctx: Context, dialect_name: str) -> ColumnElement[bool]:
    """A boolean expression over `accounts` that holds exactly when `evaluate` does."""
    return _Compiler(ws, ctx, dialect_name == "postgresql").rule(rule)


def matching_ids(
    conn: Connection,
    ws: int,
    rule: Rule,
    ctx: Context,
    *,
    account_ids: Collection[str] | None = None,
) -> set[str]:
    """Ids of the workspace's accounts the rule holds for (among `account_ids` if given)."""
    cond = compile_rule(rule, ws, ctx, conn.dialect.name)
    base = select(a.c.id).where(a.c.workspace_id == ws, cond)
    if account_ids is None:
        return set(conn.execute(base).scalars())
    ids = list(dict.fromkeys(account_ids))
    out: set[str] = set()
    # A long IN list is split only to stay under the drivers' parameter limits.
    for i in range(0, len(ids), _ID_CHUNK):
        out.update(conn.execute(base.where(a.c.id.in_(ids[i : i + _ID_CHUNK]))).scalars())
    return out


def _safe(expr: ColumnElement[Any]) -> ColumnElement[bool]:
    """NULL (a missing value) reads as false."""
    return func.coalesce(expr, false(), type_=Boolean)


def num_sql(expr: ColumnElement[Any], c: NumCmp) -> ColumnElement[bool]:
    v = c.value
    if c.op == "between":
        return and_(expr >= v[0], expr <= v[1])
    result: ColumnElement[bool] = COMPARE[c.op](expr, v)
    return result


def _day(text: str) -> int:
    return day_of_date(date.fromisoformat(text))


class _Compiler:
    def __init__(self, ws: int, ctx: Context, pg: bool):
        self.ws, self.ctx, self.pg = ws, ctx, pg

    def rule(self, rule: Rule) -> ColumnElement[bool]:
        if isinstance(rule, All):
            return and_(true(), *(self.rule(r) for r in rule.items))
        if isinstance(rule, AnyOf):
            return or_(false(), *(self.rule(r) for r in rule.items))
        if isinstance(rule, Not):
            return not_(self.rule(rule.item))
        if isinstance(rule, FieldLeaf):
            if rule.op in NEGATIVE:
                positive = FieldLeaf(rule.field, NEGATIVE[rule.op], rule.value, rule.kind)
                return not_(self.rule(positive))
            return _safe(self.field(rule))
        if isinstance(rule, SignalLeaf):
            return _safe(num_sql(self.signal_sum(rule), rule.cmp))
        if isinstance(rule, SurgeLeaf):
            return self.surge(rule)
        if isinstance(rule, DealLeaf):
            return num_sql(self.deal_count(rule), rule.cmp)
        assert isinstance(rule, ActivityLeaf)
        return num_sql(self.activity_count(rule), rule.cmp)

    # -- text helpers that agree with Python's str operations ------------------------------

    def position(self, hay: ColumnElement[Any], needle: str) -> ColumnElement[Any]:
        return func.strpos(hay, needle) if self.pg else func.instr(hay, needle)

    def text_op(self, x: ColumnElement[Any], op: str, want: Any) -> ColumnElement[bool]:
        if op == "eq":
            return x == want
        if op == "in":
            return x.in_(list(want))
        if op == "contains":
            return self.position(x, want) > 0
        assert op == "starts_with", op
        return self.position(x, want) == 1

    def ordered_op(self, x: ColumnElement[Any], op: str, want: Any) -> ColumnElement[bool]:
        if op == "in":
            return x.in_(list(want))
        if op == "between":
            return and_(x >= want[0], x <= want[1])
        result: ColumnElement[bool] = COMPARE[op](x, want)
        return result

    def date_text_op(self, x: ColumnElement[Any], leaf: FieldLeaf) -> ColumnElement[bool]:
        if leaf.op == "within_days":
            day = self.ctx.as_of_day
            return and_(x >= date_text(day - leaf.value + 1), x <= date_text(day))
        return self.ordered_op(x, leaf.op, leaf.value)

    # -- fields --------------------------------------------------------------------------

    def field(self, leaf: FieldLeaf) -> ColumnElement[bool]:
        key = leaf.custom_key
        if key is not None:
            return self.custom(leaf, key)
        col = a.c[BUILTIN_FIELDS[leaf.field][0]]
        op, want = leaf.op, leaf.value
        if leaf.kind == "multi":  # tags: always an array of strings
            if op == "exists":
                length = func.jsonb_array_length if self.pg else func.json_array_length
                return length(col) > 0
            wants = [want] if op == "contains" else list(want)
            return self.array_has_any(col, wants)
        if op == "exists":
            return col.isnot(None)
        if leaf.kind == "text":
            return self.text_op(col, op, want)
        if leaf.kind == "number":
            return self.ordered_op(col, op, want)
        # createdAt: micros compared with the bounds of UTC days.
        start = lambda day: day * US_PER_DAY  # noqa: E731
        if op == "within_days":
            today = self.ctx.as_of_day
            return and_(col >= start(today - want + 1), col < start(today + 1))
        if op == "between":
            return and_(col >= start(_day(want[0])), col < start(_day(want[1]) + 1))
        day = _day(want)
        return {
            "eq": lambda: and_(col >= start(day), col < start(day + 1)),
            "gt": lambda: col >= start(day + 1),
            "gte": lambda: col >= start(day),
            "lt": lambda: col < start(day),
            "lte": lambda: col < start(day + 1),
        }[op]()

    def array_has_any(self, arr: ColumnElement[Any], wants: list[str]) -> ColumnElement[bool]:
        """The JSON array holds one of these strings."""
        if self.pg:
            doc = type_coerce(arr, JSONB)
            return or_(
                false(),
                *(doc.op("@>", return_type=Boolean)(literal([w], JSONB)) for w in wants),
            )
        e = func.json_each(arr).table_valued("value", "type").alias("e")
        held = exists(select(1).select_from(e).where(e.c.type == "text", e.c.value.in_(wants)))
        if len(wants) <= _PREFILTER_UP_TO and all(_PLAIN_JSON.fullmatch(w) for w in wants):
            # A string JSON writes as itself appears quoted in the array's text wherever
            # the array holds it: a substring test first spares json_each on most rows.
            # Only for a few values: a chain of N ORs is an expression N deep, and SQLite
            # refuses one deeper than 1000.
            quoted = or_(*(func.instr(arr, f'"{w}"') > 0 for w in wants))
            return and_(quoted, held)
        return held

    def custom(self, leaf: FieldLeaf, key: str) -> ColumnElement[bool]:
        if self.pg:
            return self.custom_pg(leaf, key)
        # json_each finds the key whatever characters it holds (a JSON path would not).
        j = func.json_each(a.c.custom_fields).table_valued("key", "value", "type").alias("j")
        kind, op, want = leaf.kind, leaf.op, leaf.value
        val, typ = j.c.value, j.c.type
        is_array = typ == "array"
        cond: ColumnElement[bool]
        ok: ColumnElement[bool]
        if kind == "number":
            ok = typ.in_(("integer", "real"))
            cond = ok if op == "exists" else and_(ok, self.ordered_op(cast(val, Double), op, want))
        elif kind == "text":
            ok = typ == "text"
            cond = ok if op == "exists" else and_(ok, self.text_op(val, op, want))
        elif kind == "date":
            ok = and_(typ == "text", val.op("GLOB")(_SQLITE_DATE_GLOB))
            cond = (
                ok if op == "exists" else and_(ok, self.date_text_op(func.substr(val, 1, 10), leaf))
            )
        elif kind == "multi":
            if op == "exists":
                cond = and_(is_array, func.json_array_length(val) > 0)
            else:
                wants = [want] if op == "contains" else list(want)
                cond = and_(is_array, self.array_has_any(val, wants))
        elif op == "exists":  # auto
            cond = and_(typ != "null", not_(and_(is_array, func.json_array_length(val) == 0)))
        else:  # auto contains
            cond = or_(
                and_(typ == "text", self.position(val, want) > 0),
                and_(is_array, self.array_has_any(val, [want])),
            )
        return exists(select(1).select_from(j).where(j.c.key == key, cond))

    def custom_pg(self, leaf: FieldLeaf, key: str) -> ColumnElement[bool]:
        doc = type_coerce(a.c.custom_fields, JSONB)
        jx = doc.op("->", return_type=JSONB)(literal(key, Text))
        txt = doc.op("->>", return_type=Text)(literal(key, Text))
        typ = func.jsonb_typeof(jx)
        kind, op, want = leaf.kind, leaf.op, leaf.value
        then: ColumnElement[bool]
        # CASE, not AND: PostgreSQL may evaluate AND's operands in any order, and a cast of
        # a stored value of another type would fail.
        if kind == "number":
            then = true() if op == "exists" else self.ordered_op(cast(txt, Double), op, want)
            return case((typ == "number", then), else_=false())
        if kind == "text":
            then = true() if op == "exists" else self.text_op(txt, op, want)
            return case((typ == "string", then), else_=false())
        if kind == "date":
            is_date = and_(typ == "string", txt.op("~", return_type=Boolean)(_PG_DATE_RE))
            then = true() if op == "exists" else self.date_text_op(func.substr(txt, 1, 10), leaf)
            return case((is_date, then), else_=false())
        if kind == "multi":
            if op == "exists":
                then = func.jsonb_array_length(jx) > 0
            else:
                then = self.array_has_any(jx, [want] if op == "contains" else list(want))
            return case((typ == "array", then), else_=false())
        if op == "exists":  # auto
            return case(
                (typ == "array", func.jsonb_array_length(jx) > 0),
                (typ == "null", false()),
                (typ.isnot(None), true()),
                else_=false(),
            )
        return case(
            (typ == "array", self.array_has_any(jx, [want])),
            (typ == "string", self.position(txt, want) > 0),
            else_=false(),
        )

    # -- signals, surge, deals, activities ---------------------------------------------

    def rollup_day(self) -> ColumnElement[Any]:
        # Left to themselves (no statistics yet, say) both databases may take the
        # (workspace_id, day) index for the day range and read every domain's rows once
        # per account; `day + 0` leaves them the key (workspace_id, domain, source, ...).
        return sd.c.day + 0

    def signal_sum(self, leaf: SignalLeaf) -> ColumnElement[Any]:
        day = self.ctx.as_of_day
        measure = sd.c["count"] if leaf.measure == "count" else sd.c.value_sum
        zero: Any = 0 if leaf.measure == "count" else 0.0
        q = select(func.coalesce(func.sum(measure), zero)).where(
            sd.c.workspace_id == self.ws,
            sd.c.domain == a.c.domain,
            sd.c.source == leaf.source,
            self.rollup_day() > day - leaf.window_days,
            self.rollup_day() <= day,
        )
        if leaf.type is not None:
            q = q.where(sd.c.type == leaf.type)
        if leaf.topic is not None:
            q = q.where(sd.c.topic == leaf.topic)
        return q.scalar_subquery()

    def surge(self, leaf: SurgeLeaf) -> ColumnElement[bool]:
        p, day = self.ctx.surge, self.ctx.as_of_day
        r = p.ratio_fraction()
        count = sd.c["count"]
        recent = func.coalesce(func.sum(case((sd.c.day > day - p.recent_days, count), else_=0)), 0)
        base = func.coalesce(func.sum(case((sd.c.day <= day - p.recent_days, count), else_=0)), 0)
        # is_surging, term for term, in integers.
        surging = and_(
            recent >= p.min_recent,
            recent * (p.baseline_days * r.denominator)
            >= (r.numerator * p.recent_days) * case((base > 1, base), else_=1),
        )
        q = select(case((surging, 1), else_=0)).where(
            sd.c.workspace_id == self.ws,
            sd.c.domain == a.c.domain,
            sd.c.source == leaf.source,
            self.rollup_day() > day - p.recent_days - p.baseline_days,
            self.rollup_day() <= day,
        )
        if leaf.type is not None:
            q = q.where(sd.c.type == leaf.type)
        flag = q.scalar_subquery()
        return flag == (1 if leaf.value else 0)

    def status_sql(self, label: ColumnElement[Any], stages: DealStageMap) -> ColumnElement[Any]:
        """deal_status in SQL: the same checks in the same order, ASCII case folded."""
        low = func.translate(label, _UPPER, _UPPER.lower()) if self.pg else func.lower(label)
        whens: list[tuple[ColumnElement[bool], str]] = [(label.is_(None), "open")]
        whens += [(low == ascii_lower(k), status) for k, status in stages.exact]
        whens += [(self.position(low, ascii_lower(w)) > 0, "won") for w in stages.won]
        whens += [(self.position(low, ascii_lower(w)) > 0, "lost") for w in stages.lost]
        return case(*whens, else_="open")

    def deal_count(self, leaf: DealLeaf) -> ColumnElement[Any]:
        ws, as_of = self.ws, self.ctx.as_of
        other = aliased(a)
        ext_taken = (
            select(other.c.id)
            .where(other.c.workspace_id == ws, other.c.external_id == da.c.external_id)
            .exists()
        )
        # As deals/repository.py deals_of_account: externalId first, else the domain. Two
        # selects, not an OR, so each finds the account's associations by its own index;
        # UNION keeps a deal linked twice once; then each deal by its key.
        by_ext = select(da.c.deal_id).where(
            da.c.workspace_id == ws,
            a.c.external_id.isnot(None),
            da.c.external_id == a.c.external_id,
        )
        by_domain = select(da.c.deal_id).where(
            da.c.workspace_id == ws,
            da.c.domain == a.c.domain,
            or_(da.c.external_id.is_(None), ~ext_taken),
        )
        linked = union(by_ext.correlate_except(da), by_domain.correlate_except(da)).subquery("l")
        created = func.coalesce(d.c.start_date, d.c.created_at)
        conds: list[ColumnElement[bool]] = [created <= as_of]
        if leaf.within_days is not None:
            conds.append(created > as_of - leaf.within_days * US_PER_DAY)
        if leaf.status != "any":
            conds.append(self.status_sql(d.c.stage_label, self.ctx.deal_stages) == leaf.status)
        if leaf.amount is not None:
            amount = leaf.amount
            if amount.op == "ne":
                conds.append(not_(_safe(d.c.amount == amount.value)))
            else:
                conds.append(_safe(num_sql(d.c.amount, amount)))
        joined = linked.join(d, and_(d.c.workspace_id == ws, d.c.id == linked.c.deal_id))
        return select(func.count()).select_from(joined).where(*conds).scalar_subquery()

    def activity_count(self, leaf: ActivityLeaf) -> ColumnElement[Any]:
        as_of = self.ctx.as_of
        q = (
            select(func.count())
            .select_from(act)
            .where(
                act.c.workspace_id == self.ws,
                act.c.domain == a.c.domain,
                act.c.occurred_at > as_of - leaf.window_days * US_PER_DAY,
                act.c.occurred_at <= as_of,
            )
        )
        if leaf.type != "any":
            q = q.where(act.c.activity_type == leaf.type)
        return type_coerce(q.scalar_subquery(), Integer)
