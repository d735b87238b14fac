"""The guarded outbound path (kit/outbound.py) against real local servers: one lookup per
connection, every address checked, the connection made to the checked address with the
URL's name kept for Host, SNI and the certificate, and one deadline for a whole request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from intently.kit import outbound
from intently.kit.outbound import Policy, TargetRefused
from intently.settings import Settings
from tests.support.outbound import Rebinding, Trickle, self_signed
from tests.support.webhook_receiver import Receiver

NAME = "rebind.test"


def same_port_pair() -> tuple[Receiver, Receiver]:
    """A receiver on 127.0.0.2 (standing for a public address the operator allows) and an
    "internal" one on 127.0.0.1 that answers 500, on the same port."""
    for _ in range(20):
        outside = Receiver(host="127.0.0.2").start()
        try:
            inside = Receiver(host="127.0.0.1", port=outside.port, default=500).start()
        except OSError:
            outside.stop()
            continue
        return outside, inside
    raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")


@pytest.fixture
def pair() -> Iterator[tuple[Receiver, Receiver]]:
    outside, inside = same_port_pair()
    yield outside, inside
    outside.stop()
    inside.stop()


def test_a_name_rebound_after_the_check_is_refused_at_the_connection(
    monkeypatch: pytest.MonkeyPatch, pair: tuple[Receiver, Receiver]
) -> None:
    outside, inside = pair
    policy = Policy(allow=outbound.parse_networks("127.0.0.2"))
    dns = Rebinding(NAME, [["127.0.0.2"], ["127.0.0.2"], ["127.0.0.1"]]).install(monkeypatch)
    url = f"http://{NAME}:{outside.port}/hook"

    outbound.check_url(url, policy)  # as when the URL is saved: the allowed address
    with outbound.client(policy, deadline_s=5) as c:
        # One lookup for the connection, and the connection made to what it answered.
        assert c.post(url, content=b"{}").status_code == 200
    assert len(dns.lookups) == 2
    assert len(outside.received) == 1
    assert outside.received[0].headers["host"] == f"{NAME}:{outside.port}"

    # The name now points inward: the next connection is refused before it is made.
    with outbound.client(policy, deadline_s=5) as c, pytest.raises(TargetRefused) as refused:
        c.post(url, content=b"{}")
    assert str(refused.value).startswith(f"host '{NAME}' is a loopback address (127.0.0.1)")
    assert inside.received == [] and len(dns.lookups) == 3


def test_every_address_of_a_name_is_checked(
    monkeypatch: pytest.MonkeyPatch, pair: tuple[Receiver, Receiver]
) -> None:
    outside, inside = pair
    policy = Policy(allow=outbound.parse_networks("127.0.0.2"))
    Rebinding(NAME, [["127.0.0.2", "127.0.0.1"]]).install(monkeypatch)
    with outbound.client(policy, deadline_s=5) as c, pytest.raises(TargetRefused):
        c.get(f"http://{NAME}:{outside.port}/hook")
    assert outside.received == [] and inside.received == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::1]", "0.0.0.0", "10.1.2.3", "169.254.169.254", "[::ffff:127.0.0.1]",
     "100.64.0.1", "[fe80::1]"],
)  # fmt: skip
def test_private_addresses_are_refused_unless_allowed(host: str) -> None:
    with pytest.raises(TargetRefused, match="INTENTLY_OUTBOUND_ALLOW"):
        outbound.check_url(f"http://{host}:8080/x", Policy())


def test_the_allow_list_and_its_setting() -> None:
    policy = Policy.of(Settings(outbound_allow="10.1.0.0/16, 127.0.0.1"))
    outbound.check_url("http://10.1.2.3/x", policy)
    outbound.check_url("http://127.0.0.1:9/x", policy)
    with pytest.raises(TargetRefused):
        outbound.check_url("http://10.2.0.1/x", policy)
    with pytest.raises(TargetRefused):
        outbound.check_url("http://127.0.0.2/x", policy)
    with pytest.raises(ValueError, match="INTENTLY_OUTBOUND_ALLOW: 'ten' is not an IP"):
        Settings(outbound_allow="10.0.0.0/8, ten")


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.default = "redirect"
    with outbound.client(Policy(allow_private=True), deadline_s=5) as c:
        r = c.post(receiver.url, content=b"{}")
    assert r.status_code == 302 and len(receiver.received) == 1


def test_a_whole_request_ends_by_its_deadline_though_every_read_gets_bytes() -> None:
    slow = Trickle(for_s=8.0, every_s=0.05)
    try:
        with outbound.client(Policy(allow_private=True), deadline_s=0.6, timeout=2.0) as c:
            t0 = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                c.get(slow.url)
            took = time.monotonic() - t0
        # The per-read timeout (2 s) never runs out; only the deadline ends it.
        assert took < 4.0, took
        assert slow.requests == 1
    finally:
        slow.stop()


def test_tls_to_the_pinned_address_keeps_the_name_for_sni_and_the_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = "pinned.test"
    cert = self_signed(name, tmp_path)
    seen: list[str | None] = []
    cert.server.sni_callback = lambda _sock, sni, _ctx: seen.append(sni)  # type: ignore[assignment,misc,return-value]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = cert.server.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        dns = Rebinding(name, [["127.0.0.1"]]).install(monkeypatch)
        policy = Policy(allow=outbound.parse_networks("127.0.0.1"))
        with outbound.client(policy, deadline_s=5, verify=cert.client) as c:
            r = c.get(f"https://{name}:{port}/")
        assert r.status_code == 200 and r.text == "ok"
        assert seen == [name] and len(dns.lookups) == 1
        # The certificate is checked against the name: by address it does not match.
        mismatch = pytest.raises(httpx.ConnectError, match=r"(?i)certificate|hostname|match")
        with outbound.client(policy, deadline_s=5, verify=cert.client) as c, mismatch:
            c.get(f"https://127.0.0.1:{port}/")
    finally:
        server.shutdown()
        server.server_close()


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(TargetRefused, match="does not resolve"):
        outbound.check_url("http://no-such-host.invalid/x", Policy())
