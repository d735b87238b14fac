"""Resolving a website visit to an account: group traits, business email, IP databases.

The collector asks in the spec's order and the first answer wins: `match_group` (a
`group` call's traits), `match_email` (an `identify` with a business email), then
`IpResolver.lookup` (the workspace's uploaded ranges, then each MaxMind `.mmdb` in the
order configured), then its own record of earlier resolutions of the anonymous id.
Free-mail domains never match, and neither do ISP, hosting, CDN, VPN and mobile
networks: they say who runs the network, not where the visitor works.

Confidence by method: group traits 0.95, business email 0.9, workspace ranges 0.9,
MaxMind Enterprise 0.8, MaxMind Domain 0.7.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, Generic, TypeVar

import maxminddb
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection, Engine

from intently.ingest.files import CsvInput
from intently.ingest.tables import ip_ranges
from intently.kit.db import fetch_all, param_marker, read_tx, write_tx
from intently.kit.domains import try_normalise_domain
from intently.kit.errors import BadRequest
from intently.kit.timefmt import now_us
from intently.signals.service import IngestRun, RunReport, ingest_run

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


def is_network_domain(domain: str) -> bool:
    """An ISP, hosting, CDN, VPN or mobile-carrier domain."""
    return _listed(domain, network_domains())


def _is_company_domain(domain: str) -> bool:
    return not (_listed(domain, free_email_domains()) or _listed(domain, network_domains()))


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


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _text(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def match_group(traits: dict[str, Any] | None) -> Match | None:
    """A `group` call's company: traits website or domain, then company.website/domain, then
    an email; the first that names a company domain wins (free-mail and networks never do)."""
    if not isinstance(traits, Mapping):
        return None
    top = {_key(k): v for k, v in traits.items() if isinstance(k, str)}
    nested = top.get("company")
    company: dict[str, Any] = {}
    if isinstance(nested, Mapping):
        company = {_key(k): v for k, v in nested.items() if isinstance(k, str)}
    name = _text(top.get("name")) or _text(company.get("name"))
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
        if domain is not None and _is_company_domain(domain):
            return Match(domain, "group", "group", CONFIDENCE_GROUP, name)
    return None


# ---- IP addresses as integers ----------------------------------------------------------------

_AF4, _AF6 = socket.AF_INET, socket.AF_INET6
_inet_pton = socket.inet_pton
_MAPPED_PREFIX = 0xFFFF  # ::ffff:a.b.c.d is the IPv4 address a.b.c.d

V = TypeVar("V")


class _Intervals(Generic[V]):
    """Non-overlapping [start, end] integer intervals with a value each, searched by bisect.

    Built from networks that nest or are disjoint (as CIDR blocks always are): a nested
    network cuts its part out of the enclosing one, so each address finds the most
    specific network that holds it with one binary search.
    """

    __slots__ = ("ends", "starts", "values")

    def __init__(self, networks: Iterable[tuple[int, int, V]]) -> None:
        starts: list[int] = []
        ends: list[int] = []
        values: list[V] = []

        def emit(a: int, b: int, v: V) -> None:
            if a > b:
                return
            if ends and ends[-1] + 1 == a and values[-1] is v:
                ends[-1] = b  # adjacent pieces of one network join up again
                return
            starts.append(a)
            ends.append(b)
            values.append(v)

        # Widest first among equal starts, so an enclosing network is open before its parts.
        stack: list[tuple[int, V]] = []
        cursor = 0
        for start, end, value in sorted(networks, key=lambda n: (n[0], -n[1])):
            while stack and stack[-1][0] < start:
                top_end, top_value = stack.pop()
                emit(cursor, top_end, top_value)
                cursor = top_end + 1
            if stack:
                emit(cursor, start - 1, stack[-1][1])
            stack.append((end, value))
            cursor = start
        while stack:
            top_end, top_value = stack.pop()
            emit(cursor, top_end, top_value)
            cursor = top_end + 1
        self.starts, self.ends, self.values = starts, ends, values

    def __len__(self) -> int:
        return len(self.starts)

    def find(self, n: int) -> V | None:
        i = bisect_right(self.starts, n) - 1
        if i >= 0 and n <= self.ends[i]:
            return self.values[i]
        return None


_HOST4 = [(1 << (32 - n)) - 1 for n in range(33)]  # host bits of an IPv4 /n
_HOST6 = [(1 << (128 - n)) - 1 for n in range(129)]


def _cidr_bounds(network: str) -> tuple[int, int, int]:
    """(version, first, last) of a canonical CIDR such as `10.1.0.0/16` (no ipaddress: fast)."""
    address, _, length = network.partition("/")
    if ":" in address:
        n = int.from_bytes(_inet_pton(_AF6, address), "big")
        host = _HOST6[int(length)]
        return 6, n & ~host, n | host
    n = int.from_bytes(_inet_pton(_AF4, address), "big")
    host = _HOST4[int(length)]
    return 4, n & ~host, n | host


# Special-purpose blocks (RFC 6890 and successors): private, shared (CGNAT), loopback,
# link-local, documentation, benchmarking, multicast, reserved. Outside 2000::/3 no
# IPv6 address is global unicast; 6to4 and Teredo hide the real host.
_SPECIAL_V4 = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)  # fmt: skip
_SPECIAL_V6 = (
    "::/3", "4000::/2", "8000::/1", "2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20",
)  # fmt: skip


def _special(networks: tuple[str, ...]) -> _Intervals[bool]:
    return _Intervals((first, last, True) for _, first, last in map(_cidr_bounds, networks))


_SPECIAL4 = _special(_SPECIAL_V4)
_SPECIAL6 = _special(_SPECIAL_V6)


def is_special_ip(version: int, n: int) -> bool:
    """Private, loopback, link-local, multicast, documentation or reserved."""
    return (_SPECIAL6 if version == 6 else _SPECIAL4).find(n) is not None


# ---- ISP, hosting and mobile networks in MaxMind records ---------------------------------------

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
        brand = _key(labels[-1])
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


_INVALID = Refusal("invalid", "not an IPv4 or IPv6 address")
_PRIVATE = Refusal(
    "private", "a private, loopback, link-local, multicast or reserved address never resolves"
)
_UNKNOWN = Refusal("unknown", "no uploaded range and no IP database knows this address")


class _Mmdb:
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
        if not _is_company_domain(domain):
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
        organization = _text(traits.get("organization"))
        if user_type is None and connection is None:
            who = organization or _text(traits.get("isp"))
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
            _text(record.get("organization"))
            or _text(record.get("isp"))
            or _text(record.get("autonomous_system_organization"))
        )
        if who is not None and names_network(who):
            return Refusal("network", f"{self.name}: {who} runs an ISP or hosting network")
        return None

    def close(self) -> None:
        self.reader.close()


# ---- the resolver ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WsRanges:
    """A workspace's ranges as loaded, with the version of them that was read."""

    version: int
    v4: _Intervals[Match]
    v6: _Intervals[Match]


