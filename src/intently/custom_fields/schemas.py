from __future__ import annotations

from typing import Literal

from intently.kit.validation import NonEmptyStr, Strict

LabelType = Literal[
    "singleLineText", "multiLineText", "singleSelection", "multiSelection", "number", "date"
]
LABEL_TYPES: tuple[str, ...] = LabelType.__args__  # type: ignore[attr-defined]
SELECTION_TYPES = ("singleSelection", "multiSelection")


class CustomFieldIn(Strict):
    label: NonEmptyStr
    labelType: LabelType
    description: str | None = None
    options: list[str] | None = None
