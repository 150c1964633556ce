"""POL-001 to POL-006: allow lists, safe list and allowed senders that exempt mail from filtering;
automatic forwarding and journaling that copy mail out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditor.engine import Finding, Severity, Status

from ..conftest import SAMPLES, accepted, audit, findings_for, mimecast_us_ranges

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


# --- POL-002 to POL-006 ---------------------------------------------------------------------

CONTENT = "exo/Get-HostedContentFilterPolicy.json"
SENDER_LIST = "exo/Get-TenantAllowBlockListItems-Sender.json"
SPOOF = "exo/Get-TenantAllowBlockListSpoofItems.json"
OUTBOUND = "exo/Get-HostedOutboundSpamFilterPolicy.json"
REMOTE = "exo/Get-RemoteDomain.json"
JOURNAL = "exo/Get-JournalRule.json"
TRANSPORT = "exo/Get-TransportConfig.json"
AS_OF = "2026-11-20T09:00:00Z"  # export.json collected_at in every export below
_ABSENT = object()


def _sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def _with_time(files: dict[str, Any]) -> dict[str, Any]:
    """Pin the audit's point in time, so expiry dates are judged the same on every day."""
    return {**files, "export": {"collected_at": AS_OF}}


def _findings(make_export: MakeExport, check_id: str, files: dict[str, Any], *,
              gateway_file: Path | None = None, gateway: str | None = None) -> list[Finding]:
    report = audit(make_export(_with_time(files)), gateway=gateway, gateway_file=gateway_file)
    return findings_for(report, check_id)


def _by_resource(findings: list[Finding]) -> dict[str, Finding]:
    found = {f.resource: f for f in findings}
    assert len(found) == len(findings), [(f.status, f.resource) for f in findings]
    return found


def _points_at(finding: Finding, file: str, pointer: str) -> bool:
    return any(e.file == file and e.pointer == pointer for e in finding.evidence)


# POL-002: Microsoft's safe list

def _safe_list(make_export: MakeExport, value: Any) -> list[Finding]:
    policy: dict[str, Any] = {"Name": "Default", "IsDefault": True, "IPAllowList": []}
    if value is not _ABSENT:
        policy["EnableSafeList"] = value
    return _findings(make_export, "POL-002", {"Get-HostedConnectionFilterPolicy": [policy]})


def test_pol002_safe_list_on_fails_with_the_fix(make_export: MakeExport) -> None:
    finding = _only(_safe_list(make_export, True))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.MEDIUM)
    assert finding.resource == "connection filter policy Default"
    assert _points_at(finding, POLICIES, "/0/EnableSafeList")
    assert finding.fix == "Set-HostedConnectionFilterPolicy -Identity 'Default' -EnableSafeList $false"


def test_pol002_safe_list_off_passes(make_export: MakeExport) -> None:
    assert _only(_safe_list(make_export, False)).status is Status.PASS


def test_pol002_sample_policy_with_safe_list_off_passes(make_export: MakeExport) -> None:
    files = {"Get-HostedConnectionFilterPolicy": _sample("Get-HostedConnectionFilterPolicy")}
    assert _only(_findings(make_export, "POL-002", files)).status is Status.PASS


def test_pol002_property_absent_is_not_evaluated(make_export: MakeExport) -> None:
    assert _only(_safe_list(make_export, _ABSENT)).status is Status.NOT_EVALUATED


def test_pol002_unreadable_value_is_never_a_pass(make_export: MakeExport) -> None:
    findings = _safe_list(make_export, "sometimes")
    assert {f.status for f in findings} == {Status.NOT_EVALUATED}
    assert any("EnableSafeList" in f.message and f.resource == "Default" for f in findings)


@pytest.mark.parametrize("files", [{"Get-AcceptedDomain": []},
                                   {"Get-HostedConnectionFilterPolicy": []}],
                         ids=["file missing", "no policy at all"])
def test_pol002_missing_or_empty_evidence_is_not_evaluated(
        make_export: MakeExport, files: dict[str, Any]) -> None:
    assert _only(_findings(make_export, "POL-002", files)).status is Status.NOT_EVALUATED


# POL-003: anti-spam allowed senders and domains

def _content(make_export: MakeExport, policies: Any, *, accepted_domains: bool = True) -> list[Finding]:
    files: dict[str, Any] = {"Get-HostedContentFilterPolicy": policies}
    if accepted_domains:
        files["Get-AcceptedDomain"] = accepted("contoso.com", "contoso.onmicrosoft.com")
    return _findings(make_export, "POL-003", files)


