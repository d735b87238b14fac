"""`intently scoring show|set` (the model) and `intently score` (a run by hand)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from intently.cli.common import (
    WORKSPACE_HELP,
    engine,
    err_console,
    fail,
    intently_errors,
    out_console,
    print_json,
    read_json_file,
    workspace_id,
)
from intently.pipeline import run_scoring
from intently.scoring import training
from intently.scoring.service import get_model, put_model
from intently.scoring.whatif import backfill_history, backtest, dry_run

scoring_app = typer.Typer(help="The scoring model (versioned per workspace).", no_args_is_help=True)

Workspace = typer.Option(None, "--workspace", "-w", help=WORKSPACE_HELP)


@scoring_app.command("show")
def show(workspace: str | None = Workspace) -> None:
    """Print the active scoring model as JSON, with its version (0: the default)."""
    eng = engine()
    data = get_model(eng, workspace_id(eng, workspace))
    print_json(data)


@scoring_app.command("set")
def set_model(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The model as JSON."),
    workspace: str | None = Workspace,
) -> None:
    """Replace the scoring model with the one in FILE (a new version); every problem named."""
    body = read_json_file(file)
    eng = engine()
    with intently_errors():
        data = put_model(eng, workspace_id(eng, workspace), body)
    print_json(data)


def score_command(
    workspace: str | None = Workspace,
    full: bool = typer.Option(
        False, "--full", help="Score every account, not only those touched since the last run."
    ),
) -> None:
    """Score accounts now, with a progress bar and a summary (scored, changed, seconds)."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    progress = Progress(
        TextColumn("[bold]scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("accounts"),
        TimeElapsedColumn(),
        console=err_console,
    )
    task = progress.add_task("scoring", total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with intently_errors(), progress:
        summary = run_scoring(eng, ws, full=full, on_progress=update)
    out_console.print(
        f"{summary.kind} run {summary.run_id}: {summary.scored:,} accounts scored, "
        f"{summary.changed:,} changed, {summary.seconds:.2f} s (model version "
        f"{summary.model_version})",
        highlight=False,
    )


@scoring_app.command("dry-run")
def dry_run_command(
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help='JSON: {"model": ..., "stages": ...} (either or both).',
    ),
    workspace: str | None = Workspace,
) -> None:
    """What a proposed model and/or stage list would change, without saving it (JSON)."""
    body = read_json_file(file)
    eng = engine()
    with intently_errors():
        report = dry_run(eng, workspace_id(eng, workspace), body)
    print_json(report)


def backtest_command(
    as_of: str = typer.Option(..., "--as-of", help="The cut-off date, YYYY-MM-DD."),
    horizon: int = typer.Option(90, help="Days after the cut-off in which a new deal counts."),
    workspace: str | None = Workspace,
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
) -> None:
    """How well scores and stages as of a past date predicted the deals created after it."""
    try:
        cutoff = date.fromisoformat(as_of)
    except ValueError:
        fail(f"--as-of '{as_of}' is not a date (YYYY-MM-DD)")
    eng = engine()
    with intently_errors():
        r = backtest(eng, workspace_id(eng, workspace), as_of=cutoff, horizon_days=horizon)
    if as_json:
        print_json(r)
        return
    done = "" if r["horizonComplete"] else " (horizon not over yet: later deals may still come)"
    out_console.print(
        f"backtest as of {r['asOf']}, horizon {r['horizonDays']} days{done}", highlight=False
    )
    out_console.print(
        f"accounts {r['accounts']:,} (excluded with an earlier deal: "
        f"{r['excludedWithEarlierDeal']:,}), converted {r['converted']:,}, "
        f"base rate {r['baseRate']}",
        highlight=False,
    )
    out_console.print(
        f"ROC AUC {r['rocAuc']}, top-decile lift {r['topDecileLift']}", highlight=False
    )
    for st in r["stages"]:
        out_console.print(
            f"  {st['stage']}: {st['accounts']:,} accounts, {st['converted']:,} converted "
            f"({st['conversion']})",
            highlight=False,
        )
    out_console.print(f"leakage rule: {r['leakageRule']}", highlight=False)


