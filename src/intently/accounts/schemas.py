from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from intently.kit.validation import DomainStr, NonEmptyStr, Strict


class AccountIn(Strict):
    domain: DomainStr
    name: NonEmptyStr
    externalId: str | None = None
    shortName: str | None = None
    linkedinUrl: str | None = None
    tags: list[str] | None = None
    customFields: dict[str, Any] | None = None


class AccountsPush(Strict):
    accounts: Annotated[list[AccountIn], Field(min_length=1, max_length=100)]
    segmentId: str | None = None
    upsert: bool = False


class CustomFieldsUpdate(Strict):
    customFields: dict[str, Any]


class ExternalIdMapping(Strict):
    domain: DomainStr
    externalId: NonEmptyStr


class ExternalIdsPatch(Strict):
    mappings: Annotated[list[ExternalIdMapping], Field(min_length=1, max_length=100)]
