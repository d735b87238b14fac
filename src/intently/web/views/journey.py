"""Journey page: the funnel of accounts per stage now, and how accounts moved between
stages over the last 7 and 30 days."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.kit.timefmt import US_PER_DAY, now_us
from intently.stages.service import journey_summary
from intently.web.session import PageError, Viewer, engine_of
from intently.web.templating import render

router = APIRouter()

PERIODS = (7, 30)
TOP_FLOWS = 12
UNPLACED = "Not placed yet"


@dataclass
class StageRow:
    name: str
    count: int = 0
    share: float = 0.0  # % of all accounts
    width: float = 0.0  # bar length, % of the largest stage
    current: bool = True  # in the active stage list (else a stage of an older list)
    entered: dict[int, int] = field(default_factory=lambda: dict.fromkeys(PERIODS, 0))
    left: dict[int, int] = field(default_factory=lambda: dict.fromkeys(PERIODS, 0))

    def net(self, days: int) -> int:
        return self.entered[days] - self.left[days]


def _days(raw: str | None) -> int:
    if raw is None or raw == "":
        return 30
    if raw.strip() not in ("7", "30"):
        raise PageError(400, f"days must be 7 or 30, got '{raw[:40]}'")
    return int(raw)


def _chart(rows: list[StageRow], days: int) -> dict[str, Any]:
    """Chart.js config: accounts entering and leaving each stage over `days`."""
    return {
        "type": "bar",
        "data": {
            "labels": [r.name for r in rows],
            "datasets": [
                {
                    "label": f"Entered ({days} d)",
                    "data": [r.entered[days] for r in rows],
                    "backgroundColor": "#2b8a3e",
                },
                {
                    "label": f"Left ({days} d)",
                    "data": [r.left[days] for r in rows],
                    "backgroundColor": "#c92a2a",
                },
            ],
        },
        "options": {
            "plugins": {"legend": {"position": "bottom"}},
            "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}},
        },
    }


@router.get("/journey")
def journey(request: Request, user: Viewer, days: str | None = None) -> Response:
    chosen = _days(days)
    now = now_us()
    since = {d: now - d * US_PER_DAY for d in PERIODS}
    version, definition, counts, moves = journey_summary(
        engine_of(request), user.workspace_id, since[30], since[7]
    )

    names = [st["name"] for st in definition["stages"]]
    rows = [StageRow(n) for n in names]
    by_name = {r.name: r for r in rows}
    # Stages an older stage list named, still on accounts or in recent changes.
    older = {k for k in counts if k is not None and k not in by_name}
    older |= {n for f, t, _, _ in moves for n in (f, t) if n is not None and n not in by_name}
    for name in sorted(older, key=str.casefold):
        by_name[name] = StageRow(name, current=False)
        rows.append(by_name[name])
    unplaced = counts.get(None, 0)
    total = sum(counts.values())
    for stage, n in counts.items():
        if stage is not None:
            by_name[stage].count = n
    top = max([r.count for r in rows] + [unplaced, 1])
    for r in rows:
        r.share = 100.0 * r.count / total if total else 0.0
        r.width = 100.0 * r.count / top
    flows: dict[int, list[tuple[str | None, str, int]]] = {d: [] for d in PERIODS}
    changes = {d: 0 for d in PERIODS}
    for from_stage, to_stage, n30, n7 in moves:
        for d, n in ((30, n30), (7, n7)):
            if not n:
                continue
            changes[d] += n
            by_name[to_stage].entered[d] += n
            if from_stage is not None:
                by_name[from_stage].left[d] += n
            flows[d].append((from_stage, to_stage, n))
    for d in PERIODS:
        flows[d].sort(key=lambda f: (-f[2], f[0] or "", f[1]))
    return render(
        request,
        "journey/journey.html",
        user,
        nav="journey",
        rows=rows,
        total=total,
        unplaced=unplaced,
        unplaced_share=100.0 * unplaced / total if total else 0.0,
        unplaced_width=100.0 * unplaced / top,
        unplaced_label=UNPLACED,
        version=version,
        days=chosen,
        periods=PERIODS,
        changes=changes,
        flows=flows[chosen][:TOP_FLOWS],
        more_flows=max(0, len(flows[chosen]) - TOP_FLOWS),
        chart=_chart(rows, chosen) if changes[chosen] else None,
    )
