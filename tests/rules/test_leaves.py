"""Each leaf and operator on hand-made data in the real tables, in memory and in SQL.

Every check goes through `both_ways`, which fails unless the in-memory evaluator and the
compiled query agree, and then compares with the accounts the case should match.
"""

from __future__ import annotations

from typing import Any

import pytest

from intently.kit.timefmt import format_us, parse_iso8601
from intently.rules import (
    DEFAULT_DEAL_STAGES,
    Context,
    DealStageMap,
    SurgeParams,
    deal_status,
    is_surging,
)
from tests.rules import (
    DAY,
    activity,
    add_signals,
    both_ways,
    push_accounts,
    push_activities,
    push_deals,
    set_columns,
)
from tests.support.api import Workspace
from tests.support.data import custom_field

# 2026-03-10T15:00:00Z: windows end on its day (as_of_day) and, for instants, at it.
AS_OF = parse_iso8601("2026-03-10T15:00:00Z")
AS_OF_DAY = AS_OF // DAY
CTX = Context(as_of=AS_OF)


def names(ids: dict[str, str], matched: set[str]) -> set[str]:
    back = {v: k for k, v in ids.items()}
    return {back[x] for x in matched}


def check(ws: Workspace, engine: Any, ids: dict[str, str], doc: Any, want: set[str], **kw: Any):
    ctx = kw.pop("ctx", CTX)
    got = names(ids, both_ways(engine, ws.id, doc, ctx, **kw))
    assert got == want, (doc, got, want)


# ---- account fields ----------------------------------------------------------------------


def test_text_fields_compare_exactly_and_missing_matches_only_negatives(
    workspace: Workspace, engine: Any
) -> None:
    ids = push_accounts(
        workspace.api,
        [
            {"domain": "acme.com", "name": "Acme Corp", "externalId": "X1"},
            {"domain": "beta.io", "name": "Beta", "shortName": "B"},
            {"domain": "gamma.de", "name": "gamma corp", "shortName": "G"},
        ],
    )

    def c(doc: Any, want: set[str]) -> None:
        check(workspace, engine, ids, doc, want)

    c({"field": "domain", "op": "eq", "value": "beta.io"}, {"beta.io"})
    c({"field": "name", "op": "contains", "value": "Corp"}, {"acme.com"})  # case-sensitive
    c({"field": "name", "op": "contains", "value": "corp"}, {"gamma.de"})
    c({"field": "name", "op": "starts_with", "value": "Ac"}, {"acme.com"})
    c({"field": "name", "op": "starts_with", "value": "corp"}, set())
    c(
        {"field": "domain", "op": "in", "value": ["acme.com", "gamma.de", "x.org"]},
        {"acme.com", "gamma.de"},
    )
    c({"field": "domain", "op": "not_in", "value": ["acme.com"]}, {"beta.io", "gamma.de"})
    c({"field": "externalId", "op": "exists"}, {"acme.com"})
    c({"field": "externalId", "op": "missing"}, {"beta.io", "gamma.de"})
    # A missing shortName is not "B", so ne matches it; eq and in do not.
    c({"field": "shortName", "op": "ne", "value": "B"}, {"acme.com", "gamma.de"})
    c({"field": "shortName", "op": "in", "value": ["B", "G"]}, {"beta.io", "gamma.de"})
    c({"field": "shortName", "op": "not_in", "value": ["B"]}, {"acme.com", "gamma.de"})
    c({"field": "linkedinUrl", "op": "missing"}, {"acme.com", "beta.io", "gamma.de"})
    c({"field": "rtp_journey_stage", "op": "missing"}, {"acme.com", "beta.io", "gamma.de"})


def test_tags(workspace: Workspace, engine: Any) -> None:
    ids = push_accounts(
        workspace.api,
        [
            {"domain": "a.com", "name": "A", "tags": ["competitor", "EMEA"]},
            {"domain": "b.com", "name": "B", "tags": ["emea"]},
            {"domain": "c.com", "name": "C"},
        ],
    )

    def c(doc: Any, want: set[str]) -> None:
        check(workspace, engine, ids, doc, want)

    c({"field": "tags", "op": "contains", "value": "competitor"}, {"a.com"})
    c({"field": "tags", "op": "contains", "value": "emea"}, {"b.com"})
    c({"field": "tags", "op": "not_contains", "value": "competitor"}, {"b.com", "c.com"})
    c({"field": "tags", "op": "in", "value": ["EMEA", "emea"]}, {"a.com", "b.com"})
    c({"field": "tags", "op": "not_in", "value": ["EMEA", "emea"]}, {"c.com"})
    c({"field": "tags", "op": "exists"}, {"a.com", "b.com"})
    c({"field": "tags", "op": "missing"}, {"c.com"})
    c({"not": {"field": "tags", "op": "contains", "value": "comp"}}, {"a.com", "b.com", "c.com"})


