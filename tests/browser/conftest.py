"""Browser tests: Playwright driving the system Chromium (/usr/bin/chromium, the Debian
package; scripts/test installs it) against `intently serve` on the test database, with a
small demo world in a workspace of its own. Screenshots go to test-artifacts/screenshots
(INTENTLY_TEST_ARTIFACTS overrides the folder)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from intently.auth.users import create_user
from intently.demo.service import build_demo
from tests.support.server import serving

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("INTENTLY_TEST_ARTIFACTS", ROOT / "test-artifacts"))
# The probe's flags: headless, and nothing that reaches for the (closed) network.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PASSWORD = "browser tests password"


@dataclass
class Site:
    url: str
    workspace: str
    admin_email: str
    member_email: str
    ws_id: int


@dataclass
class Console:
    """Errors a page logged (CSP violations, script errors): every test ends with none."""

    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def site(database_url: str, engine: Any) -> Iterator[Site]:
    name = f"browser-{uuid.uuid4().hex[:10]}"
    summary = build_demo(engine, name, accounts=150, seed=7)
    admin = f"admin-{uuid.uuid4().hex[:6]}@example.com"
    member = f"member-{uuid.uuid4().hex[:6]}@example.com"
    create_user(engine, name, admin, password=PASSWORD, role="admin")
    create_user(engine, name, member, password=PASSWORD, role="member")
    with serving(
        INTENTLY_DATABASE_URL=database_url,
        INTENTLY_WEBHOOK_DISPATCH="false",
        INTENTLY_WEBHOOK_ALLOW_PRIVATE="true",
    ) as url:
        yield Site(url, name, admin, member, summary.workspace_id)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: install the Debian package chromium (scripts/test does)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def console() -> Console:
    return Console()


def _page(browser: Any, console: Console, width: int = 1280, height: int = 900) -> Any:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: console.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    return page


def sign_in(page: Any, site: Site, email: str) -> None:
    page.goto(site.url + "/app/accounts")
    assert "/app/login" in page.url
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/app/accounts")


@pytest.fixture
def admin_page(browser: Any, site: Site, console: Console) -> Iterator[Any]:
    page = _page(browser, console)
    sign_in(page, site, site.admin_email)
    yield page
    page.context.close()
    assert console.errors == [], console.errors


@pytest.fixture
def phone_page(browser: Any, site: Site, console: Console) -> Iterator[Any]:
    page = _page(browser, console, width=390, height=844)
    sign_in(page, site, site.admin_email)
    yield page
    page.context.close()
    assert console.errors == [], console.errors


def screenshot(page: Any, name: str) -> Path:
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
