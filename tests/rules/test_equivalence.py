"""The same rule gives the same answer in memory and as one query (spec "Rule language").

Hypothesis builds a fresh workspace per example (accounts with random fields, tags,
scores, custom fields including values of the wrong type, rollup rows, deals and
activities) and a handful of random rules, and checks `matching_ids` against `evaluate`
over `load_facts` for every account.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from intently.accounts.tables import accounts
from intently.deals.repository import deals_of_account
from intently.kit.db import write_tx
from intently.kit.timefmt import format_us, now_us
from intently.rules import (
    Context,
    DealStageMap,
    SurgeParams,
    custom_field_types,
    evaluate,
    load_facts,
    matching_ids,
    parse_rule,
)
from intently.rules.language import date_text
from intently.signals.tables import signal_daily
from tests.rules import (
    DAY,
    activity,
    push_accounts,
    push_activities,
    push_deals,
    set_columns,
)
from tests.support.api import Workspace
from tests.support.data import SCORE_COLUMNS, custom_field

NAMES = ["Acme", "acme", "Beta Corp", "Ácme", "Zeta", "Key"]
SHORT = [None, "A", "Ab", "", "ß"]
TAGS = ["a", "b", "A", "ab"]
STAGES = [None, "Aware", "Engaged", "aware"]
SCORE_VALUES = [0.0, 10.5, 59.99, 60.0, 100.0]
# The company profile as pushed (None: not sent, so NULL), and the computed fit and grade.
PROFILE_POOLS: dict[str, list[Any]] = {
    "industry": [None, "Software", "software", "Computer Software", "Key", "ß", "1"],
    "employeeCount": [None, 0, 1, 2, 60, 100, 10_000_000],
    "annualRevenue": [None, 0, 2.5, 59.99, 60, 1e12],
    "country": [None, "DE", "de", "US", "AE"],
    "city": [None, "Berlin", "berlin", "A", "Zürich"],
    "logoUrl": [None, "https://acme.com/a.png", "http://Key.io/1"],
}
FIT_VALUES = [None, 0.0, 2.5, 59.99, 60.0, 100.0]
GRADES = [None, "A1", "a1", "B2", "D4"]
NUMBERS = [0, 1, 2.5, 10.5, 59.99, 60, 100, -3, 1e12]
TEXTS = ["Acme", "acme", "A", "Key", "Key account", "1", "2", "crm", "", "ß", "d1.com", "Aware"]
TEXTS += ["Software", "DE", "de", "A1", "Berlin"]
PIECES = ["A", "a", "c", "Key", "", "d1", "ß", "crm", "1", "Soft", "http"]
SOURCES = ["website", "g2", "bombora"]
TYPES = ["page_view", "pricing", "surge"]
TOPICS = ["", "CRM"]
LABELS = [None, "Closed Won", "closed lost", "Negotiation", "WON", "Lost", "Signed", "Wonder"]
AMOUNTS = [None, 0, 100, 5000.5]
MICROS = [0, 1, DAY // 2, DAY - 1]
# Day offsets from as_of and windows drawn from small sets that meet: every window's
# boundary falls on data often, so off-by-one errors show.
OFFSETS = [-35, -28, -10, -7, -6, -3, -2, -1, 0, 1]
WINDOWS = [1, 3, 7, 10, 28]
SHIFTS = [0, 1, -1, DAY // 2]  # micros around an instant exactly N days from as_of

# Stored custom field values: the field's own type, then strays of other types.
CUSTOM_POOLS: dict[str, list[Any]] = {
    "NUM": [0, 1, 2.5, 100, -3, 60, "100", True, None, [1]],
    "DAY": ["@-3", "@0", "@-7", "@-6", "@-10T23:00:00-05:00", "@-1T01:00:00Z", "20260305", 5, None],
    "TIER": ["1", "2", "3", 1, ["1"], None],
    "PROD": [[], ["crm"], ["crm", "bi"], ["erp", 1], "crm", None],
    "NOTE": ["Key account", "key", "", "Kéy", 7, ["Key"], "crm"],
}
LABEL_TYPES = {
    "NUM": "number",
    "DAY": "date",
    "TIER": "singleSelection",
    "PROD": "multiSelection",
    "NOTE": "singleLineText",
}
OPTIONS = {"TIER": ["1", "2", "3"], "PROD": ["crm", "erp", "bi"]}


def day_text(as_of_day: int, spec: Any) -> Any:
    """`@-3` -> the date 3 days before as_of's day, `@-3T..` keeps the time part."""
    if not (isinstance(spec, str) and spec.startswith("@")):
        return spec
    offset, _, rest = spec[1:].partition("T")
    return date_text(as_of_day + int(offset)) + ("T" + rest if rest else "")


