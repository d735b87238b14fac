"""MaxMind-format IP databases (`.mmdb`): what a record says about a network, a company's
domain or an ISP's, host's or mobile carrier's network, which never resolves.

Confidence by database: MaxMind Enterprise 0.8, MaxMind Domain 0.7.

What the databases carry decides, not only the built-in lists: the Enterprise `user_type`
(only an organisation's types resolve), mobile codes and connection type, the names of the
network's ISP, user (`organization`) and ASN owner, and whether the domain is the ISP's
rather than the user's. Reverse-DNS names (`*.arpa`) never resolve.

A database is never memory-mapped where it lies: it is copied to a private, already
unlinked temporary file and that copy is mapped, so a file replaced in place (truncated,
rewritten) cannot crash the process (SIGBUS). The file is checked for a change at most
once a second and reopened once the new one is whole and readable. A malformed file is
refused when opened (metadata, layout, sample lookups); a record that cannot be read at
lookup is a no-match with a logged reason.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
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

log = logging.getLogger(__name__)

# Enterprise `traits.user_type` values (MaxMind's documented list) of networks whose users
# are not an organisation's staff, and those of organisations. Any other value (a new one
# MaxMind adds) is not trusted either: only an organisation's types resolve.
NETWORK_USER_TYPES = frozenset({
    "residential", "cellular", "hosting", "content_delivery_network", "dialup",
    "consumer_privacy_network", "router", "search_engine_spider", "cafe", "traveler",
    "library",
})  # fmt: skip
COMPANY_USER_TYPES = frozenset({"business", "college", "school", "government", "military"})
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
# A domain whose name ends so is a network's (telebecinternet.net, popwifi.it).
_NETWORK_BRAND_ENDINGS = ("internet", "broadband", "wifi", "telecom")
# Legal forms and filler words left out when a name is compared with a domain.
_LEGAL_WORDS = frozenset({
    "inc", "llc", "ltd", "limited", "corp", "corporation", "co", "company", "gmbh", "ag",
    "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "ab", "as", "oy", "plc", "lp", "llp", "pty",
    "kk", "kg", "se", "sl", "ltda",
})  # fmt: skip
_FILLER_WORDS = frozenset({"of", "de", "do", "da", "di", "du", "des", "la", "le", "the", "and",
                           "et", "y", "und", "for"})  # fmt: skip
# The layouts read (by words of the metadata's database_type): GeoIP2 Domain, ISP,
# Enterprise, Connection-Type, Anonymous-IP, GeoLite2 ASN and look-alikes.
_LAYOUT_WORDS = frozenset({"domain", "isp", "asn", "enterprise", "connection", "anonymous"})
# Addresses looked up when a file is opened: a corrupt tree or data section shows there.
_PROBES4 = ("1.1.1.1", "8.8.8.8", "64.0.0.1", "128.0.0.1", "192.0.2.1", "223.255.255.254")
_PROBES6 = ("2001:db8::1", "2600::1", "2a00::1", "fc00::1")
RECHECK_S = 1.0  # how often (at most) a lookup checks whether the file was replaced


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
    """Why an IP gives no match: invalid, private, network (ISP/hosting/mobile), error
    (a database could not read its record) or unknown."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a database says runs (`isp`, `asn`) and uses (`organization`) a network."""

    isp: str | None
    organization: str | None
    asn: str | None


