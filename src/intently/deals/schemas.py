from __future__ import annotations

from typing import Annotated

from pydantic import Field

from intently.kit.validation import (
    CurrencyStr,
    DomainStr,
    EmailStr,
    IsoDateStr,
    NonEmptyStr,
    Strict,
)


class AssociatedAccount(Strict):
    externalId: str | None = None
    domain: DomainStr | None = None
    name: str | None = None


class DealIn(Strict):
    externalDealId: NonEmptyStr
    name: NonEmptyStr
    amount: float | None = None
    stageId: str | None = None
    stageLabel: str | None = None
    pipelineId: str | None = None
    pipelineLabel: str | None = None
    startDate: IsoDateStr | None = None
    closedDate: IsoDateStr | None = None
    ownerName: str | None = None
    ownerEmail: EmailStr | None = None
    ownerId: str | None = None
    dealCurrencyCode: CurrencyStr | None = None
    associatedAccounts: list[AssociatedAccount] | None = None


class DealsPush(Strict):
    deals: Annotated[list[DealIn], Field(min_length=1, max_length=100)]
