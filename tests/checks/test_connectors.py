"""The connector checks: CONN-001 (inbound lockdown per accepted domain), CONN-002 (gateway
connector enabled), CONN-003 (shared certificate trust), CONN-004 (sender IP ranges), CONN-005
(Enhanced Filtering), CONN-006 (outbound routing), CONN-007 (recent changes), CONN-008 (internal
trust flags, overlapping Partner connectors) and CONN-009 (OnPremises connector sources)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditor.cli import main
from auditor.engine import Finding, Severity, Status

from ..conftest import (
    SAMPLES,
    accepted,
    audit,
    connector,
    findings_for,
    mimecast_us_ranges,
    offline,
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
    # The connector already lists only the gateway's ranges: switch the lock on, don't add another.
    assert finding.fix == ("Set-InboundConnector -Identity 'Gateway inbound' "
                           "-RestrictDomainsToIPAddresses $true")


def test_conn001_fix_creates_a_lock_when_no_connector_lists_only_the_gateway(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = connector(RestrictDomainsToIPAddresses=False, SenderIPAddresses=["198.51.100.0/24", "192.0.2.9"])
    finding = _only(_conn001(make_export, doc_gateway, [conn]))
    assert finding.fix is not None and finding.fix.startswith("New-InboundConnector ")


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


def _profile(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'schema_version = 1\nid = "{name}"\nname = "{name}"\nvendor = "Example"\n{body}')
    return path


# --- CONN-003: trust in a certificate name shared by every customer of the gateway -----------

MIMECAST_CERT = "*.mimecast.com"


def _mimecast_cert_connector(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"Name": "Mimecast inbound", "SenderIPAddresses": [],
                             "RestrictDomainsToIPAddresses": False,
                             "RestrictDomainsToCertificate": True,
                             "TlsSenderCertificateName": MIMECAST_CERT}
    props.update(overrides)
    return connector(**props)


def _conn003(make_export: MakeExport, connectors: list[dict[str, Any]],
             gateway_file: Path | None = None) -> list[Finding]:
    return _run(make_export, "CONN-003", {"Get-InboundConnector": connectors},
                gateway_file=gateway_file)


def test_conn003_shared_certificate_without_ip_restriction_warns_with_vendor_guidance(
        make_export: MakeExport) -> None:
    """Any Mimecast customer presents *.mimecast.com: the cert alone does not mean 'our account'."""
    finding = _only(_conn003(make_export, [_mimecast_cert_connector()]))
    assert finding.status is Status.WARN
    assert finding.severity is Severity.MEDIUM
    assert finding.resource == "inbound connector Mimecast inbound"
    assert _points_at(finding, CONNECTORS, "/0/TlsSenderCertificateName")
    assert _points_at(finding, CONNECTORS, "/0/SenderIPAddresses")
    assert "34000358773523" in finding.message  # Mimecast's lockdown guide
    assert "manage-mail-flow-using-third-party-cloud" in finding.message  # Microsoft's warning
    assert finding.fix.startswith("Set-InboundConnector -Identity 'Mimecast inbound' "
                                  "-RestrictDomainsToIPAddresses $true -SenderIPAddresses ")
    assert mimecast_us_ranges()[0].split("/")[0] in finding.fix


def test_conn003_listed_but_unenforced_ips_still_warn_and_fix_only_enforces(
        make_export: MakeExport) -> None:
    conn = _mimecast_cert_connector(SenderIPAddresses=mimecast_us_ranges())
    finding = _only(_conn003(make_export, [conn]))
    assert finding.status is Status.WARN
    assert _points_at(finding, CONNECTORS, "/0/RestrictDomainsToIPAddresses")
    assert finding.fix == ("Set-InboundConnector -Identity 'Mimecast inbound' "
                           "-RestrictDomainsToIPAddresses $true")


def test_conn003_on_premises_connector_with_shared_certificate_is_high(
        make_export: MakeExport) -> None:
    finding = _only(_conn003(make_export, [_mimecast_cert_connector(ConnectorType="OnPremises")]))
    assert finding.status is Status.WARN
    assert finding.severity is Severity.HIGH
    assert "OnPremises" in finding.message


def test_conn003_shared_certificate_plus_gateway_ip_restriction_passes(
        make_export: MakeExport) -> None:
    """Mimecast's lockdown with its IP ranges enforced as well: the vendor's setup, not flagged."""
    conn = _mimecast_cert_connector(SenderIPAddresses=mimecast_us_ranges(),
                                    RestrictDomainsToIPAddresses=True)
    finding = _only(_conn003(make_export, [conn]))
    assert finding.status is Status.PASS
    assert "residual" in finding.message
    assert _points_at(finding, CONNECTORS, "/0/RestrictDomainsToIPAddresses")


def test_conn003_customer_specific_certificate_passes(make_export: MakeExport,
                                                     doc_gateway: Path) -> None:
    conn = connector(SenderIPAddresses=[], RestrictDomainsToIPAddresses=False,
                     RestrictDomainsToCertificate=True, TlsSenderCertificateName="*.gateway.example")
    finding = _only(_conn003(make_export, [conn], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert "not shared" in finding.message


def test_conn003_shared_certificate_in_a_user_profile_warns(make_export: MakeExport,
                                                           tmp_path: Path) -> None:
    shared = _profile(tmp_path, "shared-gw", 'certificate_shared = true\n'
                                             'tls_certificate_names = ["*.shared.example"]\n')
    conn = connector(SenderIPAddresses=[], RestrictDomainsToIPAddresses=False,
                     RestrictDomainsToCertificate=True, TlsSenderCertificateName="*.shared.example")
    finding = _only(_conn003(make_export, [conn], gateway_file=shared))
    assert finding.status is Status.WARN
    assert "<the gateway's delivery IP ranges>" in finding.fix


def test_conn003_disabled_connector_passes(make_export: MakeExport) -> None:
    finding = _only(_conn003(make_export, [_mimecast_cert_connector(Enabled=False)]))
    assert finding.status is Status.PASS
    assert _points_at(finding, CONNECTORS, "/0/Enabled")


def test_conn003_connectors_without_certificate_give_one_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn003(make_export, [connector()], gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.PASS, "inbound connectors")


def test_conn003_unreadable_certificate_name_is_not_evaluated_never_pass(
        make_export: MakeExport) -> None:
    findings = _conn003(make_export, [_mimecast_cert_connector(TlsSenderCertificateName={"x": 1})])
    assert Status.PASS not in {f.status for f in findings}
    unread = _for(findings, "Mimecast inbound")
    assert unread.status is Status.NOT_EVALUATED
    assert "TlsSenderCertificateName" in unread.message


def test_conn003_missing_connectors_file_is_not_evaluated(make_export: MakeExport) -> None:
    finding = _only(_run(make_export, "CONN-003", {"Get-AcceptedDomain": accepted("contoso.com")}))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "Get-InboundConnector")


# --- CONN-004: sender IP ranges that are not the gateway's -----------------------------------


def _conn004(make_export: MakeExport, connectors: list[dict[str, Any]],
             gateway_file: Path | None = None, gateway: str | None = None) -> list[Finding]:
    return _run(make_export, "CONN-004", {"Get-InboundConnector": connectors},
                gateway_file=gateway_file, gateway=gateway)


def test_conn004_unknown_range_on_the_lock_connector_fails_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """An extra range on the lockdown connector is a door around the gateway."""
    conn = connector(SenderIPAddresses=[*GATEWAY_RANGES, "192.0.2.0/24"])
    finding = _only(_conn004(make_export, [conn], gateway_file=doc_gateway))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH
    assert finding.resource == "inbound connector Gateway inbound: 192.0.2.0/24"
    assert [(e.file, e.pointer) for e in finding.evidence] == [(CONNECTORS, "/0/SenderIPAddresses/2")]
    assert finding.fix == ("Set-InboundConnector -Identity 'Gateway inbound' "
                           "-SenderIPAddresses @{Remove='192.0.2.0/24'}")


@pytest.mark.parametrize(
    ("entry", "status", "severity"),
    [
        ("10.0.0.0/8", Status.FAIL, Severity.CRITICAL),
        ("0.0.0.0-127.255.255.255", Status.FAIL, Severity.CRITICAL),
        ("172.16.0.0/16", Status.FAIL, Severity.HIGH),
        ("192.0.2.0/24", Status.WARN, Severity.MEDIUM),
        ("192.0.2.45", Status.WARN, Severity.MEDIUM),
    ],
)
def test_conn004_unknown_range_on_other_connector_follows_width(
        make_export: MakeExport, doc_gateway: Path, entry: str, status: Status,
        severity: Severity) -> None:
    relay = connector(Name="Scanner relay", ConnectorType="OnPremises",
                      RestrictDomainsToIPAddresses=False, SenderIPAddresses=[entry])
    finding = _only(_conn004(make_export, [relay], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (status, severity)
    assert finding.resource == f"inbound connector Scanner relay: {entry}"
    assert finding.evidence[0].pointer == "/0/SenderIPAddresses/0"


def test_conn004_exchange_online_range_is_critical(make_export: MakeExport,
                                                   doc_gateway: Path) -> None:
    conn = connector(SenderIPAddresses=[*GATEWAY_RANGES, "40.107.0.0/16"])
    finding = _only(_conn004(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.CRITICAL)
    assert "Exchange Online" in finding.message


def test_conn004_other_vendors_range_fails_high(make_export: MakeExport, doc_gateway: Path) -> None:
    conn = connector(SenderIPAddresses=[*GATEWAY_RANGES, "209.222.80.0/24"])
    finding = _only(_conn004(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "Barracuda" in finding.message


def test_conn004_gateway_ranges_pass(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn004(make_export, [connector()], gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.PASS, "inbound connector Gateway inbound")


def test_conn004_mimecast_ranges_autodetected_pass(make_export: MakeExport) -> None:
    conn = connector(Name="Mimecast inbound", SenderIPAddresses=mimecast_us_ranges())
    finding = _only(_conn004(make_export, [conn]))
    assert finding.status is Status.PASS


def test_conn004_relay_documented_in_user_profile_passes_next_to_the_gateway(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """--gateway mimecast --gateway-file relay.toml: the user vouches for the relay's addresses."""
    gateway = connector(Name="Mimecast inbound", SenderIPAddresses=mimecast_us_ranges())
    relay = connector(Name="Relay", ConnectorType="OnPremises", RestrictDomainsToIPAddresses=False,
                      SenderIPAddresses=["198.51.100.7"])
    findings = _conn004(make_export, [gateway, relay], gateway_file=doc_gateway, gateway="mimecast")
    assert statuses(findings) == {("pass", "inbound connector Mimecast inbound"),
                                  ("pass", "inbound connector Relay")}


