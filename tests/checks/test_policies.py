"""POL-001 to POL-007: allow lists, safe list, allowed senders and advanced delivery overrides that
exempt mail from filtering; automatic forwarding and journaling that copy mail out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditor.engine import Finding, Severity, Status
from auditor.errors import ProfileError
from checks.policies import parse_simulation_vendors, simulation_vendors

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


# POL-007: advanced delivery overrides (phishing simulations and SecOps mailboxes)

SIM_RULES = "exo/Get-ExoPhishSimOverrideRule.json"
KNOWBE4_IP = "23.21.109.197"  # KnowBe4's published sending address (simulation_vendors.toml)
SIM_RULE_ID = "_Exe:PhishSimOverr:6fed4b63-3563-495d-a481-b24a311f8329"
SIM_RESOURCE = f"phishing simulation override rule {SIM_RULE_ID}"


def _sim_rule(ips: Any, **overrides: Any) -> dict[str, Any]:
    rule = {"Name": SIM_RULE_ID, "Identity": SIM_RULE_ID, "Policy": "PhishSimOverridePolicy",
            "Mode": "Enforce", "Domains": ["security-training.example"], "SenderIpRanges": ips}
    rule.update(overrides)
    return rule


def _secops_policy(*sent_to: str, **overrides: Any) -> dict[str, Any]:
    policy = {"Name": "SecOpsOverridePolicy", "Identity": "SecOpsOverridePolicy",
              "Enabled": True, "SentTo": list(sent_to)}
    policy.update(overrides)
    return policy


def _mailbox(address: str, kind: str, display: str) -> dict[str, Any]:
    alias = address.split("@")[0]
    return {"Name": alias, "Alias": alias, "DisplayName": display, "PrimarySmtpAddress": address,
            "UserPrincipalName": address, "RecipientTypeDetails": kind,
            "EmailAddresses": [f"SMTP:{address}"]}


MAILBOXES = [
    _mailbox("secops@contoso.com", "SharedMailbox", "Security Operations"),
    _mailbox("soc.analyst@contoso.com", "UserMailbox", "SOC analyst"),
    _mailbox("info@contoso.com", "SharedMailbox", "Info"),
    _mailbox("megan.bowen@contoso.com", "UserMailbox", "Megan Bowen"),
]


def _pol007(make_export: MakeExport, *, sim_rules: list[dict[str, Any]] | None = None,
            sim_policy: dict[str, Any] | None = None, secops: list[dict[str, Any]] | None = None,
            secops_rules: list[dict[str, Any]] | None = None, mailboxes: Any = MAILBOXES,
            omit: tuple[str, ...] = (), gateway_file: Path | None = None,
            gateway: str | None = None) -> dict[str, Finding]:
    policy = sim_policy or {"Name": "PhishSimOverridePolicy", "Identity": "PhishSimOverridePolicy",
                            "Enabled": True}
    files: dict[str, Any] = {
        "Get-PhishSimOverridePolicy": [policy] if sim_rules else [],
        "Get-ExoPhishSimOverrideRule": sim_rules or [],
        "Get-SecOpsOverridePolicy": secops or [],
        "Get-ExoSecOpsOverrideRule": secops_rules or [],
        "Get-AcceptedDomain": accepted("contoso.com", "contoso.onmicrosoft.com"),
        "Get-Mailbox": mailboxes,
    }
    files = {key: value for key, value in files.items() if key not in omit}
    return _by_resource(_findings(make_export, "POL-007", files, gateway_file=gateway_file,
                                  gateway=gateway))


def _sim(make_export: MakeExport, ips: Any, **kwargs: Any) -> Finding:
    return _pol007(make_export, sim_rules=[_sim_rule(ips)], **kwargs)[SIM_RESOURCE]


@pytest.mark.parametrize(
    ("entry", "severity"),
    [("10.0.0.0/8", Severity.CRITICAL), ("172.16.0.0/16", Severity.HIGH),
     ("192.0.2.0/24", Severity.HIGH), ("192.0.2.10", Severity.HIGH),
     ("192.0.2.1-192.0.2.9", Severity.HIGH)],
)
def test_pol007_unknown_sending_ip_fails_and_wider_is_worse(
        make_export: MakeExport, entry: str, severity: Severity) -> None:
    """An outsider sending from an address no simulation vendor publishes skips filtering."""
    finding = _sim(make_export, [entry])
    assert (finding.status, finding.severity) == (Status.FAIL, severity)
    assert "no known phishing-simulation vendor" in finding.message
    assert _points_at(finding, SIM_RULES, "/0/SenderIpRanges/0")
    assert finding.fix == f"Remove-ExoPhishSimOverrideRule -Identity '{SIM_RULE_ID}' -Confirm:$false"


def test_pol007_known_vendor_ip_passes_naming_the_vendor(make_export: MakeExport) -> None:
    """KnowBe4's published address is what Microsoft's advanced delivery policy is for."""
    finding = _sim(make_export, [KNOWBE4_IP])
    assert finding.status is Status.PASS
    assert "KnowBe4" in finding.message


def test_pol007_unknown_ip_beside_a_vendors_is_removed_alone(make_export: MakeExport) -> None:
    finding = _sim(make_export, [KNOWBE4_IP, "192.0.2.10"])
    assert finding.status is Status.FAIL
    assert "192.0.2.10" in finding.message and "KnowBe4" in finding.message
    assert _points_at(finding, SIM_RULES, "/0/SenderIpRanges/1")
    assert not _points_at(finding, SIM_RULES, "/0/SenderIpRanges/0")
    assert finding.fix == (f"Set-ExoPhishSimOverrideRule -Identity '{SIM_RULE_ID}' "
                           "-RemoveSenderIpRanges '192.0.2.10'")


def test_pol007_range_wider_than_the_vendors_fails(make_export: MakeExport) -> None:
    finding = _sim(make_export, ["23.21.109.0/24"])
    assert finding.status is Status.FAIL
    assert "wider" in finding.message


def test_pol007_gateway_ips_in_a_simulation_rule_are_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """Microsoft: listing the gateway's IPs exempts every Internet sender using the domain."""
    finding = _sim(make_export, ["198.51.100.0/24"], gateway_file=doc_gateway)
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.CRITICAL)
    assert "Documentation gateway" in finding.message


