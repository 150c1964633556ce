"""The admin API client against a local fake that speaks the real protocol, faults included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from auditor.errors import CmdletNotAllowedError
from auditor.evidence import EXO_SPECS, SPECS, State, parse_evidence
from auditor.exo_rest import BATCH_SIZE, PLAN, CmdletCall, ExoClient, RetryPolicy, ensure_allowed
from auditor.oauth import ClientSecretCredential
from tests.fakeexo import (
    CLIENT_ID,
    SAMPLES,
    SYSTEM_MAILBOX,
    TENANT_DOMAIN,
    TENANT_ID,
    FakeExo,
    Fault,
    Recorded,
)

SECRET = "fake-secret-for-exo-tests"
FAST = RetryPolicy(attempts=5, backoff=0.01, timeout=2.0)


@pytest.fixture
def fake() -> Iterator[FakeExo]:
    with FakeExo(secret=SECRET) as server:
        yield server


class Sleeps:
    """Records the waits the client asks for, and waits for none of them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(fake: FakeExo, sleeps: Sleeps) -> AsyncIterator[ExoClient]:
    credential = ClientSecretCredential(TENANT_DOMAIN, CLIENT_ID, SECRET, authority=fake.url)
    async with httpx.AsyncClient() as http:
        yield ExoClient(TENANT_DOMAIN, credential, http, base_url=fake.url, policy=FAST, sleep=sleeps)


def values(body: bytes | None) -> list[Any]:
    assert body is not None
    return list(json.loads(body)["value"])


# --- the allowlist ----------------------------------------------------------------------


@pytest.mark.parametrize("cmdlet", ["Set-TransportRule", "New-InboxRule", "Remove-Mailbox",
                                    "Invoke-Expression", "Get-User", "Get-MessageTrace", "",
                                    "Get-TransportRule; Remove-Mailbox"])
def test_anything_but_a_catalogued_get_cmdlet_is_refused(cmdlet: str) -> None:
    with pytest.raises(CmdletNotAllowedError):
        ensure_allowed(cmdlet)


def test_the_plan_is_the_catalogue_and_only_get_cmdlets() -> None:
    assert [c.key for c in PLAN] == [s.key for s in EXO_SPECS]
    assert all(c.cmdlet.startswith("Get-") for c in PLAN)
    tabl = {c.key: c.parameters for c in PLAN if c.cmdlet == "Get-TenantAllowBlockListItems"}
    assert tabl == {f"Get-TenantAllowBlockListItems-{t}": {"ListType": t}
                    for t in ("Sender", "Url", "FileHash", "IP")}
    ensure_allowed("get-transportrule")  # PowerShell names are case-insensitive


async def test_a_refused_cmdlet_sends_nothing_at_all(fake: FakeExo, client: ExoClient) -> None:
    """Refused before any network I/O: not even a token is asked for."""
    with pytest.raises(CmdletNotAllowedError):
        await client.invoke("Set-OrganizationConfig", {"RejectDirectSend": False})
    with pytest.raises(CmdletNotAllowedError):
        await client.collect([*PLAN[:2], CmdletCall("Get-TransportRule", "Disable-TransportRule")])
    assert fake.requests == []


# --- the protocol -----------------------------------------------------------------------


async def test_a_request_looks_like_the_modules(fake: FakeExo, client: ExoClient) -> None:
    result = await client.invoke("Get-TransportRule", {"ResultSize": "Unlimited"})
    request = fake.invoke_requests()[0]
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert request.path == f"/adminapi/beta/{TENANT_ID}/InvokeCommand"  # the token's tid, not the domain
    assert headers["authorization"].startswith("Bearer ey")
    assert headers["x-anchormailbox"] == f"APP:{SYSTEM_MAILBOX}@{TENANT_ID}"
    assert headers["x-cmdletname"] == "Get-TransportRule"
    assert json.loads(request.body) == {"CmdletInput": {"CmdletName": "Get-TransportRule",
                                                        "Parameters": {"ResultSize": "Unlimited"}}}
    assert result.state is State.OK and result.objects == len(fake.data["Get-TransportRule"])


