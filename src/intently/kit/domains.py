"""Domain normalisation: one rule wherever a domain is stored or matched (spec section 7)."""

from __future__ import annotations

import re

import idna

_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.\-]*://")
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_LABEL_RE = re.compile(_LABEL)
# Already a bare host name (the common case in bulk pushes): one match decides.
_BARE_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")


class InvalidDomain(ValueError):
    pass


def normalise_domain(value: str) -> str:
    """`https://www.Acme.com:443/foo?x=1` -> `acme.com`; raises InvalidDomain when not a domain."""
    host = value.strip().lower()
    if _BARE_HOST_RE.fullmatch(host) and len(host) <= 253:
        host = _strip_www(host)
        if host.rsplit(".", 1)[1].isdigit():  # a dotted IPv4 address, not a domain
            raise InvalidDomain(value)
        return host
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
    if any(ch.isspace() for ch in host):
        raise InvalidDomain(value)
    if not host.isascii():
        try:
            # UTS 46 maps look-alikes first (fullwidth letters, ideographic full stops).
            host = idna.encode(host.rstrip(".\u3002\uff0e\uff61"), uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidDomain(value) from exc
    host = _strip_www(host[:-1] if host.endswith(".") else host)
    if not host or "." not in host or len(host) > 253:
        raise InvalidDomain(value)
    labels = host.split(".")
    # A numeric last label also rules out dotted IPv4 addresses; IPv6 never gets here
    # (brackets are refused above, and a bare one loses everything after its first colon).
    if not all(_LABEL_RE.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise InvalidDomain(value)
    return host


def _strip_www(host: str) -> str:
    """Drop leading `www.` labels, so that normalising a normalised domain changes nothing."""
    while host.startswith("www.") and "." in host[4:]:
        host = host[4:]
    return host


def try_normalise_domain(value: str) -> str | None:
    try:
        return normalise_domain(value)
    except InvalidDomain:
        return None
