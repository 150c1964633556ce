"""OAuth 2.0 access tokens for live collection, from the Microsoft identity platform.

Three ways in, all against the standard v2.0 endpoints of ``{authority}/{tenant}/oauth2/v2.0/``:
app-only with a certificate (a client assertion: a JWT signed RS256 with the certificate's key,
``x5t`` / ``x5t#S256`` in its header), app-only with a client secret, and the device code flow
for a consultant signing in with a reader role. The authority is a parameter so that tests
point it at a local token server.

Secrets, assertions and tokens are held in objects whose ``repr`` hides them, and no message
this module writes or raises contains one: token endpoint errors are reported by their code and
the first line of their description, with any known secret blanked out as well.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from .errors import AuthenticationError, InputError

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
EXO_SCOPE = "https://outlook.office365.com/.default"
EARLY_REFRESH = 300.0  # seconds before expiry when a cached token is replaced
ASSERTION_LIFETIME = 600  # seconds a client assertion is valid
TOKEN_ATTEMPTS = 3  # tries for a token request that fails in transit or with 5xx / 429
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")

Sleep = Callable[[float], Awaitable[None]]


def check_endpoint(url: str, what: str) -> str:
    """Refuse plain HTTP except to a loopback test server: tokens travel over TLS only."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return url.rstrip("/")
    raise InputError(f"{what} must be an https:// URL (plain http only to a loopback test server): "
                     f"{url!r}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT without checking its signature: for routing (tenant id, user
    name), never for trust. Anything that is not a JWT gives no claims."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when to stop using it (monotonic clock)."""

    value: str = field(repr=False)
    expires_at: float
    refresh_token: str | None = field(default=None, repr=False)

    @property
    def claims(self) -> dict[str, Any]:
        return unverified_claims(self.value)

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - EARLY_REFRESH


class Credential(ABC):
    """Gets, caches and renews access tokens for one tenant, client and scope."""

    kind = "credential"  # how the manifest names the way in (never the secret itself)

    def __init__(self, tenant: str, client_id: str, *, authority: str = DEFAULT_AUTHORITY,
                 scope: str = EXO_SCOPE, backoff: float = 1.0) -> None:
        if not tenant or not client_id:
            raise InputError("a tenant and a client id are required")
        self.tenant = tenant
        self.client_id = client_id
        self.authority = check_endpoint(authority, "the authority host")
        self.scope = scope
        self.backoff = backoff
        self.requests = 0  # token endpoint calls made, for tests and progress
        self._cached: AccessToken | None = None
        self._lock = asyncio.Lock()

    @property
    def token_url(self) -> str:
        return f"{self.authority}/{self.tenant}/oauth2/v2.0/token"

    @property
    def delegated(self) -> bool:
        """Whether tokens act for a signed-in user (device code) rather than the app."""
        return False

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a message, a log or a file."""
        return ()

    async def token(self, http: httpx.AsyncClient, *, renew: bool = False,
                    stale: AccessToken | None = None) -> AccessToken:
        """A valid token: the cached one unless it expires soon or ``renew`` is asked for.

        ``stale`` is the token a caller saw refused; when another caller has renewed it in the
        meantime, that newer token is returned instead of asking again.
        """
        async with self._lock:
            cached = self._cached
            if cached is not None and stale is not None and cached.value != stale.value:
                return cached
            if cached is not None and not renew and cached.fresh(time.monotonic()):
                return cached
            self._cached = await self._acquire(http, cached)
            return self._cached

    @abstractmethod
    async def _acquire(self, http: httpx.AsyncClient, previous: AccessToken | None) -> AccessToken:
        """Ask the token endpoint for a new token."""

    async def _post(self, http: httpx.AsyncClient, url: str, form: Mapping[str, str]) -> dict[str, Any]:
        """POST a form to an identity endpoint; return its JSON (errors included, as dicts).

        Transport failures, 5xx and 429 are retried a few times; then AuthenticationError.
        """
        last = ""
        for attempt in range(TOKEN_ATTEMPTS):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            self.requests += 1
            try:
                response = await http.post(url, data=dict(form), headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__} talking to {url}"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                last = f"HTTP {response.status_code} from {url}"
                continue
            try:
                body = response.json()
            except ValueError:
                raise AuthenticationError(
                    f"the token endpoint {url} answered HTTP {response.status_code} without JSON"
                ) from None
            if not isinstance(body, dict):
                raise AuthenticationError(f"the token endpoint {url} answered an unexpected body")
            body["_status"] = response.status_code
            return body
        raise AuthenticationError(f"no token: {last} ({TOKEN_ATTEMPTS} attempts)")

    def _token_from(self, body: Mapping[str, Any], previous: AccessToken | None) -> AccessToken:
        value = body.get("access_token")
        if body.get("_status") != 200 or not isinstance(value, str) or not value:
            raise AuthenticationError(self.describe_error(body))
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        refresh = body.get("refresh_token")
        return AccessToken(
            value=value,
            expires_at=time.monotonic() + lifetime,
            refresh_token=refresh if isinstance(refresh, str) else
            (previous.refresh_token if previous else None),
        )

    def describe_error(self, body: Mapping[str, Any]) -> str:
        """The identity platform's refusal in one line, with every known secret blanked."""
        code = str(body.get("error") or f"HTTP {body.get('_status')}")
        description = str(body.get("error_description") or "").strip().splitlines()
        text = f"the identity platform refused the {self.kind} for client {self.client_id} " \
               f"in tenant {self.tenant}: {code}"
        if description:
            text += f": {description[0]}"
        return redact(text, self.secrets())


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of a secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class ClientSecretCredential(Credential):
    """App-only with a client secret (``AZURE_CLIENT_SECRET``)."""

    kind = "client secret"

    def __init__(self, tenant: str, client_id: str, secret: str, **kwargs: Any) -> None:
        super().__init__(tenant, client_id, **kwargs)
        if not secret:
            raise InputError("the client secret is empty")
        self._secret = secret

    def secrets(self) -> tuple[str, ...]:
        return (self._secret,)

    async def _acquire(self, http: httpx.AsyncClient, previous: AccessToken | None) -> AccessToken:
        body = await self._post(http, self.token_url, {
            "grant_type": "client_credentials", "client_id": self.client_id,
            "client_secret": self._secret, "scope": self.scope})
        return self._token_from(body, previous)


