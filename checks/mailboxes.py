"""Bypass vector: mailboxes that send the mail they receive out of the organisation, and inbox
rules that hide mail from their owner (the traces of an account takeover)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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
from auditor.models import EvidenceRef, InboxRule, Mailbox
from auditor.values import address_domain, smtp_address

from .policies import (
    MITRE_FORWARDING_RULE,
    MS_FORWARDING,
    MS_REMOTE_DOMAINS,
    OUTBOUND_POLICIES,
    REMOTE_DOMAINS,
    ForwardingGate,
    forwarding_gate,
)

MS_CONFIGURE_FORWARDING = Reference(
    "Microsoft: Configure email forwarding for a mailbox (ForwardingSmtpAddress, ForwardingAddress)",
    "https://learn.microsoft.com/en-us/exchange/recipients-in-exchange-online/manage-user-mailboxes/configure-email-forwarding",
)
MS_SET_MAILBOX = Reference(
    "Microsoft: Set-Mailbox (ForwardingAddress takes precedence over ForwardingSmtpAddress)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-mailbox",
)
MS_COMPROMISED_ACCOUNT = Reference(
    "Microsoft: Responding to a compromised email account (forwarding and inbox rules)",
    "https://learn.microsoft.com/en-us/defender-office-365/responding-to-a-compromised-email-account",
)
MS_GET_INBOX_RULE = Reference(
    "Microsoft: Get-InboxRule (-Mailbox, -IncludeHidden)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/get-inboxrule",
)
MITRE_HIDING_RULES = Reference(
    "MITRE ATT&CK T1564.008: Hide Artifacts: Email Hiding Rules",
    "https://attack.mitre.org/techniques/T1564/008/",
)

MAILBOXES = "Get-Mailbox"
INBOX_RULES = "Get-InboxRule"
EWS_INBOX_RULES = "Mailbox-InboxRules"  # the same rules read over EWS or Graph (auditor/mailbox.py)
# Rows of Mailbox-InboxRules say which API read them; files written before Graph support do
# not, and were read over EWS.
THROUGH_GRAPH = "graph"
HIDDEN_RULES = ("hidden inbox rules (rules hidden from Outlook and OWA, for instance by clearing "
                "PR_RULE_MSG_PROVIDER, a known attacker trick)")
LIST_HIDDEN = "Get-InboxRule -Mailbox <mailbox> -IncludeHidden lists them"
ACCEPTED_DOMAINS = "Get-AcceptedDomain"

# Folders a user rarely opens, where hiding rules park what the owner must not see
# (threat catalogue D5; MITRE T1564.008). Deleted Items counts as deleting.
OBSCURE_FOLDERS = frozenset({"rss feeds", "rss subscriptions", "archive", "conversation history",
                             "junk email", "junk e-mail", "junk"})
DELETED_FOLDERS = frozenset({"deleted items"})
# Words that mark mail an attacker wants hidden from the owner: security notices (sign-in,
# password, phishing, the gateway's quarantine digests) and payment fraud (invoices, bank
# details). Threat catalogue D5 and the BEC rules described for T1564.008. Whole words, with
# simple plural or past endings.
HIDING_KEYWORDS = (
    "password", "passcode", "mfa", "2fa", "multi-factor", "verification", "verify", "security",
    "secure", "phish", "phishing", "spam", "hack", "hacked", "compromise", "compromised",
    "suspicious", "unusual", "sign-in", "signin", "login", "alert", "quarantine", "malware",
    "virus", "helpdesk", "help desk", "fraud", "mimecast", "proofpoint", "barracuda", "ironport",
    "invoice", "payment", "remittance", "wire", "transfer", "bank", "iban", "swift", "ach",
    "payroll", "direct deposit",
)
_KEYWORD = re.compile(r"\b(" + "|".join(re.escape(k) for k in HIDING_KEYWORDS) + r")(?:s|es|ed)?\b",
                      re.IGNORECASE)
_SMTP_IN_BRACKETS = re.compile(r"\[smtp:([^\]\s]+)\]", re.IGNORECASE)
_EX_IN_BRACKETS = re.compile(r"\[ex:([^\]]+)\]", re.IGNORECASE)
# A rule name with no letter or digit: ".", "..", "-", blank. Attackers pick these so the rule
# is easy to miss in Outlook's list.
_NAMELESS = re.compile(r"^[\W_]*$")
CONDITION_PROPERTIES = ("SubjectContainsWords", "BodyContainsWords", "SubjectOrBodyContainsWords",
                        "FromAddressContainsWords", "HeaderContainsWords", "From")
FORWARD_PROPERTIES = ("ForwardTo", "RedirectTo", "ForwardAsAttachmentTo")


class MailboxDirectory:
    """The exported mailboxes, found by the identities a rule or a forwarding setting may use.

    Only values unique among all recipients count (a display name does not: a mail contact for
    someone's private address usually carries their display name), so a match is proof the
    target is inside the organisation."""

    def __init__(self, mailboxes: Iterable[Mailbox]) -> None:
        self._by_key: dict[str, Mailbox] = {}
        for mailbox in mailboxes:
            for key in (mailbox.Identity, mailbox.Name, mailbox.Alias, mailbox.Guid,
                        mailbox.ExternalDirectoryObjectId, mailbox.DistinguishedName,
                        mailbox.LegacyExchangeDN, mailbox.UserPrincipalName,
                        mailbox.PrimarySmtpAddress,
                        *(smtp_address(a) for a in mailbox.EmailAddresses
                          if a.lower().startswith("smtp:"))):
                if key:
                    self._by_key.setdefault(key.strip().lower(), mailbox)

    def find(self, identity: str) -> Mailbox | None:
        text = identity.strip().lower()
        return self._by_key.get(text) or self._by_key.get(text.rsplit("/", 1)[-1])


def mailbox_label(mailbox: Mailbox) -> str:
    return (mailbox.UserPrincipalName or mailbox.PrimarySmtpAddress or mailbox.Identity
            or mailbox.display_name)


@dataclass(frozen=True)
class Target:
    """One forwarding target, as far as the evidence resolves it."""

    raw: str
    address: str | None  # an SMTP address, when the value holds one
    mailbox: Mailbox | None  # an exported mailbox it names, when it names one


def resolve_target(value: str, directory: MailboxDirectory) -> Target:
    """Read ``"Name" [SMTP:a@b]``, ``"Name" [EX:/o=...]`` (a directory recipient, by its
    LegacyExchangeDN), ``smtp:a@b``, ``a@b``, or a recipient identity (ForwardingAddress)."""
    if match := _SMTP_IN_BRACKETS.search(value):
        address = smtp_address(match.group(1))
        return Target(value, address, directory.find(address) if address else None)
    if match := _EX_IN_BRACKETS.search(value):
        return Target(value, None, directory.find(match.group(1)))
    address = smtp_address(value)
    return Target(value, address, directory.find(address or value))


def _gate_text(gate: ForwardingGate) -> str:
    if gate.blocked:
        return (f"Exchange Online blocks it today: {gate.reason}; the setting is still a sign of a "
                "compromised account or of intent, and works as soon as the block is lifted")
    return gate.reason


@check(
    id="MBX-001",
    title="A mailbox forwards its mail outside the organisation",
    severity=Severity.HIGH,
    rationale=(
        "ForwardingSmtpAddress and ForwardingAddress send every message a mailbox receives to "
        "another recipient, with or without a copy left in the mailbox "
        "(DeliverToMailboxAndForward). Pointed outside the organisation, this is a standing "
        "copy of the mailbox that neither its owner nor the gateway notices; setting it takes "
        "an administrator or a compromised account with that right."
    ),
    remediation=Remediation(
        "Remove forwarding the business has not approved, find out who set it (audit log: "
        "Set-Mailbox), and block external automatic forwarding in the outbound spam policy and "
        "the Default remote domain (POL-005).",
        "Set-Mailbox -Identity \"<mailbox>\" -ForwardingSmtpAddress $null -ForwardingAddress $null "
        "-DeliverToMailboxAndForward $false",
    ),
    requires=(MAILBOXES, ACCEPTED_DOMAINS),
    uses=(OUTBOUND_POLICIES, REMOTE_DOMAINS),
    references=(MS_CONFIGURE_FORWARDING, MS_SET_MAILBOX, MS_FORWARDING, MS_REMOTE_DOMAINS,
                MITRE_FORWARDING_RULE),
    mappings=Mappings(attack=("T1114.003",), cis=("6.2.1",)),
    legitimate=(
        "Forwarding to mailboxes and addresses inside the accepted domains. External forwarding "
        "that the outbound spam policy or remote domain blocks is only a medium warning."
    ),
)
def mailbox_forwarding(ctx: CheckContext) -> Iterator[Result]:
    mailboxes = ctx.objects(MAILBOXES, Mailbox)
    if not mailboxes:
        yield result(Status.NOT_EVALUATED, "mailboxes",
                     "not evaluated: the export holds no mailboxes", key="none")
        return
    directory = MailboxDirectory(mailboxes)
    forwarding = 0
    for mailbox in mailboxes:
        if not ((mailbox.ForwardingAddress or "").strip() or (mailbox.ForwardingSmtpAddress or "").strip()):
            continue
        forwarding += 1
        yield _mailbox_result(ctx, mailbox, directory)
    if not forwarding:
        yield result(Status.PASS, "mailboxes",
                     f"none of the {len(mailboxes)} mailboxes has ForwardingAddress or "
                     "ForwardingSmtpAddress set", EvidenceRef(file=f"exo/{MAILBOXES}.json", pointer="",
                                                             observed=len(mailboxes)),
                     key="none", summary=True)


def _mailbox_result(ctx: CheckContext, mailbox: Mailbox, directory: MailboxDirectory) -> Result:
    label = mailbox_label(mailbox)
    resource = f"mailbox {label}"
    # Set-Mailbox: with both set, ForwardingSmtpAddress is ignored.
    prop = "ForwardingAddress" if (mailbox.ForwardingAddress or "").strip() else "ForwardingSmtpAddress"
    value = str(getattr(mailbox, prop)).strip()
    ignored = (f" (ForwardingSmtpAddress {mailbox.ForwardingSmtpAddress} is ignored while "
               "ForwardingAddress is set)") if prop == "ForwardingAddress" and (
                   mailbox.ForwardingSmtpAddress or "").strip() else ""
    how = ("keeps a copy and forwards" if mailbox.DeliverToMailboxAndForward
           else "diverts (the mailbox keeps no copy)")
    evidence = [mailbox.ref(prop), mailbox.ref("DeliverToMailboxAndForward")]
    fix = (f"Set-Mailbox -Identity {ps_literal(label)} -{prop} $null "
           "-DeliverToMailboxAndForward $false")
    target = resolve_target(value, directory)
    if target.mailbox is not None or (target.address and ctx.is_internal_address(target.address)):
        where = mailbox_label(target.mailbox) if target.mailbox else target.address
        return result(Status.PASS, resource, f"{how} mail to {where}, inside the organisation{ignored}",
                      *evidence, key=label)
    if target.address is None:
        if prop == "ForwardingSmtpAddress":
            return result(Status.WARN, resource,
                          f"ForwardingSmtpAddress {value!r} could not be read as an address; check it",
                          *evidence, severity=Severity.MEDIUM, key=label)
        return result(Status.WARN, resource,
                      f"{how} mail to the recipient {value!r}, which is not one of the exported "
                      "mailboxes: most likely a mail contact or mail user, whose outside address "
                      f"the evidence does not show (Get-Recipient {ps_literal(value)} | Format-List "
                      f"PrimarySmtpAddress,RecipientTypeDetails){ignored}", *evidence,
                      severity=Severity.MEDIUM, key=label, fix=fix)
    gate = forwarding_gate(ctx, address_domain(target.address))
    return result(Status.WARN if gate.blocked else Status.FAIL, resource,
                  f"{how} mail to {target.address}, outside the organisation{ignored}; "
                  f"{_gate_text(gate)}", *evidence, *gate.evidence,
                  severity=Severity.MEDIUM if gate.blocked else Severity.HIGH, key=label, fix=fix)


def _folder(rule: InboxRule) -> str:
    """The last segment of MoveToFolder (``alias:\\RSS Feeds``, ``Inbox\\Archive``, ``Junk``)."""
    return re.split(r"[\\/]", (rule.MoveToFolder or "").strip())[-1].strip().lower()


def _matched_keywords(rule: InboxRule) -> list[tuple[str, str]]:
    """(property, condition value) pairs whose words mark security or payment mail."""
    return [(prop, value) for prop in CONDITION_PROPERTIES for value in getattr(rule, prop)
            if _KEYWORD.search(value)]


@dataclass(frozen=True)
class RuleFindings:
    """What makes one inbox rule suspicious, with the evidence for each part."""

    parts: list[str]
    evidence: list[EvidenceRef]
    external_gates: list[ForwardingGate]
    unresolved: bool
    hides: bool
    nameless: bool


def _analyse_rule(ctx: CheckContext, rule: InboxRule, directory: MailboxDirectory) -> RuleFindings:
    parts: list[str] = []
    evidence: list[EvidenceRef] = []
    gates: list[ForwardingGate] = []
    unresolved = False
    for prop in FORWARD_PROPERTIES:
        for value in getattr(rule, prop):
            target = resolve_target(value, directory)
            if target.mailbox is not None or (target.address and ctx.is_internal_address(target.address)):
                continue
            evidence.append(rule.ref_item(prop, value))
            if target.address is None:
                unresolved = True
                parts.append(f"{prop} {value!r}, a recipient the evidence does not resolve "
                             "(a mail contact would be outside)")
                continue
            gate = forwarding_gate(ctx, address_domain(target.address))
            gates.append(gate)
            evidence.extend(gate.evidence)
            parts.append(f"{prop} {target.address}, outside the organisation ({_gate_text(gate)})")
    folder = _folder(rule)
    deletes = bool(rule.DeleteMessage or rule.SoftDeleteMessage) or folder in DELETED_FOLDERS
    obscure = folder in OBSCURE_FOLDERS
    matched = _matched_keywords(rule)
    unconditional = not any(getattr(rule, prop) for prop in CONDITION_PROPERTIES)
    hides = (deletes or obscure) and bool(matched)
    if hides:
        action = "deletes" if deletes else f"moves to '{rule.MoveToFolder}'"
        words = ", ".join(sorted({value for _, value in matched}))
        read = " and marks as read" if rule.MarkAsRead else ""
        parts.append(f"{action}{read} messages about {words}")
        evidence.append(rule.ref("DeleteMessage" if rule.DeleteMessage else
                                 "SoftDeleteMessage" if rule.SoftDeleteMessage else "MoveToFolder"))
        evidence.extend(rule.ref_item(prop, value) for prop, value in matched)
    elif obscure and unconditional:
        hides = True
        parts.append(f"moves every message to '{rule.MoveToFolder}'"
                     + (" and marks it as read" if rule.MarkAsRead else ""))
        evidence.append(rule.ref("MoveToFolder"))
    nameless = bool(_NAMELESS.match(rule.Name or ""))
    if nameless:
        parts.append(f"its name {rule.Name or ''!r} has no letter or digit, as attackers choose to "
                     "make a rule easy to miss")
        evidence.append(rule.ref("Name"))
    return RuleFindings(parts, evidence, gates, unresolved, hides, nameless)


@check(
    id="MBX-002",
    title="An inbox rule forwards mail outside the organisation or hides it from its owner",
    severity=Severity.HIGH,
    rationale=(
        "After taking over a mailbox, attackers create inbox rules that forward or redirect mail "
        "to an address of theirs, and rules that delete or bury in rarely opened folders (RSS "
        "Feeds, Conversation History, Archive) the messages that would give them away: security "
        "alerts, the gateway's quarantine notices, replies about invoices and payments they are "
        "diverting. Such rules act inside the mailbox, after every filter, and often carry "
        "names like '.' that are easy to overlook."
    ),
    remediation=Remediation(
        "Disable the rule (keep it for the investigation), reset the owner's credentials and "
        "sessions, review sign-ins and the audit log (New-InboxRule, Set-InboxRule), and block "
        "external automatic forwarding (POL-005).",
        "Get-InboxRule -Mailbox \"<mailbox>\" -IncludeHidden | Format-List Name,Enabled,Description\n"
        "Disable-InboxRule -Identity \"<rule identity>\" -Confirm:$false",
    ),
    requires=(ACCEPTED_DOMAINS,),
    uses=(INBOX_RULES, EWS_INBOX_RULES, MAILBOXES, OUTBOUND_POLICIES, REMOTE_DOMAINS),
    references=(MS_COMPROMISED_ACCOUNT, MS_GET_INBOX_RULE, MS_FORWARDING, MITRE_FORWARDING_RULE,
                MITRE_HIDING_RULES),
    mappings=Mappings(attack=("T1114.003", "T1564.008"), cis=("6.2.1",)),
    legitimate=(
        "Forwarding to colleagues inside the organisation, filing rules that move mail to the "
        "user's own folders, deleting newsletters or named senders, and moving security or payment "
        "mail to a folder that is not one of the rarely opened ones (RSS Feeds, RSS Subscriptions, "
        "Archive, Conversation History, Junk, Deleted Items)."
    ),
)
def inbox_rules(ctx: CheckContext) -> Iterator[Result]:
    # Either source will do: Get-InboxRule (admin API or script; Global Reader cannot run it)
    # or the rules collect --mailboxes read over EWS. Neither is never a pass.
    if not ctx.available(INBOX_RULES) and not ctx.available(EWS_INBOX_RULES):
        reasons = "; ".join(f"{key} is {ctx.evidence_state(key)}" for key in (INBOX_RULES, EWS_INBOX_RULES))
        yield result(Status.NOT_EVALUATED, "inbox rules",
                     f"not evaluated: no inbox rules were collected ({reasons})",
                     EvidenceRef(file=f"exo/{INBOX_RULES}.json", pointer="", observed="missing"),
                     key="evidence")
        return
    rules = ctx.objects(INBOX_RULES, InboxRule) if ctx.available(INBOX_RULES) else ()
    mailboxes = ctx.objects(MAILBOXES, Mailbox) if ctx.available(MAILBOXES) else ()
    directory = MailboxDirectory(mailboxes)
    ews_rules = _ews_rules_of_other_mailboxes(ctx, rules, directory)
    rules += ews_rules
    owners = {(r.MailboxOwnerId or "").lower() for r in rules if r.MailboxOwnerId}
    through_graph = sum(1 for r in ews_rules if read_through_graph(r))
    read_by = ([f"{len(ews_rules) - through_graph} of them read over EWS"] if len(ews_rules) > through_graph
               else []) + ([f"{through_graph} through Microsoft Graph"] if through_graph else [])
    graph_read = _mailboxes_read_through_graph(ctx)
    graph_note = (f"; Microsoft Graph, which read the rules of {graph_read} mailboxes, does not return "
                  f"{HIDDEN_RULES}: {LIST_HIDDEN}" if graph_read else "")
    coverage = (f"the export holds {len(rules)} inbox rules of {len(owners)} mailboxes"
                + (f" ({', '.join(read_by)})" if read_by else "")
                + (f" (Get-Mailbox lists {len(mailboxes)})" if mailboxes else "")
                + "; only those were examined: mailboxes whose rules were not exported, and "
                "hidden rules (Get-InboxRule -IncludeHidden), were not" + graph_note)
    read_empty = _mailboxes_read_without_rules(ctx)
    if not rules and read_empty:
        yield result(Status.PASS, "inbox rules",
                     f"none of the {read_empty} mailboxes collect --mailboxes read has an inbox "
                     "rule" + (f" (Get-Mailbox lists {len(mailboxes)})" if mailboxes else "")
                     + "; mailboxes not read, and hidden rules, were not examined" + graph_note,
                     EvidenceRef(file=f"mailbox/{EWS_INBOX_RULES}.json", pointer="", observed=0),
                     key="none", summary=True)
        return
    if not rules:
        yield result(Status.NOT_EVALUATED, "inbox rules",
                     "not evaluated: the export holds no inbox rules at all; Get-InboxRule reads "
                     "one mailbox at a time, so the export most likely did not cover the mailboxes"
                     + graph_note,
                     EvidenceRef(file=f"exo/{INBOX_RULES}.json", pointer="", observed=0), key="none")
        return
    flagged = 0
    for rule in rules:
        found = _analyse_rule(ctx, rule, directory)
        if not found.parts:
            continue
        flagged += 1
        yield _rule_result(rule, found, directory)
    if not flagged:
        yield result(Status.PASS, "inbox rules",
                     f"no inbox rule forwards outside the organisation or hides security or payment "
                     f"mail; {coverage}", EvidenceRef(file=f"exo/{INBOX_RULES}.json", pointer="",
                                                      observed=len(rules)),
                     key="none", summary=True)


def _ews_rules_of_other_mailboxes(ctx: CheckContext, rules: tuple[InboxRule, ...],
                                  directory: MailboxDirectory) -> tuple[InboxRule, ...]:
    """Rules read over EWS (Mailbox-InboxRules, stored with Get-InboxRule's property names) of
    the mailboxes whose rules Get-InboxRule did not return, so no rule is reported twice."""
    if not ctx.available(EWS_INBOX_RULES):
        return ()

    def owner(rule: InboxRule) -> str:
        text = rule.MailboxOwnerId or (rule.Identity or "").split("\\", 1)[0]
        found = directory.find(text) if text else None
        return (mailbox_label(found) if found else text).lower()

    exported = {owner(rule) for rule in rules}
    # Rows with a CollectionState are mailboxes EWS could not read, not rules.
    return tuple(r for r in ctx.objects(EWS_INBOX_RULES, InboxRule)
                 if r.Name is not None and owner(r) not in exported)


def read_through_graph(rule: InboxRule) -> bool:
    """Whether collect --mailboxes read this row through Microsoft Graph (not EWS)."""
    return str(rule.raw.get("CollectedThrough") or "").lower() == THROUGH_GRAPH


def _mailboxes_read_without_rules(ctx: CheckContext) -> int:
    """How many mailboxes collect --mailboxes read and found without inbox rules (each has a
    row saying so; a mailbox it could not read has a row with another state)."""
    if not ctx.available(EWS_INBOX_RULES):
        return 0
    return len({str(r.raw.get("Mailbox") or "").lower() for r in ctx.objects(EWS_INBOX_RULES, InboxRule)
                if r.Name is None and r.raw.get("CollectionState") == "empty"})


def _mailboxes_read_through_graph(ctx: CheckContext) -> int:
    """How many mailboxes' rules Graph read: their rules' rows, and the row of each mailbox
    read without rules (a mailbox Graph could not read does not count)."""
    if not ctx.available(EWS_INBOX_RULES):
        return 0
    return len({str(r.raw.get("Mailbox") or r.MailboxOwnerId or "").lower()
                for r in ctx.objects(EWS_INBOX_RULES, InboxRule)
                if read_through_graph(r) and str(r.raw.get("CollectionState") or "empty") == "empty"})


def _rule_result(rule: InboxRule, found: RuleFindings, directory: MailboxDirectory) -> Result:
    owner = rule.MailboxOwnerId or (rule.Identity or "").split("\\", 1)[0] or "unknown"
    owner_mailbox = directory.find(owner)
    # The owner id is a GUID: name the mailbox by its address when the export resolves it.
    shown = mailbox_label(owner_mailbox) if owner_mailbox else owner
    resource = f"inbox rule '{rule.Name or ''}' of mailbox {shown}"
    key = rule.Identity or f"{owner}\\{rule.Name}"
    fix = (f"Disable-InboxRule -Identity {ps_literal(rule.Identity)} -Confirm:$false" if rule.Identity
           else f"Disable-InboxRule -Mailbox {ps_literal(owner)} -Identity {ps_literal(rule.Name or '')} "
                "-Confirm:$false")
    whose = f"in the mailbox of {mailbox_label(owner_mailbox)}: " if owner_mailbox else ""
    message = whose + "; ".join(found.parts)
    if read_through_graph(rule):
        message += (f" (read through Microsoft Graph, which does not return {HIDDEN_RULES}: "
                    f"Get-InboxRule -Mailbox {ps_literal(shown)} -IncludeHidden may list more in this "
                    "mailbox)")
    if rule.Enabled is False:
        return result(Status.WARN, resource, f"disabled, so it does nothing now: {message}",
                      rule.ref("Enabled"), *found.evidence, severity=Severity.LOW, key=key, fix=fix)
    # Forwarding that Exchange Online lets out is high on its own; any two signs together are
    # the pattern of an account takeover.
    leaves = any(not gate.blocked for gate in found.external_gates)
    signs = sum((bool(found.external_gates), found.hides, found.nameless))
    if leaves or signs >= 2:
        severity = Severity.HIGH
    elif found.external_gates or found.hides or found.unresolved:
        severity = Severity.MEDIUM
    else:
        severity = Severity.LOW
    status = Status.FAIL if found.external_gates or found.hides else Status.WARN
    return result(status, resource, message, *found.evidence, severity=severity, key=key, fix=fix)


CHECKS = (
    mailbox_forwarding,
    inbox_rules,
)
