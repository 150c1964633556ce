"""A real HTTPS server on 127.0.0.1 for tests, with its own certificate authority.

It speaks HTTP/1.1 over TLS with asyncio's own server, so the client under test does a real
handshake, certificate check (SNI and name) and request; responses are set per path.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from .localca import LocalCA

READ_LIMIT = 64 * 1024
IO_TIMEOUT = 5.0


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/plain"})


class HttpsServer:
    """``async with HttpsServer(["mta-sts.example.test"]) as server``; set ``server.routes``."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.routes: dict[str, Reply] = {}
        self.requests: list[tuple[str, str, str]] = []  # (path, Host header, SNI)
        self._server: asyncio.Server | None = None
        self._ca = LocalCA(names)
        self._context = self._ca.server_context()
        self._context.sni_callback = self._sni

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only this server's certificate authority."""
        return self._ca.client_context()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def _sni(self, sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        sock.sni = name  # type: ignore[attr-defined]  # remembered for the request log

    async def __aenter__(self) -> HttpsServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._ca.cleanup()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
            lines = head.decode("latin-1").split("\r\n")
            _, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:] if line)}
            ssl_object = writer.get_extra_info("ssl_object")
            self.requests.append((path, headers.get("host", ""),
                                  str(getattr(ssl_object, "sni", None))))
            reply = self.routes.get(path, Reply(404, b"not found"))
            status_text = {200: "OK", 301: "Moved Permanently", 404: "Not Found"}.get(reply.status, "X")
            head_lines = [f"HTTP/1.1 {reply.status} {status_text}",
                          f"Content-Length: {len(reply.body)}", "Connection: close",
                          *(f"{k}: {v}" for k, v in reply.headers.items())]
            writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode() + reply.body)
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError,
                ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