async def test_every_page_is_fetched_by_reposting_the_body(fake: FakeExo, client: ExoClient) -> None:
    fake.page_size = 3
    result = await client.invoke("Get-Mailbox", {"ResultSize": "Unlimited"})
    requests = fake.invoke_requests()
    assert result.state is State.OK and result.pages == 4 and len(requests) == 4
    assert values(result.body) == fake.data["Get-Mailbox"]
    assert {r.body for r in requests} == {requests[0].body}
    assert "%24skiptoken=" in requests[1].path
    document = json.loads(result.body or b"")
    assert "@odata.nextLink" not in document and document["@adminapi.warnings"] == []
    assert parse_evidence(SPECS["Get-Mailbox"], result.body or b"").state is State.OK


async def test_a_paging_link_that_loops_stops_with_the_item_partial(fake: FakeExo,
                                                                    client: ExoClient) -> None:
    fake.page_size, fake.loop_pages = 3, {"Get-Mailbox"}
    result = await client.invoke("Get-Mailbox")
    assert result.state is State.PARTIAL and "loop" in (result.reason or "")
    assert len(values(result.body)) == 6 and len(fake.invoke_requests()) == 2
    parsed = parse_evidence(SPECS["Get-Mailbox"], result.body or b"")
    assert parsed.state is State.PARTIAL  # the stored body says so on its own, too


async def test_the_page_bound_stops_with_the_item_partial(fake: FakeExo, client: ExoClient) -> None:
    fake.page_size = 2
    client.policy = RetryPolicy(backoff=0.01, max_pages=2)
    result = await client.invoke("Get-Mailbox")
    assert result.state is State.PARTIAL and "bound of 2 pages" in (result.reason or "")
    assert result.objects == 4


async def test_an_expired_continuation_keeps_the_first_page_marked_partial(
        fake: FakeExo, client: ExoClient) -> None:
    fake.page_size, fake.expired_pages = 4, {"Get-Mailbox"}
    result = await client.invoke("Get-Mailbox")
    assert result.state is State.PARTIAL and result.objects == 4
    assert "Expired or Invalid pagination request" in (result.reason or "")


# --- faults -----------------------------------------------------------------------------


async def test_429_waits_retry_after_including_fractions(fake: FakeExo, client: ExoClient,
                                                         sleeps: Sleeps) -> None:
    fake.faults["Get-AcceptedDomain"] = [Fault.throttle("0.25"), Fault.throttle("2")]
    result = await client.invoke("Get-AcceptedDomain")
    assert result.state is State.OK and sleeps.waits == [0.25, 2.0]


async def test_a_huge_retry_after_is_cut_to_the_bound(fake: FakeExo, client: ExoClient,
                                                      sleeps: Sleeps) -> None:
    fake.faults["Get-AcceptedDomain"] = [Fault.throttle("86400")]
    result = await client.invoke("Get-AcceptedDomain")
    assert result.state is State.OK and sleeps.waits == [FAST.max_retry_after]


async def test_5xx_backs_off_exponentially_then_succeeds(fake: FakeExo, client: ExoClient,
                                                         sleeps: Sleeps) -> None:
    fake.faults["Get-JournalRule"] = [Fault.reply(500), Fault.reply(503), Fault.reply(504)]
    result = await client.invoke("Get-JournalRule")
    assert result.state is State.OK and sleeps.waits == [0.01, 0.02, 0.04]


async def test_retries_are_bounded_and_end_in_error(fake: FakeExo, client: ExoClient) -> None:
    fake.faults["Get-JournalRule"] = [Fault.reply(503)] * 9
    result = await client.invoke("Get-JournalRule")
    assert result.state is State.ERROR and "5 attempts: HTTP 503" in (result.reason or "")
    assert len(fake.invoke_requests()) == 5 and result.body is None


async def test_a_timeout_is_retried(fake: FakeExo, client: ExoClient) -> None:
    client.policy = RetryPolicy(backoff=0.01, timeout=0.3)
    fake.faults["Get-RemoteDomain"] = [Fault("sleep", seconds=1.0)]
    result = await client.invoke("Get-RemoteDomain")
    assert result.state is State.OK and len(fake.invoke_requests()) == 2


async def test_truncated_json_and_a_dropped_connection_are_retried(fake: FakeExo,
                                                                   client: ExoClient) -> None:
    fake.faults["Get-RemoteDomain"] = [Fault("truncate"), Fault("drop")]
    result = await client.invoke("Get-RemoteDomain")
    assert result.state is State.OK and result.objects == len(fake.data["Get-RemoteDomain"])


