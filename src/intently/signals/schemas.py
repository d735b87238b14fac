"""Request bodies of the signal endpoints, and each built-in source's workspace settings."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import ConfigDict, Field, RootModel, field_validator

from intently.catalog import MAX_SIGNAL_VALUE
from intently.kit.validation import DomainStr, IsoDateStr, NonEmptyStr, Strict

SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


class SignalPushItem(Strict):
    domain: DomainStr
    # As wide as their columns (signals.source, signals.type): PostgreSQL cannot store more.
    source: Annotated[NonEmptyStr, Field(max_length=32)]
    type: Annotated[NonEmptyStr, Field(max_length=48)]
    occurredAt: IsoDateStr
    topic: str | None = None
    # The bound is checked by _value (its message names the value) and stated in the OpenAPI.
    value: Annotated[
        float,
        Field(
            allow_inf_nan=False,
            json_schema_extra={"minimum": 0, "maximum": MAX_SIGNAL_VALUE},
        ),
    ] = 1.0
    id: str | None = None

    @field_validator("value")
    @classmethod
    def _value(cls, v: float) -> float:
        # The importers' bound: finite, never negative, and at most MAX_SIGNAL_VALUE.
        if not 0.0 <= v <= MAX_SIGNAL_VALUE:
            raise ValueError(f"value must be a number from 0 to {MAX_SIGNAL_VALUE}, not {v!r}")
        return v


class SignalsPush(Strict):
    signals: Annotated[list[SignalPushItem], Field(min_length=1, max_length=1000)]


class CustomSourceIn(Strict):
    name: NonEmptyStr

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SOURCE_NAME.match(v):
            raise ValueError(
                "name must be 2 to 32 lowercase letters, digits or underscores, "
                "starting with a letter"
            )
        return v


# ---- settings per source (GET/PUT /api/v1/sources/{source}/settings) ---------------------


class Settings(Strict):
    """Settings refuse unknown properties: a misspelt setting must not be silently ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")


class HighValuePage(Settings):
    """A URL pattern (glob on the path, or on the full URL when it has a scheme)."""

    name: NonEmptyStr
    pattern: NonEmptyStr


class WebsiteSettings(Settings):
    respectDoNotTrack: bool = True
    ipRetentionDays: Annotated[int, Field(ge=0, le=3650)] = 7
    highValuePages: list[HighValuePage] = Field(
        default_factory=lambda: [
            HighValuePage(name="pricing", pattern="*/pricing*"),
            HighValuePage(name="demo", pattern="*/demo*"),
            HighValuePage(name="contact", pattern="*/contact*"),
            HighValuePage(name="docs", pattern="*/docs*"),
        ]
    )
    # Track event names that count as a form submission.
    formEvents: list[NonEmptyStr] = Field(
        default_factory=lambda: ["Form Submitted", "form_submit", "Signed Up", "Demo Requested"]
    )


class BomboraSettings(Settings):
    surgeThreshold: Annotated[int, Field(ge=0, le=100)] = 60
    # Topics the workspace follows; empty follows every topic. Matched case-insensitively.
    topics: list[NonEmptyStr] = Field(default_factory=list)


class G2TagRule(Settings):
    """`tag` is a G2 tag or a glob (`categories.*`); the first matching rule wins."""

    tag: NonEmptyStr
    type: NonEmptyStr

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        allowed = (
            "pricing",
            "comparison",
            "alternatives",
            "category",
            "profile",
            "sponsored",
            "other",
        )
        if v not in allowed:
            raise ValueError(f"type must be one of {', '.join(allowed)}")
        return v


DEFAULT_G2_TAG_MAP: list[dict[str, str]] = [
    {"tag": "products.pricing", "type": "pricing"},
    {"tag": "comparisons.show", "type": "comparison"},
    {"tag": "products.competitors", "type": "alternatives"},
    {"tag": "categories.*", "type": "category"},
    {"tag": "products.reviews", "type": "profile"},
    {"tag": "products.features", "type": "profile"},
    {"tag": "products.details", "type": "profile"},
    {"tag": "products.discussions", "type": "profile"},
    {"tag": "ad.category_competitor.*", "type": "sponsored"},
]


class G2Settings(Settings):
    tagMap: list[G2TagRule] = Field(
        default_factory=lambda: [G2TagRule(**r) for r in DEFAULT_G2_TAG_MAP]
    )


class LinkedinSettings(Settings):
    # LinkedIn revises recent days: every pull re-reads this many days before the last one.
    trailingDays: Annotated[int, Field(ge=0, le=90)] = 7


SOURCE_SETTINGS: dict[str, type[Settings]] = {
    "website": WebsiteSettings,
    "bombora": BomboraSettings,
    "g2": G2Settings,
    "linkedin": LinkedinSettings,
}


class SourceSettingsPut(
    RootModel[WebsiteSettings | BomboraSettings | G2Settings | LinkedinSettings]
):
    """PUT /sources/{source}/settings: some of that source's settings (the OpenAPI body;
    the endpoint validates against the one source's model)."""


def default_settings(source: str) -> dict[str, Any]:
    return SOURCE_SETTINGS[source]().model_dump()
