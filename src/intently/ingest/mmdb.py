"""MaxMind-format IP databases (`.mmdb`): what a record says about a network, a company's
domain or an ISP's, host's or mobile carrier's network, which never resolves.

Confidence by database: MaxMind Enterprise 0.8, MaxMind Domain 0.7.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import maxminddb

from intently.ingest.matches import (
    CONFIDENCE_DOMAIN,
    CONFIDENCE_ENTERPRISE,
    Match,
    is_company_domain,
    name_key,
    network_domains,
    text_of,
)
from intently.kit.domains import try_normalise_domain
from intently.kit.errors import BadRequest

# Enterprise `traits.user_type` values of networks whose users are not a company's staff.
NETWORK_USER_TYPES = frozenset({
    "residential", "cellular", "hosting", "content_delivery", "dialup", "consumer_privacy",
    "router", "search_engine_spider", "cafe", "traveler", "library",
})  # fmt: skip
# Enterprise and Anonymous-IP flags that mean the address hides the visitor.
_HIDING_TRAITS = (
    "is_anonymous", "is_anonymous_proxy", "is_anonymous_vpn", "is_hosting_provider",
    "is_public_proxy", "is_residential_proxy", "is_tor_exit_node",
)  # fmt: skip
# Words that, in the name of the organization using a network, mark an ISP, carrier,
# hosting or CDN network ("Comcast Cable Communications", "OVH SAS Hosting").
_NETWORK_WORDS = frozenset({
    "broadband", "cable", "cablevision", "telecom", "telecomunicaciones", "telecomunicacoes",
    "telecommunication", "telecommunications", "telekom", "telekomunikasi", "telecomunicazioni",
    "wireless", "cellular", "mobile", "hosting", "datacenter", "colocation", "vps", "dsl",
    "adsl", "isp", "vpn", "proxy", "cdn", "cloud", "servers", "communications",
})  # fmt: skip
_NETWORK_PHRASES = ("data center", "data centre", "internet service", "content delivery",
                    "service provider")  # fmt: skip
# Provider brands taken from network_domains.txt that are also ordinary words or common
# company names ("Orange County Bank", "Frontier Airlines"): they alone prove nothing.
_AMBIGUOUS_BRANDS = frozenset({
    "home", "online", "mail", "free", "plus", "play", "three", "bell", "orange", "shaw",
    "wind", "vivo", "claro", "digi", "smart", "globe", "true", "spark", "salt", "drei",
    "magenta", "personal", "entel", "tigo", "elisa", "inea", "netia", "virgin", "rogers",
    "spectrum", "optimum", "frontier", "lumen", "astound", "consolidated", "servers",
    "sprint", "charter", "wave", "iliad", "sunrise", "aruba", "partner", "scarlet", "seed",
    "speedy", "prodigy", "dodo", "fido", "hughes", "nifty", "dion", "cetin", "sonet", "xtra",
    "virtua", "mnet", "cox", "one", "tim", "dna", "eir", "nos", "meo", "iam", "tpg", "une",
    "mts", "ais", "stc", "sky", "fly", "zen", "ewe",
})  # fmt: skip
_GENERIC_LABELS = frozenset({"com", "net", "org", "co", "ne", "or", "ac", "on", "gov", "edu"})
_WORD_RE = re.compile(r"[a-z0-9]+")


@cache
def _network_brands() -> frozenset[str]:
    """`comcast` from comcast.net, `bigpond` from bigpond.net.au, `tmobile` from t-mobile.com."""
    brands: set[str] = set()
    for domain in network_domains():
        labels = [x for x in domain.split(".")[:-1] if x not in _GENERIC_LABELS]
        if not labels:
            continue
        brand = name_key(labels[-1])
        if len(brand) >= 3 and not brand.isdigit() and brand not in _AMBIGUOUS_BRANDS:
            brands.add(brand)
    return frozenset(brands)


def names_network(name: str) -> bool:
    """The name of a network's user says ISP, carrier, hosting or CDN."""
    lowered = name.lower()
    words = _WORD_RE.findall(lowered)
    if not words:
        return False
    if not _NETWORK_WORDS.isdisjoint(words):
        return True
    spaced = " ".join(words)
    if any(p in spaced for p in _NETWORK_PHRASES):
        return True
    brands = _network_brands()
    # A brand is one word or two joined ("T-Mobile" -> tmobile, "Virgin Media" -> virginmedia).
    return not brands.isdisjoint(words) or not brands.isdisjoint(a + b for a, b in pairwise(words))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an IP gives no match: invalid, private, network (ISP/hosting/mobile) or unknown."""

    reason: str
    detail: str


class Mmdb:
    """One MaxMind-format database and what its records say about a network."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = Path(path).name
        self.provider = f"mmdb:{self.name}"[:64]
        try:
            self.reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise BadRequest(f"IP database {path} cannot be read: {exc}") from None
        meta = self.reader.metadata()
        self.database_type = str(meta.database_type)
        self.ipv6 = int(meta.ip_version) == 6
        # Domain records repeat a few thousand domains over millions of networks.
        self._by_domain: dict[str, Match | Refusal | None] = {}

    def judge(self, ip: str) -> Match | Refusal | None:
        try:
            record = self.reader.get(ip)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        traits = record.get("traits")
        if isinstance(traits, dict):
            return self._enterprise(traits)
        domain = record.get("domain")
        if isinstance(domain, str):
            if domain in self._by_domain:
                return self._by_domain[domain]
            verdict = self._domain(domain, CONFIDENCE_DOMAIN, None)
            if len(self._by_domain) >= 100_000:
                self._by_domain.clear()
            self._by_domain[domain] = verdict
            return verdict
        return self._isp(record)

    def _domain(self, value: str, confidence: float, company: str | None) -> Match | Refusal | None:
        domain = try_normalise_domain(value)
        if domain is None:
            return None
        if not is_company_domain(domain):
            return Refusal(
                "network", f"{self.name} names {domain}, an ISP, hosting or mobile network"
            )
        return Match(domain, "ip", self.provider, confidence, company)

    def _enterprise(self, traits: dict[str, Any]) -> Match | Refusal | None:
        """GeoIP2 Enterprise (and Insights-like) `traits`: user type first, then the domain."""
        user_type = traits.get("user_type")
        if isinstance(user_type, str) and user_type.lower() in NETWORK_USER_TYPES:
            return Refusal("network", f"{self.name}: user type {user_type}")
        connection = traits.get("connection_type")
        if isinstance(connection, str) and connection.lower() == "cellular":
            return Refusal("network", f"{self.name}: connection type {connection}")
        for flag in _HIDING_TRAITS:
            if traits.get(flag) is True:
                return Refusal("network", f"{self.name}: {flag}")
        organization = text_of(traits.get("organization"))
        if user_type is None and connection is None:
            who = organization or text_of(traits.get("isp"))
            if who is not None and names_network(who):
                return Refusal("network", f"{self.name}: {who} runs an ISP or hosting network")
        domain = traits.get("domain")
        if not isinstance(domain, str):
            return None
        return self._domain(domain, CONFIDENCE_ENTERPRISE, organization)

    def _isp(self, record: dict[str, Any]) -> Refusal | None:
        """GeoIP2 ISP / GeoLite2 ASN: never a domain, but it can tell an ISP's network apart.

        The organization is who uses the network, the ISP who connects it: a company on
        a business line has its own name as organization, a home user the ISP's.
        """
        if record.get("mobile_country_code") or record.get("mobile_network_code"):
            return Refusal("network", f"{self.name}: a mobile carrier's network")
        who = (
            text_of(record.get("organization"))
            or text_of(record.get("isp"))
            or text_of(record.get("autonomous_system_organization"))
        )
        if who is not None and names_network(who):
            return Refusal("network", f"{self.name}: {who} runs an ISP or hosting network")
        return None

    def close(self) -> None:
        self.reader.close()
