from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from intently.kit.validation import (
    DomainStr,
    EmailStr,
    IntNumber,
    IsoDateStr,
    NonEmptyStr,
    Strict,
)

NonNegInt = Annotated[IntNumber, Field(ge=0)]


class ContactIn(Strict):
    email: EmailStr
    externalContactId: str | None = None
    name: str | None = None
    title: str | None = None
    department: str | None = None
    seniority: str | None = None
    phone: str | None = None
    linkedinUrl: str | None = None


class Sender(Strict):
    name: str | None = None
    email: EmailStr | None = None


class ActivityIn(Strict):
    externalActivityId: NonEmptyStr
    activityType: NonEmptyStr
    occurredAt: IsoDateStr
    domain: DomainStr
    ownerEmail: EmailStr
    contacts: Annotated[list[ContactIn], Field(min_length=1)]
    accountName: str | None = None
    subject: str | None = None
    ownerName: str | None = None
    ownerId: str | None = None
    from_: Sender | None = Field(default=None, alias="from")
    callTitle: str | None = None
    durationMinutes: Annotated[float, Field(ge=0)] | None = None
    outcome: str | None = None
    direction: Literal["inbound", "outbound"] | None = None
    openCount: NonNegInt | None = None
    clickCount: NonNegInt | None = None
    replyCount: NonNegInt | None = None


class ActivitiesPush(Strict):
    activities: Annotated[list[ActivityIn], Field(min_length=1, max_length=50)]
