"""A fake Microsoft Graph audit log query API on 127.0.0.1, beside FakeGraph's app inventory.

- ``POST /v1.0/security/auditLog/queries``: creates a query (201, status ``notStarted``) and
  records the body; ``denied`` answers 403 as Graph does without AuditLogsQuery permissions,
  ``throttle_create`` answers the first creation 429 with that Retry-After.
- ``GET /v1.0/security/auditLog/queries/{id}``: ``running`` for ``polls_before_done`` looks, then
  ``final_status`` (``succeeded`` by default; ``failed``, or ``running`` for ever).
- ``GET /v1.0/security/auditLog/queries/{id}/records``: the records in pages linked by
  ``@odata.nextLink`` (``$skiptoken``); ``throttle_records`` answers the first records request
  429 with that Retry-After; ``loop_records`` links page 2 back to itself.
- ``POST /{tenant}/oauth2/v2.0/token``: Graph-scoped tokens as FakeGraph issues them; any other
  scope is relayed over HTTP to ``exo_authority`` (a FakeExo), so that one authority host serves
  ``mailflow-audit collect``'s admin API and Graph sign-ins.

Every request is recorded as (method, path) in ``calls``.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakegraph import GRAPH_SCOPE, FakeGraph, graph_error

QUERIES = "/v1.0/security/auditLog/queries"
CLIENT_APP = "fb78d390-0c51-40cd-8e17-fdbfab77341b"  # Exchange Online PowerShell's app id


def audit_record(index: int, operation: str, parameters: dict[str, str], *,
                 when: str = "2026-11-12T10:15:00", user: str = "isaiah.langer@contoso.com",
                 ip: str = "192.0.2.44") -> dict[str, Any]:
    """One auditLogRecord as Graph returns it: auditData is the ExchangeAdmin schema's object."""
    identity = parameters.get("Identity") or parameters.get("Name") or ""
    return {
        "id": f"rec-{index}", "createdDateTime": f"{when}Z", "auditLogRecordType": "exchangeAdmin",
        "operation": operation, "organizationId": "62f746b4-84e6-4ceb-95bd-447e7184d454",
        "userType": "regular", "userId": user, "service": "Exchange", "objectId": identity,
        "userPrincipalName": user, "clientIp": ip, "administrativeUnits": [],
        "auditData": {
            "@odata.type": "#microsoft.graph.security.exchangeAdminAuditRecord",
            "CreationTime": when, "Id": f"rec-{index}", "Operation": operation, "RecordType": 1,
            "ResultStatus": "True", "UserId": user, "ClientIP": ip, "ObjectId": identity,
            "AppId": CLIENT_APP, "ExternalAccess": False,
            "Parameters": [{"Name": k, "Value": v} for k, v in parameters.items()],
        },
    }


@dataclass
class _Query:
    id: str
    body: dict[str, Any]
    polls: int = 0


@dataclass
class AuditState:
    records: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2
    polls_before_done: int = 1
    final_status: str = "succeeded"
    denied: bool = False
    throttle_records: str | None = None
    throttle_create: str | None = None
    loop_records: bool = False


