"""Sources pages (admins only): the website snippet and write key, IP ranges, vendor file
imports with their reports, puller connections (credentials write-only), source settings,
and the ingest runs with their rejected rows."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from intently.catalog import BUILTIN_SOURCES, SIGNAL_TYPES
from intently.ingest import bombora, connections, g2, linkedin, resolvers, writekeys
from intently.ingest.files import FileLimits
from intently.ingest.schedule import DEFAULT_INTERVAL_MINUTES
from intently.kit.errors import BadRequest
from intently.kit.pagination import CursorCodec
from intently.settings import Settings
from intently.signals import service as signals
from intently.signals.store import RunReport
from intently.web.session import Admin, AdminWriter, PageError, engine_of, is_htmx
from intently.web.templating import render
from intently.web.uploads import saved_upload
from intently.webhooks.service import TargetRefused, check_target

router = APIRouter()

SOURCES = BUILTIN_SOURCES
# The sources that arrive as files or pulls (the website's come through the collector).
VENDORS = tuple(s for s in SOURCES if s != "website")
TITLES = {"website": "Website", "bombora": "Bombora", "g2": "G2", "linkedin": "LinkedIn ads"}
IMPORTERS: dict[str, Callable[..., RunReport]] = {
    "bombora": bombora.import_file,
    "g2": g2.import_file,
    "linkedin": linkedin.import_file,
}
FILE_HELP = {
    "bombora": "The weekly Company Surge CSV (or .csv.gz): Company Name, Domain, Size, "
    "Industry, Category, Topic, Composite Score, Bucket Code; a Week or Date Stamp column, or the "
    "week below.",
    "g2": "A G2 Buyer Intent export (CSV or .csv.gz): Id, Time, Tag, Title, URL, Company Name, "
    "Company Domain.",
    "linkedin": "A LinkedIn company engagement export (CSV or .csv.gz): company name, "
    "organization URN or company page, date or period, impressions, clicks, engagements.",
}
RUNS_PER_PAGE = 50
REJECTS_PER_PAGE = 50
REPORT_REJECTS = 10


# ---- what a puller connection asks for ---------------------------------------------------


class Field_:
    """One connection config field: its default, kind and bounds."""

    def __init__(
        self,
        name: str,
        label: str,
        default: str | int,
        kind: str = "int",
        low: int = 0,
        high: int = 1_000_000,
        help: str = "",
    ) -> None:
        self.name, self.label, self.default, self.kind = name, label, default, kind
        self.low, self.high, self.help = low, high, help


def _interval(provider: str) -> Field_:
    return Field_(
        "interval_minutes",
        "Minutes between scheduled pulls",
        DEFAULT_INTERVAL_MINUTES[provider],
        low=1,
        high=60 * 24 * 31,
    )


CREDENTIALS: dict[str, tuple[tuple[str, str], ...]] = {
    "bombora": (("username", "API user name"), ("password", "API password")),
    "g2": (("token", "API token"),),
    "linkedin": (("access_token", "OAuth access token"),),
}
CONFIG: dict[str, tuple[Field_, ...]] = {
    "bombora": (
        Field_("base_url", "API base URL", bombora.DEFAULT_BASE_URL, "url"),
        _interval("bombora"),
    ),
    "g2": (
        Field_("base_url", "API base URL", g2.DEFAULT_BASE_URL, "url"),
        Field_("initial_days", "Days to read on the first pull", 30, low=0, high=730),
        Field_("window_hours", "Hours per request window", 24, low=1, high=24 * 31),
        _interval("g2"),
    ),
    "linkedin": (
        Field_(
            "accounts",
            "Ad account ids (comma separated)",
            "",
            "accounts",
            help="The sponsored ad accounts to read, e.g. 503412345, 503498765.",
        ),
        Field_("version", "API version (YYYYMM)", linkedin.DEFAULT_API_VERSION, "version"),
        Field_("base_url", "API base URL", linkedin.DEFAULT_BASE_URL, "url"),
        Field_("initial_days", "Days to read on the first pull", 30, low=1, high=730),
        _interval("linkedin"),
    ),
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.intently.settings
    return settings


def _codec(request: Request) -> CursorCodec:
    codec: CursorCodec = request.app.state.intently.codec
    return codec


def _source(source: str, allowed: tuple[str, ...] = SOURCES) -> str:
    if source not in allowed:
        raise PageError(404, f"There is no source '{source}' here (one of {', '.join(allowed)}).")
    return source


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# ---- reading what the cards show ---------------------------------------------------------


def _runs(request: Request, ws: int, source: str, limit: int) -> list[dict[str, Any]]:
    page = signals.list_runs(
        engine_of(request), _codec(request), ws, limit=limit, cursor=None, source=source
    )
    runs: list[dict[str, Any]] = page["data"]
    return runs


def _connection_view(request: Request, ws: int, provider: str) -> dict[str, Any]:
    """A connection as the page may show it: config, status, and which credentials are set
    (booleans only: the values never leave this function)."""
    found = next(
        (c for c in connections.describe(engine_of(request), ws) if c["provider"] == provider),
        None,
    )
    key = _settings(request).credentials_key
    view: dict[str, Any] = {
        "provider": provider,
        "exists": found is not None,
        "enabled": bool(found["enabled"]) if found else True,
        "config": dict(found["config"] or {}) if found else {},
        "last_run_at": found["last_run_at"] if found else None,
        "last_status": found["last_status"] if found else None,
        "last_error": found["last_error"] if found else None,
        "credentials_set": {},
        "credentials_problem": "" if key else connections.NO_KEY,
        "credential_fields": CREDENTIALS[provider],
        "config_fields": CONFIG[provider],
    }
    if found is not None and key:
        try:
            creds = connections.get_connection(engine_of(request), ws, provider, key=key)[
                "credentials"
            ]
        except BadRequest as exc:
            view["credentials_problem"] = exc.custom_message
        else:
            view["credentials_set"] = {
                name: bool(str(creds.get(name) or "").strip()) for name, _ in CREDENTIALS[provider]
            }
    return view


def _connection_states(request: Request, ws: int) -> dict[str, dict[str, Any]]:
    return {c["provider"]: c for c in connections.describe(engine_of(request), ws)}


# ---- the overview ------------------------------------------------------------------------


@router.get("/sources")
def overview(request: Request, user: Admin) -> Response:
    ws = user.workspace_id
    eng = engine_of(request)
    states = _connection_states(request, ws)
    cards = []
    for source in SOURCES:
        recent = _runs(request, ws, source, 10)
        files = [r for r in recent if r["kind"] in ("file", "pull", "ip_ranges", "reapply")]
        collector = next((r for r in recent if r["kind"] == "collector"), None)
        cards.append(
            {
                "source": source,
                "title": TITLES[source],
                "last": files[0] if files else None,
                "collector": collector,
                "connection": states.get(source),
            }
        )
    return render(
        request,
        "sources/index.html",
        user,
        nav="sources",
        cards=cards,
        ip_ranges=resolvers.count_ranges(eng, ws),
    )


# ---- website: snippet, write key, IP ranges, settings --------------------------------------


def _website_context(request: Request, ws: int) -> dict[str, Any]:
    eng = engine_of(request)
    key = writekeys.get_write_key(eng, ws)
    return {
        "write_key": key,
        "snippet": writekeys.snippet(_base_url(request), key),
        "base_url": _base_url(request),
        "key_cache_seconds": int(writekeys.KEY_CACHE_SECONDS),
        "ip_ranges": resolvers.count_ranges(eng, ws),
        "ip_databases": resolvers.database_paths(_settings(request).ip_databases),
        "recent": _runs(request, ws, "website", 10),
    }


@router.get("/sources/website")
def website(request: Request, user: Admin) -> Response:
    ws = user.workspace_id
    return render(
        request,
        "sources/website.html",
        user,
        nav="sources",
        source="website",
        title=TITLES["website"],
        **_website_context(request, ws),
        settings_card=_settings_card(request, ws, "website"),
    )


@router.post("/sources/website/rotate-key")
def rotate_key(request: Request, user: AdminWriter) -> Response:
    writekeys.rotate_write_key(engine_of(request), user.workspace_id)
    if not is_htmx(request):
        return RedirectResponse("/app/sources/website?rotated=1", status_code=303)
    return render(
        request,
        "sources/_writekey.html",
        user,
        rotated=True,
        **_website_context(request, user.workspace_id),
    )


@router.post("/sources/website/ip-ranges")
def upload_ip_ranges(
    request: Request,
    user: AdminWriter,
    file: Annotated[UploadFile | None, File()] = None,
    replace: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    ws = user.workspace_id
    eng = engine_of(request)
    with saved_upload(file) as path:
        report = resolvers.upload_ranges(
            eng,
            ws,
            path,
            replace=replace == "on",
            limits=FileLimits.of(request.app.state.intently.settings),
        )
    return _report_response(
        request, user, "website", report, ip_ranges=resolvers.count_ranges(eng, ws)
    )


@router.post("/sources/website/ip-ranges/clear")
def clear_ip_ranges(request: Request, user: AdminWriter) -> Response:
    removed = resolvers.delete_ranges(engine_of(request), user.workspace_id)
    if not is_htmx(request):
        return RedirectResponse("/app/sources/website", status_code=303)
    return render(request, "sources/_cleared.html", user, removed=removed)


# ---- vendor sources: file import, progress, connection ------------------------------------


@router.get("/sources/runs")
def runs(
    request: Request,
    user: Admin,
    source: Annotated[str, Query(max_length=32)] = "",
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    if source:
        _source(source)
    page = signals.list_runs(
        engine_of(request),
        _codec(request),
        user.workspace_id,
        limit=RUNS_PER_PAGE,
        cursor=cursor or None,
        source=source or None,
    )
    next_url = None
    if page["nextCursor"]:
        next_url = "/app/sources/runs?" + urlencode({"cursor": page["nextCursor"]})
    return render(
        request,
        "sources/runs.html",
        user,
        nav="sources",
        runs=page["data"],
        source=source,
        sources=SOURCES,
        titles=TITLES,
        next_url=next_url,
        first_page=cursor is None,
    )


@router.get("/sources/runs/{run_id}")
def run_detail(
    request: Request,
    user: Admin,
    run_id: str,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    ws = user.workspace_id
    run = signals.get_run(engine_of(request), ws, run_id)
    page = _rejects(request, ws, run_id, REJECTS_PER_PAGE, cursor)
    next_url = None
    if page["nextCursor"]:
        next_url = f"/app/sources/runs/{run_id}?" + urlencode({"cursor": page["nextCursor"]})
    return render(
        request,
        "sources/run.html",
        user,
        nav="sources",
        run=run,
        title=TITLES.get(run["source"], run["source"]),
        rejects=page["data"],
        next_url=next_url,
        first_page=cursor is None,
    )


def _rejects(
    request: Request, ws: int, run_id: str, limit: int, cursor: str | None
) -> dict[str, Any]:
    page = signals.list_rejects(
        engine_of(request),
        _codec(request),
        ws,
        limit=limit,
        cursor=cursor or None,
        filters={"runId": run_id, "status": "all"},
    )
    for r in page["data"]:
        # The row as the file had it; autoescaping keeps any markup in it inert.
        r["raw"] = json.dumps(r["record"], ensure_ascii=False)
    return page


@router.get("/sources/{source}")
def vendor(request: Request, user: Admin, source: str) -> Response:
    _source(source, VENDORS)
    ws = user.workspace_id
    return render(
        request,
        "sources/vendor.html",
        user,
        nav="sources",
        source=source,
        title=TITLES[source],
        file_help=FILE_HELP[source],
        recent=_runs(request, ws, source, 10),
        connection=_connection_view(request, ws, source),
        settings_card=_settings_card(request, ws, source),
    )


@router.post("/sources/{source}/import")
def import_file(
    request: Request,
    user: AdminWriter,
    source: str,
    file: Annotated[UploadFile | None, File()] = None,
    week: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    _source(source, VENDORS)
    options: dict[str, Any] = {}
    if source == "bombora" and week.strip():
        try:
            options["week"] = date.fromisoformat(week.strip())
        except ValueError:
            raise PageError(400, f"week: '{week.strip()}' is not a date (YYYY-MM-DD)") from None
    options["limits"] = FileLimits.of(request.app.state.intently.settings)
    with saved_upload(file) as path:
        report = IMPORTERS[source](engine_of(request), user.workspace_id, path, **options)
    return _report_response(request, user, source, report)


@router.post("/sources/linkedin/map")
def map_linkedin_org(
    request: Request,
    user: AdminWriter,
    org: Annotated[str, Form(max_length=200)] = "",
    domain: Annotated[str, Form(max_length=253)] = "",
) -> Response:
    """Map a LinkedIn organization to a domain, then re-apply the rows it left rejected."""
    if not org.strip():
        raise PageError(400, "org: enter an organization URN, id or company page URL")
    if not domain.strip():
        raise PageError(400, "domain: enter the company's domain")
    eng = engine_of(request)
    try:
        urn = linkedin.map_org(eng, user.workspace_id, org.strip(), domain.strip())
    except BadRequest as exc:
        field = "domain" if "is not a domain" in exc.custom_message else "org"
        raise PageError(400, f"{field}: {exc.custom_message}") from None
    report = linkedin.reapply(eng, user.workspace_id)
    return _report_response(request, user, "linkedin", report, mapped=(urn, domain.strip()))


@router.get("/sources/{source}/progress")
def progress(request: Request, user: Admin, source: str) -> Response:
    """The source's import in progress (polled while an upload is being imported)."""
    _source(source)
    recent = _runs(request, user.workspace_id, source, 5)
    running = next((r for r in recent if r["status"] == "running"), None)
    return render(request, "sources/_progress.html", user, run=running)