def test_scores_and_stage(workspace: Workspace, engine: Any) -> None:
    ids = push_accounts(workspace.api, [{"domain": f"s{i}.com", "name": f"S{i}"} for i in range(4)])
    set_columns(
        engine,
        workspace.id,
        {
            ids["s0.com"]: {"rtp_account_score": 0.0},
            ids["s1.com"]: {"rtp_account_score": 59.99, "rtp_g2_intent_score": 10.5},
            ids["s2.com"]: {"rtp_account_score": 60.0, "rtp_journey_stage": "Aware"},
            ids["s3.com"]: {"rtp_account_score": 100.0, "rtp_journey_stage": "Decision"},
        },
    )

    def c(doc: Any, want: set[str]) -> None:
        check(workspace, engine, ids, doc, want)

    c({"field": "rtp_account_score", "op": "gte", "value": 60}, {"s2.com", "s3.com"})
    c({"field": "rtp_account_score", "op": "gt", "value": 60}, {"s3.com"})
    c({"field": "rtp_account_score", "op": "lt", "value": 59.99}, {"s0.com"})
    c({"field": "rtp_account_score", "op": "lte", "value": 59.99}, {"s0.com", "s1.com"})
    c({"field": "rtp_account_score", "op": "between", "value": [59.99, 60]}, {"s1.com", "s2.com"})
    c({"field": "rtp_account_score", "op": "eq", "value": 100}, {"s3.com"})
    c({"field": "rtp_account_score", "op": "in", "value": [0, 60]}, {"s0.com", "s2.com"})
    c({"field": "rtp_g2_intent_score", "op": "ne", "value": 0}, {"s1.com"})
    c({"field": "rtp_journey_stage", "op": "eq", "value": "Aware"}, {"s2.com"})
    c({"field": "rtp_journey_stage", "op": "ne", "value": "Aware"}, {"s0.com", "s1.com", "s3.com"})


def test_created_at_days_and_window_boundary(workspace: Workspace, engine: Any) -> None:
    ids = push_accounts(workspace.api, [{"domain": f"c{i}.com", "name": f"C{i}"} for i in range(4)])
    # within_days 7 covers the UTC days (as_of_day - 7, as_of_day]: 03-04 .. 03-10.
    set_columns(
        engine,
        workspace.id,
        {
            ids["c0.com"]: {"created_at": (AS_OF_DAY - 7) * DAY + DAY - 1},  # 03-03 23:59:59.999999
            ids["c1.com"]: {"created_at": (AS_OF_DAY - 6) * DAY},  # 03-04 00:00
            ids["c2.com"]: {"created_at": AS_OF_DAY * DAY + DAY - 1},  # 03-10, after as_of
            ids["c3.com"]: {"created_at": (AS_OF_DAY + 1) * DAY},  # 03-11
        },
    )

    def c(doc: Any, want: set[str]) -> None:
        check(workspace, engine, ids, doc, want)

    c({"field": "createdAt", "op": "within_days", "value": 7}, {"c1.com", "c2.com"})
    c({"field": "createdAt", "op": "within_days", "value": 8}, {"c0.com", "c1.com", "c2.com"})
    c({"field": "createdAt", "op": "eq", "value": "2026-03-04"}, {"c1.com"})
    c({"field": "createdAt", "op": "gt", "value": "2026-03-04"}, {"c2.com", "c3.com"})
    c(
        {"field": "createdAt", "op": "gte", "value": "2026-03-04T23:00:00Z"},
        {"c1.com", "c2.com", "c3.com"},
    )
    c({"field": "createdAt", "op": "lt", "value": "2026-03-04"}, {"c0.com"})
    c({"field": "createdAt", "op": "lte", "value": "2026-03-10"}, {"c0.com", "c1.com", "c2.com"})
    c(
        {"field": "createdAt", "op": "between", "value": ["2026-03-03", "2026-03-04"]},
        {"c0.com", "c1.com"},
    )
    c({"field": "createdAt", "op": "exists"}, {"c0.com", "c1.com", "c2.com", "c3.com"})


