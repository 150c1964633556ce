"""Bypass vector: transport (mail flow) rules that switch filtering off, trust what a sender
writes, neuter the gateway lock, route or hide mail, or copy it out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

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
from auditor.models import EvidenceRef, OutboundConnector, TransportRule
from auditor.netutil import IpRange
from auditor.values import smtp_address

from ._analysis import (
    CONDITION_PROPERTIES,
    EXCEPTION_PROPERTIES,
    RECIPIENT_EXCEPTIONS,
    SCL_HEADER,
    Condition,
    RangeVerdict,
    analyse_conditions,
    analyse_exceptions,
    classify_range,
    connector_lock,
    exception_names,
    filter_bypass,
    gateway_ranges,
    is_exchange_org_header,
    lock_escapes,
    lock_shape,
    pre_empting_rules,
    predicate_names,
    protections,
    rule_in_force,
    smart_host_owner,
    stamp_owner,
    stops_message,
    vouched_for,
    width_severity,
)

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
    legitimate=(
        "SCL -1 keyed only on the gateway's published IP ranges (what Mimecast, Proofpoint, "
        "Barracuda and other vendors ask for), SCL -1 for mail from inside the organisation, and "
        "rules that are disabled, in audit mode or out of date."
    ),
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
    legitimate=(
        "Copies, Bccs and redirects to the organisation's own accepted domains (subdomains too "
        "where MatchSubDomains is set), and rules that do not act on mail."
    ),
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


# --- shared by RULE-003 to RULE-007 ----------------------------------------------------------

MS_MAIL_FLOW_RULES = Reference(
    "Microsoft: Mail flow rules (transport rules) in Exchange Online",
    "https://learn.microsoft.com/en-us/exchange/security-and-compliance/mail-flow-rules/mail-flow-rules",
)
MS_PREDICATES = Reference(
    "Microsoft: Mail flow rule conditions and exceptions (predicates) in Exchange Online",
    "https://learn.microsoft.com/en-us/exchange/security-and-compliance/mail-flow-rules/conditions-and-exceptions",
)
MS_HEADER_FIREWALL = Reference(
    "Microsoft: Header firewall (X-MS-Exchange-Organization-* headers removed from mail from outside)",
    "https://learn.microsoft.com/en-us/previous-versions/exchange-server/exchange-150/bb232136(v=exchg.150)",
)
MS_MESSAGE_HEADERS = Reference(
    "Microsoft: Anti-spam message headers in Microsoft 365",
    "https://learn.microsoft.com/en-us/defender-office-365/message-headers-eop-mdo",
)
MS_ADVANCED_DELIVERY = Reference(
    "Microsoft: Configure the advanced delivery policy for third-party phishing simulations",
    "https://learn.microsoft.com/en-us/defender-office-365/advanced-delivery-policy-configure",
)
MS_SAFE_LINKS = Reference(
    "Microsoft: Safe Links in Microsoft Defender for Office 365",
    "https://learn.microsoft.com/en-us/defender-office-365/safe-links-about",
)
ORCA_189 = Reference(
    "ORCA-189 / ORCA-189-2: Safe Attachments and Safe Links are not bypassed by mail flow rules",
    "https://maester.dev/docs/tests/ORCA.189.2",
)
PROOFPOINT_M365 = Reference(
    "Proofpoint: Microsoft 365 Integration Guide v3.19 (Step 4, bypass Safe Links rewriting for "
    "mail from Proofpoint)",
    "https://scribd.com/document/728082939/M365-Integration-Guide-proofpoint-V3-19",
)
MS_NEW_OUTBOUND = Reference(
    "Microsoft: New-OutboundConnector (IsTransportRuleScoped, SmartHosts)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-outboundconnector",
)
MS_THIRD_PARTY = Reference(
    "Microsoft: Manage mail flow using a third-party cloud service with Exchange Online",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/manage-mail-flow-using-third-party-cloud",
)
VIRCOM_LOCKDOWN = Reference(
    "Vircom: Locking down Microsoft 365 connections (reject mail not from the gateway's IPs)",
    "https://vircomhelp.freshdesk.com/support/solutions/articles/48000859489-step-6-locking-down-o365-connections",
)

_RANK = {Status.PASS: 0, Status.NOT_EVALUATED: 1, Status.WARN: 2, Status.FAIL: 3}


@dataclass
class _Verdict:
    """Everything found about one rule, folded into one result: the worst status wins, its
    findings lead the message, and every finding's evidence and fix is kept."""

    items: list[tuple[Status, str, Severity | None]] = field(default_factory=list)
    evidence: list[EvidenceRef] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def add(self, status: Status, text: str, *evidence: EvidenceRef,
            severity: Severity | None = None, fix: str = "") -> None:
        self.items.append((status, text, severity))
        self.evidence.extend(e for e in evidence if e not in self.evidence)
        if fix and fix not in self.fixes:
            self.fixes.append(fix)

    @property
    def status(self) -> Status:
        return max((s for s, _, _ in self.items), key=_RANK.__getitem__, default=Status.PASS)

    @property
    def severity(self) -> Severity | None:
        ranked = [sev for s, _, sev in self.items if s.is_finding and sev is not None]
        return max(ranked, key=lambda sev: sev.rank) if ranked else None

    def message(self) -> str:
        status = self.status
        ordered = sorted(self.items, key=lambda item: -_RANK[item[0]])
        texts = [t for s, t, _ in ordered if s is status or (s is not Status.PASS and status.is_finding)]
        return "; ".join(texts)

    def result(self, resource: str, key: str, *, severity: Severity | None = None,
               suffix: str = "", status: Status | None = None) -> Result:
        final = status or self.status
        return result(final, resource, self.message() + suffix, *self.evidence,
                      severity=severity or self.severity, key=key,
                      fix="\n".join(self.fixes) if final.is_finding else "")


def _gateway_label(ctx: CheckContext) -> str:
    return f"{ctx.gateway.names}'s" if ctx.gateway.detected else "a known gateway's"


def _per_customer(ctx: CheckContext) -> bool:
    return any(p.customer_specific_ips for p in ctx.gateway.active)