def test_pol003_sample_policies_own_domain_high_third_party_medium(make_export: MakeExport) -> None:
    found = _by_resource(_content(make_export, _sample("Get-HostedContentFilterPolicy")))
    own = found["anti-spam policy Default: contoso.com"]
    assert (own.status, own.severity) == (Status.FAIL, Severity.HIGH)
    assert "organisation's own" in own.message
    assert _points_at(own, CONTENT, "/value/0/AllowedSenderDomains/0")
    assert own.fix == ("Set-HostedContentFilterPolicy -Identity 'Default' "
                       "-AllowedSenderDomains @{Remove='contoso.com'}")
    partner = found["anti-spam policy Default: payroll-partner.example"]
    assert (partner.status, partner.severity) == (Status.FAIL, Severity.MEDIUM)
    sender = found["anti-spam policy Default: alerts@monitoring-vendor.example"]
    assert (sender.status, sender.severity) == (Status.FAIL, Severity.MEDIUM)
    assert "-AllowedSenders @{Remove='alerts@monitoring-vendor.example'}" in sender.fix
    assert found["anti-spam policy Executives - strict"].status is Status.PASS


def test_pol003_free_mail_domain_is_high(make_export: MakeExport) -> None:
    policy = {"Name": "Default", "IsDefault": True, "AllowedSenderDomains": ["gmail.com"]}
    finding = _only(_content(make_export, [policy]))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "free-mail" in finding.message


def test_pol003_custom_policy_is_judged_as_applied_and_says_so(make_export: MakeExport) -> None:
    policy = {"Name": "Sales", "IsDefault": False, "AllowedSenderDomains": ["partner.example"]}
    finding = _only(_content(make_export, [policy]))
    assert finding.status is Status.FAIL
    assert "rules are not in the evidence" in finding.message


def test_pol003_own_domain_without_accepted_domains_says_it_cannot_tell(
        make_export: MakeExport) -> None:
    policy = {"Name": "Default", "IsDefault": True, "AllowedSenderDomains": ["contoso.com"]}
    finding = _only(_content(make_export, [policy], accepted_domains=False))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.MEDIUM)
    assert "accepted domains were not collected" in finding.message


def test_pol003_empty_allow_lists_pass(make_export: MakeExport) -> None:
    policy = {"Name": "Default", "IsDefault": True, "AllowedSenderDomains": [], "AllowedSenders": None}
    assert _only(_content(make_export, [policy])).status is Status.PASS


@pytest.mark.parametrize("files", [{"Get-AcceptedDomain": []},
                                   {"Get-HostedContentFilterPolicy": []}],
                         ids=["file missing", "no policy at all"])
def test_pol003_missing_or_empty_evidence_is_not_evaluated(
        make_export: MakeExport, files: dict[str, Any]) -> None:
    assert _only(_findings(make_export, "POL-003", files)).status is Status.NOT_EVALUATED


def test_pol003_unreadable_list_is_never_a_pass(make_export: MakeExport) -> None:
    policy = {"Name": "Default", "IsDefault": True, "AllowedSenderDomains": [{"Domain": "x"}]}
    findings = _content(make_export, [policy])
    assert {f.status for f in findings} == {Status.NOT_EVALUATED}


# POL-004: Tenant Allow/Block List

def _tabl_files(sender: Any = (), *, url: Any = (), spoof: Any = None) -> dict[str, Any]:
    files: dict[str, Any] = {
        "Get-TenantAllowBlockListItems-Sender": list(sender) if not isinstance(sender, bytes) else sender,
        "Get-TenantAllowBlockListItems-Url": list(url),
        "Get-TenantAllowBlockListItems-FileHash": [],
        "Get-TenantAllowBlockListItems-IP": [],
        "Get-AcceptedDomain": accepted("contoso.com"),
    }
    if spoof is not None:
        files["Get-TenantAllowBlockListSpoofItems"] = spoof
    return files


def _entry(value: str, action: str = "Allow", **props: Any) -> dict[str, Any]:
    return {"Identity": f"id-{value}", "Value": value, "Action": action, "ListSubType": "Tenant",
            "SubmissionID": "Non-Submission", "ExpirationDate": None, "RemoveAfter": None, **props}


