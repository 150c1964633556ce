"""A fake Microsoft identity platform and Exchange Online admin API on 127.0.0.1.

One threaded HTTP/1.1 server (``http.server``) speaks both protocols the collector uses, so the
client under test does real requests, not patched calls:

- ``POST /{tenant}/oauth2/v2.0/token``: client credentials with a client secret or a
  certificate client assertion (its RS256 signature and ``x5t`` are verified), the device code
  grant and the refresh token grant; errors shaped like Entra ID's (``AADSTS...``).
- ``POST /{tenant}/oauth2/v2.0/devicecode``.
- ``POST /adminapi/beta/{tenantId}/InvokeCommand``: bearer token and anchor checked, results
  served from a data set (the demo tenant's files by default) in pages with ``@odata.nextLink``
  and the admin API's truncation warning, error bodies as the real service writes them.
- ``POST /adminapi/beta/{tenantId}/$batch``: OData JSON batching, ``{"requests": [{id, method,
  url, headers, body}]}`` answered ``{"responses": [{id, status, headers, body}]}``, each item
  served as its own InvokeCommand (its faults included); without ``Prefer:
  odata.continue-on-error`` the items after the first failure are left unanswered.

Faults are queued per cmdlet (``server.faults["Get-Mailbox"] = [Fault.status(429, ...)]``) and
consumed one per request or batch item; ``server.batch_faults`` hit whole ``$batch`` POSTs
(a 5xx, a dropped connection, ...), and ``batch_status`` refuses the endpoint outright. Every
HTTP request is recorded in ``server.requests``; ``latency`` is added to each HTTP request
(a ``$batch`` POST counts once) and ``item_latency`` to each item of a batch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from auditor.psjson import decode
from tests.loopback import LoopbackServer

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "contoso"
SAMPLES = REPO / "tests" / "fixtures" / "exo-samples"
TENANT_ID = "8a3f6c1e-2b7d-4c9a-9e51-3d0f7a6b2c48"
TENANT_DOMAIN = "contoso.onmicrosoft.com"
CLIENT_ID = "9c1e3a5c-7e9a-4c1e-b3a5-c7e9a1c3e5a7"
EXO_SCOPE = "https://outlook.office365.com/.default"
SYSTEM_MAILBOX = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}"
MORE_RESULTS = ("There are more results available than are currently displayed. To view them, "
                "increase the value for the ResultSize parameter.")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_values(path: Path) -> list[Any]:
    """The objects of an export or REST file, annotations kept (what the API would send)."""
    text, _, _ = decode(path.read_bytes(), path.name)
    document = json.loads(text.lstrip("\ufeff"))
    if isinstance(document, dict) and "value" in document:
        document = document["value"]
    return document if isinstance(document, list) else [document]


def demo_data() -> dict[str, Any]:
    """The demo tenant as the admin API holds it: per cmdlet (TABL per list type), and the
    inbox rules per mailbox (by ExternalDirectoryObjectId)."""
    data: dict[str, Any] = {}
    for path in sorted(DEMO.glob("Get-*.json")):
        data[path.stem] = load_values(path)
    rules: dict[str, list[Any]] = {m["ExternalDirectoryObjectId"]: [] for m in data["Get-Mailbox"]}
    for rule in data.pop("Get-InboxRule"):
        rules.setdefault(rule["MailboxOwnerId"], []).append(rule)
    data["Get-InboxRule"] = rules
    return data


def error_body(code: str, kind: str, text: str) -> dict[str, Any]:
    """An admin-API error body: the real text sits in details[0].message after the 2nd '|'."""
    return {"error": {"code": code, "message": "Error executing cmdlet",
                      "details": [{"code": "Client", "target": "",
                                   "message": f"Ex6F9304|{kind}|{text}"}],
                      "innererror": {"message": "Error executing cmdlet",
                                     "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"}},
            "adminapi.warnings@odata.type": "#Collection(String)", "@adminapi.warnings": []}


Answer = tuple[int, Any, dict[str, str]]  # status, body (or a Fault), headers


@dataclass(frozen=True)
class Fault:
    """One misbehaviour of the admin API, for one request."""

    kind: str  # status | sleep | truncate | drop | expire | nul403
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0

    @classmethod
    def reply(cls, status: int, body: Any = None, **headers: str) -> Fault:
        return cls("status", status=status, body=body, headers=headers)

    @classmethod
    def throttle(cls, retry_after: str) -> Fault:
        return cls("status", status=429, headers={"Retry-After": retry_after},
                   body={"error": {"code": "TooManyRequests", "message": "Too many requests"}})


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeExo(LoopbackServer):
    """``with FakeExo(secret="...") as fake:`` then point the client at ``fake.url``."""

    def __init__(self, *, secret: str | None = None, certificate_der: bytes | None = None,
                 data: dict[str, Any] | None = None, page_size: int = 1000,
                 latency: float = 0.0, item_latency: float = 0.0, batch_limit: int = 20,
                 device_polls: int = 1, device_interval: int = 5) -> None:
        self.secret = secret
        self.certificate_der = certificate_der
        self.data = demo_data() if data is None else data
        self.page_size = page_size
        self.latency = latency
        self.item_latency = item_latency
        self.batch_limit = batch_limit  # most requests in one $batch (Graph's bound); more: 400
        self.batch_status: int | None = None  # answer every $batch POST with this (e.g. 405)
        self.batch_faults: list[Fault] = []  # consumed one per $batch POST
        self.continue_on_error = True  # honour Prefer: odata.continue-on-error
        self.device_polls = device_polls  # "authorization_pending" answers before approval
        self.device_interval = device_interval
        self.in_flight = 0
        self.max_in_flight = 0  # most admin API requests (InvokeCommand or $batch) served at once
        self.faults: dict[str, list[Fault]] = {}
        self.denied: set[str] = set()  # cmdlets answered 403
        self.loop_pages: set[str] = set()  # cmdlets whose page 2 links back to page 2
        self.expired_pages: set[str] = set()  # cmdlets whose continuation fails (400)
        self.requests: list[Recorded] = []
        self.issued: list[str] = []  # every access and refresh token handed out
        self.valid: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.device_code: str | None = None
        self._polls = 0
        self._lock = threading.Lock()
        self._serve(self._handler())

    @property
    def url(self) -> str:
        return self.base_url

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (as at expiry)."""
        with self._lock:
            self.valid.clear()

    def invoke_requests(self) -> list[Recorded]:
        """Every HTTP request to the admin API: single InvokeCommand calls and $batch POSTs."""
        return [r for r in self.requests if r.path.startswith("/adminapi/")]

    def single_requests(self) -> list[Recorded]:
        return [r for r in self.requests if "/InvokeCommand" in r.path]

    def batch_requests(self) -> list[Recorded]:
        return [r for r in self.requests if _is_batch(urlsplit(r.path).path)]

    def cmdlet_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """(cmdlet, parameters) of every InvokeCommand asked for, alone or as a $batch item."""
        calls = []
        for recorded in self.invoke_requests():
            document = json.loads(recorded.body)
            inputs = ([item.get("body") or {} for item in document.get("requests") or []]
                      if _is_batch(urlsplit(recorded.path).path) else [document])
            for body in inputs:
                command = body["CmdletInput"]
                calls.append((command["CmdletName"], command.get("Parameters") or {}))
        return calls

    def token_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/token")]

    # --- tokens --------------------------------------------------------------------------

    def _access_token(self, delegated: bool) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"aud": "https://outlook.office365.com",
                                  "iss": f"https://sts.windows.net/{TENANT_ID}/", "tid": TENANT_ID,
                                  "appid": CLIENT_ID, "iat": now, "exp": now + 3599,
                                  "jti": secrets.token_hex(8)}
        if delegated:
            claims |= {"upn": "consultant@contoso.com", "scp": "Exchange.Manage"}
        else:
            claims |= {"roles": ["Exchange.ManageAsApp"],
                       "wids": ["f2ef992c-3afb-46b9-b7cf-a126ee74c451"]}
        token = ".".join([_b64url(b'{"typ":"JWT","alg":"RS256"}'),
                          _b64url(json.dumps(claims).encode()), _b64url(secrets.token_bytes(32))])
        with self._lock:
            self.issued.append(token)
            self.valid.add(token)
        return token

    def _token_reply(self, delegated: bool = False) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                "access_token": self._access_token(delegated)}
        if delegated:
            refresh = "0.AAAA" + secrets.token_urlsafe(24)
            with self._lock:
                self.issued.append(refresh)
                self.refresh_tokens.add(refresh)
            body["refresh_token"] = refresh
        return 200, body

    @staticmethod
    def _aad_error(status: int, error: str, code: str, text: str) -> tuple[int, dict[str, Any]]:
        return status, {"error": error, "error_codes": [int(code)],
                        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: "
                        "0b1c2d3e-0000-4000-8000-000000000000\r\nTimestamp: 2026-11-25 10:00:00Z"}

    def _verify_assertion(self, assertion: str, audience: str) -> str | None:
        """Why a client assertion is refused, or None when it is good."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        if self.certificate_der is None:
            return "no certificate is registered for the application"
        try:
            head, payload, signature = assertion.split(".")
            header = json.loads(_unb64url(head))
            claims = json.loads(_unb64url(payload))
        except ValueError:
            return "the client assertion is not a JWT"
        if header.get("alg") != "RS256":
            return "the client assertion is not signed RS256"
        if header.get("x5t") != _b64url(hashlib.sha1(self.certificate_der).digest()):  # noqa: S324
            return "the certificate thumbprint (x5t) is not registered"
        if header.get("x5t#S256") != _b64url(hashlib.sha256(self.certificate_der).digest()):
            return "the certificate thumbprint (x5t#S256) is not registered"
        public_key = x509.load_der_x509_certificate(self.certificate_der).public_key()
        try:
            public_key.verify(_unb64url(signature), f"{head}.{payload}".encode(),  # type: ignore[union-attr]
                              padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "the client assertion's signature does not verify"
        if claims.get("aud") != audience:
            return f"the assertion audience {claims.get('aud')!r} is not {audience!r}"
        if claims.get("iss") != CLIENT_ID or claims.get("sub") != CLIENT_ID:
            return "the assertion issuer and subject must be the client id"
        if not claims.get("nbf", 0) - 300 <= time.time() < claims.get("exp", 0):
            return "the client assertion is expired or not yet valid"
        return None

    def _token(self, tenant: str, form: dict[str, str], audience: str) -> tuple[int, dict[str, Any]]:
        if tenant not in (TENANT_ID, TENANT_DOMAIN):
            return self._aad_error(400, "invalid_request", "90002", f"Tenant '{tenant}' not found.")
        if form.get("client_id") != CLIENT_ID:
            return self._aad_error(400, "unauthorized_client", "700016",
                                   f"Application with identifier '{form.get('client_id')}' was not "
                                   "found in the directory.")
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if form.get("scope") != EXO_SCOPE:
                return self._aad_error(400, "invalid_scope", "1002012", "The provided value for "
                                       "scope is not valid.")
            if "client_secret" in form:
                if self.secret is None or form["client_secret"] != self.secret:
                    return self._aad_error(401, "invalid_client", "7000215",
                                           "Invalid client secret provided. Ensure the secret being "
                                           "sent in the request is the client secret value.")
                return self._token_reply()
            why = self._verify_assertion(form.get("client_assertion", ""), audience)
            if why is not None:
                return self._aad_error(401, "invalid_client", "700027", f"Client assertion failed "
                                       f"signature validation: {why}.")
            return self._token_reply()
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            if form.get("device_code") != self.device_code:
                return self._aad_error(400, "invalid_grant", "70000", "The device code is invalid.")
            with self._lock:
                self._polls += 1
                pending = self._polls <= self.device_polls
            if pending:
                return self._aad_error(400, "authorization_pending", "70016", "OAuth 2.0 device "
                                       "flow error. Authorization is pending.")
            return self._token_reply(delegated=True)
        if grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return self._aad_error(400, "invalid_grant", "700082", "The refresh token has expired.")
            return self._token_reply(delegated=True)
        return self._aad_error(400, "unsupported_grant_type", "70003", f"The grant {grant!r} is "
                               "not supported.")

    def _devicecode(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != CLIENT_ID:
            return self._aad_error(400, "unauthorized_client", "700016", "Unknown application.")
        self.device_code = "DAQABAAEAAAD--" + secrets.token_urlsafe(16)
        self._polls = 0
        return 200, {"user_code": "F7KQ2XHPL", "device_code": self.device_code,
                     "verification_uri": "https://microsoft.com/devicelogin", "expires_in": 900,
                     "interval": self.device_interval,
                     "message": "To sign in, use a web browser to open the page https://microsoft.com/"
                                "devicelogin and enter the code F7KQ2XHPL to authenticate."}

    # --- the admin API ---------------------------------------------------------------------

    def _results(self, cmdlet: str, parameters: dict[str, Any]) -> list[Any] | tuple[int, Any]:
        if cmdlet == "Get-TenantAllowBlockListItems":
            key = f"{cmdlet}-{parameters.get('ListType')}"
        else:
            key = cmdlet
        if key not in self.data:
            return 400, error_body("BadRequest", "System.Management.Automation.CommandNotFoundException",
                                   f"The term '{cmdlet}' is not recognized as a name of a cmdlet, "
                                   "function, script file, or executable program.")
        found = self.data[key]
        if cmdlet == "Get-InboxRule":
            mailbox = str(parameters.get("Mailbox"))
            if mailbox not in found:
                return 404, error_body(
                    "NotFound", "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
                    f"The operation couldn't be performed because object '{mailbox}' couldn't be "
                    "found on 'BL0PR01A05DC002.NAMPR18A005.PROD.OUTLOOK.COM'.")
            found = found[mailbox]
        return list(found)

    def _admin(self, handler: BaseHTTPRequestHandler, body: bytes) -> Answer:
        """One HTTP request to the admin API, after the configured latency."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            headers = {"Authorization": handler.headers.get("Authorization", ""),
                       "Host": handler.headers.get("Host", ""),
                       "Prefer": handler.headers.get("Prefer", "")}
            if _is_batch(urlsplit(handler.path).path):
                return self._batch(handler.path, headers, body)
            return self._invoke_now(handler.path, headers, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _batch(self, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """A $batch POST: each item answered as its own InvokeCommand."""
        with self._lock:
            fault = self.batch_faults.pop(0) if self.batch_faults else None
        if fault is not None:
            return fault.status, fault, fault.headers
        if self.batch_status is not None:
            return self.batch_status, {"error": {"code": "BadRequest",
                                                 "message": "The batch endpoint is not supported."}}, {}
        if headers["Authorization"].removeprefix("Bearer ") not in self.valid:
            return 401, None, {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}
        if urlsplit(target).path.split("/")[3] != TENANT_ID:
            return 400, {"error": {"code": "BadRequest", "message": "the tenant is unknown"}}, {}
        try:
            requests = json.loads(body)["requests"]
            assert isinstance(requests, list) and all(isinstance(r, dict) for r in requests)
        except (ValueError, KeyError, TypeError, AssertionError):
            return 400, {"error": {"code": "BadRequest", "message": "Invalid batch payload format."}}, {}
        if len(requests) > self.batch_limit:
            return 400, {"error": {"code": "BadRequest", "message": "Exceeded maximum number of "
                                   f"requests allowed in a batch ({self.batch_limit})."}}, {}
        continue_on_error = self.continue_on_error and "odata.continue-on-error" in headers["Prefer"]
        responses: list[dict[str, Any]] = []
        for request in requests:
            if self.item_latency:
                time.sleep(self.item_latency)
            status, reply, item_headers = self._batch_item(request, headers)
            if isinstance(reply, Fault):
                if reply.kind in ("drop", "truncate"):  # the whole answer is cut short
                    return 200, reply, {}
                status, reply = (403, None) if reply.kind == "nul403" else (status, reply.body)
            responses.append({"id": request.get("id"), "status": status, "headers": item_headers,
                              "body": reply})
            if status >= 400 and not continue_on_error:
                break  # OData: without continue-on-error the service stops at the first failure
        return 200, {"responses": responses}, {}

    def _batch_item(self, request: dict[str, Any], headers: dict[str, str]) -> Answer:
        target = urlsplit(str(request.get("url", "")))
        if request.get("method") != "POST" or not target.path.endswith("/InvokeCommand"):
            return 400, {"error": {"code": "BadRequest", "message": "only POST InvokeCommand"}}, {}
        with self._lock:
            queue = self.faults.get(str((request.get("body") or {}).get("CmdletInput", {})
                                        .get("CmdletName")), [])
            fault = queue[0] if queue and queue[0].kind == "sleep" else None
            if fault is not None:
                queue.pop(0)
        if fault is not None:  # a slow item makes the whole batch slow
            time.sleep(fault.seconds)
        path = target.path + (f"?{target.query}" if target.query else "")
        return self._invoke_now(path, headers, json.dumps(request.get("body")).encode())

    def _invoke_now(self, target: str, headers: dict[str, str], body: bytes) -> Answer:
        parts = urlsplit(target)
        tenant = parts.path.split("/")[3]
        token = headers["Authorization"].removeprefix("Bearer ")
        try:
            request = json.loads(body)
            cmdlet = request["CmdletInput"]["CmdletName"]
            parameters = request["CmdletInput"].get("Parameters") or {}
        except (ValueError, KeyError, TypeError):
            return 400, {"error": {"code": "BadRequest", "message": "The body is not a CmdletInput"}}, {}
        with self._lock:
            queue = self.faults.get(cmdlet) or []
            fault = queue.pop(0) if queue else None
        if fault is not None and fault.kind == "expire":
            self.expire_tokens()
        if token not in self.valid:
            return 401, None, {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}
        if tenant != TENANT_ID:
            return 400, {"error": {"code": "BadRequest", "message": f"tenant {tenant} is unknown"}}, {}
        if fault is not None and fault.kind != "expire":
            return fault.status, fault, fault.headers
        if cmdlet in self.denied:
            return 403, {"error": {"code": "Forbidden", "message": "Access denied"}}, {}
        results = self._results(cmdlet, parameters)
        if isinstance(results, tuple):
            return results[0], results[1], {}
        query = parse_qs(parts.query)
        skiptoken = query.get("$skiptoken", [None])[0]
        offset = 0
        if skiptoken is not None:
            if cmdlet in self.expired_pages:
                return 400, json.loads((SAMPLES / "_error_pagination_expired.json").read_text()), {}
            offset = int(_unb64url(unquote(skiptoken)).decode().split("|")[1])
        page = results[offset:offset + self.page_size]
        document: dict[str, Any] = {
            "@odata.context": f"https://outlook.office365.com/adminapi/beta/{TENANT_ID}/$metadata"
                              "#Collection(Exchange.GenericHashTable)",
            "adminapi.warnings@odata.type": "#Collection(String)", "@adminapi.warnings": []}
        following = offset + self.page_size
        if cmdlet in self.loop_pages and offset:
            following = offset  # the link of page 2 points at page 2 again
        if following < len(results):
            token_text = _b64url(f"{cmdlet}|{following}".encode())
            host = headers["Host"]
            document["@adminapi.warnings"] = [MORE_RESULTS]
            document["@odata.nextLink"] = (f"http://{host}/adminapi/beta/{TENANT_ID}/InvokeCommand"
                                           f"?%24skiptoken={token_text}")
        document["value"] = page
        return 200, document, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no delayed-ACK stall

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read ``fake.requests`` instead."""

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with fake._lock:
                    fake.requests.append(Recorded("POST", self.path, dict(self.headers.items()), body))
                path = urlsplit(self.path).path
                segments = path.strip("/").split("/")
                form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
                if path.endswith("/oauth2/v2.0/token"):
                    status, reply = fake._token(segments[0], form, f"{fake.url}{path}")
                    self._send(status, json.dumps(reply).encode())
                elif path.endswith("/oauth2/v2.0/devicecode"):
                    status, reply = fake._devicecode(segments[0], form)
                    self._send(status, json.dumps(reply).encode())
                elif path.startswith("/adminapi/beta/") and (path.endswith("/InvokeCommand")
                                                             or _is_batch(path)):
                    status, reply, headers = fake._admin(self, body)
                    self._answer(status, reply, headers)
                else:
                    self._send(404, b'{"error": {"code": "NotFound"}}')

            def _answer(self, status: int, reply: Any, headers: dict[str, str]) -> None:
                if isinstance(reply, Fault):
                    if reply.kind == "sleep":
                        time.sleep(reply.seconds)
                        self._send(200, b'{"value": []}')
                        return
                    if reply.kind == "drop":
                        self.close_connection = True
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n{\"val")
                        return
                    if reply.kind == "truncate":
                        self._send(200, b'{"@odata.context": "x", "value": [{"Name": "cut')
                        return
                    if reply.kind == "nul403":
                        self._send(403, b"\x00" * 64)
                        return
                    reply = reply.body
                data = b"" if reply is None else json.dumps(reply).encode()
                self._send(status, data, headers)

            def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; odata.metadata=minimal")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def _is_batch(path: str) -> bool:
    return unquote(path).startswith("/adminapi/beta/") and unquote(path).endswith("/$batch")


def self_signed(tmp: Path, name: str = "mailflow-auditor") -> tuple[Path, bytes]:
    """An RSA key and self-signed certificate in one PEM file (azure-identity's format)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    path = tmp / f"{name}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
    return path, cert.public_bytes(serialization.Encoding.DER)

