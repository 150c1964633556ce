"""APP-001..003: apps with Exchange-wide access, their scoping and their credentials."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.audit import run_audit
from auditor.context import AuditSettings
from auditor.engine import Severity, Status, discover
from auditor.snapshot import open_source

DEMO = Path(__file__).resolve().parents[2] / "examples" / "contoso"
GRAPH_KEYS = ("Graph-ServicePrincipals", "Graph-Applications", "Graph-ResourceAppRoles",
              "Graph-AppRoleAssignments")
MIMECAST = "Mimecast Sync and Recover (appId ab297ba0-ed97-4666-8172-62c14ae8461e)"
ACME = "Acme Email Archiver (appId e9b3f2a1-7c4d-4a5e-8f60-3b2a1c9d8e7f)"
AUDITOR = "Contoso Mail-Flow Auditor (appId 5d0e8a31-6c2f-4b7a-9e14-2f8b3c6d7a90)"
EXPORT = {"collected_at": "2026-11-20T09:14:03Z"}


def demo_files() -> dict[str, Any]:
    keys = (*GRAPH_KEYS, "Get-ApplicationAccessPolicy", "Get-ManagementRoleAssignment")
    return {key: json.loads((DEMO / f"{key}.json").read_text(encoding="utf-8-sig")) for key in keys}


def run(make_export: Callable[..., Path], files: dict[str, Any], **settings: Any) -> list[Any]:
    folder = make_export({**files, "export": EXPORT})
    report = run_audit(open_source(folder), discover(), settings=AuditSettings(**settings))
    return report.findings


def verdicts(findings: list[Any], check_id: str) -> set[tuple[str, str]]:
    return {(f.status.value, f.resource) for f in findings if f.check_id == check_id}


def graph_app(files: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in files["Graph-Applications"]["value"] if a["displayName"] == name)


# --- APP-001 -----------------------------------------------------------------------------------


def test_app001_unscoped_vendor_mail_read_fails_and_the_scoped_mimecast_app_passes(make_export) -> None:
    findings = run(make_export, demo_files())
    assert verdicts(findings, "APP-001") == {("fail", ACME), ("pass", MIMECAST)}
    acme = next(f for f in findings if f.check_id == "APP-001" and f.resource == ACME)
    assert "Mail.Read (Microsoft Graph)" in acme.message and acme.severity is Severity.HIGH
    assert "New-ApplicationAccessPolicy -AppId 'e9b3f2a1-7c4d-4a5e-8f60-3b2a1c9d8e7f'" in acme.fix
    assert any(e.file == "graph/Graph-AppRoleAssignments.json" and e.observed for e in acme.evidence)


def test_app001_without_the_access_policy_mimecast_is_critical_for_its_long_lived_certificate(
        make_export) -> None:
    files = demo_files()
    files["Get-ApplicationAccessPolicy"] = []
    findings = run(make_export, files)
    mimecast = next(f for f in findings if f.check_id == "APP-001" and f.resource == MIMECAST)
    assert mimecast.status is Status.FAIL and mimecast.severity is Severity.CRITICAL
    assert "full_access_as_app" in mimecast.message and "long-lived" in mimecast.message


def test_app001_a_deny_access_policy_is_not_scoping(make_export) -> None:
    files = demo_files()
    files["Get-ApplicationAccessPolicy"][0]["AccessRight"] = "DenyAccess"
    assert ("fail", MIMECAST) in verdicts(run(make_export, files), "APP-001")


def test_app001_a_scoped_rbac_role_does_not_scope_an_entra_consent(make_export) -> None:
    """RBAC for Applications grants are independent of Entra ID's: the consent stays unscoped."""
    files = demo_files()
    files["Get-ApplicationAccessPolicy"] = []
    mimecast = next(f for f in run(make_export, files)
                    if f.check_id == "APP-001" and f.resource == MIMECAST)
    assert "scoped: RBAC role 'Application EWS.AccessAsApp'" in mimecast.message
    assert mimecast.status is Status.FAIL


