"""CONN-001 (inbound lockdown per accepted domain) and CONN-002 (gateway connector enabled)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.engine import Finding, Severity, Status

from ..conftest import (
    accepted,
    audit,
    connector,
    findings_for,
    mimecast_us_ranges,
    rule,
    statuses,
)

MakeExport = Callable[..., Path]
CONNECTORS = "exo/Get-InboundConnector.json"
DOMAINS = "exo/Get-AcceptedDomain.json"
RULES = "exo/Get-TransportRule.json"
GATEWAY_RANGES = ["198.51.100.0/24", "203.0.113.0/25"]
FROM_SCOPE = "Microsoft.Exchange.MessagingPolicies.Rules.Tasks.FromScopePredicate"


def _run(make_export: MakeExport, check_id: str, files: dict[str, Any],
         gateway_file: Path | None = None, gateway: str | None = None) -> list[Finding]:
    return findings_for(audit(make_export(files), gateway=gateway, gateway_file=gateway_file),
                        check_id)


def _conn001(make_export: MakeExport, doc_gateway: Path, connectors: list[dict[str, Any]],
             domains: tuple[str, ...] = ("contoso.com",),
             rules: list[dict[str, Any]] | None = None) -> list[Finding]:
    files: dict[str, Any] = {"Get-InboundConnector": connectors,
                             "Get-AcceptedDomain": accepted(*domains)}
    if rules is not None:
        files["Get-TransportRule"] = rules
    return _run(make_export, "CONN-001", files, gateway_file=doc_gateway)


def _only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.status, f.resource, f.message) for f in findings]
    return findings[0]


def _for(findings: list[Finding], resource: str) -> Finding:
    return _only([f for f in findings if f.resource == resource])


def _points_at(finding: Finding, file: str, pointer: str) -> bool:
    return any(e.file == file and e.pointer == pointer for e in finding.evidence)


def _lock_rule(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "FromScope": "NotInOrganization",
        "RejectMessageReasonText": "Mail must arrive through the gateway",
        "ExceptIfSenderIpRanges": GATEWAY_RANGES,
        "Conditions": [FROM_SCOPE],
    }
    props.update(overrides)
    return rule("Reject mail not from gateway", **props)


# --- CONN-001: bypasses it must catch -------------------------------------------------------


def test_conn001_no_connector_fails_high(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn001(make_export, doc_gateway, []))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH
    assert finding.resource == "accepted domain contoso.com"
    assert _points_at(finding, DOMAINS, "/0/DomainName")


def test_conn001_disabled_connector_fails(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn001(make_export, doc_gateway, [connector(Enabled=False)]))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH
    assert finding.resource == "accepted domain contoso.com"
    assert _points_at(finding, CONNECTORS, "/0/Enabled")


def test_conn001_on_premises_connector_fails(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn001(make_export, doc_gateway, [connector(ConnectorType="OnPremises")]))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH
    assert finding.resource == "accepted domain contoso.com"
    assert _points_at(finding, CONNECTORS, "/0/ConnectorType")


def test_conn001_connector_for_specific_sender_domains_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = connector(SenderDomains=["smtp:fabrikam.com;1"])
    finding = _only(_conn001(make_export, doc_gateway, [conn]))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH
    assert finding.resource == "accepted domain contoso.com"
    assert _points_at(finding, CONNECTORS, "/0/SenderDomains")


def test_conn001_connector_without_ip_restriction_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = connector(RestrictDomainsToIPAddresses=False)
    finding = _only(_conn001(make_export, doc_gateway, [conn]))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH
    assert finding.resource == "accepted domain contoso.com"
    assert _points_at(finding, CONNECTORS, "/0/RestrictDomainsToIPAddresses")


def test_conn001_associated_domains_subset_fails_only_uncovered_domain(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = connector(AssociatedAcceptedDomains=["contoso.com"])
    findings = _conn001(make_export, doc_gateway, [conn], domains=("contoso.com", "fabrikam.com"))
    assert statuses(findings) == {("pass", "accepted domain contoso.com"),
                                  ("fail", "accepted domain fabrikam.com")}
    failed = _for(findings, "accepted domain fabrikam.com")
    assert failed.severity is Severity.HIGH
    assert _points_at(failed, DOMAINS, "/1/DomainName")


def test_conn001_lock_to_ips_not_the_gateways_warns_medium(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = connector(SenderIPAddresses=["192.0.2.0/24"])
    finding = _only(_conn001(make_export, doc_gateway, [conn]))
    assert finding.status is Status.WARN
    assert finding.severity is Severity.MEDIUM
    assert finding.resource == "accepted domain contoso.com"
    assert _points_at(finding, CONNECTORS, "/0/SenderIPAddresses")


def test_conn001_transport_rule_lock_only_warns_medium(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn001(make_export, doc_gateway, [], rules=[_lock_rule()]))
    assert finding.status is Status.WARN
    assert finding.severity is Severity.MEDIUM
    assert finding.resource == "accepted domain contoso.com"
    assert _points_at(finding, RULES, "/0/ExceptIfSenderIpRanges")


def test_conn001_disabled_transport_rule_lock_does_not_count(
        make_export: MakeExport, doc_gateway: Path) -> None:
    lock = _lock_rule(State="Disabled")
    finding = _only(_conn001(make_export, doc_gateway, [], rules=[lock]))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH


def test_conn001_no_lock_and_open_scl_bypass_rule_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Trust partner", SetSCL=-1, SenderDomainIs=["partner.example"])
    finding = _only(_conn001(make_export, doc_gateway, [], rules=[bypass]))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.CRITICAL
    assert finding.resource == "accepted domain contoso.com"
    assert _points_at(finding, RULES, "/0/SetSCL")


def test_conn001_gated_scl_rule_does_not_raise_severity(
        make_export: MakeExport, doc_gateway: Path) -> None:
    gated = rule("Gateway SCL", SetSCL=-1, SenderIpRanges=GATEWAY_RANGES)
    finding = _only(_conn001(make_export, doc_gateway, [], rules=[gated]))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH


def test_conn001_rejected_connector_is_not_evaluated_never_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _conn001(make_export, doc_gateway, [connector(Enabled="sometimes")])
    unread = _for(findings, "Gateway inbound")
    assert unread.status is Status.NOT_EVALUATED
    assert unread.evidence[0].file == CONNECTORS
    assert unread.evidence[0].pointer.startswith("/0")
    assert "Enabled" in unread.message
    assert not any(f.status is Status.PASS for f in findings)


# --- CONN-001: legitimate setups pass -------------------------------------------------------


def test_conn001_partner_connector_locked_by_ip_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn001(make_export, doc_gateway, [connector()]))
    assert finding.status is Status.PASS
    assert finding.resource == "accepted domain contoso.com"
    assert _points_at(finding, CONNECTORS, "/0/SenderIPAddresses")


def test_conn001_partner_connector_locked_by_certificate_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = connector(SenderIPAddresses=[], RestrictDomainsToIPAddresses=False,
                     RestrictDomainsToCertificate=True,
                     TlsSenderCertificateName="*.gateway.example")
    finding = _only(_conn001(make_export, doc_gateway, [conn]))
    assert finding.status is Status.PASS
    assert _points_at(finding, CONNECTORS, "/0/TlsSenderCertificateName")


def test_conn001_mimecast_lockdown_connector_autodetected_passes(make_export: MakeExport) -> None:
    files = {"Get-InboundConnector": [connector(Name="Mimecast inbound",
                                                SenderIPAddresses=mimecast_us_ranges())],
             "Get-AcceptedDomain": accepted("contoso.com", "contoso.onmicrosoft.com")}
    findings = _run(make_export, "CONN-001", files)
    assert statuses(findings) == {("pass", "accepted domain contoso.com"),
                                  ("pass", "accepted domain contoso.onmicrosoft.com")}


def test_conn001_outbound_only_domain_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    domains = accepted("contoso.com")
    domains[0]["OutboundOnly"] = True
    files = {"Get-InboundConnector": [], "Get-AcceptedDomain": domains}
    finding = _only(_run(make_export, "CONN-001", files, gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert _points_at(finding, DOMAINS, "/0/OutboundOnly")


# --- CONN-001: missing evidence or gateway --------------------------------------------------


def test_conn001_without_gateway_is_not_evaluated_and_mentions_gateway_option(
        make_export: MakeExport) -> None:
    files = {"Get-InboundConnector": [], "Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_run(make_export, "CONN-001", files))
    assert finding.status is Status.NOT_EVALUATED
    assert "--gateway" in finding.message


def test_conn001_missing_connectors_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    files = {"Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_run(make_export, "CONN-001", files, gateway_file=doc_gateway))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-InboundConnector"
    assert finding.evidence[0].file == CONNECTORS


def test_conn001_missing_accepted_domains_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    files = {"Get-InboundConnector": [connector()]}
    finding = _only(_run(make_export, "CONN-001", files, gateway_file=doc_gateway))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-AcceptedDomain"
    assert finding.evidence[0].file == DOMAINS


# --- CONN-002 -------------------------------------------------------------------------------


def _conn002(make_export: MakeExport, doc_gateway: Path,
             connectors: list[dict[str, Any]]) -> list[Finding]:
    return _run(make_export, "CONN-002", {"Get-InboundConnector": connectors},
                gateway_file=doc_gateway)


def test_conn002_disabled_gateway_connector_fails_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn002(make_export, doc_gateway, [connector(Enabled=False)]))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH
    assert finding.resource == "inbound connector Gateway inbound"
    assert _points_at(finding, CONNECTORS, "/0/Enabled")


def test_conn002_enabled_gateway_connector_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn002(make_export, doc_gateway, [connector()]))
    assert finding.status is Status.PASS
    assert finding.resource == "inbound connector Gateway inbound"


def test_conn002_enabled_mimecast_connector_passes(make_export: MakeExport) -> None:
    conn = connector(Name="Mimecast inbound", SenderIPAddresses=mimecast_us_ranges())
    finding = _only(_run(make_export, "CONN-002", {"Get-InboundConnector": [conn]}))
    assert finding.status is Status.PASS
    assert finding.resource == "inbound connector Mimecast inbound"


def test_conn002_no_gateway_connector_gives_single_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    other = connector(Name="Scanner", Enabled=False, SenderIPAddresses=["192.0.2.10"])
    finding = _only(_conn002(make_export, doc_gateway, [other]))
    assert finding.status is Status.PASS
    assert finding.resource == "inbound connectors"


def test_conn002_missing_connectors_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    files = {"Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_run(make_export, "CONN-002", files, gateway_file=doc_gateway))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-InboundConnector"
    assert finding.evidence[0].file == CONNECTORS


def test_conn002_unreadable_enabled_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _conn002(make_export, doc_gateway, [connector(Enabled="sometimes")])
    unread = _for(findings, "Gateway inbound")
    assert unread.status is Status.NOT_EVALUATED
    assert unread.evidence[0].file == CONNECTORS
    assert "Enabled" in unread.message
    assert not any(f.status is Status.PASS for f in findings)
