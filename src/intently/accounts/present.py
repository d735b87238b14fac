"""How accounts are shown: the items the database renders, joined into one JSON array."""

from __future__ import annotations

import msgspec


def items_json(rows: list[tuple[str, str]]) -> msgspec.Raw:
    """A JSON array of the items the database rendered (repository.page)."""
    return msgspec.Raw("[" + ",".join(item for _aid, item in rows) + "]")
