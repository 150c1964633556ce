"""Audit log collection against a local Graph audit log query API (real HTTP over loopback)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from auditor.auditlog import AUDIT_KEY, AuditLogClient, AuditPolicy
from auditor.errors import CmdletNotAllowedError
from auditor.evidence import SPECS, State, parse_evidence
from auditor.exo_rest import CmdletResult, RetryPolicy
from auditor.graph import GRAPH_SCOPE, QUERIES_PATH, GraphClient, ensure_post_allowed
from auditor.models import REDACTED, AdminOperation, UnifiedAuditRecord
from auditor.oauth import ClientSecretCredential
from tests.fakeauditlog import FakeAuditLog, audit_record
from tests.fakegraph import CLIENT_ID, TENANT_ID

SECRET = "audit-CANARY-secret"
FAST = RetryPolicy(attempts=3, backoff=0.0, timeout=2.0, max_pages=50)
NOW = datetime(2026, 11, 20, 9, 14, 3, tzinfo=UTC)
RECORDS = [
    audit_record(1, "New-TransportRule", {"Name": "Allow partner newsletters", "SetSCL": "-1"}),
    audit_record(2, "Set-InboundConnector", {"Identity": "Mimecast Inbound", "Enabled": "False"}),
    audit_record(3, "New-InboundConnector", {"Name": "Relay", "Certificate": "MIIC-CANARY-der"}),
]


@pytest.fixture
def fake() -> Iterator[FakeAuditLog]:
    with FakeAuditLog(secret=SECRET, records=RECORDS) as server:
        yield server


def collect(fake: FakeAuditLog, *, policy: AuditPolicy | None = None,
            retry: RetryPolicy = FAST) -> tuple[CmdletResult, list[float]]:
    """Run the client; sleeping only advances a clock (no test waits for real)."""
    waits: list[float] = []
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    async def run() -> CmdletResult:
        credential = ClientSecretCredential(TENANT_ID, CLIENT_ID, SECRET, authority=fake.url,
                                            scope=GRAPH_SCOPE, backoff=0.0)
        async with httpx.AsyncClient() as http:
            graph = GraphClient(credential, http, base_url=fake.url, policy=retry, sleep=sleep)
            client = AuditLogClient(graph, policy=policy or AuditPolicy(poll_interval=5.0),
                                    clock=lambda: clock[0])
            return await client.collect(now=NOW)

    return asyncio.run(run()), waits


def test_the_query_is_created_polled_and_every_record_page_read(fake: FakeAuditLog) -> None:
    found, waits = collect(fake)
    assert found.state is State.OK and found.objects == 3 and found.pages == 2
    body = json.loads(found.body or b"")
    assert [r["id"] for r in body["value"]] == ["rec-1", "rec-2", "rec-3"]
    (query,) = fake.queries.values()
    assert query.body == {"displayName": "mailflow-auditor ExchangeAdmin 2026-10-21T09:14:03Z to "
                                         "2026-11-20T09:14:03Z",
                          "filterStartDateTime": "2026-10-21T09:14:03Z",
                          "filterEndDateTime": "2026-11-20T09:14:03Z",
                          "recordTypeFilters": ["exchangeAdmin"]}
    assert waits == [5.0]  # one look while running, then succeeded
    assert [c for c in fake.calls if c[0] == "POST" and "token" not in c[1]] == [("POST", QUERIES_PATH)]


def test_what_it_writes_is_evidence_the_check_reads(fake: FakeAuditLog) -> None:
    found, _ = collect(fake)
    collection = parse_evidence(SPECS[AUDIT_KEY], found.body or b"")
    assert collection.state is State.OK and not collection.rejected
    operations = [r.admin_operation() for r in collection.items]
    assert all(isinstance(op, AdminOperation) for op in operations)
    assert isinstance(collection.items[0], UnifiedAuditRecord)


def test_secret_parameter_values_are_redacted_before_anything_is_written(fake: FakeAuditLog) -> None:
    found, _ = collect(fake)
    assert b"CANARY" not in (found.body or b"")
    assert REDACTED in (found.body or b"").decode()
    assert found.warnings == ("1 record(s) had secret parameter values redacted",)


def test_denied_names_the_permission_and_no_record_is_fetched(fake: FakeAuditLog) -> None:
    fake.audit.denied = True
    found, _ = collect(fake)
    assert found.state is State.DENIED
    assert "AuditLogsQuery-Exchange.Read.All" in (found.reason or "")
    assert "403" in (found.reason or "")
    assert not any(c[1].endswith("/records") for c in fake.calls)


def test_a_search_that_never_finishes_is_given_up_within_the_bound(fake: FakeAuditLog) -> None:
    fake.audit.final_status = "running"
    found, waits = collect(fake, policy=AuditPolicy(poll_interval=30.0, max_wait=120.0))
    assert found.state is State.ERROR and "still running after 120 s" in (found.reason or "")
    assert sum(waits) <= 120.0


def test_a_failed_search_is_an_error(fake: FakeAuditLog) -> None:
    fake.audit.final_status = "failed"
    found, _ = collect(fake)
    assert found.state is State.ERROR and "failed" in (found.reason or "")


def test_throttled_records_wait_for_retry_after(fake: FakeAuditLog) -> None:
    fake.audit.throttle_records = "7"
    found, waits = collect(fake)
    assert found.state is State.OK and found.objects == 3
    assert 7.0 in waits


def test_a_throttled_query_creation_waits_for_retry_after_and_creates_one_query(
        fake: FakeAuditLog) -> None:
    fake.audit.throttle_create = "4"
    found, waits = collect(fake)
    assert found.state is State.OK and waits[0] == 4.0
    assert len(fake.queries) == 1


def test_a_looping_records_link_is_partial_not_endless(fake: FakeAuditLog) -> None:
    fake.audit.records = [audit_record(i, "Set-TransportRule", {"Identity": f"r{i}"}) for i in range(6)]
    fake.audit.loop_records = True
    found, _ = collect(fake)
    assert found.state is State.PARTIAL and "paging loop" in (found.reason or "")


def test_an_empty_window_is_ok_with_no_records(fake: FakeAuditLog) -> None:
    fake.audit.records = []
    found, _ = collect(fake)
    assert found.state is State.OK and json.loads(found.body or b"")["value"] == []


@pytest.mark.parametrize("url", [
    "https://graph.microsoft.com/v1.0/security/auditLog/queries/q1",
    "https://graph.microsoft.com/v1.0/security/auditLog/queries/q1/cancel",
    "https://graph.microsoft.com/v1.0/users",
    "https://graph.microsoft.com/beta/security/auditLog/queries",
    "https://graph.microsoft.com/v1.0/security/auditLog/queries?$select=id",
    "https://evil.example/v1.0/security/auditLog/queries",
    "http://graph.microsoft.com/v1.0/security/auditLog/queries",
])
def test_no_other_post_is_ever_allowed(url: str) -> None:
    with pytest.raises(CmdletNotAllowedError, match="the only POST"):
        ensure_post_allowed("https://graph.microsoft.com", url)


def test_the_query_collection_is_the_one_post_allowed() -> None:
    ensure_post_allowed("https://graph.microsoft.com",
                        "https://graph.microsoft.com/v1.0/security/auditLog/queries")


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1.0/security/auditLog/queries/q1"),
                                              ("POST", "/v1.0/users"), ("PATCH", QUERIES_PATH),
                                              ("DELETE", "/v1.0/security/auditLog/queries/q1")])
def test_the_graph_client_refuses_any_other_write_before_sending_it(fake: FakeAuditLog, method: str,
                                                                    path: str) -> None:
    """The guard sits where every Graph request is made (GraphClient.retrying), not only in the
    audit log client that sends the one POST allowed."""

    async def attempt() -> int:
        credential = ClientSecretCredential(TENANT_ID, CLIENT_ID, SECRET, authority=fake.url,
                                            scope=GRAPH_SCOPE, backoff=0.0)
        async with httpx.AsyncClient() as http:
            graph = GraphClient(credential, http, base_url=fake.url, policy=FAST)
            with pytest.raises(CmdletNotAllowedError):
                await graph.retrying(method, f"{fake.url}{path}", ok=(200,), read=lambda r: r,
                                     refused=lambda s, r: AssertionError(s))  # type: ignore[arg-type,return-value]
            return graph.requests

    assert asyncio.run(attempt()) == 0