async def test_json_that_stays_truncated_ends_in_error(fake: FakeExo, client: ExoClient) -> None:
    fake.faults["Get-RemoteDomain"] = [Fault("truncate")] * 5
    result = await client.invoke("Get-RemoteDomain")
    assert result.state is State.ERROR and "not valid JSON" in (result.reason or "")


async def test_a_token_expired_mid_run_is_renewed_once_and_the_request_retried(
        fake: FakeExo, client: ExoClient) -> None:
    await client.invoke("Get-AcceptedDomain")
    fake.faults["Get-TransportRule"] = [Fault("expire")]
    result = await client.invoke("Get-TransportRule")
    assert result.state is State.OK
    assert len(fake.token_requests()) == 2
    tokens = [r.headers["Authorization"] for r in fake.invoke_requests()]
    assert tokens[1] == tokens[0] and tokens[2] != tokens[1]


async def test_a_token_refused_again_after_renewal_is_denied(fake: FakeExo, client: ExoClient) -> None:
    fake.faults["Get-TransportRule"] = [Fault("expire"), Fault("expire")]
    result = await client.invoke("Get-TransportRule")
    assert result.state is State.DENIED and "401" in (result.reason or "")
    assert len(fake.token_requests()) == 2  # renewed once, never in a loop


async def test_a_failed_sign_in_mid_run_ends_only_that_item_in_error(fake: FakeExo,
                                                                    client: ExoClient) -> None:
    assert (await client.invoke("Get-AcceptedDomain")).state is State.OK
    fake.secret = "rotated-by-the-tenant-admin"
    fake.faults["Get-TransportRule"] = [Fault("expire")]
    result = await client.invoke("Get-TransportRule")
    assert result.state is State.ERROR and "signing in again failed" in (result.reason or "")
    assert "AADSTS7000215" in (result.reason or "") and SECRET not in (result.reason or "")


@pytest.mark.parametrize("fault", [Fault.reply(403, {"error": {"code": "Forbidden",
                                                               "message": "Access denied"}}),
                                   Fault("nul403")])
async def test_403_marks_the_item_denied_naming_the_missing_permission_and_role(
        fake: FakeExo, client: ExoClient, fault: Fault) -> None:
    fake.faults["Get-HostedContentFilterPolicy"] = [fault]
    result = await client.invoke("Get-HostedContentFilterPolicy")
    assert result.state is State.DENIED
    assert "Exchange.ManageAsApp" in (result.reason or "") and "Global Reader" in (result.reason or "")
    assert len(fake.invoke_requests()) == 1  # a 403 is never retried


async def test_a_not_found_error_body_marks_the_item_missing_with_its_text(
        fake: FakeExo, client: ExoClient) -> None:
    body = json.loads((SAMPLES / "_error_cmdlet_not_found_object.json").read_text())
    fake.faults["Get-JournalRule"] = [Fault.reply(404, body)]
    result = await client.invoke("Get-JournalRule")
    assert result.state is State.MISSING
    assert result.reason and result.reason.startswith("The operation couldn't be performed")


async def test_a_cmdlet_the_identity_cannot_see_is_denied(fake: FakeExo, client: ExoClient) -> None:
    del fake.data["Get-ApplicationAccessPolicy"]
    result = await client.invoke("Get-ApplicationAccessPolicy")
    assert result.state is State.DENIED and "not recognized" in (result.reason or "")


async def test_a_regional_redirect_is_followed_with_the_token_resent(fake: FakeExo,
                                                                     client: ExoClient) -> None:
    target = f"{fake.url}/adminapi/beta/{TENANT_ID}/InvokeCommand?region=emea"
    fake.faults["Get-OrganizationConfig"] = [Fault.reply(302, None, Location=target)]
    result = await client.invoke("Get-OrganizationConfig")
    requests = fake.invoke_requests()
    assert result.state is State.OK and requests[1].path.endswith("?region=emea")
    assert requests[1].headers["Authorization"] == requests[0].headers["Authorization"]


