from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from intently.kit.validation import DomainStr, NonEmptyStr, Strict

SegmentType = Literal["static", "dynamic"]
SegmentStatus = Literal["draft", "active", "archived"]
STATUSES = ("draft", "active", "archived")


class SegmentIn(Strict):
    name: NonEmptyStr
    type: SegmentType = "static"
    status: SegmentStatus = "active"
    rules: dict[str, Any] | None = None


class SegmentPatch(Strict):
    name: NonEmptyStr | None = None
    status: SegmentStatus | None = None
    rules: dict[str, Any] | None = None


class MembersChange(Strict):
    rtp_aids: Annotated[list[str], Field(max_length=1000)] | None = None
    domains: Annotated[list[DomainStr], Field(max_length=1000)] | None = None


class PreviewIn(Strict):
    rules: dict[str, Any]
    sampleSize: Annotated[int, Field(ge=0, le=100)] = 10