@dataclass(frozen=True)
class LoadedCertificate:
    """A certificate with its private key: what signs the client assertion."""

    der: bytes
    key: Any = field(repr=False)


def load_certificate(path: Path, password: str | None = None) -> LoadedCertificate:
    """Read a certificate and its RSA key: PEM holding both (azure-identity's format) or PKCS#12."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the certificate: {exc.strerror}") from None
    secret = password.encode() if password else None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, secret)
            certificate = x509.load_pem_x509_certificate(data)
        else:
            key, certificate, _ = pkcs12.load_key_and_certificates(data, secret)
    except (ValueError, TypeError):
        raise InputError(f"{path}: not a PEM file with a certificate and its private key, nor a "
                         "PKCS#12 (.pfx) file, or the password is wrong") from None
    if certificate is None or key is None:
        raise InputError(f"{path}: the file must hold both the certificate and its private key")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(f"{path}: the private key is not RSA (Entra ID client assertions are RS256)")
    return LoadedCertificate(der=certificate.public_bytes(serialization.Encoding.DER), key=key)


def client_assertion(certificate: LoadedCertificate, client_id: str, audience: str,
                     now: float | None = None) -> str:
    """A signed JWT proving possession of the certificate (RFC 7523, as Entra ID expects)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    issued = int(now if now is not None else time.time())
    header = {"alg": "RS256", "typ": "JWT",
              "x5t": _b64url(hashlib.sha1(certificate.der).digest()),  # noqa: S324
              "x5t#S256": _b64url(hashlib.sha256(certificate.der).digest())}
    payload = {"aud": audience, "iss": client_id, "sub": client_id, "jti": str(uuid.uuid4()),
               "nbf": issued, "iat": issued, "exp": issued + ASSERTION_LIFETIME}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(payload, separators=(",", ":")).encode()))
    signature = certificate.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


class CertificateCredential(Credential):
    """App-only with a certificate (``AZURE_CLIENT_CERTIFICATE_PATH``): the preferred way in."""

    kind = "certificate"

    def __init__(self, tenant: str, client_id: str, certificate: LoadedCertificate,
                 **kwargs: Any) -> None:
        super().__init__(tenant, client_id, **kwargs)
        self.certificate = certificate
        self._assertions: list[str] = []  # kept only so that messages can blank them

    def secrets(self) -> tuple[str, ...]:
        return tuple(self._assertions[-2:])

    async def _acquire(self, http: httpx.AsyncClient, previous: AccessToken | None) -> AccessToken:
        assertion = client_assertion(self.certificate, self.client_id, self.token_url)
        self._assertions.append(assertion)
        body = await self._post(http, self.token_url, {
            "grant_type": "client_credentials", "client_id": self.client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion, "scope": self.scope})
        return self._token_from(body, previous)


class DeviceCodeCredential(Credential):
    """Delegated sign-in for a consultant: the user opens a page and types a code.

    ``prompt`` receives the identity platform's instruction text (to show on the terminal);
    a refused token mid-run is renewed with the refresh token, or by signing in again.
    """

    kind = "device code sign-in"

    def __init__(self, tenant: str, client_id: str, prompt: Callable[[str], None], *,
                 sleep: Sleep = asyncio.sleep, **kwargs: Any) -> None:
        super().__init__(tenant, client_id, **kwargs)
        self.prompt = prompt
        self.sleep = sleep

    @property
    def delegated(self) -> bool:
        return True

    def secrets(self) -> tuple[str, ...]:
        cached = self._cached
        return tuple(s for s in ((cached.refresh_token if cached else None),) if s)

    async def _acquire(self, http: httpx.AsyncClient, previous: AccessToken | None) -> AccessToken:
        if previous is not None and previous.refresh_token:
            body = await self._post(http, self.token_url, {
                "grant_type": "refresh_token", "client_id": self.client_id,
                "refresh_token": previous.refresh_token, "scope": f"{self.scope} offline_access"})
            if body.get("_status") == 200 and body.get("access_token"):
                return self._token_from(body, previous)
        return await self._sign_in(http)

    async def _sign_in(self, http: httpx.AsyncClient) -> AccessToken:
        start = await self._post(http, f"{self.authority}/{self.tenant}/oauth2/v2.0/devicecode", {
            "client_id": self.client_id, "scope": f"{self.scope} offline_access"})
        device_code = start.get("device_code")
        if start.get("_status") != 200 or not isinstance(device_code, str):
            raise AuthenticationError(self.describe_error(start))
        self.prompt(str(start.get("message") or
                        f"To sign in, open {start.get('verification_uri')} and enter the code "
                        f"{start.get('user_code')}"))
        interval = float(start.get("interval", 5) or 0)
        deadline = time.monotonic() + float(start.get("expires_in", 900))
        while time.monotonic() < deadline:
            await self.sleep(interval)
            body = await self._post(http, self.token_url, {
                "grant_type": DEVICE_CODE_GRANT, "client_id": self.client_id,
                "device_code": device_code})
            error = body.get("error")
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += 5
                continue
            return self._token_from(body, None)
        raise AuthenticationError("the device code expired before the sign-in was completed")