async def test_a_redirect_to_a_foreign_host_is_not_followed(fake: FakeExo, client: ExoClient) -> None:
    fake.faults["Get-OrganizationConfig"] = [
        Fault.reply(302, None, Location="https://collector.example.net/steal")]
    result = await client.invoke("Get-OrganizationConfig")
    assert result.state is State.ERROR and "not a Microsoft host" in (result.reason or "")
    assert len(fake.invoke_requests()) == 1


# --- the whole catalogue ----------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 5])
async def test_collection_runs_cmdlets_concurrently_within_the_bound(fake: FakeExo, client: ExoClient,
                                                                     batch_size: int) -> None:
    fake.latency = 0.05
    results = await client.collect(concurrency=3, batch_size=batch_size)
    assert fake.max_in_flight == 3
    assert [r.key for r in results] == [s.key for s in EXO_SPECS]


async def test_nothing_is_lost_each_item_is_collected_or_says_why_not(fake: FakeExo,
                                                                      client: ExoClient) -> None:
    fake.page_size = 4
    fake.data.pop("Get-TenantAllowBlockListSpoofItems", None)  # a cmdlet this identity cannot see
    fake.denied = {"Get-HostedOutboundSpamFilterPolicy"}
    fake.loop_pages = {"Get-Mailbox"}
    fake.faults["Get-JournalRule"] = [Fault.reply(500)] * 5
    fake.faults["Get-TransportRule"] = [Fault.throttle("0.1"), Fault("truncate"), Fault("expire")]
    results = {r.key: r for r in await client.collect(concurrency=3)}
    assert set(results) == {s.key for s in EXO_SPECS}
    for result in results.values():
        assert result.state is State.OK or result.reason, result.key
    assert results["Get-HostedOutboundSpamFilterPolicy"].state is State.DENIED
    assert results["Get-Mailbox"].state is State.PARTIAL
    assert results["Get-JournalRule"].state is State.ERROR
    assert results["Get-TransportRule"].state is State.OK
    assert results["Get-TenantAllowBlockListSpoofItems"].state is State.DENIED
    inbox = results["Get-InboxRule"]
    assert inbox.state is State.PARTIAL and "only the mailboxes" in (inbox.reason or "")


async def test_inbox_rules_are_read_per_mailbox_and_merged(fake: FakeExo, client: ExoClient) -> None:
    results = {r.key: r for r in await client.collect(concurrency=3)}
    rules = values(results["Get-InboxRule"].body)
    expected = [r for owner in fake.data["Get-InboxRule"].values() for r in owner]
    assert sorted(r["Name"] for r in rules) == sorted(r["Name"] for r in expected)
    asked = [parameters for cmdlet, parameters in fake.cmdlet_calls() if cmdlet == "Get-InboxRule"]
    assert sorted(p["Mailbox"] for p in asked) == sorted(fake.data["Get-InboxRule"])


async def test_a_mailbox_that_vanished_is_a_warning_not_a_failure(fake: FakeExo,
                                                                  client: ExoClient) -> None:
    gone = next(iter(fake.data["Get-InboxRule"]))
    del fake.data["Get-InboxRule"][gone]
    inbox = (await client.collect())[[s.key for s in EXO_SPECS].index("Get-InboxRule")]
    assert inbox.state is State.OK and any(gone in w for w in inbox.warnings)


@pytest.mark.parametrize("batch_size", [1, 3])
async def test_inbox_rules_denied_stop_asking_and_say_which_role_is_needed(
        fake: FakeExo, client: ExoClient, batch_size: int) -> None:
    fake.denied = {"Get-InboxRule"}
    results = {r.key: r for r in await client.collect(concurrency=1, batch_size=batch_size)}
    inbox = results["Get-InboxRule"]
    assert inbox.state is State.DENIED and "Global Reader" in (inbox.reason or "")
    asked = [r for r in fake.invoke_requests() if b"Get-InboxRule" in r.body]
    assert len(asked) == 1  # one single call, or one batch of 3 of the 10 mailboxes
    assert results["Get-Mailbox"].state is State.OK


async def test_inbox_rules_can_be_switched_off(fake: FakeExo, client: ExoClient) -> None:
    results = {r.key: r for r in await client.collect(inbox_rules=False)}
    assert results["Get-InboxRule"].state is State.MISSING
    assert not [r for r in fake.invoke_requests() if b"Get-InboxRule" in r.body]


# --- $batch -----------------------------------------------------------------------------


