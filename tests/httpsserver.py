"""A real HTTPS server on 127.0.0.1 for tests, with its own certificate authority.

It speaks HTTP/1.1 over TLS with asyncio's own server, so the client under test does a real
handshake, certificate check (SNI and name) and request; responses are set per path.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

READ_LIMIT = 64 * 1024
IO_TIMEOUT = 5.0


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/plain"})


def _certificate(names: list[str], subject: x509.Name, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey, *,
                 ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class HttpsServer:
    """``async with HttpsServer(["mta-sts.example.test"]) as server``; set ``server.routes``."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.routes: dict[str, Reply] = {}
        self.requests: list[tuple[str, str, str]] = []  # (path, Host header, SNI)
        self._server: asyncio.Server | None = None
        self._dir = tempfile.TemporaryDirectory()
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailflow-auditor test CA")])
        self._ca = _certificate([], ca_name, ca_name, ca_key, ca_key, ca=True)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        cert = _certificate(names, leaf, ca_name, ca_key, key, ca=False)
        folder = Path(self._dir.name)
        (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        self._context.sni_callback = self._sni

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only this server's certificate authority."""
        context = ssl.create_default_context(
            cadata=self._ca.public_bytes(serialization.Encoding.PEM).decode())
        return context

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
        self._dir.cleanup()

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
