"""CHG-001: who changed the gateway's connectors, rules and policies, linked to the findings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.engine import Finding, Severity, Status
from auditor.models import REDACTED

from ..conftest import accepted, audit, connector, findings_for, rule

MakeExport = Callable[..., Path]
AUDIT = "audit/Search-UnifiedAuditLog.json"
COLLECTED = "2026-11-20T09:00:00Z"
GATEWAY_RANGES = ["198.51.100.0/24", "203.0.113.0/25"]
SPOOFABLE = rule("Allow partner newsletters", SetSCL=-1, SenderDomainIs=["contoso.com"])
GATEWAY_SCL = rule("Gateway - bypass spam filtering", SetSCL=-1, SenderIpRanges=GATEWAY_RANGES)


def admin_record(operation: str, parameters: dict[str, Any], *, when: str = "2026-11-12T10:15:00",
                 user: str = "isaiah.langer@contoso.com", ip: str = "192.0.2.44",
                 object_id: str | None = None, status: str = "True", app: str = "",
                 record_id: str = "a1") -> dict[str, Any]:
    """One record as Search-UnifiedAuditLog | ConvertTo-Json writes it: AuditData is JSON text."""
    details = {"CreationTime": when, "Id": record_id, "Operation": operation, "RecordType": 1,
               "ResultStatus": status, "UserId": user, "ClientIP": ip, "AppId": app,
               "ObjectId": object_id if object_id is not None else parameters.get("Identity", ""),
               "ExternalAccess": False,
               "Parameters": [{"Name": k, "Value": v} for k, v in parameters.items()]}
    return {"RecordType": "ExchangeAdmin", "CreationDate": when, "UserIds": user,
            "Operations": operation, "AuditData": json.dumps(details), "ResultIndex": 1,
            "ResultCount": 1, "Identity": record_id}


def graph_record(operation: str, parameters: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The same record as Microsoft Graph's audit log query returns it (auditData an object)."""
    cmdlet = admin_record(operation, parameters, **kwargs)
    details = json.loads(cmdlet["AuditData"])
    return {"id": details["Id"], "createdDateTime": details["CreationTime"] + "Z",
            "auditLogRecordType": "exchangeAdmin", "operation": operation,
            "userPrincipalName": details["UserId"], "objectId": details["ObjectId"],
            "clientIp": details["ClientIP"], "service": "Exchange", "auditData": details}


def _chg(make_export: MakeExport, doc_gateway: Path, records: Any, *,
         rules: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None,
         export: dict[str, Any] | None = None) -> tuple[list[Finding], dict[str, Finding]]:
    files: dict[str, Any] = {
        "Get-TransportRule": rules if rules is not None else [GATEWAY_SCL, SPOOFABLE],
        "Get-AcceptedDomain": accepted("contoso.com"),
        "Get-InboundConnector": [connector()],
        "export": export or {"collected_at": COLLECTED},
        **(extra or {}),
    }
    if records is not None:
        files["Search-UnifiedAuditLog"] = records
    report = audit(make_export(files), gateway_file=doc_gateway)
    return findings_for(report, "CHG-001"), {f.fingerprint: f for f in report.findings}


def _only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.status, f.resource, f.message) for f in findings]
    return findings[0]


# --- what it must attribute -----------------------------------------------------------------


def test_new_spoofable_scl_rule_warns_with_who_when_where_and_links_the_rule_finding(
        make_export: MakeExport, doc_gateway: Path) -> None:
    record = admin_record("New-TransportRule", {"Name": "Allow partner newsletters", "SetSCL": "-1",
                                                "SenderDomainIs": "contoso.com"})
    found, by_fp = _chg(make_export, doc_gateway, [record])
    finding = _only(found)
    assert finding.status is Status.WARN and finding.severity is Severity.MEDIUM
    assert finding.resource == "transport rule Allow partner newsletters"
    for text in ("New-TransportRule", "isaiah.langer@contoso.com", "2026-11-12 10:15 UTC",
                 "192.0.2.44", "-SetSCL -1", "RULE-001 fail"):
        assert text in finding.message
    assert finding.verdict == "changed by isaiah.langer@contoso.com on 2026-11-12"
    linked = {by_fp[fp].check_id for fp in finding.related}
    assert "RULE-001" in linked
    assert all("Allow partner newsletters" in by_fp[fp].resource for fp in finding.related)
    assert "-UserIds 'isaiah.langer@contoso.com'" in finding.fix
    assert {(e.file, e.pointer, e.property) for e in finding.evidence} >= {
        (AUDIT, "/0/AuditData", "UserId"), (AUDIT, "/0/AuditData", "ClientIP")}


