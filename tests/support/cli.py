"""Running the `intently` command as a script would: a subprocess against a database."""

from __future__ import annotations

import os
import subprocess
import sys


def intently(
    database_url: str, *args: str, timeout: float = 120, **env: str | None
) -> subprocess.CompletedProcess[str]:
    """`python -m intently ARGS` with INTENTLY_DATABASE_URL set; `env` adds variables (None
    removes one). Output is not wrapped (COLUMNS=160), so messages can be matched whole."""
    environ = dict(os.environ, INTENTLY_DATABASE_URL=database_url, COLUMNS="160")
    for name, value in env.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return subprocess.run(
        [sys.executable, "-m", "intently", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
