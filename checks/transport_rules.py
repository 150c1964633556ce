"""Bypass vector: transport (mail flow) rules that switch filtering off or copy mail out."""

from __future__ import annotations

from collections.abc import Iterator

from auditor.context import CheckContext
from auditor.engine import (
    Mappings,
    Reference,
    Remediation,
    Result,
    Severity,
    Status,
    check,
    ps_literal,
    result,
)
from auditor.gateways import GatewayProfile
from auditor.models import TransportRule
from auditor.netutil import IpRange
from auditor.values import smtp_address

from ._analysis import Condition, analyse_conditions, filter_bypass, rule_in_force

MS_SCL_RULE = Reference(
    "Microsoft: Use mail flow rules to set the spam confidence level (SCL) in messages",
    "https://learn.microsoft.com/en-us/exchange/security-and-compliance/mail-flow-rules/use-rules-to-set-scl",
)
MS_SECURE_BY_DEFAULT = Reference(
    "Microsoft: Secure by default in Office 365 (bypass rules and third-party MX)",
    "https://learn.microsoft.com/en-us/defender-office-365/secure-by-default",
)
MS_NEW_TRANSPORT_RULE = Reference(
    "Microsoft: New-TransportRule",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-transportrule",
)
MS_EFC = Reference(
    "Microsoft: Enhanced Filtering for Connectors",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/use-connectors-to-configure-mail-flow/enhanced-filtering-for-connectors",
)


def _resource(rule: TransportRule) -> str:
    return f"transport rule {rule.display_name}"


def _disable(rule: TransportRule) -> str:
    return f"Disable-TransportRule -Identity {ps_literal(rule.display_name)} -Confirm:$false"


@check(
    id="RULE-001",
    title="A transport rule turns spam filtering off for mail an outsider can send",
    severity=Severity.HIGH,
    rationale=(
        "Setting SCL -1 skips most of Exchange Online's spam and phishing filtering. Gateway "
        "vendors tell customers to do this only for mail that arrives from the gateway's own "
        "IP ranges. Keyed on anything else (a sender domain, a header, a subject word, or "
        "nothing), the rule exempts whatever an attacker chooses to send, and behind a third-"
        "party MX Microsoft's secure-by-default protections no longer override it."
    ),
    remediation=Remediation(
        "Prefer Enhanced Filtering for Connectors over SCL -1 rules. If a bypass rule is kept, "
        "its only trusted condition must be the gateway's published IP ranges "
        "(SenderIpRanges); remove sender, header and subject conditions as the trust anchor.",
        'Set-TransportRule -Identity "<rule name>" -SenderIpRanges <gateway ranges> '
        "-SenderDomainIs $null -HeaderContainsMessageHeader $null\n"
        '# or remove it: Disable-TransportRule -Identity "<rule name>"',
    ),
    requires=("Get-TransportRule",),
    uses=("Get-AcceptedDomain",),
    references=(MS_SCL_RULE, MS_SECURE_BY_DEFAULT, MS_EFC, MS_NEW_TRANSPORT_RULE),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1566"), cis=("6.2.2",)),
)
def scl_bypass_rules(ctx: CheckContext) -> Iterator[Result]:
    own = ctx.available("Get-AcceptedDomain")
    examined = 0
    for rule in ctx.transport_rules:
        action = filter_bypass(rule)
        if action is None:
            continue
        examined += 1
        resource = _resource(rule)
        inactive = rule_in_force(rule, ctx.as_of)
        if inactive is not None:
            yield result(Status.PASS, resource,
                         f"sets SCL -1 but does not act on mail: {inactive}",
                         action, rule.ref("State"), rule.ref("Mode"), key=rule.display_name)
            continue
        analysis = analyse_conditions(rule, ctx.gateway)
        if analysis.gated:
            gate = next(c for c in analysis.conditions if not c.outsider)
            yield result(Status.PASS, resource,
                         f"sets SCL -1 only when {gate.detail}", action, gate.evidence,
                         key=rule.display_name)
            continue
        ip_condition = next((c for c in analysis.conditions if c.name == "SenderIpRanges"), None)
        others = [c for c in analysis.outsider_conditions if c.name != "SenderIpRanges"]
        if ip_condition is not None and not others and not analysis.exchange_online_ranges:
            if not ctx.gateway.detected:
                yield result(Status.WARN, resource,
                             "sets SCL -1 for sender IP ranges, but no gateway is known to compare "
                             "them with (use --gateway NAME)", action, ip_condition.evidence,
                             severity=Severity.MEDIUM, key=rule.display_name, fix=_disable(rule))
                continue
            owners = {o.name for t in analysis.unknown_ranges
                      if (o := _owner(ctx, t)) is not None}
            whose = f" (published by {', '.join(sorted(owners))})" if owners else ""
            yield result(Status.WARN, resource,
                         f"sets SCL -1 for sender IP ranges that are not {ctx.gateway.names}'s "
                         f"published ones: {', '.join(analysis.unknown_ranges + analysis.unparsed_ranges)}"
                         f"{whose}; mail from those addresses skips spam filtering",
                         action, ip_condition.evidence, severity=Severity.MEDIUM,
                         key=rule.display_name, fix=_disable(rule))
            continue
        severity, why = _severity(rule, analysis.outsider_conditions, ctx, own)
        if analysis.exchange_online_ranges:
            severity = Severity.CRITICAL
            why = (f"its IP ranges include Exchange Online's own "
                   f"({', '.join(analysis.exchange_online_ranges)}), which every Microsoft 365 "
                   "tenant can send from")
        evidence = [action] + [c.evidence for c in analysis.outsider_conditions]
        yield result(Status.FAIL, resource, f"sets SCL -1 {why}", *evidence,
                     severity=severity, key=rule.display_name, fix=_disable(rule))
    if not examined:
        yield result(Status.PASS, "transport rules",
                     f"none of the {len(ctx.transport_rules)} transport rules sets SCL -1",
                     key="none", summary=True)


