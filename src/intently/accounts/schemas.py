from __future__ import annotations

from typing import Annotated

from pydantic import Field

from intently.kit.validation import (
    AnnualRevenue,
    CountryCode,
    CustomFieldValues,
    DomainStr,
    EmployeeCount,
    NonEmptyStr,
    ProfileText,
    Strict,
    Tags,
    WebUrl,
)


class AccountIn(Strict):
    domain: DomainStr
    name: NonEmptyStr
    externalId: str | None = None
    shortName: str | None = None
    linkedinUrl: str | None = None
    tags: Tags | None = None
    customFields: CustomFieldValues | None = None
    # The company profile (extension fields; catalog.PROFILE_FIELDS). Not sent: kept.
    industry: ProfileText | None = None
    employeeCount: EmployeeCount | None = None
    annualRevenue: AnnualRevenue | None = None
    country: CountryCode | None = None
    city: ProfileText | None = None
    logoUrl: WebUrl | None = None


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
