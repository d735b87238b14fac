from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from intently.kit.validation import Strict

ScoreName = Literal[
    "rtp_account_score",
    "rtp_website_intent_score",
    "rtp_bombora_intent_score",
    "rtp_g2_intent_score",
    "rtp_advertising_activity_score",
]


class Threshold(Strict):
    score: ScoreName
    value: Annotated[float, Field(gt=0, le=100, strict=False)]


class ThresholdsIn(Strict):
    thresholds: Annotated[list[Threshold], Field(max_length=50)]
