"""MBX-001 and MBX-002: mailbox forwarding and inbox rules that send mail out or hide it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditor.engine import Finding, Severity, Status

from ..conftest import SAMPLES, accepted, audit, findings_for

MakeExport = Callable[..., Path]
MAILBOXES = "exo/Get-Mailbox.json"
RULES = "exo/Get-InboxRule.json"
LYNNE = "6a2c4e6a-8c0e-4a2c-b4e6-8a0c2e4a6c38"  # Lynne Robbins in the sample mailboxes


def _sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def _run(make_export: MakeExport, check_id: str, files: dict[str, Any]) -> list[Finding]:
    files = {"Get-AcceptedDomain": accepted("contoso.com", "contoso.onmicrosoft.com"), **files}
    return findings_for(audit(make_export(files)), check_id)


def _by_resource(findings: list[Finding]) -> dict[str, Finding]:
    found = {f.resource: f for f in findings}
    assert len(found) == len(findings), [(f.status, f.resource) for f in findings]
    return found


def _only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.status, f.resource, f.message) for f in findings]
    return findings[0]


def _points_at(finding: Finding, file: str, pointer: str) -> bool:
    return any(e.file == file and e.pointer == pointer for e in finding.evidence)


def _forwarding_controls(mode: str | None, default_remote: bool | None) -> dict[str, Any]:
    """The outbound spam policy and Default remote domain, each left out when None."""
    files: dict[str, Any] = {}
    if mode is not None:
        files["Get-HostedOutboundSpamFilterPolicy"] = [
            {"Name": "Default", "IsDefault": True, "AutoForwardingMode": mode}]
    if default_remote is not None:
        files["Get-RemoteDomain"] = [{"Name": "Default", "DomainName": "*",
                                      "AutoForwardEnabled": default_remote}]
    return files


def _mailbox(upn: str, **props: Any) -> dict[str, Any]:
    alias = upn.split("@")[0]
    return {"UserPrincipalName": upn, "PrimarySmtpAddress": upn, "Identity": f"id-{alias}",
            "Name": alias, "Alias": alias, "DisplayName": alias.title(),
            "LegacyExchangeDN": f"/o=ExchangeLabs/ou=Exchange/cn=Recipients/cn=0a1b-{alias}",
            "RecipientTypeDetails": "UserMailbox", "ForwardingAddress": None,
            "ForwardingSmtpAddress": None, "DeliverToMailboxAndForward": False,
            "EmailAddresses": [f"SMTP:{upn}"], **props}


# MBX-001 -----------------------------------------------------------------------------------

def test_mbx001_sample_external_forwarding_fails_and_named_recipient_warns(
        make_export: MakeExport) -> None:
    found = _by_resource(_run(make_export, "MBX-001", {"Get-Mailbox": _sample("Get-Mailbox")}))
    lynne = found["mailbox lynne.robbins@contoso.com"]
    assert (lynne.status, lynne.severity) == (Status.FAIL, Severity.HIGH)
    assert "keeps a copy" in lynne.message and "lynne.r.personal@outlook.example" in lynne.message
    assert "could not be judged" in lynne.message  # no outbound policy or remote domain evidence
    assert _points_at(lynne, MAILBOXES, "/value/1/ForwardingSmtpAddress")
    assert lynne.fix == ("Set-Mailbox -Identity 'lynne.robbins@contoso.com' "
                         "-ForwardingSmtpAddress $null -DeliverToMailboxAndForward $false")
    grady = found["mailbox grady.archie@contoso.com"]
    assert (grady.status, grady.severity) == (Status.WARN, Severity.MEDIUM)
    assert "Grady Archie (External)" in grady.message and "diverts" in grady.message
    assert "mailbox alex.wilber@contoso.com" not in found


def test_mbx001_forwarding_both_controls_allow_fails_high(make_export: MakeExport) -> None:
    files = {"Get-Mailbox": [_mailbox("amy@contoso.com", ForwardingSmtpAddress="smtp:amy@gmail.com")],
             **_forwarding_controls("On", True)}
    finding = _only(_run(make_export, "MBX-001", files))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "AutoForwardingMode On" in finding.message
    assert _points_at(finding, "exo/Get-RemoteDomain.json", "/0/AutoForwardEnabled")


@pytest.mark.parametrize(("mode", "remote"), [("Off", True), ("Automatic", None), ("On", False)])
def test_mbx001_forwarding_blocked_by_either_control_is_a_medium_warning(
        make_export: MakeExport, mode: str, remote: bool | None) -> None:
    files = {"Get-Mailbox": [_mailbox("amy@contoso.com", ForwardingSmtpAddress="smtp:amy@gmail.com")],
             **_forwarding_controls(mode, remote)}
    finding = _only(_run(make_export, "MBX-001", files))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)
    assert "blocks it today" in finding.message


def test_mbx001_partner_remote_domain_reopens_forwarding(make_export: MakeExport) -> None:
    files = {"Get-Mailbox": [_mailbox("amy@contoso.com",
                                      ForwardingSmtpAddress="smtp:amy@partner.example")],
             **_forwarding_controls("On", False)}
    files["Get-RemoteDomain"].append({"Name": "Partner", "DomainName": "partner.example",
                                      "AutoForwardEnabled": True})
    assert _only(_run(make_export, "MBX-001", files)).status is Status.FAIL


def test_mbx001_internal_forwarding_passes(make_export: MakeExport) -> None:
    mailboxes = [_mailbox("amy@contoso.com", ForwardingSmtpAddress="smtp:team@contoso.com"),
                 _mailbox("ben@contoso.com", ForwardingAddress="Carl", DeliverToMailboxAndForward=True),
                 _mailbox("carl@contoso.com")]
    found = _by_resource(_run(make_export, "MBX-001", {"Get-Mailbox": mailboxes}))
    assert found["mailbox amy@contoso.com"].status is Status.PASS
    assert found["mailbox ben@contoso.com"].status is Status.PASS
    assert "carl@contoso.com" in found["mailbox ben@contoso.com"].message


def test_mbx001_forwarding_address_wins_over_smtp_address(make_export: MakeExport) -> None:
    """Set-Mailbox ignores ForwardingSmtpAddress while ForwardingAddress is set."""
    mailboxes = [_mailbox("amy@contoso.com", ForwardingAddress="carl",
                          ForwardingSmtpAddress="smtp:amy@gmail.com"), _mailbox("carl@contoso.com")]
    finding = _by_resource(_run(make_export, "MBX-001", {"Get-Mailbox": mailboxes}))[
        "mailbox amy@contoso.com"]
    assert finding.status is Status.PASS and "is ignored" in finding.message


def test_mbx001_unreadable_smtp_address_warns(make_export: MakeExport) -> None:
    mailboxes = [_mailbox("amy@contoso.com", ForwardingSmtpAddress="smtp:not an address")]
    finding = _only(_run(make_export, "MBX-001", {"Get-Mailbox": mailboxes}))
    assert finding.status is Status.WARN


def test_mbx001_no_forwarding_passes_as_a_summary(make_export: MakeExport) -> None:
    finding = _only(_run(make_export, "MBX-001", {"Get-Mailbox": [_mailbox("amy@contoso.com")]}))
    assert (finding.status, finding.resource) == (Status.PASS, "mailboxes")
    assert "none of the 1 mailboxes" in finding.message


def test_mbx001_an_unreadable_mailbox_turns_the_summary_into_not_evaluated(
        make_export: MakeExport) -> None:
    mailboxes = [_mailbox("amy@contoso.com"), _mailbox("ben@contoso.com", DeliverToMailboxAndForward="x")]
    findings = _run(make_export, "MBX-001", {"Get-Mailbox": mailboxes})
    assert Status.PASS not in {f.status for f in findings}


@pytest.mark.parametrize("files", [{}, {"Get-Mailbox": []}], ids=["file missing", "no mailboxes"])
def test_mbx001_missing_or_empty_mailboxes_are_not_evaluated(
        make_export: MakeExport, files: dict[str, Any]) -> None:
    assert _only(_run(make_export, "MBX-001", files)).status is Status.NOT_EVALUATED


# MBX-002 -----------------------------------------------------------------------------------

def _rule(name: str, owner: str = "id-amy", **props: Any) -> dict[str, Any]:
    return {"Name": name, "Enabled": True, "Identity": f"{owner}\\rule-{name or 'blank'}",
            "MailboxOwnerId": owner, "ForwardTo": None, "RedirectTo": None,
            "ForwardAsAttachmentTo": None, "DeleteMessage": False, "MoveToFolder": None,
            "MarkAsRead": False, "SubjectContainsWords": None, "SubjectOrBodyContainsWords": None,
            "FromAddressContainsWords": None, "From": None, **props}


def _mbx002(make_export: MakeExport, rules: Any, **files: Any) -> list[Finding]:
    return _run(make_export, "MBX-002", {"Get-InboxRule": rules, **files})


def test_mbx002_sample_bec_rule_is_high_and_names_the_owner(make_export: MakeExport) -> None:
    findings = _mbx002(make_export, _sample("Get-InboxRule"), **{"Get-Mailbox": _sample("Get-Mailbox")})
    finding = _only(findings)  # the Junk E-mail rule is left alone
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert finding.resource == "inbox rule '.' of mailbox lynne.robbins@contoso.com"
    assert "lynne.robbins@contoso.com" in finding.message
    assert "drop@attacker.example" in finding.message and "RSS Subscriptions" in finding.message
    assert _points_at(finding, RULES, "/value/1/RedirectTo/0")
    assert _points_at(finding, RULES, "/value/1/SubjectOrBodyContainsWords/0")
    assert finding.fix == (f"Disable-InboxRule -Identity '{LYNNE}\\15394007230974001153' "
                           "-Confirm:$false")


def test_mbx002_external_forward_alone_is_high_unless_blocked(make_export: MakeExport) -> None:
    rule = _rule("Copy", ForwardTo=['"Amy" [SMTP:amy.private@gmail.com]'])
    finding = _only(_mbx002(make_export, [rule], **_forwarding_controls("On", True)))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    blocked = _only(_mbx002(make_export, [rule], **_forwarding_controls("Off", True)))
    assert (blocked.status, blocked.severity) == (Status.FAIL, Severity.MEDIUM)


@pytest.mark.parametrize("recipient", [
    '"Smith, John [Finance]" [SMTP:john@exfil.example]',
    '"john@exfil.example" [smtp:john@exfil.example]',
    "smtp:john@exfil.example",
    "john@exfil.example",
])
def test_mbx002_recipient_strings_are_parsed_robustly(make_export: MakeExport, recipient: str) -> None:
    finding = _only(_mbx002(make_export, [_rule("Copy", RedirectTo=[recipient])]))
    assert finding.status is Status.FAIL and "john@exfil.example" in finding.message


def test_mbx002_forward_as_attachment_counts_too(make_export: MakeExport) -> None:
    rule = _rule("Copy", ForwardAsAttachmentTo=["x@exfil.example"])
    assert _only(_mbx002(make_export, [rule])).status is Status.FAIL


def test_mbx002_internal_forward_passes_and_reports_coverage(make_export: MakeExport) -> None:
    rules = [_rule("To team", ForwardTo=['"Team" [SMTP:team@contoso.com]']),
             _rule("Boss", RedirectTo=['"Carl" [EX:/o=ExchangeLabs/ou=Exchange/cn=Recipients/cn=0a1b-carl]'])]
    mailboxes = [_mailbox("amy@contoso.com"), _mailbox("carl@contoso.com"), _mailbox("dan@contoso.com")]
    finding = _only(_mbx002(make_export, rules, **{"Get-Mailbox": mailboxes}))
    assert (finding.status, finding.resource) == (Status.PASS, "inbox rules")
    assert "2 inbox rules of 1 mailboxes" in finding.message
    assert "Get-Mailbox lists 3" in finding.message and "-IncludeHidden" in finding.message


def test_mbx002_directory_recipient_not_among_the_mailboxes_warns(make_export: MakeExport) -> None:
    """A display name proves nothing: a mail contact for Carl's private address is also "Carl"."""
    rule = _rule("Boss", RedirectTo=['"Carl" [EX:/o=ExchangeLabs/cn=Recipients/cn=9f8e-carlprivate]'])
    finding = _only(_mbx002(make_export, [rule], **{"Get-Mailbox": [_mailbox("carl@contoso.com")]}))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.MEDIUM)
    assert "does not resolve" in finding.message


