"""For tests of outbound calls: the loopback allowance the local fakes need, a resolver
whose answers change (DNS rebinding), a server that trickles its answer, and a
self-signed certificate for a made-up name."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from intently.kit import outbound
from intently.settings import Settings

# What the operator would set (INTENTLY_OUTBOUND_ALLOW) for the tests' fakes on 127.0.0.1.
LOCAL = "127.0.0.1"


def guarded(settings: Settings, timeout: float, deadline_s: float = 30.0) -> httpx.Client:
    """A client on the guarded path with a short per-step timeout (retry tests)."""
    return outbound.client(outbound.Policy.of(settings), deadline_s=deadline_s, timeout=timeout)


@dataclass
class Rebinding:
    """Answers lookups of `name` from `answers` in turn (the last one for ever after),
    as a name whose DNS answer an attacker changes; any other name resolves as usual."""

    name: str
    answers: list[list[str]]
    lookups: list[list[str]] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Rebinding:
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != self.name:
                return real(host, port, *args, **kwargs)
            n = len(self.lookups)
            ips = self.answers[min(n, len(self.answers) - 1)]
            self.lookups.append(ips)
            out = []
            for ip in ips:
                v6 = ipaddress.ip_address(ip).version == 6
                family = socket.AF_INET6 if v6 else socket.AF_INET
                sockaddr = (ip, int(port or 0), 0, 0) if v6 else (ip, int(port or 0))
                out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            return out

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return self


class Trickle:
    """A real HTTP server on `host` that answers 200 with its headers at once, then one
    body byte every `every_s` seconds for `for_s` seconds: each read gets something, so
    only a deadline on the whole request stops a client waiting on it."""

    def __init__(self, *, for_s: float = 10.0, every_s: float = 0.1, host: str = "127.0.0.1"):
        self.for_s, self.every_s = for_s, every_s
        self.requests = 0
        self._stop = threading.Event()
        self._sock = socket.create_server((host, 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request (small; its body comes with its headers)
                self.requests += 1
                n = int(self.for_s / self.every_s)
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n".encode())
                for _ in range(n):
                    if self._stop.wait(self.every_s):
                        return
                    conn.sendall(b".")
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()


@dataclass
class Certificate:
    """A self-signed certificate for `name`: `server` serves it, `client` trusts it."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def self_signed(name: str, tmp: Path) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp / "cert.pem").write_bytes(cert_pem)
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return Certificate(server, client)


def wait_until(condition: Any, timeout: float) -> bool:
    """Whether `condition()` held within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())