def _range_finding(verdict: RangeVerdict, ctx: CheckContext) -> tuple[Status, Severity, str]:
    """Status, severity and words for one range that is not inside the gateway's."""
    names = ctx.gateway.names
    rng = verdict.rng
    if rng is None:
        return Status.WARN, Severity.MEDIUM, f"{verdict.text!r} is not an IP address or range"
    if verdict.kind == "exchange-online":
        return (Status.FAIL, Severity.CRITICAL,
                f"{verdict.text} is Exchange Online's own range, from which every Microsoft 365 "
                "tenant sends")
    if verdict.kind == "wider":
        return (Status.FAIL, width_severity(verdict.extra, rng.family),
                f"{verdict.text} is wider than {names}'s published ranges: {verdict.extra:,} of its "
                f"{rng.size:,} addresses are not {names}'s")
    if verdict.kind == "other-gateway" and verdict.owner is not None:
        return (Status.FAIL, Severity.HIGH,
                f"{verdict.text} is {verdict.owner.name}'s range, not the gateway in use ({names}): "
                "a stale entry from a former gateway, or a sign of tampering")
    if _per_customer(ctx):
        return (Status.WARN, Severity.MEDIUM,
                f"{verdict.text} is not among {names}'s published ranges; {names} delivers from "
                "per-customer addresses, so confirm it is yours (or list it in a --gateway-file "
                "profile)")
    plural = "es" if rng.size != 1 else ""
    return (Status.FAIL, width_severity(rng.size, rng.family),
            f"{verdict.text} ({rng.size:,} address{plural}) belongs to no known gateway")


# --- RULE-003 --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Bypass:
    """What setting one header on a message switches off."""

    effect: str
    severity: Severity
    vendor_documented: bool = False


_FORGED_VERDICT = _Bypass("Exchange Online's spam verdict header is forged, and what clients, "
                          "reports and investigators read no longer says how the message was judged",
                          Severity.MEDIUM)
BYPASS_HEADERS: dict[str, _Bypass] = {
    "x-ms-exchange-organization-skipsafelinksprocessing": _Bypass(
        "Safe Links neither rewrites nor checks its links when they are clicked", Severity.HIGH, True),
    "x-ms-exchange-organization-skipsafeattachmentprocessing": _Bypass(
        "Safe Attachments does not open its attachments in a sandbox", Severity.HIGH, True),
    "x-ms-exchange-organization-bypassclutter": _Bypass(
        "Clutter never moves it out of the inbox", Severity.LOW),
    "x-forefront-antispam-report": _FORGED_VERDICT,
    "x-forefront-antispam-report-untrusted": _FORGED_VERDICT,
    "x-microsoft-antispam": _FORGED_VERDICT,
}
HARMLESS_HEADERS = {
    "x-ms-exchange-organization-bypassfocusedinbox": "only keeps the message in the Focused tab",
}
VERDICT_HEADERS = ("x-forefront-antispam-report", "x-forefront-antispam-report-untrusted",
                   "x-microsoft-antispam", "authentication-results")
_HEADER_OR_SCOPE = {"HeaderContains", "HeaderMatches", "FromScope", "SentToScope"}


@dataclass(frozen=True)
class _HeaderPredicate:
    """A rule condition on a message header: the header and the values that match."""

    header: str
    values: tuple[str, ...]
    exception: bool
    props: tuple[str, ...]
    matches: bool  # HeaderMatches (patterns), not HeaderContains (words)


def _header_predicates(rule: TransportRule) -> list[_HeaderPredicate]:
    found = []
    for names, table, exception in ((predicate_names(rule), CONDITION_PROPERTIES, False),
                                    (exception_names(rule), EXCEPTION_PROPERTIES, True)):
        for name in ("HeaderContains", "HeaderMatches"):
            if name in names:
                header_prop, values_prop = table[name]
                found.append(_HeaderPredicate((getattr(rule, header_prop) or "").strip(),
                                              getattr(rule, values_prop), exception,
                                              table[name], name == "HeaderMatches"))
    return found


def _who_writes(header: str, ctx: CheckContext) -> str:
    owner = stamp_owner(header, ctx.gateway)
    if owner is not None and ctx.gateway.is_active(owner):
        return (f"{header} is a header {owner.name} adds to mail it relays, but Exchange Online "
                "does not check who wrote it: any sender can write it, and mail sent "
                f"straight to the tenant's Exchange Online endpoint never meets {owner.name} at all")
    if owner is not None:
        return (f"{header} is {owner.name}'s header (not the gateway in use), and any sender can "
                "write it")
    return f"{header} is an ordinary message header, which the sender writes like any other"


def _skips(rule: TransportRule, rules: tuple[TransportRule, ...],
           ctx: CheckContext) -> list[tuple[str, EvidenceRef, Severity]]:
    """What a rule switches off for the messages it matches."""
    found = []
    scl = filter_bypass(rule)
    if scl is not None:
        found.append(("switch spam filtering off (SCL -1)", scl, Severity.CRITICAL))
    bypass = BYPASS_HEADERS.get((rule.SetHeaderName or "").strip().lower())
    if bypass is not None:
        found.append((f"set {rule.SetHeaderName}, so {bypass.effect}", rule.ref("SetHeaderName"),
                      bypass.severity))
    if rule.StopRuleProcessing and not stops_message(rule) and rule.Priority is not None:
        later = [r for r in rules if r is not rule and r.Priority is not None
                 and r.Priority > rule.Priority and rule_in_force(r, ctx.as_of) is None
                 and (lock_shape(r) or protections(r))]
        if later:
            severity = (Severity.CRITICAL if any(lock_shape(r) for r in later)
                        else Severity.HIGH if any(p.blocks for r in later for p in protections(r))
                        else Severity.MEDIUM)
            listed = ", ".join(f"'{r.display_name}'" for r in later)
            found.append((f"stop rule processing, so the later rules {listed} never see the message",
                          rule.ref("StopRuleProcessing"), severity))
    return found


def _narrow_ip_condition(rule: TransportRule, ctx: CheckContext) -> Condition | None:
    """A sender IP condition of narrow ranges (a phishing-simulation vendor's, say): not the
    gateway's, but not something an arbitrary sender on the Internet can meet either."""
    ip = next((c for c in analyse_conditions(rule, ctx.gateway).conditions
               if c.name == "SenderIpRanges"), None)
    if ip is None or not rule.SenderIpRanges:
        return None
    for text in rule.SenderIpRanges:
        found = classify_range(text, ctx.gateway)
        if found.ok:
            continue
        if found.rng is None or found.kind == "exchange-online" or (
                width_severity(found.extra, found.rng.family) is not Severity.MEDIUM):
            return None
    return ip


