"""Alembic environment: the URL comes from the caller (intently migrate) or settings."""

from alembic import context
from sqlalchemy import text

from intently.kit.db import make_engine
from intently.schema import metadata
from intently.settings import get_settings

config = context.config
MIGRATION_LOCK = 0x1D7E_0001  # any constant the application uses for nothing else


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(conn) -> None:
    context.configure(
        connection=conn,
        target_metadata=metadata,
        render_as_batch=conn.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if conn.dialect.name == "postgresql":
            # Many processes may start at once (serve x N, worker x M): one migrates, the
            # others wait here and then find the schema current.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        context.run_migrations()


run_migrations()