# ---- data -------------------------------------------------------------------------------


@st.composite
def world(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(3, 30))
    offset = draw(st.sampled_from([-5 * DAY, -DAY // 3, 0, 2 * DAY]))
    accts = []
    for i in range(n):
        custom = {}
        for key, pool in CUSTOM_POOLS.items():
            if draw(st.booleans()):
                custom[key] = draw(st.sampled_from(pool))
        accts.append(
            {
                "name": draw(st.sampled_from(NAMES)),
                "externalId": f"E{i}" if draw(st.booleans()) else None,
                "shortName": draw(st.sampled_from(SHORT)),
                "tags": draw(st.lists(st.sampled_from(TAGS), max_size=3, unique=True)),
                "custom": custom,
                "scores": {s: draw(st.sampled_from(SCORE_VALUES)) for s in SCORE_COLUMNS},
                "stage": draw(st.sampled_from(STAGES)),
                "profile": {k: draw(st.sampled_from(pool)) for k, pool in PROFILE_POOLS.items()},
                "fit": (draw(st.sampled_from(FIT_VALUES)), draw(st.sampled_from(GRADES))),
                "created": (draw(st.sampled_from(OFFSETS)), draw(st.sampled_from(MICROS))),
            }
        )
    domains = [f"d{i}.com" for i in range(n)] + ["nobody.com"]
    signals = draw(
        st.lists(
            st.tuples(
                st.sampled_from(domains),
                st.sampled_from(SOURCES),
                st.sampled_from(TYPES),
                st.sampled_from(TOPICS),
                st.sampled_from(OFFSETS),
                st.integers(1, 6),
                st.integers(0, 200).map(lambda x: x / 2),
            ),
            min_size=20,
            max_size=80,
        )
    )
    ext_ids = [f"E{i}" for i in range(n)] + ["NOPE"]
    assoc = st.one_of(
        st.fixed_dictionaries({"externalId": st.sampled_from(ext_ids)}),
        st.fixed_dictionaries({"domain": st.sampled_from(domains)}),
        st.fixed_dictionaries(
            {"externalId": st.sampled_from(ext_ids), "domain": st.sampled_from(domains)}
        ),
    )
    deals = draw(
        st.lists(
            st.tuples(
                st.sampled_from(LABELS),
                st.sampled_from(AMOUNTS),
                st.one_of(st.none(), st.tuples(st.sampled_from(OFFSETS), st.sampled_from(SHIFTS))),
                st.lists(assoc, min_size=1, max_size=2),
            ),
            min_size=2,
            max_size=15,
        )
    )
    acts = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["call", "email"]),
                st.sampled_from(domains),
                st.sampled_from(OFFSETS),
                st.sampled_from(SHIFTS),
            ),
            min_size=2,
            max_size=15,
        )
    )
    return {
        "offset": offset,
        "accounts": accts,
        "signals": signals,
        "deals": deals,
        "activities": acts,
    }


def build(engine: Any, ws: Workspace, w: dict[str, Any]) -> tuple[Context, dict[str, str]]:
    """Store a drawn world in a fresh workspace; the context and the custom field keys."""
    as_of = now_us() + w["offset"]
    day = as_of // DAY
    keys = {k: custom_field(ws.api, k.title(), t, OPTIONS.get(k)) for k, t in LABEL_TYPES.items()}
    items = []
    for i, x in enumerate(w["accounts"]):
        item: dict[str, Any] = {"domain": f"d{i}.com", "name": x["name"], "tags": x["tags"]}
        if x["externalId"] is not None:
            item["externalId"] = x["externalId"]
        if x["shortName"] is not None:
            item["shortName"] = x["shortName"]
        item |= {k: v for k, v in x["profile"].items() if v is not None}
        items.append(item)
    ids = push_accounts(ws.api, items)
    # Scores, stage, creation time and raw custom field documents (strays included).
    cols = {}
    for i, x in enumerate(w["accounts"]):
        cdays, cmicros = x["created"]
        cols[ids[f"d{i}.com"]] = {
            **x["scores"],
            "rtp_journey_stage": x["stage"],
            "rtp_fit_score": x["fit"][0],
            "rtp_grade": x["fit"][1],
            "created_at": (day + cdays) * DAY + cmicros,
            "custom_fields": {keys[k]: day_text(day, v) for k, v in x["custom"].items()},
        }
    set_columns(engine, ws.id, cols)
    rollup: dict[tuple[Any, ...], tuple[int, float]] = {}
    for dom, src, typ, topic, off, count, value in w["signals"]:
        rollup[(dom, src, typ, topic, day + off)] = (count, value)
    if rollup:
        with write_tx(engine) as conn:
            conn.execute(
                signal_daily.insert(),
                [
                    {
                        "workspace_id": ws.id,
                        "domain": k[0],
                        "source": k[1],
                        "type": k[2],
                        "topic": k[3],
                        "day": k[4],
                        "count": c,
                        "value_sum": v,
                    }
                    for k, (c, v) in rollup.items()
                ],
            )
    deals = []
    for j, (label, amount, start, assocs) in enumerate(w["deals"]):
        deal: dict[str, Any] = {"externalDealId": f"D{j}", "name": f"D{j}"}
        deal["associatedAccounts"] = assocs
        if label is not None:
            deal["stageLabel"] = label
        if amount is not None:
            deal["amount"] = amount
        if start is not None:
            deal["startDate"] = format_us(as_of + start[0] * DAY + start[1])
        deals.append(deal)
    if deals:
        push_deals(ws.api, deals)
    acts = [
        activity(f"A{j}", kind, dom, format_us(as_of + off * DAY + micros))
        for j, (kind, dom, off, micros) in enumerate(w["activities"])
    ]
    if acts:
        push_activities(ws.api, acts)
    return Context(as_of=as_of), keys