def _exempted(rule: TransportRule) -> list[tuple[str, EvidenceRef, Severity]]:
    """The protection an exception takes a message out of."""
    if lock_shape(rule):
        return [("the gateway lock: the message is delivered although it did not come through "
                 "the gateway", rule.ref("ExceptIfSenderIpRanges"), Severity.CRITICAL)]
    return [(p.what, p.evidence, Severity.HIGH if p.blocks else Severity.MEDIUM)
            for p in protections(rule)]


def _judge_header(pred: _HeaderPredicate, rule: TransportRule, rules: tuple[TransportRule, ...],
                  ctx: CheckContext, verdict: _Verdict) -> None:
    refs = tuple(rule.ref(p) for p in pred.props)
    kind = "exception" if pred.exception else "condition"
    if not pred.header:
        verdict.add(Status.NOT_EVALUATED, f"not evaluated: the export lists a header {kind} but "
                    f"not which header ({pred.props[0]} is empty)", *refs)
        return
    header = pred.header
    if is_exchange_org_header(header):
        verdict.add(Status.PASS, f"its {kind} on {header} is sound: Exchange's header firewall "
                    "removes X-MS-Exchange-Organization-* headers from mail arriving from outside, "
                    "so only Exchange itself can have written it", *refs)
        return
    analysis = analyse_conditions(rule, ctx.gateway)
    if pred.exception:
        effects = _exempted(rule)
        gate = next((c for c in analysis.conditions if c.name == "FromScope" and not c.outsider), None)
    else:
        effects = _skips(rule, rules, ctx)
        gate = next((c for c in analysis.conditions if not c.outsider), None)
    if not effects:
        verdict.add(Status.PASS, f"its {kind} on {header} switches no protection off", *refs)
        return
    if gate is not None:
        verdict.add(Status.PASS, f"it trusts {header} only for mail whose {gate.detail}",
                    *refs, gate.evidence)
        return
    narrow = None if pred.exception else _narrow_ip_condition(rule, ctx)
    if narrow is not None:
        verdict.add(Status.PASS, f"it trusts {header} only for mail from the sender IP ranges "
                    f"{', '.join(rule.SenderIpRanges)}, which an arbitrary sender does not hold "
                    "(RULE-001 and RULE-004 judge those ranges)", *refs, narrow.evidence)
        return
    severity = max((e[2] for e in effects), key=lambda s: s.rank)
    others = {c.name for c in analysis.outsider_conditions} - _HEADER_OR_SCOPE
    if not pred.exception and others and severity is Severity.CRITICAL:
        severity = Severity.HIGH  # the sender must also forge the other conditions
    listed = ", ".join(repr(v) for v in pred.values)
    looks = f" ({'matches' if pred.matches else 'contains'} {listed})" if listed else ""
    secret = (f"; the value it looks for ({listed}) is no secret: every recipient of mail that "
              "carries it can read it") if listed else ""
    effect_text = ", ".join(e[0] for e in effects)
    if pred.exception:
        text = (f"exempts mail that carries the message header {header}{looks} from its "
                f"protection ({effect_text}): {_who_writes(header, ctx)}{secret}")
        fix = (f"Set-TransportRule -Identity {ps_literal(rule.display_name)} "
               + " ".join(f"-{p} $null" for p in pred.props))
    else:
        text = (f"trusts the message header {header}{looks} to {effect_text}: "
                f"{_who_writes(header, ctx)}{secret}")
        fix = _disable(rule)
    verdict.add(Status.FAIL, text, *refs, *(e[1] for e in effects), severity=severity, fix=fix)


@check(
    id="RULE-003",
    title="A transport rule trusts a message header that any sender can write",
    severity=Severity.HIGH,
    rationale=(
        "Headers are written by whoever sends the message. A rule that switches filtering off "
        "(SCL -1, skipping Safe Links or Safe Attachments, stopping later rules) when a header "
        "is present, or exempts mail carrying a header from a reject, quarantine or the gateway "
        "lock, lets any sender on the Internet choose that treatment by adding the header. A "
        "gateway's own stamp proves nothing either: mail sent straight to the tenant's Exchange "
        "Online endpoint never meets the gateway, and a value in a header is read by every "
        "recipient. Only X-MS-Exchange-Organization-* headers are safe to trust, because "
        "Exchange removes them from mail arriving from outside. A header condition is sound when "
        "another condition keeps outsiders out: the sender IP is the gateway's, or the sender is "
        "inside the organisation. RULE-001 judges every SCL -1 rule's conditions; this check names "
        "the header, what trusting it switches off and why an outsider can write it."
    ),
    remediation=Remediation(
        "Key the rule on the gateway's IP ranges (SenderIpRanges) instead of, or in addition to, "
        "the header; remove header exceptions from protective rules. For phishing simulations "
        "use the Advanced delivery policy, which Microsoft built for that purpose.",
        'Set-TransportRule -Identity "<rule name>" -SenderIpRanges <gateway ranges>\n'
        'Set-TransportRule -Identity "<rule name>" -ExceptIfHeaderContainsMessageHeader $null '
        "-ExceptIfHeaderContainsWords $null\n"
        '# or: Disable-TransportRule -Identity "<rule name>"',
    ),
    requires=("Get-TransportRule",),
    references=(MS_PREDICATES, MS_SCL_RULE, MS_HEADER_FIREWALL, MS_ADVANCED_DELIVERY,
                MS_NEW_TRANSPORT_RULE),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1566")),
    legitimate=(
        "A header condition combined with the gateway's IP ranges or with mail from inside the "
        "organisation (as Avanan's and Cyber Guru's rules do), conditions on "
        "X-MS-Exchange-Organization-* headers, which Exchange itself writes, header conditions on "
        "rules that switch nothing off, and header exceptions on rules that protect nothing."
    ),
)
def header_trust_rules(ctx: CheckContext) -> Iterator[Result]:
    rules = ctx.transport_rules
    examined = 0
    for rule in rules:
        predicates = _header_predicates(rule)
        if not predicates:
            continue
        examined += 1
        resource = _resource(rule)
        inactive = rule_in_force(rule, ctx.as_of)
        if inactive is not None:
            yield result(Status.PASS, resource, f"has a message header condition or exception, "
                         f"but does not act on mail: {inactive}", rule.ref("State"), rule.ref("Mode"),
                         key=rule.display_name)
            continue
        verdict = _Verdict()
        for pred in predicates:
            _judge_header(pred, rule, rules, ctx, verdict)
        yield verdict.result(resource, rule.display_name)
    if not examined:
        yield result(Status.PASS, "transport rules",
                     f"none of the {len(rules)} transport rules has a condition or exception on a "
                     "message header", key="none", summary=True)