@router.post("/sources/{source}/connection")
def save_connection(request: Request, user: AdminWriter, source: str, form: FormFields) -> Response:
    _source(source, VENDORS)
    return _save_connection(request, user, source, form)


@router.post("/sources/{source}/settings")
def save_settings(request: Request, user: AdminWriter, source: str, form: FormFields) -> Response:
    _source(source)
    return _save_settings(request, user, source, form)


# ---- uploads and reports -----------------------------------------------------------------


def _report_response(
    request: Request, user: Any, source: str, report: RunReport, **extra: Any
) -> Response:
    ws = user.workspace_id
    data = report.as_dict()
    rejects = (
        _rejects(request, ws, report.run_id, REPORT_REJECTS, None) if report.rejected else None
    )
    context = {
        "report": data,
        "source": source,
        "title": TITLES[source],
        "rejects": rejects["data"] if rejects else [],
        "more_rejects": bool(rejects and rejects["nextCursor"]),
        **extra,
    }
    if is_htmx(request):
        # The page's recent runs list is refreshed too (out of band) to show this run.
        recent = _runs(request, ws, source, 10)
        return render(request, "sources/_report.html", user, recent=recent, **context)
    return render(request, "sources/report.html", user, nav="sources", **context)


# ---- connection form ---------------------------------------------------------------------


