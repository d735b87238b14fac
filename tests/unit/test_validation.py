"""intently.kit.validation: pydantic errors in class-validator's words (spec section 4);
and intently.kit.timefmt, the ISO 8601 parsing and formatting behind it (section 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from intently.accounts.schemas import AccountsPush, ExternalIdsPatch
from intently.activities.schemas import ActivitiesPush
from intently.deals.schemas import DealsPush
from intently.kit.errors import ValidationFailed
from intently.kit.timefmt import format_ms, format_us, now_us, parse_iso8601
from intently.kit.validation import (
    CurrencyStr,
    DomainStr,
    EmailStr,
    IntNumber,
    IsoDateStr,
    NonEmptyStr,
    Strict,
    translate,
    validate,
)


class Inner(Strict):
    domain: DomainStr
    email: EmailStr | None = None


class Sample(Strict):
    name: NonEmptyStr
    count: IntNumber | None = None
    ratio: float | None = None
    flag: bool | None = None
    tags: list[str] | None = None
    items: Annotated[list[Inner], Field(min_length=1, max_length=3)] | None = None
    when: IsoDateStr | None = None
    kind: Literal["a", "b", "c"] | None = None
    minimum: Annotated[IntNumber, Field(ge=0)] | None = None
    fminimum: Annotated[float, Field(ge=0)] | None = None
    money: CurrencyStr | None = None
    meta: dict[str, Any] | None = None
    child: Inner | None = None


def errors(model: type[Strict], data: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as info:
        validate(model, data)
    exc = info.value
    assert exc.status == 400
    assert exc.data == exc.errors
    return list(exc.errors)


def one(model: type[Strict], data: Any) -> dict[str, Any]:
    errs = errors(model, data)
    assert len(errs) == 1, errs
    return dict(errs[0])


def entry(prop: str, path: str, rule: str, text: str) -> dict[str, Any]:
    return {"property": prop, "path": path, "constraints": {rule: text}}


# ---- valid input ------------------------------------------------------------------------


def test_valid_input_parses_and_ignores_unknown_properties() -> None:
    parsed = validate(
        Sample,
        {
            "name": "x",
            "count": 3.0,
            "ratio": 2,
            "flag": False,
            "tags": ["a"],
            "items": [{"domain": "https://www.Acme.com/x", "email": "a@acme.com"}],
            "when": "2026-04-30",
            "kind": "b",
            "minimum": 0,
            "fminimum": 0,
            "money": "eur",
            "unknown": {"ignored": True},
        },
    )
    assert parsed.count == 3 and isinstance(parsed.count, int)
    assert parsed.ratio == 2
    assert parsed.items is not None and parsed.items[0].domain == "acme.com"
    assert parsed.money == "EUR"
    assert not hasattr(parsed, "unknown")


# ---- absent and empty -------------------------------------------------------------------


def test_missing_required_string() -> None:
    assert one(Sample, {}) == entry("name", "name", "isNotEmpty", "name should not be empty")


@pytest.mark.parametrize("value", ["", "   ", "\t\n", None])
def test_blank_or_null_required_string(value: Any) -> None:
    assert one(Sample, {"name": value}) == entry(
        "name", "name", "isNotEmpty", "name should not be empty"
    )


@pytest.mark.parametrize(
    ("model", "prop"),
    [
        (AccountsPush, "accounts"),
        (DealsPush, "deals"),
        (ActivitiesPush, "activities"),
        (ExternalIdsPatch, "mappings"),
    ],
)
def test_missing_required_array(model: type[Strict], prop: str) -> None:
    assert one(model, {}) == entry(prop, prop, "isArray", f"{prop} must be an array")
    assert one(model, {prop: None}) == entry(prop, prop, "isArray", f"{prop} must be an array")
    assert one(model, {prop: "x"}) == entry(prop, prop, "isArray", f"{prop} must be an array")


@pytest.mark.parametrize(
    ("model", "prop", "most"),
    [
        (AccountsPush, "accounts", 100),
        (DealsPush, "deals", 100),
        (ActivitiesPush, "activities", 50),
        (ExternalIdsPatch, "mappings", 100),
    ],
)
def test_array_sizes(model: type[Strict], prop: str, most: int) -> None:
    assert one(model, {prop: []}) == entry(
        prop, prop, "arrayMinSize", f"{prop} must contain at least 1 elements"
    )
    # Too many items: the size error alone, even though each item is also invalid.
    errs = errors(model, {prop: [{}] * (most + 1)})
    assert (
        entry(prop, prop, "arrayMaxSize", f"{prop} must contain no more than {most} elements")
        in errs
    )


# ---- paths ------------------------------------------------------------------------------


def test_path_names_the_item_index() -> None:
    accounts = [{"domain": f"d{i}.com", "name": "n"} for i in range(5)]
    accounts[3]["domain"] = "not a domain"
    assert one(AccountsPush, {"accounts": accounts}) == entry(
        "domain", "accounts.3.domain", "isDomain", "domain must be a valid domain name"
    )


def test_deeply_nested_path() -> None:
    body = {
        "activities": [
            {
                "externalActivityId": "a",
                "activityType": "call",
                "occurredAt": "2026-01-01",
                "domain": "acme.com",
                "ownerEmail": "o@acme.com",
                "contacts": [{"email": "ok@acme.com"}, {"email": "nope"}],
            }
        ]
    }
    assert one(ActivitiesPush, body) == entry(
        "email", "activities.0.contacts.1.email", "isEmail", "email must be an email"
    )


def test_several_errors_are_all_listed_in_order() -> None:
    errs = errors(Sample, {"count": "x", "child": {"domain": "localhost"}, "kind": "z"})
    assert errs == [
        entry("name", "name", "isNotEmpty", "name should not be empty"),
        entry("count", "count", "isInt", "count must be an integer number"),
        entry("kind", "kind", "isIn", "kind must be one of the following values: a, b, c"),
        entry("domain", "child.domain", "isDomain", "domain must be a valid domain name"),
    ]


def test_nested_object_of_wrong_type() -> None:
    assert one(Sample, {"name": "x", "child": "acme.com"}) == entry(
        "child", "child", "isObject", "child must be an object"
    )
    assert one(Sample, {"name": "x", "meta": []}) == entry(
        "meta", "meta", "isObject", "meta must be an object"
    )


def test_missing_nested_property() -> None:
    assert one(Sample, {"name": "x", "items": [{"email": "a@b.com"}]}) == entry(
        "domain", "items.0.domain", "isNotEmpty", "domain should not be empty"
    )


# ---- type errors ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [5, 1.5, True, [], {}])
def test_must_be_a_string(value: Any) -> None:
    assert one(Sample, {"name": value}) == entry(
        "name", "name", "isString", "name must be a string"
    )


@pytest.mark.parametrize("value", ["1", True, [1], {}])
def test_must_be_a_number(value: Any) -> None:
    assert one(Sample, {"name": "x", "ratio": value}) == entry(
        "ratio",
        "ratio",
        "isNumber",
        "ratio must be a number conforming to the specified constraints",
    )


@pytest.mark.parametrize("value", ["1", 1.5, True, []])
def test_must_be_an_integer(value: Any) -> None:
    assert one(Sample, {"name": "x", "count": value}) == entry(
        "count", "count", "isInt", "count must be an integer number"
    )


@pytest.mark.parametrize("value", ["true", 1, 0, None, []])
def test_must_be_a_boolean(value: Any) -> None:
    if value is None:
        # null for an optional property is "not given".
        assert validate(Sample, {"name": "x", "flag": None}).flag is None
        return
    assert one(Sample, {"name": "x", "flag": value}) == entry(
        "flag", "flag", "isBoolean", "flag must be a boolean value"
    )


def test_upsert_must_be_a_boolean() -> None:
    body = {"accounts": [{"domain": "acme.com", "name": "A"}], "upsert": "yes"}
    assert one(AccountsPush, body) == entry(
        "upsert", "upsert", "isBoolean", "upsert must be a boolean value"
    )


def test_must_be_an_array_and_each_value_a_string() -> None:
    assert one(Sample, {"name": "x", "tags": "a,b"}) == entry(
        "tags", "tags", "isArray", "tags must be an array"
    )
    assert one(Sample, {"name": "x", "tags": ["a", 2, "c", None]}) == entry(
        "tags", "tags", "isString", "each value in tags must be a string"
    )


def test_each_value_in_a_nested_array() -> None:
    body = {"accounts": [{"domain": "acme.com", "name": "A", "tags": ["ok", 1]}]}
    assert one(AccountsPush, body) == entry(
        "tags", "accounts.0.tags", "isString", "each value in tags must be a string"
    )


# ---- value constraints ------------------------------------------------------------------


def test_literal_lists_the_values() -> None:
    assert one(Sample, {"name": "x", "kind": "d"}) == entry(
        "kind", "kind", "isIn", "kind must be one of the following values: a, b, c"
    )


def test_min_on_an_integer() -> None:
    assert one(Sample, {"name": "x", "minimum": -1}) == entry(
        "minimum", "minimum", "min", "minimum must not be less than 0"
    )


def test_min_on_a_number() -> None:
    # class-validator writes the bound as JavaScript prints it: 0, not 0.0.
    assert one(Sample, {"name": "x", "fminimum": -0.5}) == entry(
        "fminimum", "fminimum", "min", "fminimum must not be less than 0"
    )


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "2026-02-30", "", "30/04/2026"])
def test_iso8601(value: str) -> None:
    assert one(Sample, {"name": "x", "when": value}) == entry(
        "when", "when", "isISO8601", "when must be a valid ISO 8601 date string"
    )


@pytest.mark.parametrize(
    "value", ["2026-04-30", "2026-04-30T10:00:00", "2026-04-30T10:00:00Z", "2026-04-30T10:00+02:00"]
)
def test_iso8601_accepts(value: str) -> None:
    assert validate(Sample, {"name": "x", "when": value}).when == value


@pytest.mark.parametrize("value", ["a", "a@", "@b.com", "a b@c.com", "a@b@c.com"])
def test_email(value: str) -> None:
    assert one(Inner, {"domain": "acme.com", "email": value}) == entry(
        "email", "email", "isEmail", "email must be an email"
    )


def test_email_accepts_a_valid_address_unchanged() -> None:
    assert validate(Inner, {"domain": "acme.com", "email": "Jane.Doe+x@Acme.com"}).email == (
        "Jane.Doe+x@Acme.com"
    )


@pytest.mark.parametrize("value", ["localhost", "1.2.3.4", "acme .com", "http://"])
def test_domain(value: str) -> None:
    assert one(Inner, {"domain": value}) == entry(
        "domain", "domain", "isDomain", "domain must be a valid domain name"
    )


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_domain_is_empty_not_invalid(value: str) -> None:
    assert one(Inner, {"domain": value}) == entry(
        "domain", "domain", "isNotEmpty", "domain should not be empty"
    )


@pytest.mark.parametrize("value", ["US", "EURO", "12$", "€€€"])
def test_currency(value: str) -> None:
    assert one(Sample, {"name": "x", "money": value}) == entry(
        "money", "money", "isISO4217", "money must be a 3-letter currency code"
    )


# ---- translate --------------------------------------------------------------------------


def test_translate_groups_constraints_by_path() -> None:
    try:
        Sample.model_validate({"name": "", "count": "x"})
    except ValidationError as exc:
        failed = translate(exc)
    else:  # pragma: no cover
        pytest.fail("expected a ValidationError")
    assert isinstance(failed, ValidationFailed)
    assert failed.errors == [
        entry("name", "name", "isNotEmpty", "name should not be empty"),
        entry("count", "count", "isInt", "count must be an integer number"),
    ]
    assert len({e["path"] for e in failed.errors}) == len(failed.errors)


def test_top_level_not_an_object() -> None:
    errs = errors(Sample, ["not", "an", "object"])
    assert len(errs) == 1
    assert errs[0]["constraints"] and errs[0]["path"]


# ---- intently.kit.timefmt ---------------------------------------------------------------

US = 1_000_000
APRIL_30_10H = int(datetime(2026, 4, 30, 10, tzinfo=UTC).timestamp()) * US


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-04-30", APRIL_30_10H - 10 * 3600 * US),
        ("2026-04-30T10:00:00", APRIL_30_10H),
        ("2026-04-30T10:00:00Z", APRIL_30_10H),
        ("2026-04-30T10:00:00.000Z", APRIL_30_10H),
        ("2026-04-30T10:00:00+00:00", APRIL_30_10H),
        ("2026-04-30T12:00:00+02:00", APRIL_30_10H),
        ("2026-04-30T05:30:00-04:30", APRIL_30_10H),
        ("2026-04-30T10:00", APRIL_30_10H),
        ("2026-04-30T10:00:00.123456Z", APRIL_30_10H + 123_456),
        ("2026-04-30T10:00:00.5Z", APRIL_30_10H + 500_000),
        ("  2026-04-30T10:00:00Z  ", APRIL_30_10H),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59Z", -US),
    ],
)
def test_parse_iso8601(text: str, expected: int) -> None:
    assert parse_iso8601(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "2026",
        "30-04-2026",
        "04/30/2026",
        "2026-13-01",
        "2026-02-30",
        "2026-04-30T25:00:00",
        "2026-04-30T10:00:00+25:00",
        "tomorrow",
        "1714471200",
    ],
)
def test_parse_iso8601_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso8601(text)


def test_format_ms_and_us() -> None:
    assert format_ms(0) == "1970-01-01T00:00:00.000Z"
    assert format_us(0) == "1970-01-01T00:00:00.000000Z"
    assert format_ms(APRIL_30_10H + 123_456) == "2026-04-30T10:00:00.123Z"
    assert format_us(APRIL_30_10H + 123_456) == "2026-04-30T10:00:00.123456Z"
    assert format_ms(APRIL_30_10H + 999_999) == "2026-04-30T10:00:00.999Z"  # truncated
    assert format_us(1) == "1970-01-01T00:00:00.000001Z"
    assert format_us(-1) == "1969-12-31T23:59:59.999999Z"


def test_now_us_is_the_current_time() -> None:
    before = int(datetime.now(UTC).timestamp() * US)
    value = now_us()
    after = int(datetime.now(UTC).timestamp() * US)
    assert before - 1000 <= value <= after + 1000


# Instants from 1900 to 2200, in microseconds.
instants = st.integers(min_value=-2_208_988_800 * US, max_value=7_258_118_400 * US)


@given(instants)
@settings(max_examples=300, deadline=None)
def test_format_us_round_trips(us: int) -> None:
    assert parse_iso8601(format_us(us)) == us


@given(instants)
@settings(max_examples=300, deadline=None)
def test_format_ms_round_trips_to_the_millisecond(us: int) -> None:
    assert parse_iso8601(format_ms(us)) == us - us % 1000


@given(instants, st.integers(min_value=-23 * 60, max_value=23 * 60))
@settings(max_examples=200, deadline=None)
def test_offsets_name_the_same_instant(us: int, offset_minutes: int) -> None:
    utc = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    local = utc.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert parse_iso8601(local.isoformat()) == us
    assert parse_iso8601(utc.replace(tzinfo=None).isoformat()) == us
