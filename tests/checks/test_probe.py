"""PROBE-001: the verdict on a recorded SMTP probe, judged against the tenant's configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.engine import Finding, Severity, Status
from auditor.probe import DIRECT_SEND_ONLY, INCONCLUSIVE, LOCKED

from ..conftest import accepted, audit, connector, findings_for, rule

MakeExport = Callable[..., Path]
PROBE_FILE = "probe/Probe-SMTP.json"
GATEWAY_RANGES = ["198.51.100.0/24", "203.0.113.0/25"]
OUTSIDE_SENDER = "probe@auditor.example"
INSIDE_SENDER = "ceo@contoso.com"
LOCKED_REPLY = ("550 5.7.51 TenantInboundAttribution; There is a partner connector configured that "
                "matched the message's recipient domain.")
DIRECT_SEND_REPLY = ("550 5.7.68 TenantInboundAttribution; Direct Send not allowed for this "
                     "organization from unauthorized sources")
BANNED_REPLY = "550 5.7.606 Access denied, banned sending IP [192.0.2.10]."
RCPT_STEP = 6  # connect, greeting, EHLO, STARTTLS, EHLO after TLS, MAIL, RCPT


def _step(stage: str, command: str | None, reply: str | None) -> dict[str, Any]:
    return {"At": "2026-03-02T10:00:00.000Z", "Stage": stage, "Command": command,
            "Code": int(reply[:3]) if reply else None, "Reply": reply}


def probe_record(rcpt_reply: str | None = "250 2.1.5 Recipient OK", *,
                 sender: str = OUTSIDE_SENDER, canary_reply: str | None = None,
                 error: tuple[str, str] | None = None, started: str = "2026-03-02T10:00:00Z",
                 **overrides: Any) -> dict[str, Any]:
    """A transcript as `mailflow-audit probe` writes it."""
    steps = [_step("connect", "connect contoso-com.mail.protection.outlook.com:25", None),
             _step("greeting", None, "220 BN1PEPF00004681.mail.protection.outlook.com ready"),
             _step("EHLO", "EHLO probe.auditor.example", "250-Hello\n250-STARTTLS\n250 CHUNKING"),
             _step("STARTTLS", "STARTTLS", "220 2.0.0 SMTP server ready"),
             _step("EHLO after TLS", "EHLO probe.auditor.example", "250 Hello"),
             _step("MAIL", f"MAIL FROM:<{sender}>", "250 2.1.0 Sender OK")]
    if rcpt_reply is not None or error is None:
        steps.append(_step("RCPT", "RCPT TO:<probe-target@contoso.com>", rcpt_reply))
    if canary_reply is not None:
        steps += [_step("DATA", "DATA", "354 Start mail input"),
                  _step("MESSAGE", "<message, 600 bytes>", canary_reply)]
    record: dict[str, Any] = {
        "Tool": "mailflow-auditor test", "Domain": "contoso.com",
        "Host": "contoso-com.mail.protection.outlook.com", "Port": 25,
        "PeerAddress": "52.101.0.1:25", "HeloName": "probe.auditor.example", "MailFrom": sender,
        "Recipient": "probe-target@contoso.com", "SendCanary": canary_reply is not None,
        "CanaryId": "mfa-1" if canary_reply else None, "StartedAt": started,
        "FinishedAt": started, "TlsVersion": "TLSv1.3", "TlsCipher": "TLS_AES_256_GCM_SHA384",
        "TlsPeerSubject": "CN=mail.protection.outlook.com",
        "Error": error[1] if error else None, "ErrorStage": error[0] if error else None,
        "Steps": steps,
    }
    record.update(overrides)
    return record


def lock_rule() -> dict[str, Any]:
    return rule("Reject mail not from the gateway", FromScope="NotInOrganization",
                ExceptIfSenderIpRanges=GATEWAY_RANGES, RejectMessageReasonText="Use the gateway")


def _probe(make_export: MakeExport, doc_gateway: Path, probes: Any = None, *,
           connectors: list[dict[str, Any]] | None = None,
           rules: list[dict[str, Any]] | None = None) -> tuple[list[Finding], list[Finding]]:
    files: dict[str, Any] = {
        "Get-AcceptedDomain": accepted("contoso.com", "contoso.onmicrosoft.com"),
        "Get-InboundConnector": connectors or [],
        "Get-TransportRule": rules or [],
    }
    if probes is not None:
        files["Probe-SMTP"] = probes
    report = audit(make_export(files), gateway_file=doc_gateway)
    return findings_for(report, "PROBE-001"), findings_for(report, "CONN-001")


def _only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.status, f.resource, f.message) for f in findings]
    return findings[0]


def _conn001(findings: list[Finding], domain: str = "contoso.com") -> Finding:
    return next(f for f in findings if f.resource == f"accepted domain {domain}")


def _points_at(finding: Finding, pointer: str) -> bool:
    return any(e.file == PROBE_FILE and e.pointer == pointer for e in finding.evidence)


# --- the legitimate setup -----------------------------------------------------------------------


def test_a_recipient_refused_with_5_7_51_passes_as_locked_by_connector(
        make_export: MakeExport, doc_gateway: Path) -> None:
    probes, conn = _probe(make_export, doc_gateway, [probe_record(LOCKED_REPLY)],
                          connectors=[connector()])
    finding = _only(probes)
    assert finding.status is Status.PASS and finding.verdict == LOCKED
    assert finding.resource == "SMTP probe to contoso.com"
    assert _points_at(finding, f"/0/Steps/{RCPT_STEP}/Reply")
    assert finding.related == (_conn001(conn).fingerprint,)


# --- the bypass ---------------------------------------------------------------------------------


def test_an_accepted_envelope_without_any_lock_fails_and_links_conn001(
        make_export: MakeExport, doc_gateway: Path) -> None:
    probes, conn = _probe(make_export, doc_gateway, [probe_record()])
    finding = _only(probes)
    assert finding.status is Status.FAIL and finding.severity is Severity.HIGH
    assert finding.verdict == "exposed"
    assert "250 2.1.5 Recipient OK" in finding.message
    assert _points_at(finding, f"/0/Steps/{RCPT_STEP}/Reply")
    assert finding.related == (_conn001(conn).fingerprint,)
    assert finding.fix.startswith("New-InboundConnector") and "198.51.100.0/24" in finding.fix


def test_exposure_is_critical_when_conn001_finds_filtering_off_for_outsiders_too(
        make_export: MakeExport, doc_gateway: Path) -> None:
    spam_bypass = rule("Skip spam filtering", SenderDomainIs=["partner.example"], SetSCL=-1)
    probes, conn = _probe(make_export, doc_gateway, [probe_record()], rules=[spam_bypass])
    assert _conn001(conn).severity is Severity.CRITICAL
    assert _only(probes).severity is Severity.CRITICAL


def test_an_accepted_envelope_with_a_rule_lock_warns_and_says_only_a_canary_can_tell(
        make_export: MakeExport, doc_gateway: Path) -> None:
    probes, conn = _probe(make_export, doc_gateway, [probe_record()], rules=[lock_rule()])
    finding = _only(probes)
    assert finding.status is Status.WARN and finding.severity is Severity.MEDIUM
    assert "Reject mail not from the gateway" in finding.message and "--send-canary" in finding.message
    rule_lock_warning = _conn001(conn)
    assert rule_lock_warning.status is Status.WARN
    assert finding.related == (rule_lock_warning.fingerprint,)
    assert any(e.property == "ExceptIfSenderIpRanges" for e in finding.evidence)


def test_an_accepted_envelope_despite_a_configured_connector_lock_fails_with_the_contradiction(
        make_export: MakeExport, doc_gateway: Path) -> None:
    probes, _ = _probe(make_export, doc_gateway, [probe_record()], connectors=[connector()])
    finding = _only(probes)
    assert finding.status is Status.FAIL
    assert "CONN-001 found a connector lock" in finding.message


def test_direct_send_refused_for_the_tenants_own_sender_warns_that_the_lock_is_missing(
        make_export: MakeExport, doc_gateway: Path) -> None:
    probes, _ = _probe(make_export, doc_gateway, [probe_record(DIRECT_SEND_REPLY, sender=INSIDE_SENDER)])
    finding = _only(probes)
    assert finding.status is Status.WARN and finding.severity is Severity.HIGH
    assert finding.verdict == DIRECT_SEND_ONLY
    assert any(e.property == "MailFrom" and e.observed == INSIDE_SENDER for e in finding.evidence)
    assert finding.fix.startswith("New-InboundConnector")


def test_an_accepted_canary_confirms_the_exposure(make_export: MakeExport, doc_gateway: Path) -> None:
    record = probe_record(canary_reply="250 2.6.0 Queued mail for delivery")
    finding = _only(_probe(make_export, doc_gateway, [record])[0])
    assert finding.status is Status.FAIL and "canary mfa-1 was accepted for delivery" in finding.message
    assert _points_at(finding, "/0/Steps/8/Reply")


def test_a_canary_refused_after_data_is_a_rule_only_lock(make_export: MakeExport,
                                                         doc_gateway: Path) -> None:
    record = probe_record(canary_reply="550 5.7.1 TRANSPORT.RULES.RejectMessage; rejected")
    finding = _only(_probe(make_export, doc_gateway, [record], rules=[lock_rule()])[0])
    assert finding.status is Status.WARN and finding.severity is Severity.MEDIUM
    assert "refused after DATA" in finding.message


def test_the_newest_probe_of_a_domain_is_judged(make_export: MakeExport, doc_gateway: Path) -> None:
    old = probe_record(started="2026-01-01T00:00:00Z")
    new = probe_record(LOCKED_REPLY, started="2026-03-01T00:00:00Z")
    finding = _only(_probe(make_export, doc_gateway, [new, old], connectors=[connector()])[0])
    assert finding.status is Status.PASS and "1 earlier probe(s)" in finding.message


# --- inconclusive: never a pass, never a finding about the tenant --------------------------------


def test_a_banned_source_ip_is_not_evaluated(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_probe(make_export, doc_gateway, [probe_record(BANNED_REPLY)])[0])
    assert finding.status is Status.NOT_EVALUATED and finding.verdict == INCONCLUSIVE
    assert "reputation" in finding.message and "5.7.606" in finding.message


def test_a_timed_out_probe_is_not_evaluated(make_export: MakeExport, doc_gateway: Path) -> None:
    record = probe_record(None, error=("connect", "no connection within 30 s (is outbound port 25 "
                                                  "blocked here?)"))
    record["Steps"] = record["Steps"][:1]
    finding = _only(_probe(make_export, doc_gateway, [record])[0])
    assert finding.status is Status.NOT_EVALUATED and "port 25" in finding.message


def test_5_7_68_with_an_outside_sender_is_not_evaluated(make_export: MakeExport,
                                                        doc_gateway: Path) -> None:
    finding = _only(_probe(make_export, doc_gateway, [probe_record(DIRECT_SEND_REPLY)])[0])
    assert finding.status is Status.NOT_EVALUATED


def test_a_probe_of_a_domain_the_tenant_does_not_have_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    record = probe_record(LOCKED_REPLY, Recipient="x@fabrikam.example", Domain="fabrikam.example")
    finding = _only(_probe(make_export, doc_gateway, [record])[0])
    assert finding.status is Status.NOT_EVALUATED and "not an accepted domain" in finding.message


# --- missing and unreadable evidence ------------------------------------------------------------


def test_no_probe_is_not_evaluated_and_says_how_to_run_one(make_export: MakeExport,
                                                           doc_gateway: Path) -> None:
    finding = _only(_probe(make_export, doc_gateway)[0])
    assert finding.status is Status.NOT_EVALUATED and finding.resource == "Probe-SMTP"
    assert "no probe was run" in finding.message and "mailflow-audit probe" in finding.message


def test_an_empty_probe_file_is_not_a_pass(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_probe(make_export, doc_gateway, [])[0])
    assert finding.status is Status.NOT_EVALUATED and "no readable transcript" in finding.message


def test_a_probe_file_that_is_not_json_is_not_evaluated(make_export: MakeExport,
                                                        doc_gateway: Path) -> None:
    finding = _only(_probe(make_export, doc_gateway, b"{not json")[0])
    assert finding.status is Status.NOT_EVALUATED and "error" in finding.message
    assert "no probe was run" not in finding.message


def test_unreadable_steps_are_not_evaluated_with_the_pointer(make_export: MakeExport,
                                                             doc_gateway: Path) -> None:
    record = probe_record()
    record["Steps"][RCPT_STEP]["Code"] = "two-fifty"
    finding = _only(_probe(make_export, doc_gateway, [record])[0])
    assert finding.status is Status.NOT_EVALUATED
    assert f"/0/Steps/{RCPT_STEP}" in finding.message


def test_an_unreadable_transcript_property_is_not_evaluated(make_export: MakeExport,
                                                            doc_gateway: Path) -> None:
    findings = _probe(make_export, doc_gateway, [probe_record(Port="twenty-five")])[0]
    assert {f.status for f in findings} == {Status.NOT_EVALUATED}
    assert any("Port" in f.message for f in findings)


def test_an_empty_accepted_domain_list_is_not_read_as_a_foreign_domain(
        make_export: MakeExport, doc_gateway: Path) -> None:
    files = {"Get-AcceptedDomain": [], "Get-InboundConnector": [connector()],
             "Probe-SMTP": [probe_record(LOCKED_REPLY)]}
    finding = _only(findings_for(audit(make_export(files), gateway_file=doc_gateway), "PROBE-001"))
    assert finding.status is Status.NOT_EVALUATED and "no accepted domain" in finding.message


def test_gw001_counts_an_exposed_probe_as_an_open_route_even_against_the_configuration(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """The probe is proof: GW-001 calls the domain bypassable and links the probe's finding."""
    files = {"Get-AcceptedDomain": accepted("contoso.com"), "Get-InboundConnector": [connector()],
             "Get-TransportRule": [], "Probe-SMTP": [probe_record()]}
    report = audit(make_export(files), gateway_file=doc_gateway)
    probe = _only(findings_for(report, "PROBE-001"))
    verdict = _only(findings_for(report, "GW-001"))
    assert verdict.status is Status.FAIL and verdict.verdict == "bypassable"
    assert "PROBE-001 (SMTP probe to contoso.com)" in verdict.message
    assert probe.fingerprint in verdict.related


def test_gw001_is_unchanged_by_a_locked_or_missing_probe(make_export: MakeExport,
                                                         doc_gateway: Path) -> None:
    for probes in ([probe_record(LOCKED_REPLY)], None):
        files: dict[str, Any] = {"Get-AcceptedDomain": accepted("contoso.com"),
                                 "Get-InboundConnector": [connector()], "Get-TransportRule": []}
        if probes is not None:
            files["Probe-SMTP"] = probes
        verdict = _only(findings_for(audit(make_export(files), gateway_file=doc_gateway), "GW-001"))
        assert "PROBE-001" not in verdict.message and verdict.verdict != "bypassable"