def calls_of(fake: FakeExo, cmdlet: str) -> int:
    return sum(1 for name, _ in fake.cmdlet_calls() if name == cmdlet)


def batch_items(recorded: Recorded) -> list[dict[str, Any]]:
    return list(json.loads(recorded.body)["requests"])


FIVE = PLAN[:5]  # TransportRule, InboundConnector, OutboundConnector, AcceptedDomain, RemoteDomain


async def test_independent_calls_go_in_batches_shaped_like_the_sample(fake: FakeExo,
                                                                     client: ExoClient) -> None:
    results = await client.collect()
    assert all(r.state is State.OK for r in results), [(r.key, r.reason) for r in results]
    batches = fake.batch_requests()
    assert batches and not fake.single_requests()  # Get-Mailbox fits one page: nothing single
    top_level = -(-(len(PLAN) - 1) // 10)  # every cmdlet but Get-InboxRule, 10 per POST
    assert top_level == 3
    assert len(fake.invoke_requests()) == top_level + 1  # the 10 mailboxes' inbox rules in 1
    first = batches[0]
    assert first.path == f"/adminapi/beta/{TENANT_ID}/$batch"
    assert "odata.continue-on-error" in first.headers["Prefer"]
    sample = json.loads((SAMPLES / "_request_batch.json").read_text())["body"]["requests"][0]
    item = batch_items(first)[0]
    assert set(item) == set(sample) and item["method"] == "POST" and item["id"] == "1"
    assert item["url"].endswith(f"/adminapi/beta/{TENANT_ID}/InvokeCommand")
    assert item["headers"]["X-AnchorMailbox"] == f"APP:{SYSTEM_MAILBOX}@{TENANT_ID}"
    assert item["headers"]["X-CmdletName"] == item["body"]["CmdletInput"]["CmdletName"]
    assert all(len(batch_items(b)) <= BATCH_SIZE for b in batches)
    assert sorted(c for c, _ in fake.cmdlet_calls()) == sorted(
        [c.cmdlet for c in PLAN if c.cmdlet != "Get-InboxRule"] + ["Get-InboxRule"] * 10)


async def test_a_refused_cmdlet_among_batched_calls_sends_nothing_at_all(fake: FakeExo,
                                                                        client: ExoClient) -> None:
    """Every item is checked against the allowlist before the first byte goes out."""
    with pytest.raises(CmdletNotAllowedError):
        await client.invoke_many([*PLAN[:9], CmdletCall("Get-TransportRule", "Remove-TransportRule")])
    with pytest.raises(CmdletNotAllowedError):
        await client.invoke_many([*FIVE, CmdletCall("x", "Get-TransportRule; Remove-Mailbox")],
                                 batch_size=20)
    assert fake.requests == []


async def test_a_throttled_item_alone_is_asked_again_after_its_retry_after(
        fake: FakeExo, client: ExoClient, sleeps: Sleeps) -> None:
    fake.faults["Get-AcceptedDomain"] = [Fault.throttle("0.25"), Fault.throttle("2")]
    results = await client.invoke_many(FIVE)
    assert [r.state for r in results] == [State.OK] * 5 and sleeps.waits == [0.25, 2.0]
    retried = fake.batch_requests()[1:]
    assert [[i["body"]["CmdletInput"]["CmdletName"] for i in batch_items(b)] for b in retried] == [
        ["Get-AcceptedDomain"], ["Get-AcceptedDomain"]]
    assert results[3].objects == len(fake.data["Get-AcceptedDomain"]) and results[3].requests == 3


async def test_item_statuses_end_only_their_own_items_as_single_calls_would(
        fake: FakeExo, client: ExoClient, sleeps: Sleeps) -> None:
    not_found = json.loads((SAMPLES / "_error_cmdlet_not_found_object.json").read_text())
    fake.denied = {"Get-InboundConnector"}
    fake.faults["Get-OutboundConnector"] = [Fault("nul403")]
    fake.faults["Get-AcceptedDomain"] = [Fault.reply(404, not_found)]
    fake.faults["Get-RemoteDomain"] = [Fault.reply(500)] * 9
    fake.faults["Get-TransportRule"] = [Fault.reply(200, {"value": "not a list"})]
    results = {r.key: r for r in await client.invoke_many(FIVE)}
    assert results["Get-InboundConnector"].state is State.DENIED
    assert "Exchange.ManageAsApp" in (results["Get-OutboundConnector"].reason or "")
    assert results["Get-AcceptedDomain"].state is State.MISSING
    assert (results["Get-AcceptedDomain"].reason or "").startswith("The operation couldn't be performed")
    assert results["Get-RemoteDomain"].state is State.ERROR
    assert "5 attempts: HTTP 500" in (results["Get-RemoteDomain"].reason or "")
    assert results["Get-TransportRule"].state is State.ERROR
    assert sleeps.waits == [0.01, 0.02, 0.04, 0.08]
    assert calls_of(fake, "Get-RemoteDomain") == 5
    assert calls_of(fake, "Get-InboundConnector") == calls_of(fake, "Get-OutboundConnector") == 1


async def test_a_whole_batch_5xx_timeout_or_cut_answer_is_retried_for_every_item(
        fake: FakeExo, client: ExoClient, sleeps: Sleeps) -> None:
    client.policy = RetryPolicy(backoff=0.01, timeout=0.5)
    fake.batch_faults = [Fault.reply(503), Fault("drop"), Fault("truncate")]
    fake.faults["Get-RemoteDomain"] = [Fault("sleep", seconds=1.0)]
    results = await client.invoke_many(FIVE)
    assert [r.state for r in results] == [State.OK] * 5
    assert [len(batch_items(b)) for b in fake.batch_requests()] == [5, 5, 5, 5, 5]
    assert sleeps.waits == [0.01, 0.02, 0.04, 0.08]  # 503, dropped, truncated, timed out


async def test_whole_batch_failures_are_bounded_like_single_calls(fake: FakeExo,
                                                                  client: ExoClient) -> None:
    fake.batch_faults = [Fault.throttle("0")] * 9
    results = await client.invoke_many(FIVE)
    assert {r.state for r in results} == {State.ERROR}
    assert all("5 attempts: throttled (429)" in (r.reason or "") for r in results)
    assert len(fake.batch_requests()) == 5


async def test_an_expired_token_inside_a_batch_is_renewed_once(fake: FakeExo, client: ExoClient) -> None:
    fake.faults["Get-OutboundConnector"] = [Fault("expire")]
    results = await client.invoke_many(FIVE)
    assert [r.state for r in results] == [State.OK] * 5
    assert len(fake.token_requests()) == 2
    assert [len(batch_items(b)) for b in fake.batch_requests()] == [5, 3]  # 2 were answered first


async def test_items_left_unanswered_are_asked_again(fake: FakeExo, client: ExoClient) -> None:
    """A service that stops at the first failure (no continue-on-error) leaves the rest out."""
    fake.faults["Get-InboundConnector"] = [Fault.reply(503)]
    fake.continue_on_error = False  # the client asks for it; this service ignores it
    results = await client.invoke_many(FIVE)
    assert [r.state for r in results] == [State.OK] * 5
    assert "odata.continue-on-error" in fake.batch_requests()[0].headers["Prefer"]
    assert [len(batch_items(b)) for b in fake.batch_requests()] == [5, 4]


async def test_an_item_with_a_next_link_continues_with_single_calls(fake: FakeExo,
                                                                   client: ExoClient) -> None:
    fake.page_size = 3
    mailbox, domains = await client.invoke_many([PLAN[17], PLAN[4]])
    assert mailbox.key == "Get-Mailbox" and mailbox.state is State.OK and mailbox.pages == 4
    assert values(mailbox.body) == fake.data["Get-Mailbox"]
    assert domains.key == "Get-RemoteDomain" and domains.state is State.OK and domains.objects == 1
    singles = fake.single_requests()
    assert len(fake.batch_requests()) == 1 and len(singles) == 3
    assert all("%24skiptoken=" in r.path for r in singles)
    assert {json.loads(r.body)["CmdletInput"]["CmdletName"] for r in singles} == {"Get-Mailbox"}


async def test_a_redirected_item_is_asked_again_as_a_single_call(fake: FakeExo,
                                                                client: ExoClient) -> None:
    target = f"{fake.url}/adminapi/beta/{TENANT_ID}/InvokeCommand?region=emea"
    fake.faults["Get-AcceptedDomain"] = [Fault.reply(302, None, Location=target)] * 2
    results = await client.invoke_many(FIVE)
    assert [r.state for r in results] == [State.OK] * 5
    assert [r.path.endswith("?region=emea") for r in fake.single_requests()] == [False, True]


@pytest.mark.parametrize("status", [400, 403, 404, 405])
async def test_a_refused_batch_endpoint_falls_back_to_single_calls(fake: FakeExo, client: ExoClient,
                                                                   status: int) -> None:
    fake.batch_status = status
    results = await client.collect(concurrency=3)
    assert all(r.state is State.OK for r in results), [(r.key, r.reason) for r in results]
    batches = fake.batch_requests()
    assert len(batches) == 3  # the three sent at once; the mailboxes' calls never go in a batch
    assert not [b for b in batches if b"Get-InboxRule" in b.body]
    assert "refused $batch" in (client.batch_refused or "")
    assert sorted(c for c, _ in fake.cmdlet_calls()) == sorted(
        [c.cmdlet for c in PLAN if c.cmdlet != "Get-InboxRule"] * 2 + ["Get-InboxRule"] * 10)


async def test_a_batch_over_the_services_bound_falls_back_to_single_calls(fake: FakeExo,
                                                                        client: ExoClient) -> None:
    fake.batch_limit = 5
    results = await client.invoke_many(PLAN[:8], batch_size=8)
    assert [r.state for r in results] == [State.OK] * 8
    assert "Exceeded maximum number of requests" in (client.batch_refused or "")
    assert len(fake.single_requests()) == 8


def many_mailboxes(fake: FakeExo, count: int) -> list[str]:
    """The demo's mailboxes (and their rules) repeated up to ``count``; the new owner ids."""
    template, rules = fake.data["Get-Mailbox"], fake.data["Get-InboxRule"]
    boxes, by_owner = [], {}
    for index in range(count):
        source = template[index % len(template)]
        owner = f"{index:08d}-0000-4000-8000-000000000000"
        boxes.append({**source, "ExternalDirectoryObjectId": owner})
        by_owner[owner] = [{**r, "MailboxOwnerId": owner}
                           for r in rules.get(source["ExternalDirectoryObjectId"], [])]
    fake.data["Get-Mailbox"], fake.data["Get-InboxRule"] = boxes, by_owner
    return list(by_owner)


async def test_nothing_is_lost_across_many_batches_of_mailboxes(fake: FakeExo, client: ExoClient) -> None:
    owners = many_mailboxes(fake, 47)
    fake.page_size = 20  # Get-Mailbox: 3 pages, 2 of them single calls
    del fake.data["Get-InboxRule"][owners[5]]  # vanished between the two cmdlets
    fake.faults["Get-InboxRule"] = [Fault.throttle("0"), Fault.reply(502), Fault("expire")]
    fake.batch_faults = [Fault.reply(500)]
    results = {r.key: r for r in await client.collect(concurrency=3)}
    assert all(r.state is State.OK for r in results.values()), [(r.key, r.reason) for r in
                                                                 results.values()]
    inbox = results["Get-InboxRule"]
    rules = values(inbox.body)
    assert {r["MailboxOwnerId"] for r in rules} <= set(owners)
    assert len(rules) == sum(len(r) for r in fake.data["Get-InboxRule"].values())
    assert any(owners[5] in w for w in inbox.warnings)
    assert all(len(batch_items(b)) <= BATCH_SIZE for b in fake.batch_requests())
    asked = sorted(p["Mailbox"] for c, p in fake.cmdlet_calls() if c == "Get-InboxRule")
    assert set(asked) == set(owners) and len(asked) > len(owners)  # the faulted ones twice


async def test_a_failed_sign_in_inside_a_batch_ends_only_the_refused_items(fake: FakeExo,
                                                                          client: ExoClient) -> None:
    assert (await client.invoke("Get-JournalRule")).state is State.OK
    fake.secret = "rotated-by-the-tenant-admin"
    fake.faults["Get-OutboundConnector"] = [Fault("expire")]  # the 3rd item on: 401
    results = await client.invoke_many(FIVE)
    assert [r.state for r in results] == [State.OK] * 2 + [State.ERROR] * 3
    assert all("signing in again failed" in (r.reason or "") for r in results[2:])
