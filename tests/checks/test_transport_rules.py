"""RULE-001 to RULE-007: transport rules that switch filtering off, trust headers, neuter the
gateway lock, divert or hide mail, or copy it outside."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.engine import Finding, Severity, Status

from ..conftest import accepted, audit, connector, findings_for, mimecast_us_ranges, rule, statuses

MakeExport = Callable[..., Path]
RULES = "exo/Get-TransportRule.json"
GATEWAY_RANGES = ["198.51.100.0/24", "203.0.113.0/25"]
PREDICATE = "Microsoft.Exchange.MessagingPolicies.Rules.Tasks.{}Predicate"


def _run(make_export: MakeExport, check_id: str, rules: list[dict[str, Any]] | None,
         domains: list[dict[str, Any]] | None, *, gateway_file: Path | None = None,
         gateway: str | None = None) -> list[Finding]:
    files: dict[str, Any] = {}
    if rules is not None:
        files["Get-TransportRule"] = rules
    if domains is not None:
        files["Get-AcceptedDomain"] = domains
    report = audit(make_export(files), gateway=gateway, gateway_file=gateway_file)
    return findings_for(report, check_id)


def _rule001(make_export: MakeExport, doc_gateway: Path, *rules: dict[str, Any],
             domains: tuple[str, ...] = ("contoso.com",)) -> list[Finding]:
    return _run(make_export, "RULE-001", list(rules), accepted(*domains),
                gateway_file=doc_gateway)


def _rule002(make_export: MakeExport, *rules: dict[str, Any],
             domains: list[dict[str, Any]] | None = None) -> list[Finding]:
    return _run(make_export, "RULE-002", list(rules),
                accepted("contoso.com") if domains is None else domains)


def _only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.status, f.resource, f.message) for f in findings]
    return findings[0]


def _points_at(finding: Finding, pointer: str, file: str = RULES) -> bool:
    return any(e.file == file and e.pointer == pointer for e in finding.evidence)


def _assert_fails(finding: Finding, severity: Severity, name: str, pointer: str) -> None:
    assert finding.status is Status.FAIL
    assert finding.severity is severity
    assert finding.resource == f"transport rule {name}"
    assert _points_at(finding, pointer), finding.evidence


# --- RULE-001: bypasses it must catch -------------------------------------------------------


def test_rule001_own_accepted_domain_as_sender_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Trust ourselves", SetSCL=-1, SenderDomainIs=["contoso.com"])
    finding = _only(_rule001(make_export, doc_gateway, bypass))
    _assert_fails(finding, Severity.CRITICAL, "Trust ourselves", "/0/SetSCL")
    assert _points_at(finding, "/0/SenderDomainIs")


def test_rule001_own_domain_without_accepted_domains_is_only_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Trust ourselves", SetSCL=-1, SenderDomainIs=["contoso.com"])
    findings = _run(make_export, "RULE-001", [bypass], None, gateway_file=doc_gateway)
    _assert_fails(_only(findings), Severity.HIGH, "Trust ourselves", "/0/SetSCL")


def test_rule001_partner_sender_domain_is_high(make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Trust partner", SetSCL=-1, SenderDomainIs=["partner.example"])
    finding = _only(_rule001(make_export, doc_gateway, bypass))
    _assert_fails(finding, Severity.HIGH, "Trust partner", "/0/SetSCL")
    assert _points_at(finding, "/0/SenderDomainIs")


def test_rule001_header_only_condition_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Scanned by gateway", SetSCL=-1, HeaderContainsMessageHeader="X-Scanned",
                  HeaderContainsWords=["clean"])
    finding = _only(_rule001(make_export, doc_gateway, bypass))
    _assert_fails(finding, Severity.CRITICAL, "Scanned by gateway", "/0/SetSCL")
    assert _points_at(finding, "/0/HeaderContainsMessageHeader")


def test_rule001_rule_without_any_condition_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_rule001(make_export, doc_gateway, rule("Skip everything", SetSCL=-1)))
    _assert_fails(finding, Severity.CRITICAL, "Skip everything", "/0/SetSCL")


def test_rule001_scl_as_string_is_caught(make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Trust partner", SetSCL="-1", SenderDomainIs=["partner.example"])
    finding = _only(_rule001(make_export, doc_gateway, bypass))
    _assert_fails(finding, Severity.HIGH, "Trust partner", "/0/SetSCL")


def test_rule001_scl_header_set_to_minus_one_is_caught(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Header bypass", SetHeaderName="X-MS-Exchange-Organization-SCL",
                  SetHeaderValue="-1", SenderDomainIs=["partner.example"])
    finding = _only(_rule001(make_export, doc_gateway, bypass))
    _assert_fails(finding, Severity.HIGH, "Header bypass", "/0/SetHeaderName")


def test_rule001_gateway_ranges_plus_unknown_range_warns_medium(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Gateway SCL", SetSCL=-1, SenderIpRanges=[*GATEWAY_RANGES, "192.0.2.0/24"])
    finding = _only(_rule001(make_export, doc_gateway, bypass))
    assert finding.status is Status.WARN
    assert finding.severity is Severity.MEDIUM
    assert finding.resource == "transport rule Gateway SCL"
    assert _points_at(finding, "/0/SenderIpRanges")
    assert "192.0.2.0/24" in finding.message


def test_rule001_exchange_online_range_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Trust Microsoft", SetSCL=-1, SenderIpRanges=["40.107.0.0/16"])
    finding = _only(_rule001(make_export, doc_gateway, bypass))
    _assert_fails(finding, Severity.CRITICAL, "Trust Microsoft", "/0/SetSCL")
    assert _points_at(finding, "/0/SenderIpRanges")


def test_rule001_unmodelled_predicate_counts_as_outsider_controlled(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Big attachments", SetSCL=-1, AttachmentSizeOver="10 MB (10,485,760 bytes)",
                  Conditions=[PREDICATE.format("AttachmentSizeOver")])
    finding = _only(_rule001(make_export, doc_gateway, bypass))
    assert finding.status is Status.FAIL
    assert finding.resource == "transport rule Big attachments"
    assert _points_at(finding, "/0/SetSCL")
    assert _points_at(finding, "/0/Conditions")


def test_rule001_unreadable_scl_is_not_evaluated_never_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _rule001(make_export, doc_gateway, rule("Odd", SetSCL="abc"))
    unread = [f for f in findings if f.resource == "Odd"]
    assert len(unread) == 1
    assert unread[0].status is Status.NOT_EVALUATED
    assert unread[0].evidence[0].file == RULES
    assert unread[0].evidence[0].pointer.startswith("/0")
    assert "SetSCL" in unread[0].message
    assert not any(f.status is Status.PASS for f in findings)


# --- RULE-001: rules that do not act on mail, and legitimate rules --------------------------


def test_rule001_disabled_rule_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Old bypass", State="Disabled", SetSCL=-1)
    assert _only(_rule001(make_export, doc_gateway, bypass)).status is Status.PASS


def test_rule001_audit_mode_rule_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Testing bypass", Mode="Audit", SetSCL=-1)
    assert _only(_rule001(make_export, doc_gateway, bypass)).status is Status.PASS


def test_rule001_expired_rule_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Expired bypass", SetSCL=-1, ExpiryDate="2001-01-01T00:00:00Z")
    assert _only(_rule001(make_export, doc_gateway, bypass)).status is Status.PASS


def test_rule001_not_yet_active_rule_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Future bypass", SetSCL=-1, ActivationDate="2099-01-01T00:00:00Z")
    assert _only(_rule001(make_export, doc_gateway, bypass)).status is Status.PASS


def test_rule001_rule_active_now_with_past_activation_is_caught(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Skip everything", SetSCL=-1, ActivationDate="2001-01-01T00:00:00Z",
                  ExpiryDate="2099-01-01T00:00:00Z")
    assert _only(_rule001(make_export, doc_gateway, bypass)).status is Status.FAIL


def test_rule001_internal_scope_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    internal = rule("Internal only", SetSCL=-1, FromScope="InOrganization")
    finding = _only(_rule001(make_export, doc_gateway, internal))
    assert finding.status is Status.PASS
    assert _points_at(finding, "/0/FromScope")


def test_rule001_gateway_ranges_only_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    gated = rule("Gateway SCL", SetSCL=-1, SenderIpRanges=GATEWAY_RANGES)
    finding = _only(_rule001(make_export, doc_gateway, gated))
    assert finding.status is Status.PASS
    assert _points_at(finding, "/0/SenderIpRanges")


def test_rule001_mimecast_recommended_scl_rule_passes(make_export: MakeExport) -> None:
    mimecast = rule("Mimecast bypass spam filtering", SetSCL=-1,
                    SenderIpRanges=mimecast_us_ranges(),
                    Conditions=[PREDICATE.format("SenderIpRanges")])
    findings = _run(make_export, "RULE-001", [mimecast], accepted("contoso.com"),
                    gateway="mimecast")
    assert _only(findings).status is Status.PASS


def test_rule001_no_scl_rule_gives_single_pass(make_export: MakeExport, doc_gateway: Path) -> None:
    other = rule("Disclaimer", ApplyHtmlDisclaimerText="Sent from Contoso")
    finding = _only(_rule001(make_export, doc_gateway, other))
    assert finding.status is Status.PASS
    assert finding.resource == "transport rules"


def test_rule001_missing_rules_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _run(make_export, "RULE-001", None, accepted("contoso.com"),
                    gateway_file=doc_gateway)
    finding = _only(findings)
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-TransportRule"
    assert finding.evidence[0].file == RULES


# --- RULE-002 -------------------------------------------------------------------------------


def test_rule002_blind_copy_to_external_address_fails_high(make_export: MakeExport) -> None:
    leak = rule("Copy CEO mail", SentTo=["ceo@contoso.com"], BlindCopyTo=["drop@evil.example"])
    finding = _only(_rule002(make_export, leak))
    _assert_fails(finding, Severity.HIGH, "Copy CEO mail", "/0/BlindCopyTo/0")


def test_rule002_redirect_external_without_conditions_is_critical(
        make_export: MakeExport) -> None:
    leak = rule("Redirect all", RedirectMessageTo=["drop@evil.example"])
    finding = _only(_rule002(make_export, leak))
    _assert_fails(finding, Severity.CRITICAL, "Redirect all", "/0/RedirectMessageTo/0")


def test_rule002_display_name_and_smtp_bracket_form_is_parsed(make_export: MakeExport) -> None:
    leak = rule("Copy", SentTo=["ceo@contoso.com"],
                BlindCopyTo=['"Archive" [SMTP:drop@evil.example]'])
    finding = _only(_rule002(make_export, leak))
    _assert_fails(finding, Severity.HIGH, "Copy", "/0/BlindCopyTo/0")
    assert "drop@evil.example" in finding.message


def test_rule002_smtp_prefix_form_is_parsed(make_export: MakeExport) -> None:
    leak = rule("Copy", SentTo=["ceo@contoso.com"], BlindCopyTo=["smtp:drop@evil.example"])
    finding = _only(_rule002(make_export, leak))
    _assert_fails(finding, Severity.HIGH, "Copy", "/0/BlindCopyTo/0")


def test_rule002_internal_address_passes(make_export: MakeExport) -> None:
    archive = rule("Archive copy", BlindCopyTo=['"Archive" [SMTP:archive@contoso.com]'])
    finding = _only(_rule002(make_export, archive))
    assert finding.status is Status.PASS
    assert _points_at(finding, "/0/BlindCopyTo/0")


def test_rule002_subdomain_with_match_subdomains_passes(make_export: MakeExport) -> None:
    domains = accepted("contoso.com")
    domains[0]["MatchSubDomains"] = True
    archive = rule("Archive copy", BlindCopyTo=["smtp:archive@eu.contoso.com"])
    assert _only(_rule002(make_export, archive, domains=domains)).status is Status.PASS


def test_rule002_subdomain_without_match_subdomains_fails(make_export: MakeExport) -> None:
    archive = rule("Archive copy", SentTo=["ceo@contoso.com"],
                   BlindCopyTo=["archive@eu.contoso.com"])
    finding = _only(_rule002(make_export, archive))
    _assert_fails(finding, Severity.HIGH, "Archive copy", "/0/BlindCopyTo/0")


def test_rule002_recipient_given_by_name_warns_medium(make_export: MakeExport) -> None:
    named = rule("Copy to contact", SentTo=["ceo@contoso.com"], BlindCopyTo=["Legal Archive"])
    finding = _only(_rule002(make_export, named))
    assert finding.status is Status.WARN
    assert finding.severity is Severity.MEDIUM
    assert finding.resource == "transport rule Copy to contact"
    assert _points_at(finding, "/0/BlindCopyTo/0")


def test_rule002_disabled_rule_passes(make_export: MakeExport) -> None:
    leak = rule("Old redirect", State="Disabled", RedirectMessageTo=["drop@evil.example"])
    assert _only(_rule002(make_export, leak)).status is Status.PASS


def test_rule002_no_copy_rules_gives_single_pass(make_export: MakeExport) -> None:
    finding = _only(_rule002(make_export, rule("Gateway SCL", SetSCL=-1)))
    assert finding.status is Status.PASS
    assert finding.resource == "transport rules"


def test_rule002_missing_accepted_domains_is_not_evaluated(make_export: MakeExport) -> None:
    leak = rule("Redirect all", RedirectMessageTo=["drop@evil.example"])
    finding = _only(_run(make_export, "RULE-002", [leak], None))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-AcceptedDomain"
    assert finding.evidence[0].file == "exo/Get-AcceptedDomain.json"


def test_rule002_missing_rules_file_is_not_evaluated(make_export: MakeExport) -> None:
    finding = _only(_run(make_export, "RULE-002", None, accepted("contoso.com")))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-TransportRule"
    assert finding.evidence[0].file == RULES


def test_rule002_unreadable_recipients_are_not_evaluated_never_pass(
        make_export: MakeExport) -> None:
    odd = rule("Odd copy", BlindCopyTo=[{"Address": "drop@evil.example"}])
    findings = _rule002(make_export, odd)
    unread = [f for f in findings if f.resource == "Odd copy"]
    assert len(unread) == 1
    assert unread[0].status is Status.NOT_EVALUATED
    assert unread[0].evidence[0].file == RULES
    assert "BlindCopyTo" in unread[0].message
    assert not any(f.status is Status.PASS for f in findings)


# --- shared by RULE-003 to RULE-007 ---------------------------------------------------------

OUTBOUND = "exo/Get-OutboundConnector.json"
STAMPED_GATEWAY = """\
schema_version = 1
id = "stamped-gateway"
name = "Stamped gateway"
vendor = "Example"
smart_hosts = ["outbound.gateway.example"]
header_stamps = ["X-Gateway-Verdict", "X-Gateway-*"]
[[ip_ranges]]
cidrs = ["198.51.100.0/24", "203.0.113.0/25"]
"""


def _findings(make_export: MakeExport, check_id: str, rules: list[dict[str, Any]] | None, *,
              gateway_file: Path | None = None, gateway: str | None = None,
              extra: dict[str, Any] | None = None) -> list[Finding]:
    files: dict[str, Any] = dict(extra or {})
    if rules is not None:
        files["Get-TransportRule"] = rules
    report = audit(make_export(files), gateway=gateway, gateway_file=gateway_file)
    return findings_for(report, check_id)


def _stamped_gateway(tmp_path: Path) -> Path:
    path = tmp_path / "stamped-gateway.toml"
    path.write_text(STAMPED_GATEWAY)
    return path


def _lock(name: str = "Reject mail not from gateway", **props: Any) -> dict[str, Any]:
    """The vendor-documented lock: reject outside mail unless it comes from the gateway."""
    base: dict[str, Any] = {
        "FromScope": "NotInOrganization", "ExceptIfSenderIpRanges": GATEWAY_RANGES,
        "RejectMessageReasonText": "Mail must come through the gateway",
        "Conditions": [PREDICATE.format("FromScope")],
        "Exceptions": [PREDICATE.format("SenderIpRanges")],
    }
    base.update(props)
    return rule(name, **base)


def _assert_finding(finding: Finding, status: Status, severity: Severity, name: str,
                    *pointers: str, file: str = RULES) -> None:
    assert finding.status is status, (finding.status, finding.message)
    assert finding.severity is severity, (finding.severity, finding.message)
    assert finding.resource == f"transport rule {name}"
    for pointer in pointers:
        assert _points_at(finding, pointer, file), (pointer, finding.evidence)


# --- RULE-003: header trust -----------------------------------------------------------------


def test_rule003_header_only_scl_bypass_is_critical_and_names_the_header(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Scanned by gateway", SetSCL=-1, HeaderContainsMessageHeader="X-Scanned",
                  HeaderContainsWords=["clean"],
                  Conditions=[PREDICATE.format("HeaderContains")])
    finding = _only(_findings(make_export, "RULE-003", [bypass], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.CRITICAL, "Scanned by gateway",
                    "/0/HeaderContainsMessageHeader", "/0/SetSCL")
    assert "X-Scanned" in finding.message and "'clean'" in finding.message
    assert "sender writes" in finding.message
    assert finding.fix == "Disable-TransportRule -Identity 'Scanned by gateway' -Confirm:$false"


def test_rule003_and_rule001_report_the_same_rule_with_distinct_messages(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """RULE-001 judges the SCL -1 rule; RULE-003 names the header and who can write it."""
    bypass = rule("Scanned by gateway", SetSCL=-1, HeaderContainsMessageHeader="X-Scanned",
                  HeaderContainsWords=["clean"])
    report = audit(make_export({"Get-TransportRule": [bypass]}), gateway_file=doc_gateway)
    rule001 = _only(findings_for(report, "RULE-001"))
    rule003 = _only(findings_for(report, "RULE-003"))
    assert rule001.status is rule003.status is Status.FAIL
    assert rule001.message != rule003.message


def test_rule003_gateway_stamp_as_trust_anchor_explains_direct_delivery(
        make_export: MakeExport, tmp_path: Path) -> None:
    skip = rule("Skip Safe Links for scanned mail", HeaderContainsMessageHeader="X-Gateway-Verdict",
                HeaderContainsWords=["pass"],
                SetHeaderName="X-MS-Exchange-Organization-SkipSafeLinksProcessing",
                SetHeaderValue="1")
    finding = _only(_findings(make_export, "RULE-003", [skip],
                              gateway_file=_stamped_gateway(tmp_path)))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Skip Safe Links for scanned mail",
                    "/0/HeaderContainsMessageHeader", "/0/SetHeaderName")
    assert "Stamped gateway adds" in finding.message
    assert "straight to the tenant's Exchange Online endpoint" in finding.message


def test_rule003_header_plus_other_spoofable_condition_is_high_not_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    bypass = rule("Partner scanned", SetSCL=-1, SenderDomainIs=["partner.example"],
                  HeaderContainsMessageHeader="X-Scanned", HeaderContainsWords=["clean"])
    finding = _only(_findings(make_export, "RULE-003", [bypass], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Partner scanned", "/0/SetSCL")


def test_rule003_header_exception_on_the_gateway_lock_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    lock = _lock(ExceptIfHeaderContainsMessageHeader="X-Internal-Relay",
                 ExceptIfHeaderContainsWords=["true"],
                 Exceptions=[PREDICATE.format("SenderIpRanges"), PREDICATE.format("HeaderContains")])
    finding = _only(_findings(make_export, "RULE-003", [lock], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.CRITICAL, "Reject mail not from gateway",
                    "/0/ExceptIfHeaderContainsMessageHeader")
    assert "gateway lock" in finding.message
    assert finding.fix == ("Set-TransportRule -Identity 'Reject mail not from gateway' "
                           "-ExceptIfHeaderContainsMessageHeader $null "
                           "-ExceptIfHeaderContainsWords $null")


def test_rule003_header_exception_on_a_quarantine_rule_is_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    quarantine = rule("Quarantine macros", Quarantine=True,
                      AttachmentHasExecutableContent=True,
                      Conditions=[PREDICATE.format("AttachmentHasExecutableContent")],
                      ExceptIfHeaderMatchesMessageHeader="X-Trusted",
                      ExceptIfHeaderMatchesPatterns=["^yes$"])
    finding = _only(_findings(make_export, "RULE-003", [quarantine], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Quarantine macros",
                    "/0/ExceptIfHeaderMatchesMessageHeader", "/0/Quarantine")
    assert "matches '^yes$'" in finding.message


def test_rule003_stop_processing_on_a_header_skips_later_protective_rules(
        make_export: MakeExport, doc_gateway: Path) -> None:
    skipper = rule("Trusted relay", Priority=0, StopRuleProcessing=True,
                   HeaderContainsMessageHeader="X-Relay", HeaderContainsWords=["ok"])
    blocker = rule("Block executables", Priority=1, RejectMessageReasonText="No executables",
                   AttachmentHasExecutableContent=True,
                   Conditions=[PREDICATE.format("AttachmentHasExecutableContent")])
    findings = _findings(make_export, "RULE-003", [skipper, blocker], gateway_file=doc_gateway)
    finding = _only(findings)
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Trusted relay", "/0/StopRuleProcessing")
    assert "'Block executables'" in finding.message


def test_rule003_header_with_the_gateways_ip_ranges_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """The Avanan-style rule: the header counts only on mail from the gateway's addresses."""
    gated = rule("Gateway verdict", SetSCL=-1, SenderIpRanges=GATEWAY_RANGES,
                 HeaderContainsMessageHeader="X-Scanned", HeaderContainsWords=["clean"])
    finding = _only(_findings(make_export, "RULE-003", [gated], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert _points_at(finding, "/0/SenderIpRanges")


def test_rule003_header_with_a_narrow_vendor_range_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """Cyber Guru's documented rule: its one sending address AND its header."""
    vendor = rule("Cyber Guru", SetSCL=-1, SenderIpRanges=["192.0.2.191"],
                  HeaderContainsMessageHeader="X-CG-Sim", HeaderContainsWords=["token"])
    finding = _only(_findings(make_export, "RULE-003", [vendor], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert _points_at(finding, "/0/SenderIpRanges")


def test_rule003_header_with_a_wide_range_still_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    wide = rule("Cloud sender", SetSCL=-1, SenderIpRanges=["192.0.0.0/8"],
                HeaderContainsMessageHeader="X-CG-Sim", HeaderContainsWords=["token"])
    finding = _only(_findings(make_export, "RULE-003", [wide], gateway_file=doc_gateway))
    assert finding.status is Status.FAIL


def test_rule003_exchange_organization_header_is_trusted(
        make_export: MakeExport, doc_gateway: Path) -> None:
    internal = rule("Internal mail", SetSCL=-1,
                    HeaderContainsMessageHeader="X-MS-Exchange-Organization-AuthAs",
                    HeaderContainsWords=["Internal"])
    finding = _only(_findings(make_export, "RULE-003", [internal], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert "header firewall" in finding.message


def test_rule003_header_condition_with_harmless_action_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    tag = rule("Tag newsletters", PrependSubject="[NEWS] ",
               HeaderContainsMessageHeader="List-Id", HeaderContainsWords=["news"])
    finding = _only(_findings(make_export, "RULE-003", [tag], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert finding.resource == "transport rule Tag newsletters"


def test_rule003_disabled_rule_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    old = rule("Old header bypass", State="Disabled", SetSCL=-1,
               HeaderContainsMessageHeader="X-Scanned", HeaderContainsWords=["clean"])
    assert _only(_findings(make_export, "RULE-003", [old],
                           gateway_file=doc_gateway)).status is Status.PASS


def test_rule003_header_condition_without_header_name_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    partial = rule("Selected export", SetSCL=-1, HeaderContainsMessageHeader=None,
                   Conditions=[PREDICATE.format("HeaderContains")])
    finding = _only(_findings(make_export, "RULE-003", [partial], gateway_file=doc_gateway))
    assert finding.status is Status.NOT_EVALUATED
    assert _points_at(finding, "/0/HeaderContainsMessageHeader")


def test_rule003_no_header_rules_gives_single_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-003", [rule("Gateway SCL", SetSCL=-1,
                                                              SenderIpRanges=GATEWAY_RANGES)],
                              gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert finding.resource == "transport rules"


def test_rule003_unreadable_rule_makes_the_summary_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _findings(make_export, "RULE-003", [rule("Odd", Priority="first")],
                         gateway_file=doc_gateway)
    assert {f.status for f in findings} == {Status.NOT_EVALUATED}


def test_rule003_missing_rules_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-003", None, gateway_file=doc_gateway,
                              extra={"Get-AcceptedDomain": accepted("contoso.com")}))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-TransportRule"


# --- RULE-004: bypass headers set, gateway stamps removed ------------------------------------

SKIP_LINKS = "X-MS-Exchange-Organization-SkipSafeLinksProcessing"


def test_rule004_skip_safe_links_for_all_outside_mail_fails_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    skip = rule("No Safe Links", FromScope="NotInOrganization", SetHeaderName=SKIP_LINKS,
                SetHeaderValue="1")
    finding = _only(_findings(make_export, "RULE-004", [skip], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "No Safe Links", "/0/SetHeaderName",
                    "/0/FromScope")
    assert "Safe Links neither rewrites nor checks" in finding.message
    assert finding.fix == ("Set-TransportRule -Identity 'No Safe Links' -SenderIpRanges "
                           "198.51.100.0/24,203.0.113.0/25")


def test_rule004_vendor_documented_skip_for_the_gateways_ranges_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """Proofpoint's guide: skip Safe Links for mail from Proofpoint, which rewrites links."""
    skip = rule("Proofpoint - bypass Safe Links", SenderIpRanges=GATEWAY_RANGES,
                SetHeaderName=SKIP_LINKS, SetHeaderValue="1")
    finding = _only(_findings(make_export, "RULE-004", [skip], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert "vendors document" in finding.message
    assert _points_at(finding, "/0/SenderIpRanges")


def test_rule004_skip_attachments_for_a_narrow_foreign_range_warns_medium(
        make_export: MakeExport, doc_gateway: Path) -> None:
    skip = rule("Phish sim", SenderIpRanges=["192.0.2.10"],
                SetHeaderName="X-MS-Exchange-Organization-SkipSafeAttachmentProcessing",
                SetHeaderValue="1")
    finding = _only(_findings(make_export, "RULE-004", [skip], gateway_file=doc_gateway))
    _assert_finding(finding, Status.WARN, Severity.MEDIUM, "Phish sim", "/0/SenderIpRanges")
    assert "Advanced delivery policy" in finding.message


def test_rule004_skip_for_exchange_online_ranges_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    skip = rule("Trust Microsoft", SenderIpRanges=["40.107.0.0/16"], SetHeaderName=SKIP_LINKS,
                SetHeaderValue="1")
    finding = _only(_findings(make_export, "RULE-004", [skip], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.CRITICAL, "Trust Microsoft", "/0/SetHeaderName")


def test_rule004_forged_spam_verdict_header_fails_medium(
        make_export: MakeExport, doc_gateway: Path) -> None:
    forge = rule("Not junk", SenderDomainIs=["partner.example"],
                 SetHeaderName="X-Forefront-Antispam-Report", SetHeaderValue="SFV:SKI;")
    finding = _only(_findings(make_export, "RULE-004", [forge], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.MEDIUM, "Not junk", "/0/SetHeaderName")


def test_rule004_removing_the_gateways_stamp_from_incoming_mail_warns(
        make_export: MakeExport, tmp_path: Path) -> None:
    strip = rule("Strip gateway headers", RemoveHeader="X-Gateway-Verdict")
    finding = _only(_findings(make_export, "RULE-004", [strip],
                              gateway_file=_stamped_gateway(tmp_path)))
    _assert_finding(finding, Status.WARN, Severity.MEDIUM, "Strip gateway headers",
                    "/0/RemoveHeader")
    assert finding.fix == "Set-TransportRule -Identity 'Strip gateway headers' -RemoveHeader $null"


def test_rule004_removing_a_stamp_from_outgoing_mail_passes(
        make_export: MakeExport, tmp_path: Path) -> None:
    clean = rule("Clean outbound headers", FromScope="InOrganization",
                 SentToScope="NotInOrganization", RemoveHeader="X-Gateway-Route")
    finding = _only(_findings(make_export, "RULE-004", [clean],
                              gateway_file=_stamped_gateway(tmp_path)))
    assert finding.status is Status.PASS


def test_rule004_removing_authentication_results_warns(
        make_export: MakeExport, doc_gateway: Path) -> None:
    strip = rule("Strip auth results", RemoveHeader="Authentication-Results")
    finding = _only(_findings(make_export, "RULE-004", [strip], gateway_file=doc_gateway))
    _assert_finding(finding, Status.WARN, Severity.MEDIUM, "Strip auth results", "/0/RemoveHeader")


def test_rule004_focused_inbox_bypass_passes_and_unknown_internal_header_warns_low(
        make_export: MakeExport, doc_gateway: Path) -> None:
    focused = rule("HR announcements", FromMemberOf=["hr@contoso.com"],
                   SetHeaderName="X-MS-Exchange-Organization-BypassFocusedInbox",
                   SetHeaderValue="true")
    odd = rule("Odd header", SetHeaderName="X-MS-Exchange-Organization-Something",
               SetHeaderValue="1")
    findings = _findings(make_export, "RULE-004", [focused, odd], gateway_file=doc_gateway)
    assert statuses(findings) == {("pass", "transport rule HR announcements"),
                                  ("warn", "transport rule Odd header")}
    assert next(f for f in findings if f.status is Status.WARN).severity is Severity.LOW


def test_rule004_disabled_rule_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    skip = rule("No Safe Links", State="Disabled", SetHeaderName=SKIP_LINKS, SetHeaderValue="1")
    assert _only(_findings(make_export, "RULE-004", [skip],
                           gateway_file=doc_gateway)).status is Status.PASS


def test_rule004_leaves_the_scl_header_to_rule001(
        make_export: MakeExport, doc_gateway: Path) -> None:
    scl = rule("Header bypass", SetHeaderName="X-MS-Exchange-Organization-SCL",
               SetHeaderValue="-1", SenderDomainIs=["partner.example"])
    finding = _only(_findings(make_export, "RULE-004", [scl], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert finding.resource == "transport rules"


def test_rule004_missing_rules_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-004", None, gateway_file=doc_gateway,
                              extra={"Get-AcceptedDomain": accepted("contoso.com")}))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-TransportRule"


# --- RULE-005: the gateway lock rule ---------------------------------------------------------


def test_rule005_sound_lock_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-005", [_lock()], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert finding.resource == "transport rule Reject mail not from gateway"
    assert _points_at(finding, "/0/ExceptIfSenderIpRanges")


def test_rule005_disabled_lock_without_connector_lock_fails_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-005", [_lock(State="Disabled")],
                              gateway_file=doc_gateway, extra={"Get-InboundConnector": []}))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Reject mail not from gateway", "/0/State")
    assert finding.fix == "Enable-TransportRule -Identity 'Reject mail not from gateway'"


def test_rule005_audit_mode_lock_fails(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-005", [_lock(Mode="AuditAndNotify")],
                              gateway_file=doc_gateway, extra={"Get-InboundConnector": []}))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Reject mail not from gateway", "/0/Mode")


def test_rule005_expired_and_not_yet_active_locks_fail(
        make_export: MakeExport, doc_gateway: Path) -> None:
    expired = _lock("Expired lock", ExpiryDate="2001-01-01T00:00:00Z")
    future = _lock("Future lock", Priority=1, ActivationDate="2099-01-01T00:00:00Z")
    findings = _findings(make_export, "RULE-005", [expired, future], gateway_file=doc_gateway,
                         extra={"Get-InboundConnector": []})
    assert statuses(findings) == {("fail", "transport rule Expired lock"),
                                  ("fail", "transport rule Future lock")}
    assert _points_at(next(f for f in findings if "Expired" in f.resource), "/0/ExpiryDate")
    assert _points_at(next(f for f in findings if "Future" in f.resource), "/1/ActivationDate")


def test_rule005_lock_that_will_expire_warns_low(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-005", [_lock(ExpiryDate="2099-01-01T00:00:00Z")],
                              gateway_file=doc_gateway))
    _assert_finding(finding, Status.WARN, Severity.LOW, "Reject mail not from gateway",
                    "/0/ExpiryDate")


def test_rule005_lock_pre_empted_by_a_stop_processing_rule_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    shadow = rule("Partner fast lane", Priority=0, StopRuleProcessing=True,
                  SenderDomainIs=["partner.example"], SetSCL=-1)
    lock = _lock(Priority=1)
    findings = _findings(make_export, "RULE-005", [shadow, lock], gateway_file=doc_gateway,
                         extra={"Get-InboundConnector": []})
    finding = _only(findings)
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Reject mail not from gateway",
                    "/0/StopRuleProcessing", "/1/Priority")
    assert "'Partner fast lane'" in finding.message
    assert finding.fix == "Set-TransportRule -Identity 'Reject mail not from gateway' -Priority 0"


def test_rule005_unconditional_stop_processing_rule_ahead_of_lock_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    shadow = rule("Stop here", Priority=0, StopRuleProcessing=True, PrependSubject="[EXT] ",
                  FromScope="NotInOrganization")
    finding = _only(_findings(make_export, "RULE-005", [shadow, _lock(Priority=1)],
                              gateway_file=doc_gateway, extra={"Get-InboundConnector": []}))
    _assert_finding(finding, Status.FAIL, Severity.CRITICAL, "Reject mail not from gateway")


def test_rule005_gateway_scl_rule_with_stop_processing_ahead_of_lock_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """Mimecast-style: SCL -1 and stop for mail from the gateway; outsiders cannot match it."""
    gateway_rule = rule("Gateway SCL", Priority=0, StopRuleProcessing=True, SetSCL=-1,
                        SenderIpRanges=GATEWAY_RANGES)
    finding = _only(_findings(make_export, "RULE-005", [gateway_rule, _lock(Priority=1)],
                              gateway_file=doc_gateway))
    assert finding.status is Status.PASS


def test_rule005_header_exception_lets_outsiders_escape(
        make_export: MakeExport, doc_gateway: Path) -> None:
    lock = _lock(ExceptIfHeaderContainsMessageHeader="X-Internal-Relay",
                 ExceptIfHeaderContainsWords=["true"])
    finding = _only(_findings(make_export, "RULE-005", [lock], gateway_file=doc_gateway,
                              extra={"Get-InboundConnector": []}))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Reject mail not from gateway",
                    "/0/ExceptIfHeaderContainsMessageHeader")


def test_rule005_exempted_ranges_beyond_the_gateways_fail(
        make_export: MakeExport, doc_gateway: Path) -> None:
    wide = _lock("Wide lock", ExceptIfSenderIpRanges=["198.51.0.0/16"])
    eop = _lock("Microsoft lock", Priority=1,
                ExceptIfSenderIpRanges=[*GATEWAY_RANGES, "40.107.0.0/16"])
    findings = _findings(make_export, "RULE-005", [wide, eop], gateway_file=doc_gateway,
                         extra={"Get-InboundConnector": []})
    by_name = {f.resource: f for f in findings}
    _assert_finding(by_name["transport rule Wide lock"], Status.FAIL, Severity.HIGH, "Wide lock",
                    "/0/ExceptIfSenderIpRanges")
    assert "65,280" in by_name["transport rule Wide lock"].message
    _assert_finding(by_name["transport rule Microsoft lock"], Status.FAIL, Severity.CRITICAL,
                    "Microsoft lock")
    assert by_name["transport rule Microsoft lock"].fix.endswith(
        "-ExceptIfSenderIpRanges 198.51.100.0/24,203.0.113.0/25")


def test_rule005_recipient_exception_warns_medium(
        make_export: MakeExport, doc_gateway: Path) -> None:
    lock = _lock(ExceptIfSentTo=["postmaster@contoso.com"])
    finding = _only(_findings(make_export, "RULE-005", [lock], gateway_file=doc_gateway))
    _assert_finding(finding, Status.WARN, Severity.MEDIUM, "Reject mail not from gateway",
                    "/0/ExceptIfSentTo")


def test_rule005_disabled_lock_behind_a_connector_lock_warns_low(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-005", [_lock(State="Disabled")],
                              gateway_file=doc_gateway,
                              extra={"Get-InboundConnector": [connector()]}))
    _assert_finding(finding, Status.WARN, Severity.LOW, "Reject mail not from gateway", "/0/State")
    assert "second line of defence" in finding.message


def test_rule005_without_inbound_connectors_says_so(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-005", [_lock(State="Disabled")],
                              gateway_file=doc_gateway))
    assert finding.status is Status.FAIL
    assert "inbound connectors were not collected" in finding.message


def test_rule005_no_lock_rule_passes_once(make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-005", [rule("Disclaimer", PrependSubject="[X]")],
                              gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert finding.resource == "transport rules"
    assert "CONN-001" in finding.message


def test_rule005_unreadable_expiry_date_is_not_evaluated_never_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    findings = _findings(make_export, "RULE-005", [_lock(ExpiryDate="next week")],
                         gateway_file=doc_gateway)
    assert {f.status for f in findings} == {Status.NOT_EVALUATED}
    assert any("ExpiryDate" in f.message for f in findings)


def test_rule005_missing_rules_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-005", None, gateway_file=doc_gateway,
                              extra={"Get-AcceptedDomain": accepted("contoso.com")}))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-TransportRule"


