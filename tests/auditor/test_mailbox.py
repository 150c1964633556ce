"""Mailbox evidence over EWS (auditor.mailbox) against a local EWS SOAP endpoint, with faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor.evidence import State
from auditor.exo_rest import CmdletResult
from auditor.mailbox import HEADERS_KEY, RULES_KEY, MailboxCollector, MailboxPolicy, sample
from auditor.oauth import AccessToken, Credential
from tests.conftest import accepted, audit, findings_for
from tests.fakeews import FakeEws, Fault, MailboxData, Message, Rule, address, strings

ALEX = "alex.wilber@contoso.com"
ADELE = "adele.vance@contoso.com"
MIMECAST_HOP = ("from us-smtp-delivery-1.mimecast.com (205.139.110.30) by "
                "BL0PEPF00012345.mail.protection.outlook.com (10.167.16.20) with Microsoft SMTP Server "
                "(version=TLS1_3) id 15.20.8000.10 via Frontend Transport; Thu, 20 Aug 2026 09:59:57 +0000")
DIRECT_HOP = ("from mail.attacker.example (192.0.2.77) by BL0PEPF00012345.mail.protection.outlook.com "
              "(10.167.16.20) with Microsoft SMTP Server id 15.20.8000.10; Fri, 21 Aug 2026 07:00:01 +0000")


class StubCredential(Credential):
    """Hands out ews-token-1, ews-token-2, ... (what the fake EWS accepts)."""

    kind = "stub"

    async def _acquire(self, http: httpx.AsyncClient, previous: AccessToken | None) -> AccessToken:
        return AccessToken(f"ews-token-{self.requests + 1}-{self._count()}", time.monotonic() + 3600)

    def _count(self) -> int:
        self.requests += 1
        return self.requests


def inbox(ip: str, hop: str, index: int, *extra: tuple[str, str]) -> Message:
    return Message(
        item_id=f"AAMkAGI2-{ip}-{index}", internet_message_id=f"<{index}.{ip}@fabrikam.com>",
        received=f"2026-08-2{index}T09:59:58Z", sender="billing@fabrikam.com",
        headers=(("Received", hop), ("Subject", "Invoice 4471 - secret subject"),
                 ("X-Forefront-Antispam-Report", f"CIP:{ip};CTRY:US;SCL:1;SFV:NSPM;DIR:INB;"),
                 ("Authentication-Results", "spf=pass smtp.mailfrom=fabrikam.com"),
                 ("X-MS-Exchange-Organization-AuthAs", "Anonymous"), *extra))


def tenant() -> dict[str, MailboxData]:
    redirect = Rule("AQAAAAAAAAE=", ".", 1, conditions=strings("ContainsSubjectOrBodyStrings",
                                                               ["invoice", "payment"]),
                    actions=('<t:MoveToFolder><t:FolderId Id="AAMkRSS" ChangeKey="AQAAAA=="/>'
                             "</t:MoveToFolder>"
                             "<t:RedirectToRecipients>" + address("drop", "drop@attacker.example")
                             + "</t:RedirectToRecipients><t:MarkAsRead>true</t:MarkAsRead>"
                             "<t:StopProcessingRules>true</t:StopProcessingRules>"))
    filing = Rule("AQAAAAAAAAI=", "Newsletters", 2, conditions=strings("ContainsSenderStrings", ["news"]),
                  actions='<t:MoveToFolder><t:FolderId Id="AAMkDEL" ChangeKey="AQAAAA=="/></t:MoveToFolder>')
    return {
        ALEX: MailboxData(rules=[redirect],
                          messages=[inbox("205.139.110.30", MIMECAST_HOP, 1, ("X-MC-Unique", "abc123")),
                                    inbox("192.0.2.77", DIRECT_HOP, 2)],
                          folders={"AAMkRSS": "RSS Subscriptions"}),
        ADELE: MailboxData(rules=[filing], messages=[], folders={"AAMkDEL": "Deleted Items"}),
    }


@pytest.fixture
def ews() -> Iterator[FakeEws]:
    with FakeEws(tenant()) as server:
        yield server


def collect(ews: FakeEws, addresses: list[str], **policy: Any) -> tuple[dict[str, CmdletResult], list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def run() -> list[CmdletResult]:
        async with httpx.AsyncClient() as http:
            collector = MailboxCollector(StubCredential("contoso.onmicrosoft.com", "client"), http,
                                         ews_url=ews.url, sleep=sleep,
                                         policy=MailboxPolicy(**{"timeout": 2.0, **policy}))
            return await collector.collect(addresses)

    return {r.key: r for r in asyncio.run(run())}, waits


def body(result: CmdletResult) -> dict[str, Any]:
    assert result.body is not None
    return json.loads(result.body)


def test_rules_are_stored_with_get_inboxrule_names_and_headers_without_content(ews: FakeEws) -> None:
    results, _ = collect(ews, [ALEX, ADELE])
    rules, headers = results[RULES_KEY], results[HEADERS_KEY]
    assert (rules.state, headers.state) == (State.OK, State.OK)
    by_name = {r["Name"]: r for r in body(rules)["value"]}
    assert by_name["."]["RedirectTo"] == ['"drop" [SMTP:drop@attacker.example]']
    assert by_name["."]["MoveToFolder"] == "RSS Subscriptions"  # resolved with GetFolder
    assert by_name["."]["SubjectOrBodyContainsWords"] == ["invoice", "payment"]
    assert by_name["Newsletters"]["MoveToFolder"] == "Deleted Items"
    assert by_name["Newsletters"]["MailboxOwnerId"] == ADELE
    assert {r["CollectedThrough"] for r in body(rules)["value"]} == {"ews"} and body(rules)["api"] == "ews"
    rows = body(headers)["value"]
    assert [r["InternetMessageId"] for r in rows if r["Mailbox"] == ALEX] == [
        "<2.192.0.2.77@fabrikam.com>", "<1.205.139.110.30@fabrikam.com>"]  # newest first
    assert {"Mailbox": ADELE, "CollectionState": "empty", "CollectionError": "the inbox holds no messages",
            "CollectedThrough": "ews"} in rows
    assert "secret subject" not in headers.body.decode() and "Invoice" not in headers.body.decode()
    gateway = next(r for r in rows if r.get("InternetMessageId") == "<1.205.139.110.30@fabrikam.com>")
    assert "X-MC-Unique" in gateway["HeaderNames"] and gateway["Received"] == [MIMECAST_HOP]
    assert gateway["AntispamReport"].startswith("CIP:205.139.110.30;")
    assert {r.operation for r in ews.requests} == {"GetInboxRules", "GetFolder", "FindItem", "GetItem"}
    assert all(r.mailbox in (ALEX, ADELE) for r in ews.requests)  # impersonation header on each


def test_messages_per_mailbox_bounds_the_find(ews: FakeEws) -> None:
    results, _ = collect(ews, [ALEX], messages_per_mailbox=1, rules=False)
    assert results[RULES_KEY].state is State.MISSING and "--mailboxes" in (results[RULES_KEY].reason or "")
    assert [r["InternetMessageId"] for r in body(results[HEADERS_KEY])["value"]] == [
        "<2.192.0.2.77@fabrikam.com>"]


def test_server_busy_waits_the_back_off_it_asks_for_within_bounds(ews: FakeEws) -> None:
    ews.faults["GetInboxRules"] = [Fault("busy", back_off_ms=1500), Fault("busy", back_off_ms=900_000)]
    results, waits = collect(ews, [ALEX], headers=False, max_server_backoff=30.0)
    assert results[RULES_KEY].state is State.OK
    assert waits == [1.5, 30.0]


def test_5xx_truncated_xml_and_a_timeout_are_retried(ews: FakeEws) -> None:
    ews.faults["GetInboxRules"] = [Fault("status", status=503), Fault("truncate"), Fault("sleep", seconds=3)]
    results, waits = collect(ews, [ALEX], headers=False, timeout=1.0, backoff=0.5)
    assert results[RULES_KEY].state is State.OK, results[RULES_KEY].reason
    assert waits == [0.5, 1.0, 2.0]
    assert len(ews.operations("GetInboxRules")) == 4


def test_retries_are_bounded_and_the_mailbox_is_marked_with_why(ews: FakeEws) -> None:
    ews.faults[f"GetInboxRules:{ALEX}"] = [Fault("status", status=500)] * 5
    results, _ = collect(ews, [ALEX, ADELE], headers=False, attempts=3)
    rules = results[RULES_KEY]
    assert rules.state is State.PARTIAL and "1 of 2 mailboxes could not be read" in (rules.reason or "")
    failed = [r for r in body(rules)["value"] if r.get("CollectionState")]
    assert failed == [{"Mailbox": ALEX, "CollectionState": "error",
                       "CollectionError": failed[0]["CollectionError"], "CollectedThrough": "ews"}]
    assert "after 3 attempts" in failed[0]["CollectionError"]


def test_a_token_refused_mid_run_is_renewed_once(ews: FakeEws) -> None:
    ews.faults["FindItem"] = [Fault("expire")]
    results, _ = collect(ews, [ALEX], rules=False)
    assert results[HEADERS_KEY].state is State.OK
    tokens = [r.token for r in ews.requests]
    assert len(set(tokens)) == 2 and tokens[0] != tokens[-1]


def test_impersonation_refused_and_unknown_mailboxes_are_denied_and_missing(ews: FakeEws) -> None:
    ews.denied = {ADELE}
    results, _ = collect(ews, [ALEX, ADELE, "gone@contoso.com"], headers=False)
    summary = {m["Mailbox"]: m for m in body(results[RULES_KEY])["mailboxes"]}
    assert summary[ALEX]["State"] == "ok"
    assert summary[ADELE]["State"] == "denied"
    assert "ErrorImpersonateUserDenied" in summary[ADELE]["Reason"]
    assert "full_access_as_app" in summary[ADELE]["Reason"] and "EwsEnabled" in summary[ADELE]["Reason"]
    assert summary["gone@contoso.com"]["State"] == "missing"
    assert results[RULES_KEY].state is State.PARTIAL


def test_ews_blocked_for_the_tenant_denies_the_item_and_says_why(ews: FakeEws) -> None:
    ews.faults["GetInboxRules"] = [Fault("forbidden")] * 2
    results, _ = collect(ews, [ALEX, ADELE], headers=False)
    rules = results[RULES_KEY]
    assert rules.state is State.DENIED
    assert "403" in (rules.reason or "") and "1 October 2026" in (rules.reason or "")


def test_a_sample_is_stable_and_spread() -> None:
    addresses = [f"user{i}@contoso.com" for i in range(50)]
    chosen = sample(addresses, 5)
    assert len(chosen) == 5 and chosen == sample(list(reversed(addresses)), 5)
    assert chosen != sorted(addresses)[:5]
    assert sample(addresses, None) == sorted(addresses)


def test_collected_rules_and_headers_feed_mbx002_and_mail001(ews: FakeEws, make_export: Any,
                                                             tmp_path: Path) -> None:
    results, _ = collect(ews, [ALEX, ADELE])
    folder = make_export({"Get-AcceptedDomain": accepted("contoso.com"),
                          "Get-InboxRule": {"value": []},
                          RULES_KEY: body(results[RULES_KEY]), HEADERS_KEY: body(results[HEADERS_KEY])})
    report = audit(folder, gateway="mimecast")
    mbx = {(f.status.value, f.resource) for f in findings_for(report, "MBX-002")}
    assert ("fail", f"inbox rule '.' of mailbox {ALEX}") in mbx
    mail = [f for f in findings_for(report, "MAIL-001") if f.status.value == "fail"]
    assert [f.resource for f in mail] == [f"message <2.192.0.2.77@fabrikam.com> in mailbox {ALEX}"]
    assert "mailbox/Mailbox-MessageHeaders.json" in {e.file for e in mail[0].evidence}


def test_collect_with_mailboxes_writes_both_items_into_the_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from auditor.cli import main
    from auditor.snapshot import load_snapshot
    from tests.fakeexo import CLIENT_ID, DEMO, TENANT_DOMAIN, FakeExo, load_values

    data = {m["PrimarySmtpAddress"]: MailboxData() for m in load_values(DEMO / "Get-Mailbox.json")}
    data.update(tenant())
    with FakeExo(secret="s3cret-value") as fake, FakeEws(data, accept=lambda t: t in fake.valid) as ews:
        out = tmp_path / "snap"
        code = 0
        try:
            main(["collect", "--tenant", TENANT_DOMAIN, "--client-id", CLIENT_ID, "--client-secret",
                  "s3cret-value", "--out", str(out), "--authority-host", fake.url, "--admin-api", fake.url,
                  "--no-dns", "--no-graph", "--backoff", "0.01", "--mailboxes",
                  "--messages-per-mailbox", "5", "--ews-url", ews.url])
        except SystemExit as exited:
            code = int(exited.code or 0)
    assert code == 0
    err = capsys.readouterr().err
    assert "ok       Mailbox-InboxRules" in err and "ok       Mailbox-MessageHeaders" in err
    assert "mailbox evidence through EWS: auto: EWS answered the first request" in err
    snapshot = load_snapshot(out)
    headers = snapshot.evidence.get(HEADERS_KEY)
    assert headers.state is State.OK and len(headers.items) == 2 + len(data) - 1
    assert (out / "mailbox" / "Mailbox-InboxRules.json").is_file()
    entry = next(i for i in snapshot.items if i.key == RULES_KEY)
    assert entry.source == "EWS GetInboxRules (mailbox evidence over EWS)"


def probe(ews: FakeEws, address: str) -> Any:
    async def run() -> Any:
        async with httpx.AsyncClient() as http:
            return await MailboxCollector(StubCredential("contoso.onmicrosoft.com", "client"), http,
                                          ews_url=ews.url, policy=MailboxPolicy(timeout=2.0)).probe(address)

    return asyncio.run(run())


@pytest.mark.parametrize("mode", ["forbidden", "access-denied"])
def test_ews_switched_off_for_the_tenant_is_told_apart_from_one_mailbox_refused(ews: FakeEws,
                                                                                mode: str) -> None:
    """auto falls back to Graph only when EWS itself is off, not when one mailbox is out of scope."""
    ews.denied = {ADELE}
    refused_mailbox = probe(ews, ADELE)
    assert (refused_mailbox.state, refused_mailbox.blocked) == (State.DENIED, False)
    ews.blocked = mode
    blocked = probe(ews, ALEX)
    assert (blocked.state, blocked.blocked) == (State.DENIED, True)
    assert "1 October 2026" in (blocked.reason or "")


def test_a_mailbox_without_rules_has_a_row_saying_so(ews: FakeEws) -> None:
    """Every mailbox read has a row, so the API that read it is on record even when it has none."""
    ews.mailboxes["megan.bowen@contoso.com"] = MailboxData()
    results, _ = collect(ews, ["megan.bowen@contoso.com"], headers=False)
    assert body(results[RULES_KEY])["value"] == [{
        "Mailbox": "megan.bowen@contoso.com", "CollectionState": "empty",
        "CollectionError": "the mailbox has no inbox rules", "CollectedThrough": "ews"}]
    assert body(results[RULES_KEY])["mailboxes"][0]["Objects"] == 0
