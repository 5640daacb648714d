"""A local HTTP server that speaks Sentry's envelope endpoint and keeps what it receives."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def parse_envelope(body: bytes) -> list[tuple[dict[str, Any], Any]]:
    """Split an envelope into (item header, payload) pairs; JSON payloads are decoded."""
    items: list[tuple[dict[str, Any], Any]] = []
    _, _, rest = body.partition(b"\n")
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        try:
            items.append((header, json.loads(payload)))
        except ValueError:
            items.append((header, payload))
    return items


class SentryServer:
    """Receives envelopes on 127.0.0.1:<port>; `dsn` points an SDK at it."""

    def __init__(self) -> None:
        self.items: list[tuple[dict[str, Any], Any]] = []
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br":
                    import brotli  # type: ignore[import-not-found]

                    body = brotli.decompress(body)
                with server._lock:
                    server.bodies.append(body)
                    server.items.extend(parse_envelope(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]
        self.dsn = f"http://publickey@127.0.0.1:{self.port}/42"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def of_type(self, item_type: str) -> list[Any]:
        with self._lock:
            return [payload for header, payload in self.items if header.get("type") == item_type]

    def events(self) -> list[dict[str, Any]]:
        return self.of_type("event")

    def received(self) -> bytes:
        """Everything received, decompressed, for "this must never leave" assertions."""
        with self._lock:
            return b"\n".join(self.bodies)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
