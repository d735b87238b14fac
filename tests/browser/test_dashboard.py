"""The dashboard in a real browser: the journeys a marketer takes, and screenshots."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text

from tests.browser.conftest import Site, screenshot
from tests.support.vendor_files import SURGE_HEADER, SURGE_ROWS, bombora_csv


def _top_account(engine: Any, site: Site) -> tuple[str, str, str]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id, name, domain FROM accounts WHERE workspace_id = :ws "
                "ORDER BY rtp_account_score DESC, id DESC LIMIT 1"
            ),
            {"ws": site.ws_id},
        ).one()
    return str(row[0]), str(row[1]), str(row[2])


def test_sign_in_find_an_account_and_read_its_explanation(
    admin_page: Any, site: Site, engine: Any
) -> None:
    page = admin_page
    aid, name, domain = _top_account(engine, site)
    # The table is ranked: the top account is the first row.
    first = page.locator("#results tbody tr").first
    assert domain in first.inner_text()
    # Search narrows the table in place (htmx), without a page load.
    page.fill("input[name=q]", domain[:6])
    page.wait_for_function(
        "n => document.querySelectorAll('#results tbody tr').length <= n", arg=20
    )
    assert f"q={domain[:6]}" in page.url  # the filter is in the address, so it can be shared
    page.click(f"#results a[href='/app/accounts/{aid}']")
    page.wait_for_url(f"**/app/accounts/{aid}")
    assert page.locator("h1").inner_text() == name
    explanation = page.locator("#explanation")
    assert "Why this score" in explanation.inner_text()
    rows = explanation.locator("table").nth(1).locator("tbody tr")
    assert rows.count() >= 1  # the signal types that gave points
    points = [float(t.replace(",", "")) for t in rows.locator("td strong").all_inner_texts()]
    assert sum(points) > 0
    # Charts were drawn by Chart.js from the JSON the server sent (no inline script).
    page.wait_for_function(
        "() => ['explain-chart', 'history-chart'].every("
        "id => window.Chart.getChart(document.querySelector(`canvas[data-chart=${id}]`)))"
    )
    assert page.locator("#signals li").count() > 0  # the signal timeline
    screenshot(page, "account")


def test_filters_and_keyset_pages(admin_page: Any, site: Site) -> None:
    page = admin_page
    page.select_option("select[name=stage]", index=1)
    page.wait_for_url(re.compile(r".*stage=.*"))
    stage = page.locator("select[name=stage]").input_value()
    badges = page.locator("#results tbody .badge.stage").all_inner_texts()
    assert badges and set(badges) == {stage}
    page.goto(site.url + "/app/accounts")
    seen = page.locator("#results tbody a").evaluate_all("els => els.map(e => e.href)")
    page.click("text=Next page")
    page.wait_for_url(re.compile(r".*after=.*"))
    more = page.locator("#results tbody a").evaluate_all("els => els.map(e => e.href)")
    assert more and not set(seen) & set(more)
    # htmx keeps no copy of the pages in the tab (it would outlive sign-out).
    assert page.evaluate("() => sessionStorage.getItem('htmx-history-cache')") is None


def test_screenshots_of_the_main_pages(admin_page: Any, phone_page: Any, site: Site) -> None:
    pages = {
        "accounts": "/app/accounts",
        "journey": "/app/journey",
        "segments": "/app/segments",
        "scoring": "/app/scoring",
        "scoring-model": "/app/scoring/model",
        "sources": "/app/sources",
        "settings": "/app/settings",
    }
    for name, path in pages.items():
        for label, page in (("desktop", admin_page), ("phone", phone_page)):
            response = page.goto(site.url + path)
            assert response.status == 200, (path, response.status)
            page.wait_for_load_state("networkidle")
            # Nothing wider than the screen but what scrolls inside its own box.
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, (label, path, overflow)
            screenshot(page, f"{name}-{label}")


def test_create_a_dynamic_segment_with_the_live_count(
    admin_page: Any, site: Site, engine: Any
) -> None:
    page = admin_page
    page.goto(site.url + "/app/segments/new")
    page.fill("input[name=name]", "High scorers")
    page.select_option("select[name=type]", "dynamic")
    page.select_option("select[name=status]", "active")
    row = page.locator("#rule-rows tr").first
    row.locator("select[name=field]").select_option("rtp_account_score")
    page.wait_for_timeout(300)  # the row's operators follow its field (htmx swap)
    row = page.locator("#rule-rows tr").first
    row.locator("select[name=op]").select_option("gte")
    row.locator("input[name=value]").fill("50")
    with engine.connect() as conn:
        expected = conn.execute(
            text(
                "SELECT count(*) FROM accounts WHERE workspace_id = :ws AND rtp_account_score >= 50"
            ),
            {"ws": site.ws_id},
        ).scalar_one()
    # The live count, before saving.
    page.wait_for_function(
        "n => document.querySelector('#rule-preview .big')?.textContent.trim() === n",
        arg=f"{expected:,}",
    )
    screenshot(page, "segment-rule-builder")
    page.click("text=Create segment")
    page.wait_for_url(re.compile(r".*/app/segments/[0-9a-f]{24}.*"))
    assert "High scorers" in page.locator("h1").inner_text()
    members = page.locator("a[href^='/app/accounts/']").count()
    assert members == min(expected, 50)
    sid = page.url.split("/app/segments/")[1][:24]
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM segment_members WHERE segment_id = :s"), {"s": sid}
        ).scalar_one()
    assert stored == expected


def test_upload_a_bombora_file_and_read_the_report(
    admin_page: Any, site: Site, tmp_path: Any
) -> None:
    file = tmp_path / "bombora-week.csv"
    file.write_bytes(bombora_csv(SURGE_ROWS, SURGE_HEADER))
    page = admin_page
    page.goto(site.url + "/app/sources/bombora")
    page.set_input_files("input[type=file][name=file]", str(file))
    page.click("text=Upload and import")
    report = page.locator("#import-result .report")
    report.wait_for()
    text_ = report.inner_text()
    assert "Imported bombora-week.csv" in text_, text_
    read = report.locator("dt:text-is('Read') + dd").inner_text()
    assert read == str(len(SURGE_ROWS))
    screenshot(page, "bombora-import")


def test_upload_company_profiles_with_a_column_mapping(
    admin_page: Any, site: Site, engine: Any, tmp_path: Any
) -> None:
    _aid, _name, domain = _top_account(engine, site)
    file = tmp_path / "profiles.csv"
    file.write_text(
        f'Website,Sector,Staff,Notes\n{domain},Aerospace,"1,500",x\nnobody-here.example,A,1,\n'
    )
    page = admin_page
    page.goto(site.url + "/app/accounts")
    page.click("text=Upload company profiles")
    page.set_input_files("input[type=file][name=file]", str(file))
    # Choosing the file shows its columns, with the fields their names suggest.
    mapping = page.locator("#profile-mapping select[name=target]")
    mapping.first.wait_for()
    assert mapping.count() == 4
    assert mapping.nth(0).input_value() == "domain"
    assert mapping.nth(1).input_value() == "industry"
    mapping.nth(2).select_option("employeeCount")  # "Staff" suggests nothing
    page.click("text=Apply to accounts")
    report = page.locator("#profile-report")
    report.wait_for()
    assert "1 accounts updated from 2 rows" in report.inner_text()
    assert "nobody-here.example" in report.inner_text()
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT industry, employee_count FROM accounts "
                "WHERE workspace_id = :ws AND domain = :d"
            ),
            {"ws": site.ws_id, "d": domain},
        ).one()
    assert tuple(row) == ("Aerospace", 1500)
    screenshot(page, "profile-upload")


def test_generate_an_api_key_shown_once(admin_page: Any, site: Site) -> None:
    import httpx

    page = admin_page
    page.goto(site.url + "/app/settings/api-keys")
    page.fill("input[name=email]", "crm-sync@example.com")
    page.once("dialog", lambda dialog: dialog.accept())  # "Generate a new key?"
    page.click("text=Generate key")
    key = page.locator("#new-api-key").inner_text().strip()
    assert key.startswith("itly_")
    r = httpx.get(site.url + "/api/v1/accounts?limit=1", headers={"X-Api-Key": key})
    assert r.status_code == 200
    # Never shown again.
    page.goto(site.url + "/app/settings/api-keys")
    assert key not in page.content()
    assert "crm-sync@example.com" in page.content()


def test_members_get_no_admin_pages(browser: Any, site: Site, console: Any) -> None:
    from tests.browser.conftest import _page, sign_in

    page = _page(browser, console)
    sign_in(page, site, site.member_email)
    assert page.locator("nav a", has_text="Settings").count() == 0
    response = page.goto(site.url + "/app/settings")
    assert response.status == 403
    assert "for workspace admins" in page.content()
    page.context.close()
