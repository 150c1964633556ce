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


# --- DOM-001: the onmicrosoft.com domains and the inbound lockdown ---------------------------

MOERA = "contoso.onmicrosoft.com"
COEXISTENCE = "contoso.mail.onmicrosoft.com"
CONNECTORS = "exo/Get-InboundConnector.json"
RECIPIENT_DOMAIN = "Microsoft.Exchange.MessagingPolicies.Rules.Tasks.RecipientDomainIsPredicate"


def _dom001(make_export: MakeExport, gateway_file: Path | None, *,
            connectors: list[dict[str, Any]] | None = None,
            rules: list[dict[str, Any]] | None = None,
            mailboxes: list[dict[str, Any]] | None = None,
            domains: tuple[str, ...] = ("contoso.com", MOERA, COEXISTENCE)) -> dict[str, Finding]:
    files: dict[str, Any] = {"Get-AcceptedDomain": accepted(*domains),
                             "Get-InboundConnector": connectors if connectors is not None else [connector()]}
    if rules is not None:
        files["Get-TransportRule"] = rules
    if mailboxes is not None:
        files["Get-Mailbox"] = mailboxes
    found = findings_for(audit(make_export(files), gateway_file=gateway_file), "DOM-001")
    return {f.resource.removeprefix("accepted domain "): f for f in found}


def _reject_rule(**extra: Any) -> dict[str, Any]:
    return rule("Reject mail not from gateway", FromScope="NotInOrganization",
                RejectMessageReasonText="Use the gateway", ExceptIfSenderIpRanges=GATEWAY_RANGES,
                Conditions=[FROM_SCOPE, *([RECIPIENT_DOMAIN] if "RecipientDomainIs" in extra else [])],
                **extra)