def test_app001_an_rbac_only_app_with_a_management_scope_passes_and_without_fails(make_export) -> None:
    files = demo_files()
    files["Graph-AppRoleAssignments"]["value"] = [
        a for a in files["Graph-AppRoleAssignments"]["value"]
        if a["principalDisplayName"] != "Acme Email Archiver"
        and a["appRoleId"] != "dc890d15-9560-4a4c-9b7f-a736ec74ec40"]
    assert verdicts(run(make_export, files), "APP-001") == {("pass", MIMECAST)}
    files["Get-ManagementRoleAssignment"][2]["CustomResourceScope"] = None
    files["Get-ManagementRoleAssignment"][2]["RecipientWriteScope"] = "Organization"
    assert verdicts(run(make_export, files), "APP-001") == {("fail", MIMECAST)}


def test_app001_a_disabled_service_principal_passes(make_export) -> None:
    files = demo_files()
    for sp in files["Graph-ServicePrincipals"]["value"]:
        sp["accountEnabled"] = False
    assert verdicts(run(make_export, files), "APP-001") == {("pass", ACME), ("pass", MIMECAST)}


def test_app001_missing_graph_evidence_is_not_evaluated(make_export) -> None:
    files = demo_files()
    del files["Graph-AppRoleAssignments"]
    found = [f for f in run(make_export, files) if f.check_id == "APP-001"]
    assert {f.status for f in found} == {Status.NOT_EVALUATED}
    assert any("Graph-AppRoleAssignments" in f.message for f in found)


def test_app001_an_empty_assignment_list_passes_only_as_a_summary(make_export) -> None:
    files = demo_files()
    files["Graph-AppRoleAssignments"]["value"] = []
    files["Get-ManagementRoleAssignment"] = []
    assert verdicts(run(make_export, files), "APP-001") == {("pass", "apps with mailbox-wide access")}


def test_app001_a_role_id_the_resource_does_not_list_is_not_evaluated(make_export) -> None:
    files = demo_files()
    files["Graph-ResourceAppRoles"]["value"][1]["appRoles"] = []
    found = verdicts(run(make_export, files), "APP-001")
    assert ("not_evaluated", "Acme Email Archiver") in found


def test_app001_without_role_assignments_says_rbac_was_not_examined(make_export) -> None:
    files = demo_files()
    del files["Get-ManagementRoleAssignment"]
    found = verdicts(run(make_export, files), "APP-001")
    assert ("not_evaluated", "RBAC for Applications") in found and ("fail", ACME) in found


# --- APP-002 -----------------------------------------------------------------------------------


def test_app002_the_never_rotated_mimecast_certificate_fails_and_the_fresh_one_passes(make_export) -> None:
    findings = run(make_export, demo_files())
    assert verdicts(findings, "APP-002") == {("fail", MIMECAST), ("pass", AUDITOR), ("not_evaluated", ACME)}
    mimecast = next(f for f in findings if f.check_id == "APP-002" and f.resource == MIMECAST)
    assert "2020-06-15" in mimecast.message and mimecast.severity is Severity.MEDIUM
    assert "Where-Object KeyId -ne '3b8f1c26-d94e-4a07-8e5b-2f6a0c9d7e13'" in mimecast.fix
    assert mimecast.evidence[0].pointer == "/value/1/keyCredentials/0/startDateTime"


def test_app002_rotated_since_the_advisory_date_is_high(make_export) -> None:
    from datetime import UTC, datetime, timedelta

    findings = run(make_export, demo_files(), rotated_since=datetime(2021, 1, 12, tzinfo=UTC),
                   credential_max_age=timedelta(days=5000))
    mimecast = next(f for f in findings if f.check_id == "APP-002" and f.resource == MIMECAST)
    assert mimecast.status is Status.FAIL and mimecast.severity is Severity.HIGH
    assert "before 2021-01-12" in mimecast.message