class FakeAuditLog(FakeGraph):
    """``with FakeAuditLog(secret=..., records=[...]) as fake:``; Graph and authority at ``fake.url``."""

    def __init__(self, *, secret: str, records: list[dict[str, Any]] | None = None,
                 exo_authority: str | None = None, page_size: int = 2) -> None:
        self.audit = AuditState(records=list(records or []), page_size=page_size)
        self.exo_authority = exo_authority
        self.queries: dict[str, _Query] = {}
        self.calls: list[tuple[str, str]] = []
        self._audit_lock = threading.Lock()
        super().__init__(secret=secret)

    # --- the audit log query API ---------------------------------------------------------------

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        with self._lock:
            return handler.headers.get("Authorization", "").removeprefix("Bearer ") in self.valid

    def _create(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if not self._authorised(handler):
            return 401, graph_error("InvalidAuthenticationToken", "Access token is empty."), {}
        with self._audit_lock:
            throttle, self.audit.throttle_create = self.audit.throttle_create, None
        if throttle is not None:
            return 429, graph_error("TooManyRequests", "Too many requests"), {"Retry-After": throttle}
        if self.audit.denied:
            return 403, graph_error("Forbidden", "Missing role permissions on the request. API requires "
                                            "one of 'AuditLogsQuery.Read.All'."), {}
        request = json.loads(body)
        with self._audit_lock:
            query = _Query(id=f"q{len(self.queries) + 1}", body=request)
            self.queries[query.id] = query
        answer = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#security/auditLog/"
                                    "queries/$entity", "id": query.id, "status": "notStarted",
                  **{k: request.get(k) for k in ("displayName", "filterStartDateTime",
                                                 "filterEndDateTime", "recordTypeFilters")}}
        return 201, json.dumps(answer).encode(), {}

    def _audit_get(self, handler: BaseHTTPRequestHandler) -> tuple[int, bytes, dict[str, str]] | None:
        split = urlsplit(handler.path)
        if not split.path.startswith(QUERIES + "/"):
            return None
        if not self._authorised(handler):
            return 401, graph_error("InvalidAuthenticationToken", "Access token has expired."), {}
        parts = split.path.removeprefix(QUERIES + "/").split("/")
        query = self.queries.get(parts[0])
        if query is None:
            return 404, graph_error("ResourceNotFound", "Query not found."), {}
        if len(parts) == 1:
            with self._audit_lock:
                query.polls += 1
                status = "running" if query.polls <= self.audit.polls_before_done else self.audit.final_status
            return 200, json.dumps({"id": query.id, "status": status}).encode(), {}
        if parts[1:] != ["records"]:
            return 404, graph_error("ResourceNotFound", "No such navigation."), {}
        with self._audit_lock:
            throttle, self.audit.throttle_records = self.audit.throttle_records, None
        if throttle is not None:
            return 429, graph_error("TooManyRequests", "Too many requests"), {"Retry-After": throttle}
        query_args = {k: v[0] for k, v in parse_qs(split.query).items()}
        skip = int(query_args.pop("$skiptoken", "0"))
        size = self.audit.page_size
        page = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#security/auditLog/"
                                  f"queries('{query.id}')/records",
                "value": self.audit.records[skip:skip + size]}
        if skip + size < len(self.audit.records):
            following = skip if (self.audit.loop_records and skip) else skip + size
            link = urlencode({**query_args, "$skiptoken": following})
            page["@odata.nextLink"] = f"{self.url}{split.path}?{link}"
        return 200, json.dumps(page).encode(), {}

    # --- sign-in -------------------------------------------------------------------------------

    def _relay_token(self, path: str, form: dict[str, str]) -> tuple[int, bytes]:
        """A token for another scope, asked of the admin API's fake authority over HTTP."""
        if self.exo_authority is None:
            return 400, json.dumps({"error": "invalid_scope", "error_description": "scope"}).encode()
        request = urllib.request.Request(f"{self.exo_authority}{path}",  # noqa: S310 - loopback
                                         data=urlencode(form).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
                return answer.status, answer.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        graph = super()._handler()

        class Handler(graph):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                path = urlsplit(self.path).path
                with fake._audit_lock:
                    fake.calls.append(("POST", path))
                if path.endswith("/oauth2/v2.0/token"):
                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    if form.get("scope") == GRAPH_SCOPE:
                        status, answer = fake._token(form)
                        self._send(status, json.dumps(answer).encode(), {})
                    else:
                        self._send(*fake._relay_token(self.path, form), {})
                    return
                if path == QUERIES:
                    self._send(*fake._create(self, body))
                    return
                self._send(405, graph_error("MethodNotAllowed", "no POST here"), {})

            def do_GET(self) -> None:
                with fake._audit_lock:
                    fake.calls.append(("GET", urlsplit(self.path).path))
                answer = fake._audit_get(self)
                if answer is None:
                    super().do_GET()
                    return
                self._send(*answer)

        return Handler
