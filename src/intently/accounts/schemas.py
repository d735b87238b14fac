from __future__ import annotations

from typing import Annotated

from pydantic import Field

from intently.kit.validation import CustomFieldValues, DomainStr, NonEmptyStr, Strict, Tags


class AccountIn(Strict):
    domain: DomainStr
    name: NonEmptyStr
    externalId: str | None = None
    shortName: str | None = None
    linkedinUrl: str | None = None
    tags: Tags | None = None
    customFields: CustomFieldValues | None = None


class AccountsPush(Strict):
    accounts: Annotated[list[AccountIn], Field(min_length=1, max_length=100)]
    segmentId: str | None = None
    upsert: bool = False


class CustomFieldsUpdate(Strict):
    customFields: CustomFieldValues


class ExternalIdMapping(Strict):
    domain: DomainStr
    externalId: NonEmptyStr


class ExternalIdsPatch(Strict):
    mappings: Annotated[list[ExternalIdMapping], Field(min_length=1, max_length=100)]