def test_pol004_sample_allow_removed_after_last_use_is_medium_and_names_who(
        make_export: MakeExport) -> None:
    found = _by_resource(_findings(make_export, "POL-004",
                                   _tabl_files(_sample("Get-TenantAllowBlockListItems"))))
    allow = found["Tenant Allow/Block List: allow Sender payroll-partner.example"]
    assert (allow.status, allow.severity) == (Status.FAIL, Severity.MEDIUM)
    assert "removed 45 days after it last matches" in allow.message
    assert "megan.bowen@contoso.com" in allow.message and "land" in allow.message
    assert _points_at(allow, SENDER_LIST, "/value/0/Action")
    assert allow.fix.startswith("Remove-TenantAllowBlockListItems -ListType Sender -Ids 'RgAAAA")
    assert not any("ceo.contoso" in f.resource for f in found.values())  # a block entry passes
    assert found["Tenant Allow/Block List: URLs"].status is Status.PASS


def test_pol004_never_expiring_allow_is_high(make_export: MakeExport) -> None:
    finding = _by_resource(_findings(make_export, "POL-004", _tabl_files(
        [_entry("partner.example", ModifiedBy="admin@contoso.com")])))[
        "Tenant Allow/Block List: allow Sender partner.example"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "never expires" in finding.message


def test_pol004_expiring_allow_is_medium_and_expired_one_passes(make_export: MakeExport) -> None:
    found = _by_resource(_findings(make_export, "POL-004", _tabl_files([
        _entry("later.example", ExpirationDate="2026-12-31T00:00:00Z"),
        _entry("gone.example", ExpirationDate="2026-11-01T00:00:00Z")])))
    later = found["Tenant Allow/Block List: allow Sender later.example"]
    assert (later.status, later.severity) == (Status.FAIL, Severity.MEDIUM)
    assert "expires on 2026-12-31" in later.message
    gone = found["Tenant Allow/Block List: allow Sender gone.example"]
    assert gone.status is Status.PASS and "expired on 2026-11-01" in gone.message


@pytest.mark.parametrize("value", ["contoso.com", "ceo@contoso.com", "gmail.com"])
def test_pol004_own_or_free_mail_sender_is_high_even_when_expiring(
        make_export: MakeExport, value: str) -> None:
    findings = _findings(make_export, "POL-004", _tabl_files(
        [_entry(value, ExpirationDate="2026-12-31T00:00:00Z")]))
    finding = _by_resource(findings)[f"Tenant Allow/Block List: allow Sender {value}"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)


def test_pol004_allow_from_a_false_positive_submission_is_listed_for_review(
        make_export: MakeExport) -> None:
    """Microsoft's own process adds such allows and removes them after 45 days without a match."""
    submitted = dict(SubmissionID="c4f1a2b3-9d8e-4f70-8a61-2b3c4d5e6f70", ListSubType="Submission",
                     RemoveAfter=45)
    found = _by_resource(_findings(make_export, "POL-004", _tabl_files([
        _entry("offers@supplier.example", **submitted), _entry("contoso.com", **submitted),
        _entry("hand-made.example", RemoveAfter=45)])))
    review = found["Tenant Allow/Block List: allow Sender offers@supplier.example"]
    assert (review.status, review.severity) == (Status.WARN, Severity.LOW)
    assert "false-positive submission" in review.message
    own = found["Tenant Allow/Block List: allow Sender contoso.com"]
    assert (own.status, own.severity) == (Status.FAIL, Severity.HIGH)
    manual = found["Tenant Allow/Block List: allow Sender hand-made.example"]
    assert (manual.status, manual.severity) == (Status.FAIL, Severity.MEDIUM)


def test_pol004_phishing_simulation_url_passes(make_export: MakeExport) -> None:
    files = _tabl_files(url=[_entry("*.simulation.example", ListSubType="AdvancedDelivery")])
    finding = _by_resource(_findings(make_export, "POL-004", files))[
        "Tenant Allow/Block List: allow Url *.simulation.example"]
    assert finding.status is Status.PASS and "advanced delivery" in finding.message


def test_pol004_spoofed_sender_allow_for_own_domain_is_high(make_export: MakeExport) -> None:
    spoof = [{"Identity": "0f3c-guid", "SpoofedUser": "contoso.com",
              "SendingInfrastructure": "192.0.2.0/24", "SpoofType": "Internal", "Action": "Allow"},
             {"Identity": "b10c", "SpoofedUser": "fabrikam.example",
              "SendingInfrastructure": "bulk.example", "SpoofType": "External", "Action": "Block"}]
    found = _by_resource(_findings(make_export, "POL-004", _tabl_files(spoof=spoof)))
    finding = found["Tenant Allow/Block List: spoofed sender contoso.com via 192.0.2.0/24"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert finding.fix == "Remove-TenantAllowBlockListSpoofItems -Identity Default -Ids '0f3c-guid'"
    assert _points_at(finding, SPOOF, "/0/Action")
    assert not any("fabrikam" in r for r in found)


def test_pol004_spoof_items_with_only_blocks_pass(make_export: MakeExport) -> None:
    spoof = [{"Identity": "b10c", "SpoofedUser": "x.example", "SendingInfrastructure": "y.example",
              "SpoofType": "External", "Action": "Block"}]
    found = _by_resource(_findings(make_export, "POL-004", _tabl_files(spoof=spoof)))
    assert found["Tenant Allow/Block List: spoofed senders"].status is Status.PASS


def test_pol004_spoof_action_written_as_a_number_is_reported(make_export: MakeExport) -> None:
    spoof = [{"Identity": "n", "SpoofedUser": "contoso.com", "SendingInfrastructure": "y.example",
              "SpoofType": "Internal", "Action": 0}]
    found = _by_resource(_findings(make_export, "POL-004", _tabl_files(spoof=spoof)))
    finding = found["Tenant Allow/Block List: spoofed sender contoso.com via y.example"]
    assert finding.status is Status.WARN and "'0'" in finding.message


def test_pol004_spoof_items_not_collected_are_not_evaluated(make_export: MakeExport) -> None:
    found = _by_resource(_findings(make_export, "POL-004", _tabl_files()))
    assert found["Tenant Allow/Block List: spoofed senders"].status is Status.NOT_EVALUATED
    assert found["Tenant Allow/Block List: domains and email addresses"].status is Status.PASS


def test_pol004_a_missing_list_makes_the_check_not_evaluated(make_export: MakeExport) -> None:
    files = _tabl_files([_entry("partner.example")])
    del files["Get-TenantAllowBlockListItems-Url"]
    finding = _only(_findings(make_export, "POL-004", files))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-TenantAllowBlockListItems-Url"


def test_pol004_unreadable_action_is_never_a_pass(make_export: MakeExport) -> None:
    findings = _findings(make_export, "POL-004", _tabl_files([_entry("partner.example", action=1)]))
    assert not any(f.status is Status.PASS and "domains and email" in f.resource for f in findings)
    assert any(f.status is Status.NOT_EVALUATED and f.resource == "id-partner.example"
               for f in findings)


# POL-005: external automatic forwarding

def _outbound(mode: Any, name: str = "Default", default: bool = True) -> dict[str, Any]:
    return {"Name": name, "Identity": name, "IsDefault": default, "AutoForwardingMode": mode}


def _remote(domain: str, forward: Any, name: str | None = None) -> dict[str, Any]:
    return {"Name": name or ("Default" if domain == "*" else domain), "DomainName": domain,
            "AutoForwardEnabled": forward}


def _pol005(make_export: MakeExport, policies: Any, remote: Any = None) -> list[Finding]:
    files: dict[str, Any] = {"Get-HostedOutboundSpamFilterPolicy": policies}
    if remote is not None:
        files["Get-RemoteDomain"] = remote
    return _findings(make_export, "POL-005", files)


def test_pol005_on_with_default_remote_domain_allowing_fails_high(make_export: MakeExport) -> None:
    finding = _only(_pol005(make_export, [_outbound("On")], _sample("Get-RemoteDomain")))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert finding.resource == "outbound spam policy Default"
    assert _points_at(finding, OUTBOUND, "/0/AutoForwardingMode")
    assert _points_at(finding, REMOTE, "/value/0/AutoForwardEnabled")
    assert finding.fix == "Set-HostedOutboundSpamFilterPolicy -Identity 'Default' -AutoForwardingMode Off"


def test_pol005_on_but_default_remote_domain_blocking_passes(make_export: MakeExport) -> None:
    finding = _only(_pol005(make_export, [_outbound("On")], [_remote("*", False)]))
    assert finding.status is Status.PASS
    assert "blocks automatic forwarding" in finding.message


def test_pol005_remote_domains_open_to_partners_warn_low(make_export: MakeExport) -> None:
    remote = [_remote("*", False), _remote("partner.example", True)]
    finding = _only(_pol005(make_export, [_outbound("On")], remote))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.LOW)
    assert "partner.example" in finding.message


def test_pol005_remote_domain_of_a_known_archive_is_not_a_partner(make_export: MakeExport) -> None:
    remote = [_remote("*", False), _remote("mas.barracudanetworks.com", True, "Barracuda archive")]
    assert _only(_pol005(make_export, [_outbound("On")], remote)).status is Status.PASS


def test_pol005_off_passes_whatever_the_remote_domains(make_export: MakeExport) -> None:
    finding = _only(_pol005(make_export, [_outbound("Off")], [_remote("*", True)]))
    assert finding.status is Status.PASS


def test_pol005_automatic_with_open_remote_domain_warns_low(make_export: MakeExport) -> None:
    """Microsoft says Automatic now means Off; its cmdlet reference still hedges, so: low."""
    finding = _only(_pol005(make_export, [_outbound("Automatic")], [_remote("*", True)]))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.LOW)


