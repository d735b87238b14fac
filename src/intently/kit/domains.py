"""Domain normalisation: one rule wherever a domain is stored or matched (spec section 7)."""

from __future__ import annotations

import ipaddress
import re

import idna

_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.\-]*://")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class InvalidDomain(ValueError):
    pass


def normalise_domain(value: str) -> str:
    """`https://www.Acme.com:443/foo?x=1` -> `acme.com`; raises InvalidDomain when not a domain."""
    host = value.strip().lower()
    m = _SCHEME_RE.match(host)
    if m:
        host = host[m.end() :]
    elif host.startswith("//"):
        host = host[2:]
    # The authority ends at the first path, query or fragment character.
    for sep in "/?#":
        cut = host.find(sep)
        if cut != -1:
            host = host[:cut]
    at = host.rfind("@")
    if at != -1:
        host = host[at + 1 :]
    if host.startswith("["):  # a bracketed IPv6 literal
        raise InvalidDomain(value)
    colon = host.find(":")
    if colon != -1:
        host = host[:colon]
    if host.endswith("."):
        host = host[:-1]
    if host.startswith("www.") and "." in host[4:]:
        host = host[4:]
    if not host or "." not in host or any(ch.isspace() for ch in host):
        raise InvalidDomain(value)
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidDomain(value) from exc
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise InvalidDomain(value)
    if len(host) > 253:
        raise InvalidDomain(value)
    labels = host.split(".")
    if not all(_LABEL_RE.match(label) for label in labels) or labels[-1].isdigit():
        raise InvalidDomain(value)
    return host


def try_normalise_domain(value: str) -> str | None:
    try:
        return normalise_domain(value)
    except InvalidDomain:
        return None