def test_pol007_exchange_online_and_other_gateway_ranges_fail(make_export: MakeExport) -> None:
    eop = _sim(make_export, ["40.107.0.0/16"])
    assert (eop.status, eop.severity) == (Status.FAIL, Severity.CRITICAL)
    barracuda = _sim(make_export, ["209.222.80.0/24"])
    assert (barracuda.status, barracuda.severity) == (Status.FAIL, Severity.HIGH)
    assert "Barracuda" in barracuda.message


def test_pol007_vendor_documented_in_the_users_profile_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """A --gateway-file profile beside a named gateway documents the user's own vendor."""
    finding = _sim(make_export, ["198.51.100.7"], gateway="mimecast", gateway_file=doc_gateway)
    assert finding.status is Status.PASS
    assert "documented by the user" in finding.message


@pytest.mark.parametrize(
    ("overrides", "policy", "reason"),
    [({"Mode": "PendingDeletion"}, None, "PendingDeletion"),
     ({}, {"Name": "PhishSimOverridePolicy", "Identity": "PhishSimOverridePolicy",
           "Enabled": False}, "disabled")],
)
def test_pol007_inert_simulation_rule_passes_but_says_what_it_would_allow(
        make_export: MakeExport, overrides: dict[str, Any], policy: dict[str, Any] | None,
        reason: str) -> None:
    found = _pol007(make_export, sim_rules=[_sim_rule(["192.0.2.10"], **overrides)], sim_policy=policy)
    finding = found[SIM_RESOURCE]
    assert (finding.status, finding.severity) == (Status.PASS, Severity.INFO)
    assert "not in force" in finding.message and reason in finding.message
    assert "would exempt" in finding.message


def test_pol007_rule_without_domains_matches_nothing(make_export: MakeExport) -> None:
    found = _pol007(make_export, sim_rules=[_sim_rule(["192.0.2.10"], Domains=[])])
    assert found[SIM_RESOURCE].status is Status.PASS
    assert "matches no message" in found[SIM_RESOURCE].message


def test_pol007_unreadable_sending_ip_warns(make_export: MakeExport) -> None:
    finding = _sim(make_export, ["not-an-address"])
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)


def test_pol007_sending_ips_absent_or_unreadable_rule_is_not_evaluated(
        make_export: MakeExport) -> None:
    rule = _sim_rule([])
    del rule["SenderIpRanges"]
    assert _pol007(make_export, sim_rules=[rule])[SIM_RESOURCE].status is Status.NOT_EVALUATED
    found = _pol007(make_export, sim_rules=[_sim_rule(["192.0.2.10"], Mode=3)])
    assert {f.status for f in found.values() if "phishing" in f.resource} == {Status.NOT_EVALUATED}


def test_pol007_no_overrides_collected_pass_once_each(make_export: MakeExport) -> None:
    found = _pol007(make_export)
    assert {r: f.status for r, f in found.items()} == {
        "advanced delivery: phishing simulations": Status.PASS,
        "advanced delivery: SecOps mailboxes": Status.PASS,
    }


@pytest.mark.parametrize("missing", ["Get-ExoPhishSimOverrideRule", "Get-SecOpsOverridePolicy"])
def test_pol007_missing_evidence_is_not_evaluated(make_export: MakeExport, missing: str) -> None:
    found = _pol007(make_export, omit=(missing,))
    assert {(f.status, f.resource) for f in found.values()} == {(Status.NOT_EVALUATED, missing)}


def _secops(make_export: MakeExport, address: str, **kwargs: Any) -> Finding:
    return _pol007(make_export, secops=[_secops_policy(address)], **kwargs)[f"SecOps mailbox {address}"]


