"""intently.kit.pagination: signed opaque cursors and `limit` (spec section 5)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intently.kit.errors import BadRequest, ValidationFailed
from intently.kit.pagination import Cursor, CursorCodec, page, parse_limit

SECRET = "unit-test-secret"


@pytest.fixture
def codec() -> CursorCodec:
    return CursorCodec(SECRET)


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _refused(codec: CursorCodec, token: str, list_name: str = "accounts", ws: int = 7) -> None:
    with pytest.raises(BadRequest) as info:
        codec.decode(token, list_name, ws)
    assert info.value.custom_message == "Invalid cursor"
    assert info.value.status == 400
    assert info.value.data is None


SAMPLE = Cursor(
    "accounts",
    7,
    "01a217bf15ea002dd5b7270c",
    1_777_000_000_123_456,
    {"lastSync": 1_700_000_000_000_000, "domains": ["acme.com", "eu.acme.com"]},
)


# ---- round trip -------------------------------------------------------------------------


def test_round_trip(codec: CursorCodec) -> None:
    token = codec.encode(SAMPLE)
    assert codec.decode(token, "accounts", 7) == SAMPLE


def test_round_trip_with_defaults(codec: CursorCodec) -> None:
    cursor = Cursor("segments", 1, "0" * 24)
    decoded = codec.decode(codec.encode(cursor), "segments", 1)
    assert decoded == cursor
    assert (decoded.sync_us, decoded.filters) == (0, {})


def test_token_is_url_safe_and_opaque(codec: CursorCodec) -> None:
    token = codec.encode(SAMPLE)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert "acme.com" not in token and SAMPLE.after not in token


def test_same_secret_in_another_codec_accepts(codec: CursorCodec) -> None:
    # Every process sharing the secret must accept the others' cursors.
    assert CursorCodec(SECRET).decode(codec.encode(SAMPLE), "accounts", 7) == SAMPLE


@given(
    list_name=st.text(min_size=1, max_size=40),
    ws=st.integers(min_value=1, max_value=2**31 - 1),
    after=st.text(max_size=30),
    sync_us=st.integers(min_value=0, max_value=2**62),
    filters=st.dictionaries(
        st.text(max_size=10),
        st.one_of(
            st.integers(-(2**62), 2**62), st.text(max_size=10), st.lists(st.text(max_size=10))
        ),
        max_size=4,
    ),
)
@settings(max_examples=200, deadline=None)
def test_round_trip_property(
    list_name: str, ws: int, after: str, sync_us: int, filters: dict[str, Any]
) -> None:
    codec = CursorCodec(SECRET)
    cursor = Cursor(list_name, ws, after, sync_us, filters)
    assert codec.decode(codec.encode(cursor), list_name, ws) == cursor


# ---- refusals ---------------------------------------------------------------------------


def test_tampering_any_byte_is_refused(codec: CursorCodec) -> None:
    raw = _raw(codec.encode(SAMPLE))
    for i in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            forged = raw[:i] + bytes([raw[i] ^ flip]) + raw[i + 1 :]
            _refused(codec, _token(forged))


def test_truncated_or_extended_tokens_are_refused(codec: CursorCodec) -> None:
    raw = _raw(codec.encode(SAMPLE))
    for n in range(len(raw)):
        _refused(codec, _token(raw[:n]))
    _refused(codec, _token(raw + b"\x00"))
    _refused(codec, _token(raw + raw))


def test_changing_any_character_is_refused_or_harmless(codec: CursorCodec) -> None:
    token = codec.encode(SAMPLE)
    alphabet = "AQgw-_09az"
    for i in range(len(token)):
        for c in alphabet:
            if c == token[i]:
                continue
            forged = token[:i] + c + token[i + 1 :]
            try:
                decoded = codec.decode(forged, "accounts", 7)
            except BadRequest as exc:
                assert exc.custom_message == "Invalid cursor"
            else:
                # Only the unused low bits of the last character may change harmlessly.
                assert i == len(token) - 1 and decoded == SAMPLE


@pytest.mark.parametrize(
    "token", ["", "x", "abc", "!!!!", "====", "%%", "a" * 500, "null", "eyJ9", "\u00e9\u00e9"]
)
def test_garbage_is_refused(codec: CursorCodec, token: str) -> None:
    _refused(codec, token)


def test_another_list_is_refused(codec: CursorCodec) -> None:
    token = codec.encode(SAMPLE)
    for name in ("segments", "segment-members:" + "0" * 24, "Accounts", "accounts ", ""):
        _refused(codec, token, name, 7)


def test_another_workspace_is_refused(codec: CursorCodec) -> None:
    token = codec.encode(SAMPLE)
    for ws in (0, 6, 8, -7, 70):
        _refused(codec, token, "accounts", ws)


def test_another_secret_is_refused(codec: CursorCodec) -> None:
    token = codec.encode(SAMPLE)
    for secret in ("", SECRET + "x", SECRET.upper(), "other"):
        _refused(CursorCodec(secret), token)


def test_a_validly_signed_payload_of_the_wrong_shape_is_refused() -> None:
    """Even with the right key, a payload that is not a cursor is refused, not a 500."""
    import hashlib
    import hmac

    import msgspec

    key = hashlib.sha256(("cursor:" + SECRET).encode()).digest()
    codec = CursorCodec(SECRET)
    for payload in (
        msgspec.msgpack.encode(["accounts", "seven", "x"]),
        msgspec.msgpack.encode({"list_name": "accounts"}),
        msgspec.msgpack.encode(None),
        b"\xc1",
        b"",
    ):
        mac = hmac.new(key, payload, hashlib.sha256).digest()[:16]
        _refused(codec, _token(mac + payload))


# ---- limit and page ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 100), ("1", 1), ("1000", 1000), ("250", 250), (" 7 ", 7)]
)
def test_parse_limit_accepts(raw: str | None, expected: int) -> None:
    assert parse_limit(raw) == expected


@pytest.mark.parametrize("raw", ["0", "1001", "-1", "abc", "", "1.5", "1e2", "100000000000"])
def test_parse_limit_refuses(raw: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_limit(raw)
    (err,) = info.value.errors
    assert (err["property"], err["path"]) == ("limit", "limit")
    assert err["constraints"] == {"isInt": "limit must be an integer between 1 and 1000"}


def test_page_object() -> None:
    assert page([1, 2], "tok", "2026-01-01T00:00:00.000000Z") == {
        "data": [1, 2],
        "nextCursor": "tok",
        "hasNextPage": True,
        "syncTimestamp": "2026-01-01T00:00:00.000000Z",
    }
    assert page([], None, "s") == {
        "data": [],
        "nextCursor": None,
        "hasNextPage": False,
        "syncTimestamp": "s",
    }
