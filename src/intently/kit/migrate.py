"""Run Alembic migrations from the package (no alembic.ini needed)."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

from intently.kit.db import normalise_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema."""
    command.upgrade(alembic_config(url), "head")


def check(url: str) -> None:
    """Raise if the tables in code differ from what the migrations build."""
    command.check(alembic_config(url))


def upgrade_to(url: str, revision: str) -> None:
    """Bring the database at `url` to `revision` (a fresh one: build it up to there)."""
    command.upgrade(alembic_config(url), revision)


SchemaEntry = tuple[str, str, str, str]  # type, name, table, sql


def sqlite_schema(conn: sqlite3.Connection) -> dict[tuple[str, str], SchemaEntry]:
    """Every table, index, trigger and view of a SQLite database, by (type, name); SQLite's
    own objects (sqlite_*: auto-indexes, statistics) are left out, as the tables imply them."""
    rows = conn.execute(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master "
        "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    return {(str(r[0]), str(r[1])): (str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows}


def sqlite_schema_at(revision: str) -> dict[tuple[str, str], SchemaEntry]:
    """The schema the migrations build on SQLite up to `revision`, from a scratch file."""
    with tempfile.TemporaryDirectory(prefix="intently-schema-") as tmp:
        path = Path(tmp) / "schema.sqlite3"
        upgrade_to(f"sqlite:///{path}", revision)
        conn = sqlite3.connect(path)
        try:
            return sqlite_schema(conn)
        finally:
            conn.close()


def schema_differences(
    found: dict[tuple[str, str], SchemaEntry], expected: dict[tuple[str, str], SchemaEntry]
) -> list[str]:
    """What `found` has that the migrations do not make, lacks, or makes otherwise; sorted."""

    def order(key: tuple[str, str]) -> tuple[int, str]:  # tables first: they say the most
        kinds = ("table", "view", "trigger", "index")
        return (kinds.index(key[0]) if key[0] in kinds else len(kinds), key[1])

    problems = []
    for kind, name in sorted(found.keys() - expected.keys(), key=order):
        problems.append(f"unexpected {kind} '{name}'")
    for kind, name in sorted(expected.keys() - found.keys(), key=order):
        problems.append(f"missing {kind} '{name}'")
    for key in sorted(found.keys() & expected.keys(), key=order):
        if found[key] != expected[key]:
            problems.append(f"{key[0]} '{key[1]}' differs from what the migrations make")
    return problems
