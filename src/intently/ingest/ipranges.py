"""A workspace's IP ranges file (`network,domain[,company]`, header optional): reading and
checking its rows, and the lock and version every change to the ranges takes."""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

from intently.ingest.files import CsvInput, FileLimits
from intently.ingest.ipnets import SPECIAL4, SPECIAL6
from intently.ingest.matches import is_free_email_domain, is_network_domain
from intently.kit.db import fetch_all, param_marker
from intently.kit.domains import try_normalise_domain
from intently.kit.timefmt import now_us

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
class RangeRow:
    """A usable row of a ranges file: its networks as canonical CIDR blocks, and whose."""

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
        special = SPECIAL6 if net.version == 6 else SPECIAL4
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


def check_row(line: int, cells: list[str], cols: dict[str, int]) -> RangeRow | tuple[str, str]:
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
    return RangeRow(line, tuple(str(n) for n in nets), domain, cell("company") or None)


class RangeFile:
    """An open ranges CSV: with or without a header row."""

    def __init__(self, path: str | Path, limits: FileLimits | None = None) -> None:
        self.inp = CsvInput(path, what=WHAT, limits=limits)
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

    def __enter__(self) -> RangeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Every change to a workspace's ranges also moves its ranges version, in the same
# transaction, so a resolver learns of a change with one primary-key read instead of an
# aggregate over the ranges (count and max(created_at) over 100,000 rows take 10-300 ms).
def ranges_version(conn: Connection, ws: int) -> int:
    """The workspace's ranges version: changes with every change to its ranges (0: never)."""
    m = param_marker(conn)
    rows = fetch_all(conn, f"SELECT version FROM ip_range_versions WHERE workspace_id = {m}", (ws,))
    return int(rows[0][0]) if rows else 0


def _lock(conn: Connection, ws: int) -> None:
    """Serialise the workspace's range writers until the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, ws))


def begin_change(conn: Connection, ws: int) -> int:
    """Take the workspace's range lock; the stamp of this change (its new ranges version).

    Strictly above the last version even when this host's clock is behind another's, so
    every change gives a version no resolver has loaded.
    """
    _lock(conn, ws)
    return max(now_us(), ranges_version(conn, ws) + 1)


def set_version(conn: Connection, ws: int, stamp: int) -> None:
    """Make `stamp` (from `begin_change`) the workspace's ranges version."""
    m = param_marker(conn)
    conn.exec_driver_sql(
        f"INSERT INTO ip_range_versions (workspace_id, version) VALUES ({m}, {m}) "
        "ON CONFLICT (workspace_id) DO UPDATE SET version = excluded.version",
        (ws, stamp),
    )