def test_dom001_connector_scoped_to_custom_domains_leaves_onmicrosoft_open(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """The classic miss: the custom domains look locked, the Microsoft domains are not."""
    scoped = connector(AssociatedAcceptedDomains=["contoso.com"])
    found = _dom001(make_export, doc_gateway, connectors=[scoped])
    assert set(found) == {MOERA, COEXISTENCE}  # custom domains are CONN-001's, not DOM-001's
    for name in (MOERA, COEXISTENCE):
        assert (found[name].status, found[name].severity) == (Status.FAIL, Severity.MEDIUM)
        assert "AssociatedAcceptedDomains to contoso.com" in found[name].message
        assert _points_at(found[name], CONNECTORS, "/0/AssociatedAcceptedDomains")
        assert found[name].fix == ("Set-InboundConnector -Identity 'Gateway inbound' "
                                   "-AssociatedAcceptedDomains $null")


def test_dom001_connector_for_every_accepted_domain_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    found = _dom001(make_export, doc_gateway)
    assert {name: f.status for name, f in found.items()} == {MOERA: Status.PASS, COEXISTENCE: Status.PASS}
    assert "every accepted domain" in found[MOERA].message


def test_dom001_connector_listing_the_onmicrosoft_domains_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    listed = connector(AssociatedAcceptedDomains=["contoso.com", MOERA, COEXISTENCE])
    found = _dom001(make_export, doc_gateway, connectors=[listed])
    assert {f.status for f in found.values()} == {Status.PASS}


def test_dom001_reject_rule_for_all_recipients_covers_them(
        make_export: MakeExport, doc_gateway: Path) -> None:
    found = _dom001(make_export, doc_gateway, connectors=[], rules=[_reject_rule()])
    assert {f.status for f in found.values()} == {Status.PASS}
    assert "transport rule 'Reject mail not from gateway'" in found[MOERA].message


def test_dom001_reject_rule_limited_to_custom_domains_leaves_them_out(
        make_export: MakeExport, doc_gateway: Path) -> None:
    scoped = _reject_rule(RecipientDomainIs=["contoso.com"])
    found = _dom001(make_export, doc_gateway, connectors=[], rules=[scoped])
    assert found[MOERA].status is Status.FAIL
    assert _points_at(found[MOERA], "exo/Get-TransportRule.json", "/0/RecipientDomainIs")
    assert found[MOERA].fix == ("Set-TransportRule -Identity 'Reject mail not from gateway' "
                                f"-RecipientDomainIs 'contoso.com','{MOERA}'")


def test_dom001_no_lockdown_at_all_fails_with_the_lockdown_command(
        make_export: MakeExport, doc_gateway: Path) -> None:
    found = _dom001(make_export, doc_gateway, connectors=[], rules=[])
    assert found[MOERA].status is Status.FAIL
    assert "CONN-001" in found[MOERA].message
    assert found[MOERA].fix.startswith("New-InboundConnector")


def test_dom001_names_mailboxes_whose_primary_address_is_there(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """Why admins scope it out on purpose: such mailboxes receive outside mail only this way."""
    scoped = connector(AssociatedAcceptedDomains=["contoso.com"])
    mailboxes = [{"Name": "scanner", "DisplayName": "Scanner", "PrimarySmtpAddress": f"scanner@{MOERA}"},
                 {"Name": "megan", "DisplayName": "Megan", "PrimarySmtpAddress": "megan@contoso.com"}]
    found = _dom001(make_export, doc_gateway, connectors=[scoped], rules=[], mailboxes=mailboxes)
    assert found[MOERA].status is Status.FAIL
    assert f"1 mailbox(es) have their primary address here (scanner@{MOERA})" in found[MOERA].message
    assert "primary address here" not in found[COEXISTENCE].message


def test_dom001_without_onmicrosoft_domain_in_export_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    found = _dom001(make_export, doc_gateway, domains=("contoso.com",))
    assert [(f.status, f.resource) for f in found.values()] == [(Status.NOT_EVALUATED, "accepted domains")]


def test_dom001_missing_connectors_is_not_evaluated(make_export: MakeExport, doc_gateway: Path) -> None:
    report = audit(make_export({"Get-AcceptedDomain": accepted("contoso.com", MOERA)}),
                   gateway_file=doc_gateway)
    assert [(f.status, f.resource) for f in findings_for(report, "DOM-001")] == [
        (Status.NOT_EVALUATED, "Get-InboundConnector")]


def test_dom001_without_a_gateway_is_not_evaluated(make_export: MakeExport) -> None:
    found = _dom001(make_export, None, connectors=[])
    assert [f.status for f in found.values()] == [Status.NOT_EVALUATED]


# --- ORG-002: SMTP AUTH organisation-wide ----------------------------------------------------

TRANSPORT = "exo/Get-TransportConfig.json"


def _org002(make_export: MakeExport, config: Any) -> list[Finding]:
    files: dict[str, Any] = {"Get-AcceptedDomain": accepted("contoso.com")}
    if config is not _ABSENT:
        files["Get-TransportConfig"] = config
    return findings_for(audit(make_export(files)), "ORG-002")


def test_org002_smtp_auth_enabled_org_wide_fails_medium(make_export: MakeExport) -> None:
    finding = _only(_org002(make_export, {"Name": "Transport Settings",
                                          "SmtpClientAuthenticationDisabled": False}))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.MEDIUM)
    assert finding.resource == "transport config Transport Settings"
    assert _points_at(finding, TRANSPORT, "/SmtpClientAuthenticationDisabled") or _points_at(
        finding, TRANSPORT, "/0/SmtpClientAuthenticationDisabled")
    assert finding.fix == "Set-TransportConfig -SmtpClientAuthenticationDisabled $true"
    assert "not in the evidence" in finding.message


def test_org002_smtp_auth_disabled_org_wide_passes_and_says_overrides_are_unseen(
        make_export: MakeExport) -> None:
    finding = _only(_org002(make_export, {"Name": "Transport Settings",
                                          "SmtpClientAuthenticationDisabled": True}))
    assert finding.status is Status.PASS
    assert "Get-CASMailbox" in finding.message


def test_org002_missing_transport_config_is_not_evaluated(make_export: MakeExport) -> None:
    finding = _only(_org002(make_export, _ABSENT))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "Get-TransportConfig")


def test_org002_property_absent_or_unreadable_is_not_evaluated(make_export: MakeExport) -> None:
    for config in ({"Name": "Transport Settings"},
                   {"Name": "Transport Settings", "SmtpClientAuthenticationDisabled": "maybe"}):
        findings = _org002(make_export, config)
        assert findings and not any(f.status is Status.PASS for f in findings), findings
        assert any(f.status is Status.NOT_EVALUATED and "SmtpClientAuthenticationDisabled" in f.message
                   for f in findings)


# --- ORG-003: audit logging off or bypassed --------------------------------------------------