# --- RULE-004 --------------------------------------------------------------------------------

def _judge_bypass_header(rule: TransportRule, bypass: _Bypass, ctx: CheckContext,
                         verdict: _Verdict) -> None:
    name = (rule.SetHeaderName or "").strip()
    what = f"sets {name}, so {bypass.effect}"
    refs = (rule.ref("SetHeaderName"), rule.ref("SetHeaderValue"))
    analysis = analyse_conditions(rule, ctx.gateway)
    gate = next((c for c in analysis.conditions if not c.outsider), None)
    restrict = (f"Set-TransportRule -Identity {ps_literal(rule.display_name)} -SenderIpRanges "
                + ",".join(gateway_ranges(ctx.gateway))) if ctx.gateway.detected else _disable(rule)
    if gate is not None:
        why = (" (the setup gateway vendors document for mail the gateway has already checked; "
               "Microsoft prefers exclusions in the Safe Links policy and the Advanced delivery "
               "policy)") if bypass.vendor_documented else ""
        verdict.add(Status.PASS, f"{what}, but only for mail whose {gate.detail}{why}", *refs,
                    gate.evidence)
        return
    ip = next((c for c in analysis.conditions if c.name == "SenderIpRanges"), None)
    others = [c for c in analysis.outsider_conditions if c.name != "SenderIpRanges"]
    if ip is not None and not others and not rule.SenderIpRanges:
        verdict.add(Status.NOT_EVALUATED, f"not evaluated: {what}, on a sender IP condition whose "
                    "ranges the export does not hold", *refs, ip.evidence)
        return
    if ip is not None and not others:
        findings = [_range_finding(v, ctx) for text in rule.SenderIpRanges
                    if not (v := classify_range(text, ctx.gateway)).ok]
        severity = max((f[1] for f in findings), key=lambda s: s.rank, default=Severity.MEDIUM)
        status = Status.FAIL if severity.rank >= Severity.HIGH.rank else Status.WARN
        verdict.add(status, f"{what}, for sender IP ranges beyond {_gateway_label(ctx)} "
                    "published ones: "
                    + "; ".join(f[2] for f in findings)
                    + " (for a phishing-simulation vendor, use the Advanced delivery policy)",
                    *refs, ip.evidence, severity=severity, fix=restrict)
        return
    conditions = "; ".join(c.detail for c in analysis.outsider_conditions) or "no condition at all"
    status = Status.WARN if bypass.severity is Severity.LOW else Status.FAIL
    verdict.add(status, f"{what}, for mail an outsider can send ({conditions})", *refs,
                *(c.evidence for c in analysis.outsider_conditions), severity=bypass.severity,
                fix=restrict)


def _judge_removal(rule: TransportRule, described: str, ctx: CheckContext,
                   verdict: _Verdict) -> None:
    analysis = analyse_conditions(rule, ctx.gateway)
    ref = rule.ref("RemoveHeader")
    if any(c.name == "FromScope" and not c.outsider for c in analysis.conditions):
        verdict.add(Status.PASS, f"removes {described}, but only from mail sent from inside the "
                    "organisation (header cleaning on the way out)", ref)
        return
    verdict.add(Status.WARN, f"removes {described} from the mail it receives: mail that passed the "
                "gateway and mail sent around it then look alike to users, reports and "
                "investigators", ref, severity=Severity.MEDIUM,
                fix=f"Set-TransportRule -Identity {ps_literal(rule.display_name)} -RemoveHeader $null")


@check(
    id="RULE-004",
    title="A transport rule sets filtering-bypass headers or removes the gateway's stamps",
    severity=Severity.HIGH,
    rationale=(
        "Exchange Online honours some headers that a mail flow rule sets: "
        "X-MS-Exchange-Organization-SkipSafeLinksProcessing and "
        "-SkipSafeAttachmentProcessing switch Safe Links and Safe Attachments off for the "
        "message, -BypassClutter keeps it in the inbox, and writing X-Forefront-Antispam-Report "
        "forges Exchange Online's verdict. For mail an outsider can send, such a rule removes a "
        "layer of protection for whoever chooses to match it. Gateway vendors that rewrite links "
        "themselves document the Safe Links skip for mail from the gateway's own IP ranges; that "
        "setup passes. Removing the gateway's stamps (or Exchange Online's verdict headers) from "
        "incoming mail erases the evidence that tells mail that passed the gateway from mail "
        "delivered around it. X-MS-Exchange-Organization-SCL -1 is judged by RULE-001."
    ),
    remediation=Remediation(
        "Restrict bypass headers to mail from the gateway's published IP ranges, or drop them in "
        "favour of Safe Links policy exclusions and the Advanced delivery policy; stop removing "
        "the gateway's and Exchange Online's headers from incoming mail.",
        'Set-TransportRule -Identity "<rule name>" -SenderIpRanges <gateway ranges>\n'
        'Set-TransportRule -Identity "<rule name>" -RemoveHeader $null\n'
        '# or: Disable-TransportRule -Identity "<rule name>"',
    ),
    requires=("Get-TransportRule",),
    references=(ORCA_189, MS_SAFE_LINKS, MS_ADVANCED_DELIVERY, PROOFPOINT_M365, MS_MESSAGE_HEADERS,
                MS_NEW_TRANSPORT_RULE),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1070")),
    legitimate=(
        "The Safe Links (or Safe Attachments) skip gateway vendors document for mail from the "
        "gateway's own IP ranges, bypass headers set only on internal mail, the Focused Inbox "
        "bypass, and removing the gateway's stamps from outgoing mail only (header cleaning). "
        "X-MS-Exchange-Organization-SCL is left to RULE-001."
    ),
)
def bypass_header_rules(ctx: CheckContext) -> Iterator[Result]:
    rules = ctx.transport_rules
    examined = 0
    for rule in rules:
        set_name = (rule.SetHeaderName or "").strip()
        removed = (rule.RemoveHeader or "").strip()
        bypass = BYPASS_HEADERS.get(set_name.lower())
        harmless = HARMLESS_HEADERS.get(set_name.lower())
        unknown_internal = (is_exchange_org_header(set_name) and set_name.lower() != SCL_HEADER
                            and bypass is None and harmless is None)
        owner = stamp_owner(removed, ctx.gateway) if removed else None
        stamp = owner if ctx.gateway.is_active(owner) else None
        verdict_header = removed.lower() in VERDICT_HEADERS
        if not (bypass or harmless or unknown_internal or stamp or verdict_header):
            continue
        examined += 1
        resource = _resource(rule)
        inactive = rule_in_force(rule, ctx.as_of)
        touched = " and ".join(f"{verb} {name}" for verb, name in
                               (("sets", set_name), ("removes", removed)) if name)
        if inactive is not None:
            yield result(Status.PASS, resource, f"{touched}, but does not act on mail: {inactive}",
                         rule.ref("State"), rule.ref("Mode"), key=rule.display_name)
            continue
        verdict = _Verdict()
        if harmless is not None:
            verdict.add(Status.PASS, f"sets {set_name}, which {harmless}", rule.ref("SetHeaderName"))
        if unknown_internal:
            verdict.add(Status.WARN, f"sets the Exchange-internal header {set_name}, whose effect "
                        "this tool does not know: confirm it is documented and needed",
                        rule.ref("SetHeaderName"), severity=Severity.LOW)
        if bypass is not None:
            _judge_bypass_header(rule, bypass, ctx, verdict)
        if stamp is not None:
            _judge_removal(rule, f"{removed}, a stamp {stamp.name} adds to the mail it relays",
                           ctx, verdict)
        elif verdict_header:
            _judge_removal(rule, f"{removed}, where Exchange Online records how it judged the "
                           "message", ctx, verdict)
        yield verdict.result(resource, rule.display_name)
    if not examined:
        note = ("" if ctx.gateway.detected else
                " (no gateway detected, so removal of a gateway's stamps was not looked for)")
        yield result(Status.PASS, "transport rules",
                     f"none of the {len(rules)} transport rules sets a filtering-bypass header or "
                     f"removes the gateway's or Exchange Online's verdict headers{note}",
                     key="none", summary=True)