def _check_config(field: Field_, text: str) -> Any:
    """A config value from the form, checked; empty means the default."""
    value = text.strip()
    if not value:
        return field.default
    if field.kind == "int":
        try:
            number = int(value)
        except ValueError:
            raise PageError(400, f"{field.name}: '{value}' is not a whole number") from None
        if not field.low <= number <= field.high:
            raise PageError(
                400, f"{field.name}: '{value}' must be from {field.low:,} to {field.high:,}"
            )
        return number
    if field.kind == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PageError(400, f"{field.name}: '{value}' is not an http(s) URL")
        return value.rstrip("/")
    if field.kind == "version":
        if not re.fullmatch(r"\d{6}", value, re.ASCII):
            raise PageError(400, f"{field.name}: '{value}' is not a version YYYYMM")
        return value
    if field.kind == "accounts":
        ids = []
        for part in value.split(","):
            item = part.strip()
            if not item:
                continue
            m = re.fullmatch(r"(?:urn:li:sponsoredAccount:)?(\d{1,19})", item, re.ASCII)
            if m is None:
                raise PageError(400, f"{field.name}: '{item}' is not a LinkedIn ad account id")
            ids.append(m.group(1))
        return ",".join(ids)
    return value


def _save_connection(request: Request, user: Any, provider: str, form: dict[str, str]) -> Response:
    ws = user.workspace_id
    eng = engine_of(request)
    key = _settings(request).credentials_key
    config = {f.name: _check_config(f, form.get(f.name, "")) for f in CONFIG[provider]}
    enabled_text = form.get("enabled", "on")
    if enabled_text not in ("on", "off"):
        raise PageError(400, f"enabled: '{enabled_text}' is not on or off")
    # Secrets are write-only: an empty field keeps what is stored.
    given = {
        name: form.get(name, "").strip()
        for name, _ in CREDENTIALS[provider]
        if form.get(name, "").strip()
    }
    described = [c for c in connections.describe(eng, ws) if c["provider"] == provider]
    exists = bool(described)
    _check_base_url(request, provider, config, described, given)
    credentials: dict[str, Any] | None = None
    if given:
        if exists and len(given) < len(CREDENTIALS[provider]):
            stored = connections.get_connection(eng, ws, provider, key=key)["credentials"]
            credentials = dict(stored) | given
        else:
            credentials = given
    elif not exists:
        names = ", ".join(name for name, _ in CREDENTIALS[provider])
        raise PageError(400, f"{names}: required to create the {TITLES[provider]} connection")
    connections.set_connection(
        eng,
        ws,
        provider,
        key=key,
        credentials=credentials,
        config=config,
        enabled=enabled_text == "on",
    )
    if not is_htmx(request):
        return RedirectResponse(f"/app/sources/{provider}?saved=connection", status_code=303)
    response = render(
        request,
        "sources/_connection.html",
        user,
        connection=_connection_view(request, ws, provider),
        saved=True,
    )
    return _replacing(response, "#connection")


