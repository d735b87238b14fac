"""IP addresses and networks as integers: sorted intervals searched by bisection, and the
special-purpose blocks (private, loopback, reserved...) that never resolve."""

from __future__ import annotations

import socket
from bisect import bisect_right
from collections.abc import Iterable
from typing import Generic, TypeVar

_AF4, _AF6 = socket.AF_INET, socket.AF_INET6
_inet_pton = socket.inet_pton
MAPPED_PREFIX = 0xFFFF  # ::ffff:a.b.c.d is the IPv4 address a.b.c.d

V = TypeVar("V")


class Intervals(Generic[V]):
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


def cidr_bounds(network: str) -> tuple[int, int, int]:
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


def _special(networks: tuple[str, ...]) -> Intervals[bool]:
    return Intervals((first, last, True) for _, first, last in map(cidr_bounds, networks))


SPECIAL4 = _special(_SPECIAL_V4)
SPECIAL6 = _special(_SPECIAL_V6)


def is_special_ip(version: int, n: int) -> bool:
    """Private, loopback, link-local, multicast, documentation or reserved."""
    return (SPECIAL6 if version == 6 else SPECIAL4).find(n) is not None