# --- RULE-005 --------------------------------------------------------------------------------

def _lock_state(lock: TransportRule, ctx: CheckContext, verdict: _Verdict) -> None:
    name = ps_literal(lock.display_name)
    if lock.State is not None and lock.State.lower() != "enabled":
        verdict.add(Status.FAIL, f"the lock is {lock.State}", lock.ref("State"),
                    severity=Severity.HIGH, fix=f"Enable-TransportRule -Identity {name}")
    if lock.Mode is not None and lock.Mode.lower() != "enforce":
        verdict.add(Status.FAIL, f"the lock is in {lock.Mode} mode: it only logs the mail it "
                    "should stop", lock.ref("Mode"), severity=Severity.HIGH,
                    fix=f"Set-TransportRule -Identity {name} -Mode Enforce")
    if lock.ActivationDate is not None and lock.ActivationDate > ctx.as_of:
        verdict.add(Status.FAIL, f"the lock only starts on {lock.ActivationDate:%Y-%m-%d} "
                    "(ActivationDate)", lock.ref("ActivationDate"), severity=Severity.HIGH,
                    fix=f"Set-TransportRule -Identity {name} -ActivationDate $null")
    if lock.ExpiryDate is not None:
        fix = f"Set-TransportRule -Identity {name} -ExpiryDate $null"
        if lock.ExpiryDate <= ctx.as_of:
            verdict.add(Status.FAIL, f"the lock expired on {lock.ExpiryDate:%Y-%m-%d} (ExpiryDate)",
                        lock.ref("ExpiryDate"), severity=Severity.HIGH, fix=fix)
        else:
            verdict.add(Status.WARN, f"the lock stops on {lock.ExpiryDate:%Y-%m-%d} (ExpiryDate): "
                        "from then on mail reaches the tenant around the gateway without anyone "
                        "changing anything", lock.ref("ExpiryDate"), severity=Severity.LOW, fix=fix)


def _lock_exceptions(lock: TransportRule, ctx: CheckContext, verdict: _Verdict) -> None:
    name = ps_literal(lock.display_name)
    escapes = lock_escapes(lock)
    for exc in analyse_exceptions(lock, ctx.gateway).conditions:
        if exc.name == "SenderIpRanges":
            if not ctx.gateway.detected:
                verdict.add(Status.NOT_EVALUATED, "not evaluated: no gateway is known to compare "
                            "the exempted IP ranges with (use --gateway NAME)", exc.evidence)
                continue
            checked = [classify_range(text, ctx.gateway) for text in lock.ExceptIfSenderIpRanges]
            keep = [v.text for v in checked if v.ok] or gateway_ranges(ctx.gateway)
            for found in (_range_finding(v, ctx) for v in checked if not v.ok):
                verdict.add(found[0], f"it exempts mail from ranges that are not the gateway's "
                            f"({found[2]}), and such mail reaches the tenant around the gateway",
                            exc.evidence, severity=found[1],
                            fix=f"Set-TransportRule -Identity {name} -ExceptIfSenderIpRanges "
                                + ",".join(keep))
        elif exc.name in escapes:
            props = EXCEPTION_PROPERTIES.get(exc.name)
            fix = (f"Set-TransportRule -Identity {name} " + " ".join(f"-{p} $null" for p in props)
                   if props else "")
            verdict.add(Status.FAIL, f"an outsider escapes it through its exception {exc.detail}",
                        exc.evidence, severity=Severity.HIGH, fix=fix)
        elif exc.name in RECIPIENT_EXCEPTIONS:
            verdict.add(Status.WARN, f"it exempts mail to some recipients ({exc.detail}), which "
                        "therefore reaches them around the gateway", exc.evidence,
                        severity=Severity.MEDIUM)