@pytest.mark.parametrize(("props", "words"), [
    ({"DeleteMessage": True, "SubjectContainsWords": ["Password reset"]}, "Password reset"),
    ({"MoveToFolder": "amy:\\Conversation History", "FromAddressContainsWords": ["mimecast"]},
     "mimecast"),
    ({"MoveToFolder": "Deleted Items", "BodyContainsWords": ["wire transfer"]}, "wire transfer"),
])
def test_mbx002_hiding_security_or_payment_mail_fails_medium(
        make_export: MakeExport, props: dict[str, Any], words: str) -> None:
    finding = _only(_mbx002(make_export, [_rule("Tidy", **props)]))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.MEDIUM)
    assert words in finding.message


def test_mbx002_moving_everything_to_an_obscure_folder_fails(make_export: MakeExport) -> None:
    finding = _only(_mbx002(make_export, [_rule("All", MoveToFolder="RSS Feeds", MarkAsRead=True)]))
    assert finding.status is Status.FAIL and "every message" in finding.message


def test_mbx002_ordinary_filing_rules_are_left_alone(make_export: MakeExport) -> None:
    rules = [_rule("Invoices", MoveToFolder="Accounts", SubjectContainsWords=["invoice"]),
             _rule("Archive news", MoveToFolder="Archive", SubjectContainsWords=["newsletter"]),
             _rule("Clean", DeleteMessage=True, From=["offers@shop.example"]),
             _rule("Attachments", MoveToFolder="RSS Feeds", SubjectContainsWords=["attachment"])]
    assert _only(_mbx002(make_export, rules)).status is Status.PASS