# --- RULE-006: routing around the gateway, hiding rules --------------------------------------


def _outbound(name: str, hosts: list[str], **props: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"Name": name, "Enabled": True, "ConnectorType": "Partner",
                            "SmartHosts": hosts, "UseMXRecord": not hosts,
                            "IsTransportRuleScoped": True, "RecipientDomains": []}
    base.update(props)
    return base


GATEWAY_OUT = _outbound("Outbound to gateway", ["outbound.gateway.example"],
                        IsTransportRuleScoped=False, RecipientDomains=["*"])


def test_rule006_outgoing_mail_routed_to_an_unknown_host_fails_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    route = rule("Legal route", FromMemberOf=["legal@contoso.com"], SentToScope="NotInOrganization",
                 RouteMessageOutboundConnector="Legal Partner Outbound")
    outbound = [GATEWAY_OUT, _outbound("Legal Partner Outbound", ["192.0.2.77"])]
    finding = _only(_findings(make_export, "RULE-006", [route], gateway_file=doc_gateway,
                              extra={"Get-OutboundConnector": outbound}))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Legal route",
                    "/0/RouteMessageOutboundConnector")
    assert _points_at(finding, "/1/SmartHosts/0", OUTBOUND)
    assert "192.0.2.77" in finding.message


def test_rule006_incoming_mail_routed_to_an_unknown_host_is_critical(
        make_export: MakeExport, doc_gateway: Path) -> None:
    route = rule("CEO copy", SentTo=["ceo@contoso.com"], RouteMessageOutboundConnector="Relay")
    finding = _only(_findings(make_export, "RULE-006", [route], gateway_file=doc_gateway,
                              extra={"Get-OutboundConnector": [_outbound("Relay", ["mx.evil.example"])]}))
    _assert_finding(finding, Status.FAIL, Severity.CRITICAL, "CEO copy")