def test_graph_audit_records_read_like_the_cmdlets_with_pointers_inside_auditdata(
        make_export: MakeExport, doc_gateway: Path) -> None:
    record = graph_record("Set-TransportRule", {"Identity": "allow PARTNER newsletters",
                                                "SenderDomainIs": "contoso.com"}, app="0f1e2d3c")
    finding = _only(_chg(make_export, doc_gateway, {"value": [record]})[0])
    assert finding.status is Status.WARN  # names are matched case-insensitively
    assert "app 0f1e2d3c" in finding.message
    assert any(e.pointer == "/value/0/auditData/ClientIP" and e.observed == "192.0.2.44"
               for e in finding.evidence)


def test_object_id_given_as_a_path_still_names_the_rule(
        make_export: MakeExport, doc_gateway: Path) -> None:
    record = admin_record("Set-TransportRule", {}, object_id=(
        "NAMPR04A001.prod.outlook.com/Microsoft Exchange Hosted Organizations/"
        "contoso.onmicrosoft.com/Transport Settings/Allow partner newsletters"))
    assert _only(_chg(make_export, doc_gateway, [record])[0]).status is Status.WARN


def test_org_config_change_links_the_direct_send_finding(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """Set-OrganizationConfig names no object: the tenant has one, and ORG-001 is about it."""
    org = {"Name": "contoso.onmicrosoft.com", "Identity": "contoso.onmicrosoft.com",
           "RejectDirectSend": False}
    record = admin_record("Set-OrganizationConfig", {"RejectDirectSend": "False"}, object_id="")
    found, by_fp = _chg(make_export, doc_gateway, [record], extra={
        "Get-OrganizationConfig": org,
        "Get-InboundConnector": [connector(RestrictDomainsToIPAddresses=False)]})
    finding = _only(found)
    assert finding.resource == "organization"
    assert finding.status is Status.WARN
    assert "ORG-001" in {by_fp[fp].check_id for fp in finding.related}


# --- the legitimate setup it leaves alone ---------------------------------------------------


def test_the_gateways_own_scl_rule_changed_by_its_admin_is_a_record_not_a_problem(
        make_export: MakeExport, doc_gateway: Path) -> None:
    record = admin_record("Set-TransportRule", {"Identity": "Gateway - bypass spam filtering",
                                                "SenderIpRanges": "198.51.100.0/24,203.0.113.0/25"})
    finding = _only(_chg(make_export, doc_gateway, [record], rules=[GATEWAY_SCL])[0])
    assert finding.status is Status.PASS and finding.severity is Severity.INFO
    assert finding.verdict == "changed by isaiah.langer@contoso.com on 2026-11-12"
    assert "no finding about this object fails or warns" in finding.message


def test_a_same_named_policy_of_another_kind_is_not_linked(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """The anti-spam policy and the connection filter policy are both called Default."""
    record = admin_record("Set-HostedContentFilterPolicy", {"Identity": "Default",
                                                            "BulkThreshold": "6"})
    filter_policy = {"Name": "Default", "Identity": "Default", "IPAllowList": ["192.0.2.0/24"],
                     "EnableSafeList": False}
    found, by_fp = _chg(make_export, doc_gateway, [record], extra={
        "Get-HostedConnectionFilterPolicy": [filter_policy],
        "Get-HostedContentFilterPolicy": [{"Name": "Default", "Identity": "Default"}]})
    finding = _only(found)
    assert finding.resource == "anti-spam policy Default"
    assert finding.status is Status.PASS
    assert not any(by_fp[fp].check_id.startswith("POL-001") for fp in finding.related)


def test_a_failed_operation_changed_nothing_and_is_not_attributed(
        make_export: MakeExport, doc_gateway: Path) -> None:
    record = admin_record("Set-TransportRule", {"Identity": "Allow partner newsletters"},
                          status="False")
    finding = _only(_chg(make_export, doc_gateway, [record])[0])
    assert finding.status is Status.PASS and "failed" in finding.message
    assert finding.verdict == "" and finding.related == ()


def test_operations_before_the_window_reads_and_other_objects_are_not_listed(
        make_export: MakeExport, doc_gateway: Path) -> None:
    records = [admin_record("New-TransportRule", {"Name": "Allow partner newsletters"},
                            when="2026-09-01T10:00:00", record_id="old"),
               admin_record("Set-Mailbox", {"Identity": "megan.bowen"}, record_id="mbx"),
               admin_record("Get-TransportRule", {}, record_id="read")]
    finding = _only(_chg(make_export, doc_gateway, records)[0])
    assert finding.status is Status.PASS and finding.resource == "admin operations"
    assert "30 days" in finding.message and "3 audit record(s) read" in finding.message


def test_secret_parameter_values_are_never_shown(
        make_export: MakeExport, doc_gateway: Path) -> None:
    record = admin_record("Set-InboundConnector", {
        "Identity": "Gateway inbound", "TlsSenderCertificateName": "*.gateway.example",
        "Certificate": "MIIC-CANARY-cert", "Password": "CANARY-pass"})
    finding = _only(_chg(make_export, doc_gateway, [record])[0])
    shown = finding.message + json.dumps([e.observed for e in finding.evidence])
    assert "CANARY" not in shown
    assert f"-Password {REDACTED}" in finding.message
    assert "-TlsSenderCertificateName *.gateway.example" in finding.message


# --- missing, empty, partial and unreadable evidence ----------------------------------------


def test_audit_log_not_exported_is_not_evaluated(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_chg(make_export, doc_gateway, None)[0])
    assert finding.status is Status.NOT_EVALUATED
    assert "Search-UnifiedAuditLog" in finding.message and "missing" in finding.message


def test_audit_log_denied_in_export_json_is_not_evaluated_with_the_reason(
        make_export: MakeExport, doc_gateway: Path) -> None:
    export = {"collected_at": COLLECTED, "cmdlets": {"Search-UnifiedAuditLog": {
        "status": "denied", "error": "the app needs AuditLogsQuery-Exchange.Read.All"}}}
    finding = _only(_chg(make_export, doc_gateway, None, export=export)[0])
    assert finding.status is Status.NOT_EVALUATED
    assert "AuditLogsQuery-Exchange.Read.All" in finding.message


def test_collected_but_empty_audit_log_is_one_pass(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_chg(make_export, doc_gateway, [])[0])
    assert finding.status is Status.PASS and finding.resource == "admin operations"
    assert "holds no records" in finding.message


def test_empty_but_partial_audit_log_is_not_a_pass(make_export: MakeExport, doc_gateway: Path) -> None:
    export = {"collected_at": COLLECTED, "cmdlets": {"Search-UnifiedAuditLog": {
        "status": "partial", "error": "stopped at the 50,000-record cap of one search session"}}}
    found = _chg(make_export, doc_gateway, [], export=export)[0]
    assert found and all(f.status is Status.NOT_EVALUATED for f in found)
    assert any("50,000" in f.message for f in found)


def test_unreadable_audit_data_is_not_evaluated_never_dropped(
        make_export: MakeExport, doc_gateway: Path) -> None:
    broken = admin_record("Set-TransportRule", {"Identity": "x"}, record_id="bad")
    broken["AuditData"] = broken["AuditData"][:40]
    no_params = admin_record("Set-TransportRule", {"Identity": "y"}, record_id="odd")
    no_params["AuditData"] = json.dumps({**json.loads(no_params["AuditData"]), "Parameters": "x"})
    found = _chg(make_export, doc_gateway, [broken, no_params])[0]
    assert {f.status for f in found} == {Status.NOT_EVALUATED}
    reasons = " ".join(f.message for f in found)
    assert "not valid JSON" in reasons and "Parameters is not a list" in reasons
    assert any(f.resource == "admin operations" for f in found)  # no silent "nothing changed"
    assert any(e.pointer == "/0/AuditData" for f in found for e in f.evidence)


def test_a_hostile_user_name_cannot_inject_powershell_into_the_fix(
        make_export: MakeExport, doc_gateway: Path) -> None:
    user = "x'\nRemove-Mailbox -Identity ceo -Confirm:$false #"
    record = admin_record("Set-TransportRule", {"Identity": "Allow partner newsletters"}, user=user)
    finding = _only(_chg(make_export, doc_gateway, [record])[0])
    assert finding.status is Status.WARN
    # Only inside one single-quoted literal (quotes doubled; a newline in it is still text):
    assert finding.fix.endswith(" -RecordType ExchangeAdmin -UserIds 'x''\nRemove-Mailbox -Identity "
                                "ceo -Confirm:$false #' -ResultSize 5000 | Select-Object "
                                "CreationDate,Operations,AuditData")
    assert finding.fix.startswith("# everything this account changed")  # no name in the comment


def test_a_removed_object_is_recorded_and_says_it_cannot_be_judged(
        make_export: MakeExport, doc_gateway: Path) -> None:
    record = admin_record("Remove-InboundConnector", {"Identity": "Temporary relay"})
    finding = _only(_chg(make_export, doc_gateway, [record])[0])
    assert finding.status is Status.PASS and finding.resource == "inbound connector Temporary relay"
    assert "no longer exists" in finding.message


def test_a_lock_switched_off_on_a_since_removed_connector_warns_and_links_the_open_route(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """The record that opened the route matters most, even after its connector is gone."""
    records = [admin_record("Set-InboundConnector", {"Identity": "Old lock",
                                                     "RestrictDomainsToIPAddresses": "False"}),
               admin_record("Remove-InboundConnector", {"Identity": "Old lock"},
                            when="2026-11-13T08:00:00", record_id="a2")]
    found, by_fp = _chg(make_export, doc_gateway, records,
                        extra={"Get-InboundConnector": [connector(RestrictDomainsToIPAddresses=False)]})
    switched, removed = found
    assert switched.status is Status.WARN and switched.resource == "inbound connector Old lock"
    assert "switched protection off (-RestrictDomainsToIPAddresses False)" in switched.message
    assert {by_fp[fp].check_id for fp in switched.related} >= {"CONN-001"}
    assert all(by_fp[fp].status.is_finding for fp in switched.related)
    assert removed.status is Status.PASS  # the removal itself switched nothing off by a parameter


def test_restoring_a_protection_is_a_record_not_a_weakening(
        make_export: MakeExport, doc_gateway: Path) -> None:
    record = admin_record("Set-OrganizationConfig", {"RejectDirectSend": "$true"})
    finding = _only(_chg(make_export, doc_gateway, [record])[0])
    assert finding.status is Status.PASS and "switched protection off" not in finding.message
    off = admin_record("Set-OrganizationConfig", {"RejectDirectSend": "$false"})
    assert "(-RejectDirectSend $false)" in _only(_chg(make_export, doc_gateway, [off])[0]).message


def test_an_unreadable_time_is_not_evaluated_and_other_record_types_are_skipped(
        make_export: MakeExport, doc_gateway: Path) -> None:
    undated = admin_record("Set-TransportRule", {"Identity": "Allow partner newsletters"},
                           when="last Tuesday", record_id="undated")
    undated["CreationDate"] = None
    sharepoint = admin_record("Set-TransportRule", {"Identity": "Allow partner newsletters"},
                              record_id="sp")
    sharepoint["AuditData"] = json.dumps({**json.loads(sharepoint["AuditData"]), "RecordType": 6})
    found = _chg(make_export, doc_gateway, [undated, sharepoint])[0]
    assert {(f.status, f.resource) for f in found} == {
        (Status.NOT_EVALUATED, "audit record undated"), (Status.NOT_EVALUATED, "admin operations")}
    assert any("CreationTime" in f.message for f in found)