# ---- rules ------------------------------------------------------------------------------


def leaf_strategy(keys: dict[str, str], as_of_day: int) -> st.SearchStrategy[dict[str, Any]]:
    def cf(k: str) -> str:
        return "customFields." + keys[k]

    dates = [date_text(as_of_day + d) for d in OFFSETS]
    text_fields = ["domain", "name", "externalId", "shortName", "linkedinUrl", "rtp_journey_stage"]
    text_fields += ["industry", "country", "city", "logoUrl", "rtp_grade"]
    text_fields += [cf("TIER"), cf("NOTE")]
    number_fields = [*SCORE_COLUMNS, "employeeCount", "annualRevenue", "rtp_fit_score"]
    number_fields += [cf("NUM")]
    date_fields = ["createdAt", cf("DAY")]
    multi_fields = ["tags", cf("PROD")]

    def leaf(fields: list[str], ops: list[str], value: st.SearchStrategy[Any]) -> Any:
        return st.fixed_dictionaries(
            {"field": st.sampled_from(fields), "op": st.sampled_from(ops), "value": value}
        )

    def pair(pool: list[Any]) -> st.SearchStrategy[list[Any]]:
        return st.lists(st.sampled_from(pool), min_size=2, max_size=2).map(sorted)

    presence = st.fixed_dictionaries(
        {
            "field": st.sampled_from(text_fields + number_fields + date_fields + multi_fields),
            "op": st.sampled_from(["exists", "missing"]),
        }
    )
    some = st.lists(st.sampled_from(TEXTS), min_size=1, max_size=3)
    nums = st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=3)
    window = st.sampled_from(WINDOWS)
    cmp_value = st.sampled_from([0, 1, 2, 3, 5, 0.5, 7.5, 60])

    def numcmp() -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of(
            st.fixed_dictionaries(
                {
                    "op": st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
                    "value": cmp_value,
                }
            ),
            st.fixed_dictionaries(
                {"op": st.just("between"), "value": pair([0, 1, 2, 3, 6, 100.5])}
            ),
        )

    signal = st.builds(
        lambda src, typ, topic, w, measure, c: (
            {
                "signal": {"source": src}
                | ({"type": typ} if typ else {})
                | ({"topic": topic} if topic is not None else {}),
                "window_days": w,
            }
            | ({"measure": measure} if measure else {})
            | c
        ),
        st.sampled_from(SOURCES),
        st.sampled_from([None, *TYPES]),
        st.sampled_from([None, *TOPICS]),
        window,
        st.sampled_from([None, "count", "value"]),
        numcmp(),
    )
    surge = st.builds(
        lambda src, typ, op, v: (
            {"surge": {"source": src} | ({"type": typ} if typ else {})} | {"op": op, "value": v}
        ),
        st.sampled_from(SOURCES),
        st.sampled_from([None, *TYPES]),
        st.sampled_from(["eq", "ne"]),
        st.booleans(),
    )
    amount = st.one_of(
        st.fixed_dictionaries(
            {
                "op": st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
                "value": st.sampled_from([0, 100, 5000.5, 50]),
            }
        ),
        st.fixed_dictionaries({"op": st.just("between"), "value": pair([0, 100, 5000.5])}),
    )
    deal = st.builds(
        lambda status, amt, within, c: (
            {
                "deal": {"status": status}
                | ({"amount": amt} if amt else {})
                | ({"within_days": within} if within else {})
            }
            | (c or {})
        ),
        st.sampled_from(["open", "won", "lost", "any"]),
        st.one_of(st.none(), amount),
        st.one_of(st.none(), window),
        st.one_of(st.none(), numcmp()),
    )
    act = st.builds(
        lambda typ, w, c: {"activity": {"type": typ}, "window_days": w} | c,
        st.sampled_from(["call", "email", "any"]),
        window,
        numcmp(),
    )
    fields = st.one_of(
        leaf(text_fields, ["eq", "ne"], st.sampled_from(TEXTS)),
        leaf(text_fields, ["in", "not_in"], some),
        leaf(text_fields, ["contains", "not_contains", "starts_with"], st.sampled_from(PIECES)),
        leaf(number_fields, ["eq", "ne", "gt", "gte", "lt", "lte"], st.sampled_from(NUMBERS)),
        leaf(number_fields, ["between"], pair(NUMBERS)),
        leaf(number_fields, ["in", "not_in"], nums),
        leaf(date_fields, ["eq", "ne", "gt", "gte", "lt", "lte"], st.sampled_from(dates)),
        leaf(date_fields, ["between"], pair(dates)),
        leaf(date_fields, ["within_days"], window),
        leaf(
            multi_fields,
            ["contains", "not_contains"],
            st.sampled_from(["a", "A", "crm", "bi", "1"]),
        ),
        leaf(
            multi_fields,
            ["in", "not_in"],
            st.lists(st.sampled_from(["a", "ab", "crm", "erp"]), min_size=1, max_size=2),
        ),
        presence,
    )
    # As likely a field as a signal, a surge, a deal or an activity.
    # (one_of flattens nested one_of, so choose the group first.)
    groups: list[st.SearchStrategy[dict[str, Any]]] = [fields, signal, surge, deal, act]
    return st.sampled_from(groups).flatmap(lambda g: g)


