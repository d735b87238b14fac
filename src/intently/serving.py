"""Starting the server and the job worker: what `intently serve`, `intently demo` and
`intently worker` run once their own work is done.

`serve` migrates the database, then runs uvicorn with the app (`intently.app:create_app`),
the job consumer (unless told not to) and the webhook dispatcher beside it. On SQLite it
first makes sure it will be the only writing process: see `cli/guards.py`.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from typing import Any

import typer
import uvicorn
from sqlalchemy.engine import make_url

from intently.cli.guards import guard_serve, guard_worker, refuse
from intently.ingest.resolvers import check_ip_databases
from intently.kit.db import make_engine
from intently.kit.errors import IntentlyError
from intently.kit.logs import configure_logging, logging_config
from intently.kit.metrics import MULTIPROC_ENV
from intently.kit.migrate import migrate
from intently.settings import get_settings
from intently.webhooks.dispatcher import Dispatcher


def safe_url(url: str) -> str:
    """The database URL without its password."""
    return make_url(url).render_as_string(hide_password=True)


def serve(host: str, port: int, workers: int = 1, worker: bool = True) -> None:
    """Migrate the database, then serve the API, docs and health check (and run the worker).

    SIGTERM stops taking connections, finishes the requests in flight (up to
    INTENTLY_SHUTDOWN_GRACE_S), writes the collector's buffer and the running jobs, then exits.
    """
    settings = get_settings()
    try:  # a bad IP database is a clear error now, not a traceback from each server process
        check_ip_databases(settings.ip_databases)
    except IntentlyError as exc:
        raise refuse(exc.custom_message) from None
    guard_serve(settings.database_url, workers=workers, worker=worker)
    configure_logging(settings)
    migrate(settings.database_url)
    metrics_dir = None
    if workers > 1 and settings.metrics:
        # Each server process counts into files here; a scrape of any one sums them all.
        metrics_dir = tempfile.mkdtemp(prefix="intently-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    typer.echo(f"Intently on http://{host}:{port} (database: {safe_url(settings.database_url)})")
    consumer = None
    if worker:
        # Threads in this (main) process: with --workers N the HTTP processes are children
        # and do not run jobs, so there is one consumer either way.
        consumer = _job_queue().create_consumer(
            workers=1,
            worker_type="thread",
            periodic=True,
            shutdown_timeout=settings.shutdown_grace_s,
        )
        consumer.start()
        _reap_stopped_runs()
    dispatcher = _start_dispatcher() if worker else None
    try:
        uvicorn.run(
            "intently.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            # Applied in every server process: uvicorn's loggers use our handler too.
            log_config=logging_config(settings),
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        )
    finally:
        if dispatcher is not None:
            dispatcher.stop()
        if consumer is not None:
            consumer.stop(graceful=True)
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def run_worker(threads: int) -> None:
    """Run the job worker alone (PostgreSQL only) until SIGTERM (the running jobs finish, up
    to INTENTLY_SHUTDOWN_GRACE_S) or Ctrl-C (now)."""
    settings = get_settings()
    guard_worker(settings.database_url)
    configure_logging(settings)
    migrate(settings.database_url)
    huey = _job_queue()
    _reap_stopped_runs()
    typer.echo(f"Intently worker ({threads} threads); SIGTERM or Ctrl-C stops it", err=True)
    dispatcher = _start_dispatcher()
    try:
        huey.create_consumer(
            workers=threads,
            worker_type="thread",
            periodic=True,
            graceful_signal="TERM",
            shutdown_timeout=settings.shutdown_grace_s,
        ).run()
    finally:
        if dispatcher is not None:
            dispatcher.stop()


def _job_queue() -> Any:
    """The job queue with its tasks (`intently.worker.huey`)."""
    # Imported only once the database is migrated and the guard passed: importing
    # intently.worker builds the queue on the configured database (on SQLite it creates
    # the `<db>-jobs` file), which no other command should do.
    from intently.worker import huey

    return huey


def _reap_stopped_runs() -> None:
    """Runs left `running` by a process that ended: marked failed now (then every minute)."""
    from intently.worker import reap_stopped_runs  # see _job_queue()

    reap_stopped_runs()


def _start_dispatcher() -> Any:
    """The webhook dispatcher thread, unless INTENTLY_WEBHOOK_DISPATCH=false."""
    settings = get_settings()
    if not settings.webhook_dispatch:
        return None
    return Dispatcher(make_engine(settings.database_url), settings).start()
