"""The company profile read from loose text: vendor files and uploaded spreadsheets.

The API takes typed JSON (accounts/schemas.py); files hold text such as "51-200
employees", "United States" or "1,200". These turn such cells into the values the API
would store, with the same checks (kit/validation.py), or say what is wrong with them.
"""

from __future__ import annotations

import re
from typing import Any

import pycountry
from pydantic_core import PydanticCustomError

from intently.catalog import PROFILE_FIELDS
from intently.kit.validation import (
    annual_revenue,
    country_code,
    employee_count,
    profile_text,
    web_url,
)

# A head count as vendors write it: "51-200 employees", "10,001+ employees",
# "Medium (200 - 499 Employees)", "1 to 10", "500". The first number is the lower bound.
_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"
_SIZE = re.compile(rf"({_NUMBER})\s*(?:(?:-|\u2013|\u2014|to)\s*({_NUMBER})|\+)?", re.IGNORECASE)


def size_lower_bound(text: str) -> int | None:
    """The least number of employees a size band allows, or None if it names no number.

    The lower bound, not the middle: a band says only that the company is at least that
    big, and a fit rule such as `employeeCount >= 200` should never let a "51-200"
    company in on a guess. An understated size costs a little fit; an overstated one
    puts a small company on a list of large ones.
    """
    m = _SIZE.search(text)
    if m is None:
        return None
    low = int(m.group(1).replace(",", ""))
    if m.group(2) is not None and int(m.group(2).replace(",", "")) < low:
        return None  # "500-200": not a band
    return low


def country_of(text: str) -> str | None:
    """An ISO 3166-1 alpha-2 code for a code or an English country name, or None."""
    text = text.strip()
    if not text:
        return None
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        return None


def _number(raw: Any) -> Any:
    """A spreadsheet cell as a number where it is written as one ("1,200", " 3.5 ")."""
    if isinstance(raw, str):
        text = raw.strip().replace(",", "")
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return raw
    return raw


def _employees(raw: Any) -> int:
    value = _number(raw)
    if isinstance(value, str):
        low = size_lower_bound(value)
        value = low if low is not None else value
    return employee_count(value)


def _country(raw: Any) -> str | None:
    if isinstance(raw, str) and len(raw.strip()) > 2:
        code = country_of(raw)
        if code is not None:
            return code
    return country_code(raw)


def _text(raw: Any) -> str | None:
    # A spreadsheet may type a city or an industry code as a number: it is still text.
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    return profile_text(raw)


_CELL = {
    "shortName": _text,
    "industry": _text,
    "employeeCount": _employees,
    "annualRevenue": lambda raw: annual_revenue(_number(raw)),
    "country": _country,
    "city": _text,
    "logoUrl": web_url,
}
assert set(_CELL) == set(PROFILE_FIELDS)


class BadCell(ValueError):
    """A cell that is no value of its profile field; the message names field and value."""


def read_cell(field: str, raw: Any) -> Any:
    """The value a file's cell gives profile `field` (None: empty), or BadCell."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        return _CELL[field](raw)
    except PydanticCustomError as exc:
        raise BadCell(f"{field} {exc.message()}") from None
