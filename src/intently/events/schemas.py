from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from intently.kit.validation import Strict

EVENT_TYPES = (
    "account.created",
    "segment.entered",
    "segment.exited",
    "stage.changed",
    "score.threshold_crossed",
)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    account_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    data: dict[str, Any] | None = None


ScoreName = Literal[
    "rtp_account_score",
    "rtp_website_intent_score",
    "rtp_bombora_intent_score",
    "rtp_g2_intent_score",
    "rtp_advertising_activity_score",
]


def _above_zero(value: float) -> float:
    # `gt=0` would be reported as "must not be less than 0", which 0 is not.
    if not value > 0:
        raise ValueError("value must be greater than 0")
    return value


class Threshold(Strict):
    score: ScoreName
    # Strict: a JSON number only (an int is a number), never "60" or true.
    value: Annotated[
        float,
        Field(le=100, allow_inf_nan=False, json_schema_extra={"exclusiveMinimum": 0}),
        AfterValidator(_above_zero),
    ]


def _distinct(items: list[Threshold]) -> list[Threshold]:
    # The same threshold twice would record every crossing twice.
    seen: dict[tuple[str, float], int] = {}
    for i, t in enumerate(items):
        first = seen.setdefault((t.score, t.value), i)
        if first != i:
            raise ValueError(
                f"thresholds must not repeat {t.score} at {t.value:g} (items {first} and {i})"
            )
    return items


class ThresholdsIn(Strict):
    thresholds: Annotated[list[Threshold], Field(max_length=50), AfterValidator(_distinct)]