_RANGES_SQL = "SELECT network, domain, company FROM ip_ranges WHERE workspace_id = {m}"


# Every change to a workspace's ranges also moves its ranges version, in the same
# transaction, so a resolver learns of a change with one primary-key read instead of an
# aggregate over the ranges (count and max(created_at) over 100,000 rows take 10-300 ms).
def ranges_version(conn: Connection, ws: int) -> int:
    """The workspace's ranges version: changes with every change to its ranges (0: never)."""
    m = param_marker(conn)
    rows = fetch_all(conn, f"SELECT version FROM ip_range_versions WHERE workspace_id = {m}", (ws,))
    return int(rows[0][0]) if rows else 0


def database_paths(setting: str) -> list[str]:
    """`Settings.ip_databases` (comma separated) as a list of paths."""
    return [p.strip() for p in setting.split(",") if p.strip()]


class IpResolver:
    """Per process; thread-safe; workspace ranges cached in memory and reloaded when they change.

    Lookups read an immutable snapshot of a workspace's ranges, so they take no lock;
    loading swaps in a new snapshot. The `.mmdb` readers are memory-mapped and shared.
    """

    def __init__(self, engine: Engine, mmdb_paths: list[str]) -> None:
        self.engine = engine
        self._dbs: list[_Mmdb] = []
        try:
            for path in mmdb_paths:
                self._dbs.append(_Mmdb(path))
        except BadRequest:
            self.close()
            raise
        self._ranges: dict[int, _WsRanges] = {}
        self._load_lock = threading.Lock()
        self._marker = "?" if engine.dialect.name == "sqlite" else "%s"

    @property
    def databases(self) -> list[str]:
        """The providers of the open `.mmdb` files, in lookup order."""
        return [db.provider for db in self._dbs]

    def refresh(self, ws: int) -> None:
        """Cheap check (one query) whether the workspace's ranges changed; reload if so."""
        cached = self._ranges.get(ws)
        if cached is None:
            self._load(ws, stale=None)
            return
        with read_tx(self.engine) as conn:
            version = ranges_version(conn, ws)
        if version != cached.version:
            self._load(ws, stale=cached)

    def lookup(self, ws: int, ip: str) -> Match | None:
        """Workspace ranges first (most specific network wins), then each mmdb in order."""
        found = self._resolve(ws, ip)
        return found if type(found) is Match else None

    def explain(self, ws: int, ip: str) -> Match | Refusal:
        """The match, or why there is none (for `intently ip lookup`)."""
        return self._resolve(ws, ip)

    def close(self) -> None:
        for db in self._dbs:
            db.close()
        self._dbs = []
        self._ranges = {}

    def _resolve(self, ws: int, ip: str) -> Match | Refusal:
        try:
            if ":" in ip:
                n = int.from_bytes(_inet_pton(_AF6, ip), "big")
                v6 = n >> 32 != _MAPPED_PREFIX
                if not v6:
                    n &= 0xFFFFFFFF
                    ip = socket.inet_ntop(_AF4, n.to_bytes(4, "big"))
            else:
                n = int.from_bytes(_inet_pton(_AF4, ip), "big")
                v6 = False
        except (OSError, TypeError, ValueError):
            return _INVALID
        special = _SPECIAL6 if v6 else _SPECIAL4
        i = bisect_right(special.starts, n) - 1
        if i >= 0 and n <= special.ends[i]:
            return _PRIVATE
        ranges = self._ranges.get(ws)
        if ranges is None:
            ranges = self._load(ws, stale=None)
        table = ranges.v6 if v6 else ranges.v4
        starts = table.starts
        if starts:
            i = bisect_right(starts, n) - 1
            if i >= 0 and n <= table.ends[i]:
                return table.values[i]
        # Every database is asked: one that knows the network as an ISP's, a host's or a
        # carrier's vetoes the others' domain; otherwise the first domain in order wins.
        found: Match | None = None
        for db in self._dbs:
            if v6 and not db.ipv6:
                continue
            verdict = db.judge(ip)
            if verdict is None:
                continue
            if type(verdict) is Refusal:
                return verdict
            if found is None:
                found = verdict  # type: ignore[assignment]
        return found if found is not None else _UNKNOWN

    def _load(self, ws: int, stale: _WsRanges | None) -> _WsRanges:
        """Read the workspace's ranges, unless another thread did while this one waited
        (the cache no longer holds `stale`, the snapshot this caller found)."""
        with self._load_lock:
            current = self._ranges.get(ws)
            if current is not None and current is not stale:
                return current
            with read_tx(self.engine) as conn:
                # The version first: a change committed between the two reads is then
                # in the rows and makes the next refresh load again (never the reverse).
                version = ranges_version(conn, ws)
                rows = fetch_all(conn, _RANGES_SQL.format(m=self._marker), (ws,))
            v4: list[tuple[int, int, Match]] = []
            v6: list[tuple[int, int, Match]] = []
            for network, domain, company in rows:
                ip_version, first, last = _cidr_bounds(network)
                match = Match(domain, "ip", "ranges", CONFIDENCE_RANGES, company)
                (v6 if ip_version == 6 else v4).append((first, last, match))
            loaded = _WsRanges(version, _Intervals(v4), _Intervals(v6))
            self._ranges[ws] = loaded
            return loaded


