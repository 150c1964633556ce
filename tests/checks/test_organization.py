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
