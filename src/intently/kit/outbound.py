"""The one guarded path for outbound HTTP (webhooks, vendor pullers, anything later).

A URL stored by a workspace (a webhook target, a vendor base URL) must not become a way
into the operator's own network. Checking a name and then letting the HTTP library look
it up again is not enough: a name whose answer changes between the two lookups (DNS
rebinding) passes the check with a public address and is connected to on loopback. So
here a name is looked up once per connection, every address it gives is checked against
the `Policy`, and the connection goes to a checked address, while the Host header, TLS
SNI and certificate verification keep the name from the URL. Redirects are not
followed, proxies from the environment are not used, and every request has one deadline
from the first connect to the last byte of the answer (a per-read timeout alone lets a
receiver that trickles bytes hold a request for ever).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from intently.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HOW_TO_ALLOW = (
    "private targets are refused unless the operator allows them: their addresses or "
    "networks in INTENTLY_OUTBOUND_ALLOW, or all with INTENTLY_WEBHOOK_ALLOW_PRIVATE=true"
)


class TargetRefused(Exception):
    """A host that is, or resolves to, an address outbound calls may not reach."""


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """'10.0.0.0/8, 127.0.0.1' as networks; ValueError names the entry that is not one."""
    out: list[IPNetwork] = []
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"'{entry}' is not an IP address or network") from None
    return tuple(out)


def _embedded(ip: IPAddress) -> list[IPAddress]:
    """The IPv4 addresses an IPv6 one carries (mapped, 6to4, Teredo), then the address."""
    found: list[IPAddress] = []
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip.teredo is not None:
            found.extend(ip.teredo)
    return [*found, ip]


def _kind(ip: IPAddress) -> str | None:
    """What makes an address one outbound calls may not reach, or None."""
    for label, hit in (
        ("loopback", ip.is_loopback),
        ("private", ip.is_private),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unspecified", ip.is_unspecified),
        # Shared (CGNAT), benchmarking, documentation and other special-purpose ranges.
        ("non-global", not ip.is_global),
    ):
        if hit:
            return label
    return None


@dataclass(frozen=True, slots=True)
class Policy:
    """Which addresses outbound calls may reach: public ones, the operator's `allow`
    networks, and with `allow_private` any address at all."""

    allow: tuple[IPNetwork, ...] = ()
    allow_private: bool = False

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        """The policy the operator set (`outbound_allow`, `webhook_allow_private`)."""
        return cls(parse_networks(settings.outbound_allow), settings.webhook_allow_private)

    def refusal(self, ip: IPAddress) -> str | None:
        """Why `ip` may not be reached ('loopback', 'private', ...), or None when it may."""
        if self.allow_private:
            return None
        addresses = _embedded(ip)
        if any(a in net for a in addresses for net in self.allow if a.version == net.version):
            return None
        for a in addresses:
            kind = _kind(a)
            if kind is not None:
                return kind
        return None

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The host's addresses, looked up once, each checked; raises TargetRefused when
        the name does not resolve or any address it gives may not be reached."""
        name = host.strip("[]")
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(name.split("%")[0])]
        except ValueError:
            try:
                infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise TargetRefused(f"host '{name}' does not resolve ({exc})") from None
            addresses = []
            for info in infos:
                ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
                if ip not in addresses:
                    addresses.append(ip)
        if not addresses:
            raise TargetRefused(f"host '{name}' does not resolve")
        for ip in addresses:
            kind = self.refusal(ip)
            if kind is not None:
                raise TargetRefused(f"host '{name}' is a {kind} address ({ip}); {HOW_TO_ALLOW}")
        return addresses


def check_url(url: str, policy: Policy) -> None:
    """Raise TargetRefused unless the URL is http(s) and every address of its host may be
    reached now. For a clear answer when a URL is saved; each connection checks again."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"'{url}' is not an http(s) URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused(f"'{url}' has a port that is not a number from 0 to 65535") from None
    if not policy.allow_private:  # else any address will do: nothing to look up yet
        policy.resolve(parts.hostname, port)


# ---- the whole-request deadline ---------------------------------------------------------------

# The monotonic time by which the request being made in this thread (or task) must end.
# Set by the transport around each step of a request; read by the network stream.
_deadline: ContextVar[float | None] = ContextVar("intently_outbound_deadline", default=None)


def _budget(timeout: float | None, error: type[Exception]) -> float | None:
    """The step's timeout, cut to what is left of the request's deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # server_hostname is the URL's name, not the address: SNI and the certificate
        # check are about the name the caller asked for.
        budget = _budget(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, budget))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Opens each connection to an address checked by one lookup of the host."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._tcp = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.policy.resolve(host, port)
        last: Exception | None = None
        for ip in addresses:
            budget = _budget(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._tcp.connect_tcp(str(ip), port, budget, local_address, socket_options)
            except httpcore.ConnectError as exc:  # the next address may answer
                last = exc
                continue
            return _DeadlineStream(stream)
        assert last is not None  # resolve() gives at least one address
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise TargetRefused("outbound calls do not use unix sockets")

    def sleep(self, seconds: float) -> None:
        self._tcp.sleep(seconds)


class _DeadlineBody(httpx.SyncByteStream):
    """A response body read under its request's deadline."""

    def __init__(self, inner: httpx.SyncByteStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        while True:
            token = _deadline.set(self._deadline)
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                _deadline.reset(token)
            yield chunk

    def close(self) -> None:
        self._inner.close()


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The system's CA bundle, loaded once (it takes tens of ms; a context is shareable)."""
    return httpx.create_ssl_context(trust_env=False)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over pinned, checked connections, each request ending by
    `deadline_s` after it starts (connect, send and the whole answer)."""

    def __init__(
        self,
        policy: Policy,
        deadline_s: float,
        *,
        limits: httpx.Limits = httpx.Limits(),
        verify: Any = True,
    ) -> None:
        context = _default_tls() if verify is True else httpx.create_ssl_context(verify=verify)
        super().__init__(verify=context, limits=limits, trust_env=False)
        self.deadline_s = deadline_s
        # httpx does not take a network backend, so its pool is made again with ours
        # (the same arguments httpx gives it; httpx and httpcore are pinned together).
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(policy),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.deadline_s
        token = _deadline.set(deadline)
        try:
            response = super().handle_request(request)
        finally:
            _deadline.reset(token)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _DeadlineBody(response.stream, deadline)
        return response


def client(
    policy: Policy,
    *,
    deadline_s: float,
    timeout: httpx.Timeout | float | None = None,
    max_connections: int = 10,
    verify: Any = True,
) -> httpx.Client:
    """An httpx client on the guarded path: checked and pinned connections, no redirects
    followed, no proxies from the environment, and `deadline_s` for each whole request
    (`timeout`, each step's own limit, defaults to the deadline)."""
    n = max_connections
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    return httpx.Client(
        transport=GuardedTransport(policy, deadline_s, limits=limits, verify=verify),
        timeout=httpx.Timeout(deadline_s) if timeout is None else timeout,
        follow_redirects=False,
        trust_env=False,
    )
