"""A real HTTP receiver on 127.0.0.1 for webhook tests: records every request and answers
as told (200, any status, slow, a redirect, or a dropped connection)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each request by the next scripted reply, else by `default`.

    A reply is "ok", an int status, "slow" (sleeps `slow_s`, then 200), "redirect" or
    "close" (drops the connection without answering)."""

    port: int = 0
    default: Any = "ok"
    host: str = "127.0.0.1"
    slow_s: float = 1.5
    received: list[Received] = field(default_factory=list)
    script: deque[Any] = field(default_factory=deque)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go as two writes

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with owner._lock:
                    owner.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    reply = owner.script.popleft() if owner.script else owner.default
                if reply == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if reply == "slow":
                    time.sleep(owner.slow_s)
                    reply = "ok"
                status = 200 if reply == "ok" else 302 if reply == "redirect" else int(reply)
                out = b"{}" if status == 200 else b"receiver says no"
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", f"http://{owner.host}:{owner.port}/elsewhere")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (a timeout test)
                    self.wfile.write(out)

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def event_ids(self) -> list[str]:
        with self._lock:
            return [r.headers.get("intently-event-id", "") for r in self.received]