def test_conn004_certificate_only_connector_passes(make_export: MakeExport,
                                                   doc_gateway: Path) -> None:
    conn = connector(SenderIPAddresses=[], RestrictDomainsToIPAddresses=False,
                     RestrictDomainsToCertificate=True, TlsSenderCertificateName="*.gateway.example")
    finding = _only(_conn004(make_export, [conn], gateway_file=doc_gateway))
    assert finding.status is Status.PASS


def test_conn004_disabled_connector_with_unknown_range_is_low(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = connector(Enabled=False, SenderIPAddresses=["192.0.2.0/24"])
    finding = _only(_conn004(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.LOW)


def test_conn004_unparsable_entry_warns(make_export: MakeExport, doc_gateway: Path) -> None:
    conn = connector(SenderIPAddresses=[*GATEWAY_RANGES, "192.0.2.300"])
    finding = _only(_conn004(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)
    assert finding.evidence[0].pointer == "/0/SenderIPAddresses/2"


def test_conn004_without_gateway_only_warns_and_names_the_option(make_export: MakeExport) -> None:
    conn = connector(SenderIPAddresses=["192.0.2.0/24"])
    finding = _only(_conn004(make_export, [conn]))
    assert finding.status is Status.WARN
    assert "--gateway" in finding.message


def test_conn004_no_connectors_gives_one_pass(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn004(make_export, [], gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.PASS, "inbound connectors")


def test_conn004_missing_connectors_file_is_not_evaluated(make_export: MakeExport,
                                                         doc_gateway: Path) -> None:
    files = {"Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_run(make_export, "CONN-004", files, gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "Get-InboundConnector")


# --- CONN-005: Enhanced Filtering for Connectors ---------------------------------------------


def _conn005(make_export: MakeExport, connectors: list[dict[str, Any]],
             gateway_file: Path | None = None, gateway: str | None = None) -> list[Finding]:
    return _run(make_export, "CONN-005", {"Get-InboundConnector": connectors},
                gateway_file=gateway_file, gateway=gateway)


def _ef(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"EFSkipLastIP": False, "EFSkipIPs": GATEWAY_RANGES, "EFUsers": [],
                             "EFTestMode": False}
    props.update(overrides)
    return connector(**props)


def test_conn005_enhanced_filtering_off_fails_medium(make_export: MakeExport,
                                                    doc_gateway: Path) -> None:
    finding = _only(_conn005(make_export, [_ef(EFSkipIPs=[])], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.MEDIUM)
    assert finding.resource == "inbound connector Gateway inbound"
    assert _points_at(finding, CONNECTORS, "/0/EFSkipLastIP")
    assert _points_at(finding, CONNECTORS, "/0/EFSkipIPs")
    assert finding.fix == "Set-InboundConnector -Identity 'Gateway inbound' -EFSkipLastIP $true"


def test_conn005_skip_list_beyond_the_gateway_fails_high(make_export: MakeExport,
                                                        doc_gateway: Path) -> None:
    conn = _ef(EFSkipIPs=[*GATEWAY_RANGES, "192.0.2.0/24"])
    finding = _only(_conn005(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert _points_at(finding, CONNECTORS, "/0/EFSkipIPs/2")
    assert "@{Remove='192.0.2.0/24'}" in finding.fix


def test_conn005_exchange_online_range_in_skip_list_fails(make_export: MakeExport,
                                                         doc_gateway: Path) -> None:
    conn = _ef(EFSkipIPs=[*GATEWAY_RANGES, "40.107.0.0/16"])
    finding = _only(_conn005(make_export, [conn], gateway_file=doc_gateway))
    assert finding.status is Status.FAIL
    assert "Exchange Online" in finding.message


def test_conn005_private_range_in_skip_list_is_low(make_export: MakeExport,
                                                  doc_gateway: Path) -> None:
    conn = _ef(EFSkipIPs=[*GATEWAY_RANGES, "10.1.0.0/16"])
    finding = _only(_conn005(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.LOW)


def test_conn005_some_recipients_only_warns(make_export: MakeExport, doc_gateway: Path) -> None:
    conn = _ef(EFUsers=["ceo@contoso.com"])
    finding = _only(_conn005(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)
    assert _points_at(finding, CONNECTORS, "/0/EFUsers")
    assert finding.fix == "Set-InboundConnector -Identity 'Gateway inbound' -EFUsers $null"


def test_conn005_test_mode_warns(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn005(make_export, [_ef(EFTestMode=True)], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)
    assert _points_at(finding, CONNECTORS, "/0/EFTestMode")


def test_conn005_several_problems_make_one_result_with_the_worst(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = _ef(EFTestMode=True, EFSkipIPs=["192.0.2.0/24"])
    finding = _only(_conn005(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "EFTestMode" in finding.message and "192.0.2.0/24" in finding.message


@pytest.mark.parametrize("settings", [{"EFSkipLastIP": True, "EFSkipIPs": []},
                                      {"EFSkipLastIP": False, "EFSkipIPs": GATEWAY_RANGES},
                                      {"EFSkipLastIP": True, "EFSkipIPs": ["192.0.2.0/24"]}])
def test_conn005_skip_listing_the_gateway_passes(make_export: MakeExport, doc_gateway: Path,
                                                 settings: dict[str, Any]) -> None:
    """Microsoft's recommendation; EFSkipIPs is ignored while EFSkipLastIP is $true."""
    finding = _only(_conn005(make_export, [_ef(**settings)], gateway_file=doc_gateway))
    assert finding.status is Status.PASS


def test_conn005_rest_sample_connector_skip_listing_its_ranges_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """The vendored admin-API sample: skip-lists exactly the (documentation) gateway ranges."""
    data = (SAMPLES / "Get-InboundConnector.json").read_bytes()
    findings = _run(make_export, "CONN-005", {"Get-InboundConnector": data},
                    gateway_file=doc_gateway)
    assert statuses(findings) == {("pass", "inbound connector Mimecast Inbound")}


def test_conn005_without_gateway_is_not_evaluated(make_export: MakeExport) -> None:
    """Skip listing is only needed when another hop sits in front of Exchange Online."""
    finding = _only(_conn005(make_export, [_ef(EFSkipIPs=[], SenderIPAddresses=["192.0.2.0/24"])]))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "gateway")
    assert "--gateway" in finding.message


def test_conn005_api_only_gateway_passes_as_not_needed(make_export: MakeExport,
                                                      tmp_path: Path) -> None:
    api = _profile(tmp_path, "api-gw", 'deployment = "api"\n')
    finding = _only(_conn005(make_export, [_ef(EFSkipIPs=[])], gateway_file=api))
    assert (finding.status, finding.resource) == (Status.PASS, "gateway")
    assert "not needed" in finding.message


def test_conn005_no_gateway_connector_fails(make_export: MakeExport, doc_gateway: Path) -> None:
    other = connector(Name="Partner", SenderIPAddresses=["192.0.2.0/24"])
    finding = _only(_conn005(make_export, [other], gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.FAIL, "inbound connectors")
    assert "-EFSkipLastIP $true" in finding.fix


def test_conn005_disabled_gateway_connector_warns(make_export: MakeExport,
                                                 doc_gateway: Path) -> None:
    finding = _only(_conn005(make_export, [_ef(Enabled=False)], gateway_file=doc_gateway))
    assert finding.status is Status.WARN
    assert _points_at(finding, CONNECTORS, "/0/Enabled")


def test_conn005_export_without_ef_properties_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_conn005(make_export, [connector()], gateway_file=doc_gateway))
    assert finding.status is Status.NOT_EVALUATED
    assert "EFSkipLastIP" in finding.message


def test_conn005_unreadable_skip_last_ip_is_not_evaluated(make_export: MakeExport,
                                                         doc_gateway: Path) -> None:
    findings = _conn005(make_export, [_ef(EFSkipLastIP="maybe")], gateway_file=doc_gateway)
    assert Status.PASS not in {f.status for f in findings}
    assert _for(findings, "Gateway inbound").status is Status.NOT_EVALUATED


def test_conn005_missing_connectors_file_is_not_evaluated(make_export: MakeExport,
                                                         doc_gateway: Path) -> None:
    files = {"Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_run(make_export, "CONN-005", files, gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "Get-InboundConnector")


# --- CONN-006: outbound routing around the gateway -------------------------------------------

OUTBOUND = "exo/Get-OutboundConnector.json"


def _outbound(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"Name": "Outbound to gateway", "Enabled": True, "UseMXRecord": False,
                             "ConnectorType": "Partner", "RecipientDomains": ["*"],
                             "SmartHosts": ["outbound.gateway.example"],
                             "IsTransportRuleScoped": False, "TlsSettings": "CertificateValidation",
                             "WhenChanged": "2025-01-01T00:00:00Z"}
    props.update(overrides)
    return props


def _route_rule(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"RouteMessageOutboundConnector": "Side door",
                             "SentTo": ["ceo@contoso.com"]}
    props.update(overrides)
    return rule("Route to side door", **props)


def _conn006(make_export: MakeExport, connectors: list[dict[str, Any]],
             rules: list[dict[str, Any]] | None = None, gateway_file: Path | None = None,
             gateway: str | None = None) -> list[Finding]:
    files: dict[str, Any] = {"Get-OutboundConnector": connectors}
    if rules is not None:
        files["Get-TransportRule"] = rules
    return _run(make_export, "CONN-006", files, gateway_file=gateway_file, gateway=gateway)


def test_conn006_unknown_smart_host_for_all_domains_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = _outbound(Name="Side door", SmartHosts=["relay.attacker.example"])
    finding = _only(_conn006(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.CRITICAL)
    assert finding.resource == "outbound connector Side door"
    assert _points_at(finding, OUTBOUND, "/0/SmartHosts/0")
    assert finding.fix == "Set-OutboundConnector -Identity 'Side door' -Enabled $false"


def test_conn006_unknown_smart_host_for_some_domains_is_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = _outbound(Name="Side door", SmartHosts=["192.0.2.25"], RecipientDomains=["fabrikam.com"])
    finding = _only(_conn006(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "fabrikam.com" in finding.message


def test_conn006_rule_scoped_to_a_few_recipients_fails_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """The quiet variant: only the CEO's mail takes the side door."""
    conn = _outbound(Name="Side door", SmartHosts=["relay.attacker.example"], RecipientDomains=[],
                     IsTransportRuleScoped=True)
    finding = _only(_conn006(make_export, [conn], rules=[_route_rule()], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert _points_at(finding, RULES, "/0/RouteMessageOutboundConnector")
    assert _points_at(finding, OUTBOUND, "/0/IsTransportRuleScoped")
    assert "Disable-TransportRule -Identity 'Route to side door'" in finding.fix


def test_conn006_rule_routing_every_message_is_critical(make_export: MakeExport,
                                                       doc_gateway: Path) -> None:
    conn = _outbound(Name="Side door", SmartHosts=["relay.attacker.example"], RecipientDomains=[],
                     IsTransportRuleScoped=True)
    everything = _route_rule(SentTo=[])
    finding = _only(_conn006(make_export, [conn], rules=[everything], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.CRITICAL)
    assert "your own mailboxes" in finding.message


def test_conn006_rule_scoped_connector_with_only_disabled_rules_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = _outbound(Name="Side door", SmartHosts=["relay.attacker.example"], RecipientDomains=[],
                     IsTransportRuleScoped=True)
    finding = _only(_conn006(make_export, [conn], rules=[_route_rule(State="Disabled")],
                             gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert _points_at(finding, RULES, "/0/State")


def test_conn006_rule_scoped_connector_without_rules_evidence_warns(
        make_export: MakeExport, doc_gateway: Path) -> None:
    conn = _outbound(Name="Side door", SmartHosts=["relay.attacker.example"], RecipientDomains=[],
                     IsTransportRuleScoped=True)
    finding = _only(_conn006(make_export, [conn], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.HIGH)
    assert "not collected" in finding.message


def test_conn006_disabled_gateway_outbound_connector_fails(make_export: MakeExport,
                                                          doc_gateway: Path) -> None:
    finding = _only(_conn006(make_export, [_outbound(Enabled=False)], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert _points_at(finding, OUTBOUND, "/0/Enabled")
    assert finding.fix == "Set-OutboundConnector -Identity 'Outbound to gateway' -Enabled $true"


def test_conn006_disabled_spare_gateway_connector_passes_next_to_an_enabled_one(
        make_export: MakeExport, doc_gateway: Path) -> None:
    spare = _outbound(Name="Old outbound", Enabled=False)
    findings = _conn006(make_export, [_outbound(), spare], gateway_file=doc_gateway)
    assert statuses(findings) == {("pass", "outbound connector Outbound to gateway"),
                                  ("pass", "outbound connector Old outbound")}


def test_conn006_gateway_outbound_connector_passes(make_export: MakeExport,
                                                  doc_gateway: Path) -> None:
    finding = _only(_conn006(make_export, [_outbound()], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert _points_at(finding, OUTBOUND, "/0/SmartHosts")


def test_conn006_mimecast_sample_connectors_pass(make_export: MakeExport) -> None:
    """The vendored REST sample: Mimecast relay plus a rule-scoped connector whose rule is off."""
    findings = _run(make_export, "CONN-006", {
        "Get-OutboundConnector": (SAMPLES / "Get-OutboundConnector.json").read_bytes(),
        "Get-TransportRule": (SAMPLES / "Get-TransportRule.json").read_bytes()})
    assert statuses(findings) == {("pass", "outbound connector Outbound to Mimecast"),
                                  ("pass", "outbound connector Legal Partner Outbound")}


def test_conn006_journaling_connector_to_the_gateways_archive_passes(make_export: MakeExport) -> None:
    """Mimecast's journaling guide: journal reports relayed to its journal hosts for the archive."""
    journal = _outbound(Name="Mimecast Journaling", RecipientDomains=["journal.contoso.com"],
                        SmartHosts=["us-smtp-journal-1.mimecast.com"])
    rogue = _outbound(Name="Lookalike", RecipientDomains=["journal.contoso.com"],
                      SmartHosts=["smtp-journal.mimecast-archive.example"])
    found = _conn006(make_export, [journal, rogue], gateway="mimecast")
    assert statuses(found) == {("pass", "outbound connector Mimecast Journaling"),
                               ("fail", "outbound connector Lookalike")}
    journaling = next(f for f in found if f.status is Status.PASS)
    assert "archive (journaling) service of Mimecast" in journaling.message


def test_conn006_partner_tls_connector_via_mx_passes(make_export: MakeExport,
                                                    doc_gateway: Path) -> None:
    tls = _outbound(Name="TLS to fabrikam", UseMXRecord=True, SmartHosts=[],
                    RecipientDomains=["fabrikam.com"], TlsSettings="DomainValidation")
    finding = _only(_conn006(make_export, [tls], gateway_file=doc_gateway))
    assert finding.status is Status.PASS


def test_conn006_smart_host_documented_in_user_profile_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    partner = _outbound(Name="Partner relay", RecipientDomains=["fabrikam.com"])
    finding = _only(_conn006(make_export, [partner], gateway_file=doc_gateway, gateway="mimecast"))
    assert finding.status is Status.PASS


def test_conn006_on_premises_connector_to_unknown_host_warns_low(
        make_export: MakeExport, doc_gateway: Path) -> None:
    hybrid = _outbound(Name="Outbound to on-premises", ConnectorType="OnPremises",
                       SmartHosts=["mail.contoso.com"], RecipientDomains=["contoso.com"])
    finding = _only(_conn006(make_export, [hybrid], gateway_file=doc_gateway))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.LOW)


def test_conn006_without_gateway_unknown_host_warns_and_names_the_option(
        make_export: MakeExport) -> None:
    finding = _only(_conn006(make_export, [_outbound(SmartHosts=["relay.example"])]))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)
    assert "--gateway" in finding.message


def test_conn006_no_outbound_connectors_gives_one_pass(make_export: MakeExport,
                                                      doc_gateway: Path) -> None:
    finding = _only(_conn006(make_export, [], gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.PASS, "outbound connectors")


def test_conn006_unreadable_enabled_is_not_evaluated_never_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _conn006(make_export, [_outbound(Enabled="sometimes")], gateway_file=doc_gateway)
    assert Status.PASS not in {f.status for f in findings}
    assert _for(findings, "Outbound to gateway").status is Status.NOT_EVALUATED


def test_conn006_missing_outbound_file_is_not_evaluated(make_export: MakeExport,
                                                       doc_gateway: Path) -> None:
    finding = _only(_run(make_export, "CONN-006", {"Get-TransportRule": []},
                         gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "Get-OutboundConnector")


# --- CONN-007: connectors and rules created or changed recently ------------------------------

COLLECTED = {"collected_at": "2026-11-20T09:14:03Z"}


def _changes(inbound: list[dict[str, Any]] | None = None,
             outbound: list[dict[str, Any]] | None = None,
             rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"export": COLLECTED, "Get-InboundConnector": inbound or [],
            "Get-OutboundConnector": outbound or [], "Get-TransportRule": rules or []}


def _conn007(make_export: MakeExport, files: dict[str, Any]) -> list[Finding]:
    return _run(make_export, "CONN-007", files)


def test_conn007_connector_changed_within_window_is_listed(make_export: MakeExport) -> None:
    conn = connector(WhenChanged="2026-11-10T08:00:00Z", WhenCreated="2021-01-25T10:12:44Z")
    finding = _only(_conn007(make_export, _changes(inbound=[conn])))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.INFO)
    assert finding.resource == "inbound connector Gateway inbound"
    assert finding.message.startswith("changed on 2026-11-10 08:00 UTC, 10 day(s)")
    assert [(e.file, e.pointer) for e in finding.evidence] == [(CONNECTORS, "/0/WhenChanged")]
    assert finding.fix.startswith("Search-UnifiedAuditLog -StartDate '2026-11-09' "
                                  "-EndDate '2026-11-21' -Operations New-InboundConnector")


def test_conn007_new_outbound_connector_is_listed_as_created(make_export: MakeExport) -> None:
    conn = _outbound(WhenChanged="2026-11-19T08:00:00Z", WhenCreated="2026-11-18T08:00:00Z")
    finding = _only(_conn007(make_export, _changes(outbound=[conn])))
    assert finding.status is Status.WARN
    assert finding.message.startswith("created on 2026-11-18")
    assert _points_at(finding, OUTBOUND, "/0/WhenCreated")


def test_conn007_rule_changed_recently_names_who(make_export: MakeExport) -> None:
    changed = rule("Allow partner", WhenChanged="2026-11-01T12:00:00+01:00", LastModifiedBy="Eve")
    finding = _only(_conn007(make_export, _changes(rules=[changed])))
    assert finding.status is Status.WARN
    assert finding.resource == "transport rule Allow partner"
    assert "2026-11-01 11:00 UTC" in finding.message and "Eve" in finding.message


def test_conn007_old_changes_pass(make_export: MakeExport) -> None:
    findings = _conn007(make_export, _changes(
        inbound=[connector()], outbound=[_outbound()],
        rules=[rule("Old", WhenChanged="2024-01-01T00:00:00Z")]))
    assert statuses(findings) == {("pass", "inbound connector Gateway inbound"),
                                  ("pass", "outbound connector Outbound to gateway"),
                                  ("pass", "transport rule Old")}


def test_conn007_rest_sample_without_when_changed_uses_the_utc_property(
        make_export: MakeExport) -> None:
    """The admin API's outbound connectors carry WhenChangedUTC only."""
    files = _changes()
    files["Get-OutboundConnector"] = (SAMPLES / "Get-OutboundConnector.json").read_bytes()
    findings = _conn007(make_export, files)
    legal = _for(findings, "outbound connector Legal Partner Outbound")
    assert legal.status is Status.PASS
    assert legal.evidence[0].pointer == "/value/1/WhenChangedUTC"


def test_conn007_object_without_when_changed_is_not_evaluated(make_export: MakeExport) -> None:
    findings = _conn007(make_export, _changes(
        inbound=[connector(WhenChanged=None)], rules=[rule("Recent", WhenChanged="2026-11-19")]))
    assert statuses(findings) == {("not_evaluated", "inbound connector Gateway inbound"),
                                  ("warn", "transport rule Recent")}


def test_conn007_unreadable_when_changed_is_not_evaluated(make_export: MakeExport) -> None:
    findings = _conn007(make_export, _changes(rules=[rule("Odd", WhenChanged="last Tuesday")]))
    assert Status.PASS not in {f.status for f in findings}
    unread = _for(findings, "Odd")
    assert unread.status is Status.NOT_EVALUATED
    assert "WhenChanged" in unread.message


def test_conn007_nothing_to_review_gives_one_pass(make_export: MakeExport) -> None:
    finding = _only(_conn007(make_export, _changes()))
    assert (finding.status, finding.resource) == (Status.PASS, "connectors and transport rules")


def test_conn007_missing_rules_file_is_not_evaluated(make_export: MakeExport) -> None:
    files = _changes(inbound=[connector(WhenChanged="2026-11-19T00:00:00Z")])
    del files["Get-TransportRule"]
    finding = _only(_conn007(make_export, files))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "Get-TransportRule")


def _cli_conn007(folder: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> set[tuple[str, str]]:
    main(offline(["audit", str(folder), "--format", "json", *extra]))
    report = json.loads(capsys.readouterr().out)
    return {(f["status"], f["resource"]) for f in report["findings"] if f["check_id"] == "CONN-007"}


def test_conn007_changed_within_option_widens_the_window_through_the_cli(
        make_export: MakeExport, capsys: pytest.CaptureFixture[str]) -> None:
    """A change 45 days old is outside the default 30-day window and inside --changed-within 60."""
    folder = make_export(_changes(inbound=[connector(WhenChanged="2026-10-06T09:00:00Z")]))
    assert _cli_conn007(folder, capsys) == {("pass", "inbound connector Gateway inbound")}
    assert _cli_conn007(folder, capsys, "--changed-within", "60") == {
        ("warn", "inbound connector Gateway inbound")}


# --- CONN-008: internal-trust flags and overlapping Partner connectors -----------------------

HYBRID = {"Name": "Inbound from 6c1b8f0e", "Enabled": True, "ConnectorType": "OnPremises",
          "ConnectorSource": "HybridWizard", "SenderDomains": ["smtp:*;1"], "SenderIPAddresses": [],
          "TlsSenderCertificateName": "mail.contoso.com", "RequireTls": True,
          "AssociatedAcceptedDomains": [], "CloudServicesMailEnabled": True,
          "TreatMessagesAsInternal": False}


def _internal(make_export: MakeExport, doc_gateway: Path | None,
              connectors: list[dict[str, Any]], check_id: str = "CONN-008") -> list[Finding]:
    files = {"Get-InboundConnector": connectors, "Get-AcceptedDomain": accepted("contoso.com")}
    return _run(make_export, check_id, files, gateway_file=doc_gateway)


def _flags(**flags: Any) -> dict[str, Any]:
    return connector(**{"TreatMessagesAsInternal": False, "CloudServicesMailEnabled": False, **flags})


def test_conn008_treat_as_internal_on_the_gateway_partner_connector_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _internal(make_export, doc_gateway, [_flags(TreatMessagesAsInternal=True)])
    finding = _for(findings, "inbound connector Gateway inbound")
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "treated as internal" in finding.message
    assert any(e.pointer == "/0/TreatMessagesAsInternal" for e in finding.evidence)
    assert finding.fix == "Set-InboundConnector -Identity 'Gateway inbound' -TreatMessagesAsInternal $false"


def test_conn008_cloud_services_mail_on_a_partner_connector_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _internal(make_export, doc_gateway, [_flags(CloudServicesMailEnabled=True)])
    finding = _for(findings, "inbound connector Gateway inbound")
    assert finding.status is Status.FAIL
    assert "X-MS-Exchange-Organization-*" in finding.message


def test_conn008_hybrid_connector_from_own_servers_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """The Hybrid Configuration wizard sets CloudServicesMailEnabled; TreatMessagesAsInternal is
    Microsoft's documented option for own on-premises servers that are not Exchange."""
    relay = {**HYBRID, "Name": "From on-premises relay", "ConnectorSource": "Default",
             "TlsSenderCertificateName": None, "SenderIPAddresses": ["10.20.0.0/24"],
             "CloudServicesMailEnabled": False, "TreatMessagesAsInternal": True}
    findings = _internal(make_export, doc_gateway, [_flags(), HYBRID, relay])
    assert statuses(findings) == {("pass", "inbound connector Gateway inbound"),
                                  ("pass", "inbound connector Inbound from 6c1b8f0e"),
                                  ("pass", "inbound connector From on-premises relay"),
                                  ("pass", "inbound Partner connectors")}
    hybrid = _for(findings, "inbound connector Inbound from 6c1b8f0e")
    assert "Hybrid Configuration wizard" in hybrid.message


def test_conn008_flags_on_an_onpremises_connector_from_outside_fail(
        make_export: MakeExport, doc_gateway: Path) -> None:
    foreign = {**HYBRID, "TlsSenderCertificateName": "relay.attacker.example"}
    finding = _for(_internal(make_export, doc_gateway, [foreign]), "inbound connector Inbound from 6c1b8f0e")
    assert finding.status is Status.FAIL
    assert "relay.attacker.example" in finding.message


def test_conn008_disabled_connector_with_flags_is_a_low_warning(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _internal(make_export, doc_gateway, [_flags(Enabled=False, TreatMessagesAsInternal=True)])
    finding = _for(findings, "inbound connector Gateway inbound")
    assert (finding.status, finding.severity) == (Status.WARN, Severity.LOW)


def test_conn008_flags_absent_from_the_export_are_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _internal(make_export, doc_gateway, [connector()])
    finding = _for(findings, "inbound connector Gateway inbound")
    assert finding.status is Status.NOT_EVALUATED
    unreadable = _internal(make_export, doc_gateway, [_flags(TreatMessagesAsInternal="perhaps")])
    assert not any(f.status is Status.PASS for f in unreadable)
    assert any(f.status is Status.NOT_EVALUATED and "TreatMessagesAsInternal" in f.message
               for f in unreadable)


def test_conn008_two_restricting_partner_connectors_during_a_migration_warn_low(
        make_export: MakeExport, doc_gateway: Path) -> None:
    old = _flags(Name="Old gateway", SenderIPAddresses=["192.0.2.0/24"])
    finding = _for(_internal(make_export, doc_gateway, [_flags(), old]),
                   "inbound connectors Gateway inbound and Old gateway")
    assert (finding.status, finding.severity) == (Status.WARN, Severity.LOW)
    assert "moving from one gateway to another" in finding.message


def test_conn008_unrestricted_partner_connector_overlapping_the_lock_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    loose = _flags(Name="Partner relay", SenderIPAddresses=["192.0.2.0/24"],
                   RestrictDomainsToIPAddresses=False)
    finding = _for(_internal(make_export, doc_gateway, [_flags(), loose]),
                   "inbound connectors Gateway inbound and Partner relay")
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.MEDIUM)
    assert finding.fix == "Set-InboundConnector -Identity 'Partner relay' -Enabled $false"


def test_conn008_partner_connectors_with_disjoint_or_narrower_scopes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """Connectors for different accepted domains do not overlap; a partner's own connector (its
    sender domain only) beside the gateway lock does, and is a warning, not a failure."""
    partner = _flags(Name="Fabrikam TLS", SenderDomains=["smtp:fabrikam.example;1"],
                     RestrictDomainsToIPAddresses=False, SenderIPAddresses=[])
    other_domain = _flags(Name="Subsidiary gateway", AssociatedAcceptedDomains=["northwind.example"])
    scoped = _flags(Name="Main gateway", AssociatedAcceptedDomains=["contoso.com"])
    findings = _internal(make_export, doc_gateway, [scoped, other_domain])
    assert ("pass", "inbound Partner connectors") in statuses(findings)
    restricted = _flags(Name="Fabrikam TLS", SenderDomains=["smtp:fabrikam.example;1"],
                        RestrictDomainsToCertificate=True, TlsSenderCertificateName="mail.fabrikam.example")
    findings = _internal(make_export, doc_gateway, [_flags(), restricted])
    assert [(f.status, f.severity) for f in findings if f.resource.startswith("inbound connectors ")] == [
        (Status.WARN, Severity.LOW)]
    findings = _internal(make_export, doc_gateway, [_flags(), partner])
    narrower = _for(findings, "inbound connectors Gateway inbound and Fabrikam TLS")
    assert (narrower.status, narrower.severity) == (Status.WARN, Severity.MEDIUM)
    assert "-TlsSenderCertificateName" in narrower.fix
    assert ("pass", "inbound Partner connectors") not in statuses(
        _internal(make_export, doc_gateway, [_flags(), _flags(Name="Copy")]))


def test_conn008_missing_connectors_is_not_evaluated(make_export: MakeExport, doc_gateway: Path) -> None:
    files = {"Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_run(make_export, "CONN-008", files, gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "Get-InboundConnector")


# --- CONN-009: OnPremises connectors and whose servers they trust ---------------------------


def _onprem(**overrides: Any) -> dict[str, Any]:
    base = {**HYBRID, "Name": "From on-premises", "ConnectorSource": "Default",
            "CloudServicesMailEnabled": False}
    base.update(overrides)
    return base


def test_conn009_onpremises_connector_from_unknown_addresses_fails_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """Microsoft's September 2022 case: an attacker-added connector relaying as the victim."""
    rogue = _onprem(Name="Relay", TlsSenderCertificateName=None, SenderIPAddresses=["192.0.2.10/32"])
    finding = _only(_internal(make_export, doc_gateway, [rogue], "CONN-009"))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "192.0.2.10/32" in finding.message
    assert any(e.pointer == "/0/SenderIPAddresses/0" for e in finding.evidence)
    assert finding.fix == "Set-InboundConnector -Identity 'Relay' -Enabled $false"


def test_conn009_certificate_outside_the_accepted_domains_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_internal(make_export, doc_gateway,
                              [_onprem(TlsSenderCertificateName="mx.hoster.example")], "CONN-009"))
    assert finding.status is Status.FAIL


def test_conn009_own_servers_pass(make_export: MakeExport, doc_gateway: Path) -> None:
    by_certificate = _onprem()
    wildcard = _onprem(Name="Wildcard", TlsSenderCertificateName="*.contoso.com")
    private = _onprem(Name="Private relay", TlsSenderCertificateName=None,
                      SenderIPAddresses=["192.168.10.0/24"])
    findings = _internal(make_export, doc_gateway, [by_certificate, wildcard, private, connector()],
                         "CONN-009")
    assert statuses(findings) == {("pass", "inbound connector From on-premises"),
                                  ("pass", "inbound connector Wildcard"),
                                  ("pass", "inbound connector Private relay")}


def test_conn009_addresses_documented_in_a_profile_file_are_own_servers(
        make_export: MakeExport, tmp_path: Path) -> None:
    """--gateway mimecast with a profile file documenting the on-premises relay's public range."""
    profile = tmp_path / "own.toml"
    profile.write_text('schema_version = 1\nid = "contoso-onprem"\nname = "Contoso on-premises"\n'
                       'vendor = "Contoso"\n[[ip_ranges]]\ncidrs = ["192.0.2.0/24"]\n')
    relay = _onprem(TlsSenderCertificateName=None, SenderIPAddresses=["192.0.2.10/32"])
    files = {"Get-InboundConnector": [relay], "Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_run(make_export, "CONN-009", files, gateway_file=profile, gateway="mimecast"))
    assert finding.status is Status.PASS
    assert "your profile file" in finding.message


def test_conn009_gateway_addresses_on_an_onpremises_connector_warn_medium(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """Some vendors document this for integrated modes: a truthful warning, not a failure."""
    vendor = _onprem(Name="From gateway", TlsSenderCertificateName=None, SenderIPAddresses=GATEWAY_RANGES)
    finding = _only(_internal(make_export, doc_gateway, [vendor], "CONN-009"))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)
    assert "anti-pattern" in finding.message
    assert finding.fix == "Set-InboundConnector -Identity 'From gateway' -ConnectorType Partner"


def test_conn009_disabled_connector_and_no_onpremises_connector_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    rogue = _onprem(Enabled=False, TlsSenderCertificateName="relay.attacker.example")
    assert _only(_internal(make_export, doc_gateway, [rogue], "CONN-009")).status is Status.PASS
    none = _only(_internal(make_export, doc_gateway, [connector()], "CONN-009"))
    assert (none.status, none.resource) == (Status.PASS, "inbound OnPremises connectors")


def test_conn009_unknown_type_is_not_evaluated(make_export: MakeExport, doc_gateway: Path) -> None:
    untyped = _onprem()
    del untyped["ConnectorType"]
    finding = _only(_internal(make_export, doc_gateway, [untyped], "CONN-009"))
    assert finding.status is Status.NOT_EVALUATED


def test_conn009_missing_accepted_domains_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    files = {"Get-InboundConnector": [_onprem()]}
    finding = _only(_run(make_export, "CONN-009", files, gateway_file=doc_gateway))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "Get-AcceptedDomain")