def _lock_order(lock: TransportRule, ctx: CheckContext, verdict: _Verdict) -> None:
    if lock.Priority is None:
        verdict.add(Status.NOT_EVALUATED, "not evaluated: the export gives no Priority, so whether "
                    "an earlier rule pre-empts the lock could not be judged", lock.ref("Priority"))
        return
    for other in pre_empting_rules(lock, ctx.transport_rules, ctx.as_of, ctx.gateway):
        conditions = analyse_conditions(other, ctx.gateway)
        broad = all(c.name in ("FromScope", "SentToScope") for c in conditions.conditions)
        matched = "; ".join(c.detail for c in conditions.outsider_conditions) or "every message"
        verdict.add(Status.FAIL, f"'{other.display_name}' (priority {other.Priority}) runs first "
                    f"and stops rule processing for mail matching {matched}, which an outsider can "
                    "send: such mail never reaches the lock",
                    other.ref("StopRuleProcessing"), other.ref("Priority"), lock.ref("Priority"),
                    severity=Severity.CRITICAL if broad else Severity.HIGH,
                    fix=f"Set-TransportRule -Identity {ps_literal(lock.display_name)} -Priority 0")


def _connector_locked(ctx: CheckContext) -> str | None:
    """The name of an enabled Partner connector that locks every accepted domain to the gateway."""
    if not ctx.available("Get-InboundConnector"):
        return None
    for conn in ctx.inbound_connectors:
        lock = connector_lock(conn, ctx.gateway).lock
        if lock is not None and lock.names_gateway and lock.covers_all_domains:
            return conn.display_name
    return None


@check(
    id="RULE-005",
    title="The transport rule that enforces the gateway path is disabled, expired, pre-empted or "
          "has an escape",
    severity=Severity.HIGH,
    rationale=(
        "Some gateway vendors document a transport rule that rejects (or deletes) mail from "
        "outside the organisation unless it comes from the gateway's IP ranges. Unlike a Partner "
        "connector, the rule is one toggle away from doing nothing: it can be disabled, left in "
        "Audit mode (which takes no action), given an ActivationDate in the future or an "
        "ExpiryDate in the past, or pre-empted by a higher-priority rule that stops rule "
        "processing for mail an outsider can send. An exception on a header, a sender or ranges "
        "that are not the gateway's lets outsiders through as well. When the tenant has no such "
        "rule there is nothing to neuter and the check passes: CONN-001 judges whether inbound "
        "mail is locked to the gateway at all."
    ),
    remediation=Remediation(
        "Prefer a Partner inbound connector lock (CONN-001). Keep the rule, if at all, enabled, "
        "in Enforce mode, without dates, at priority 0, with the gateway's published ranges as "
        "its only exception.",
        'Enable-TransportRule -Identity "<rule name>"\n'
        'Set-TransportRule -Identity "<rule name>" -Mode Enforce -Priority 0 '
        "-ActivationDate $null -ExpiryDate $null -ExceptIfSenderIpRanges <gateway ranges>",
    ),
    requires=("Get-TransportRule",),
    uses=("Get-InboundConnector",),
    references=(MS_MAIL_FLOW_RULES, MS_THIRD_PARTY, VIRCOM_LOCKDOWN, MS_NEW_TRANSPORT_RULE),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1566")),
    legitimate=(
        "A lock rule that is enabled, enforced, undated, not preceded by a stop-processing rule "
        "outsiders can match, and whose only exception is the gateway's published ranges (or "
        "mail from inside); a neutered lock behind a Partner connector lock is a low warning "
        "only; a tenant with no lock rule passes (CONN-001 judges the missing lockdown)."
    ),
)
def lockdown_rule_integrity(ctx: CheckContext) -> Iterator[Result]:
    rules = ctx.transport_rules
    locks = [r for r in rules if lock_shape(r)]
    if not locks:
        yield result(Status.PASS, "transport rules",
                     f"none of the {len(rules)} transport rules is a gateway lock (a rule that "
                     "rejects or deletes outside mail not from listed IP ranges), so there is none "
                     "to neuter; CONN-001 judges whether inbound mail is locked to the gateway",
                     key="none", summary=True)
        return
    connector = _connector_locked(ctx)
    for lock in locks:
        verdict = _Verdict()
        _lock_state(lock, ctx, verdict)
        _lock_exceptions(lock, ctx, verdict)
        _lock_order(lock, ctx, verdict)
        resource = _resource(lock)
        if not verdict.items:
            yield result(Status.PASS, resource,
                         f"rejects outside mail not from {_gateway_label(ctx)} ranges: enabled, "
                         "enforced, in date, not pre-empted by an earlier rule, and with no "
                         "exception an outsider can meet", lock.ref("ExceptIfSenderIpRanges"),
                         lock.ref("State"), lock.ref("Mode"), key=lock.display_name)
        elif connector is not None and verdict.status.is_finding:
            yield verdict.result(resource, lock.display_name, status=Status.WARN,
                                 severity=Severity.LOW,
                                 suffix=f" (Partner connector '{connector}' already refuses mail "
                                        "that does not come from the gateway, so this rule is only "
                                        "a second line of defence)")
        else:
            suffix = ("" if ctx.available("Get-InboundConnector") or not verdict.status.is_finding
                      else " (inbound connectors were not collected, so whether a connector also "
                           "locks the tenant is unknown)")
            yield verdict.result(resource, lock.display_name, suffix=suffix)


# --- RULE-006 --------------------------------------------------------------------------------

# Words of the mail a hiding rule keeps from its recipients: security notices, sign-in and
# account alerts, quarantine digests, and payments (fraud runs alongside hidden invoices).
HIDING_TERMS = ("secur", "alert", "phish", "suspicious", "compromis", "password", "sign-in",
                "sign in", "signin", "login", "log in", "mfa", "verif", "quarantin", "malware",
                "virus", "breach", "incident", "unusual", "invoice", "payment", "remittance",
                "bank", "wire transfer", "iban")
# Senders of Microsoft's own security and quarantine notifications.
NOTICE_SENDERS = ("microsoft.com", "microsoftonline.com", "office365.com", "postmaster",
                  "mailer-daemon")
_TEXT_PROPERTIES = ("SubjectContainsWords", "SubjectOrBodyContainsWords", "SubjectMatchesPatterns",
                    "SubjectOrBodyMatchesPatterns", "FromAddressContainsWords",
                    "FromAddressMatchesPatterns", "From", "SenderDomainIs", "HeaderContainsWords",
                    "HeaderMatchesPatterns")
_SCOPES = {"FromScope", "SentToScope", "SentTo", "SentToMemberOf", "RecipientDomainIs"}


