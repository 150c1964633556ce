"""Graph app inventory collection against a local Graph that speaks the real endpoints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from auditor.evidence import SPECS, State, parse_evidence
from auditor.exo_rest import CmdletResult, RetryPolicy
from auditor.graph import GRAPH_SCOPE, GraphClient
from auditor.oauth import ClientSecretCredential
from auditor.snapshot import EXPORT_MANIFEST, import_export_folder
from tests.fakegraph import CLIENT_ID, TENANT_ID, FakeGraph, Fault

SECRET = "graph-CANARY-secret"
FAST = RetryPolicy(attempts=3, backoff=0.0, timeout=0.5, max_pages=50)


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    with FakeGraph(secret=SECRET) as server:
        yield server


def collect(fake: FakeGraph, policy: RetryPolicy = FAST) -> dict[str, CmdletResult]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def run() -> list[CmdletResult]:
        credential = ClientSecretCredential(TENANT_ID, CLIENT_ID, SECRET, authority=fake.url,
                                            scope=GRAPH_SCOPE, backoff=0.0)
        async with httpx.AsyncClient() as http:
            return await GraphClient(credential, http, base_url=fake.url, policy=policy,
                                     sleep=sleep).collect()

    results = {r.key: r for r in asyncio.run(run())}
    results["_waits"] = waits  # type: ignore[assignment]
    return results


def values(result: CmdletResult) -> list[dict[str, object]]:
    assert result.body is not None
    return json.loads(result.body)["value"]


def test_every_item_is_collected_across_pages_and_parses_as_its_evidence(fake: FakeGraph) -> None:
    results = collect(fake)
    for key in ("Graph-ServicePrincipals", "Graph-Applications", "Graph-ResourceAppRoles",
                "Graph-AppRoleAssignments", "Graph-DelegatedGrants"):
        assert results[key].state is State.OK, (key, results[key].reason)
        parsed = parse_evidence(SPECS[key], results[key].body or b"")
        assert parsed.state is State.OK and not parsed.rejected
    assert len(values(results["Graph-ServicePrincipals"])) == 5  # 3 pages of 2
    assert results["Graph-ServicePrincipals"].pages == 3
    assignments = values(results["Graph-AppRoleAssignments"])
    assert {a["principalDisplayName"] for a in assignments} == {
        "Mimecast Sync and Recover", "Contoso Mail-Flow Auditor", "Acme Email Archiver"}


def test_secret_text_and_hints_are_never_written(fake: FakeGraph) -> None:
    body = collect(fake)["Graph-Applications"].body or b""
    assert b"never-stored" not in body and b"hint" not in body and b"secretText" not in body
    secret = values(collect(fake)["Graph-Applications"])[0]["passwordCredentials"][0]
    assert set(secret) == {"keyId", "displayName", "startDateTime", "endDateTime"}


def test_only_delegated_grants_with_ews_access_are_kept(fake: FakeGraph) -> None:
    grants = values(collect(fake)["Graph-DelegatedGrants"])
    assert [g["scope"] for g in grants] == ["EWS.AccessAsUser.All"]


def test_throttling_waits_as_long_as_retry_after_says(fake: FakeGraph) -> None:
    fake.faults["applications"] = [Fault.throttle("1.5"), Fault.throttle("2")]
    results = collect(fake)
    assert results["Graph-Applications"].state is State.OK
    assert results["_waits"] == [1.5, 2.0]  # type: ignore[comparison-overlap]


def test_server_errors_are_retried_then_give_up_with_the_reason(fake: FakeGraph) -> None:
    fake.faults["applications"] = [Fault.reply(503), Fault.reply(500)]
    assert collect(fake)["Graph-Applications"].state is State.OK
    fake.faults["applications"] = [Fault.reply(500)] * 3
    failed = collect(fake)["Graph-Applications"]
    assert failed.state is State.ERROR and "gave up after 3 attempts: HTTP 500" in (failed.reason or "")
    assert failed.body is None


def test_a_timeout_and_a_truncated_answer_are_retried(fake: FakeGraph) -> None:
    fake.faults["servicePrincipals"] = [Fault.slow(1.0), Fault.truncated()]
    result = collect(fake)["Graph-ServicePrincipals"]
    assert result.state is State.OK and len(values(result)) == 5


def test_a_truncated_answer_every_time_is_an_error_not_an_empty_list(fake: FakeGraph) -> None:
    fake.faults["applications"] = [Fault.truncated()] * 3
    result = collect(fake)["Graph-Applications"]
    assert result.state is State.ERROR and "not valid JSON" in (result.reason or "")


def test_a_paging_link_that_loops_ends_partial_and_the_import_says_so(fake: FakeGraph,
                                                                      tmp_path: Path) -> None:
    fake.loop_pages.add("servicePrincipals")
    result = collect(fake)["Graph-ServicePrincipals"]
    assert result.state is State.PARTIAL and "paging loop" in (result.reason or "")
    assert len(values(result)) == 4  # pages 1 and 2, never page 2 twice more
    (tmp_path / "Graph-ServicePrincipals.json").write_bytes(result.body or b"")
    snapshot = import_export_folder(tmp_path)
    assert snapshot.evidence.get("Graph-ServicePrincipals").state is State.PARTIAL
    assert any(i.path == "graph/Graph-ServicePrincipals.json" for i in snapshot.items)


def test_the_page_bound_ends_partial(fake: FakeGraph) -> None:
    result = collect(fake, RetryPolicy(attempts=2, backoff=0, timeout=1, max_pages=2))[
        "Graph-ServicePrincipals"]
    assert result.state is State.PARTIAL and "bound of 2 pages" in (result.reason or "")


def test_a_later_page_that_fails_keeps_what_was_read_as_partial(fake: FakeGraph) -> None:
    fake.failing_pages.add("servicePrincipals")
    result = collect(fake)["Graph-ServicePrincipals"]
    assert result.state is State.PARTIAL and len(values(result)) == 2
    assert "page 2 could not be fetched" in (result.reason or "")


def test_a_token_expired_mid_run_is_renewed_once(fake: FakeGraph) -> None:
    original = fake._get

    def expire_then_answer(handler):  # type: ignore[no-untyped-def]
        if "applications" in handler.path and fake.token_requests == 1:
            fake.expire_tokens()
        return original(handler)

    fake._get = expire_then_answer  # type: ignore[method-assign]
    results = collect(fake)
    assert results["Graph-Applications"].state is State.OK
    assert fake.token_requests == 2


def test_403_is_denied_naming_the_graph_permission(fake: FakeGraph) -> None:
    fake.denied.add("applications")
    result = collect(fake)["Graph-Applications"]
    assert result.state is State.DENIED
    assert "Application.Read.All" in (result.reason or "")
    assert "Insufficient privileges" in (result.reason or "")


def test_assignments_are_missing_with_the_reason_when_the_resources_are_denied(fake: FakeGraph) -> None:
    fake.denied.add("resources")
    results = collect(fake)
    assert results["Graph-ResourceAppRoles"].state is State.DENIED
    assert results["Graph-AppRoleAssignments"].state is State.MISSING
    assert "resource service principals" in (results["Graph-AppRoleAssignments"].reason or "")


def test_a_denied_assignment_list_of_one_resource_denies_the_item(fake: FakeGraph) -> None:
    fake.denied.add("appRoleAssignedTo")
    assert collect(fake)["Graph-AppRoleAssignments"].state is State.DENIED


def test_a_refused_sign_in_is_an_error_for_every_item_not_a_crash(fake: FakeGraph) -> None:
    fake.secret = "another"
    results = collect(fake)
    assert {results[k].state for k in results if k != "_waits"} == {State.ERROR, State.MISSING}
    assert SECRET not in json.dumps([r.reason for k, r in results.items() if k != "_waits"])


def test_a_next_link_to_another_host_is_not_followed(fake: FakeGraph) -> None:
    fake.faults["applications"] = [Fault.reply(200, {
        "value": [{"id": "a"}], "@odata.nextLink": "https://evil.example/v1.0/applications?x=1"})]
    result = collect(fake)["Graph-Applications"]
    assert result.state is State.PARTIAL and "evil.example" in (result.reason or "")


def test_graph_evidence_in_an_export_folder_lands_in_the_graph_folder(tmp_path: Path) -> None:
    (tmp_path / "Graph-Applications.json").write_text('{"value": []}')
    (tmp_path / EXPORT_MANIFEST).write_text(json.dumps({
        "collected_at": "2026-11-20T09:00:00Z",
        "cmdlets": {"Graph-ServicePrincipals": {"status": "denied", "error": "403 Application.Read.All"}}}))
    snapshot = import_export_folder(tmp_path)
    assert snapshot.evidence.get("Graph-Applications").state is State.OK
    assert snapshot.evidence.get("Graph-ServicePrincipals").state is State.DENIED
