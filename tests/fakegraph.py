"""A fake Microsoft identity platform and Microsoft Graph on 127.0.0.1.

- ``POST /{tenant}/oauth2/v2.0/token``: client credentials with a client secret, for the scope
  ``https://graph.microsoft.com/.default`` only; Entra-shaped errors otherwise.
- ``GET /v1.0/servicePrincipals`` (``$filter=appId in (...)`` for the resource APIs),
  ``/v1.0/servicePrincipals/{id}/appRoleAssignedTo``, ``/v1.0/applications`` and
  ``/v1.0/oauth2PermissionGrants?$filter=resourceId eq '...'``: served from a data set (the demo
  tenant's Graph files by default) in pages linked by ``@odata.nextLink`` with ``$skiptoken``.

- Mailboxes (``mailboxes``: address -> :class:`GraphMailbox`): ``GET /v1.0/users/{id}/mailFolders/
  inbox/messageRules`` (paged), ``/users/{id}/mailFolders/inbox/messages`` (``$orderby``
  receivedDateTime desc, ``$top`` as the page size, only the ``$select``ed properties, as Graph
  does: internetMessageHeaders only when selected) and ``/users/{id}/mailFolders/{folder id}``;
  an unknown user answers 404 ErrorInvalidUser, a denied mail route 403 ErrorAccessDenied.

Faults per route (``resources``, ``servicePrincipals``, ``applications``, ``appRoleAssignedTo``,
``oauth2PermissionGrants``, ``messageRules``, ``messages``, ``mailFolders``; for a mail route also
``route:address``, for one mailbox): queued replies consumed one per request (``Fault.reply``,
``Fault.truncated``, ``Fault.slow``), ``denied`` routes answer 403, ``loop_pages`` routes link
page 2 back to itself, ``failing_pages`` routes fail from page 2 on; ``expire_tokens()`` makes
every token issued so far invalid.

One identity platform serves several resources: ``resources`` maps another scope (the Exchange
Online one, say) to the set of tokens that resource's fake accepts (``FakeExo.valid``), so one
authority signs in both the admin API and Graph, as Entra ID does.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from tests.loopback import LoopbackServer

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "contoso"
TENANT_ID = "62f746b4-84e6-4ceb-95bd-447e7184d454"
CLIENT_ID = "5d0e8a31-6c2f-4b7a-9e14-2f8b3c6d7a90"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MAIL_ROUTES = ("messageRules", "messages", "mailFolders")
KEYS = ("Graph-ServicePrincipals", "Graph-Applications", "Graph-ResourceAppRoles",
        "Graph-AppRoleAssignments", "Graph-DelegatedGrants")


def demo_graph() -> dict[str, list[Any]]:
    """The demo tenant's Graph objects by evidence key, as Graph would hold them (a secret's
    hint and text included, so that tests see the collector drop them)."""
    data = {key: json.loads((DEMO / f"{key}.json").read_text())["value"] for key in KEYS}
    for app in data["Graph-Applications"]:
        app["passwordCredentials"] = [{
            "customKeyIdentifier": None, "displayName": "bootstrap", "endDateTime": "2027-02-01T10:00:00Z",
            "hint": "Q~4", "keyId": "e2a4c6e8-a0c2-4e4a-c6e8-a0c2e4a6c8e0", "secretText": "Q~4-never-stored",
            "startDateTime": "2026-08-01T10:00:00Z"}]
    client = "c4d7e1a9-2b5f-4e8c-9a36-7f1d0b2e4c58"
    exo, graph = (sp["id"] for sp in data["Graph-ResourceAppRoles"])
    data["Graph-DelegatedGrants"] = [
        {"id": "grant-ews", "clientId": client, "consentType": "AllPrincipals", "principalId": None,
         "resourceId": exo, "scope": "EWS.AccessAsUser.All"},
        {"id": "grant-other", "clientId": client, "consentType": "AllPrincipals", "principalId": None,
         "resourceId": graph, "scope": "User.Read"},
    ]
    return data


@dataclass
class GraphMailbox:
    """One mailbox as Graph serves it: messageRule and message resources, folder names by id."""

    rules: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def reply(cls, status: int, body: Any = None, **headers: str) -> Fault:
        return cls(status, json.dumps(body).encode() if body is not None else b"", headers)

    @classmethod
    def throttle(cls, retry_after: str) -> Fault:
        return cls.reply(429, {"error": {"code": "TooManyRequests", "message": "Too many requests"}},
                         **{"Retry-After": retry_after})

    @classmethod
    def truncated(cls) -> Fault:
        return cls(200, b'{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#x", "value": [{"id"')

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls(status=0, delay=seconds)  # status 0: answer normally after the delay


class FakeGraph(LoopbackServer):
    """``with FakeGraph(secret="...") as fake:``; authority and Graph base URL are ``fake.url``."""

    def __init__(self, *, secret: str, data: dict[str, list[Any]] | None = None,
                 page_size: int = 2, mailboxes: dict[str, GraphMailbox] | None = None,
                 tenant_id: str = TENANT_ID, resources: dict[str, set[str]] | None = None) -> None:
        self.secret = secret
        self.data = demo_graph() if data is None else data
        self.page_size = page_size
        self.mailboxes = mailboxes or {}
        self.tenant_id = tenant_id
        self.resources = resources or {}
        self.faults: dict[str, list[Fault]] = {}
        self.denied: set[str] = set()
        self.loop_pages: set[str] = set()
        self.failing_pages: set[str] = set()
        self.requests: list[str] = []
        self.valid: set[str] = set()
        self.token_requests = 0
        self._lock = threading.Lock()
        self._serve(self._handler())

    @property
    def url(self) -> str:
        return self.base_url

    def expire_tokens(self) -> None:
        with self._lock:
            self.valid.clear()

    # --- tokens ------------------------------------------------------------------------------

    def _token(self, form: dict[str, str]) -> tuple[int, Any]:
        self.token_requests += 1
        scope = form.get("scope", "")
        if scope != GRAPH_SCOPE and scope not in self.resources:
            return 400, {"error": "invalid_scope", "error_description": "AADSTS1002012: scope"}
        if form.get("client_secret") != self.secret:
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: secret"}
        claims = {"aud": scope.removesuffix("/.default"), "tid": self.tenant_id,
                  "roles": ["Application.Read.All"], "exp": int(time.time()) + 3599}
        token = ".".join(base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in (
            b'{"alg":"RS256"}', json.dumps(claims).encode(), secrets.token_bytes(16)))
        with self._lock:
            self.resources.get(scope, self.valid).add(token)
        return 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": token}

    # --- Graph -------------------------------------------------------------------------------

    def _route(self, path: str, query: dict[str, str]) -> tuple[str, list[Any]] | None:
        parts = path.strip("/").split("/")
        if parts[:1] != ["v1.0"]:
            return None
        parts = parts[1:]
        flt = query.get("$filter", "")
        if parts == ["servicePrincipals"] and flt.startswith("appId in"):
            wanted = {v.strip(" '") for v in flt.split("(", 1)[1].rstrip(")").split(",")}
            return "resources", [sp for sp in self.data["Graph-ResourceAppRoles"] if sp["appId"] in wanted]
        if parts == ["servicePrincipals"]:
            return "servicePrincipals", self.data["Graph-ServicePrincipals"]
        if parts == ["applications"]:
            return "applications", self.data["Graph-Applications"]
        if len(parts) == 3 and parts[0] == "servicePrincipals" and parts[2] == "appRoleAssignedTo":
            return "appRoleAssignedTo", [a for a in self.data["Graph-AppRoleAssignments"]
                                         if a["resourceId"] == parts[1]]
        if parts == ["oauth2PermissionGrants"]:
            resource = flt.split("eq", 1)[1].strip(" '") if "eq" in flt else ""
            return "oauth2PermissionGrants", [g for g in self.data["Graph-DelegatedGrants"]
                                              if g["resourceId"] == resource]
        return None

    def _get(self, handler: BaseHTTPRequestHandler) -> tuple[int, bytes, dict[str, str], float]:
        split = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        auth = handler.headers.get("Authorization", "")
        with self._lock:
            self.requests.append(handler.path)
            known = auth.removeprefix("Bearer ") in self.valid
        if not known:
            return 401, graph_error("InvalidAuthenticationToken",
                               "Access token has expired or is not yet valid."), {}, 0
        parts = split.path.strip("/").split("/")
        if parts[:2] == ["v1.0", "users"] and len(parts) >= 5 and parts[3] == "mailFolders":
            return self._mail(unquote(parts[2]).lower(), parts[4:], query)
        found = self._route(split.path, query)
        if found is None:
            return 404, graph_error("Request_ResourceNotFound", "Resource not found."), {}, 0
        route, items = found
        return self._collection(route, items, split.path, query)

    def _fault(self, route: str, user: str = "") -> Fault | None:
        with self._lock:
            for key in (f"{route}:{user}", route):
                queued = self.faults.get(key)
                if queued:
                    return queued.pop(0)
        return None

    def _mail(self, user: str, parts: list[str], query: dict[str, str]
              ) -> tuple[int, bytes, dict[str, str], float]:
        """A mailbox route: the inbox's rules or messages, or one folder."""
        route = ("messageRules" if parts == ["inbox", "messageRules"] else
                 "messages" if parts == ["inbox", "messages"] else "mailFolders")
        fault = self._fault(route, user)
        if fault is not None and fault.status:
            return fault.status, fault.body, fault.headers, fault.delay
        delay = fault.delay if fault is not None else 0.0
        mailbox = self.mailboxes.get(user)
        if mailbox is None:
            return 404, graph_error("ErrorInvalidUser", f"The requested user '{user}' is invalid."), {}, delay
        if route in self.denied:
            return 403, graph_error("ErrorAccessDenied",
                               "Access is denied. Check credentials and try again."), {}, delay
        path = f"/v1.0/users/{user}/mailFolders/" + "/".join(parts)
        if route == "messageRules":
            return self._collection(route, mailbox.rules, path, query, delay=delay)
        if route == "messages":
            wanted = {f.strip() for f in query.get("$select", "").split(",") if f.strip()}
            ordered = sorted(mailbox.messages, key=lambda m: m["receivedDateTime"],
                             reverse=query.get("$orderby", "").endswith("desc"))
            shown = [{k: v for k, v in m.items() if k == "id" or not wanted or k in wanted} for m in ordered]
            size = int(query.get("$top", "10"))
            return self._collection(route, shown, path, query, delay=delay, page_size=size)
        if len(parts) != 1 or parts[0] not in mailbox.folders:
            return 404, graph_error("ErrorItemNotFound",
                               "The specified object was not found in the store."), {}, delay
        folder = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('{user}')/"
                                    "mailFolders(displayName)/$entity",
                  "id": parts[0], "displayName": mailbox.folders[parts[0]]}
        return 200, json.dumps(folder).encode(), {}, delay

    def _collection(self, route: str, items: list[Any], path: str, query: dict[str, str], *,
                    delay: float = 0.0, page_size: int | None = None
                    ) -> tuple[int, bytes, dict[str, str], float]:
        """One page of a collection, with the faults of its route (a mail route's are taken)."""
        size = page_size or self.page_size
        fault = None if route in MAIL_ROUTES else self._fault(route)
        if fault is not None:
            if fault.status:
                return fault.status, fault.body, fault.headers, fault.delay
            delay = fault.delay
        if route in self.denied:
            return 403, graph_error("Authorization_RequestDenied",
                               "Insufficient privileges to complete the operation."), {}, delay
        skip = int(query.pop("$skiptoken", "0"))
        if skip and route in self.failing_pages:
            return 500, graph_error("generalException", "General exception while processing."), {}, delay
        body: dict[str, Any] = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{route}",
                                "value": items[skip:skip + size]}
        if skip + size < len(items):
            following = skip if (route in self.loop_pages and skip) else skip + size
            body["@odata.nextLink"] = (f"{self.url}{path}?"
                                       f"{urlencode({**query, '$skiptoken': str(following)})}")
        return 200, json.dumps(body).encode(), {}, delay

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if not self.path.endswith("/oauth2/v2.0/token"):
                    self._send(404, graph_error("NotFound", "no such endpoint"), {})
                    return
                status, body = fake._token(form)
                self._send(status, json.dumps(body).encode(), {})

            def do_GET(self) -> None:
                status, data, headers, delay = fake._get(self)
                if delay:
                    time.sleep(delay)
                self._send(status, data, headers)

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def graph_error(code: str, message: str) -> bytes:
    """A Graph error body as Microsoft Graph writes it."""
    inner = {"request-id": "00000000-0000-0000-0000-000000000000"}
    return json.dumps({"error": {"code": code, "message": message, "innerError": inner}}).encode()