def _hidden_topics(rule: TransportRule, ctx: CheckContext) -> list[tuple[str, str]]:
    """(property, value) pairs of a rule's conditions that name security, sign-in, payment or
    gateway notices, or the senders of such notices."""
    vendors = {p.vendor.lower() for p in ctx.gateway.known
               if p.origin.startswith("builtin:") and p.deployment != "exchange-online"}
    terms = (*HIDING_TERMS, *NOTICE_SENDERS, *sorted(vendors))
    return [(prop, value) for prop in _TEXT_PROPERTIES for value in getattr(rule, prop)
            if any(term in value.lower() for term in terms)]


def _judge_hiding(rule: TransportRule, ctx: CheckContext, verdict: _Verdict) -> None:
    deletes = bool(rule.DeleteMessage)
    verb = "silently deletes" if deletes else "quarantines"
    action = rule.ref("DeleteMessage" if deletes else "Quarantine")
    if lock_shape(rule):
        verdict.add(Status.PASS, f"{verb} outside mail not from listed IP ranges: the gateway lock "
                    "(RULE-005 judges it)", action)
        return
    status, severity = (Status.FAIL, Severity.HIGH) if deletes else (Status.WARN, Severity.MEDIUM)
    topics = _hidden_topics(rule, ctx)
    if topics:
        listed = ", ".join(f"{prop} {value!r}" for prop, value in topics)
        verdict.add(status, f"{verb} mail matching {listed}, which names security notices, "
                    "sign-in alerts, payments or their senders: mail kept from its recipients the "
                    "way a hiding rule does", action, *(rule.ref_item(p, v) for p, v in topics),
                    severity=severity, fix=_disable(rule))
        return
    names = predicate_names(rule)
    conditions = analyse_conditions(rule, ctx.gateway).conditions
    if set(names) <= _SCOPES:
        scope = "; ".join(c.detail for c in conditions)
        verdict.add(status, f"{verb} every message{f' ({scope})' if scope else ''}: its "
                    "recipients never learn that mail was sent to them", action,
                    *(c.evidence for c in conditions), severity=severity, fix=_disable(rule))
        return
    verdict.add(Status.PASS, f"{verb} mail matching "
                + "; ".join(c.detail for c in conditions)
                + ", none of it security notices, sign-in alerts or payments", action)


def _find_connector(name: str, connectors: tuple[OutboundConnector, ...]) -> OutboundConnector | None:
    wanted = name.strip().lower()
    return next((c for c in connectors if wanted in {(c.Name or "").lower(), (c.Identity or "").lower(),
                                                    c.display_name.lower()}), None)


def _judge_route(rule: TransportRule, ctx: CheckContext, verdict: _Verdict) -> None:
    target = (rule.RouteMessageOutboundConnector or "").strip()
    ref = rule.ref("RouteMessageOutboundConnector")
    if not ctx.available("Get-OutboundConnector"):
        verdict.add(Status.NOT_EVALUATED, f"not evaluated: routes mail through the outbound "
                    f"connector '{target}', but Get-OutboundConnector was not collected, so where "
                    "that connector delivers is unknown", ref)
        return
    conn = _find_connector(target, ctx.outbound_connectors)
    if conn is None:
        verdict.add(Status.WARN, f"routes mail through the outbound connector '{target}', which "
                    "the exported outbound connectors do not hold", ref, severity=Severity.MEDIUM)
        return
    via = f"routes mail through '{conn.display_name}'"
    if conn.Enabled is False:
        verdict.add(Status.PASS, f"{via}, which is disabled, so no mail takes that route", ref,
                    conn.ref("Enabled"))
        return
    hosts = list(conn.SmartHosts)
    if conn.UseMXRecord is True or not hosts:
        verdict.add(Status.PASS, f"{via}, which delivers to the recipients' own MX (no third-party "
                    "host receives the mail; the gateway's outbound scanning does not see it)", ref,
                    conn.ref("UseMXRecord"))
        return
    owners = {h: smart_host_owner(h, ctx.gateway) for h in hosts}
    strangers = [h for h, owner in owners.items() if not vouched_for(owner, ctx.gateway)]
    if not strangers:
        verdict.add(Status.PASS, f"{via}, which relays to {', '.join(hosts)} (the gateway's, or "
                    "documented in your profile file)", ref, conn.ref("SmartHosts"))
        return
    listed = ", ".join(f"{h} ({o.name})" if (o := owners[h]) else h for h in strangers)
    evidence = [ref, *(conn.ref_item("SmartHosts", h) for h in strangers)]
    if not ctx.gateway.detected:
        verdict.add(Status.WARN, f"{via} to {listed}; no gateway is known to compare it with (name "
                    "it with --gateway NAME or --gateway-file FILE)", *evidence,
                    severity=Severity.MEDIUM, fix=_disable(rule))
        return
    inbound = ((rule.FromScope or "").lower() != "inorganization"
               and (rule.SentToScope or "").lower() != "notinorganization"
               and not (rule.From or rule.FromMemberOf))
    reach = ("mail arriving from outside, which an outsider can send, is handed to a host that can "
             "read and alter it" if inbound else
             "the mail it selects leaves around the gateway's outbound scanning, to a host that "
             "can read and keep it")
    verdict.add(Status.FAIL, f"{via} to {listed}, not {ctx.gateway.names}: {reach}", *evidence,
                severity=Severity.CRITICAL if inbound else Severity.HIGH, fix=_disable(rule))


