"""What the in-memory evaluator needs to know about accounts, loaded in a few set queries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from intently.accounts.tables import accounts as a
from intently.activities.tables import activities as act
from intently.custom_fields.tables import custom_fields as cft
from intently.deals.tables import deal_accounts as da
from intently.deals.tables import deals as d
from intently.kit.timefmt import US_PER_DAY
from intently.rules.terms import Context
from intently.rules.tree import ActivityLeaf, DealLeaf, Rule, SignalLeaf, SurgeLeaf, leaves
from intently.signals.tables import signal_daily as sd

CHUNK = 500  # account ids per IN list


@dataclass(frozen=True)
class SignalDay:
    source: str
    type: str
    topic: str
    day: int
    count: int
    value_sum: float


@dataclass(frozen=True)
class DealFact:
    stage_label: str | None
    amount: float | None
    created: int  # start_date when given, else created_at (micros)


@dataclass(frozen=True)
class ActivityFact:
    type: str
    occurred_at: int


@dataclass
class AccountFacts:
    """One account's row (column names of `accounts`) and the rows linked to it."""

    row: dict[str, Any]
    signals: list[SignalDay] = field(default_factory=list)
    deals: list[DealFact] = field(default_factory=list)
    activities: list[ActivityFact] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.row["id"])


@dataclass(frozen=True)
class Needs:
    """Which related rows a rule reads; None means without limit."""

    signal_days: int | None  # days back from as_of_day; 0 = none
    sources: frozenset[str] | None
    deals: bool
    activity_days: int | None  # 0 = none


def needs_of(rule: Rule | None, ctx: Context) -> Needs:
    if rule is None:
        return Needs(None, None, True, None)
    days, deals, act_days = 0, False, 0
    sources: set[str] = set()
    for leaf in leaves(rule):
        if isinstance(leaf, SignalLeaf):
            days = max(days, leaf.window_days)
            sources.add(leaf.source)
        elif isinstance(leaf, SurgeLeaf):
            days = max(days, ctx.surge.recent_days + ctx.surge.baseline_days)
            sources.add(leaf.source)
        elif isinstance(leaf, DealLeaf):
            deals = True
        elif isinstance(leaf, ActivityLeaf):
            act_days = max(act_days, leaf.window_days)
    return Needs(days, frozenset(sources), deals, act_days)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def custom_field_types(conn: Connection, ws: int) -> dict[str, str]:
    """The workspace's active custom fields: key -> labelType (for parse_rule)."""
    rows = conn.execute(
        select(cft.c.key, cft.c.label_type).where(
            cft.c.workspace_id == ws, cft.c.status == "active"
        )
    )
    return {k: t for k, t in rows}


def load_facts(
    conn: Connection, ws: int, account_ids: list[str], ctx: Context, *, needs: Rule | None = None
) -> dict[str, AccountFacts]:
    """Facts for these accounts (missing ids are left out): one query per kind of row and
    per 500 accounts. With `needs`, only what that rule reads is loaded."""
    need = needs_of(needs, ctx)
    out: dict[str, AccountFacts] = {}
    ids = list(dict.fromkeys(account_ids))
    for part in _chunks(ids):
        rows = conn.execute(select(a).where(a.c.workspace_id == ws, a.c.id.in_(part)))
        for acc in rows.mappings():
            out[acc["id"]] = AccountFacts(dict(acc))
    by_domain = {f.row["domain"]: f for f in out.values()}
    domains = list(by_domain)
    day = ctx.as_of_day

    signal_days = need.signal_days
    if signal_days != 0 and domains:
        for part in _chunks(domains):
            # `day + 0`: look rows up by domain (the key), not by the (workspace, day) index.
            sday = sd.c.day + 0
            q = select(sd).where(sd.c.workspace_id == ws, sd.c.domain.in_(part), sday <= day)
            if signal_days is not None:
                q = q.where(sday > day - signal_days)
            if need.sources is not None:
                q = q.where(sd.c.source.in_(sorted(need.sources)))
            for m in conn.execute(q).mappings():
                by_domain[m["domain"]].signals.append(
                    SignalDay(
                        m["source"], m["type"], m["topic"], m["day"], m["count"], m["value_sum"]
                    )
                )

    if need.deals and out:
        other = aliased(a)
        ext_taken = (
            select(other.c.id)
            .where(other.c.workspace_id == ws, other.c.external_id == da.c.external_id)
            .exists()
        )
        # As deals/repository.py deals_of_account: an association names its account by
        # externalId first; only one whose externalId matches no account falls back to domain.
        links = (
            and_(a.c.external_id.isnot(None), da.c.external_id == a.c.external_id),
            and_(da.c.domain == a.c.domain, or_(da.c.external_id.is_(None), ~ext_taken)),
        )
        seen: set[tuple[str, str]] = set()
        for part in _chunks(list(out)):
            # One query per way of linking, so each joins through its own index.
            for link in links:
                q = (
                    select(
                        a.c.id,
                        d.c.id,
                        d.c.stage_label,
                        d.c.amount,
                        func.coalesce(d.c.start_date, d.c.created_at),
                    )
                    .select_from(a)
                    .join(da, and_(da.c.workspace_id == a.c.workspace_id, link))
                    .join(d, and_(d.c.workspace_id == da.c.workspace_id, d.c.id == da.c.deal_id))
                    .where(a.c.workspace_id == ws, a.c.id.in_(part))
                )
                for r in conn.execute(q):
                    if (r[0], r[1]) in seen:
                        continue  # several associations of one deal with one account
                    seen.add((r[0], r[1]))
                    amount = float(r[3]) if r[3] is not None else None
                    out[r[0]].deals.append(DealFact(r[2], amount, int(r[4])))

    if need.activity_days != 0 and domains:
        for part in _chunks(domains):
            aq = select(act.c.domain, act.c.activity_type, act.c.occurred_at).where(
                act.c.workspace_id == ws, act.c.domain.in_(part), act.c.occurred_at <= ctx.as_of
            )
            if need.activity_days is not None:
                aq = aq.where(act.c.occurred_at > ctx.as_of - need.activity_days * US_PER_DAY)
            for r in conn.execute(aq):
                by_domain[r[0]].activities.append(ActivityFact(r[1], int(r[2])))
    return out
