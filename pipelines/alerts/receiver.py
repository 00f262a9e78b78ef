"""A local receiver of ``json://`` alerts that keeps what it got: the demo points a rule at one,
and the tests do too.

Apprise's ``json://host:port/path`` posts ``{"version", "title", "message", "type", ...}``; this
server, on 127.0.0.1 in a thread of the calling process, answers 200 and appends each post (and
its ``Authorization`` header, to check what credentials arrived) to :attr:`JsonReceiver.posts`.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


class JsonReceiver:
    """Start with ``with JsonReceiver() as r:`` (or :meth:`start`); ``r.url()`` is a rule's URL."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.posts: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw.decode("utf-8", "replace")}
                with receiver._lock:
                    receiver.posts.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "alerts", user: Optional[str] = None, password: Optional[str] = None) -> str:
        """The Apprise URL of this receiver (``json://[user:password@]127.0.0.1:PORT/path``)."""
        auth = f"{user}:{password}@" if user else ""
        return f"json://{auth}127.0.0.1:{self.port}/{path}"

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.posts)

    def start(self) -> "JsonReceiver":
        self._thread = threading.Thread(target=self.server.serve_forever, name="json-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "JsonReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