def test_pol005_automatic_with_blocking_remote_domain_passes(make_export: MakeExport) -> None:
    finding = _only(_pol005(make_export, [_outbound("Automatic")], [_remote("*", False)]))
    assert finding.status is Status.PASS


def test_pol005_on_without_remote_domains_warns(make_export: MakeExport) -> None:
    finding = _only(_pol005(make_export, [_outbound("On")]))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)
    assert "remote domains were not collected" in finding.message


def test_pol005_custom_policy_result_names_its_scope(make_export: MakeExport) -> None:
    findings = _pol005(make_export, [_outbound("Off"), _outbound("On", "Sales", default=False)],
                       [_remote("*", True)])
    found = _by_resource(findings)
    assert found["outbound spam policy Default"].status is Status.PASS
    sales = found["outbound spam policy Sales"]
    assert sales.status is Status.FAIL and "custom outbound spam policy" in sales.message


@pytest.mark.parametrize("policies", [None, []], ids=["file missing", "no policy at all"])
def test_pol005_missing_or_empty_policies_are_not_evaluated(
        make_export: MakeExport, policies: Any) -> None:
    files: dict[str, Any] = {"Get-RemoteDomain": [_remote("*", True)]}
    if policies is not None:
        files["Get-HostedOutboundSpamFilterPolicy"] = policies
    assert _only(_findings(make_export, "POL-005", files)).status is Status.NOT_EVALUATED