def _check_base_url(
    request: Request,
    provider: str,
    config: dict[str, Any],
    described: list[dict[str, Any]],
    given: dict[str, str],
) -> None:
    """A puller sends the stored credentials to its base URL. So a new base URL must be
    a public host (as webhook targets), and comes with the credentials typed again:
    otherwise a workspace admin could send the stored secrets to a host of their own,
    or have the server call into the operator's network."""
    url = config.get("base_url")
    if not url:
        return
    vendor = next(str(f.default) for f in CONFIG[provider] if f.name == "base_url")
    old = ((described[0].get("config") or {}).get("base_url") if described else None) or vendor
    if url == old:
        return
    if url != vendor:  # the vendor's own API is trusted as shipped
        try:
            check_target(url, _settings(request))
        except TargetRefused as exc:
            raise PageError(400, f"base_url: '{url}' refused: {exc}") from None
    if described and len(given) < len(CREDENTIALS[provider]):
        names = ", ".join(name for name, _ in CREDENTIALS[provider])
        raise PageError(
            400,
            f"base_url: changing it to '{url}' needs the credentials typed again ({names}): "
            "the stored ones are only sent where they were set for",
        )


async def _form_fields(request: Request) -> dict[str, str]:
    """The posted form's text fields (the field set differs by provider and source)."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


FormFields = Annotated[dict[str, str], Depends(_form_fields)]


# ---- source settings form ----------------------------------------------------------------


def _settings_card(request: Request, ws: int, source: str) -> dict[str, Any]:
    current = signals.get_source_settings(engine_of(request), ws, source)
    return {"source": source, "fields": _settings_text(source, current)}


def _settings_text(source: str, s: dict[str, Any]) -> dict[str, Any]:
    """The settings as the form's fields show them (lists as one item a line)."""
    if source == "website":
        return {
            "respectDoNotTrack": s["respectDoNotTrack"],
            "ipRetentionDays": s["ipRetentionDays"],
            "highValuePages": "\n".join(f"{p['name']} {p['pattern']}" for p in s["highValuePages"]),
            "formEvents": "\n".join(s["formEvents"]),
        }
    if source == "bombora":
        return {"surgeThreshold": s["surgeThreshold"], "topics": "\n".join(s["topics"])}
    if source == "g2":
        return {"tagMap": "\n".join(f"{r['tag']} {r['type']}" for r in s["tagMap"])}
    return {"trailingDays": s["trailingDays"]}