def test_mbx002_two_signs_together_are_high(make_export: MakeExport) -> None:
    rule = _rule("..", DeleteMessage=True, SubjectOrBodyContainsWords=["security alert"])
    finding = _only(_mbx002(make_export, [rule]))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)


@pytest.mark.parametrize("name", [".", "..", " ", ""])
def test_mbx002_a_nameless_rule_alone_is_a_low_warning(make_export: MakeExport, name: str) -> None:
    finding = _only(_mbx002(make_export, [_rule(name, MoveToFolder="Projects")]))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.LOW)


def test_mbx002_disabled_suspicious_rule_is_a_low_warning(make_export: MakeExport) -> None:
    rule = _rule("Copy", Enabled=False, ForwardTo=["x@exfil.example"])
    finding = _only(_mbx002(make_export, [rule]))
    assert (finding.status, finding.severity) == (Status.WARN, Severity.LOW)
    assert finding.message.startswith("disabled")


@pytest.mark.parametrize("rules", [None, []], ids=["file missing", "no rules at all"])
def test_mbx002_missing_or_empty_rules_are_not_evaluated(make_export: MakeExport, rules: Any) -> None:
    files = {} if rules is None else {"Get-InboxRule": rules}
    assert _only(_run(make_export, "MBX-002", files)).status is Status.NOT_EVALUATED