def test_pol005_integer_mode_is_not_evaluated_never_pass(make_export: MakeExport) -> None:
    findings = _pol005(make_export, [_outbound(2)], [_remote("*", True)])
    assert {f.status for f in findings} == {Status.NOT_EVALUATED}
    assert any("AutoForwardingMode" in f.message for f in findings)


# POL-006: journaling outside the organisation

def _journal(address: str, **props: Any) -> dict[str, Any]:
    return {"Name": "Journal", "Enabled": True, "Scope": "Global", "Recipient": None,
            "JournalEmailAddress": address, **props}


def _pol006(make_export: MakeExport, rules: Any, *, ndr: Any = "postmaster@contoso.com",
            connectors: Any = None, gateway_file: Path | None = None) -> dict[str, Finding]:
    files: dict[str, Any] = {"Get-JournalRule": rules,
                             "Get-AcceptedDomain": accepted("contoso.com", "contoso.onmicrosoft.com")}
    if ndr is not _ABSENT:
        files["Get-TransportConfig"] = [{"Identity": "Transport Settings", "JournalingReportNdrTo": ndr}]
    if connectors is not None:
        files["Get-OutboundConnector"] = connectors
    return _by_resource(_findings(make_export, "POL-006", files, gateway_file=gateway_file))


def test_pol006_journal_of_all_mail_to_an_unknown_outsider_is_critical(make_export: MakeExport) -> None:
    finding = _pol006(make_export, [_journal("copies@exfil.example")])["journal rule Journal"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.CRITICAL)
    assert _points_at(finding, JOURNAL, "/0/JournalEmailAddress")
    assert finding.fix == "Disable-JournalRule -Identity 'Journal' -Confirm:$false"


def test_pol006_journal_of_one_recipient_is_high(make_export: MakeExport) -> None:
    finding = _pol006(make_export, [_journal("copies@exfil.example", Recipient="ceo@contoso.com")])[
        "journal rule Journal"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)


@pytest.mark.parametrize("address", [
    "bma_83ad52ce@mas.barracudanetworks.com",
    "contoso@journaling.mailstream-eu1.mxrecord.io",
    "journal-123@mail.eu.cmd.cisco.com",
    "journaling@us-smtp-journal-1.mimecast.com",
])
def test_pol006_known_archive_services_pass(make_export: MakeExport, address: str) -> None:
    finding = _pol006(make_export, [_journal(address)])["journal rule Journal"]
    assert finding.status is Status.PASS
    assert "known archive" in finding.message and "confirm" in finding.message


