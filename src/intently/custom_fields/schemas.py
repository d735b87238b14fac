from __future__ import annotations

from typing import Literal

from pydantic import field_validator
from pydantic_core import PydanticCustomError

from intently.kit.validation import NonEmptyStr, Strict

LabelType = Literal[
    "singleLineText", "multiLineText", "singleSelection", "multiSelection", "number", "date"
]
LABEL_TYPES: tuple[str, ...] = LabelType.__args__  # type: ignore[attr-defined]
SELECTION_TYPES = ("singleSelection", "multiSelection")
# custom_fields.key is VARCHAR(300) and a key is the upper-cased label plus `_C`.
KEY_WIDTH = 300


class CustomFieldIn(Strict):
    label: NonEmptyStr
    labelType: LabelType
    description: str | None = None
    options: list[str] | None = None

    @field_validator("label")
    @classmethod
    def _key_fits(cls, v: str) -> str:
        # Counted as upper-cased, which lengthens a few letters (ß becomes SS).
        most = KEY_WIDTH - len("_C")
        if len(v.strip().upper()) > most:
            raise PydanticCustomError(
                "maxLength", "must be shorter than or equal to {most} characters", {"most": most}
            )
        return v
