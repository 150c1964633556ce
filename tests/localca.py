"""A throwaway certificate authority for the tests' TLS servers (HTTPS, SMTP STARTTLS).

The clients under test do real handshakes and certificate checks against it: the CA signs one
server certificate for the given names (and 127.0.0.1), written as PEM files in a temporary
folder that lives as long as the object.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificate(names: Sequence[str], subject: x509.Name, issuer: x509.Name,
                issuer_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey, *,
                ca: bool) -> x509.Certificate:
    """A certificate valid from an hour ago for a day, naming ``names`` and 127.0.0.1 if any."""
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


class LocalCA:
    """A CA and one server certificate for ``names`` (the first is its common name)."""

    def __init__(self, names: Sequence[str], *, ca_name: str = "mailflow-auditor test CA") -> None:
        self._dir = tempfile.TemporaryDirectory()
        folder = Path(self._dir.name)
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
        self.ca = certificate([], issuer, issuer, ca_key, ca_key, ca=True)
        leaf = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        cert = certificate(names, leaf, issuer, ca_key, key, ca=False)
        self.ca_file = folder / "ca.pem"
        self.cert_file = folder / "cert.pem"
        self.key_file = folder / "key.pem"
        self.ca_file.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trust in this CA only; host names are still checked."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def cleanup(self) -> None:
        self._dir.cleanup()
