"""The ranked accounts list of the dashboard: filters, keyset pages by score, page extras.

Every page is read off the score index (ix_accounts_workspace_id_score), walking back
from the top, so its cost is the rows it passes over, not the workspace's size; or, for
a small set, the set is read and sorted:
- a score range narrows the index range itself;
- a small stage (up to SMALL_SET accounts) is read off ix_accounts_workspace_id_stage and
  sorted; a large one is checked per row while walking the score index (there is no
  (stage, score) index: it made every full rescore 25 s slower at 1,000,000 accounts);
- a small segment (up to SMALL_SET members) is read from its members and sorted;
  a large one is checked per row while walking the score index (its members are common);
- a search reads the accounts whose domain, or lower-cased name, starts with the text off
  their indexes (uq_accounts_workspace_id_domain, ix_accounts_workspace_id_lower_name), at
  most SEARCH_CANDIDATES of each, and ranks those;
- source, tag, fit score and the company profile filters (industry, country, least
  employees, grade) are checked per row while walking: no index of their own, so no
  cost to rescores and none to a list that does not filter on them. The list is not
  sorted by fit: that needs a (fit, id) index, which every scoring write of the fit
  column keeps up (as the (stage, score) index above, the full rescore's cost).

Without statistics (the app never ANALYZEs SQLite) SQLite's planner guesses, and guessed
wrong for several of these; where it did, the query says which index to take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, literal, literal_column, select, tuple_, union
from sqlalchemy.engine import Connection, Engine

from intently.accounts.tables import accounts as a
from intently.activities.tables import activities
from intently.catalog import SCORE_COLUMNS
from intently.kit.db import fetch_all, in_values, is_sqlite, json_value, param_marker, read_tx
from intently.kit.errors import BadRequest
from intently.kit.timefmt import US_PER_DAY
from intently.segments.tables import segment_members as sm
from intently.segments.tables import segments as seg
from intently.signals.tables import signals
from intently.stages.definition import active_definition
from intently.stages.tables import journey_days as jd

SMALL_SET = 20_000
SEARCH_CANDIDATES = 2_000
PAGE_SIZE = 50
TREND_DAYS = 7

# The sub-score each intent source feeds (filter "accounts with intent from this source").
SOURCE_COLUMNS = {source: a.c[column] for source, column in SCORE_COLUMNS.items()}
NO_STAGE = "(none)"


@dataclass(frozen=True)
class Filters:
    stage: str | None = None
    segment: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    source: str | None = None
    tag: str | None = None
    q: str | None = None
    fit_min: float | None = None  # rtp_fit_score at least
    industry: str | None = None  # any case
    country: str | None = None  # ISO alpha-2, any case
    employees_min: int | None = None
    grade: str | None = None  # "B2", or a fit letter alone ("B": B1 to B4)

    def check(self) -> None:
        if self.country is not None and not (
            len(self.country) == 2 and self.country.isascii() and self.country.isalpha()
        ):
            raise BadRequest(f"country should be a 2-letter ISO code; got '{self.country}'")
        if self.employees_min is not None and self.employees_min < 0:
            raise BadRequest(f"employees_min should be 0 or more; got '{self.employees_min}'")
        if self.grade is not None and not (
            1 <= len(self.grade) <= 8 and self.grade.isascii() and self.grade.isalnum()
        ):
            raise BadRequest(f"grade should be a grade such as B2, or a letter; got '{self.grade}'")
        for name, value in (
            ("score_min", self.score_min),
            ("score_max", self.score_max),
            ("fit_min", self.fit_min),
        ):
            if value is not None and not 0 <= value <= 100:
                raise BadRequest(f"{name} should be between 0 and 100; got '{value}'")
        if self.source is not None and self.source not in SOURCE_COLUMNS:
            raise BadRequest(
                f"source should be one of {', '.join(SOURCE_COLUMNS)}; got '{self.source}'"
            )


@dataclass
class Row:
    rtp_aid: str
    name: str
    domain: str
    score: float
    website: float
    bombora: float
    g2: float
    advertising: float
    stage: str | None
    tags: list[str]
    fit: float | None = None  # None: not graded yet
    grade: str | None = None
    trend: float | None = None  # score now less score TREND_DAYS ago; None: no history
    last_activity: int | None = None
    segments: list[str] = field(default_factory=list)


_COLUMNS = (
    a.c.id,
    a.c.name,
    a.c.domain,
    a.c.rtp_account_score,
    a.c.rtp_website_intent_score,
    a.c.rtp_bombora_intent_score,
    a.c.rtp_g2_intent_score,
    a.c.rtp_advertising_activity_score,
    a.c.rtp_journey_stage,
    a.c.tags,
    a.c.rtp_fit_score,
    a.c.rtp_grade,
)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _query(
    conn: Connection,
    ws: int,
    f: Filters,
    after: tuple[float, str] | None,
    *,
    small_segment: bool,
    small_stage: bool,
) -> Select[Any]:
    q = select(*_COLUMNS).where(a.c.workspace_id == ws)
    if f.stage:
        stage: Any = a.c.rtp_journey_stage
        if not small_stage and is_sqlite(conn):
            # `+column`: SQLite must not take the stage index (and sort a large stage);
            # the score index gives the order and the stage is checked as rows come.
            stage = literal_column("+accounts.rtp_journey_stage")
        q = q.where(stage.is_(None) if f.stage == NO_STAGE else stage == f.stage)
    # A small set is read and sorted (_sorted_from_candidates): no score comparison may
    # lead SQLite to range-scan the score index instead (page 20 of a 16,000-account
    # stage took 1.8 s that way); `+column` keeps the index out of it.
    sorted_set = bool(f.q or small_segment or small_stage) and is_sqlite(conn)
    score: Any = (
        literal_column("+accounts.rtp_account_score") if sorted_set else a.c.rtp_account_score
    )
    if f.score_min is not None:
        q = q.where(score >= f.score_min)
    if f.score_max is not None:
        q = q.where(score <= f.score_max)
    if f.source:
        q = q.where(SOURCE_COLUMNS[f.source] > 0)
    if f.fit_min is not None:
        q = q.where(a.c.rtp_fit_score >= f.fit_min)
    if f.grade:
        # A grade is its fit letter(s) then its intent digit(s): "A" takes A1, A2, ...
        # Any case: "a2" is A2.
        grade, wanted = func.upper(a.c.rtp_grade), f.grade.upper()
        q = q.where(
            grade == wanted if wanted[-1].isdigit() else grade.startswith(wanted, autoescape=True)
        )
    if f.tag:
        if is_sqlite(conn):
            each = func.json_each(a.c.tags).table_valued("value")
            q = q.where(select(literal(1)).select_from(each).where(each.c.value == f.tag).exists())
        else:
            q = q.where(a.c.tags.op("@>")(func.jsonb_build_array(f.tag)))
    if f.industry:
        q = q.where(func.lower(a.c.industry) == f.industry.lower())
    if f.country:
        q = q.where(a.c.country == f.country.upper())
    if f.employees_min is not None:
        q = q.where(a.c.employee_count >= f.employees_min)
    if f.q:
        q = q.where(a.c.id.in_(_search_candidates(ws, f.q)))
    if f.segment and small_segment:
        # Few members: the query is driven from them (IN), see _sorted_from_candidates.
        members = select(sm.c.account_id).where(
            sm.c.workspace_id == ws, sm.c.segment_id == f.segment
        )
        q = q.where(a.c.id.in_(members))
    elif f.segment:
        # Many members: common along the score index, so each row is checked as it comes.
        q = q.where(
            select(literal(1))
            .where(
                sm.c.workspace_id == ws,
                sm.c.segment_id == f.segment,
                sm.c.account_id == a.c.id,
            )
            .exists()
        )
    if after is not None:
        key: Any = tuple_(a.c.rtp_account_score, a.c.id)
        if sorted_set:
            key = tuple_(score, literal_column("+accounts.id"))
        q = q.where(key < tuple_(after[0], after[1]))
    return q.order_by(a.c.rtp_account_score.desc(), a.c.id.desc())


def _search_candidates(ws: int, text: str) -> Any:
    """Ids of accounts whose domain or lower-cased name starts with the text (bounded)."""
    low = text.strip().lower()
    upper = low + "\U0010ffff"
    by_domain = (
        select(a.c.id)
        .where(a.c.workspace_id == ws, a.c.domain >= low, a.c.domain < upper)
        .order_by(a.c.domain)
        .limit(SEARCH_CANDIDATES)
    )
    name = func.lower(a.c.name)
    by_name = (
        select(a.c.id)
        .where(a.c.workspace_id == ws, name >= low, name < upper)
        .order_by(name)
        .limit(SEARCH_CANDIDATES)
    )
    return union(select(by_domain.subquery()), select(by_name.subquery()))


def search_is_capped(engine: Engine, ws: int, text: str) -> bool:
    """Whether more accounts start with the text than a search ranks (SEARCH_CANDIDATES
    by domain or by name): the page then says to type more."""
    with read_tx(engine) as conn:
        n = conn.execute(
            select(func.count()).select_from(_search_candidates(ws, text).subquery())
        ).scalar_one()
    return int(n) >= SEARCH_CANDIDATES


def _sorted_from_candidates(conn: Connection, q: Select[Any]) -> Select[Any]:
    """Rank a small candidate set by sorting it, instead of walking the score index.

    SQLite, given ORDER BY on the score index, walks it and tests each row against the
    candidates (a million rows for a handful of matches); `+column` in ORDER BY takes the
    index out of consideration, so the candidates drive. PostgreSQL plans by statistics.
    """
    if not is_sqlite(conn):
        return q
    return q.order_by(None).order_by(
        literal_column("+accounts.rtp_account_score").desc(),
        literal_column("+accounts.id").desc(),
    )


def _small_stage(conn: Connection, ws: int, stage: str) -> bool:
    column = a.c.rtp_journey_stage
    n = conn.execute(
        select(func.count()).select_from(
            select(a.c.id)
            .where(
                a.c.workspace_id == ws, column.is_(None) if stage == NO_STAGE else column == stage
            )
            .limit(SMALL_SET + 1)
            .subquery()
        )
    ).scalar_one()
    return int(n) <= SMALL_SET


def _small_segment(conn: Connection, ws: int, segment_id: str) -> bool:
    n = conn.execute(
        select(func.count()).select_from(
            select(sm.c.account_id)
            .where(sm.c.workspace_id == ws, sm.c.segment_id == segment_id)
            .limit(SMALL_SET + 1)
            .subquery()
        )
    ).scalar_one()
    return int(n) <= SMALL_SET


def ranked_page(
    engine: Engine,
    ws: int,
    f: Filters,
    *,
    after: tuple[float, str] | None = None,
    limit: int = PAGE_SIZE,
    now_us: int,
) -> tuple[list[Row], tuple[float, str] | None]:
    """One page of accounts by score, highest first, and the key to continue after it."""
    f.check()
    with read_tx(engine) as conn:
        small = bool(f.segment) and _small_segment(conn, ws, f.segment or "")
        small_stage = bool(f.stage) and not small and _small_stage(conn, ws, f.stage or "")
        q = _query(conn, ws, f, after, small_segment=small, small_stage=small_stage)
        if f.q or small or small_stage:
            q = _sorted_from_candidates(conn, q)
        rows = conn.execute(q.limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        out = [
            Row(
                r[0],
                r[1],
                r[2],
                float(r[3]),
                float(r[4]),
                float(r[5]),
                float(r[6]),
                float(r[7]),
                r[8],
                _tags(r[9]),
                None if r[10] is None else float(r[10]),
                r[11],
            )
            for r in rows
        ]
        _add_extras(conn, ws, out, now_us)
    key = (out[-1].score, out[-1].rtp_aid) if more and out else None
    return out, key


def _tags(value: Any) -> list[str]:
    tags = json_value(value)
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _add_extras(conn: Connection, ws: int, rows: list[Row], now_us: int) -> None:
    """Trend, last activity and active segment names for the rows of one page."""
    if not rows:
        return
    ids = [r.rtp_aid for r in rows]
    by_id = {r.rtp_aid: r for r in rows}
    then = now_us // US_PER_DAY - TREND_DAYS
    inner = jd.alias("inner")
    past = conn.execute(
        select(jd.c.account_id, jd.c.score).where(
            jd.c.workspace_id == ws,
            jd.c.account_id.in_(ids),
            jd.c.day
            == select(func.max(inner.c.day))
            .where(
                inner.c.workspace_id == ws,
                inner.c.account_id == jd.c.account_id,
                inner.c.day <= then,
            )
            .scalar_subquery(),
        )
    ).all()
    for aid, score in past:
        by_id[aid].trend = by_id[aid].score - float(score)
    domains = {r.domain: r for r in rows}
    for table in (signals, activities):
        found = conn.execute(
            select(table.c.domain, func.max(table.c.occurred_at))
            .where(table.c.workspace_id == ws, table.c.domain.in_(list(domains)))
            .group_by(table.c.domain)
        ).all()
        for domain, last in found:
            row = domains[domain]
            if last is not None and (row.last_activity is None or last > row.last_activity):
                row.last_activity = int(last)
    for aid, name in _segment_names(conn, ws, ids):
        by_id[aid].segments.append(name)


def _segment_names(conn: Connection, ws: int, ids: list[str]) -> list[tuple[str, str]]:
    """(account id, segment name) of the active segments these accounts are members of."""
    # SQLite, unguided, took the primary key (workspace_id, segment_id, account_id) and
    # scanned every membership of the workspace (145 ms at 4.5 M); the account index is it.
    hint = " INDEXED BY ix_segment_members_workspace_id_account_id" if is_sqlite(conn) else ""
    m = param_marker(conn)
    cond, params = in_values(conn, "sm.account_id", ids)
    return [
        (str(r[0]), str(r[1]))
        for r in fetch_all(
            conn,
            f"SELECT sm.account_id, s.name FROM segment_members sm{hint} "
            "JOIN segments s ON s.workspace_id = sm.workspace_id AND s.id = sm.segment_id "
            f"WHERE sm.workspace_id = {m} AND {cond} AND s.status = 'active' ORDER BY s.name",
            (ws, *params),
        )
    ]


def filter_choices(engine: Engine, ws: int) -> dict[str, Any]:
    """What the filter bar offers: stages in order and the workspace's segments."""
    with read_tx(engine) as conn:
        _, definition = active_definition(conn, ws)
        segs = conn.execute(
            select(seg.c.id, seg.c.name, seg.c.type)
            .where(seg.c.workspace_id == ws, seg.c.status != "archived")
            .order_by(seg.c.name)
        ).all()
    stages = [s["name"] for s in definition.get("stages", [])]
    return {
        "stages": stages,
        "segments": [{"id": r[0], "name": r[1], "type": r[2]} for r in segs],
        "sources": list(SOURCE_COLUMNS),
    }
