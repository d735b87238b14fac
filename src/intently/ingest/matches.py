"""What a website visit resolves to (`Match`), and the evidence that needs no IP address:
a `group` call's traits and an `identify` call's business email.

Free-mail domains never match, and neither do ISP, hosting, CDN, VPN and mobile networks
(the domain lists in `data/`): they say who runs the network, not where the visitor works.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from intently.kit.domains import try_normalise_domain

CONFIDENCE_GROUP = 0.95
CONFIDENCE_EMAIL = 0.9
CONFIDENCE_RANGES = 0.9
CONFIDENCE_ENTERPRISE = 0.8
CONFIDENCE_DOMAIN = 0.7


@dataclass(frozen=True, slots=True)
class Match:
    """Where a visit resolved to, and how sure that is."""

    domain: str  # normalised
    method: str  # "group" | "email" | "ip" | "anonymous_id"
    provider: str  # "group", "email", "ranges" (workspace CSV), "mmdb:<file name>", ...
    confidence: float  # 0..1
    company: str | None = None


# ---- the domain lists ------------------------------------------------------------------------


def _read_list(name: str) -> frozenset[str]:
    text = resources.files("intently.ingest").joinpath("data", name).read_text("utf-8")
    items = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return frozenset(item for item in items if item)


@cache
def free_email_domains() -> frozenset[str]:
    """Free and consumer mailbox providers (data/free_email_domains.txt)."""
    return _read_list("free_email_domains.txt")


@cache
def network_domains() -> frozenset[str]:
    """ISP, carrier, hosting, CDN, VPN and cloud-proxy domains (data/network_domains.txt)."""
    return _read_list("network_domains.txt")


def _listed(domain: str, names: frozenset[str]) -> bool:
    """The domain or one of its parents is in `names` (`mail.comcast.net` is comcast.net's)."""
    d = domain.strip().lower().rstrip(".")
    while d:
        if d in names:
            return True
        dot = d.find(".")
        if dot == -1:
            return False
        d = d[dot + 1 :]
    return False


def is_free_email_domain(domain: str) -> bool:
    return _listed(domain, free_email_domains())


def is_infrastructure_domain(domain: str) -> bool:
    """A name under the `.arpa` TLD (reverse DNS: in-addr.arpa, ip6.arpa): nobody's domain."""
    d = domain.strip().lower().rstrip(".")
    return d == "arpa" or d.endswith(".arpa")


def is_network_domain(domain: str) -> bool:
    """An ISP, hosting, CDN, VPN or mobile-carrier domain, or an infrastructure name."""
    return is_infrastructure_domain(domain) or _listed(domain, network_domains())


def is_company_domain(domain: str) -> bool:
    """Neither a free-mail domain nor a network's: a domain that can name an employer."""
    return not (_listed(domain, free_email_domains()) or is_network_domain(domain))


# ---- email and group traits ------------------------------------------------------------------

# Characters that cannot be in the host part of a plain address (they would let
# normalise_domain cut a URL down to a host instead of refusing it).
_BAD_HOST_CHARS = frozenset("/?#:[]()<>,;\\\"'=!*&%$ \t\r\n")


def _email_domain(email: object) -> str | None:
    """The normalised domain of a syntactically plausible address, else None."""
    if not isinstance(email, str):
        return None
    text = email.strip()
    if text.endswith(">") and "<" in text:  # "Jane Doe <jane@acme.com>"
        text = text[text.rfind("<") + 1 : -1].strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    local, at, host = text.rpartition("@")
    if not at or not local or not host or "@" in local:
        return None
    if any(ch.isspace() for ch in local) or local.startswith(".") or local.endswith("."):
        return None
    if any(ch in _BAD_HOST_CHARS for ch in host):
        return None
    return try_normalise_domain(host)


def match_email(email: str | None) -> Match | None:
    """A business email's domain (plus-addressing and case do not matter); free-mail: None.

    Only free-mail is refused: staff of a carrier or a host (jane@att.com) are real
    contacts; consumer ISP mailboxes (comcast.net, sbcglobal.net) are free-mail domains.
    """
    domain = _email_domain(email)
    if domain is None or is_free_email_domain(domain):
        return None
    return Match(domain, "email", "email", CONFIDENCE_EMAIL)


def name_key(name: str) -> str:
    """A name to compare by: its letters and digits, lower-cased (`T-Mobile` -> `tmobile`)."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def text_of(value: object) -> str | None:
    """A string's text without surrounding space; None when empty or not a string."""
    return (value.strip() or None) if isinstance(value, str) else None


def match_group(traits: dict[str, Any] | None) -> Match | None:
    """A `group` call's company: traits website or domain, then company.website/domain, then
    an email; the first that names a company domain wins (free-mail and networks never do)."""
    if not isinstance(traits, Mapping):
        return None
    top = {name_key(k): v for k, v in traits.items() if isinstance(k, str)}
    nested = top.get("company")
    company: dict[str, Any] = {}
    if isinstance(nested, Mapping):
        company = {name_key(k): v for k, v in nested.items() if isinstance(k, str)}
    name = text_of(top.get("name")) or text_of(company.get("name"))
    candidates: list[str | None] = []
    places = (
        (top, ("website", "domain", "companywebsite", "companydomain")),
        (company, ("website", "domain")),
    )
    for where, keys in places:
        for k in keys:
            value = where.get(k)
            if isinstance(value, str):
                candidates.append(try_normalise_domain(value))
    for where in (top, company):
        candidates.append(_email_domain(where.get("email")))
    for domain in candidates:
        if domain is not None and is_company_domain(domain):
            return Match(domain, "group", "group", CONFIDENCE_GROUP, name)
    return None
