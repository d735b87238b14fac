"""How an event is shown by the API, the dashboard and webhooks."""

from __future__ import annotations

from typing import Any

from intently.kit.db import json_value
from intently.kit.timefmt import format_ms


def public(row: Any) -> dict[str, Any]:
    """The event as the API and webhooks show it."""
    out: dict[str, Any] = {
        "eventId": row.id,
        "type": row.type,
        "occurredAt": format_ms(int(row.occurred_at)),
        "rtp_aid": row.account_id,
        "before": json_value(row.before),
        "after": json_value(row.after),
    }
    data = json_value(row.data)
    if data:
        out.update(data)
    return out