def rule_strategy(leaf: st.SearchStrategy[dict[str, Any]], depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return leaf
    sub = rule_strategy(leaf, depth - 1)
    return st.one_of(
        leaf,
        st.lists(sub, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(sub, max_size=3).map(lambda xs: {"any": xs}),
        sub.map(lambda x: {"not": x}),
    )


CONTEXTS: list[Callable[[Context], Context]] = [
    lambda c: c,
    lambda c: Context(
        as_of=c.as_of, surge=SurgeParams(recent_days=3, baseline_days=10, min_recent=2, ratio=1.5)
    ),
    lambda c: Context(as_of=c.as_of, deal_stages=DealStageMap.of({"Signed": "won", "WON": "lost"})),
]


@settings(
    max_examples=40,
    deadline=None,
    # No shrinking: each step rebuilds a workspace, minutes for a failure; the failing
    # example and rule are printed as drawn.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(w=world(), data=st.data())
def test_memory_and_sql_agree(
    make_workspace: Callable[[], Workspace], engine: Any, w: dict[str, Any], data: st.DataObject
) -> None:
    ws = make_workspace()
    base_ctx, keys = build(engine, ws, w)
    leaf = leaf_strategy(keys, base_ctx.as_of_day)
    docs = data.draw(st.lists(rule_strategy(leaf, 3), min_size=20, max_size=50), label="rules")
    with engine.connect() as conn:
        types = custom_field_types(conn, ws.id)
        ids = list(
            conn.execute(select(accounts.c.id).where(accounts.c.workspace_id == ws.id)).scalars()
        )
        # Deals link to accounts exactly as the deals API shows them.
        everything = load_facts(conn, ws.id, ids, Context(as_of=base_ctx.as_of + 10 * DAY))
        for aid in ids:
            assert len(everything[aid].deals) == len(deals_of_account(conn, ws.id, aid))
        for doc in docs:
            typed = data.draw(st.booleans(), label="typed")
            ctx = data.draw(st.sampled_from(CONTEXTS), label="context")(base_ctx)
            rule = parse_rule(doc, custom_fields=types if typed else None)
            facts = load_facts(conn, ws.id, ids, ctx, needs=rule)
            memory = {aid for aid, f in facts.items() if evaluate(rule, f, ctx)}
            assert matching_ids(conn, ws.id, rule, ctx) == memory, doc
            # Loading everything answers the same as loading only what the rule reads.
            full = load_facts(conn, ws.id, ids, ctx)
            assert {aid for aid, f in full.items() if evaluate(rule, f, ctx)} == memory, doc
            subset = ids[::2]
            assert matching_ids(conn, ws.id, rule, ctx, account_ids=subset) == memory & set(subset)
