"""ORG-001: Direct Send allowed while inbound mail is not locked to the gateway."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.engine import Finding, Severity, Status

from ..conftest import accepted, audit, connector, findings_for, rule

MakeExport = Callable[..., Path]
ORG = "exo/Get-OrganizationConfig.json"
GATEWAY_RANGES = ["198.51.100.0/24", "203.0.113.0/25"]
FROM_SCOPE = "Microsoft.Exchange.MessagingPolicies.Rules.Tasks.FromScopePredicate"
_ABSENT = object()


def _org(reject: Any = _ABSENT) -> list[dict[str, Any]]:
    config: dict[str, Any] = {"Name": "contoso.onmicrosoft.com", "DisplayName": "Contoso"}
    if reject is not _ABSENT:
        config["RejectDirectSend"] = reject
    return [config]


def _run(make_export: MakeExport, files: dict[str, Any],
         gateway_file: Path | None = None) -> list[Finding]:
    return findings_for(audit(make_export(files), gateway_file=gateway_file), "ORG-001")


def _org001(make_export: MakeExport, doc_gateway: Path | None, *, reject: Any,
            connectors: list[dict[str, Any]] | None = None,
            rules: list[dict[str, Any]] | None = None) -> list[Finding]:
    files: dict[str, Any] = {
        "Get-OrganizationConfig": _org(reject),
        "Get-InboundConnector": connectors or [],
        "Get-AcceptedDomain": accepted("contoso.com", "contoso.onmicrosoft.com"),
    }
    if rules is not None:
        files["Get-TransportRule"] = rules
    return _run(make_export, files, gateway_file=doc_gateway)


def _only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.status, f.resource, f.message) for f in findings]
    return findings[0]


def _points_at(finding: Finding, file: str, pointer: str) -> bool:
    return any(e.file == file and e.pointer == pointer for e in finding.evidence)


def test_org001_direct_send_allowed_without_lock_fails_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_org001(make_export, doc_gateway, reject=False))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH
    assert finding.resource == "organization contoso.onmicrosoft.com"
    assert _points_at(finding, ORG, "/0/RejectDirectSend")


def test_org001_direct_send_allowed_with_only_rule_lock_warns_medium(
        make_export: MakeExport, doc_gateway: Path) -> None:
    lock = rule("Reject mail not from gateway", FromScope="NotInOrganization",
                RejectMessageReasonText="Use the gateway", ExceptIfSenderIpRanges=GATEWAY_RANGES,
                Conditions=[FROM_SCOPE])
    finding = _only(_org001(make_export, doc_gateway, reject=False, rules=[lock]))
    assert finding.status is Status.WARN
    assert finding.severity is Severity.MEDIUM
    assert _points_at(finding, ORG, "/0/RejectDirectSend")
    assert _points_at(finding, "exo/Get-TransportRule.json", "/0/ExceptIfSenderIpRanges")


def test_org001_direct_send_allowed_with_lock_for_some_domains_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    partial = connector(AssociatedAcceptedDomains=["contoso.com"])
    finding = _only(_org001(make_export, doc_gateway, reject=False, connectors=[partial]))
    assert finding.status is Status.FAIL
    assert "contoso.onmicrosoft.com" in finding.message


def test_org001_direct_send_allowed_without_gateway_warns_medium(
        make_export: MakeExport) -> None:
    finding = _only(_org001(make_export, None, reject=False))
    assert finding.status is Status.WARN
    assert finding.severity is Severity.MEDIUM
    assert _points_at(finding, ORG, "/0/RejectDirectSend")


def test_org001_reject_direct_send_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_org001(make_export, doc_gateway, reject=True))
    assert finding.status is Status.PASS
    assert _points_at(finding, ORG, "/0/RejectDirectSend")


def test_org001_direct_send_allowed_with_full_connector_lock_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_org001(make_export, doc_gateway, reject=False, connectors=[connector()]))
    assert finding.status is Status.PASS
    assert _points_at(finding, "exo/Get-InboundConnector.json", "/0/SenderDomains")


def test_org001_property_absent_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_org001(make_export, doc_gateway, reject=_ABSENT))
    assert finding.status is Status.NOT_EVALUATED
    assert "RejectDirectSend" in finding.message
    assert _points_at(finding, ORG, "/0/RejectDirectSend")


def test_org001_missing_organization_config_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    files = {"Get-InboundConnector": [connector()], "Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_run(make_export, files, gateway_file=doc_gateway))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-OrganizationConfig"
    assert finding.evidence[0].file == ORG


def test_org001_missing_connectors_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    files = {"Get-OrganizationConfig": _org(False), "Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_run(make_export, files, gateway_file=doc_gateway))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-InboundConnector"


def test_org001_unreadable_reject_direct_send_is_not_evaluated_never_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _org001(make_export, doc_gateway, reject="perhaps")
    unread = [f for f in findings if f.resource == "contoso.onmicrosoft.com"]
    assert len(unread) == 1
    assert unread[0].status is Status.NOT_EVALUATED
    assert unread[0].evidence[0].file == ORG
    assert "RejectDirectSend" in unread[0].message
    assert not any(f.status is Status.PASS for f in findings)
