"""Vendor export files as their users download them: Bombora Company Surge CSVs and
LinkedIn company engagement exports, row by row."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

BOMBORA_HEADER = ["Company Name", "Domain", "Size", "Industry", "Category", "Topic",
                  "Composite Score", "Bucket Code", "Metro Area", "Metro Composite Score",
                  "Metro Bucket Code", "Domain Origin Country"]  # fmt: skip


def bombora_row(domain: str, topic: str, score: Any, **extra: str) -> dict[str, str]:
    return {"Company Name": domain.split(".")[0].title(), "Domain": domain,
            "Size": "51-200 employees", "Industry": "Software", "Category": "Technology",
            "Topic": topic, "Composite Score": str(score), "Bucket Code": "B",
            "Metro Area": "Boston", "Metro Composite Score": "61", "Metro Bucket Code": "C",
            "Domain Origin Country": "US", **extra}  # fmt: skip


def bombora_csv(rows: list[dict[str, str]], header: list[str] | None = None) -> bytes:
    cols = header or BOMBORA_HEADER
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(cols)
    for r in rows:
        w.writerow([r.get(c, "") for c in cols])
    return out.getvalue().encode()


# A weekly surge file with a Week column, as the dashboard's import takes it.
SURGE_ROWS = [
    bombora_row("acme.com", "Cloud Computing", 72, Week="2026-11-23"),
    bombora_row("acme.com", "CRM", 88, Week="2026-11-23"),
    bombora_row("initech.io", "Payroll", 41, Week="2026-11-23"),  # below the threshold
    bombora_row("not a domain", "CRM", 90, Week="2026-11-23"),  # rejected
]
SURGE_HEADER = [*BOMBORA_HEADER, "Week"]

LINKEDIN_HEADER = ["Company Name", "Organization URN", "Date", "Campaign", "Impressions",
                   "Clicks", "Engagements", "Leads"]  # fmt: skip
LINKEDIN_DAY = date(2026, 10, 5)
LINKEDIN_ORG = "urn:li:organization:{}"


def linkedin_row(org: int | str, day: date | str = LINKEDIN_DAY, campaign: str = "",
                 impressions: Any = 100, clicks: Any = 5, engagements: Any = 9, leads: Any = 1,
                 name: str = "Co") -> list[Any]:  # fmt: skip
    urn = LINKEDIN_ORG.format(org) if isinstance(org, int) else org
    return [name, urn, str(day), campaign, impressions, clicks, engagements, leads]
