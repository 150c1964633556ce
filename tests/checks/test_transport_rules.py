"""RULE-001 (SCL -1 rules an outsider can trigger) and RULE-002 (copies sent outside)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.engine import Finding, Severity, Status

from ..conftest import accepted, audit, findings_for, mimecast_us_ranges, rule

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