def test_custom_fields_by_type_with_nulls_and_stray_values(
    workspace: Workspace, engine: Any
) -> None:
    api = workspace.api
    num = custom_field(api, "Employees", "number")
    day = custom_field(api, "Renewal", "date")
    tier = custom_field(api, "Tier", "singleSelection", ["1", "2", "3"])
    prod = custom_field(api, "Products", "multiSelection", ["crm", "erp", "bi"])
    note = custom_field(api, "Note", "singleLineText")
    ids = push_accounts(
        api,
        [
            {
                "domain": "full.com",
                "name": "Full",
                "customFields": {
                    num: 250,
                    day: "2026-03-05",
                    tier: "1",
                    prod: ["crm", "bi"],
                    note: "Key account",
                },
            },
            {
                "domain": "other.com",
                "name": "Other",
                "customFields": {
                    num: 99.5,
                    day: "2026-02-01T23:30:00-05:00",
                    tier: "3",
                    prod: [],
                    note: "key",
                },
            },
            {"domain": "empty.com", "name": "Empty"},
            {"domain": "stray.com", "name": "Stray"},
        ],
    )
    # Values of another type (a field deactivated and recreated with another type keeps
    # them) and dates in other ISO forms read as missing.
    set_columns(
        engine,
        workspace.id,
        {
            ids["stray.com"]: {
                "custom_fields": {num: "250", day: "20260305", tier: 1, prod: "crm", note: ["Key"]}
            }
        },
    )

    def c(doc: Any, want: set[str], typed: bool = True) -> None:
        check(workspace, engine, ids, doc, want, typed=typed)

    f = "customFields."
    c({"field": f + num, "op": "gte", "value": 100}, {"full.com"})
    c({"field": f + num, "op": "eq", "value": 99.5}, {"other.com"})
    c({"field": f + num, "op": "ne", "value": 250}, {"other.com", "empty.com", "stray.com"})
    c({"field": f + num, "op": "lt", "value": 1000}, {"full.com", "other.com"})
    c({"field": f + num, "op": "between", "value": [99.5, 250]}, {"full.com", "other.com"})
    c({"field": f + num, "op": "in", "value": [250, 7]}, {"full.com"})
    c(
        {"field": f + num, "op": "not_in", "value": [250, 7]},
        {"other.com", "empty.com", "stray.com"},
    )
    c({"field": f + num, "op": "exists"}, {"full.com", "other.com"})
    c({"field": f + num, "op": "missing"}, {"empty.com", "stray.com"})
    # Dates compare by the day as written: 2026-02-01T23:30-05:00 is 2026-02-01.
    c({"field": f + day, "op": "eq", "value": "2026-02-01"}, {"other.com"})
    c({"field": f + day, "op": "gt", "value": "2026-02-01"}, {"full.com"})
    c({"field": f + day, "op": "lte", "value": "2026-03-05T10:00:00Z"}, {"full.com", "other.com"})
    c({"field": f + day, "op": "within_days", "value": 6}, {"full.com"})  # 03-05 .. 03-10
    c({"field": f + day, "op": "within_days", "value": 5}, set())  # 03-06 .. 03-10
    c({"field": f + day, "op": "between", "value": ["2026-01-01", "2026-02-28"]}, {"other.com"})
    c({"field": f + day, "op": "missing"}, {"empty.com", "stray.com"})
    c({"field": f + tier, "op": "in", "value": ["1", "2"]}, {"full.com"})
    c(
        {"field": f + tier, "op": "not_in", "value": ["1", "2"]},
        {"other.com", "empty.com", "stray.com"},
    )
    c({"field": f + tier, "op": "eq", "value": "3"}, {"other.com"})
    c({"field": f + prod, "op": "contains", "value": "bi"}, {"full.com"})
    c({"field": f + prod, "op": "in", "value": ["erp", "crm"]}, {"full.com"})
    c(
        {"field": f + prod, "op": "not_contains", "value": "bi"},
        {"other.com", "empty.com", "stray.com"},
    )
    c({"field": f + prod, "op": "exists"}, {"full.com"})  # an empty selection is missing
    c({"field": f + prod, "op": "missing"}, {"other.com", "empty.com", "stray.com"})
    c({"field": f + note, "op": "contains", "value": "Key"}, {"full.com"})
    c({"field": f + note, "op": "starts_with", "value": "key"}, {"other.com"})
    # Without the workspace's types: contains reads strings and arrays; numbers inferred.
    c({"field": f + note, "op": "contains", "value": "Key"}, {"full.com", "stray.com"}, typed=False)
    c({"field": f + prod, "op": "contains", "value": "crm"}, {"full.com", "stray.com"}, typed=False)
    c({"field": f + prod, "op": "exists"}, {"full.com", "stray.com"}, typed=False)
    c({"field": f + num, "op": "gt", "value": 100}, {"full.com"}, typed=False)
    c(
        {"field": f + "NOPE_C", "op": "missing"},
        {"full.com", "other.com", "empty.com", "stray.com"},
        typed=False,
    )


