"""OAuth against a local identity platform: client secret, certificate assertion, device code."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import pkcs12

from auditor.errors import AuthenticationError, InputError
from auditor.oauth import (
    CertificateCredential,
    ClientSecretCredential,
    DeviceCodeCredential,
    check_endpoint,
    client_assertion,
    load_certificate,
    unverified_claims,
)
from tests.fakeexo import CLIENT_ID, TENANT_DOMAIN, TENANT_ID, FakeExo, self_signed

SECRET = "Zq8~canary-SECRET-value-0123456789"


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def fake() -> Iterator[FakeExo]:
    with FakeExo(secret=SECRET) as server:
        yield server


async def test_client_secret_token_is_fetched_once_and_cached(fake: FakeExo) -> None:
    credential = ClientSecretCredential(TENANT_DOMAIN, CLIENT_ID, SECRET, authority=fake.url)
    async with httpx.AsyncClient() as http:
        first = await credential.token(http)
        again = await credential.token(http)
    assert first.value == again.value and len(fake.token_requests()) == 1
    form = _form(fake.token_requests()[0].body)
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "https://outlook.office365.com/.default"
    assert fake.token_requests()[0].path == f"/{TENANT_DOMAIN}/oauth2/v2.0/token"
    assert first.claims["tid"] == TENANT_ID


async def test_renewing_a_refused_token_asks_once_even_when_many_callers_saw_it_refused(
        fake: FakeExo) -> None:
    """Three requests refused with the same stale token renew it once, not three times."""
    credential = ClientSecretCredential(TENANT_ID, CLIENT_ID, SECRET, authority=fake.url)
    async with httpx.AsyncClient() as http:
        stale = await credential.token(http)
        renewed = [await credential.token(http, renew=True, stale=stale) for _ in range(3)]
    assert len({t.value for t in renewed}) == 1 and renewed[0].value != stale.value
    assert len(fake.token_requests()) == 2


async def test_a_wrong_secret_is_an_authentication_error_that_does_not_repeat_the_secret(
        fake: FakeExo) -> None:
    wrong = SECRET + "-wrong"
    credential = ClientSecretCredential(TENANT_ID, CLIENT_ID, wrong, authority=fake.url)
    async with httpx.AsyncClient() as http:
        with pytest.raises(AuthenticationError) as raised:
            await credential.token(http)
    message = str(raised.value)
    assert "invalid_client" in message and "AADSTS7000215" in message
    assert wrong not in message and SECRET not in message and "Trace ID" not in message
    assert wrong not in repr(credential)


async def test_an_unknown_tenant_names_the_identity_platform_error(fake: FakeExo) -> None:
    credential = ClientSecretCredential("fabrikam.onmicrosoft.com", CLIENT_ID, SECRET,
                                        authority=fake.url)
    async with httpx.AsyncClient() as http:
        with pytest.raises(AuthenticationError, match="AADSTS90002"):
            await credential.token(http)


async def test_an_unreachable_token_endpoint_is_retried_then_reported() -> None:
    credential = ClientSecretCredential(TENANT_ID, CLIENT_ID, SECRET, authority="http://127.0.0.1:9",
                                        backoff=0)
    async with httpx.AsyncClient() as http:
        with pytest.raises(AuthenticationError, match="3 attempts"):
            await credential.token(http)
    assert credential.requests == 3


def test_the_client_assertion_is_an_rs256_jwt_with_both_thumbprints(tmp_path: Path) -> None:
    path, der = self_signed(tmp_path)
    certificate = load_certificate(path)
    assertion = client_assertion(certificate, CLIENT_ID, "https://login.example/t/oauth2/v2.0/token",
                                 now=1_800_000_000)
    head, payload, signature = assertion.split(".")
    header = json.loads(_b64(head))
    claims = json.loads(_b64(payload))
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert _b64(header["x5t"]) == __import__("hashlib").sha1(der).digest()
    assert _b64(header["x5t#S256"]) == __import__("hashlib").sha256(der).digest()
    assert claims["aud"] == "https://login.example/t/oauth2/v2.0/token"
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["exp"] - claims["nbf"] == 600 and claims["jti"]
    certificate.key.public_key().verify(_b64(signature), f"{head}.{payload}".encode(),
                                        padding.PKCS1v15(), hashes.SHA256())


async def test_a_certificate_signs_in_against_the_token_endpoint(tmp_path: Path) -> None:
    path, der = self_signed(tmp_path)
    with FakeExo(certificate_der=der) as fake:
        credential = CertificateCredential(TENANT_ID, CLIENT_ID, load_certificate(path),
                                           authority=fake.url)
        async with httpx.AsyncClient() as http:
            token = await credential.token(http)
        form = _form(fake.token_requests()[0].body)
    assert token.claims["roles"] == ["Exchange.ManageAsApp"]
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "client_secret" not in form


async def test_an_unregistered_certificate_is_refused_without_echoing_the_assertion(
        tmp_path: Path) -> None:
    _, registered = self_signed(tmp_path, "registered")
    other, _ = self_signed(tmp_path, "other")
    with FakeExo(certificate_der=registered) as fake:
        credential = CertificateCredential(TENANT_ID, CLIENT_ID, load_certificate(other),
                                           authority=fake.url)
        async with httpx.AsyncClient() as http:
            with pytest.raises(AuthenticationError, match="AADSTS700027") as raised:
                await credential.token(http)
        assertion = _form(fake.token_requests()[0].body)["client_assertion"]
    assert assertion not in str(raised.value)


def test_a_pfx_with_its_password_loads_and_a_wrong_password_is_a_clean_input_error(
        tmp_path: Path) -> None:
    path, _ = self_signed(tmp_path)
    pem = path.read_bytes()
    key = serialization.load_pem_private_key(pem, None)
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    pfx = tmp_path / "app.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(
        b"app", key, cert, None, serialization.BestAvailableEncryption(b"pfx-pass-123")))  # type: ignore[arg-type]
    assert load_certificate(pfx, "pfx-pass-123").der == cert.public_bytes(serialization.Encoding.DER)
    with pytest.raises(InputError) as raised:
        load_certificate(pfx, "not-the-password")
    assert "not-the-password" not in str(raised.value)


def test_a_non_rsa_key_is_refused(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from tests.localca import certificate

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    cert = certificate([], name, name, key, key, ca=True)
    path = tmp_path / "ec.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(InputError, match="not RSA"):
        load_certificate(path)


async def test_device_code_prompts_polls_while_pending_then_refreshes_without_prompting(
        fake: FakeExo) -> None:
    prompts: list[str] = []
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    fake.device_polls = 2
    credential = DeviceCodeCredential(TENANT_ID, CLIENT_ID, prompts.append, sleep=no_wait,
                                      authority=fake.url)
    async with httpx.AsyncClient() as http:
        token = await credential.token(http)
        renewed = await credential.token(http, renew=True)
    assert len(prompts) == 1 and "F7KQ2XHPL" in prompts[0]
    assert waits == [5, 5, 5]  # the interval the endpoint asked for, twice pending, then approved
    assert token.claims["upn"] == "consultant@contoso.com" and credential.delegated
    grants = [_form(r.body).get("grant_type") for r in fake.token_requests()]
    assert grants[-1] == "refresh_token" and renewed.value != token.value
    assert fake.requests[0].path == f"/{TENANT_ID}/oauth2/v2.0/devicecode"


def test_tokens_travel_over_https_or_to_loopback_only() -> None:
    assert check_endpoint("https://login.microsoftonline.com/", "x") == "https://login.microsoftonline.com"
    assert check_endpoint("http://127.0.0.1:8080", "x") == "http://127.0.0.1:8080"
    with pytest.raises(InputError, match="https"):
        check_endpoint("http://login.example.com", "the authority host")


def test_claims_of_something_that_is_not_a_jwt_are_empty() -> None:
    assert unverified_claims("opaque-token") == {}
    assert unverified_claims("a.!!!.c") == {}