AUDIT_CONFIG = "exo/Get-AdminAuditLogConfig.json"
BYPASS = "exo/Get-MailboxAuditBypassAssociation.json"
ROLES = "exo/Get-ManagementRoleAssignment.json"
UAL_ON = [{"Identity": "Admin Audit Log Settings", "UnifiedAuditLogIngestionEnabled": True}]
AUDIT_ON = [{"Name": "contoso.onmicrosoft.com", "AuditDisabled": False}]


def _account(name: str, bypass: Any = False, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"Name": name, "Identity": f"{name}-id", **extra}
    if bypass is not _ABSENT:
        entry["AuditBypassEnabled"] = bypass
    return entry


def _role(assignee: str, role: str = "Organization Management", **extra: Any) -> dict[str, Any]:
    return {"Name": f"{role}-{assignee}", "Role": role, "RoleAssigneeType": "User",
            "RoleAssignee": assignee, "RoleAssigneeName": assignee, "Enabled": True, **extra}


ACCOUNTS = [_account("megan.bowen"), _account("svc-archive")]


def _org003(make_export: MakeExport, *, audit_config: Any = UAL_ON, org: Any = AUDIT_ON,
            bypass: Any = ACCOUNTS, roles: Any = ()) -> dict[str, Finding]:
    files = {"Get-AdminAuditLogConfig": audit_config, "Get-OrganizationConfig": org,
             "Get-MailboxAuditBypassAssociation": bypass, "Get-ManagementRoleAssignment": roles}
    report = audit(make_export({key: list(value) if isinstance(value, tuple) else value
                                for key, value in files.items() if value is not _ABSENT}))
    found = findings_for(report, "ORG-003")
    by_resource = {f.resource: f for f in found}
    assert len(by_resource) == len(found), [(f.status, f.resource) for f in found]
    return by_resource


def test_org003_defaults_pass_each_piece(make_export: MakeExport) -> None:
    found = _org003(make_export)
    assert {r: f.status for r, f in found.items()} == {
        "unified audit log": Status.PASS,
        "mailbox auditing for organization contoso.onmicrosoft.com": Status.PASS,
        "mailbox audit bypass": Status.PASS,
    }
    assert _points_at(found["unified audit log"], AUDIT_CONFIG, "/0/UnifiedAuditLogIngestionEnabled")
    assert "none of the 2 accounts" in found["mailbox audit bypass"].message