def test_rule006_routing_through_the_gateways_connector_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    route = rule("Scan via gateway", RouteMessageOutboundConnector="Outbound to gateway")
    finding = _only(_findings(make_export, "RULE-006", [route], gateway_file=doc_gateway,
                              extra={"Get-OutboundConnector": [GATEWAY_OUT]}))
    assert finding.status is Status.PASS
    assert _points_at(finding, "/0/SmartHosts", OUTBOUND)


def test_rule006_smart_host_given_as_a_gateway_address_passes(
        make_export: MakeExport, doc_gateway: Path) -> None:
    route = rule("Scan via gateway", RouteMessageOutboundConnector="Gateway by IP")
    finding = _only(_findings(make_export, "RULE-006", [route], gateway_file=doc_gateway,
                              extra={"Get-OutboundConnector": [_outbound("Gateway by IP",
                                                                         ["203.0.113.77"])]}))
    assert finding.status is Status.PASS


def test_rule006_routing_without_outbound_connectors_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    route = rule("Legal route", RouteMessageOutboundConnector="Legal Partner Outbound")
    finding = _only(_findings(make_export, "RULE-006", [route], gateway_file=doc_gateway))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "transport rule Legal route"


def test_rule006_unknown_connector_name_warns(make_export: MakeExport, doc_gateway: Path) -> None:
    route = rule("Legal route", RouteMessageOutboundConnector="Gone")
    finding = _only(_findings(make_export, "RULE-006", [route], gateway_file=doc_gateway,
                              extra={"Get-OutboundConnector": [GATEWAY_OUT]}))
    assert finding.status is Status.WARN