@scoring_app.command("backfill-history")
def backfill_history_command(
    days: int = typer.Option(90, help="How far back, 1 to 365 days."),
    every: int = typer.Option(7, help="A point every this many days."),
    workspace: str | None = Workspace,
) -> None:
    """Score history for past days (as of each day), where no run recorded one: after a
    bulk import of old signals, so score charts start with the data."""
    eng = engine()
    with intently_errors(), err_console.status("Scoring past days"):
        n = backfill_history(eng, workspace_id(eng, workspace), days=days, every=every)
    out_console.print(f"history: {n:,} account-days scored", highlight=False)


@scoring_app.command("train")
def train_command(
    workspace: str | None = Workspace,
    horizon: int = typer.Option(90, help="Days after a cut-off in which a new deal counts, 7-365."),
    activate: bool = typer.Option(
        False, "--activate", help="Activate the trained model unless it backtests worse."
    ),
    force: bool = typer.Option(
        False, "--force", help="With --activate: activate even if it backtests worse."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the whole training as JSON."),
) -> None:
    """Train the predictive model on the workspace's own deals and report its backtest on
    a later held-out period next to the active model's; stored as a new model version."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        t = training.train(
            eng, ws, horizon_days=horizon, activate=activate, force=force,
            progress=lambda m: err_console.print(m, highlight=False),
        )  # fmt: skip
    if as_json:
        print_json(t)
        return
    _print_report(t)


def _print_report(t: dict[str, Any]) -> None:
    r = t["report"]
    say = out_console.print
    say(f"training {t['trainingId']}: {t['status']}, model version {t['modelVersion']}",
        highlight=False)  # fmt: skip
    say(f"training samples {r['training']['samples']:,} ({r['training']['positives']:,} "
        f"opened a deal) at cut-offs {', '.join(r['cutoffs'])}", highlight=False)  # fmt: skip
    say(f"hold-out {r['holdoutCutoff']}: {r['holdout']['samples']:,} accounts, "
        f"{r['holdout']['positives']:,} opened a deal", highlight=False)  # fmt: skip
    for name, m in (
        ("trained model", r["trained"]),
        (f"active model (version {r['current']['modelVersion']})", r["current"]),
    ):
        say(f"  {name}: ROC AUC {m['rocAuc']}, top-decile lift {m['topDecileLift']}, "
            f"Brier {m['brier']}", highlight=False)  # fmt: skip
        for b in m["reliability"]:
            say(f"    p {b['from']:.1f}-{b['to']:.1f}: {b['accounts']:,} accounts, predicted "
                f"{b['predicted']:.3f}, observed {b['observed']:.3f}", highlight=False)  # fmt: skip
    if r.get("activated"):
        say(f"activated: model version {t['modelVersion']} now scores accounts", highlight=False)
    elif r.get("activationRefused"):
        say(f"not activated: {r['activationRefused']}", highlight=False)
    else:
        say(f"not activated: `intently scoring activate {t['modelVersion']}` to use it",
            highlight=False)  # fmt: skip
    say(f"leakage rule: {r['leakageRule']}", highlight=False)


@scoring_app.command("activate")
def activate_command(
    version: int = typer.Argument(..., help="The model version (0: the built-in default)."),
    workspace: str | None = Workspace,
    force: bool = typer.Option(False, "--force", help="Even if it backtests worse."),
) -> None:
    """Make a stored model version the active one (an older one: a rollback)."""
    eng = engine()
    with intently_errors():
        out = training.activate_version(eng, workspace_id(eng, workspace), version, force=force)
    print_json(out)


@scoring_app.command("models")
def models_command(workspace: str | None = Workspace) -> None:
    """The stored model versions with the active one and trained models' metrics."""
    eng = engine()
    print_json(training.list_models(eng, workspace_id(eng, workspace)))


@scoring_app.command("trainings")
def trainings_command(workspace: str | None = Workspace) -> None:
    """Recent trainings with their status and report."""
    eng = engine()
    print_json(training.list_trainings(eng, workspace_id(eng, workspace)))


def register(app: typer.Typer) -> None:
    """`intently scoring ...` and `intently score`."""
    app.add_typer(scoring_app, name="scoring")
    app.command("score")(score_command)
    app.command("backtest")(backtest_command)