def test_pol006_archive_named_in_the_users_profile_passes(
        make_export: MakeExport, tmp_path: Path) -> None:
    profile = tmp_path / "mine.toml"
    profile.write_text('schema_version = 1\nid = "mine"\nname = "Mine"\nvendor = "Fabrikam"\n'
                       'archive_domains = ["vault.fabrikam.example"]\n')
    finding = _pol006(make_export, [_journal("contoso@vault.fabrikam.example")],
                      gateway_file=profile)["journal rule Journal"]
    assert finding.status is Status.PASS


def test_pol006_mimecast_journal_subdomain_relayed_to_mimecast_passes(make_export: MakeExport) -> None:
    connector = {"Name": "Journal to Mimecast", "Enabled": True,
                 "RecipientDomains": ["journal.contoso.com"],
                 "SmartHosts": ["us-smtp-journal-1.mimecast.com"]}
    found = _pol006(make_export, [_journal("journaling@journal.contoso.com")], connectors=[connector])
    finding = found["journal rule Journal"]
    assert finding.status is Status.PASS
    assert _points_at(finding, "exo/Get-OutboundConnector.json", "/0/SmartHosts")


def test_pol006_journal_subdomain_without_a_connector_to_an_archive_fails(
        make_export: MakeExport) -> None:
    connector = {"Name": "All mail", "Enabled": True, "RecipientDomains": ["*"],
                 "SmartHosts": ["us-smtp-journal-1.mimecast.com"]}
    found = _pol006(make_export, [_journal("journaling@journal.contoso.com")], connectors=[connector])
    assert found["journal rule Journal"].status is Status.FAIL


def test_pol006_own_subdomain_relayed_to_the_gateway_passes_but_an_outsider_does_not(
        make_export: MakeExport, doc_gateway: Path) -> None:
    connectors = [{"Name": "Journal", "Enabled": True, "SmartHosts": ["outbound.gateway.example"],
                   "RecipientDomains": ["journal.contoso.com", "exfil.example"]}]
    rules = [_journal("j@journal.contoso.com", Name="Own"), _journal("j@exfil.example", Name="Out")]
    found = _pol006(make_export, rules, connectors=connectors, gateway_file=doc_gateway)
    assert found["journal rule Own"].status is Status.PASS
    assert found["journal rule Out"].status is Status.FAIL


def test_pol006_internal_and_disabled_rules_pass(make_export: MakeExport) -> None:
    found = _pol006(make_export, [_journal("archive@contoso.com", Name="Internal"),
                                  _journal("x@exfil.example", Name="Off", Enabled=False)])
    assert found["journal rule Internal"].status is Status.PASS
    assert found["journal rule Off"].status is Status.PASS
    assert "disabled" in found["journal rule Off"].message


def test_pol006_sample_rule_naming_a_recipient_warns(make_export: MakeExport) -> None:
    files = {"Get-JournalRule": _sample("Get-JournalRule"),
             "Get-AcceptedDomain": accepted("contoso.com")}
    found = _by_resource(_findings(make_export, "POL-006", files))
    finding = found["journal rule Journal all mail to Fabrikam Vault"]
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)
    assert "Fabrikam Vault Journal" in finding.message and "Get-Recipient" in finding.message
    assert found["journal NDR mailbox (JournalingReportNdrTo)"].status is Status.NOT_EVALUATED


def test_pol006_journal_ndr_mailbox_outside_fails_high(make_export: MakeExport) -> None:
    finding = _pol006(make_export, [], ndr="ndr@exfil.example")[
        "journal NDR mailbox (JournalingReportNdrTo)"]
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert _points_at(finding, TRANSPORT, "/0/JournalingReportNdrTo")


@pytest.mark.parametrize("ndr", ["<>", None, "postmaster@contoso.com"])
def test_pol006_journal_ndr_unset_or_internal_passes(make_export: MakeExport, ndr: Any) -> None:
    found = _pol006(make_export, [], ndr=ndr)
    assert found["journal NDR mailbox (JournalingReportNdrTo)"].status is Status.PASS
    assert found["journal rules"].status is Status.PASS


def test_pol006_missing_journal_rules_are_not_evaluated(make_export: MakeExport) -> None:
    files = {"Get-AcceptedDomain": accepted("contoso.com")}
    finding = _only(_findings(make_export, "POL-006", files))
    assert (finding.status, finding.resource) == (Status.NOT_EVALUATED, "Get-JournalRule")
