"""The lockdown probe's SMTP client against a local server playing Exchange Online's answers.

``FakeExchange`` is an aiosmtpd server on 127.0.0.1 with STARTTLS (a certificate from a CA made
here) that answers as a locked, a Direct-Send-only, an open, a reputation-blocked, a throttled or
a never-answering tenant, and records every connection and command, so the tests can prove what
the probe sends and, above all, what it never sends.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from auditor.errors import InputError
from auditor.evidence import State
from auditor.probe import (
    CANARY_HEADER,
    DIRECT_SEND_ONLY,
    ENVELOPE_ACCEPTED,
    INCONCLUSIVE,
    LOCKED,
    ProbeRequest,
    add_to_snapshot,
    check_address,
    check_helo,
    classify,
    endpoint_for,
    enhanced_code,
    parse_host,
    read_transcript,
    reputation_block,
    run_probe,
    summary,
)
from auditor.snapshot import import_export_folder, load_snapshot, verify_snapshot, write_snapshot
from tests.localca import LocalCA

DOMAIN = "contoso.com"
TEST_MAILBOX = "probe-target@contoso.com"
OUTSIDE_SENDER = "probe@auditor.example"
INSIDE_SENDER = "ceo@contoso.com"
SERVER_NAME = "contoso-com.mail.protection.outlook.com"

# What Exchange Online answers (texts from Microsoft's pages; see threats-detail.md §5).
LOCKED_REPLY = ("550 5.7.51 TenantInboundAttribution; There is a partner connector configured that "
                "matched the message's recipient domain. The connector had either the "
                "RestrictDomainsToIPAddresses or RestrictDomainsToCertificate set")
DIRECT_SEND_REPLY = ("550 5.7.68 TenantInboundAttribution; Direct Send not allowed for this "
                     "organization from unauthorized sources")
BANNED_REPLY = ("550 5.7.606 Access denied, banned sending IP [192.0.2.10]. To request removal "
                "from this list please visit https://sender.office.com/ and follow the directions.")
THROTTLED_REPLY = "451 4.7.500 Access denied, please try again later"
ACCEPTED_REPLY = "250 2.1.5 Recipient OK"
QUEUED_REPLY = "250 2.6.0 <canary@auditor.example> Queued mail for delivery"


class _Tenant:
    """aiosmtpd handler hooks answering as one kind of tenant."""

    def __init__(self, kind: str, data_reply: str) -> None:
        self.kind = kind
        self.data_reply = data_reply
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if self.kind == "throttled":
            return THROTTLED_REPLY
        envelope.mail_from = address
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        inside = (envelope.mail_from or "").lower().endswith("@" + DOMAIN)
        reply = {"locked": LOCKED_REPLY, "banned": BANNED_REPLY,
                 "direct-send": DIRECT_SEND_REPLY if inside else ACCEPTED_REPLY}.get(
            self.kind, ACCEPTED_REPLY)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content or b"")))
        return self.data_reply


class FakeExchange:
    """``with FakeExchange("open") as server``: an SMTP server with STARTTLS on 127.0.0.1, in a
    thread of its own (so both async tests and the command line can reach it). ``silent`` accepts
    connections and never answers."""

    def __init__(self, kind: str, *, data_reply: str = QUEUED_REPLY) -> None:
        self.kind = kind
        self.tenant = _Tenant(kind, data_reply)
        self.connections = 0
        self.commands: list[str] = []
        self._ca = LocalCA([SERVER_NAME], ca_name="mailflow-auditor probe test CA")
        self.ca = self._ca.ca
        self.ca_file = self._ca.ca_file
        self._tls = self._ca.server_context()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def messages(self) -> list[tuple[list[str], bytes]]:
        return self.tenant.messages

    def client_tls(self) -> ssl.SSLContext:
        """What --ca-file gives the probe: trust in this server's CA only, names still checked."""
        return self._ca.client_context()

    def _protocol(self) -> asyncio.Protocol:
        self.connections += 1
        if self.kind == "silent":
            return asyncio.Protocol()
        smtp = SMTP(self.tenant, hostname=SERVER_NAME, tls_context=self._tls, loop=self._loop)
        for verb, method in list(smtp._smtp_methods.items()):
            smtp._smtp_methods[verb] = self._recording(verb, method)
        return smtp

    def _recording(self, verb: str, method: Callable[[str | None], Awaitable[None]]
                   ) -> Callable[[str | None], Awaitable[None]]:
        async def record(arg: str | None) -> None:
            self.commands.append(verb)
            await method(arg)
        return record

    def __enter__(self) -> Self:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(self._protocol, "127.0.0.1", 0), self._loop).result(5)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)  # in the server's own thread
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._ca.cleanup()

    def request(self, *, sender: str = OUTSIDE_SENDER, send_canary: bool = False,
                step_timeout: float = 5.0, total_timeout: float = 20.0) -> ProbeRequest:
        return ProbeRequest(domain=DOMAIN, recipient=TEST_MAILBOX, mail_from=sender,
                            helo="probe.auditor.example", host="127.0.0.1", port=self.port,
                            send_canary=send_canary, tls=self.client_tls(),
                            step_timeout=step_timeout, total_timeout=total_timeout)


