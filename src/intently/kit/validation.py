"""Request validation: pydantic v2 in strict mode, errors in the External API's words.

Recotap answers shape errors the way NestJS's class-validator does: a list of
`{property, path, constraints: {rule: text}}`. Pydantic's error types are translated
here, once; the custom types below raise errors whose type already is the rule name.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WrapValidator,
)
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from intently.kit.domains import InvalidDomain, normalise_domain
from intently.kit.errors import ValidationFailed
from intently.kit.timefmt import parse_iso8601
from intently.settings import Settings

M = TypeVar("M", bound=BaseModel)

# The limits a model applies when validate() was given no Settings (the CLI, the demo).
_DEFAULTS: dict[str, int] = {
    name: Settings.model_fields[name].default
    for name in ("max_tags", "max_tag_length", "max_custom_fields")
}


class Strict(BaseModel):
    """Base for request bodies: strict types, unknown properties ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=False)


def _not_empty(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("isNotEmpty", "should not be empty")
    return value


def _domain(value: str) -> str:
    try:
        return normalise_domain(value)
    except InvalidDomain:
        if not value.strip():
            raise PydanticCustomError("isNotEmpty", "should not be empty") from None
        raise PydanticCustomError("isDomain", "must be a valid domain name") from None


def _iso8601(value: str) -> str:
    try:
        parse_iso8601(value)
    except ValueError:
        raise PydanticCustomError("isISO8601", "must be a valid ISO 8601 date string") from None
    return value


def _email(value: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise PydanticCustomError("isEmail", "must be an email") from None
    return value.strip()


def _integral(value: Any) -> Any:
    # JSON has one number type: 3.0 is an integer to a JavaScript validator, so to us.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _currency(value: str) -> str:
    if len(value) != 3 or not value.isascii() or not value.isalpha():
        raise PydanticCustomError("isISO4217", "must be a 3-letter currency code")
    return value.upper()


def _limit(info: ValidationInfo, name: str) -> int:
    """The operator's limit `name`, from the Settings that validate() passed as context."""
    settings = info.context
    return int(getattr(settings, name)) if settings is not None else _DEFAULTS[name]


def _tags(value: list[str], info: ValidationInfo) -> list[str]:
    most = _limit(info, "max_tags")
    if len(value) > most:
        raise PydanticCustomError(
            "arrayMaxSize", "must contain no more than {most} elements", {"most": most}
        )
    longest = _limit(info, "max_tag_length")
    if any(len(tag) > longest for tag in value):
        raise PydanticCustomError(
            "maxLength",
            "must be shorter than or equal to {longest} characters",
            {"longest": longest, "each": True},
        )
    return value


def _custom_fields(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    most = _limit(info, "max_custom_fields")
    if len(value) > most:
        raise PydanticCustomError(
            "maxProperties", "must contain no more than {most} keys", {"most": most}
        )
    return value


# ---- the company profile (spec/api-v1.md "Account profile") ---------------------------
# Intently's own fields, not Recotap's: a refusal names the value as well as the field, so
# a CRM sync with thousands of rows says which one was wrong.

MAX_PROFILE_TEXT = 200
MAX_EMPLOYEES = 10_000_000
MAX_REVENUE = 1e13  # USD; the largest companies have under 1e12
MAX_URL = 2048


def _shown(value: Any) -> str:
    """The value as the client wrote it (JSON), cut short."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(rule: str, text: str, value: Any) -> PydanticCustomError:
    # The message is the sentence after the property name (see _WORDED).
    return PydanticCustomError(rule, f"{text}, not {{value}}", {"value": _shown(value)})


def profile_text(value: Any, *, most: int = MAX_PROFILE_TEXT) -> str | None:
    """A profile string trimmed; None if blank (a blank value says nothing)."""
    if not isinstance(value, str):
        raise _refuse("isString", "must be a string", value)
    value = value.strip()
    if len(value) > most:
        raise PydanticCustomError(
            "maxLength",
            "must be shorter than or equal to {most} characters, not {length}",
            {"most": most, "length": len(value)},
        )
    return value or None


def employee_count(value: Any) -> int:
    # bool is an int to Python, never a head count to a client.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse("isInt", "must be an integer number", value)
    if not 0 <= value <= MAX_EMPLOYEES:
        raise _refuse("isInRange", f"must be between 0 and {MAX_EMPLOYEES}", value)
    return value


def annual_revenue(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _refuse("isNumber", "must be a number", value)
    if not 0 <= value <= MAX_REVENUE:
        raise _refuse("isInRange", f"must be between 0 and {MAX_REVENUE:.0f} (USD)", value)
    return float(value)


def country_code(value: Any) -> str | None:
    """An ISO 3166-1 alpha-2 code in any case, as its upper-case code."""
    if not isinstance(value, str):
        raise _refuse("isString", "must be a string", value)
    text = value.strip()
    if not text:
        return None
    if len(text) != 2 or pycountry.countries.get(alpha_2=text.upper()) is None:
        raise _refuse("isISO31661Alpha2", "must be an ISO 3166-1 alpha-2 country code", value)
    return text.upper()


def web_url(value: Any) -> str | None:
    """An absolute http(s) URL."""
    text = profile_text(value, most=MAX_URL)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _refuse("isUrl", "must be an absolute http or https URL", value)
    return text


def _profile(check: Any) -> WrapValidator:
    """Our check first (its errors name the value), then the strict type for the schema."""

    def run(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        checked = None if value is None else check(value)
        return None if checked is None else handler(checked)

    return WrapValidator(run)


ProfileText = Annotated[str, Field(max_length=MAX_PROFILE_TEXT), _profile(profile_text)]
EmployeeCount = Annotated[int, Field(ge=0, le=MAX_EMPLOYEES), _profile(employee_count)]
AnnualRevenue = Annotated[float, Field(ge=0, le=MAX_REVENUE), _profile(annual_revenue)]
CountryCode = Annotated[
    str, Field(min_length=2, max_length=2, pattern="^[A-Za-z]{2}$"), _profile(country_code)
]
WebUrl = Annotated[str, Field(max_length=MAX_URL), _profile(web_url)]

NonEmptyStr = Annotated[str, AfterValidator(_not_empty)]
DomainStr = Annotated[str, AfterValidator(_domain)]
IsoDateStr = Annotated[str, AfterValidator(_iso8601)]
EmailStr = Annotated[str, AfterValidator(_email)]
CurrencyStr = Annotated[str, AfterValidator(_currency)]
IntNumber = Annotated[int, BeforeValidator(_integral)]
# An account's tags and custom field values, within the operator's limits.
Tags = Annotated[list[str], AfterValidator(_tags)]
CustomFieldValues = Annotated[dict[str, Any], AfterValidator(_custom_fields)]

# Required arrays: when absent, class-validator reports them as not being an array.
ARRAY_PROPERTIES = frozenset({"accounts", "deals", "activities", "mappings", "contacts"})

_TYPE_RULES: dict[str, tuple[str, str]] = {
    "string_type": ("isString", "{p} must be a string"),
    "float_type": ("isNumber", "{p} must be a number conforming to the specified constraints"),
    "int_type": ("isInt", "{p} must be an integer number"),
    "int_from_float": ("isInt", "{p} must be an integer number"),
    "bool_type": ("isBoolean", "{p} must be a boolean value"),
    "list_type": ("isArray", "{p} must be an array"),
    "dict_type": ("isObject", "{p} must be an object"),
    "model_type": ("isObject", "{p} must be an object"),
    "model_attributes_type": ("isObject", "{p} must be an object"),
    "finite_number": ("isNumber", "{p} must be a number conforming to the specified constraints"),
}


# Errors raised by the validators above: their message is the sentence after the name.
_WORDED = frozenset(
    {
        "isNotEmpty",
        "isDomain",
        "isISO8601",
        "isEmail",
        "isISO4217",
        "arrayMaxSize",
        "maxLength",
        "maxProperties",
        "isString",
        "isInt",
        "isNumber",
        "isInRange",
        "isISO31661Alpha2",
        "isUrl",
    }
)


def _describe(err: Any) -> tuple[str, str, str, str]:
    """(property, path, rule, text) for one pydantic error."""
    loc = [part for part in err["loc"] if not str(part).startswith("function-")]
    etype = err["type"]
    ctx = err.get("ctx") or {}
    # An error inside an array of scalars speaks of the array: "each value in tags ...".
    each = bool(loc) and isinstance(loc[-1], int) and etype in _TYPE_RULES
    prop_loc = loc[:-1] if each else loc
    names = [str(p) for p in prop_loc if not isinstance(p, int)]
    prop = names[-1] if names else "body"
    path = ".".join(str(p) for p in prop_loc) or prop
    absent = etype == "missing" or (etype in _TYPE_RULES and err.get("input") is None and not each)
    if absent and prop in ARRAY_PROPERTIES:
        return prop, path, "isArray", f"{prop} must be an array"
    if absent:
        return prop, path, "isNotEmpty", f"{prop} should not be empty"
    if etype in _TYPE_RULES:
        rule, text = _TYPE_RULES[etype]
        text = text.format(p=prop)
        if each:
            text = "each value in " + text
        return prop, path, rule, text
    # A length bound on a string (pydantic says too_long when a validator wraps the str).
    if etype in ("string_too_long", "too_long") and isinstance(err.get("input"), str):
        most = ctx.get("max_length")
        return prop, path, "maxLength", f"{prop} must be shorter than or equal to {most} characters"
    if etype in ("string_too_short", "too_short") and isinstance(err.get("input"), str):
        least = ctx.get("min_length")
        return prop, path, "minLength", f"{prop} must be longer than or equal to {least} characters"
    if etype == "too_short":
        return (
            prop,
            path,
            "arrayMinSize",
            f"{prop} must contain at least {ctx.get('min_length')} elements",
        )
    if etype == "too_long":
        return (
            prop,
            path,
            "arrayMaxSize",
            f"{prop} must contain no more than {ctx.get('max_length')} elements",
        )
    if etype in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return prop, path, "min", f"{prop} must not be less than {bound}"
    if etype in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return prop, path, "max", f"{prop} must not be greater than {bound}"
    if etype == "extra_forbidden":
        return prop, path, "whitelistValidation", f"property {prop} should not exist"
    if etype == "value_error":
        # Our own validators word the whole sentence, starting with the property name.
        return prop, path, "isValid", str(ctx.get("error") or err["msg"])
    if etype in ("literal_error", "enum"):
        expected = ctx.get("expected", "")
        values = ", ".join(v.strip().strip("'") for v in expected.replace(" or ", ", ").split(","))
        return prop, path, "isIn", f"{prop} must be one of the following values: {values}"
    if etype in _WORDED:
        text = f"{prop} {err['msg']}"
        return prop, path, etype, "each value in " + text if ctx.get("each") else text
    return prop, path, etype, f"{prop} is invalid"


def translate(exc: ValidationError) -> ValidationFailed:
    """Group pydantic's errors by path into the class-validator shape."""
    grouped: dict[str, dict[str, Any]] = {}
    for err in exc.errors(include_url=False):
        prop, path, rule, text = _describe(err)
        entry = grouped.setdefault(path, {"property": prop, "path": path, "constraints": {}})
        entry["constraints"].setdefault(rule, text)
    return ValidationFailed(list(grouped.values()))


Batch = Literal["accounts", "deals", "activities", "mappings"]


def validate(
    model: type[M], data: Any, settings: Settings | None = None, *, batch: Batch | None = None
) -> M:
    """Parse `data` into `model` or raise ValidationFailed.

    `settings` carry the operator's limits (tags, custom fields, items per batch); without
    them the defaults apply. `batch` names the array whose length the operator may have
    set below the spec's maximum, which the model states (`max_batch_<batch>`).
    """
    too_many: str | None = None
    if batch is not None and settings is not None:
        most: int = getattr(settings, f"max_batch_{batch}")
        items = data.get(batch) if isinstance(data, dict) else None
        if isinstance(items, list) and len(items) > most:
            too_many = f"{batch} must contain no more than {most} elements"
    try:
        parsed = model.model_validate(data, context=settings)
    except ValidationError as exc:
        failed = translate(exc)
        if too_many is not None:
            _add_batch_error(failed, batch or "", too_many)
        raise failed from None
    if too_many is not None:
        raise ValidationFailed(
            [{"property": batch, "path": batch, "constraints": {"arrayMaxSize": too_many}}]
        )
    return parsed


def _add_batch_error(failed: ValidationFailed, batch: str, text: str) -> None:
    """Put the operator's batch limit in place of (or beside) the model's other errors."""
    for entry in failed.errors:
        if entry["path"] == batch:
            entry["constraints"]["arrayMaxSize"] = text
            return
    failed.errors.insert(
        0, {"property": batch, "path": batch, "constraints": {"arrayMaxSize": text}}
    )