def test_pol007_regular_user_as_secops_mailbox_fails_high(make_export: MakeExport) -> None:
    """Every message to that person would skip all filtering, malware included."""
    finding = _secops(make_export, "megan.bowen@contoso.com")
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert _points_at(finding, "exo/Get-SecOpsOverridePolicy.json", "/0/SentTo/0")
    assert _points_at(finding, "exo/Get-Mailbox.json", "/3/RecipientTypeDetails")
    assert finding.fix == ("Set-SecOpsOverridePolicy -Identity 'SecOpsOverridePolicy' "
                           "-RemoveSentTo 'megan.bowen@contoso.com'")


@pytest.mark.parametrize("address", ["secops@contoso.com", "soc.analyst@contoso.com"])
def test_pol007_security_team_mailbox_passes(make_export: MakeExport, address: str) -> None:
    assert _secops(make_export, address).status is Status.PASS


@pytest.mark.parametrize(
    ("address", "severity", "words"),
    [("info@contoso.com", Severity.MEDIUM, "shared mailbox not named"),
     ("ghost@contoso.com", Severity.MEDIUM, "no mailbox"),
     ("secops@fabrikam.example", Severity.LOW, "outside the accepted domains")],
)
def test_pol007_doubtful_secops_entries_warn(make_export: MakeExport, address: str,
                                             severity: Severity, words: str) -> None:
    finding = _secops(make_export, address)
    assert (finding.status, finding.severity) == (Status.WARN, severity)
    assert words in finding.message


def test_pol007_disabled_secops_policy_is_inert(make_export: MakeExport) -> None:
    found = _pol007(make_export, secops=[_secops_policy("megan.bowen@contoso.com", Enabled=False)])
    finding = found["SecOps mailbox megan.bowen@contoso.com"]
    assert (finding.status, finding.severity) == (Status.PASS, Severity.INFO)
    assert "disabled" in finding.message


def test_pol007_without_mailboxes_only_a_security_name_passes(make_export: MakeExport) -> None:
    """Get-Mailbox is optional: its absence is said, and an ordinary name is not trusted."""
    named = _secops(make_export, "secops@contoso.com", omit=("Get-Mailbox",))
    assert named.status is Status.PASS and "not collected" in named.message
    plain = _secops(make_export, "megan.bowen@contoso.com", omit=("Get-Mailbox",))
    assert (plain.status, plain.severity) == (Status.WARN, Severity.MEDIUM)
    assert "not collected" in plain.message


def test_pol007_rule_and_policy_listing_one_mailbox_give_one_result(make_export: MakeExport) -> None:
    rule = {"Name": "_Exe:SecOpsOverrid:312c23cf", "Policy": "SecOpsOverridePolicy",
            "Mode": "Enforce", "SentTo": ["megan.bowen@contoso.com"]}
    found = _pol007(make_export, secops=[_secops_policy("megan.bowen@contoso.com")],
                    secops_rules=[rule])
    finding = found["SecOps mailbox megan.bowen@contoso.com"]
    assert finding.status is Status.FAIL
    assert _points_at(finding, "exo/Get-ExoSecOpsOverrideRule.json", "/0/SentTo/0")


def test_pol007_shipped_simulation_vendors_are_sourced() -> None:
    vendors = simulation_vendors()
    assert {"knowbe4", "hoxhunt"} <= {v.id for v in vendors}
    assert all(v.sources and all(s.startswith("https://") for s in v.sources) for v in vendors)


@pytest.mark.parametrize(
    ("group", "problem"),
    [({"cidrs": ["192.0.2.1"], "as_of": "2026-01-01", "confidence": "vendor"}, "source URL"),
     ({"cidrs": ["192.0.2.1"], "source": "http://x.example", "as_of": "2026-01-01",
       "confidence": "vendor"}, "source URL"),
     ({"cidrs": ["nonsense"], "source": "https://x.example", "as_of": "2026-01-01",
       "confidence": "vendor"}, "nonsense"),
     ({"cidrs": ["192.0.2.1"], "source": "https://x.example", "as_of": "yesterday",
       "confidence": "vendor"}, "ISO date"),
     ({"cidrs": ["192.0.2.1"], "source": "https://x.example", "as_of": "2026-01-01",
       "confidence": "rumour"}, "confidence")],
)
def test_pol007_simulation_vendor_data_is_validated(group: dict[str, Any], problem: str) -> None:
    data = {"schema_version": 1, "vendors": [{"id": "x", "name": "X", "ip_ranges": [group]}]}
    with pytest.raises(ProfileError, match=problem):
        parse_simulation_vendors(data, "test")


def test_pol007_secops_rule_pending_deletion_no_longer_counts(make_export: MakeExport) -> None:
    """A rule being removed no longer exempts anyone: only in-force entries are judged."""
    rule = {"Name": "_Exe:SecOpsOverrid:312c23cf", "Policy": "SecOpsOverridePolicy",
            "Mode": "PendingDeletion", "SentTo": ["megan.bowen@contoso.com"]}
    found = _pol007(make_export, secops_rules=[rule])
    assert found["advanced delivery: SecOps mailboxes"].status is Status.PASS
    assert "SecOps mailbox megan.bowen@contoso.com" not in found