# ---- signals and surge -------------------------------------------------------------------


def test_signal_window_boundaries_filters_and_measures(workspace: Workspace, engine: Any) -> None:
    ids = push_accounts(
        workspace.api,
        [{"domain": d, "name": d} for d in ("old.com", "edge.com", "now.com", "late.com")],
    )
    noon = DAY // 2
    add_signals(
        engine,
        workspace.id,
        [
            # Exactly 7 days before as_of's day: out of a 7-day window, in an 8-day one.
            ("old.com", "g2", "pricing", "", (AS_OF_DAY - 7) * DAY + noon, 1),
            # 6 days before: the oldest day a 7-day window covers.
            ("edge.com", "g2", "pricing", "", (AS_OF_DAY - 6) * DAY, 1),
            ("edge.com", "g2", "comparison", "", (AS_OF_DAY - 1) * DAY, 1),
            # as_of's own day counts whole (the rollup is daily), even after as_of.
            ("now.com", "g2", "pricing", "", AS_OF_DAY * DAY + DAY - 1, 1),
            ("now.com", "bombora", "surge", "CRM", AS_OF_DAY * DAY, 72.5),
            ("now.com", "bombora", "surge", "ERP", AS_OF_DAY * DAY, 60),
            # The day after as_of never counts.
            ("late.com", "g2", "pricing", "", (AS_OF_DAY + 1) * DAY, 1),
        ],
    )

    def c(doc: Any, want: set[str]) -> None:
        check(workspace, engine, ids, doc, want)

    g2 = {"source": "g2", "type": "pricing"}
    c({"signal": g2, "window_days": 7, "op": "gte", "value": 1}, {"edge.com", "now.com"})
    c({"signal": g2, "window_days": 8, "op": "gte", "value": 1}, {"old.com", "edge.com", "now.com"})
    c({"signal": g2, "window_days": 1, "op": "gte", "value": 1}, {"now.com"})
    c({"signal": {"source": "g2"}, "window_days": 7, "op": "eq", "value": 2}, {"edge.com"})
    c(
        {"signal": g2, "window_days": 7, "op": "eq", "value": 0},
        {"old.com", "late.com"},
    )
    bom = {"source": "bombora", "topic": "CRM"}
    c({"signal": bom, "window_days": 7, "op": "gte", "value": 1}, {"now.com"})
    c(
        {"signal": bom, "window_days": 7, "measure": "value", "op": "gte", "value": 72.5},
        {"now.com"},
    )
    c({"signal": bom, "window_days": 7, "measure": "value", "op": "gt", "value": 72.5}, set())
    c(
        {
            "signal": {"source": "bombora"},
            "window_days": 7,
            "measure": "value",
            "op": "between",
            "value": [132.5, 132.5],
        },
        {"now.com"},
    )


def test_is_surging_exactly() -> None:
    p = SurgeParams()  # 7 recent days, 28 baseline days, at least 3, twice the rate
    assert is_surging(3, 0, p) and not is_surging(2, 0, p)
    assert is_surging(8, 16, p)  # 8 * 28 == 2 * 7 * 16: the boundary surges
    assert not is_surging(8, 17, p)
    assert is_surging(3, 1, p)  # an empty baseline counts as one
    odd = SurgeParams(ratio=1.1)
    assert odd.ratio_fraction().numerator == 11 and odd.ratio_fraction().denominator == 10
    assert is_surging(11, 40, odd)  # 11 * 28 * 10 == 11 * 7 * 40
    assert not is_surging(11, 41, odd)