def _words(name: str) -> list[str]:
    """Lower-case ASCII words of a name, legal forms at its end dropped
    ("LINO Solutions Internet de Télébec" -> lino solutions internet de telebec)."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = _WORD_RE.findall(folded)
    while len(words) > 1 and words[-1] in _LEGAL_WORDS:
        words.pop()
    return words


def _brand(domain: str) -> str:
    """`telebecinternet` of telebecinternet.net, `acme` of mail.acme.co.uk, `tmobile`."""
    labels = [x for x in domain.split(".")[:-1] if x not in _GENERIC_LABELS]
    return name_key(labels[-1]) if labels else ""


def _names(brand: str, name: str) -> bool:
    """The domain's brand is the name's: whole (Initech), its start (telebecinternet for
    Telebec; att for AT&T Services) or its initials (ufrgs)."""
    words = _words(name)
    if not words or len(brand) < 3:
        return False
    key = "".join(words)
    if brand == key:
        return True
    if len(key) >= 4 and brand.startswith(key):
        return True
    if len(brand) >= 3 and key.startswith(brand) and len(brand) >= len(words[0]):
        return True
    initials = "".join(w[0] for w in words if w not in _FILLER_WORDS)
    return len(initials) >= 3 and brand == initials


def _same(a: str, b: str) -> bool:
    return "".join(_words(a)) == "".join(_words(b))


@lru_cache(maxsize=65_536)
def owner_refusal(
    domain: str, isp: str | None, organization: str | None, asn: str | None
) -> str | None:
    """Why `domain` is the network's rather than its user's, by what a database says of the
    network; None when nothing says so.

    - The domain names the ISP (or the ASN's owner) and the network's user is another
      organization: the domain is the ISP's (telebecinternet.net of Telebec, used by
      "LINO Solutions Internet de Télébec").
    - The ISP uses the network itself and the domain is not its name: an ISP's own pool
      under a brand of its (gol.ne.jp of VECTANT Ltd.). A company that is its own ISP and
      whose domain is its name still resolves (initech.com of Initech).
    """
    brand = _brand(domain)
    if not brand or organization is None:
        return None
    runner = next((n for n in (isp, asn) if n is not None and _names(brand, n)), None)
    if runner is not None and not _same(organization, runner) and not _names(brand, organization):
        return f"{domain} is the domain of {runner}, who runs the network, not of {organization}"
    if isp is not None and _same(isp, organization) and not _names(brand, organization):
        return f"{isp} uses this network itself and {domain} is not its domain"
    return None


class Mmdb:
    """One MaxMind-format database and what its records say about a network."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = Path(path).name
        self.provider = f"mmdb:{self.name}"[:64]
        sig = self._signature()
        if sig is None:
            raise BadRequest(f"IP database {path} cannot be read: no such file")
        self.reader = self._open()
        self._sig = sig
        meta = self.reader.metadata()
        self.database_type = str(meta.database_type)
        self.ipv6 = int(meta.ip_version) == 6
        # Domain records repeat a few thousand domains over millions of networks.
        self._by_domain: dict[str, Match | Refusal | None] = {}
        self._next_check = time.monotonic() + RECHECK_S
        self._reopening = threading.Lock()
        self._errors_logged_at = 0.0

    # -- the file -----------------------------------------------------------------------------

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _open(self) -> maxminddb.Reader:
        """A reader over a private copy of the file, checked: BadRequest naming the file."""
        fd, copy = tempfile.mkstemp(prefix="intently-", suffix=".mmdb")
        try:
            os.close(fd)
            try:
                shutil.copyfile(self.path, copy)
                reader = maxminddb.open_database(copy)
            except Exception as exc:  # every reader error: OSError, InvalidDatabaseError, ...
                raise BadRequest(f"IP database {self.path} cannot be read: {_said(exc)}") from None
        finally:
            os.unlink(copy)  # the mapping outlives the name; nothing else can write the copy
        try:
            self._check(reader)
        except BadRequest:
            reader.close()
            raise
        return reader

    def _check(self, reader: maxminddb.Reader) -> None:
        """Metadata of a layout this module reads, and sample lookups that decode."""
        try:
            meta = reader.metadata()
            kind = meta.database_type
            version = meta.ip_version
        except Exception as exc:
            raise BadRequest(
                f"IP database {self.path} has unreadable metadata: {_said(exc)}"
            ) from None
        if not isinstance(kind, str) or _LAYOUT_WORDS.isdisjoint(_WORD_RE.findall(kind.lower())):
            raise BadRequest(
                f"IP database {self.path} is of type '{kind}', not one intently reads "
                "(GeoIP2 Domain, ISP, Enterprise, Connection-Type, Anonymous-IP, GeoLite2 ASN)"
            )
        if version not in (4, 6):
            raise BadRequest(f"IP database {self.path} has IP version '{version}', not 4 or 6")
        for ip in _PROBES4 + (_PROBES6 if version == 6 else ()):
            try:
                reader.get(ip)
            except Exception as exc:
                raise BadRequest(
                    f"IP database {self.path} is corrupt (looking up {ip}: {_said(exc)})"
                ) from None

    def _maybe_reopen(self, now: float) -> None:
        """Take the file again if it changed, once it is whole and readable."""
        if not self._reopening.acquire(blocking=False):
            return  # another thread is at it
        try:
            self._next_check = now + RECHECK_S
            sig = self._signature()
            if sig is None or sig == self._sig:
                return
            try:
                reader = self._open()
            except BadRequest as exc:
                log.warning(
                    "%s changed and cannot be read (%s); answering from the copy opened "
                    "before until it changes again",
                    self.path,
                    exc.custom_message,
                )
                if self._signature() == sig:
                    self._sig = sig  # stable and bad: not retried until it changes again
                return
            if self._signature() != sig:
                reader.close()  # changed while being copied: a torn copy; retry later
                return
            # Lookups still running on the old reader keep it alive; it closes when freed.
            self.reader, self._sig = reader, sig
            log.info("%s reopened after it changed", self.path)
        finally:
            self._reopening.release()

    # -- records ------------------------------------------------------------------------------

    def judge(self, ip: str) -> Match | Refusal | None:
        """This database alone: its verdict, with its own word on who runs the network."""
        verdict, owner = self.look(ip)
        if type(verdict) is Match and owner is not None:
            why = owner_refusal(verdict.domain, owner.isp, owner.organization, owner.asn)
            if why is not None:
                return Refusal("network", f"{self.name}: {why}")
        return verdict

    def look(self, ip: str) -> tuple[Match | Refusal | None, Owner | None]:
        """The record's verdict, and who it says runs and uses the network (for the
        resolver to weigh any database's domain against)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._maybe_reopen(now)
        try:
            record = self.reader.get(ip)
        except Exception as exc:  # a corrupt tree or record: this address, not the process
            return self._failed(ip, exc), None
        if not isinstance(record, dict):
            return None, None
        traits = record.get("traits")
        if isinstance(traits, dict):
            return self._enterprise(traits), _owner(traits)
        domain = record.get("domain")
        if isinstance(domain, str):
            if domain in self._by_domain:
                return self._by_domain[domain], None
            verdict = self._domain(domain, CONFIDENCE_DOMAIN, None)
            if len(self._by_domain) >= 100_000:
                self._by_domain.clear()
            self._by_domain[domain] = verdict
            return verdict, None
        return self._isp(record), _owner(record)

    def _failed(self, ip: str, exc: Exception) -> Refusal:
        detail = f"{self.name} cannot be read for {ip}: {_said(exc)}"
        now = time.monotonic()
        if now - self._errors_logged_at >= 60:  # a corrupt file must not flood the log
            self._errors_logged_at = now
            log.warning("IP database %s: %s (logged at most once a minute)", self.path, detail)
        return Refusal("error", detail)

    def _domain(self, value: str, confidence: float, company: str | None) -> Match | Refusal | None:
        domain = try_normalise_domain(value)
        if domain is None:
            return None
        if not is_company_domain(domain):
            return Refusal(
                "network",
                f"{self.name} names {domain}, an ISP's, host's, carrier's or infrastructure name",
            )
        if _brand(domain).endswith(_NETWORK_BRAND_ENDINGS):
            return Refusal("network", f"{self.name} names {domain}, a network's by its name")
        return Match(domain, "ip", self.provider, confidence, company)

    def _enterprise(self, traits: dict[str, Any]) -> Match | Refusal | None:
        """GeoIP2 Enterprise (and Insights-like) `traits`: user type first, then the domain."""
        user_type = traits.get("user_type")
        if isinstance(user_type, str):
            kind = user_type.lower()
            if kind in NETWORK_USER_TYPES:
                return Refusal("network", f"{self.name}: user type {user_type}")
            if kind not in COMPANY_USER_TYPES:
                return Refusal(
                    "network", f"{self.name}: user type {user_type} is not an organisation's"
                )
        connection = traits.get("connection_type")
        if isinstance(connection, str) and connection.lower() == "cellular":
            return Refusal("network", f"{self.name}: connection type {connection}")
        if traits.get("mobile_country_code") or traits.get("mobile_network_code"):
            return Refusal("network", f"{self.name}: a mobile carrier's network")
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
        """GeoIP2 ISP / GeoLite2 ASN / Connection-Type / Anonymous-IP: never a domain, but
        they can tell an ISP's, a carrier's or a hiding network apart.

        The organization is who uses the network, the ISP who connects it: a company on
        a business line has its own name as organization, a home user the ISP's.
        """
        if record.get("mobile_country_code") or record.get("mobile_network_code"):
            return Refusal("network", f"{self.name}: a mobile carrier's network")
        connection = record.get("connection_type")
        if isinstance(connection, str) and connection.lower() == "cellular":
            return Refusal("network", f"{self.name}: connection type {connection}")
        for flag in _HIDING_TRAITS:
            if record.get(flag) is True:
                return Refusal("network", f"{self.name}: {flag}")
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


def check_files(paths: list[str]) -> None:
    """Open and close each database: BadRequest naming the first that cannot be used."""
    for path in paths:
        Mmdb(path).close()


def _owner(record: dict[str, Any]) -> Owner | None:
    isp = text_of(record.get("isp"))
    organization = text_of(record.get("organization"))
    asn = text_of(record.get("autonomous_system_organization"))
    if isp is None and organization is None and asn is None:
        return None
    return Owner(isp, organization, asn)


def _said(exc: BaseException) -> str:
    """An exception as one short line: its message, else its type."""
    text = " ".join(str(exc).split())
    return (text or type(exc).__name__)[:300]