@check(
    id="RULE-006",
    title="A transport rule diverts mail through a connector that is not the gateway's, or hides it",
    severity=Severity.HIGH,
    rationale=(
        "A mail flow rule can send the messages it matches through a rule-scoped outbound "
        "connector (RouteMessageOutboundConnector). Pointed at a host that is not the gateway, it "
        "takes outgoing mail around the gateway's scanning, DLP and archive, and incoming mail to "
        "whoever runs that host: interception with no trace in the mailbox. Rules that silently "
        "delete or quarantine mail about security alerts, sign-ins, quarantine notices or "
        "payments keep warnings from their recipients; attackers create them to hide their "
        "tracks and the victims' suppliers' real invoices. Inline products (and the gateway "
        "itself) route through their own connectors; routing to the active gateway's smart hosts "
        "passes, and the gateway lock rule is left to RULE-005."
    ),
    remediation=Remediation(
        "Confirm every routing rule's connector and smart host are a known service of yours, and "
        "remove rules that delete or quarantine security notices or payment mail; find out who "
        "created them (LastModifiedBy, unified audit log).",
        'Get-TransportRule | Where-Object { $_.RouteMessageOutboundConnector -or $_.DeleteMessage '
        "-or $_.Quarantine } | Format-List Name,State,Priority,RouteMessageOutboundConnector,"
        "DeleteMessage,Quarantine,Description\n"
        'Disable-TransportRule -Identity "<rule name>"',
    ),
    requires=("Get-TransportRule",),
    uses=("Get-OutboundConnector",),
    references=(MS_NEW_OUTBOUND, MS_THIRD_PARTY, MS_MAIL_FLOW_RULES, MS_NEW_TRANSPORT_RULE),
    mappings=Mappings(attack=("T1564.008", "T1557", "T1114.003")),
    legitimate=(
        "Routing to the active gateway's smart hosts or addresses, hosts in the user's profile "
        "file, connectors that deliver to the recipients' own MX, disabled connectors; the "
        "gateway lock's delete or quarantine; and deleting or quarantining mail on conditions that "
        "name no security notice, sign-in alert or payment (quarantining executables, say)."
    ),
)
def divert_or_hide_rules(ctx: CheckContext) -> Iterator[Result]:
    rules = ctx.transport_rules
    examined = 0
    for rule in rules:
        routes = bool((rule.RouteMessageOutboundConnector or "").strip())
        hides = bool(rule.DeleteMessage or rule.Quarantine)
        if not (routes or hides):
            continue
        examined += 1
        resource = _resource(rule)
        inactive = rule_in_force(rule, ctx.as_of)
        if inactive is not None:
            doing = [text for text, on in (
                (f"routes mail through '{rule.RouteMessageOutboundConnector}'", routes),
                ("deletes mail", rule.DeleteMessage), ("quarantines mail", rule.Quarantine)) if on]
            yield result(Status.PASS, resource, f"{' and '.join(doing)}, but does not act on mail: "
                         f"{inactive}", rule.ref("State"), rule.ref("Mode"), key=rule.display_name)
            continue
        verdict = _Verdict()
        if routes:
            _judge_route(rule, ctx, verdict)
        if hides:
            _judge_hiding(rule, ctx, verdict)
        yield verdict.result(resource, rule.display_name)
    if not examined:
        yield result(Status.PASS, "transport rules",
                     f"none of the {len(rules)} transport rules routes mail through a connector, "
                     "deletes or quarantines it", key="none", summary=True)


# --- RULE-007 --------------------------------------------------------------------------------

@check(
    id="RULE-007",
    title="The gateway's SCL -1 rule lists IP ranges beyond the gateway's published ones",
    severity=Severity.HIGH,
    rationale=(
        "Gateway vendors ask for an SCL -1 rule keyed on their delivery IP ranges so that Exchange "
        "Online does not filter their mail twice. Every range in it is trusted to have filtered "
        "the mail already: a range wider than the vendor publishes (a /16 where it publishes "
        "/24s), another gateway's range left from a migration, Exchange Online's own ranges or an "
        "address of no known gateway lets whoever sends from there skip spam filtering. Exactly "
        "the published ranges, a subset of them, or ranges in the user's own --gateway-file "
        "profile pass. RULE-001 says whether an SCL -1 rule can be met by outsiders at all; this "
        "check lists, range by range, what lies beyond the gateway's."
    ),
    remediation=Remediation(
        "Replace the rule's SenderIpRanges with the gateway's published ranges (or your own "
        "gateway's addresses, declared in a --gateway-file profile), and prefer Enhanced "
        "Filtering for Connectors to an SCL -1 rule.",
        'Set-TransportRule -Identity "<rule name>" -SenderIpRanges <gateway ranges>',
    ),
    requires=("Get-TransportRule",),
    references=(MS_SCL_RULE, MS_THIRD_PARTY, MS_EFC, MS_SECURE_BY_DEFAULT),
    mappings=Mappings(attack=("T1685", "T1562.001")),
    needs_gateway=True,
    legitimate=(
        "Exactly the gateway's published ranges, a subset of them, or ranges in the user's own "
        "--gateway-file profile (an on-premises relay, per-customer addresses)."
    ),
)
def scl_rule_ranges(ctx: CheckContext) -> Iterator[Result]:
    rules = ctx.transport_rules
    examined = 0
    for rule in rules:
        scl = filter_bypass(rule)
        if scl is None or not rule.SenderIpRanges:
            continue
        examined += 1
        resource = _resource(rule)
        ranges = rule.ref("SenderIpRanges")
        inactive = rule_in_force(rule, ctx.as_of)
        if inactive is not None:
            yield result(Status.PASS, resource, f"sets SCL -1 for sender IP ranges, but does not act "
                         f"on mail: {inactive}", ranges, rule.ref("State"), rule.ref("Mode"),
                         key=rule.display_name)
            continue
        checked = [classify_range(text, ctx.gateway) for text in rule.SenderIpRanges]
        if all(v.ok for v in checked):
            yield result(Status.PASS, resource,
                         f"all {len(checked)} sender IP ranges of its SCL -1 lie within "
                         f"{ctx.gateway.names}'s published ranges", ranges, key=rule.display_name)
            continue
        verdict = _Verdict()
        keep = [v.text for v in checked if v.ok] or gateway_ranges(ctx.gateway)
        fix = (f"Set-TransportRule -Identity {ps_literal(rule.display_name)} -SenderIpRanges "
               + ",".join(keep))
        for status, severity, text in (_range_finding(v, ctx) for v in checked if not v.ok):
            verdict.add(status, text, severity=severity)
        yield result(verdict.status, resource,
                     f"sets SCL -1 for sender IP ranges beyond {ctx.gateway.names}'s published "
                     f"ones, so mail from them skips spam filtering: {verdict.message()}",
                     ranges, scl, severity=verdict.severity, key=rule.display_name, fix=fix)
    if not examined:
        yield result(Status.PASS, "transport rules",
                     f"none of the {len(rules)} transport rules sets SCL -1 for sender IP ranges",
                     key="none", summary=True)


CHECKS = (
    scl_bypass_rules,
    external_copy_rules,
    header_trust_rules,
    bypass_header_rules,
    lockdown_rule_integrity,
    divert_or_hide_rules,
    scl_rule_ranges,
)
