"""Test harness: one migrated database per run (SQLite by default, PostgreSQL when
INTENTLY_TEST_DATABASE_URL says so); every test gets workspaces of its own, so tests
never see each other's data and may run in parallel on the same database."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.kit.migrate import migrate
from intently.settings import Settings
from tests.support import scoring as scoring_support
from tests.support.api import Api, Workspace, new_workspace
from tests.support.database import DB_ENV
from tests.support.server import LiveServer, serving
from tests.support.webhook_receiver import Receiver


def pytest_configure(config: pytest.Config) -> None:
    # The suite's `serve` processes share its SQLite file with each other (one per xdist
    # worker, the browser tests' own) and with the tests' in-process app; `intently serve`
    # refuses that unless told it is a test harness. tests/ops checks the refusal.
    os.environ.setdefault("INTENTLY_SQLITE_SHARED_SERVE", "1")
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller already migrated
    if not os.environ.get(DB_ENV):
        path = os.path.join(tempfile.mkdtemp(prefix="intently-test-"), "test.sqlite3")
        os.environ[DB_ENV] = f"sqlite:///{path}"
    migrate(os.environ[DB_ENV])


@pytest.fixture(autouse=True)
def _one_day_per_test() -> None:
    """Each test reads the UTC day afresh, once (tests/support/scoring.py today())."""
    scoring_support.forget_day()


@pytest.fixture(scope="session")
def database_url() -> str:
    return os.environ[DB_ENV]


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgres")


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[None]:
    """The worker's queue runs each job as it is sent, on the tests' database (the
    dashboard's Train button and the training tests hand their work to the worker)."""
    from intently import worker
    from intently.settings import get_settings

    monkeypatch.setenv("INTENTLY_DATABASE_URL", database_url)
    get_settings.cache_clear()
    worker.huey.immediate = True
    try:
        yield
    finally:
        worker.huey.immediate = False
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def app(database_url: str) -> Any:
    # Every test client comes from one address, so the per-address limit on requests
    # without a valid key would cut the suite's many 401 checks short: tests/api/
    # test_rate_limits.py tests it on an app of its own.
    return create_app(Settings(database_url=database_url, rate_limit_anonymous_per_minute=0))


@pytest.fixture(scope="session")
def engine(app: Any) -> Any:
    return app.state.intently.engine


@pytest.fixture(scope="session")
def client(app: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def make_workspace(client: TestClient, engine: Any) -> Callable[[], Workspace]:
    """A factory of fresh workspaces, each with a user and an API key."""

    def make() -> Workspace:
        return new_workspace(client, engine)

    return make


@pytest.fixture
def workspace(make_workspace: Callable[[], Workspace]) -> Workspace:
    return make_workspace()


@pytest.fixture
def api(workspace: Workspace) -> Api:
    return workspace.api


@pytest.fixture
def other(make_workspace: Callable[[], Workspace]) -> Workspace:
    """A second workspace, for tenancy checks."""
    return make_workspace()


@pytest.fixture(scope="session")
def live_server(database_url: str) -> Iterator[LiveServer]:
    """`intently serve` in a subprocess on a free loopback port, on the test database."""
    # Webhook tests drive the dispatcher themselves, with settings of their own: this
    # shared server must not deliver their webhooks. Its tests hammer it with one key
    # (concurrency, delta sync); rate limits have tests of their own.
    with serving(
        INTENTLY_DATABASE_URL=database_url,
        INTENTLY_WEBHOOK_DISPATCH="false",
        INTENTLY_RATE_LIMIT_PER_MINUTE="0",
    ) as url:
        yield LiveServer(url, database_url)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1, answering 200 unless told otherwise."""
    r = Receiver().start()
    yield r
    r.stop()