def test_surge_leaf_at_its_boundaries(workspace: Workspace, engine: Any) -> None:
    doms = ("three.com", "two.com", "eq.com", "below.com", "shift.com")
    ids = push_accounts(workspace.api, [{"domain": d, "name": d} for d in doms])
    rows: list[tuple[str, str, str, str, int, float]] = []

    def put(dom: str, day: int, n: int, typ: str = "page_view") -> None:
        rows.extend((dom, "website", typ, "", day * DAY + i, 1.0) for i in range(n))

    put("three.com", AS_OF_DAY, 3)  # 3 recent, no baseline: surging
    put("two.com", AS_OF_DAY, 2)  # too few
    put("eq.com", AS_OF_DAY - 6, 8)  # recent window starts 6 days back
    put("eq.com", AS_OF_DAY - 7, 16)  # baseline starts 7 days back: exactly twice the rate
    put("below.com", AS_OF_DAY, 8)
    put("below.com", AS_OF_DAY - 34, 17)  # the oldest baseline day (7 + 28 - 1 back)
    put("shift.com", AS_OF_DAY + 1, 5)  # the day after as_of: not counted yet ...
    put("shift.com", AS_OF_DAY - 35, 50)  # ... and this is just outside the baseline
    add_signals(engine, workspace.id, rows)

    def c(doc: Any, want: set[str], ctx: Context = CTX) -> None:
        check(workspace, engine, ids, doc, want, ctx=ctx)

    c({"surge": {"source": "website"}, "op": "eq", "value": True}, {"three.com", "eq.com"})
    c(
        {"surge": {"source": "website"}, "op": "eq", "value": False},
        {"two.com", "below.com", "shift.com"},
    )
    c(
        {"surge": {"source": "website"}, "op": "ne", "value": True},
        {"two.com", "below.com", "shift.com"},
    )
    c({"surge": {"source": "website", "type": "form_submit"}, "op": "eq", "value": True}, set())
    c({"surge": {"source": "g2"}, "op": "eq", "value": True}, set())
    # A day later shift.com's 5 signals are recent; eq.com's recent 8 moved to its
    # baseline; below.com's 17 left its baseline.
    later = Context(as_of=AS_OF + DAY)
    c(
        {"surge": {"source": "website"}, "op": "eq", "value": True},
        {"three.com", "below.com", "shift.com"},
        later,
    )
    # With a looser threshold two signals surge.
    loose = Context(as_of=AS_OF, surge=SurgeParams(min_recent=2))
    c(
        {"surge": {"source": "website"}, "op": "eq", "value": True},
        {"three.com", "two.com", "eq.com"},
        loose,
    )


# ---- deals and activities ----------------------------------------------------------------


def test_deal_status_mapping() -> None:
    s = DEFAULT_DEAL_STAGES
    assert deal_status("Closed Won", s) == "won"
    assert deal_status("closed lost", s) == "lost"
    assert deal_status("CLOSED LOST", s) == "lost"
    assert deal_status("Won", s) == "won"
    assert deal_status("Lost", s) == "lost"
    assert deal_status("Negotiation", s) == "open"
    assert deal_status(None, s) == "open"
    assert deal_status("", s) == "open"
    custom = DealStageMap.of({"Signed": "won", "Closed Won (churned)": "lost"})
    assert deal_status("SIGNED", custom) == "won"
    assert deal_status("closed won (churned)", custom) == "lost"
    assert deal_status("Closed Won", custom) == "won"


def iso(us: int) -> str:
    return format_us(us)