def _whole(form: dict[str, str], name: str, low: int, high: int) -> int:
    text = form.get(name, "").strip()
    try:
        value = int(text)
    except ValueError:
        raise PageError(400, f"{name}: '{text}' is not a whole number") from None
    if not low <= value <= high:
        raise PageError(400, f"{name}: '{text}' must be from {low} to {high}")
    return value


def _lines(form: dict[str, str], name: str) -> list[str]:
    return [line.strip() for line in form.get(name, "").splitlines() if line.strip()]


def _pairs(form: dict[str, str], name: str, first: str, second: str) -> list[dict[str, str]]:
    out = []
    for line in _lines(form, name):
        parts = line.split()
        if len(parts) != 2:
            raise PageError(
                400, f"{name}: '{line}' is not two words ({first} then {second}, space between)"
            )
        out.append({first: parts[0], second: parts[1]})
    return out


def _settings_body(source: str, form: dict[str, str]) -> dict[str, Any]:
    if source == "website":
        dnt = form.get("respectDoNotTrack", "")
        if dnt not in ("on", "off"):
            raise PageError(400, f"respectDoNotTrack: '{dnt}' is not on or off")
        return {
            "respectDoNotTrack": dnt == "on",
            "ipRetentionDays": _whole(form, "ipRetentionDays", 0, 3650),
            "highValuePages": _pairs(form, "highValuePages", "name", "pattern"),
            "formEvents": _lines(form, "formEvents"),
        }
    if source == "bombora":
        return {
            "surgeThreshold": _whole(form, "surgeThreshold", 0, 100),
            "topics": _lines(form, "topics"),
        }
    if source == "g2":
        rules = _pairs(form, "tagMap", "tag", "type")
        for r in rules:
            if r["type"] not in SIGNAL_TYPES["g2"]:
                raise PageError(
                    400,
                    f"tagMap: type '{r['type']}' of tag '{r['tag']}' is not one of "
                    f"{', '.join(SIGNAL_TYPES['g2'])}",
                )
        return {"tagMap": rules}
    return {"trailingDays": _whole(form, "trailingDays", 0, 90)}


def _save_settings(request: Request, user: Any, source: str, form: dict[str, str]) -> Response:
    ws = user.workspace_id
    body = _settings_body(source, form)
    signals.put_source_settings(engine_of(request), ws, source, body)
    if not is_htmx(request):
        return RedirectResponse(f"/app/sources/{source}?saved=settings", status_code=303)
    response = render(
        request,
        "sources/_settings.html",
        user,
        settings_card=_settings_card(request, ws, source),
        saved=True,
    )
    return _replacing(response, f"#settings-{source}")


def _replacing(response: Response, card: str) -> Response:
    """A saved form's whole card replaces the old one; the form itself targets only its
    message slot, so a refused save shows its error above the fields as typed."""
    response.headers["HX-Retarget"] = card
    response.headers["HX-Reswap"] = "outerHTML"
    return response
