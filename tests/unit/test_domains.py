"""intently.kit.domains.normalise_domain: spec section 7."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from intently.kit.domains import InvalidDomain, normalise_domain, try_normalise_domain

# ---- examples ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.Acme.com:443/foo?x=1", "acme.com"),  # the spec's own example
        ("acme.com", "acme.com"),
        ("  acme.com\t\n", "acme.com"),
        ("ACME.COM", "acme.com"),
        ("http://acme.com", "acme.com"),
        ("HTTPS://ACME.COM/", "acme.com"),
        ("https://user:pass@acme.com", "acme.com"),
        ("user@acme.com", "acme.com"),
        ("acme.com:8080", "acme.com"),
        ("acme.com/a/b/c", "acme.com"),
        ("acme.com?q=1", "acme.com"),
        ("acme.com#top", "acme.com"),
        ("acme.com/path?q=www.x.com#frag", "acme.com"),
        ("www.acme.com", "acme.com"),
        ("WWW.acme.com", "acme.com"),
        ("acme.com.", "acme.com"),
        ("www.acme.com.", "acme.com"),
        ("https://www.acme.com.:443/", "acme.com"),
        ("eu.acme.com", "eu.acme.com"),
        ("https://EU.Acme.com/x", "eu.acme.com"),
        ("www2.acme.com", "www2.acme.com"),
        ("wwwacme.com", "wwwacme.com"),
        ("shop.www.acme.com", "shop.www.acme.com"),
        ("acme.co.uk", "acme.co.uk"),
        ("my-shop.example", "my-shop.example"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("https://www.Bücher.de/katalog", "xn--bcher-kva.de"),
        ("münchen.example.com", "xn--mnchen-3ya.example.com"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("例え.jp", "xn--r8jz45g.jp"),
    ],
)
def test_examples(raw: str, expected: str) -> None:
    assert normalise_domain(raw) == expected
    assert try_normalise_domain(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "acme",
        "localhost",
        "https://",
        "http:///path",
        "acme .com",
        "ac me.com",
        "acme.com extra",
        "192.168.0.1",
        "http://10.0.0.1:8080/x",
        "8.8.8.8",
        "[::1]",
        "http://[2001:db8::1]/",
        "www.",
        ".",
        "..",
        ".acme.com",
        "acme..com",
        "acme.com..",
        "-acme.com",
        "acme-.com",
        "acme.123",
        "acme!.com",
        "a" * 64 + ".com",
        ".".join(["a" * 60] * 5) + ".com",
    ],
)
def test_not_domains(raw: str) -> None:
    with pytest.raises(InvalidDomain):
        normalise_domain(raw)
    assert try_normalise_domain(raw) is None


def test_invalid_domain_is_a_value_error() -> None:
    assert issubclass(InvalidDomain, ValueError)


def test_www_alone_before_a_tld_is_kept() -> None:
    # Dropping it would leave no dot: `www.com` is a domain of its own.
    assert normalise_domain("www.com") == "www.com"
    assert normalise_domain("https://WWW.COM/") == "www.com"


def test_idempotent_on_a_repeated_www_prefix() -> None:
    # A stored (normalised) domain must normalise to itself, or matching a value the API
    # returned (for example in a `domains` filter) would miss the account it came from.
    once = normalise_domain("www.www.acme.com")
    assert normalise_domain(once) == once


# ---- properties -------------------------------------------------------------------------

LABEL_CHARS = string.ascii_lowercase + string.digits
plain_label = st.text(LABEL_CHARS, min_size=1, max_size=12)
label = st.one_of(
    plain_label,
    st.sampled_from(["www", "eu", "shop", "acme", "xn--bcher-kva", "a-b", "w3"]),
    st.builds(lambda a, b: f"{a}-{b}", plain_label, plain_label),
)
tld = st.sampled_from(["com", "io", "co", "de", "org", "example", "uk", "xn--p1ai"])
plain_domain = st.builds(
    lambda labels, top: ".".join([*labels, top]), st.lists(label, min_size=1, max_size=3), tld
)


def _randomise_case(value: str, data: st.DataObject) -> str:
    flips = data.draw(st.lists(st.booleans(), min_size=len(value), max_size=len(value)))
    return "".join(c.upper() if f else c for c, f in zip(value, flips, strict=True))


@st.composite
def decorated(draw: st.DrawFn) -> tuple[str, str]:
    """(a plain domain without a leading `www` label, the same with URL decorations)."""
    base = draw(plain_domain)
    assume(not base.startswith("www."))
    scheme = draw(st.sampled_from(["", "http://", "https://", "HTTPS://", "//"]))
    userinfo = draw(st.sampled_from(["", "user@", "user:secret@"]))
    www = draw(st.sampled_from(["", "www.", "WWW."]))
    dot = draw(st.sampled_from(["", "."]))
    port = draw(st.sampled_from(["", ":80", ":443", ":8080"]))
    path = draw(st.sampled_from(["", "/", "/a/b", "/x.html"]))
    query = draw(st.sampled_from(["", "?q=1", "?next=http://other.com/"]))
    frag = draw(st.sampled_from(["", "#top", "#a/b"]))
    pad = draw(st.sampled_from(["", " ", "\t", "  \n"]))
    host = www + base + dot
    raw = f"{pad}{scheme}{userinfo}{host}{port}{path}{query}{frag}{pad}"
    return base, raw


@given(decorated(), st.data())
@settings(max_examples=300, deadline=None)
def test_decorations_are_dropped(pair: tuple[str, str], data: st.DataObject) -> None:
    base, raw = pair
    raw = _randomise_case(raw, data)
    assert normalise_domain(raw) == base


@given(plain_domain)
@example("www.www.acme.com")
@example("www.www.com")
@example("\uff57\uff57\uff57.acme.com")  # fullwidth "www"
@settings(max_examples=300, deadline=None)
def test_idempotent_on_plain_domains(raw: str) -> None:
    result = try_normalise_domain(raw)
    assume(result is not None)
    assert normalise_domain(result) == result


@given(st.one_of(st.text(max_size=40), decorated().map(lambda p: p[1])))
@example("https://www.Acme.com:443/foo?x=1")
@example("www.www.example.org")
@example("\uff21\uff23\uff2d\uff25.com")  # fullwidth "ACME"
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
def test_idempotent_on_any_text(raw: str) -> None:
    result = try_normalise_domain(raw)
    assume(result is not None)
    assert normalise_domain(result) == result


@given(st.one_of(st.text(max_size=40), decorated().map(lambda p: p[1])))
@settings(max_examples=500, deadline=None)
def test_results_are_bare_lowercase_ascii_host_names(raw: str) -> None:
    result = try_normalise_domain(raw)
    assume(result is not None)
    assert result == result.lower()
    assert result.isascii()
    assert result.strip() == result
    assert "." in result
    for forbidden in ("://", "/", ":", "?", "#", "@", " ", "\t", "\n", "[", "]"):
        assert forbidden not in result, (raw, result)
    assert not result.endswith(".")
    assert not result.startswith(".")
    assert all(part for part in result.split("."))
    assert len(result) <= 253


@given(st.text(max_size=30))
@settings(max_examples=300, deadline=None)
def test_never_raises_anything_but_invalid_domain(raw: str) -> None:
    with contextlib.suppress(InvalidDomain):
        normalise_domain(raw)


@given(
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    st.sampled_from(["", "http://", "https://"]),
    st.sampled_from(["", ":80", "/x"]),
)
@settings(deadline=None)
def test_ipv4_addresses_are_not_domains(
    octets: tuple[int, int, int, int], scheme: str, suffix: str
) -> None:
    raw = scheme + ".".join(map(str, octets)) + suffix
    assert try_normalise_domain(raw) is None


@given(st.text(LABEL_CHARS, min_size=1, max_size=20), st.text(LABEL_CHARS, min_size=1, max_size=5))
@settings(deadline=None)
def test_inner_whitespace_is_not_a_domain(left: str, right: str) -> None:
    assert try_normalise_domain(f"{left} x.{right}") is None
    assert try_normalise_domain(f"{left}.{right}\tcom") is None