def serve(kind: str, **kwargs: Any) -> Iterator[FakeExchange]:
    with FakeExchange(kind, **kwargs) as server:
        yield server


@pytest.fixture
def locked() -> Iterator[FakeExchange]:
    yield from serve("locked")


@pytest.fixture
def direct_send() -> Iterator[FakeExchange]:
    yield from serve("direct-send")


@pytest.fixture
def open_tenant() -> Iterator[FakeExchange]:
    yield from serve("open")


def _outcome(record: dict[str, Any], *, internal: bool = False) -> Any:
    return classify(read_transcript(json.dumps([record]).encode()), sender_internal=internal)


def _stages(record: dict[str, Any]) -> list[str]:
    return [s["Stage"] for s in record["Steps"]]


# --- the verdicts -------------------------------------------------------------------------------


async def test_a_locked_tenant_refuses_the_recipient_with_5_7_51(locked: FakeExchange) -> None:
    record = await run_probe(locked.request())
    outcome = _outcome(record)
    assert outcome.verdict == LOCKED
    assert outcome.step is not None and outcome.step.stage == "RCPT"
    assert outcome.step.reply == LOCKED_REPLY
    assert record["Error"] is None
    assert record["TlsVersion"] in ("TLSv1.2", "TLSv1.3")
    assert record["TlsPeerSubject"] == f"CN={SERVER_NAME}"


async def test_the_probe_speaks_ehlo_starttls_ehlo_mail_rcpt_rset_quit_and_never_data(
        open_tenant: FakeExchange) -> None:
    """The safety promise: without --send-canary nothing past RCPT TO, so nothing is delivered."""
    record = await run_probe(open_tenant.request())
    assert open_tenant.commands == ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "RSET", "QUIT"]
    assert "DATA" not in open_tenant.commands and open_tenant.messages == []
    assert _stages(record) == ["connect", "greeting", "EHLO", "STARTTLS", "EHLO after TLS", "MAIL",
                               "RCPT", "RSET", "QUIT"]
    assert _outcome(record).verdict == ENVELOPE_ACCEPTED
    assert record["CanaryId"] is None


async def test_one_run_opens_exactly_one_connection(open_tenant: FakeExchange) -> None:
    await run_probe(open_tenant.request())
    assert open_tenant.connections == 1


async def test_direct_send_is_refused_only_for_the_tenants_own_sender_domain(
        direct_send: FakeExchange) -> None:
    inside = await run_probe(direct_send.request(sender=INSIDE_SENDER))
    assert _outcome(inside, internal=True).verdict == DIRECT_SEND_ONLY
    outside = await run_probe(direct_send.request())
    assert _outcome(outside).verdict == ENVELOPE_ACCEPTED
    assert direct_send.connections == 2 and "DATA" not in direct_send.commands


async def test_5_7_68_with_an_outside_sender_is_not_read_as_a_direct_send_block(
        direct_send: FakeExchange) -> None:
    record = await run_probe(direct_send.request(sender=INSIDE_SENDER))
    assert _outcome(record, internal=False).verdict == INCONCLUSIVE


async def test_a_banned_source_ip_is_inconclusive_not_a_lock() -> None:
    for server in serve("banned"):
        outcome = _outcome(await run_probe(server.request()))
        assert outcome.verdict == INCONCLUSIVE
        assert "reputation" in outcome.reason


async def test_a_throttled_sender_is_inconclusive_and_the_probe_stops_at_mail() -> None:
    for server in serve("throttled"):
        record = await run_probe(server.request())
        assert _outcome(record).verdict == INCONCLUSIVE
        assert "RCPT" not in server.commands and server.commands[-1] == "QUIT"


async def test_a_server_that_never_answers_times_out_in_bounded_time() -> None:
    for server in serve("silent"):
        loop = asyncio.get_running_loop()
        started = loop.time()
        record = await run_probe(server.request(step_timeout=0.3))
        assert loop.time() - started < 3
        assert record["ErrorStage"] == "greeting" and "no reply within 0.3 s" in record["Error"]
        assert _outcome(record).verdict == INCONCLUSIVE


async def test_the_whole_run_has_its_own_bound() -> None:
    for server in serve("silent"):
        record = await run_probe(server.request(step_timeout=5, total_timeout=0.3))
        assert "did not finish within 0.3 s" in record["Error"]


