"""POL-001: the connection filter's IP allow list holds only the gateway's ranges."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditor.engine import Finding, Severity, Status

from ..conftest import audit, findings_for, mimecast_us_ranges

MakeExport = Callable[..., Path]
POLICIES = "exo/Get-HostedConnectionFilterPolicy.json"
GATEWAY_RANGES = ["198.51.100.0/24", "203.0.113.0/25"]


def _policy(allow: Any) -> dict[str, Any]:
    return {"Name": "Default", "Identity": "Default", "IsDefault": True, "IPAllowList": allow}


def _run(make_export: MakeExport, files: dict[str, Any], *, gateway_file: Path | None = None,
         gateway: str | None = None) -> list[Finding]:
    report = audit(make_export(files), gateway=gateway, gateway_file=gateway_file)
    return findings_for(report, "POL-001")


def _pol001(make_export: MakeExport, doc_gateway: Path, allow: Any) -> list[Finding]:
    return _run(make_export, {"Get-HostedConnectionFilterPolicy": [_policy(allow)]},
                gateway_file=doc_gateway)


def _only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.status, f.resource, f.message) for f in findings]
    return findings[0]


def _assert_entry_fails(finding: Finding, severity: Severity, entry: str) -> None:
    assert finding.status is Status.FAIL
    assert finding.severity is severity
    assert finding.resource == f"connection filter policy Default: {entry}"
    assert [(e.file, e.pointer) for e in finding.evidence] == [(POLICIES, "/0/IPAllowList/0")]


@pytest.mark.parametrize(
    ("entry", "severity"),
    [
        ("0.0.0.0/1", Severity.CRITICAL),
        ("10.0.0.0/8", Severity.CRITICAL),
        ("172.16.0.0/16", Severity.HIGH),
        ("192.0.2.0/24", Severity.MEDIUM),
        ("192.0.2.10", Severity.MEDIUM),
    ],
)
def test_pol001_unknown_entry_severity_follows_width(
        make_export: MakeExport, doc_gateway: Path, entry: str, severity: Severity) -> None:
    finding = _only(_pol001(make_export, doc_gateway, [entry]))
    _assert_entry_fails(finding, severity, entry)


def test_pol001_exchange_online_range_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_pol001(make_export, doc_gateway, ["40.107.0.0/16"]))
    _assert_entry_fails(finding, Severity.CRITICAL, "40.107.0.0/16")


def test_pol001_other_vendors_range_fails_high(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_pol001(make_export, doc_gateway, ["209.222.80.0/24"]))
    _assert_entry_fails(finding, Severity.HIGH, "209.222.80.0/24")
    assert "Barracuda" in finding.message


def test_pol001_only_bad_entry_is_reported_next_to_gateway_ranges(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_pol001(make_export, doc_gateway, [*GATEWAY_RANGES, "192.0.2.0/24"]))
    assert finding.status is Status.FAIL
    assert finding.resource == "connection filter policy Default: 192.0.2.0/24"
    assert finding.evidence[0].pointer == "/0/IPAllowList/2"


def test_pol001_unparsable_entry_warns(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_pol001(make_export, doc_gateway, ["not-an-address"]))
    assert finding.status is Status.WARN
    assert finding.severity is Severity.MEDIUM
    assert finding.resource == "connection filter policy Default: not-an-address"
    assert finding.evidence[0].file == POLICIES
    assert finding.evidence[0].pointer == "/0/IPAllowList/0"


def test_pol001_gateway_ranges_only_pass(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_pol001(make_export, doc_gateway, GATEWAY_RANGES))
    assert finding.status is Status.PASS
    assert finding.resource == "connection filter policy Default"


def test_pol001_mimecast_ranges_pass_when_mimecast_is_the_gateway(
        make_export: MakeExport) -> None:
    files = {"Get-HostedConnectionFilterPolicy": [_policy(mimecast_us_ranges())]}
    finding = _only(_run(make_export, files, gateway="mimecast"))
    assert finding.status is Status.PASS


def test_pol001_empty_allow_list_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_pol001(make_export, doc_gateway, []))
    assert finding.status is Status.PASS
    assert finding.evidence[0].pointer == "/0/IPAllowList"


def test_pol001_missing_policy_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    files = {"Get-AcceptedDomain": [{"DomainName": "contoso.com"}]}
    finding = _only(_run(make_export, files, gateway_file=doc_gateway))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-HostedConnectionFilterPolicy"
    assert finding.evidence[0].file == POLICIES


def test_pol001_unreadable_allow_list_is_not_evaluated_never_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _pol001(make_export, doc_gateway, [{"Start": "10.0.0.0"}])
    unread = [f for f in findings if f.resource == "Default"]
    assert len(unread) == 1
    assert unread[0].status is Status.NOT_EVALUATED
    assert unread[0].evidence[0].file == POLICIES
    assert "IPAllowList" in unread[0].message
    assert not any(f.status is Status.PASS for f in findings)