def _owner(ctx: CheckContext, text: str) -> GatewayProfile | None:
    try:
        return ctx.gateway.owner(IpRange.parse(text))
    except ValueError:
        return None


def _severity(rule: TransportRule, conditions: tuple[Condition, ...], ctx: CheckContext,
              own_known: bool) -> tuple[Severity, str]:
    if not conditions:
        return Severity.CRITICAL, "for every message: the rule has no condition"
    names = {c.name for c in conditions}
    details = "; ".join(c.detail for c in conditions)
    if names <= {"HeaderContains", "HeaderMatches", "FromScope", "SentToScope"}:
        return Severity.CRITICAL, (f"when {details}: any sender on the Internet can meet this "
                                   "(headers are written by the sender)")
    if own_known:
        own = [d for d in rule.SenderDomainIs if ctx.is_internal_address(f"x@{d}")]
        if own:
            return Severity.CRITICAL, (f"when {details}: the tenant's own domain "
                                       f"{', '.join(own)} is trivially spoofed from outside")
    return Severity.HIGH, f"when {details}: an outsider can forge these"


@check(
    id="RULE-002",
    title="A transport rule copies or redirects mail outside the organisation",
    severity=Severity.HIGH,
    rationale=(
        "Redirect, Bcc, add-recipient and incident-report actions silently send copies of mail "
        "to their recipients. Pointed outside the accepted domains, such a rule is a quiet "
        "exfiltration channel that no mailbox owner sees."
    ),
    remediation=Remediation(
        "Confirm each external recipient is an approved archive or service; otherwise remove "
        "the action or the rule, and review who created it (LastModifiedBy, audit log).",
        'Get-TransportRule -Identity "<rule name>" | Format-List Name,State,*To*,*Recipients*\n'
        'Disable-TransportRule -Identity "<rule name>"',
    ),
    requires=("Get-TransportRule", "Get-AcceptedDomain"),
    references=(MS_NEW_TRANSPORT_RULE,),
    mappings=Mappings(attack=("T1114.003",), cis=("6.2.1",)),
)
def external_copy_rules(ctx: CheckContext) -> Iterator[Result]:
    examined = 0
    for rule in ctx.transport_rules:
        targets = [(prop, value) for prop in ("RedirectMessageTo", "BlindCopyTo",
                                              "AddToRecipients", "CopyTo")
                   for value in getattr(rule, prop)]
        if not targets:
            continue
        examined += 1
        resource = _resource(rule)
        external = []
        unresolved = []
        for prop, value in targets:
            address = smtp_address(value)
            if address is None:
                unresolved.append((prop, value))
            elif not ctx.is_internal_address(address):
                external.append((prop, value, address))
        inactive = rule_in_force(rule, ctx.as_of)
        if not external and not unresolved:
            yield result(Status.PASS, resource, "copies or redirects mail only to the organisation's "
                         "own domains", *(rule.ref_item(p, v) for p, v in targets),
                         key=rule.display_name)
            continue
        if inactive is not None:
            yield result(Status.PASS, resource,
                         f"would send mail outside the organisation, but does not act on mail: "
                         f"{inactive}", rule.ref("State"), rule.ref("Mode"), key=rule.display_name)
            continue
        if external:
            listed = ", ".join(f"{prop} {address}" for prop, _, address in external)
            conditions = analyse_conditions(rule, ctx.gateway).conditions
            broad = all(c.name in ("FromScope", "SentToScope") for c in conditions)
            severity = Severity.CRITICAL if broad else Severity.HIGH
            scope = "for all mail it sees" if broad else "for the mail its conditions select"
            yield result(Status.FAIL, resource,
                         f"sends copies outside the accepted domains {scope}: {listed}",
                         *(rule.ref_item(p, v) for p, v, _ in external),
                         severity=severity, key=rule.display_name, fix=_disable(rule))
        else:
            listed = ", ".join(f"{prop} {value!r}" for prop, value in unresolved)
            yield result(Status.WARN, resource,
                         f"sends copies to recipients given by name, not address ({listed}); "
                         "resolve them with Get-Recipient to see whether they are external "
                         "(a mail contact is)", *(rule.ref_item(p, v) for p, v in unresolved),
                         severity=Severity.MEDIUM, key=rule.display_name)
    if not examined:
        yield result(Status.PASS, "transport rules",
                     f"none of the {len(ctx.transport_rules)} transport rules redirects, copies "
                     "or adds recipients", key="none", summary=True)


CHECKS = (
    scl_bypass_rules,
    external_copy_rules,
)