def test_rule006_deleting_security_alerts_is_a_hiding_rule(
        make_export: MakeExport, doc_gateway: Path) -> None:
    hide = rule("Tidy inbox", DeleteMessage=True, SubjectContainsWords=["Security alert", "news"])
    finding = _only(_findings(make_export, "RULE-006", [hide], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Tidy inbox", "/0/DeleteMessage",
                    "/0/SubjectContainsWords/0")
    assert "'news'" not in finding.message


def test_rule006_quarantining_microsoft_notices_warns_medium(
        make_export: MakeExport, doc_gateway: Path) -> None:
    hide = rule("Hold notices", Quarantine=True,
                FromAddressContainsWords=["no-reply@microsoft.com"])
    finding = _only(_findings(make_export, "RULE-006", [hide], gateway_file=doc_gateway))
    _assert_finding(finding, Status.WARN, Severity.MEDIUM, "Hold notices", "/0/Quarantine")


def test_rule006_deleting_all_mail_to_one_person_fails(
        make_export: MakeExport, doc_gateway: Path) -> None:
    hide = rule("Drop", DeleteMessage=True, SentTo=["cfo@contoso.com"])
    finding = _only(_findings(make_export, "RULE-006", [hide], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Drop")


def test_rule006_quarantining_executables_and_the_lock_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    executables = rule("Quarantine executables", Quarantine=True,
                       AttachmentHasExecutableContent=True,
                       Conditions=[PREDICATE.format("AttachmentHasExecutableContent")])
    lock = _lock(Priority=1, RejectMessageReasonText=None, DeleteMessage=True)
    findings = _findings(make_export, "RULE-006", [executables, lock], gateway_file=doc_gateway)
    assert statuses(findings) == {("pass", "transport rule Quarantine executables"),
                                  ("pass", "transport rule Reject mail not from gateway")}


def test_rule006_disabled_rule_passes(make_export: MakeExport, doc_gateway: Path) -> None:
    route = rule("Legal route", State="Disabled", RouteMessageOutboundConnector="Legal")
    finding = _only(_findings(make_export, "RULE-006", [route], gateway_file=doc_gateway))
    assert finding.status is Status.PASS
    assert "'Legal'" in finding.message


def test_rule006_missing_rules_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-006", None, gateway_file=doc_gateway,
                              extra={"Get-AcceptedDomain": accepted("contoso.com")}))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-TransportRule"


# --- RULE-007: the gateway's SCL -1 rule and its ranges --------------------------------------


def test_rule007_published_ranges_and_subsets_pass(
        make_export: MakeExport, doc_gateway: Path) -> None:
    exact = rule("Gateway SCL", SetSCL=-1, SenderIpRanges=GATEWAY_RANGES)
    subset = rule("Gateway SCL subset", Priority=1, SetSCL=-1, SenderIpRanges=["198.51.100.0/25"])
    findings = _findings(make_export, "RULE-007", [exact, subset], gateway_file=doc_gateway)
    assert statuses(findings) == {("pass", "transport rule Gateway SCL"),
                                  ("pass", "transport rule Gateway SCL subset")}


def test_rule007_mimecast_published_ranges_pass(make_export: MakeExport) -> None:
    mimecast = rule("Mimecast bypass spam filtering", SetSCL=-1,
                    SenderIpRanges=mimecast_us_ranges())
    finding = _only(_findings(make_export, "RULE-007", [mimecast], gateway="mimecast"))
    assert finding.status is Status.PASS


def test_rule007_range_wider_than_published_fails_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    wide = rule("Gateway SCL", SetSCL=-1, SenderIpRanges=["198.51.0.0/16", "203.0.113.0/25"])
    finding = _only(_findings(make_export, "RULE-007", [wide], gateway_file=doc_gateway))
    _assert_finding(finding, Status.FAIL, Severity.HIGH, "Gateway SCL", "/0/SenderIpRanges")
    assert "198.51.0.0/16" in finding.message and "65,280" in finding.message
    assert finding.fix == ("Set-TransportRule -Identity 'Gateway SCL' -SenderIpRanges "
                           "203.0.113.0/25")


def test_rule007_unknown_range_fails_medium_and_another_gateways_range_high(
        make_export: MakeExport, doc_gateway: Path) -> None:
    unknown = rule("Unknown SCL", SetSCL=-1, SenderIpRanges=[*GATEWAY_RANGES, "192.0.2.0/24"])
    stale = rule("Stale SCL", Priority=1, SetSCL=-1, SenderIpRanges=["209.222.80.0/21"])
    findings = _findings(make_export, "RULE-007", [unknown, stale], gateway_file=doc_gateway)
    by_name = {f.resource: f for f in findings}
    _assert_finding(by_name["transport rule Unknown SCL"], Status.FAIL, Severity.MEDIUM,
                    "Unknown SCL", "/0/SenderIpRanges")
    _assert_finding(by_name["transport rule Stale SCL"], Status.FAIL, Severity.HIGH, "Stale SCL")
    assert "Barracuda" in by_name["transport rule Stale SCL"].message


def test_rule007_ranges_in_a_users_gateway_file_pass(
        make_export: MakeExport, tmp_path: Path) -> None:
    relay = tmp_path / "relay.toml"
    relay.write_text('schema_version = 1\nid = "onprem-relay"\nname = "On-premises relay"\n'
                     'vendor = "Contoso"\n[[ip_ranges]]\ncidrs = ["192.0.2.10/32"]\n')
    scl = rule("Relay SCL", SetSCL=-1, SenderIpRanges=["192.0.2.10"])
    assert _only(_findings(make_export, "RULE-007", [scl],
                           gateway_file=relay)).status is Status.PASS


def test_rule007_per_customer_gateway_warns_instead_of_failing(make_export: MakeExport) -> None:
    scl = rule("Cisco SCL", SetSCL=-1, SenderIpRanges=["192.0.2.0/28"])
    finding = _only(_findings(make_export, "RULE-007", [scl], gateway="cisco"))
    _assert_finding(finding, Status.WARN, Severity.MEDIUM, "Cisco SCL")


def test_rule007_unreadable_range_warns(make_export: MakeExport, doc_gateway: Path) -> None:
    scl = rule("Gateway SCL", SetSCL=-1, SenderIpRanges=[*GATEWAY_RANGES, "gateway-ips"])
    finding = _only(_findings(make_export, "RULE-007", [scl], gateway_file=doc_gateway))
    _assert_finding(finding, Status.WARN, Severity.MEDIUM, "Gateway SCL")
    assert "'gateway-ips'" in finding.message


def test_rule007_without_a_gateway_is_not_evaluated(make_export: MakeExport) -> None:
    scl = rule("Gateway SCL", SetSCL=-1, SenderIpRanges=GATEWAY_RANGES)
    finding = _only(_findings(make_export, "RULE-007", [scl]))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "gateway"


def test_rule007_missing_rules_file_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    finding = _only(_findings(make_export, "RULE-007", None, gateway_file=doc_gateway,
                              extra={"Get-AcceptedDomain": accepted("contoso.com")}))
    assert finding.status is Status.NOT_EVALUATED
    assert finding.resource == "Get-TransportRule"