# ---- uploading a workspace's ranges ----------------------------------------------------------

SOURCE = "website"
KIND = "ip_ranges"
WHAT = "IP ranges file (network,domain[,company])"
BATCH = 2000
REQUIRED = {
    "network": ("network", "cidr", "ip_range", "range", "ip", "ip_address", "subnet", "prefix"),
    "domain": ("domain", "website", "company_domain"),
}
OPTIONAL = {"company": ("company", "company_name", "name", "organization", "organisation")}
# Larger blocks are not one company's; a typo such as 0.0.0.0/0 would claim every visit.
MIN_PREFIX = {4: 8, 6: 16}
_ADDRESSY = re.compile(r"[0-9A-Fa-f:./\-\s]*[0-9][0-9A-Fa-f:./\-\s]*")
# Serialises a workspace's range writers on PostgreSQL (SQLite has one writer anyway).
_LOCK_CLASS = 0x49505247  # "IPRG"


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    networks: tuple[str, ...]  # canonical CIDRs
    domain: str
    company: str | None


def _networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | str:
    """CIDR, single address or `start-end` as CIDR blocks, or what is wrong with it."""
    value = text.strip()
    if not value:
        return "network is empty"
    what = f"network '{value}'"
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    try:
        if "-" in value:
            a, _, b = value.partition("-")
            first, last = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
            first, last = _unmap(first), _unmap(last)
            if first.version != last.version:
                return f"{what} mixes IPv4 and IPv6"
            if int(first) > int(last):
                return f"{what} ends before it starts"
            nets = list(ipaddress.summarize_address_range(first, last))
        elif "/" in value:
            nets = [_unmap_network(ipaddress.ip_network(value, strict=False))]
        else:
            address = _unmap(ipaddress.ip_address(value))
            nets = [ipaddress.ip_network(f"{address}/{address.max_prefixlen}")]
    except ValueError:
        return f"{what} is not an IP address, a CIDR network or a start-end range"
    for net in nets:
        if net.prefixlen < MIN_PREFIX[net.version]:
            return f"{what} is too large (/{MIN_PREFIX[net.version]} at most)"
        # Wholly special: it could never match (a range that only overlaps one still can).
        special = _SPECIAL6 if net.version == 6 else _SPECIAL4
        i = bisect_right(special.starts, int(net.network_address)) - 1
        if i >= 0 and int(net.broadcast_address) <= special.ends[i]:
            return f"{what} is private or reserved; visits from it never resolve"
    return nets