def test_org003_unified_audit_log_off_fails_high_and_names_the_exo_caveat(make_export: MakeExport) -> None:
    """Off hides every change; Microsoft warns the value reads False in S&C PowerShell, so say so."""
    off = [{"Identity": "Admin Audit Log Settings", "UnifiedAuditLogIngestionEnabled": False,
            "WhenChanged": "2026-11-03T00:31:40+02:00"}]
    finding = _org003(make_export, audit_config=off)["unified audit log"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert _points_at(finding, AUDIT_CONFIG, "/0/UnifiedAuditLogIngestionEnabled")
    assert _points_at(finding, AUDIT_CONFIG, "/0/WhenChanged")
    assert "last changed 2026-11-02 22:31" in finding.message
    assert "Security & Compliance" in finding.message
    assert finding.fix == "Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true"


def test_org003_missing_audit_config_is_not_evaluated_alone(make_export: MakeExport) -> None:
    """Each piece is judged from its own evidence: the other two still report."""
    found = _org003(make_export, audit_config=_ABSENT)
    assert found["Get-AdminAuditLogConfig"].status is Status.NOT_EVALUATED
    assert "missing" in found["Get-AdminAuditLogConfig"].message
    assert found["Get-AdminAuditLogConfig"].evidence[0].file == AUDIT_CONFIG
    assert "unified audit log" not in found
    assert found["mailbox audit bypass"].status is Status.PASS
    assert found["mailbox auditing for organization contoso.onmicrosoft.com"].status is Status.PASS


def test_org003_audit_config_empty_absent_or_unreadable_is_never_a_pass(make_export: MakeExport) -> None:
    for config in ([], [{"Identity": "Admin Audit Log Settings"}],
                   [{"Identity": "Admin Audit Log Settings", "UnifiedAuditLogIngestionEnabled": "perhaps"}]):
        found = _org003(make_export, audit_config=config)
        ual = found["unified audit log"]
        assert ual.status is Status.NOT_EVALUATED, (config, ual.message)
        assert not any(f.status is Status.PASS and f.evidence and f.evidence[0].file == AUDIT_CONFIG
                       for f in found.values())


def test_org003_organisation_mailbox_auditing_off_fails_high(make_export: MakeExport) -> None:
    found = _org003(make_export, org=[{"Name": "contoso.onmicrosoft.com", "AuditDisabled": True}])
    finding = found["mailbox auditing for organization contoso.onmicrosoft.com"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert _points_at(finding, ORG, "/0/AuditDisabled")
    assert finding.fix == "Set-OrganizationConfig -AuditDisabled $false"
    assert found["unified audit log"].status is Status.PASS


def test_org003_audit_disabled_absent_is_not_evaluated(make_export: MakeExport) -> None:
    found = _org003(make_export, org=[{"Name": "contoso.onmicrosoft.com"}])
    finding = found["mailbox auditing for organization contoso.onmicrosoft.com"]
    assert finding.status is Status.NOT_EVALUATED
    assert "AuditDisabled" in finding.message


def test_org003_missing_organization_config_blocks_the_check(make_export: MakeExport) -> None:
    """The one required file (in every export since the first): without it nothing is judged."""
    found = _org003(make_export, org=_ABSENT)
    assert [(f.status, r) for r, f in found.items()] == [(Status.NOT_EVALUATED, "Get-OrganizationConfig")]


def test_org003_bypassed_admin_fails_high_with_a_quoted_fix(make_export: MakeExport) -> None:
    accounts = [_account("megan.bowen"), _account("o'brien", True, WhenChanged="2026-11-02T22:33:05Z")]
    roles = [_role("o'brien", "Transport Rules"), _role("megan.bowen")]
    found = _org003(make_export, bypass=accounts, roles=roles)
    finding = found["account o'brien"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "Transport Rules" in finding.message
    assert _points_at(finding, BYPASS, "/1/AuditBypassEnabled")
    assert _points_at(finding, ROLES, "/0/Role")
    assert finding.fix == ("Set-MailboxAuditBypassAssociation -Identity 'o''brien-id' "
                           "-AuditBypassEnabled $false")
    assert "mailbox audit bypass" not in found  # no summary pass beside a bypass


def test_org003_bypassed_service_account_without_admin_role_fails_medium(make_export: MakeExport) -> None:
    """Microsoft documents bypass for archiving or backup service accounts: medium, to confirm."""
    roles = [_role("svc-archive", "MyBaseOptions", RoleAssigneeType="RoleAssignmentPolicy"),
             _role("svc-archive", "Organization Management", Enabled=False)]
    found = _org003(make_export, bypass=[_account("svc-archive", True)], roles=roles)
    finding = found["account svc-archive"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.MEDIUM)
    assert "archiving or backup" in finding.message
    assert "No admin role is assigned to it directly" in finding.message


def test_org003_bypass_without_role_evidence_says_admin_rights_are_unknown(make_export: MakeExport) -> None:
    found = _org003(make_export, bypass=[_account("svc-archive", True)], roles=_ABSENT)
    finding = found["account svc-archive"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.MEDIUM)
    assert "Get-ManagementRoleAssignment is missing" in finding.message


def test_org003_missing_or_empty_bypass_evidence_is_not_evaluated(make_export: MakeExport) -> None:
    missing = _org003(make_export, bypass=_ABSENT)
    assert missing["Get-MailboxAuditBypassAssociation"].status is Status.NOT_EVALUATED
    assert missing["unified audit log"].status is Status.PASS
    empty = _org003(make_export, bypass=[])
    assert empty["mailbox audit bypass"].status is Status.NOT_EVALUATED
    assert "not exported" in empty["mailbox audit bypass"].message


def test_org003_unknown_or_unreadable_bypass_value_is_never_a_pass(make_export: MakeExport) -> None:
    absent = _org003(make_export, bypass=[_account("megan.bowen"), _account("svc-archive", _ABSENT)])
    assert absent["account svc-archive"].status is Status.NOT_EVALUATED
    assert "mailbox audit bypass" not in absent
    unreadable = _org003(make_export, bypass=[_account("megan.bowen"), _account("svc-archive", "perhaps")])
    assert unreadable["mailbox audit bypass"].status is Status.NOT_EVALUATED
    assert unreadable["svc-archive"].status is Status.NOT_EVALUATED
