"""Mailbox evidence through Microsoft Graph (auditor.graph_mailbox) and the choice between EWS and
Graph (auditor.mailbox.collect_mailbox_evidence), against the local Graph and EWS fakes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor.evidence import SPECS, State, parse_evidence
from auditor.exo_rest import CmdletResult
from auditor.graph import GRAPH_SCOPE
from auditor.graph_mailbox import GraphMailboxCollector
from auditor.mailbox import (
    HEADERS_KEY,
    RULES_KEY,
    MailboxApiChoice,
    MailboxCollector,
    MailboxPolicy,
    collect_mailbox_evidence,
)
from auditor.oauth import ClientSecretCredential
from tests.auditor.test_mailbox import ADELE, ALEX, StubCredential, tenant
from tests.conftest import accepted, audit, findings_for
from tests.fakeews import FakeEws, Message
from tests.fakegraph import CLIENT_ID, TENANT_ID, FakeGraph, Fault, GraphMailbox

SECRET = "graph-mailbox-CANARY-secret"
SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "exo-samples"
DROP = {"emailAddress": {"name": "drop", "address": "drop@attacker.example"}}


def graph_message(message: Message) -> dict[str, Any]:
    """A fake-EWS message as Graph holds it (subject included, so that tests see it dropped)."""
    return {"id": message.item_id, "subject": "Invoice 4471 - secret subject",
            "internetMessageId": message.internet_message_id, "receivedDateTime": message.received,
            "sender": {"emailAddress": {"name": message.sender, "address": message.sender}},
            "internetMessageHeaders": [{"name": n, "value": v} for n, v in message.headers]}


def graph_tenant() -> dict[str, GraphMailbox]:
    """The EWS tests' tenant (tests/auditor/test_mailbox.py) as Graph serves it."""
    ews = tenant()
    redirect = {"id": "AQAAAAAAAAE=", "displayName": ".", "sequence": 1, "isEnabled": True, "hasError": False,
                "isReadOnly": False, "conditions": {"bodyOrSubjectContains": ["invoice", "payment"]},
                "actions": {"moveToFolder": "AAMkRSS", "redirectTo": [DROP], "markAsRead": True,
                            "stopProcessingRules": True}}
    filing = {"id": "AQAAAAAAAAI=", "displayName": "Newsletters", "sequence": 2, "isEnabled": True,
              "hasError": False, "conditions": {"senderContains": ["news"]},
              "actions": {"moveToFolder": "AAMkDEL"}}
    return {
        ALEX: GraphMailbox(rules=[redirect], messages=[graph_message(m) for m in ews[ALEX].messages],
                           folders=dict(ews[ALEX].folders)),
        ADELE: GraphMailbox(rules=[filing], folders=dict(ews[ADELE].folders)),
    }


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph(secret=SECRET, mailboxes=graph_tenant()) as server:
        yield server


def credential(fake: FakeGraph) -> ClientSecretCredential:
    return ClientSecretCredential(TENANT_ID, CLIENT_ID, SECRET, authority=fake.url, scope=GRAPH_SCOPE,
                                  backoff=0.0)