def test_mbx002_judges_rules_read_over_ews_when_get_inboxrule_was_not_collected(
        make_export: MakeExport) -> None:
    """Global Reader cannot run Get-InboxRule; collect --mailboxes reads the rules over EWS."""
    files = {"Mailbox-InboxRules": {"value": [_rule("Copy", ForwardTo=["x@exfil.example"])]}}
    finding = _only(_run(make_export, "MBX-002", files))
    assert finding.status is Status.FAIL and "x@exfil.example" in finding.message
    assert finding.evidence[0].file.startswith("mailbox/")


def test_mbx002_without_either_source_says_which_were_missing(make_export: MakeExport) -> None:
    finding = _only(_run(make_export, "MBX-002", {}))
    assert finding.status is Status.NOT_EVALUATED
    assert "Get-InboxRule is missing" in finding.message
    assert "Mailbox-InboxRules is missing" in finding.message


def test_mbx002_a_partial_ews_collection_is_no_proof_of_absence(make_export: MakeExport) -> None:
    folder = make_export({"Get-AcceptedDomain": accepted("contoso.com"),
                          "Mailbox-InboxRules": {"value": [_rule("Filing")]}})
    (folder / "export.json").write_text(json.dumps({
        "collected_at": "2026-11-20T00:00:00Z",
        "cmdlets": {"Mailbox-InboxRules": {"status": "partial", "error": "2 mailboxes not read"}}}))
    statuses_found = {f.status for f in findings_for(audit(folder), "MBX-002")}
    assert Status.PASS not in statuses_found and Status.NOT_EVALUATED in statuses_found


def test_mbx002_unreadable_rule_is_never_a_pass(make_export: MakeExport) -> None:
    rules = [_rule("Fine"), _rule("Broken", DeleteMessage="perhaps")]
    findings = _mbx002(make_export, rules)
    assert Status.PASS not in {f.status for f in findings}


