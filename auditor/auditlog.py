"""Live, read-only collection of the unified audit log's Exchange admin operations (CHG-001).

Microsoft Graph's audit log query API searches the unified audit log asynchronously:

1. ``POST /v1.0/security/auditLog/queries`` creates a query (a time window and the record type
   ``exchangeAdmin``). This is the only POST the tool ever sends to Graph: ``GraphClient``
   refuses any other (``auditor.graph.ensure_post_allowed``) before a request is made;
2. ``GET /v1.0/security/auditLog/queries/{id}`` is polled until the query has ``succeeded``
   (bounded by ``AuditPolicy.max_wait``);
3. ``GET /v1.0/security/auditLog/queries/{id}/records`` pages through the records (Graph's
   auditLogRecord: createdDateTime, operation, userPrincipalName, clientIp, auditData ...).

GETs, retries, 429 Retry-After, token renewal and the paging guard are auditor/graph.py's
(``GraphClient.fetch`` and ``GraphClient.list``); the POST goes through the same
``GraphClient.retrying``. The records
are written as ``Search-UnifiedAuditLog`` evidence (a Graph REST body, pages merged) after the
values of parameters whose names suggest secrets are redacted. Graph refusing the query (403)
makes the item ``denied``, naming the permission: AuditLogsQuery-Exchange.Read.All (or
AuditLogsQuery.Read.All).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx

from .evidence import State
from .exo_rest import CmdletResult, ItemStopped, RetryPolicy, parse_json_body
from .graph import QUERIES_PATH, GraphClient
from .models import redact_parameters
from .oauth import Credential
from .psjson import error_text

AUDIT_KEY = "Search-UnifiedAuditLog"
RECORD_TYPE = "exchangeAdmin"
AUDIT_PERMISSION = ("the Microsoft Graph application permission AuditLogsQuery-Exchange.Read.All "
                    "(or AuditLogsQuery.Read.All)")
RECORDS_PAGE = 1000


@dataclass(frozen=True)
class AuditPolicy:
    """The window searched and how long to wait for Microsoft's search to finish."""

    days: int = 30
    poll_interval: float = 10.0  # seconds between two looks at the query's status
    max_wait: float = 900.0  # the search is given up after this long (the item is an error)