def collect(fake: FakeGraph, addresses: list[str],
            **policy: Any) -> tuple[dict[str, CmdletResult], list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def run() -> list[CmdletResult]:
        async with httpx.AsyncClient() as http:
            return await GraphMailboxCollector(credential(fake), http, base_url=fake.url, sleep=sleep,
                                               policy=MailboxPolicy(**{"timeout": 2.0, **policy})
                                               ).collect(addresses)

    return {r.key: r for r in asyncio.run(run())}, waits


def body(result: CmdletResult) -> dict[str, Any]:
    assert result.body is not None
    return json.loads(result.body)


def rows_of(result: CmdletResult, mailbox: str) -> list[dict[str, Any]]:
    return [r for r in body(result)["value"] if r.get("Mailbox", r.get("MailboxOwnerId")) == mailbox]


def test_graph_writes_the_rows_ews_writes_for_the_same_mailboxes(graph: FakeGraph) -> None:
    """Checks read either file without knowing the API: the rows must be the same."""
    from tests.auditor.test_mailbox import collect as collect_over_ews

    over_graph, _ = collect(graph, [ALEX, ADELE])
    with FakeEws(tenant()) as ews:
        over_ews, _ = collect_over_ews(ews, [ALEX, ADELE])
    for key in (RULES_KEY, HEADERS_KEY):
        assert over_graph[key].state is State.OK, over_graph[key].reason
        graph_rows, ews_rows = body(over_graph[key])["value"], body(over_ews[key])["value"]
        # EWS's IsNotSupported has no Graph counterpart; the API differs by design
        differ = {"SupportedByTask", "CollectedThrough"}
        assert [{k: v for k, v in r.items() if k not in differ} for r in ews_rows] == [
            {k: v for k, v in r.items() if k not in differ} for r in graph_rows]
        assert {r["CollectedThrough"] for r in graph_rows} == {"graph"}
        assert body(over_graph[key])["api"] == "graph"
        parsed = parse_evidence(SPECS[key], over_graph[key].body or b"")
        assert parsed.state is State.OK and not parsed.rejected
    assert "secret subject" not in (over_graph[HEADERS_KEY].body or b"").decode()


def test_the_message_selection_is_the_newest_of_the_inbox_with_only_the_headers_selected(
        graph: FakeGraph) -> None:
    results, _ = collect(graph, [ALEX], rules=False, messages_per_mailbox=1)
    assert [r["InternetMessageId"] for r in rows_of(results[HEADERS_KEY], ALEX)] == [
        "<2.192.0.2.77@fabrikam.com>"]
    request = next(r for r in graph.requests if "/messages?" in r)
    assert "orderby=receivedDateTime%20desc" in request and "top=1" in request
    assert "internetMessageHeaders" in request and "subject" not in request and "body" not in request


def test_the_reference_sample_maps_to_get_inboxrule_names(graph: FakeGraph) -> None:
    sample = json.loads((SAMPLES / "graph_messageRules.json").read_text())["value"]
    graph.mailboxes[ALEX].rules = sample
    results, _ = collect(graph, [ALEX], headers=False)
    [row] = rows_of(results[RULES_KEY], ALEX)
    assert (row["Name"], row["SubjectContainsWords"], row["RedirectTo"], row["MarkAsRead"]) == (
        ".", ["invoice", "payment"], ['"drop@attacker.example" [SMTP:drop@attacker.example]'], True)


def test_message_rules_are_read_across_pages(graph: FakeGraph) -> None:
    rules = [{"id": f"r{i}", "displayName": f"Rule {i}", "sequence": i, "isEnabled": True,
              "conditions": {}, "actions": {"forwardTo": [DROP]}} for i in range(5)]
    graph.mailboxes[ADELE].rules = rules
    results, _ = collect(graph, [ADELE], headers=False)
    assert [r["Name"] for r in rows_of(results[RULES_KEY], ADELE)] == [f"Rule {i}" for i in range(5)]
    assert sum("messageRules" in r for r in graph.requests) == 3  # pages of 2, 2 and 1


def test_a_paging_loop_fails_the_mailbox_instead_of_shortening_its_rules(graph: FakeGraph) -> None:
    graph.mailboxes[ADELE].rules = [{"id": f"r{i}", "displayName": f"Rule {i}"} for i in range(5)]
    graph.loop_pages = {"messageRules"}
    results, _ = collect(graph, [ALEX, ADELE], headers=False)
    rules = results[RULES_KEY]
    assert rules.state is State.PARTIAL
    [failed] = rows_of(rules, ADELE)
    assert failed["CollectionState"] == "error" and "paging loop" in failed["CollectionError"]


def test_a_403_names_the_permission_missing_and_the_other_item_is_still_read(graph: FakeGraph) -> None:
    graph.denied = {"messageRules"}
    results, _ = collect(graph, [ALEX, ADELE])
    rules, headers = results[RULES_KEY], results[HEADERS_KEY]
    assert rules.state is State.DENIED
    assert "403" in (rules.reason or "") and "MailboxSettings.Read" in (rules.reason or "")
    assert "Access is denied" in (rules.reason or "")
    assert headers.state is State.OK


def test_headers_denied_name_mail_read(graph: FakeGraph) -> None:
    graph.denied = {"messages"}
    results, _ = collect(graph, [ALEX], rules=False)
    assert results[HEADERS_KEY].state is State.DENIED and "Mail.Read" in (results[HEADERS_KEY].reason or "")


def test_naming_a_rule_folder_needs_mail_read_and_fails_only_that_mailbox(graph: FakeGraph) -> None:
    graph.faults["mailFolders:" + ALEX] = [Fault.reply(403, {"error": {"code": "ErrorAccessDenied",
                                                                        "message": "Access is denied."}})]
    results, _ = collect(graph, [ALEX, ADELE], headers=False)
    [failed] = rows_of(results[RULES_KEY], ALEX)
    assert failed["CollectionState"] == "denied"
    assert "Mail.ReadBasic.All or Mail.Read" in failed["CollectionError"]
    assert [r["MoveToFolder"] for r in rows_of(results[RULES_KEY], ADELE)] == ["Deleted Items"]


def test_a_mailbox_whose_rules_call_fails_is_listed_and_the_others_are_still_collected(
        graph: FakeGraph) -> None:
    graph.faults["messageRules:" + ALEX] = [Fault.reply(500, {"error": {"code": "generalException"}})] * 5
    results, waits = collect(graph, [ALEX, ADELE], headers=False, attempts=3, backoff=0.5)
    rules = results[RULES_KEY]
    assert rules.state is State.PARTIAL and "1 of 2 mailboxes could not be read" in (rules.reason or "")
    [failed] = rows_of(rules, ALEX)
    assert failed["CollectionState"] == "error" and "after 3 attempts: HTTP 500" in failed["CollectionError"]
    assert [r["Name"] for r in rows_of(rules, ADELE)] == ["Newsletters"]
    assert waits == [0.5, 1.0]


def test_throttling_waits_as_long_as_retry_after_says(graph: FakeGraph) -> None:
    graph.faults["messages"] = [Fault.throttle("1.5"), Fault.throttle("2")]
    results, waits = collect(graph, [ALEX], rules=False)
    assert results[HEADERS_KEY].state is State.OK and waits == [1.5, 2.0]


def test_an_unknown_mailbox_is_missing_and_an_empty_one_says_so(graph: FakeGraph) -> None:
    results, _ = collect(graph, [ADELE, "gone@contoso.com"], rules=False)
    summary = {m["Mailbox"]: m for m in body(results[HEADERS_KEY])["mailboxes"]}
    assert summary["gone@contoso.com"]["State"] == "missing"
    gone = summary["gone@contoso.com"]["Reason"]
    assert "HTTP 404: The requested user 'gone@contoso.com' is invalid." in gone
    assert rows_of(results[HEADERS_KEY], ADELE) == [{"Mailbox": ADELE, "CollectionState": "empty",
                                                     "CollectionError": "the inbox holds no messages",
                                                     "CollectedThrough": "graph"}]


def test_graph_read_rules_feed_mbx002_with_the_hidden_rules_note(graph: FakeGraph, make_export: Any) -> None:
    results, _ = collect(graph, [ALEX, ADELE])
    folder = make_export({"Get-AcceptedDomain": accepted("contoso.com"), "Get-InboxRule": {"value": []},
                          RULES_KEY: body(results[RULES_KEY]), HEADERS_KEY: body(results[HEADERS_KEY])})
    report = audit(folder, gateway="mimecast")
    [flagged] = [f for f in findings_for(report, "MBX-002") if f.status.value == "fail"]
    assert flagged.resource == f"inbox rule '.' of mailbox {ALEX}"
    assert "hidden inbox rules" in flagged.message and "-IncludeHidden" in flagged.message
    mail = [f for f in findings_for(report, "MAIL-001") if f.status.value == "fail"]
    assert [f.resource for f in mail] == [f"message <2.192.0.2.77@fabrikam.com> in mailbox {ALEX}"]


# --- which API -------------------------------------------------------------------------------------

def org_config(**values: Any) -> bytes:
    return json.dumps({"value": [{"Identity": "contoso.onmicrosoft.com", **values}]}).encode()


def choose(ews: FakeEws, graph: FakeGraph, requested: str = "auto",
           config: bytes | None = None) -> tuple[MailboxApiChoice | None, dict[str, CmdletResult]]:
    async def sleep(seconds: float) -> None:
        return None

    async def run() -> tuple[MailboxApiChoice | None, list[CmdletResult]]:
        policy = MailboxPolicy(timeout=2.0, backoff=0.0)
        async with httpx.AsyncClient() as http:
            over_ews = MailboxCollector(StubCredential("contoso.onmicrosoft.com", CLIENT_ID), http,
                                        ews_url=ews.url, policy=policy, sleep=sleep)
            over_graph = GraphMailboxCollector(credential(graph), http, base_url=graph.url, policy=policy,
                                               sleep=sleep)
            return await collect_mailbox_evidence(requested, over_ews, over_graph, [ALEX, ADELE], config,
                                                  CLIENT_ID)

    choice, results = asyncio.run(run())
    return choice, {r.key: r for r in results}


@pytest.fixture
def ews() -> Iterator[FakeEws]:
    with FakeEws(tenant()) as server:
        yield server


def test_auto_uses_ews_where_the_tenant_allows_it(ews: FakeEws, graph: FakeGraph) -> None:
    choice, results = choose(ews, graph, config=org_config(EwsEnabled=True, EwsAllowedAppIDs=[CLIENT_ID]))
    assert choice is not None and choice.api == "ews"
    assert choice.line.startswith("mailbox evidence through EWS: auto: EWS answered")
    assert body(results[RULES_KEY])["api"] == "ews" and graph.requests == []


@pytest.mark.parametrize(("mode", "said"), [("forbidden", "HTTP 403 Forbidden from EWS"),
                                        ("access-denied", "ErrorAccessDenied")])
def test_auto_falls_back_to_graph_when_ews_is_blocked(ews: FakeEws, graph: FakeGraph, mode: str,
                                                      said: str) -> None:
    ews.blocked = mode
    choice, results = choose(ews, graph)
    assert choice is not None and choice.api == "graph"
    assert choice.line.startswith("mailbox evidence through Microsoft Graph: auto: EWS did not serve")
    assert said in choice.line
    assert len(ews.operations("GetInboxRules")) == 1  # one probe, then no more EWS
    assert results[RULES_KEY].state is State.OK and body(results[RULES_KEY])["api"] == "graph"


def test_one_mailbox_ews_cannot_impersonate_does_not_turn_auto_away_from_ews(
        ews: FakeEws, graph: FakeGraph) -> None:
    ews.denied = {ADELE, ALEX}  # ErrorImpersonateUserDenied: that mailbox's scope, not EWS being off
    choice, _ = choose(ews, graph)
    assert choice is not None and choice.api == "ews"


@pytest.mark.parametrize(("config", "why"), [
    (org_config(EwsEnabled=False), "EwsEnabled False"),
    (org_config(EwsEnabled="True", EwsAllowedAppIDs=["00000000-0000-0000-0000-00000000a11e"]),
     f"this app ({CLIENT_ID}) is not in Get-OrganizationConfig's EwsAllowedAppIDs"),
])
def test_auto_goes_straight_to_graph_when_the_organisation_config_refuses_ews(
        ews: FakeEws, graph: FakeGraph, config: bytes, why: str) -> None:
    choice, _ = choose(ews, graph, config=config)
    assert choice is not None and choice.api == "graph" and why in choice.why
    assert ews.requests == []


def test_an_explicit_api_is_used_without_probing(ews: FakeEws, graph: FakeGraph) -> None:
    choice, results = choose(ews, graph, requested="graph")
    assert choice == MailboxApiChoice("graph", "--mailbox-api graph") and ews.requests == []
    ews.blocked = "forbidden"
    choice, results = choose(ews, graph, requested="ews")  # asked for: no fallback, the refusal recorded
    assert choice is not None and choice.api == "ews"
    assert results[RULES_KEY].state is State.DENIED and "1 October 2026" in (results[RULES_KEY].reason or "")


def test_no_mailbox_or_no_mailbox_evidence_chooses_nothing(ews: FakeEws, graph: FakeGraph) -> None:
    async def run(addresses: list[str], on: bool) -> tuple[MailboxApiChoice | None, list[CmdletResult]]:
        policy = MailboxPolicy(rules=on, headers=on)
        async with httpx.AsyncClient() as http:
            over_ews = MailboxCollector(StubCredential("contoso.onmicrosoft.com", CLIENT_ID), http,
                                        ews_url=ews.url, policy=policy)
            return await collect_mailbox_evidence("auto", over_ews, None, addresses, None, CLIENT_ID)

    for addresses, on, why in (([], True, "no mailbox address"), ([ALEX], False, "--mailboxes")):
        choice, results = asyncio.run(run(addresses, on))
        assert choice is None and all(r.state is State.MISSING and why in (r.reason or "") for r in results)
    assert ews.requests == [] and graph.requests == []
