"""How accounts are shown: the items the database renders, as a JSON array."""

from __future__ import annotations

import msgspec


def items_json(rows: list[tuple[str, str]]) -> list[msgspec.Raw]:
    """The items the database rendered (repository.page), each passed through as it is.

    Not joined into one string first: the encoder copies each item once, straight into
    the response body, so a page holds two copies of its items at most, not four.
    """
    return [msgspec.Raw(item) for _aid, item in rows]