def _unmap(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_MAPPED_NET = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmap_network(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED_NET):
        return ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


def _check_row(line: int, cells: list[str], cols: dict[str, int]) -> _Row | tuple[str, str]:
    """A usable row, or (reason, detail) naming the column and the value."""

    def cell(name: str) -> str:
        i = cols.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    nets = _networks(cell("network"))
    if isinstance(nets, str):
        return "invalid_network", nets
    raw = cell("domain")
    if not raw:
        return "missing_domain", "domain is empty"
    domain = try_normalise_domain(raw)
    if domain is None:
        return "invalid_domain", f"domain '{raw}' is not a domain name"
    if is_free_email_domain(domain):
        return "network_domain", f"domain '{raw}' is a free e-mail provider, not a company"
    if is_network_domain(domain):
        return "network_domain", (
            f"domain '{raw}' is an ISP's, host's or mobile carrier's: its visitors are not "
            "its staff"
        )
    return _Row(line, tuple(str(n) for n in nets), domain, cell("company") or None)


class _RangeFile:
    """An open ranges CSV: with or without a header row."""

    def __init__(self, path: str | Path) -> None:
        self.inp = CsvInput(path, what=WHAT)
        first = self.inp.header[0] if self.inp.header else ""
        # No header: the first row is data when its first cell looks like an address.
        self.headerless = bool(_ADDRESSY.fullmatch(first))
        if self.headerless:
            self.cols = {"network": 0, "domain": 1, "company": 2}
        else:
            self.cols = self.inp.columns(REQUIRED, OPTIONAL)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        if self.headerless:
            yield 1, self.inp.header
        yield from self.inp.rows()

    def record(self, cells: list[str]) -> dict[str, str]:
        if self.headerless:
            names = ["network", "domain", "company"]
            names += [f"column{i + 1}" for i in range(3, len(cells))]
            return dict(zip(names, cells, strict=False))
        return self.inp.record(cells)

    def close(self) -> None:
        self.inp.close()

    def __enter__(self) -> _RangeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock(conn: Connection, ws: int) -> None:
    """Serialise the workspace's range writers until the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, ws))


def _begin_change(conn: Connection, ws: int) -> int:
    """Take the workspace's range lock; the stamp of this change (its new ranges version).

    Strictly above the last version even when this host's clock is behind another's, so
    every change gives a version no resolver has loaded.
    """
    _lock(conn, ws)
    return max(now_us(), ranges_version(conn, ws) + 1)


def _set_version(conn: Connection, ws: int, stamp: int) -> None:
    m = param_marker(conn)
    conn.exec_driver_sql(
        f"INSERT INTO ip_range_versions (workspace_id, version) VALUES ({m}, {m}) "
        "ON CONFLICT (workspace_id) DO UPDATE SET version = excluded.version",
        (ws, stamp),
    )


def _chunks(items: list[str], size: int = 1000) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_UPDATE = (
    update(ip_ranges)
    .where(ip_ranges.c.workspace_id == bindparam("b_ws"))
    .where(ip_ranges.c.network == bindparam("b_network"))
    .values(
        domain=bindparam("b_domain"),
        company=bindparam("b_company"),
        created_at=bindparam("b_stamp"),
    )
)


def _apply(
    conn: Connection, ws: int, rows: list[_Row], stamp: int, *, touch: bool
) -> tuple[list[str], bool]:
    """Write a batch of rows: per row `created`, `updated` or `duplicate` (a row is created
    when any of its networks is new), and whether anything changed. `touch` stamps
    unchanged rows too (replace removes the rows it did not stamp)."""
    wanted = sorted({n for r in rows for n in r.networks})
    stored: dict[str, tuple[str, str | None]] = {}
    for part in _chunks(wanted):
        q = select(ip_ranges.c.network, ip_ranges.c.domain, ip_ranges.c.company).where(
            ip_ranges.c.workspace_id == ws, ip_ranges.c.network.in_(part)
        )
        stored.update((n, (d, c)) for n, d, c in conn.execute(q))
    state = dict(stored)
    outcomes: list[str] = []
    for row in rows:
        value = (row.domain, row.company)
        outcome = "duplicate"
        for net in row.networks:
            before = state.get(net)
            if before is None:
                outcome = "created"
            elif before != value and outcome == "duplicate":
                outcome = "updated"
            state[net] = value
        outcomes.append(outcome)
    inserts = [
        {"workspace_id": ws, "network": n, "domain": d, "company": c, "created_at": stamp}
        for n, (d, c) in state.items()
        if n not in stored
    ]
    changes = [
        {"b_ws": ws, "b_network": n, "b_domain": d, "b_company": c, "b_stamp": stamp}
        for n, (d, c) in state.items()
        if n in stored and stored[n] != (d, c)
    ]
    if inserts:
        conn.execute(ip_ranges.insert(), inserts)
    if changes:
        conn.execute(_UPDATE, changes)
    if touch:
        same = [n for n in state if n in stored and stored[n] == state[n]]
        for part in _chunks(same):
            conn.execute(
                update(ip_ranges)
                .where(ip_ranges.c.workspace_id == ws, ip_ranges.c.network.in_(part))
                .values(created_at=stamp)
            )
    return outcomes, bool(inserts or changes)


def _count(run: IngestRun, outcomes: list[str]) -> None:
    r = run.report
    r.accepted += outcomes.count("created")
    r.updated += outcomes.count("updated")
    r.duplicate += outcomes.count("duplicate")


def _counted(report: RunReport, outcomes: list[str]) -> RunReport:
    """A copy of the report with outcomes not yet committed counted in (for progress)."""
    return dataclasses.replace(
        report,
        accepted=report.accepted + outcomes.count("created"),
        updated=report.updated + outcomes.count("updated"),
        duplicate=report.duplicate + outcomes.count("duplicate"),
    )


ProgressFn = Callable[[RunReport, int, int], None]


def upload_ranges(
    engine: Engine,
    ws: int,
    path: str | Path,
    *,
    replace: bool = False,
    on_progress: ProgressFn | None = None,
    batch_size: int = BATCH,
) -> RunReport:
    """Upload a CSV of `network,domain[,company]` (header optional) as the workspace's ranges.

    Networks may be CIDRs, single addresses or `start-end` ranges (made CIDR blocks),
    IPv4 or IPv6. Bad rows are rejected with their line; the same rows again are
    duplicates. With `replace`, ranges not in the file are removed, and the whole file
    applies in one transaction after a first pass has checked it: all or nothing.
    """
    with _RangeFile(path) as f:
        inp = f.inp
        total = inp.total_bytes
        half = 2 if replace else 1  # replace reads the file twice

        def progress(report: RunReport) -> None:
            if on_progress is not None:
                on_progress(report, inp.bytes_read() // half, total)

        label = inp.path.name + (" (replace)" if replace else "")
        with ingest_run(
            engine, ws, SOURCE, KIND, label, batch_size=batch_size, on_progress=progress
        ) as run:
            if replace:
                _replace(engine, ws, run, f, path, on_progress, batch_size)
            else:
                _merge(engine, ws, run, f, batch_size)
    return run.report


def _merge(engine: Engine, ws: int, run: IngestRun, f: _RangeFile, batch_size: int) -> None:
    """Add and change ranges, one transaction a batch (its rejects and counts follow it)."""
    batch: list[_Row] = []

    def write() -> None:
        with write_tx(engine) as conn:
            stamp = _begin_change(conn, ws)
            outcomes, changed = _apply(conn, ws, batch, stamp, touch=False)
            if changed:
                _set_version(conn, ws, stamp)
        _count(run, outcomes)
        batch.clear()
        run.flush()

    for line, cells in f.rows():
        run.read()
        row = _check_row(line, cells, f.cols)
        if isinstance(row, tuple):
            run.reject(row[0], row[1], f.record(cells), line=line)
            continue
        batch.append(row)
        if len(batch) >= batch_size:
            write()
    if batch:
        write()


def _replace(
    engine: Engine,
    ws: int,
    run: IngestRun,
    f: _RangeFile,
    path: str | Path,
    on_progress: ProgressFn | None,
    batch_size: int,
) -> None:
    """Check every row (rejects recorded as usual), then apply the good ones and remove the
    rest in one transaction, so readers see the old ranges until the new ones are whole."""
    usable = 0
    for line, cells in f.rows():
        run.read()
        row = _check_row(line, cells, f.cols)
        if isinstance(row, tuple):
            run.reject(row[0], row[1], f.record(cells), line=line)
        else:
            usable += 1
    run.flush()
    if usable == 0:
        raise BadRequest(
            f"{f.inp.path.name} has no usable row; the workspace's ranges were left as they were"
        )
    with _RangeFile(path) as again, write_tx(engine) as conn:
        stamp = _begin_change(conn, ws)
        # The sweep below removes rows stamped before this replace: the stamp must be above
        # every row's, including any written by other means than this module.
        newest = conn.execute(
            select(func.max(ip_ranges.c.created_at)).where(ip_ranges.c.workspace_id == ws)
        ).scalar()
        stamp = max(stamp, int(newest or 0) + 1)
        # Counted into the run only once committed: a failed replace wrote nothing.
        outcomes: list[str] = []
        batch: list[_Row] = []
        total = again.inp.total_bytes
        for line, cells in again.rows():
            row = _check_row(line, cells, again.cols)
            if isinstance(row, tuple):
                continue  # rejected in the first pass
            batch.append(row)
            if len(batch) >= batch_size:
                outcomes += _apply(conn, ws, batch, stamp, touch=True)[0]
                batch.clear()
                if on_progress is not None:
                    so_far = _counted(run.report, outcomes)
                    on_progress(so_far, (total + again.inp.bytes_read()) // 2, total)
        if batch:
            outcomes += _apply(conn, ws, batch, stamp, touch=True)[0]
        conn.execute(
            delete(ip_ranges).where(ip_ranges.c.workspace_id == ws, ip_ranges.c.created_at < stamp)
        )
        _set_version(conn, ws, stamp)
    _count(run, outcomes)
    if on_progress is not None:
        on_progress(run.report, total, total)


def delete_ranges(engine: Engine, ws: int) -> int:
    """Remove every range of the workspace; how many there were."""
    with write_tx(engine) as conn:
        stamp = _begin_change(conn, ws)
        result = conn.execute(delete(ip_ranges).where(ip_ranges.c.workspace_id == ws))
        removed = int(result.rowcount or 0)
        if removed:
            _set_version(conn, ws, stamp)
    return removed


def count_ranges(engine: Engine, ws: int) -> int:
    """How many ranges (CIDR blocks) the workspace has."""
    with read_tx(engine) as conn:
        n = conn.execute(
            select(func.count()).select_from(ip_ranges).where(ip_ranges.c.workspace_id == ws)
        ).scalar()
    return int(n or 0)