def test_deals_link_status_amount_and_windows(workspace: Workspace, engine: Any) -> None:
    api = workspace.api
    ids = push_accounts(
        api,
        [
            {"domain": "ext.com", "name": "Ext", "externalId": "E1"},
            {"domain": "dom.com", "name": "Dom"},
            {"domain": "none.com", "name": "None"},
            {"domain": "shadow.com", "name": "Shadow"},
        ],
    )
    start = AS_OF - 30 * DAY
    push_deals(
        api,
        [
            # By externalId (the domain names another account, which does not get it).
            {
                "externalDealId": "D1",
                "name": "D1",
                "stageLabel": "Closed Won",
                "amount": 5000,
                "startDate": iso(start),
                "associatedAccounts": [{"externalId": "E1", "domain": "dom.com"}],
            },
            # By domain.
            {
                "externalDealId": "D2",
                "name": "D2",
                "stageLabel": "Negotiation",
                "amount": 100,
                "startDate": iso(AS_OF - 7 * DAY),
                "associatedAccounts": [{"domain": "dom.com"}],
            },
            {
                "externalDealId": "D3",
                "name": "D3",
                "stageLabel": "closed lost",
                "startDate": iso(AS_OF - 7 * DAY + 1),
                "associatedAccounts": [{"domain": "dom.com"}],
            },
            # An externalId matching no account falls back to the domain.
            {
                "externalDealId": "D4",
                "name": "D4",
                "stageLabel": None,
                "amount": 100,
                "startDate": iso(start),
                "associatedAccounts": [{"externalId": "NOPE", "domain": "shadow.com"}],
            },
            # Starts after as_of: does not exist yet at as_of.
            {
                "externalDealId": "D5",
                "name": "D5",
                "stageLabel": "Won",
                "startDate": iso(AS_OF + 1),
                "associatedAccounts": [{"domain": "none.com"}],
            },
            # Two associations with the same account count once.
            {
                "externalDealId": "D6",
                "name": "D6",
                "stageLabel": "Discovery",
                "amount": 1,
                "startDate": iso(start),
                "associatedAccounts": [{"externalId": "E1"}, {"domain": "ext.com"}],
            },
        ],
    )

    def c(doc: Any, want: set[str], ctx: Context = CTX) -> None:
        check(workspace, engine, ids, doc, want, ctx=ctx)

    c({"deal": {"status": "won"}}, {"ext.com"})
    c({"deal": {"status": "open"}}, {"ext.com", "dom.com", "shadow.com"})
    c({"deal": {"status": "lost"}}, {"dom.com"})
    # D1 names ext.com by externalId, so dom.com (its domain) does not get it.
    c({"deal": {"status": "any"}, "op": "eq", "value": 2}, {"ext.com", "dom.com"})
    c({"deal": {"status": "any"}, "op": "eq", "value": 1}, {"shadow.com"})
    c({"deal": {"status": "any"}, "op": "eq", "value": 0}, {"none.com"})
    c({"deal": {"status": "won"}}, {"ext.com", "none.com"}, Context(as_of=AS_OF + 1))
    c(
        {"deal": {"status": "any", "amount": {"op": "gte", "value": 100}}},
        {"ext.com", "dom.com", "shadow.com"},
    )
    c({"deal": {"status": "any", "amount": {"op": "gt", "value": 100}}}, {"ext.com"})
    # A deal without an amount is not 100: `ne` counts it.
    c({"deal": {"status": "lost", "amount": {"op": "ne", "value": 100}}}, {"dom.com"})
    c({"deal": {"status": "lost", "amount": {"op": "lt", "value": 100}}}, set())
    # within_days 7 covers (as_of - 7 days, as_of]: exactly 7 days old is out.
    c({"deal": {"status": "any", "within_days": 7}}, {"dom.com"})
    c({"deal": {"status": "open", "within_days": 7}}, set())
    c({"deal": {"status": "lost", "within_days": 7}}, {"dom.com"})
    custom = Context(as_of=AS_OF, deal_stages=DealStageMap.of({"Discovery": "won"}))
    c({"deal": {"status": "won"}, "op": "eq", "value": 2}, {"ext.com"}, custom)


def test_deal_without_start_date_dates_from_its_push(workspace: Workspace, engine: Any) -> None:
    from intently.kit.timefmt import now_us

    ids = push_accounts(workspace.api, [{"domain": "p.com", "name": "P"}])
    before = now_us()
    push_deals(
        workspace.api,
        [{"externalDealId": "N1", "name": "N1", "associatedAccounts": [{"domain": "p.com"}]}],
    )
    after = now_us()
    check(
        workspace, engine, ids, {"deal": {"status": "open"}}, set(), ctx=Context(as_of=before - 1)
    )
    check(
        workspace,
        engine,
        ids,
        {"deal": {"status": "open", "within_days": 1}},
        {"p.com"},
        ctx=Context(as_of=after),
    )