def _window(now: datetime, days: int) -> tuple[str, str]:
    end = now.astimezone(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    return (start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z"))


def _redacted(body: bytes) -> tuple[bytes, int]:
    """The records body with secret parameter values redacted, and how many were."""
    document = json.loads(body)
    count = 0
    for record in document.get("value") or []:
        details = record.get("auditData") if isinstance(record, dict) else None
        if isinstance(details, dict) and "Parameters" in details:
            cleaned = redact_parameters(details["Parameters"])
            count += cleaned != details["Parameters"]
            details["Parameters"] = cleaned
    return json.dumps(document, indent=2, ensure_ascii=False).encode(), count


class AuditLogClient:
    """Runs one audit log query for Exchange admin operations through ``graph`` (its HTTP
    client, credential, host, retry policy and sleep); ``clock`` measures the wait."""

    def __init__(self, graph: GraphClient, *, policy: AuditPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.graph = graph
        self.policy = policy or AuditPolicy()
        self.clock = clock

    @property
    def source(self) -> str:
        return (f"Microsoft Graph audit log query (POST {QUERIES_PATH}, {RECORD_TYPE}, "
                f"{self.policy.days} days)")

    async def collect(self, *, now: datetime) -> CmdletResult:
        """The ``Search-UnifiedAuditLog`` item for the ``policy.days`` before ``now``; never
        raises for what Graph answers."""
        start = self.graph.requests
        try:
            query = await self._create(now)
            await self._wait(query)
        except ItemStopped as outcome:
            return CmdletResult(AUDIT_KEY, self.source, outcome.state, reason=outcome.reason,
                                requests=self.graph.requests - start)
        found = await self.graph.list(
            AUDIT_KEY, f"security/auditLog/queries/{quote(query, safe='')}/records?$top={RECORDS_PAGE}",
            permission=AUDIT_PERMISSION)
        found = replace(found, cmdlet=self.source, requests=self.graph.requests - start)
        if found.body is None:
            return found
        body, redacted = _redacted(found.body)
        notes = (f"{redacted} record(s) had secret parameter values redacted",) if redacted else ()
        return replace(found, body=body, warnings=found.warnings + notes)

    async def _create(self, now: datetime) -> str:
        """POST the query; its id. Retries like a Graph GET (429 Retry-After, 5xx, timeouts)."""
        url = f"{self.graph.base_url}{QUERIES_PATH}"
        start, end = _window(now, self.policy.days)
        body = {"displayName": f"mailflow-auditor ExchangeAdmin {start} to {end}",
                "filterStartDateTime": start, "filterEndDateTime": end,
                "recordTypeFilters": [RECORD_TYPE]}

        def refused(status: int, response: httpx.Response) -> ItemStopped:
            state = State.DENIED if status in (401, 403) else State.ERROR
            return ItemStopped(state, _refusal(status, response))

        return await self.graph.retrying("POST", url, json=body, ok=(200, 201), read=_query_id,
                                         refused=refused, gave_up="creating the audit log query: ")

    async def _wait(self, query: str) -> None:
        """Poll the query until it succeeded; an ItemStopped when it failed or took too long."""
        url = f"{self.graph.base_url}{QUERIES_PATH}/{quote(query, safe='')}"
        deadline = self.clock() + self.policy.max_wait
        while True:
            document = await self.graph.fetch(url, AUDIT_PERMISSION)
            status = str(document.get("status") or "").strip()
            if status.lower() == "succeeded":
                return
            if status.lower() in ("failed", "cancelled"):
                raise ItemStopped(State.ERROR, f"Microsoft's audit log search {status.lower()} "
                                            f"(query {query}); run collect again")
            if self.clock() >= deadline:
                raise ItemStopped(State.ERROR, f"the audit log query was still {status or 'pending'} "
                                            f"after {self.policy.max_wait:g} s; run collect again "
                                            "later, or export the audit log with the export script")
            await self.graph.sleep(self.policy.poll_interval)



def _query_id(response: httpx.Response) -> str:
    try:
        document = parse_json_body(response.content)
    except (ValueError, UnicodeDecodeError):
        raise ItemStopped(State.ERROR, "creating the audit log query: the answer was not JSON") from None
    query = document.get("id") if isinstance(document, dict) else None
    if not isinstance(query, str) or not query:
        raise ItemStopped(State.ERROR, "creating the audit log query: the answer holds no query id")
    return query


def _refusal(status: int, response: httpx.Response) -> str:
    try:
        document = parse_json_body(response.content)
    except (ValueError, UnicodeDecodeError):
        document = None
    text = error_text(document) if isinstance(document, dict) and "error" in document else ""
    needs = f"; the app needs {AUDIT_PERMISSION}" if status in (401, 403) else ""
    return f"creating the audit log query: HTTP {status}{': ' + text if text else ''}{needs}"


def not_collected(reason: str) -> CmdletResult:
    """The audit item when it is not collected at all (``--no-audit-log``, ``--no-graph``)."""
    return CmdletResult(AUDIT_KEY, "Microsoft Graph audit log query", State.MISSING, reason=reason)



async def collect_audit_log(credential: Credential, *, graph_api: str, policy: RetryPolicy,
                            days: int, now: datetime) -> CmdletResult:
    """``mailflow-audit collect``'s audit log item: ``days`` of Exchange admin operations before
    ``now``, with a Graph-scoped ``credential`` and the run's retry policy."""
    async with httpx.AsyncClient(timeout=policy.timeout) as http:
        graph = GraphClient(credential, http, base_url=graph_api, policy=policy)
        return await AuditLogClient(graph, policy=AuditPolicy(days=days)).collect(now=now)
