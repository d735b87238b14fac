"""LinkedIn organizations: naming one (URN, id, company page URL), and resolving it to a
domain through the mapping table, an account's linkedinUrl, or its website."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection, Engine

from intently.accounts.tables import accounts as accounts_t
from intently.ingest.tables import linkedin_orgs
from intently.kit.db import param_marker, read_tx, write_tx
from intently.kit.domains import try_normalise_domain
from intently.kit.errors import BadRequest
from intently.kit.timefmt import now_us

CONFIDENCE = {"mapping": 1.0, "linkedin_url": 0.95, "website": 0.8}


class InvalidOrganization(BadRequest):
    """A value that names no LinkedIn organization."""


_URN_RE = re.compile(r"urn:li:(?:organization|company):(\d{1,19})", re.IGNORECASE | re.ASCII)
_ID_RE = re.compile(r"\d{1,19}", re.ASCII)
_COMPANY_URL_RE = re.compile(
    r"(?:[a-z][a-z0-9+.\-]*://)?(?:[a-z0-9\-]+\.)*linkedin\.com/company/([^/?#\s]+)",
    re.IGNORECASE,
)


def company_ref(value: str) -> tuple[str, str] | None:
    """("id", "12345") or ("vanity", "acme-corp") from a company page URL or an URN; else None."""
    text = value.strip()
    m = _URN_RE.fullmatch(text)
    if m:
        return ("id", str(int(m.group(1)))) if int(m.group(1)) else None
    m = _COMPANY_URL_RE.match(text)
    if m is None:
        return None
    segment = unquote(m.group(1)).strip().lower()
    if _ID_RE.fullmatch(segment):
        return ("id", str(int(segment))) if int(segment) else None
    return ("vanity", segment) if segment else None


def normalise_org(value: str) -> str:
    """`urn:li:organization:<id>` from an URN, a bare id or a company page URL with a numeric id.

    `urn:li:company:<id>` (LinkedIn's older name for the same ids) is accepted too. A page
    URL with a vanity name (`/company/acme-corp`) is not an id: it raises, like any other text.
    """
    text = value.strip()
    ref = ("id", str(int(text))) if _ID_RE.fullmatch(text) and int(text) else company_ref(text)
    if ref is None or ref[0] != "id":
        raise InvalidOrganization(
            f"'{value}' is not a LinkedIn organization: expected urn:li:organization:<id>, a "
            "numeric organization id, or a company page URL with a numeric id"
        )
    return f"urn:li:organization:{ref[1]}"


def org_id(urn: str) -> str:
    return urn.rsplit(":", 1)[1]


@dataclass(frozen=True, slots=True)
class Match:
    """How an organization reached a domain."""

    domain: str
    method: str  # mapping | linkedin_url | website

    @property
    def confidence(self) -> float:
        return CONFIDENCE[self.method]


@dataclass(slots=True)
class OrgHints:
    """What a file row or the API said about an organization besides its id."""

    name: str | None = None
    vanity: str | None = None
    website: str | None = None  # a normalised domain


class OrgResolver:
    """Resolves organizations to domains for one run, remembering every answer it gave."""

    def __init__(self, engine: Engine, ws: int) -> None:
        self.engine, self.ws = engine, ws
        self._cache: dict[str, Match | None] = {}
        # What an organization that matched nothing was looked up with: a later row that
        # says more (a website, a vanity name) is worth another look.
        self._tried: dict[str, tuple[str | None, str | None]] = {}

    def resolve(self, orgs: dict[str, OrgHints]) -> dict[str, Match | None]:
        todo = {
            o: h
            for o, h in orgs.items()
            if o not in self._cache
            or (
                self._cache[o] is None
                and (h.website or h.vanity)
                and self._tried.get(o) != (h.website, h.vanity)
            )
        }
        if todo:
            found = self._lookup(todo)
            self._cache.update(found)
            for o, match in found.items():
                if match is None:
                    self._tried[o] = (todo[o].website, todo[o].vanity)
        return {o: self._cache[o] for o in orgs}

    def forget(self, orgs: Iterable[str]) -> None:
        """Resolve these again next time (the API told us more about them)."""
        for o in orgs:
            self._cache.pop(o, None)

    def _lookup(self, orgs: dict[str, OrgHints]) -> dict[str, Match | None]:
        out: dict[str, Match | None] = {}
        rest: dict[str, OrgHints] = {}
        with read_tx(self.engine) as conn:
            stored = _stored_orgs(conn, self.ws, list(orgs))
            for org, hints in orgs.items():
                row = stored.get(org)
                if row is not None and row[1] != "website":
                    out[org] = Match(row[0], "mapping")
                else:
                    rest[org] = hints
            by_url = (
                _orgs_by_linkedin_url(
                    conn,
                    self.ws,
                    ids={org_id(o): o for o in rest},
                    vanities={h.vanity: o for o, h in rest.items() if h.vanity},
                )
                if rest
                else {}
            )
        learned: list[tuple[str, str, str | None]] = []
        for org, hints in rest.items():
            if org in by_url:
                out[org] = Match(by_url[org], "linkedin_url")
                continue
            known = stored.get(org)
            if hints.website and (known is None or known[0] != hints.website):
                learned.append((org, hints.website, hints.name))
            website = hints.website or (known[0] if known else None)
            out[org] = Match(website, "website") if website else None
        if learned:
            with write_tx(self.engine) as conn:
                _store_websites(conn, self.ws, learned)
        return out


def map_org(engine: Engine, ws: int, org: str, domain: str) -> str:
    """Map an organization to a domain by hand (over any website learned for it); its URN."""
    urn = normalise_org(org)
    normalised = try_normalise_domain(domain)
    if normalised is None:
        raise BadRequest(f"'{domain}' is not a domain")
    with write_tx(engine) as conn:
        m = param_marker(conn)
        conn.exec_driver_sql(
            "INSERT INTO linkedin_orgs (workspace_id, org, domain, name, origin, updated_at) "
            f"VALUES ({m}, {m}, {m}, NULL, 'manual', {m}) ON CONFLICT (workspace_id, org) "
            "DO UPDATE SET domain = excluded.domain, origin = excluded.origin, "
            "updated_at = excluded.updated_at",
            (ws, urn, normalised, now_us()),
        )
    return urn


# ---- queries -----------------------------------------------------------------------------


def _stored_orgs(conn: Connection, ws: int, orgs: list[str]) -> dict[str, tuple[str, str]]:
    """org -> (domain, origin) of the workspace's mapping rows for these organizations."""
    out: dict[str, tuple[str, str]] = {}
    t = linkedin_orgs.c
    for i in range(0, len(orgs), 5000):
        q = select(t.org, t.domain, t.origin).where(
            t.workspace_id == ws, t.org.in_(orgs[i : i + 5000])
        )
        for org, domain, origin in conn.execute(q):
            out[org] = (domain, origin)
    return out


def _orgs_by_linkedin_url(
    conn: Connection, ws: int, *, ids: dict[str, str], vanities: dict[str, str]
) -> dict[str, str]:
    """org -> domain of the oldest account whose linkedinUrl names it (by id or vanity name).

    linkedinUrl is free text without an index, so this reads the workspace's accounts that
    have a company URL once per call, streamed; callers ask once per chunk of rows.
    """
    a = accounts_t.c
    url = func.lower(a.linkedin_url)
    q = (
        select(a.domain, a.linkedin_url)
        .where(
            a.workspace_id == ws,
            a.linkedin_url.is_not(None),
            or_(url.like("%linkedin.com/company/%"), url.like("urn:li:%")),
        )
        .order_by(a.created_at, a.id)
        .execution_options(yield_per=2000)
    )
    out: dict[str, str] = {}
    for domain, linkedin_url in conn.execute(q):
        ref = company_ref(linkedin_url)
        if ref is None:
            continue
        org = ids.get(ref[1]) if ref[0] == "id" else vanities.get(ref[1])
        if org is not None and org not in out:
            out[org] = domain
    return out


def _store_websites(conn: Connection, ws: int, rows: list[tuple[str, str, str | None]]) -> None:
    """Keep websites learned for organizations; never over a mapping made by hand."""
    m = param_marker(conn)
    now = now_us()
    conn.exec_driver_sql(
        "INSERT INTO linkedin_orgs (workspace_id, org, domain, name, origin, updated_at) "
        f"VALUES ({m}, {m}, {m}, {m}, 'website', {m}) ON CONFLICT (workspace_id, org) "
        "DO UPDATE SET domain = excluded.domain, "
        "name = COALESCE(excluded.name, linkedin_orgs.name), updated_at = excluded.updated_at "
        "WHERE linkedin_orgs.origin = 'website'",
        [(ws, org, domain, name, now) for org, domain, name in rows],
    )