def test_activities_by_type_in_window(workspace: Workspace, engine: Any) -> None:
    ids = push_accounts(
        workspace.api, [{"domain": d, "name": d} for d in ("a.com", "b.com", "c.com")]
    )
    push_activities(
        workspace.api,
        [
            activity("A1", "call", "a.com", iso(AS_OF - 7 * DAY)),  # exactly 7 days: out
            activity("A2", "email", "a.com", iso(AS_OF - 7 * DAY + 1)),  # in
            activity("B1", "call", "b.com", iso(AS_OF)),  # at as_of: in
            activity("B2", "Call", "b.com", iso(AS_OF - DAY)),
            activity("C1", "email", "c.com", iso(AS_OF + 1)),  # after as_of: out
            activity("Z1", "call", "nobody.com", iso(AS_OF)),  # no account
        ],
    )

    def c(doc: Any, want: set[str]) -> None:
        check(workspace, engine, ids, doc, want)

    c({"activity": {"type": "call"}, "window_days": 7, "op": "gte", "value": 1}, {"b.com"})
    c({"activity": {"type": "call"}, "window_days": 8, "op": "gte", "value": 1}, {"a.com", "b.com"})
    c({"activity": {"type": "email"}, "window_days": 7, "op": "gte", "value": 1}, {"a.com"})
    c({"activity": {"type": "any"}, "window_days": 7, "op": "eq", "value": 2}, {"b.com"})
    c({"activity": {"type": "any"}, "window_days": 30, "op": "eq", "value": 0}, {"c.com"})


# ---- combinators and tenancy -------------------------------------------------------------


def test_combinators(workspace: Workspace, engine: Any) -> None:
    ids = push_accounts(
        workspace.api,
        [{"domain": "x.com", "name": "X", "tags": ["t"]}, {"domain": "y.com", "name": "Y"}],
    )

    def c(doc: Any, want: set[str]) -> None:
        check(workspace, engine, ids, doc, want)

    c({"all": []}, {"x.com", "y.com"})
    c({"any": []}, set())
    c({"not": {"any": []}}, {"x.com", "y.com"})
    tag = {"field": "tags", "op": "contains", "value": "t"}
    c({"all": [tag, {"field": "name", "op": "eq", "value": "X"}]}, {"x.com"})
    c({"any": [tag, {"field": "name", "op": "eq", "value": "Y"}]}, {"x.com", "y.com"})
    c({"not": tag}, {"y.com"})
    c({"not": {"not": tag}}, {"x.com"})


def test_other_workspaces_data_does_not_count(
    workspace: Workspace, other: Workspace, engine: Any
) -> None:
    ids = push_accounts(workspace.api, [{"domain": "shared.com", "name": "S"}])
    push_accounts(other.api, [{"domain": "shared.com", "name": "S", "tags": ["t"]}])
    add_signals(engine, other.id, [("shared.com", "g2", "pricing", "", AS_OF, 1)])
    push_deals(
        other.api,
        [{"externalDealId": "O", "name": "O", "associatedAccounts": [{"domain": "shared.com"}]}],
    )
    push_activities(other.api, [activity("O1", "call", "shared.com", iso(AS_OF))])
    for doc in (
        {"field": "tags", "op": "exists"},
        {"signal": {"source": "g2"}, "window_days": 3, "op": "gte", "value": 1},
        {"deal": {"status": "any"}},
        {"activity": {"type": "any"}, "window_days": 3, "op": "gte", "value": 1},
    ):
        check(workspace, engine, ids, doc, set(), ctx=Context(as_of=AS_OF + 2 * DAY))


@pytest.mark.parametrize("n", [1, 7])
def test_matching_ids_restricted_to_given_ids(workspace: Workspace, engine: Any, n: int) -> None:
    from intently.rules import matching_ids, parse_rule

    ids = push_accounts(workspace.api, [{"domain": f"r{i}.com", "name": "R"} for i in range(n)])
    rule = parse_rule({"field": "name", "op": "eq", "value": "R"})
    some = sorted(ids.values())[: max(1, n // 2)]
    with engine.connect() as conn:
        assert matching_ids(conn, workspace.id, rule, CTX, account_ids=some) == set(some)
        assert matching_ids(conn, workspace.id, rule, CTX, account_ids=[]) == set()