def test_app002_a_new_certificate_valid_for_years_is_a_warning_and_an_expired_one_passes(make_export) -> None:
    files = demo_files()
    cert = graph_app(files, "Mimecast Sync and Recover")["keyCredentials"][0]
    cert["startDateTime"] = "2026-10-01T00:00:00Z"
    assert ("warn", MIMECAST) in verdicts(run(make_export, files), "APP-002")
    cert["startDateTime"], cert["endDateTime"] = "2019-01-01T00:00:00Z", "2021-01-01T00:00:00Z"
    assert ("pass", MIMECAST) in verdicts(run(make_export, files), "APP-002")


def test_app002_an_unreadable_date_is_not_evaluated(make_export) -> None:
    files = demo_files()
    graph_app(files, "Mimecast Sync and Recover")["keyCredentials"][0]["startDateTime"] = "last year"
    found = [f for f in run(make_export, files) if f.check_id == "APP-002" and f.resource == MIMECAST]
    assert [f.status for f in found] == [Status.NOT_EVALUATED] and "startDateTime" in found[0].message


def test_app002_credentials_not_in_the_evidence_are_not_evaluated(make_export) -> None:
    files = demo_files()
    del graph_app(files, "Mimecast Sync and Recover")["keyCredentials"]
    found = verdicts(run(make_export, files), "APP-002")
    assert ("not_evaluated", MIMECAST) in found and ("fail", MIMECAST) not in found


def test_app002_missing_applications_is_not_evaluated(make_export) -> None:
    files = demo_files()
    del files["Graph-Applications"]
    assert {s for s, _ in verdicts(run(make_export, files), "APP-002")} == {"not_evaluated"}


# --- APP-003 -----------------------------------------------------------------------------------


def legacy() -> list[dict[str, Any]]:
    path = Path(__file__).resolve().parents[1] / "fixtures" / "exo-samples" / \
        "Get-ManagementRoleAssignment.legacy-ApplicationImpersonation.json"
    return json.loads(path.read_text())["value"]


def test_app003_a_legacy_impersonation_assignment_fails(make_export) -> None:
    files = demo_files()
    files["Get-ManagementRoleAssignment"] += legacy()
    findings = run(make_export, files)
    found = next(f for f in findings if f.check_id == "APP-003"
                 and f.resource == "ApplicationImpersonation-svc-mimecast-sync")
    assert found.status is Status.FAIL and "svc-mimecast-sync (User)" in found.message
    assert found.fix == ("Remove-ManagementRoleAssignment -Identity "
                         "'ApplicationImpersonation-svc-mimecast-sync' -Confirm:$false")


def test_app003_an_unscoped_rbac_mail_role_fails_and_the_scoped_one_passes(make_export) -> None:
    files = demo_files()
    name = "Application EWS.AccessAsApp-Mimecast Sync and Recover"
    assert verdicts(run(make_export, files), "APP-003") == {("pass", name)}
    unscoped = copy.deepcopy(files)
    unscoped["Get-ManagementRoleAssignment"][2]["CustomResourceScope"] = None
    unscoped["Get-ManagementRoleAssignment"][2]["RecipientWriteScope"] = "Organization"
    assert verdicts(run(make_export, unscoped), "APP-003") == {("fail", name)}


def test_app003_view_only_roles_alone_pass_as_a_summary(make_export) -> None:
    files = demo_files()
    files["Get-ManagementRoleAssignment"] = files["Get-ManagementRoleAssignment"][:2]
    assert verdicts(run(make_export, files), "APP-003") == {
        ("pass", "ApplicationImpersonation and RBAC for Applications")}


def test_app003_missing_role_assignments_is_not_evaluated(make_export) -> None:
    files = demo_files()
    del files["Get-ManagementRoleAssignment"]
    assert {s for s, _ in verdicts(run(make_export, files), "APP-003")} == {"not_evaluated"}


def test_checks_are_registered() -> None:
    assert {"APP-001", "APP-002", "APP-003"} <= {c.id for c in discover().checks}