def test_mbx001_an_empty_policy_export_is_no_proof_of_a_block(make_export: MakeExport) -> None:
    files = {"Get-Mailbox": [_mailbox("amy@contoso.com", ForwardingSmtpAddress="smtp:amy@gmail.com")],
             "Get-HostedOutboundSpamFilterPolicy": [], **_forwarding_controls(None, True)}
    finding = _only(_run(make_export, "MBX-001", files))
    assert (finding.status, finding.severity) == (Status.FAIL, Severity.HIGH)
    assert "could not be judged" in finding.message


# --- rules read through Microsoft Graph: hidden rules are out of its sight -------------------

def _collected(api: str | None, *rows: dict[str, Any]) -> dict[str, Any]:
    """A Mailbox-InboxRules file as collect --mailboxes writes it (``api`` None: written before
    Graph support, with no record of the API)."""
    marked = [row if api is None else {**row, "CollectedThrough": api} for row in rows]
    return {"api": api, "mailboxes": [], "value": marked} if api else {"value": marked}


EMPTY_MAILBOX = {"Mailbox": "bob@contoso.com", "CollectionState": "empty",
                 "CollectionError": "the mailbox has no inbox rules"}


def test_mbx002_a_rule_read_through_graph_says_hidden_rules_were_not_visible(make_export: MakeExport) -> None:
    """Graph's messageRules leaves out hidden rules: a finding from it is not the whole mailbox."""
    rows = _collected("graph", _rule("Copy", owner="amy@contoso.com", ForwardTo=["x@exfil.example"]))
    finding = _only(_run(make_export, "MBX-002", {"Mailbox-InboxRules": rows}))
    assert finding.status is Status.FAIL
    assert "read through Microsoft Graph, which does not return hidden inbox rules" in finding.message
    assert "Get-InboxRule -Mailbox 'amy@contoso.com' -IncludeHidden" in finding.message


@pytest.mark.parametrize("api", ["ews", None], ids=["marked ews", "written before graph support"])
def test_mbx002_rules_read_over_ews_carry_no_graph_note(make_export: MakeExport, api: str | None) -> None:
    rows = _collected(api, _rule("Copy", owner="amy@contoso.com", ForwardTo=["x@exfil.example"]),
                      _rule("Filing", owner="amy@contoso.com", MoveToFolder="Projects"))
    findings = _run(make_export, "MBX-002", {"Mailbox-InboxRules": rows})
    assert [f.status for f in findings] == [Status.FAIL]
    assert "Microsoft Graph" not in findings[0].message
    passing = _only(_run(make_export, "MBX-002", {"Mailbox-InboxRules": _collected(api, rows["value"][1])}))
    assert passing.status is Status.PASS and "(1 of them read over EWS)" in passing.message
    assert "Microsoft Graph" not in passing.message


def test_mbx002_the_pass_summary_counts_the_mailboxes_graph_read_including_those_without_rules(
        make_export: MakeExport) -> None:
    rows = _collected("graph", _rule("Filing", owner="amy@contoso.com", MoveToFolder="Projects"),
                      EMPTY_MAILBOX,
                      {"Mailbox": "eve@contoso.com", "CollectionState": "denied", "CollectionError": "403"})
    finding = _only(_run(make_export, "MBX-002", {"Mailbox-InboxRules": rows}))
    assert finding.status is Status.PASS
    assert "(1 through Microsoft Graph)" in finding.message
    assert ("Microsoft Graph, which read the rules of 2 mailboxes, does not return hidden inbox rules"
            in finding.message)
    assert "-IncludeHidden lists them" in finding.message


def test_mbx002_mailboxes_read_without_rules_pass_for_those_mailboxes_and_say_graph_cannot_see_hidden_ones(
        make_export: MakeExport) -> None:
    """Each mailbox read has a row even when it has no rules: that is evidence, not a gap."""
    finding = _only(_run(make_export, "MBX-002", {"Mailbox-InboxRules": _collected("graph", EMPTY_MAILBOX)}))
    assert finding.status is Status.PASS and "hidden inbox rules" in finding.message
    assert "none of the 1 mailboxes collect --mailboxes read has an inbox rule" in finding.message


def test_mbx002_a_mailbox_that_could_not_be_read_is_no_evidence_of_no_rules(make_export: MakeExport) -> None:
    unread = {"Mailbox": "bob@contoso.com", "CollectionState": "denied", "CollectionError": "HTTP 403"}
    finding = _only(_run(make_export, "MBX-002", {"Mailbox-InboxRules": _collected("graph", unread)}))
    assert finding.status is Status.NOT_EVALUATED