async def test_a_closed_port_is_inconclusive() -> None:
    with FakeExchange("open") as server:
        request = server.request()
    record = await run_probe(request)
    assert record["ErrorStage"] == "connect"
    assert _outcome(record).verdict == INCONCLUSIVE


async def test_an_untrusted_certificate_stops_the_probe_before_any_address_is_sent(
        open_tenant: FakeExchange) -> None:
    """Verification is on by default: the system's trust store does not know the test CA."""
    request = open_tenant.request()
    record = await run_probe(ProbeRequest(**{**request.__dict__, "tls": None}))
    assert record["ErrorStage"] == "TLS" and "certificate" in record["Error"].lower()
    assert "MAIL" not in open_tenant.commands


async def test_the_certificate_must_name_the_host(open_tenant: FakeExchange) -> None:
    request = open_tenant.request()
    record = await run_probe(ProbeRequest(**{**request.__dict__, "host": "localhost"}))
    assert record["ErrorStage"] == "TLS" and "localhost" in record["Error"]
    assert "MAIL" not in open_tenant.commands


# --- the canary ---------------------------------------------------------------------------------


async def test_send_canary_sends_exactly_one_labelled_message_to_the_test_mailbox(
        open_tenant: FakeExchange) -> None:
    record = await run_probe(open_tenant.request(send_canary=True))
    assert open_tenant.commands.count("DATA") == 1
    assert len(open_tenant.messages) == 1
    recipients, content = open_tenant.messages[0]
    assert recipients == [TEST_MAILBOX]
    text = content.decode()
    assert f"Subject: mailflow-auditor canary {record['CanaryId']}" in text
    assert f"{CANARY_HEADER}: {record['CanaryId']}" in text
    outcome = _outcome(record)
    assert outcome.verdict == ENVELOPE_ACCEPTED
    assert outcome.canary is not None and outcome.canary.code == 250


async def test_send_canary_sends_nothing_when_the_recipient_is_refused(locked: FakeExchange) -> None:
    record = await run_probe(locked.request(send_canary=True))
    assert "DATA" not in locked.commands and locked.messages == []
    assert record["CanaryId"] is None


async def test_a_canary_refused_after_data_is_recorded() -> None:
    for server in serve("open", data_reply="550 5.7.1 TRANSPORT.RULES.RejectMessage; rejected"):
        record = await run_probe(server.request(send_canary=True))
        outcome = _outcome(record)
        assert outcome.canary is not None and outcome.canary.code == 550
        status, text = summary(record)
        assert status == "warn" and "refused after DATA" in text


# --- what the user gives ------------------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "probe@auditor.example\r\nRCPT TO:<victim@contoso.com>",
    "probe@auditor.example\nDATA",
    "probe@auditor.example>",
    "<probe@auditor.example>",
    "pro be@auditor.example",
    "prøbe@auditor.example",
    "probe@",
    "probe",
    "probe@auditor..example",
])
def test_addresses_that_could_inject_smtp_commands_are_refused(address: str) -> None:
    with pytest.raises(InputError):
        check_address(address, "--rcpt")


def test_a_plain_address_is_kept() -> None:
    assert check_address("Probe.Target+x@Contoso.COM", "--rcpt") == "Probe.Target+x@contoso.com"


def test_the_request_refuses_a_recipient_outside_the_probed_domain() -> None:
    with pytest.raises(InputError, match="not in the probed domain"):
        ProbeRequest(domain="contoso.com", recipient="x@fabrikam.com", mail_from=OUTSIDE_SENDER,
                     helo="auditor.example", host="127.0.0.1")


@pytest.mark.parametrize(("domain", "host"), [
    ("contoso.com", "contoso-com.mail.protection.outlook.com"),
    ("contoso.co.uk", "contoso-co-uk.mail.protection.outlook.com"),
])
def test_the_endpoint_is_the_domain_with_dots_replaced_by_dashes(domain: str, host: str) -> None:
    assert endpoint_for(domain) == host


@pytest.mark.parametrize("domain", ["contoso.onmicrosoft.com", "Contoso.mail.onmicrosoft.com"])
def test_the_tenants_microsoft_domains_use_the_tenant_name_as_token(domain: str) -> None:
    """The onmicrosoft route (DOM-001) is what a probe most often needs to prove."""
    assert endpoint_for(domain) == "contoso.mail.protection.outlook.com"


def test_a_domain_with_a_dash_needs_host_because_its_mx_token_is_not_derivable() -> None:
    with pytest.raises(InputError, match="--host"):
        endpoint_for("my-company.com")


@pytest.mark.parametrize(("given", "expected"), [
    ("127.0.0.1:2525", ("127.0.0.1", 2525)),
    ("contoso-com.mail.protection.outlook.com", ("contoso-com.mail.protection.outlook.com", 25)),
    ("[::1]:2525", ("::1", 2525)),
])
def test_host_and_port_are_parsed(given: str, expected: tuple[str, int]) -> None:
    assert parse_host(given) == expected


