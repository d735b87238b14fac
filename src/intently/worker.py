"""The job worker: huey with its storage in the application's database, and periodic jobs.

`intently serve` runs a consumer in its own process unless told `--no-worker`; `intently
worker` runs one alone. Any number may run: each periodic job claims its work in the
database, so it is done once per schedule, not once per process.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from huey import crontab
from sqlalchemy.engine import Engine

from intently.kit.jobs import make_huey
from intently.settings import get_settings

log = logging.getLogger("intently.worker")

huey = make_huey(get_settings().database_url)


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    from intently.kit.db import make_engine

    return make_engine(url)


def engine() -> Engine:
    return _engine(get_settings().database_url)


@huey.periodic_task(crontab(minute="*/5"))
def pull_due_connections() -> list[dict[str, Any]]:
    """Every 5 minutes: run the vendor pulls whose interval has passed."""
    from intently.ingest.schedule import pull_due

    results = pull_due(engine(), get_settings())
    for r in results:
        log.info("pull %s workspace %s: %s", r["provider"], r["workspace"], r["status"])
    return results


@huey.periodic_task(crontab(minute="0"))
def rescore_all_workspaces() -> list[dict[str, Any]]:
    """Every hour: score every account of every workspace (claimed per workspace)."""
    from intently.scoring.service import run_claimed

    results = run_claimed(engine(), "full")
    for r in results:
        log.info("scoring (full) workspace %s: %s", r["workspace"], r)
    return results


@huey.periodic_task(crontab(minute="*"))
def rescore_touched_accounts() -> list[dict[str, Any]]:
    """Every minute: score the accounts with new signals, deals or activities."""
    from intently.scoring.service import run_claimed

    results = run_claimed(engine(), "incremental")
    for r in results:
        if r.get("changed") or r.get("error"):
            log.info("scoring (incremental) workspace %s: %s", r["workspace"], r)
    return results
