from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently import pipeline
from intently.auth.endpoints import CallerDep
from intently.gate.idempotency import redoable
from intently.kit.errors import validation_error
from intently.kit.pagination import parse_limit
from intently.kit.validation import validate
from intently.kit.web import LIMIT_DOC, JsonBody, State, body_doc, ok, query_doc, run_read
from intently.scoring import explain as explanation
from intently.scoring import service, training, whatif
from intently.scoring.schemas import ActivateIn, DryRunIn, ModelIn, RunIn, TrainIn


def router() -> APIRouter:
    r = APIRouter(tags=["scoring"])

    @r.get("/scoring/model")
    async def get_model(request: Request, st: State, caller: CallerDep) -> Response:
        """The active scoring model and its version (0: the default, never changed)."""
        return ok(request, await run_read(st, service.get_model, st.engine, caller.workspace_id))

    @r.put("/scoring/model", openapi_extra=body_doc(ModelIn))
    def put_model(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Replace the model: validated as a whole, stored as a new version."""
        return ok(request, service.put_model(st.engine, caller.workspace_id, body))

    @r.post("/scoring/runs", openapi_extra=body_doc(RunIn))
    def start_run(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Score now: every account (`full`) or those touched since the last run."""
        full = validate(RunIn, body).full
        # A run recomputes scores: a retry of a run that failed or died runs it again.
        with redoable():
            summary = pipeline.run_scoring(st.engine, caller.workspace_id, full=full)
        return ok(request, summary.as_dict())

    @r.get("/scoring/runs", openapi_extra=query_doc(LIMIT_DOC))
    async def list_runs(request: Request, st: State, caller: CallerDep) -> Response:
        """Recent scoring runs, newest first, with what each did."""
        limit = parse_limit(request.query_params.get("limit") or "20")
        runs = await run_read(st, service.list_runs, st.engine, caller.workspace_id, limit)
        return ok(request, runs)

    @r.get("/accounts/{rtp_aid}/score")
    async def explain(request: Request, rtp_aid: str, st: State, caller: CallerDep) -> Response:
        """How the account's score comes about: per source and signal type, after decay and
        caps, with the weights; the numbers add up to the score."""
        ws = caller.workspace_id
        return ok(request, await run_read(st, explanation.explain, st.engine, ws, rtp_aid))

    @r.post("/scoring/dry-run", openapi_extra=body_doc(DryRunIn))
    def dry_run(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """What saving a proposed model and/or stage list would change; nothing is saved.
        A few at once per workspace (else 429), as rule previews."""
        with st.previews.hold(caller.workspace_id):
            return ok(request, whatif.dry_run(st.engine, caller.workspace_id, body))

    @r.get(
        "/scoring/backtest",
        openapi_extra=query_doc(
            ("asOf", "the cut-off date, YYYY-MM-DD (required)"),
            ("horizonDays", "days after the cut-off in which a deal counts, 1 to 3650 (90)"),
        ),
    )
    def backtest(request: Request, st: State, caller: CallerDep) -> Response:
        """Scores and stages as of a past date against the deals created after it."""
        q = request.query_params
        as_of, horizon = _backtest_params(q.get("asOf"), q.get("horizonDays"))
        with st.previews.hold(caller.workspace_id):
            report = whatif.backtest(
                st.engine, caller.workspace_id, as_of=as_of, horizon_days=horizon
            )
        return ok(request, report)

    @r.post("/scoring/train", openapi_extra=body_doc(TrainIn))
    def train(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Train the predictive model on the workspace's deals, as a worker job; returns the
        training (its id, status running). `activate` activates it when done unless it
        backtests worse than the active model (`force`: even then)."""
        args = validate(TrainIn, body if body is not None else {})
        ws = caller.workspace_id
        tid = training.start(st.engine, ws, args.horizonDays)
        from intently import worker  # the queue; the job runs in a worker process

        worker.train_model(ws, tid, args.horizonDays, args.activate, args.force)
        return ok(request, training.get_training(st.engine, ws, tid))

    @r.get("/scoring/trainings", openapi_extra=query_doc(LIMIT_DOC))
    async def trainings(request: Request, st: State, caller: CallerDep) -> Response:
        """Recent trainings, newest first, with their status and report."""
        limit = parse_limit(request.query_params.get("limit") or "20")
        ws = caller.workspace_id
        return ok(request, await run_read(st, training.list_trainings, st.engine, ws, limit))

    @r.get("/scoring/trainings/{training_id}")
    async def get_training(
        request: Request, training_id: str, st: State, caller: CallerDep
    ) -> Response:
        """One training: status, report (hold-out metrics next to the active model's)."""
        ws = caller.workspace_id
        return ok(request, await run_read(st, training.get_training, st.engine, ws, training_id))

    @r.get("/scoring/models")
    async def models(request: Request, st: State, caller: CallerDep) -> Response:
        """Every stored model version, newest first, with the active flag and a trained
        model's hold-out metrics; version 0 is the built-in default."""
        return ok(request, await run_read(st, training.list_models, st.engine, caller.workspace_id))

    @r.post("/scoring/models/{version}/activate", openapi_extra=body_doc(ActivateIn))
    def activate(
        request: Request, version: str, st: State, caller: CallerDep, body: JsonBody
    ) -> Response:
        """Make a stored version the active model (an older one: a rollback). Refused (409)
        when it backtests worse than the active one on a trained model's hold-out, unless
        `force`."""
        if not (version.isascii() and version.isdigit()) or len(version) > 9:
            raise validation_error(
                "version", version, "isInt", "version must be a model version number"
            )
        args = validate(ActivateIn, body if body is not None else {})
        with st.previews.hold(caller.workspace_id):
            out = training.activate_version(
                st.engine, caller.workspace_id, int(version), force=args.force
            )
        return ok(request, out)

    return r


def _backtest_params(as_of: str | None, horizon: str | None) -> tuple[date, int]:
    try:
        day = date.fromisoformat((as_of or "").strip())
    except ValueError:
        raise validation_error(
            "asOf", "asOf", "isISO8601", "asOf must be a date (YYYY-MM-DD)"
        ) from None
    if horizon is None:
        return day, 90
    text = horizon.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 3650:
        raise validation_error(
            "horizonDays", "horizonDays", "isInt", "horizonDays must be an integer from 1 to 3650"
        )
    return day, int(text)