@pytest.mark.parametrize("given", ["127.0.0.1:0", "host:port", "bad host", "[::1]x"])
def test_a_bad_host_is_refused(given: str) -> None:
    with pytest.raises(InputError):
        parse_host(given)


def test_helo_takes_a_name_or_an_address_literal() -> None:
    assert check_helo("[192.0.2.1]") == "[192.0.2.1]"
    with pytest.raises(InputError):
        check_helo("probe host")


# --- reading replies ----------------------------------------------------------------------------


def test_5_7_51_is_not_confused_with_5_7_510() -> None:
    assert enhanced_code(LOCKED_REPLY) == (5, 7, 51)
    assert enhanced_code("550 5.7.510 Access denied, [contoso.com] does not accept email over IPv6") \
        == (5, 7, 510)
    assert enhanced_code("250 OK") is None


@pytest.mark.parametrize(("reply", "blocked"), [
    (THROTTLED_REPLY, True), (BANNED_REPLY, True), ("451 4.7.850 Access denied", True),
    (LOCKED_REPLY, False), (DIRECT_SEND_REPLY, False), ("550 5.4.1 Recipient address rejected", False),
])
def test_reputation_blocks_are_told_apart_from_tenant_answers(reply: str, blocked: bool) -> None:
    assert reputation_block(enhanced_code(reply)) is blocked


def _record(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"Domain": DOMAIN, "Recipient": TEST_MAILBOX, "MailFrom": OUTSIDE_SENDER,
            "Host": "127.0.0.1", "Steps": steps, **extra}


def test_an_unknown_recipient_is_inconclusive() -> None:
    outcome = _outcome(_record([{"Stage": "RCPT", "Code": 550,
                                 "Reply": "550 5.4.1 Recipient address rejected: Access denied"}]))
    assert outcome.verdict == INCONCLUSIVE and "5.4.1" in outcome.reason


def test_unreadable_steps_raise_with_the_pointer() -> None:
    with pytest.raises(ValueError, match="/0/Steps/0"):
        _outcome(_record([{"Stage": "RCPT", "Code": "two-fifty", "Reply": "250 OK"}]))
    with pytest.raises(ValueError, match="not a list"):
        _outcome(_record("RCPT 250"))  # type: ignore[arg-type]


# --- storing the transcript ---------------------------------------------------------------------


@pytest.fixture
def snapshot_folder(make_export: Callable[..., Path], tmp_path: Path) -> Path:
    export = make_export({"Get-AcceptedDomain": [{"DomainName": DOMAIN}]})
    folder = tmp_path / "snapshot"
    write_snapshot(import_export_folder(export), folder)
    return folder


async def test_adding_a_probe_to_a_snapshot_keeps_it_verifiable(
        snapshot_folder: Path, open_tenant: FakeExchange) -> None:
    before = json.loads((snapshot_folder / "manifest.json").read_text())["snapshot_id"]
    add_to_snapshot(snapshot_folder, await run_probe(open_tenant.request()))
    assert verify_snapshot(snapshot_folder).ok
    loaded = load_snapshot(snapshot_folder)
    item = next(i for i in loaded.items if i.key == "Probe-SMTP")
    assert item.state is State.OK and item.objects == 1
    assert loaded.snapshot_id != before
    assert json.loads((snapshot_folder / "manifest.json").read_text())["snapshot_id"] == loaded.snapshot_id


async def test_a_new_probe_of_the_same_domain_supersedes_the_old_one(
        snapshot_folder: Path, open_tenant: FakeExchange) -> None:
    first = await run_probe(open_tenant.request())
    add_to_snapshot(snapshot_folder, first)
    add_to_snapshot(snapshot_folder, {**first, "Domain": "other.example"})
    add_to_snapshot(snapshot_folder, await run_probe(open_tenant.request()))
    stored = json.loads((snapshot_folder / "probe" / "Probe-SMTP.json").read_text())
    assert [r["Domain"] for r in stored] == ["other.example", DOMAIN]
    assert verify_snapshot(snapshot_folder).ok


def test_a_snapshot_that_does_not_verify_is_not_re_hashed(snapshot_folder: Path) -> None:
    accepted = snapshot_folder / "exo" / "Get-AcceptedDomain.json"
    accepted.write_text(json.dumps([{"DomainName": "tampered.example"}]))
    manifest = (snapshot_folder / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="does not verify"):
        add_to_snapshot(snapshot_folder, _record([], FinishedAt="2026-01-01T00:00:00Z"))
    assert (snapshot_folder / "manifest.json").read_bytes() == manifest
    assert not (snapshot_folder / "probe").exists()
