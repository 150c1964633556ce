"""Bypass vectors: anti-spam policies, allow lists and advanced delivery overrides that exempt
senders from filtering, and the organisation-wide settings that let copies of mail leave
(auto-forwarding, journaling)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any, TypeVar

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
from auditor.errors import ProfileError
from auditor.models import (
    EvidenceRef,
    HostedConnectionFilterPolicy,
    HostedContentFilterPolicy,
    HostedOutboundSpamFilterPolicy,
    JournalRule,
    Mailbox,
    OutboundConnector,
    PhishSimOverridePolicy,
    PhishSimOverrideRule,
    RemoteDomain,
    SecOpsOverridePolicy,
    SecOpsOverrideRule,
    TenantAllowBlockListItem,
    TenantAllowBlockListSpoofItem,
    TransportConfig,
)
from auditor.netutil import IpRange, IpSet
from auditor.values import address_domain, sender_domain_entry, smtp_address

from ._analysis import range_width_severity, user_documented

MS_CONNECTION_FILTER = Reference(
    "Microsoft: Configure connection filtering",
    "https://learn.microsoft.com/en-us/defender-office-365/connection-filter-policies-configure",
)
MS_EFC = Reference(
    "Microsoft: Enhanced Filtering for Connectors",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/use-connectors-to-configure-mail-flow/enhanced-filtering-for-connectors",
)


@check(
    id="POL-001",
    title="The connection filter's IP allow list holds addresses that are not the gateway's",
    severity=Severity.HIGH,
    rationale=(
        "Mail from an address on the connection filter's IP allow list skips spam filtering "
        "and sender authentication (SPF, DKIM, DMARC). Some gateway vendors ask for their own "
        "ranges to be listed; any other entry lets whoever sends from it past Exchange "
        "Online's filtering, and a wide entry (a /8, 0.0.0.0/1) exempts much of the Internet."
    ),
    remediation=Remediation(
        "Remove every entry that is not the gateway's published delivery range, and prefer "
        "Enhanced Filtering for Connectors to allow-listing the gateway at all.",
        "Set-HostedConnectionFilterPolicy -Identity Default "
        '-IPAllowList @{Remove="<range>"}\n'
        "# or clear it: Set-HostedConnectionFilterPolicy -Identity Default -IPAllowList $null",
    ),
    requires=("Get-HostedConnectionFilterPolicy",),
    references=(MS_CONNECTION_FILTER, MS_EFC),
    mappings=Mappings(attack=("T1685", "T1562.001"), cis=("2.1.12",),
                      scuba=("MS.SECURITYSUITE.8.1v1", "MS.EXO.12.1v1")),
    legitimate=(
        "Entries that are the gateway's published delivery ranges (some vendors ask for them), "
        "and an empty list."
    ),
)
def connection_filter_allow_list(ctx: CheckContext) -> Iterator[Result]:
    policies = ctx.connection_filter_policies
    for policy in policies:
        name = policy.display_name
        resource = f"connection filter policy {name}"
        bad = 0
        for text in policy.IPAllowList:
            try:
                rng = IpRange.parse(text)
            except ValueError as exc:
                bad += 1
                yield result(Status.WARN, f"{resource}: {text}",
                             f"allow-list entry {text!r} could not be read as an address or "
                             f"range ({exc}); check it in the admin centre",
                             policy.ref_item("IPAllowList", text), severity=Severity.MEDIUM,
                             key=f"{name}:{text}")
                continue
            if ctx.gateway.covers(rng):
                continue
            bad += 1
            owner = ctx.gateway.owner(rng)
            entry = policy.ref_item("IPAllowList", text)
            fix = (f"Set-HostedConnectionFilterPolicy -Identity {ps_literal(name)} "
                   f"-IPAllowList @{{Remove={ps_literal(text)}}}")
            if owner is not None and owner.deployment == "exchange-online":
                yield result(Status.FAIL, f"{resource}: {text}",
                             f"{text} is Exchange Online's own sending range: every Microsoft 365 "
                             "tenant's mail from it skips filtering", entry,
                             severity=Severity.CRITICAL, key=f"{name}:{text}", fix=fix)
            elif owner is not None:
                active = ctx.gateway.names if ctx.gateway.detected else "no gateway detected"
                yield result(Status.FAIL, f"{resource}: {text}",
                             f"{text} belongs to {owner.name}, not the gateway in use ({active}); "
                             "a stale entry from a former gateway, or a sign of tampering",
                             entry, severity=max(Severity.HIGH, range_width_severity(rng),
                                                 key=lambda s: s.rank), key=f"{name}:{text}",
                             fix=fix)
            else:
                yield result(Status.FAIL, f"{resource}: {text}",
                             f"{text} (/{rng.prefix_len}, "
                             f"{rng.size} addresses) belongs to no known gateway: mail from it "
                             "skips spam filtering and sender authentication",
                             entry, severity=range_width_severity(rng), key=f"{name}:{text}", fix=fix)
        if not bad:
            if policy.IPAllowList:
                message = (f"every allow-list entry is {ctx.gateway.names}'s published range "
                           "(vendor-recommended, but Enhanced Filtering is Microsoft's preferred "
                           "alternative)")
            else:
                message = "the IP allow list is empty"
            yield result(Status.PASS, resource, message, policy.ref("IPAllowList"), key=name)
    if not policies:
        yield result(Status.NOT_EVALUATED, "connection filter policies",
                     "not evaluated: the export holds no connection filter policy (every tenant "
                     "has a Default one, so the export is incomplete)", key="none")


MS_ANTI_SPAM = Reference(
    "Microsoft: Configure anti-spam policies",
    "https://learn.microsoft.com/en-us/defender-office-365/anti-spam-policies-configure",
)
MS_ALLOWLISTS = Reference(
    "Microsoft: Create sender allowlists (allowed sender and domain lists are the least desirable option)",
    "https://learn.microsoft.com/en-us/defender-office-365/create-safe-sender-lists-in-office-365",
)
MS_TABL = Reference(
    "Microsoft: Manage allows and blocks in the Tenant Allow/Block List",
    "https://learn.microsoft.com/en-us/defender-office-365/tenant-allow-block-list-about",
)
MS_TABL_EMAIL = Reference(
    "Microsoft: Allow or block email (domains, addresses, spoofed senders) in the Tenant Allow/Block List",
    "https://learn.microsoft.com/en-us/defender-office-365/tenant-allow-block-list-email-spoof-configure",
)
MS_NEW_TABL = Reference(
    "Microsoft: New-TenantAllowBlockListItems (ExpirationDate, NoExpiration, RemoveAfter)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-tenantallowblocklistitems",
)
MS_FORWARDING = Reference(
    "Microsoft: Control automatic external email forwarding in Microsoft 365",
    "https://learn.microsoft.com/en-us/defender-office-365/outbound-spam-policies-external-email-forwarding",
)
MS_OUTBOUND_POLICY = Reference(
    "Microsoft: Set-HostedOutboundSpamFilterPolicy (AutoForwardingMode)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-hostedoutboundspamfilterpolicy",
)
MS_REMOTE_DOMAINS = Reference(
    "Microsoft: Remote domains in Exchange Online (automatic forwards)",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/remote-domains/remote-domains",
)
MS_NEW_JOURNAL_RULE = Reference(
    "Microsoft: New-JournalRule",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-journalrule",
)
MS_TRANSPORT_CONFIG = Reference(
    "Microsoft: Set-TransportConfig (JournalingReportNdrTo)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-transportconfig",
)
MIMECAST_JOURNALING = Reference(
    "Mimecast: Configuring Microsoft 365 Journaling (journaling@journal.<domain> and a send connector)",
    "https://mimecastsupport.zendesk.com/hc/en-us/articles/34000388820627-Email-Security-Cloud-Gateway-Configuring-Microsoft-365-Journaling",
)
CLOUDFLARE_JOURNALING = Reference(
    "Cloudflare Email Security: Office 365 journaling setup",
    "https://developers.cloudflare.com/email-security/deployment/api/setup/office365-journaling/",
)
MITRE_FORWARDING_RULE = Reference(
    "MITRE ATT&CK T1114.003: Email Collection: Email Forwarding Rule",
    "https://attack.mitre.org/techniques/T1114/003/",
)

OUTBOUND_POLICIES = "Get-HostedOutboundSpamFilterPolicy"
REMOTE_DOMAINS = "Get-RemoteDomain"
ACCEPTED_DOMAINS = "Get-AcceptedDomain"
SPOOF_ITEMS = "Get-TenantAllowBlockListSpoofItems"
# AutoForwardingMode values that stop external automatic forwarding. Microsoft documents that
# "Automatic - System-controlled" now means Off in every organisation (outbound-spam-policies-
# external-email-forwarding); the cmdlet reference still hedges for tenants that used it in 2021.
FORWARDING_BLOCKED = ("off", "automatic")

# Consumer mailbox providers: anyone can open an account at these domains, so an allow entry for
# one lets anybody in. Each is listed in data/free.txt of willwhite/freemail
# (https://github.com/willwhite/freemail, commit 5d69d4e, 2020-07-03); only the largest are kept.
FREEMAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr",
    "live.com", "live.co.uk", "msn.com", "outlook.de", "yahoo.com", "yahoo.co.uk", "ymail.com",
    "aol.com", "icloud.com", "me.com", "mac.com", "protonmail.com", "gmx.com", "gmx.de", "gmx.net",
    "web.de", "mail.com", "yandex.ru", "yandex.com", "mail.ru", "zoho.com", "fastmail.com",
    "qq.com", "163.com", "126.com", "orange.fr", "free.fr",
})


def _policy_scope(is_default: bool | None, kind: str) -> str:
    """Whom a policy applies to, as far as the evidence says (policy rules are not collected)."""
    if is_default:
        return f"the default {kind} policy applies to everyone no custom policy covers"
    return (f"a custom {kind} policy applies to the recipients its rule names; rules are not in the "
            "evidence, so it is judged as applied")


def _is_own_domain(ctx: CheckContext, domain: str) -> bool:
    return ctx.available(ACCEPTED_DOMAINS) and ctx.is_internal_address(f"postmaster@{domain}")


@check(
    id="POL-002",
    title="Microsoft's safe list is switched on in the connection filter",
    severity=Severity.MEDIUM,
    rationale=(
        "With EnableSafeList on, mail from the senders on Microsoft's dynamic safe list (third-"
        "party lists of 'known good' sending infrastructure) skips spam filtering. Whoever can "
        "send from that infrastructure, a compromised account at a large provider included, is "
        "exempt. The list is not under the organisation's control, and it is off by default."
    ),
    remediation=Remediation(
        "Switch the safe list off; if a legitimate sender is misjudged, submit its mail to "
        "Microsoft or add a time-limited Tenant Allow/Block List entry.",
        "Set-HostedConnectionFilterPolicy -Identity Default -EnableSafeList $false",
    ),
    requires=("Get-HostedConnectionFilterPolicy",),
    references=(MS_CONNECTION_FILTER, MS_ALLOWLISTS),
    mappings=Mappings(attack=("T1685", "T1562.001"), cis=("2.1.13",),
                      scuba=("MS.SECURITYSUITE.8.2v1", "MS.EXO.12.2v1")),
    legitimate="EnableSafeList off, Microsoft's default.",
)
def connection_filter_safe_list(ctx: CheckContext) -> Iterator[Result]:
    policies = ctx.objects("Get-HostedConnectionFilterPolicy", HostedConnectionFilterPolicy)
    for policy in policies:
        name = policy.display_name
        resource = f"connection filter policy {name}"
        if policy.EnableSafeList is None:
            yield result(Status.NOT_EVALUATED, resource,
                         "not evaluated: the export does not contain EnableSafeList",
                         policy.ref("EnableSafeList"), key=name)
        elif policy.EnableSafeList:
            yield result(Status.FAIL, resource,
                         "EnableSafeList is True: mail from Microsoft's safe list of third-party "
                         "senders skips spam filtering", policy.ref("EnableSafeList"), key=name,
                         fix=f"Set-HostedConnectionFilterPolicy -Identity {ps_literal(name)} "
                             "-EnableSafeList $false")
        else:
            yield result(Status.PASS, resource, "the safe list is off (the default)",
                         policy.ref("EnableSafeList"), key=name)
    if not policies:
        yield result(Status.NOT_EVALUATED, "connection filter policies",
                     "not evaluated: the export holds no connection filter policy (every tenant "
                     "has a Default one, so the export is incomplete)", key="none")


def _allowed_sender_risk(ctx: CheckContext, value: str) -> tuple[Severity, str]:
    """How dangerous one allowed sender or domain is, and why."""
    text = value.strip().lower()
    address = smtp_address(text) if "@" in text else None
    domain = address_domain(address) if address else sender_domain_entry(text)[0]
    what = f"the sender {address}" if address else f"the domain {domain}"
    if _is_own_domain(ctx, domain):
        return Severity.HIGH, (
            f"{what} is the organisation's own: such mail skips spam filtering whenever it passes "
            "SPF, DKIM or DMARC (Microsoft's condition since 2022), which every service the "
            "domain's SPF record authorises can achieve (shared gateway or marketing ranges "
            "listed there included); internal mail never needs this entry")
    if address is None and domain in FREEMAIL_DOMAINS:
        return Severity.HIGH, (f"{what} is a free-mail provider: anyone can open an account there "
                               "and have their mail skip spam filtering")
    why = (f"mail claiming {what} skips spam, spoof and phishing filtering and sender "
           "authentication, so whoever forges it is let in")
    if not ctx.available(ACCEPTED_DOMAINS):
        why += (" (accepted domains were not collected: whether it is the organisation's own "
                "domain is unknown)")
    return Severity.MEDIUM, why


@check(
    id="POL-003",
    title="An anti-spam policy lets allowed senders or domains skip filtering",
    severity=Severity.HIGH,
    rationale=(
        "Senders and domains on an anti-spam policy's allowed lists skip spam, spoof and phishing "
        "filtering (all but high-confidence phishing) and sender authentication. An outsider who "
        "forges an allowed sender is let in; a free-mail domain admits anyone with an account; "
        "the organisation's own domain admits anything that passes its SPF. Microsoft calls these "
        "lists the least desirable allowlist and points to the Tenant Allow/Block List instead."
    ),
    remediation=Remediation(
        "Empty AllowedSenderDomains and AllowedSenders. Report misjudged mail to Microsoft as a "
        "false positive, or use a time-limited Tenant Allow/Block List entry.",
        "Set-HostedContentFilterPolicy -Identity Default -AllowedSenderDomains @{Remove=\"<domain>\"}\n"
        "Set-HostedContentFilterPolicy -Identity Default -AllowedSenders @{Remove=\"<address>\"}\n"
        "# or clear both: Set-HostedContentFilterPolicy -Identity Default "
        "-AllowedSenderDomains $null -AllowedSenders $null",
    ),
    requires=("Get-HostedContentFilterPolicy",),
    uses=(ACCEPTED_DOMAINS,),
    references=(MS_ANTI_SPAM, MS_ALLOWLISTS),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1566"), cis=("2.1.14",),
                      scuba=("MS.SECURITYSUITE.6.2v1", "MS.EXO.14.3v2")),
    legitimate=(
        "Policies with empty AllowedSenderDomains and AllowedSenders, Microsoft's default; "
        "blocked senders and domains are not judged."
    ),
)
def anti_spam_allowed_senders(ctx: CheckContext) -> Iterator[Result]:
    policies = ctx.objects("Get-HostedContentFilterPolicy", HostedContentFilterPolicy)
    for policy in policies:
        name = policy.display_name
        scope = _policy_scope(policy.IsDefault, "anti-spam")
        entries = [("AllowedSenderDomains", v) for v in policy.AllowedSenderDomains] + [
            ("AllowedSenders", v) for v in policy.AllowedSenders]
        for prop, value in entries:
            severity, why = _allowed_sender_risk(ctx, value)
            yield result(Status.FAIL, f"anti-spam policy {name}: {value}",
                         f"{prop} lists {value}: {why} ({scope})", policy.ref_item(prop, value),
                         severity=severity, key=f"{name}:{prop}:{value}",
                         fix=f"Set-HostedContentFilterPolicy -Identity {ps_literal(name)} "
                             f"-{prop} @{{Remove={ps_literal(value)}}}")
        if not entries:
            yield result(Status.PASS, f"anti-spam policy {name}",
                         "no allowed senders or sender domains", policy.ref("AllowedSenderDomains"),
                         policy.ref("AllowedSenders"), key=name)
    if not policies:
        yield result(Status.NOT_EVALUATED, "anti-spam policies",
                     "not evaluated: the export holds no anti-spam (content filter) policy (every "
                     "tenant has a Default one, so the export is incomplete)", key="none")


# Each Tenant Allow/Block List export: its evidence key, the -ListType it was read with, a label.
TABL_LISTS: tuple[tuple[str, str, str], ...] = (
    ("Get-TenantAllowBlockListItems-Sender", "Sender", "domains and email addresses"),
    ("Get-TenantAllowBlockListItems-Url", "Url", "URLs"),
    ("Get-TenantAllowBlockListItems-FileHash", "FileHash", "files"),
    ("Get-TenantAllowBlockListItems-IP", "IP", "IP addresses"),
)


def _entries(count: int, kind: str) -> str:
    return f"{count} {kind} entr{'y' if count == 1 else 'ies'}"


def _expiry(item: TenantAllowBlockListItem, ctx: CheckContext) -> tuple[bool | None, str]:
    """(never expires?, how it expires); None when the entry has already expired."""
    if item.ExpirationDate is not None:
        if item.ExpirationDate <= ctx.as_of:
            return None, f"expired on {item.ExpirationDate:%Y-%m-%d}"
        return False, f"expires on {item.ExpirationDate:%Y-%m-%d}"
    if item.RemoveAfter and not item.NoExpiration:
        used = (f"last used {item.LastUsedDate:%Y-%m-%d}" if item.LastUsedDate
                else "not used yet")
        return False, f"is removed {item.RemoveAfter} days after it last matches ({used})"
    return True, "never expires"


def _who(item: TenantAllowBlockListItem) -> str:
    """Who added or changed an entry and why, as far as the export records it."""
    parts = []
    if who := item.ModifiedBy or item.LastModifiedBy:
        parts.append(f"last changed by {who}")
    if item.SubmissionID and item.SubmissionID.strip().lower() != "non-submission":
        parts.append(f"created from admin submission {item.SubmissionID}")
    if item.CreatedDateTime:
        parts.append(f"created {item.CreatedDateTime:%Y-%m-%d}")
    if item.Notes:
        parts.append(f"notes: {item.Notes!r}")
    if item.SysManaged:
        parts.append("system-managed")
    return "; ".join(parts) or "the export does not record who added it"


def _from_submission(item: TenantAllowBlockListItem) -> bool:
    submission = (item.SubmissionID or "").strip().lower()
    return (item.ListSubType or "").lower() == "submission" or submission not in ("", "non-submission")


def _tabl_allow(ctx: CheckContext, item: TenantAllowBlockListItem, list_type: str) -> Result:
    value = item.Value or item.Identity or item.display_name
    resource = f"Tenant Allow/Block List: allow {list_type} {value}"
    key = f"{list_type}:{item.Identity or value}"
    evidence = [item.ref("Action"), item.ref("ExpirationDate")]
    if (item.ListSubType or "").lower() == "advanceddelivery":
        return result(Status.PASS, resource,
                      "a phishing-simulation URL of the advanced delivery policy, Microsoft's "
                      "mechanism for third-party simulations; review it with that policy",
                      item.ref("ListSubType"), key=key)
    never, expiry = _expiry(item, ctx)
    if never is None:
        return result(Status.PASS, resource, f"allow entry that {expiry}: no longer in effect",
                      *evidence, key=key)
    severity = Severity.HIGH if never else Severity.MEDIUM
    why = "mail, links or files it matches skip the verdicts that would have stopped them"
    status = Status.FAIL
    if not never and _from_submission(item):
        # Microsoft's own false-positive process: an allow that removes itself after disuse.
        status, severity = Status.WARN, Severity.LOW
        why += ("; it was created by Microsoft's false-positive submission process and is "
                "removed automatically, so it is listed for review")
    if list_type == "Sender":
        address = smtp_address(value) if "@" in value else None
        domain = address_domain(address) if address else value.strip().lower()
        if _is_own_domain(ctx, domain):
            status, severity = Status.FAIL, Severity.HIGH
            why = "it allows mail claiming the organisation's own domain"
        elif address is None and domain in FREEMAIL_DOMAINS:
            status, severity = Status.FAIL, Severity.HIGH
            why = "it allows a free-mail domain, where anyone can open an account"
    if item.RemoveAfter and item.ExpirationDate is None:
        evidence.append(item.ref("RemoveAfter"))
    evidence.extend(item.ref(prop) for prop in ("ModifiedBy", "LastModifiedBy", "SubmissionID")
                    if getattr(item, prop))
    fix_target = f"-Ids {ps_literal(item.Identity)}" if item.Identity else f"-Entries {ps_literal(value)}"
    return result(status, resource,
                  f"allow entry for {value} that {expiry}: {why} ({_who(item)})", *evidence,
                  severity=severity, key=key,
                  fix=f"Remove-TenantAllowBlockListItems -ListType {list_type} {fix_target}")


def _spoof_results(ctx: CheckContext) -> Iterator[Result]:
    summary = "Tenant Allow/Block List: spoofed senders"
    if not ctx.available(SPOOF_ITEMS):
        yield result(Status.NOT_EVALUATED, summary,
                     f"not evaluated: {SPOOF_ITEMS} was not collected, so spoofed-sender allow "
                     "entries (which never expire) were not examined",
                     EvidenceRef(file=f"exo/{SPOOF_ITEMS}.json", pointer="", observed="missing"),
                     key="spoof")
        return
    items = ctx.objects(SPOOF_ITEMS, TenantAllowBlockListSpoofItem)
    allows = 0
    for item in items:
        action = (item.Action or "").strip().lower()
        if action == "block":
            continue
        allows += 1
        pair = f"{item.SpoofedUser} via {item.SendingInfrastructure}"
        resource = f"Tenant Allow/Block List: spoofed sender {pair}"
        key = f"spoof:{item.Identity or pair}"
        if action != "allow":
            yield result(Status.WARN, resource,
                         f"Action {item.Action!r} is neither Allow nor Block; check this pair in "
                         "the Defender portal", item.ref("Action"), severity=Severity.MEDIUM, key=key)
            continue
        internal = (item.SpoofType or "").strip().lower() == "internal"
        whose = ("the organisation's own domain" if internal else "an outside domain")
        yield result(Status.FAIL, resource,
                     f"allows mail from {item.SendingInfrastructure} to claim {item.SpoofedUser}, "
                     f"{whose} (SpoofType {item.SpoofType}), past spoof intelligence; spoofed-sender "
                     "allow entries never expire. Behind a gateway such entries often appear when "
                     "Enhanced Filtering for Connectors is missing; fix that instead",
                     item.ref("Action"), item.ref("SpoofType"), item.ref("SendingInfrastructure"),
                     severity=Severity.HIGH if internal else Severity.MEDIUM, key=key,
                     fix=("Remove-TenantAllowBlockListSpoofItems -Identity Default -Ids "
                          f"{ps_literal(item.Identity)}") if item.Identity else "")
    if not allows:
        yield result(Status.PASS, summary,
                     f"no spoofed-sender allow entries ({_entries(len(items), 'block')})",
                     EvidenceRef(file=f"exo/{SPOOF_ITEMS}.json", pointer="", observed=len(items)),
                     key="spoof", summary=True)


@check(
    id="POL-004",
    title="The Tenant Allow/Block List lets senders, URLs, files or addresses past filtering",
    severity=Severity.HIGH,
    rationale=(
        "Allow entries in the Tenant Allow/Block List override Microsoft's filtering verdicts for "
        "the senders, URLs, files, IP addresses or spoofed-sender pairs they name, and behind a "
        "third-party MX they can let even high-confidence phishing through. An entry that never "
        "expires is a standing exemption nobody reviews; spoofed-sender allows never expire and "
        "let named infrastructure send as the organisation."
    ),
    remediation=Remediation(
        "Remove allow entries that are no longer needed; keep the rest expiring (or removed 45 "
        "days after last use). Prefer reporting misjudged mail to Microsoft. Replace spoofed-"
        "sender allows for the gateway's infrastructure with Enhanced Filtering for Connectors.",
        "Get-TenantAllowBlockListItems -ListType Sender -Allow |\n"
        "    Format-List Value,ExpirationDate,ModifiedBy,Notes\n"
        "Remove-TenantAllowBlockListItems -ListType Sender -Ids \"<Identity>\"\n"
        "Remove-TenantAllowBlockListSpoofItems -Identity Default -Ids \"<Identity>\"",
    ),
    requires=tuple(key for key, _, _ in TABL_LISTS),
    uses=(SPOOF_ITEMS, ACCEPTED_DOMAINS),
    references=(MS_TABL, MS_TABL_EMAIL, MS_NEW_TABL, MS_EFC),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1566")),
    legitimate=(
        "Block entries, allow entries that have expired, and phishing-simulation URLs of the "
        "advanced delivery policy (Microsoft's mechanism for third-party simulations)."
    ),
)
def tenant_allow_block_list(ctx: CheckContext) -> Iterator[Result]:
    for key, list_type, label in TABL_LISTS:
        items = ctx.objects(key, TenantAllowBlockListItem)
        allows = 0
        for item in items:
            action = (item.Action or "").strip().lower()
            if action == "block":
                continue
            allows += 1
            if action == "allow":
                yield _tabl_allow(ctx, item, list_type)
            else:
                yield result(Status.WARN, f"Tenant Allow/Block List: {list_type} {item.Value}",
                             f"Action {item.Action!r} is neither Allow nor Block; check this entry",
                             item.ref("Action"), severity=Severity.MEDIUM,
                             key=f"{list_type}:{item.Identity or item.Value}")
        if not allows:
            yield result(Status.PASS, f"Tenant Allow/Block List: {label}",
                         f"no allow entries ({_entries(len(items), 'block')})",
                         EvidenceRef(file=f"exo/{key}.json", pointer="", observed=len(items)),
                         key=list_type, summary=True)
    yield from _spoof_results(ctx)


@dataclass(frozen=True)
class RemoteDomains:
    """The tenant's remote domains, and which one governs mail to a given domain."""

    domains: tuple[RemoteDomain, ...]

    @property
    def default(self) -> RemoteDomain | None:
        return next((d for d in self.domains if (d.DomainName or "").strip() == "*"), None)

    def governing(self, domain: str) -> RemoteDomain | None:
        """The remote domain Exchange Online applies to ``domain``: the one naming it, else the
        longest ``*.suffix`` covering it, else the default ``*``."""
        domain = domain.strip().lower().rstrip(".")
        best: RemoteDomain | None = None
        for candidate in self.domains:
            name = (candidate.DomainName or "").strip().lower().rstrip(".")
            if name == domain:
                return candidate
            if name.startswith("*.") and (domain == name[2:] or domain.endswith(name[1:])) and (
                    best is None or len(name) > len(best.DomainName or "")):
                best = candidate
        return best or self.default

    def forwarding_allowed(self) -> list[RemoteDomain]:
        """Remote domains other than the default that allow automatic forwarding."""
        return [d for d in self.domains
                if (d.DomainName or "").strip() != "*" and d.AutoForwardEnabled is not False]


def _remote_label(domain: RemoteDomain) -> str:
    return f"remote domain {domain.display_name} ({domain.DomainName})"


@dataclass(frozen=True)
class ForwardingGate:
    """Whether Exchange Online lets automatic forwarding to one outside domain leave."""

    blocked: bool | None  # None: the evidence cannot tell
    reason: str
    evidence: tuple[EvidenceRef, ...] = ()


def forwarding_gate(ctx: CheckContext, domain: str) -> ForwardingGate:
    """Combine the two controls Microsoft documents: automatic forwarding to ``domain`` leaves
    only if the outbound spam policy and the governing remote domain both allow it (the block
    wins). The check must declare Get-HostedOutboundSpamFilterPolicy and Get-RemoteDomain."""
    policies = (ctx.objects(OUTBOUND_POLICIES, HostedOutboundSpamFilterPolicy)
                if ctx.available(OUTBOUND_POLICIES) else None)
    if policies and all((p.AutoForwardingMode or "").lower() in FORWARDING_BLOCKED for p in policies):
        return ForwardingGate(True, "every outbound spam policy sets AutoForwardingMode Off or "
                              "Automatic (Off, per Microsoft), so Exchange Online refuses it (NDR "
                              "5.7.520)", tuple(p.ref("AutoForwardingMode") for p in policies))
    governing = None
    if ctx.available(REMOTE_DOMAINS):
        governing = RemoteDomains(ctx.objects(REMOTE_DOMAINS, RemoteDomain)).governing(domain)
        if governing is not None and governing.AutoForwardEnabled is False:
            return ForwardingGate(True, f"{_remote_label(governing)} sets AutoForwardEnabled False, "
                                  "so Exchange Online drops it", (governing.ref("AutoForwardEnabled"),))
    if not policies or governing is None:
        missing = [key for key, known in ((OUTBOUND_POLICIES, policies), (REMOTE_DOMAINS, governing))
                   if not known]
        return ForwardingGate(None, "whether Exchange Online lets it leave could not be judged ("
                              f"{' and '.join(missing)}: not collected, or no policy or Default "
                              "remote domain in it)")
    opener = next(p for p in policies if (p.AutoForwardingMode or "").lower() not in FORWARDING_BLOCKED)
    return ForwardingGate(False, f"outbound spam policy {opener.display_name} sets AutoForwardingMode "
                          f"{opener.AutoForwardingMode} and {_remote_label(governing)} allows "
                          "automatic forwarding", (opener.ref("AutoForwardingMode"),
                                                   governing.ref("AutoForwardEnabled")))


def _forwarding_verdict(ctx: CheckContext, policy: HostedOutboundSpamFilterPolicy, mode: str,
                        scope: str) -> Result:
    """One outbound spam policy that does not say Off, judged together with the remote domains."""
    name = policy.display_name
    resource = f"outbound spam policy {name}"
    fix = f"Set-HostedOutboundSpamFilterPolicy -Identity {ps_literal(name)} -AutoForwardingMode Off"
    setting = policy.ref("AutoForwardingMode")
    automatic = mode == "automatic"
    if not ctx.available(REMOTE_DOMAINS):
        if automatic:
            return result(Status.PASS, resource,
                          "AutoForwardingMode Automatic, which Microsoft documents as Off in every "
                          "organisation (remote domains were not collected; set Off explicitly for "
                          "clarity)", setting, key=name)
        return result(Status.WARN, resource,
                      f"AutoForwardingMode {policy.AutoForwardingMode} does not block external "
                      f"automatic forwarding ({scope}); remote domains were not collected, and the "
                      "Default remote domain allows it unless changed", setting,
                      severity=Severity.MEDIUM, key=name, fix=fix)
    remote = RemoteDomains(ctx.objects(REMOTE_DOMAINS, RemoteDomain))
    default = remote.default
    open_domains = [d for d in remote.forwarding_allowed()
                    if ctx.gateway.archive_owner((d.DomainName or "").lstrip("*.")) is None]
    if default is None:
        return result(Status.WARN, resource,
                      f"AutoForwardingMode {policy.AutoForwardingMode} does not block external "
                      "automatic forwarding, and the export holds no Default (*) remote domain to "
                      "tell whether remote domains do", setting, severity=Severity.MEDIUM,
                      key=name, fix=fix)
    if default.AutoForwardEnabled is not False:
        evidence = (setting, default.ref("AutoForwardEnabled"))
        if automatic:
            return result(Status.WARN, resource,
                          f"AutoForwardingMode Automatic and {_remote_label(default)} allows "
                          "automatic forwarding: Microsoft's Defender documentation says Automatic "
                          "now means Off in every organisation, but the Set-HostedOutbound"
                          "SpamFilterPolicy reference says tenants that used it in 2021 may still "
                          "treat it as On; set Off explicitly", *evidence, severity=Severity.LOW,
                          key=name, fix=fix)
        return result(Status.FAIL, resource,
                      f"AutoForwardingMode {policy.AutoForwardingMode} and {_remote_label(default)} "
                      "allows automatic forwarding: inbox rules and mailbox forwarding can send "
                      f"mail to any outside address ({scope})", *evidence, key=name, fix=fix)
    if open_domains and not automatic:
        listed = ", ".join(str(d.DomainName) for d in open_domains)
        return result(Status.WARN, resource,
                      f"AutoForwardingMode {policy.AutoForwardingMode}; the Default remote domain "
                      f"blocks automatic forwarding, but remote domains allow it to {listed} "
                      "(confirm these are approved partners)", setting,
                      *(d.ref("AutoForwardEnabled") for d in open_domains),
                      severity=Severity.LOW, key=name, fix=fix)
    blocked_by = "the policy (Automatic means Off) and " if automatic else ""
    return result(Status.PASS, resource,
                  f"AutoForwardingMode {policy.AutoForwardingMode}, but {blocked_by}"
                  f"{_remote_label(default)} blocks automatic forwarding to every domain without a "
                  "remote domain of its own" + ("" if automatic else
                                                "; one control is left, set AutoForwardingMode Off too"),
                  setting, default.ref("AutoForwardEnabled"), key=name)


@check(
    id="POL-005",
    title="Automatic forwarding of mail to outside addresses is allowed",
    severity=Severity.HIGH,
    rationale=(
        "Inbox rules and mailbox forwarding copy every matching message to the address they "
        "name; after an account compromise this is the standard way to keep reading its mail. "
        "Exchange Online lets automatic forwarding to an outside domain leave only when both "
        "the outbound spam policy (AutoForwardingMode) and the remote domain governing that "
        "domain (AutoForwardEnabled) allow it: a block in either wins. The gateway does not "
        "stop it: the forwarded copy is the organisation's own outbound mail."
    ),
    remediation=Remediation(
        "Set AutoForwardingMode Off in every outbound spam policy (Automatic is documented as "
        "Off, but an explicit Off removes doubt) and AutoForwardEnabled False on the Default "
        "remote domain. Allow approved partner domains with a remote domain of their own.",
        "Set-HostedOutboundSpamFilterPolicy -Identity Default -AutoForwardingMode Off\n"
        "Set-RemoteDomain -Identity Default -AutoForwardEnabled $false",
    ),
    requires=(OUTBOUND_POLICIES,),
    uses=(REMOTE_DOMAINS,),
    references=(MS_FORWARDING, MS_OUTBOUND_POLICY, MS_REMOTE_DOMAINS, MITRE_FORWARDING_RULE),
    mappings=Mappings(attack=("T1114.003",), cis=("6.2.1",), scuba=("MS.EXO.1.1v2",)),
    legitimate=(
        "AutoForwardingMode Off; AutoForwardingMode On (or Automatic) while the Default remote "
        "domain blocks automatic forwarding, which is Microsoft's documented way to allow only "
        "partner domains; remote domains of known archive services."
    ),
)
def external_auto_forwarding(ctx: CheckContext) -> Iterator[Result]:
    policies = ctx.objects(OUTBOUND_POLICIES, HostedOutboundSpamFilterPolicy)
    for policy in policies:
        name = policy.display_name
        mode = (policy.AutoForwardingMode or "").strip().lower()
        if not mode:
            yield result(Status.NOT_EVALUATED, f"outbound spam policy {name}",
                         "not evaluated: the export does not contain AutoForwardingMode",
                         policy.ref("AutoForwardingMode"), key=name)
        elif mode == "off":
            yield result(Status.PASS, f"outbound spam policy {name}",
                         "AutoForwardingMode Off: Exchange Online refuses automatic forwarding to "
                         "outside addresses (NDR 5.7.520)", policy.ref("AutoForwardingMode"), key=name)
        else:
            yield _forwarding_verdict(ctx, policy, mode, _policy_scope(policy.IsDefault, "outbound spam"))
    if not policies:
        yield result(Status.NOT_EVALUATED, "outbound spam policies",
                     "not evaluated: the export holds no outbound spam policy (every tenant has a "
                     "Default one, so the export is incomplete)", key="none")


@dataclass(frozen=True)
class Destination:
    """Where journal reports go, and whether that place is known to belong to the organisation
    or to an archive service."""

    address: str | None  # None: a recipient name the evidence cannot resolve
    known: bool
    detail: str
    evidence: tuple[EvidenceRef, ...] = ()


def _journal_routes(ctx: CheckContext, domain: str) -> Iterable[tuple[OutboundConnector, str]]:
    """Enabled outbound connectors scoped to ``domain`` (not to every domain) and their hosts."""
    if not ctx.available("Get-OutboundConnector"):
        return
    for conn in ctx.objects("Get-OutboundConnector", OutboundConnector):
        if conn.Enabled is False:
            continue
        for entry in conn.RecipientDomains:
            name = sender_domain_entry(entry)[0]
            if name == domain or (name.startswith("*.") and domain.endswith(name[1:])):
                for host in conn.SmartHosts:
                    yield conn, host
                break


def _destination(ctx: CheckContext, value: str) -> Destination:
    address = smtp_address(value)
    if address is None:
        return Destination(None, False, f"{value!r} names a recipient (a mail contact or mail user), "
                           "not an address, and the evidence does not show its address")
    domain = address_domain(address)
    if ctx.is_internal_address(address):
        return Destination(address, True, "inside the organisation's accepted domains")
    owner = ctx.gateway.archive_owner(domain)
    if owner is not None:
        return Destination(address, True, f"a known archive or journaling service of {owner.vendor} "
                           f"(profile {owner.id}); confirm it is the organisation's own account")
    own_subdomain = any(domain.endswith("." + d.normalised_name)
                        for d in ctx.accepted_domains if d.DomainName)
    for conn, host in _journal_routes(ctx, domain):
        owner = ctx.gateway.archive_owner(host)
        if owner is None and own_subdomain:
            # Mimecast's documented pattern: journal.<own domain>, relayed to the gateway.
            owner = next((p for p in ctx.gateway.active if p.matches_smart_host(host)), None)
        if owner is not None:
            return Destination(address, True, f"relayed by outbound connector '{conn.display_name}' "
                               f"to {host}, {owner.vendor}'s; confirm it is the organisation's own "
                               "account", (conn.ref("SmartHosts"),))
    return Destination(address, False, f"{domain} is outside the accepted domains and is no known "
                       "archive service (name the organisation's archive in a --gateway-file "
                       "profile's archive_domains)")


def _journal_rule(ctx: CheckContext, rule: JournalRule) -> Result:
    name = rule.display_name
    resource = f"journal rule {name}"
    target = (rule.JournalEmailAddress or "").strip()
    if not target:
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: the export does not contain JournalEmailAddress",
                      rule.ref("JournalEmailAddress"), key=name)
    everyone = not (rule.Recipient or "").strip()
    scope = rule.Scope or "Global"
    what = (f"all mail (Scope {scope})" if everyone
            else f"mail to or from {rule.Recipient} (Scope {scope})")
    destination = _destination(ctx, target)
    evidence = (rule.ref("JournalEmailAddress"), *destination.evidence)
    if rule.Enabled is False:
        return result(Status.PASS, resource, f"disabled (it would journal {what} to {target})",
                      rule.ref("Enabled"), *evidence, key=name)
    if destination.known:
        return result(Status.PASS, resource,
                      f"journals {what} to {destination.address}: {destination.detail}",
                      *evidence, key=name)
    fix = f"Disable-JournalRule -Identity {ps_literal(name)} -Confirm:$false"
    if destination.address is None:
        return result(Status.WARN, resource,
                      f"journals {what} to {destination.detail}; resolve it with Get-Recipient to "
                      "see whether it is outside the organisation", *evidence,
                      severity=Severity.MEDIUM, key=name)
    return result(Status.FAIL, resource,
                  f"sends a copy of {what} to {destination.address}: {destination.detail}",
                  *evidence, rule.ref("Recipient"),
                  severity=Severity.CRITICAL if everyone else Severity.HIGH, key=name, fix=fix)


NDR_FIX = "Set-TransportConfig -JournalingReportNdrTo \"<dedicated mailbox in the organisation>\""


def _journal_ndr(ctx: CheckContext) -> Result:
    resource = "journal NDR mailbox (JournalingReportNdrTo)"
    if not ctx.available("Get-TransportConfig"):
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: Get-TransportConfig was not collected",
                      EvidenceRef(file="exo/Get-TransportConfig.json", pointer="", observed="missing"),
                      key="ndr")
    configs = ctx.objects("Get-TransportConfig", TransportConfig)
    if not configs:
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: the export holds no transport config object", key="ndr")
    config = configs[0]
    value = (config.JournalingReportNdrTo or "").strip()
    if value in ("", "<>"):
        return result(Status.PASS, resource, "not set: undeliverable journal reports are retried, "
                      "not sent elsewhere", config.ref("JournalingReportNdrTo"), key="ndr")
    destination = _destination(ctx, value)
    evidence = (config.ref("JournalingReportNdrTo"), *destination.evidence)
    if destination.known:
        return result(Status.PASS, resource,
                      f"undeliverable journal reports go to {destination.address}: {destination.detail}",
                      *evidence, key="ndr")
    if destination.address is None:
        return result(Status.WARN, resource, f"undeliverable journal reports go to {destination.detail}",
                      *evidence, severity=Severity.MEDIUM, key="ndr")
    return result(Status.FAIL, resource,
                  f"undeliverable journal reports, full copies of journaled mail, go to "
                  f"{destination.address}: {destination.detail}", *evidence, severity=Severity.HIGH,
                  key="ndr", fix=NDR_FIX)


@check(
    id="POL-006",
    title="Journal reports go outside the organisation to an unknown destination",
    severity=Severity.HIGH,
    rationale=(
        "A journal rule sends a copy of every message it matches, as an attachment to a journal "
        "report, to its JournalEmailAddress; undeliverable reports go to the JournalingReportNdrTo "
        "mailbox. Archive services (the gateway vendor's included) rely on this, but pointed at "
        "any other outside address it is a silent, complete copy of the organisation's mail that "
        "no user or gateway policy notices."
    ),
    remediation=Remediation(
        "Confirm every outside journal destination is the organisation's archive account and "
        "name its domain in a --gateway-file profile (archive_domains); disable any other rule "
        "and find out who created it (audit log: New-JournalRule, Set-TransportConfig).",
        "Get-JournalRule | Format-List Name,Enabled,Scope,Recipient,JournalEmailAddress\n"
        "Disable-JournalRule -Identity \"<rule name>\"\n"
        "Set-TransportConfig -JournalingReportNdrTo \"<dedicated mailbox in the organisation>\"",
    ),
    requires=("Get-JournalRule", ACCEPTED_DOMAINS),
    uses=("Get-TransportConfig", "Get-OutboundConnector"),
    references=(MS_NEW_JOURNAL_RULE, MS_TRANSPORT_CONFIG, MIMECAST_JOURNALING, CLOUDFLARE_JOURNALING),
    mappings=Mappings(attack=("T1114.003", "T1020")),
    legitimate=(
        "Journal rules and journal NDR mailboxes inside the accepted domains; journal addresses "
        "of a known archive service (archive_domains of the shipped profiles or the user's "
        "--gateway-file profile); Mimecast's journal.<own domain> address when an outbound "
        "connector relays it to the archive or the gateway; disabled rules."
    ),
)
def external_journaling(ctx: CheckContext) -> Iterator[Result]:
    rules = ctx.objects("Get-JournalRule", JournalRule)
    for rule in rules:
        yield _journal_rule(ctx, rule)
    if not rules:
        yield result(Status.PASS, "journal rules", "the organisation has no journal rules",
                     EvidenceRef(file="exo/Get-JournalRule.json", pointer="", observed=0),
                     key="none", summary=True)
    yield _journal_ndr(ctx)


# --- POL-007: advanced delivery (phishing-simulation and SecOps mailbox overrides) ---------------

PHISH_POLICIES = "Get-PhishSimOverridePolicy"
PHISH_RULES = "Get-ExoPhishSimOverrideRule"
SECOPS_POLICIES = "Get-SecOpsOverridePolicy"
SECOPS_RULES = "Get-ExoSecOpsOverrideRule"
MAILBOXES = "Get-Mailbox"
VENDORS_FILE = "simulation_vendors.toml"

_VENDOR_KEYS = {"id", "name", "notes", "ip_ranges", "domains"}
_VENDOR_GROUP_KEYS = {"cidrs", "names", "source", "as_of", "confidence", "note"}
_VENDOR_CONFIDENCE = {"vendor", "third-party"}
_VENDOR_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_DOMAIN_NAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True)
class SimulationVendor:
    """A phishing-simulation vendor's published sending addresses and domains."""

    id: str
    name: str
    ranges: IpSet
    domains: frozenset[str]
    sources: tuple[str, ...]


def _vendor_error(origin: str, message: str) -> ProfileError:
    return ProfileError(f"simulation vendors {origin}: {message}")


def _vendor_group(origin: str, where: str, group: Any, values_key: str) -> tuple[list[str], str]:
    """One sourced group of a vendor (its values and source URL), validated."""
    if not isinstance(group, dict) or set(group) - _VENDOR_GROUP_KEYS:
        raise _vendor_error(origin, f"{where}: not a table, or unknown keys")
    listed = group.get(values_key)
    if not isinstance(listed, list) or not listed or not all(
            isinstance(v, str) and v.strip() for v in listed):
        raise _vendor_error(origin, f"{where}: {values_key} must be a non-empty list of strings")
    source = group.get("source")
    if not isinstance(source, str) or not source.startswith("https://"):
        raise _vendor_error(origin, f"{where}: a https:// source URL is required")
    if group.get("confidence") not in _VENDOR_CONFIDENCE:
        raise _vendor_error(origin, f"{where}: confidence must be one of {sorted(_VENDOR_CONFIDENCE)}")
    as_of = group.get("as_of")
    if not isinstance(as_of, date):
        try:
            date.fromisoformat(str(as_of))
        except ValueError:
            raise _vendor_error(origin, f"{where}: as_of {as_of!r} is not an ISO date (the day the "
                                        "source was read)") from None
    return [v.strip() for v in listed], source


def parse_simulation_vendors(data: Mapping[str, Any], origin: str) -> tuple[SimulationVendor, ...]:
    """Validate the simulation-vendor document: every address and domain needs a source."""
    if set(data) - {"schema_version", "vendors"}:
        raise _vendor_error(origin, f"unknown keys {sorted(set(data) - {'schema_version', 'vendors'})}")
    if data.get("schema_version") != 1:
        raise _vendor_error(origin, "schema_version must be 1")
    listed = data.get("vendors")
    if not isinstance(listed, list) or not listed:
        raise _vendor_error(origin, "vendors must be a non-empty array of tables")
    vendors: list[SimulationVendor] = []
    for index, entry in enumerate(listed):
        where = f"vendors[{index}]"
        if not isinstance(entry, dict) or set(entry) - _VENDOR_KEYS:
            raise _vendor_error(origin, f"{where}: not a table, or unknown keys")
        vendor_id, name = entry.get("id"), entry.get("name")
        if not isinstance(vendor_id, str) or not _VENDOR_ID.match(vendor_id):
            raise _vendor_error(origin, f"{where}: id must be lowercase letters, digits and dashes")
        if any(v.id == vendor_id for v in vendors):
            raise _vendor_error(origin, f"{where}: id {vendor_id!r} is used twice")
        if not isinstance(name, str) or not name.strip():
            raise _vendor_error(origin, f"{where}: name is required")
        ranges: list[IpRange] = []
        domains: set[str] = set()
        sources: list[str] = []
        for group_index, group in enumerate(entry.get("ip_ranges", [])):
            cidrs, source = _vendor_group(origin, f"{where}.ip_ranges[{group_index}]", group, "cidrs")
            try:
                ranges.extend(IpRange.parse(c) for c in cidrs)
            except ValueError as exc:
                raise _vendor_error(origin, f"{where}.ip_ranges[{group_index}]: {exc}") from None
            sources.append(source)
        for group_index, group in enumerate(entry.get("domains", [])):
            names, source = _vendor_group(origin, f"{where}.domains[{group_index}]", group, "names")
            for domain in names:
                if not _DOMAIN_NAME.match(domain.lower()):
                    raise _vendor_error(origin, f"{where}.domains[{group_index}]: {domain!r} is not "
                                                "a domain name")
            domains.update(d.lower() for d in names)
            sources.append(source)
        if not ranges:
            raise _vendor_error(origin, f"{where}: a vendor needs at least one sourced ip_ranges "
                                        "group (advanced delivery matches on the sending IP)")
        vendors.append(SimulationVendor(vendor_id, name.strip(), IpSet(ranges), frozenset(domains),
                                        tuple(dict.fromkeys(sources))))
    return tuple(vendors)


@cache
def simulation_vendors() -> tuple[SimulationVendor, ...]:
    """The phishing-simulation vendors shipped with the package (read once, on first use)."""
    origin = f"builtin:{VENDORS_FILE}"
    text = resources.files("auditor").joinpath(VENDORS_FILE).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _vendor_error(origin, f"not valid TOML: {exc}") from None
    return parse_simulation_vendors(data, origin)


def _has(obj: PhishSimOverrideRule, prop: str) -> bool:
    """Whether the export holds the property at all (absent is unknown, not empty)."""
    return any(key.lower() == prop.lower() for key in obj.raw)


OverridePolicy = TypeVar("OverridePolicy", PhishSimOverridePolicy, SecOpsOverridePolicy)


def _owning_policy(reference: str | None,
                   policies: tuple[OverridePolicy, ...]) -> OverridePolicy | None:
    """The policy a rule's ``Policy`` names (by identity, name or GUID), else the only one."""
    wanted = (reference or "").strip().lower()
    for policy in policies:
        if wanted and wanted in {(v or "").lower() for v in (policy.Identity, policy.Name, policy.Guid)}:
            return policy
    return policies[0] if len(policies) == 1 else None


@dataclass(frozen=True)
class SenderRange:
    """One SenderIpRanges entry of a phishing-simulation rule, and whose it is."""

    text: str
    whose: str
    severity: Severity | None  # None: a known simulation vendor's, or documented by the user
    unreadable: bool = False


def _sender_range(ctx: CheckContext, text: str) -> SenderRange:
    try:
        rng = IpRange.parse(text)
    except ValueError as exc:
        return SenderRange(text, f"could not be read as an address or range ({exc})",
                           Severity.MEDIUM, unreadable=True)
    gateway = ctx.gateway
    if gateway.covers(rng):
        return SenderRange(text, f"is {gateway.names}'s delivery range: behind the gateway (without "
                           "Enhanced Filtering) every message arrives from it, so anyone on the "
                           "Internet who uses a listed domain skips filtering, which Microsoft's "
                           "advanced delivery article warns against", Severity.CRITICAL)
    owner = gateway.owner(rng)
    if owner is not None and owner.deployment == "exchange-online":
        return SenderRange(text, "is Exchange Online's own sending range: any Microsoft 365 tenant's "
                           "mail that uses a listed domain skips filtering", Severity.CRITICAL)
    vendor = next((v for v in simulation_vendors() if v.ranges.covers(rng)), None)
    if vendor is not None:
        return SenderRange(text, f"{vendor.name}'s published sending address", None)
    documented = next((p for p in gateway.known if user_documented(p) and not gateway.is_active(p)
                       and p.ip_set.covers(rng)), None)
    if documented is not None:
        return SenderRange(text, f"documented by the user as {documented.name} ({documented.origin})",
                           None)
    severity = max(Severity.HIGH, range_width_severity(rng), key=lambda s: s.rank)
    size = f"/{rng.prefix_len}, {rng.size} address{'es' if rng.size > 1 else ''}"
    if owner is not None:
        return SenderRange(text, f"({size}) belongs to {owner.name}, a mail gateway that many "
                           "organisations send through, not a simulation vendor", severity)
    wider = next((v for v in simulation_vendors() if v.ranges.overlaps(rng)), None)
    if wider is not None:
        return SenderRange(text, f"({size}) holds {wider.name}'s published addresses but is wider; "
                           "the rest belong to no known simulation vendor", severity)
    return SenderRange(text, f"({size}) belongs to no known phishing-simulation vendor", severity)


PHISH_SIM_SKIPS = ("spam and phishing filtering (high-confidence phishing included), ZAP, Safe Links "
                   "blocking and Safe Attachments detonation, and raises no alert")


def _phish_sim_inert(rule: PhishSimOverrideRule,
                     policy: PhishSimOverridePolicy | None) -> tuple[str, EvidenceRef] | None:
    """Why a phishing-simulation rule does not act on mail, or None when it does."""
    if rule.Mode is not None and rule.Mode.lower() != "enforce":
        return (f"its Mode is {rule.Mode}; only the Enforce rule acts (a PendingDeletion rule is "
                "being removed)", rule.ref("Mode"))
    if policy is not None and policy.Enabled is False:
        return (f"the phishing simulation override policy {policy.display_name} is disabled",
                policy.ref("Enabled"))
    return None


def _phish_sim_rule(ctx: CheckContext, rule: PhishSimOverrideRule,
                    policy: PhishSimOverridePolicy | None) -> Result:
    name = rule.display_name
    resource = f"phishing simulation override rule {name}"
    key = f"phishsim:{rule.Identity or name}"
    if not _has(rule, "SenderIpRanges"):
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: the export does not contain SenderIpRanges",
                      rule.ref("SenderIpRanges"), key=key)
    domains = ", ".join(rule.Domains) or "none"
    ranges = [_sender_range(ctx, text) for text in rule.SenderIpRanges]
    bad = [r for r in ranges if r.severity is not None]
    evidence = (rule.ref("SenderIpRanges"), rule.ref("Domains"))
    inert = _phish_sim_inert(rule, policy)
    if inert is not None:
        reason, ref = inert
        would = (f"; were it in force, {len(bad)} of its {len(ranges)} sending IP entries would "
                 "exempt senders that are no known simulation vendor: remove it") if bad else ""
        return result(Status.PASS, resource, f"not in force: {reason}{would}", ref, *evidence,
                      severity=Severity.INFO, key=key)
    if not ranges or not rule.Domains:
        missing = "sending IP" if not ranges else "domain"
        return result(Status.PASS, resource,
                      f"matches no message: it lists no {missing}, and Microsoft matches a simulation "
                      "on a listed domain and a listed sending IP together", *evidence, key=key)
    known = "; ".join(f"{r.text}: {r.whose}" for r in ranges if r.severity is None)
    if not bad:
        return result(Status.PASS, resource,
                      f"every sending IP is a known phishing-simulation sender ({known}); mail from "
                      f"them using the domains {domains} skips filtering, as advanced delivery "
                      "intends", *evidence, key=key)
    identity = rule.Identity or name
    if len(bad) == len(ranges):
        fix = f"Remove-ExoPhishSimOverrideRule -Identity {ps_literal(identity)} -Confirm:$false"
    else:
        fix = (f"Set-ExoPhishSimOverrideRule -Identity {ps_literal(identity)} -RemoveSenderIpRanges "
               + ",".join(ps_literal(r.text) for r in bad))
    details = "; ".join(f"{r.text} {r.whose}" for r in bad)
    also = f" (known senders: {known})" if known else ""
    scope = ("the policy it belongs to is not in the evidence, so it is judged as enabled; "
             if policy is None else "")
    return result(Status.WARN if all(r.unreadable for r in bad) else Status.FAIL, resource,
                  f"{scope}mail from these sending IPs that uses one of the domains {domains} skips "
                  f"{PHISH_SIM_SKIPS}: {details}{also}",
                  *(rule.ref_item("SenderIpRanges", r.text) for r in bad), rule.ref("Domains"),
                  severity=max((r.severity for r in bad if r.severity), key=lambda s: s.rank),
                  key=key, fix=fix)


def _phish_sim_results(ctx: CheckContext) -> Iterator[Result]:
    policies = ctx.objects(PHISH_POLICIES, PhishSimOverridePolicy)
    rules = ctx.objects(PHISH_RULES, PhishSimOverrideRule)
    for rule in rules:
        yield _phish_sim_rule(ctx, rule, _owning_policy(rule.Policy, policies))
    if not rules:
        alone = (f" (the policy {policies[0].display_name} exists without a rule)" if policies else "")
        yield result(Status.PASS, "advanced delivery: phishing simulations",
                     f"no phishing-simulation override rules exist{alone}: no sender skips filtering "
                     "as a simulation", EvidenceRef(file=f"exo/{PHISH_RULES}.json", pointer="",
                                                    observed=0),
                     key="phishsim", summary=True)


# Words that name a mailbox after security work (local part, alias, name or display name).
_SECURITY_TOKENS = frozenset({"soc", "sec", "secops", "security", "infosec", "itsec", "cyber",
                              "cybersecurity", "csirt", "cirt", "cert", "siem", "abuse", "phish",
                              "phishing", "spam", "threat", "threats", "incident", "incidents"})
_SECURITY_FRAGMENTS = ("secops", "security", "phish", "csirt", "infosec", "abuse")


def _security_named(*names: str | None) -> str | None:
    """The first name that says the mailbox is for security work, if any."""
    for name in names:
        if not name:
            continue
        local = name.lower().split("@", 1)[0]
        tokens = re.split(r"[^a-z0-9]+", local)
        if any(t in _SECURITY_TOKENS for t in tokens) or any(f in local for f in _SECURITY_FRAGMENTS):
            return name
    return None


def _find_mailbox(mailboxes: tuple[Mailbox, ...], value: str) -> Mailbox | None:
    """The mailbox a SentTo entry names (by address, alias, name or identity)."""
    wanted = (smtp_address(value) or value).strip().lower()
    for mailbox in mailboxes:
        names = [mailbox.PrimarySmtpAddress, mailbox.UserPrincipalName, mailbox.Alias, mailbox.Name,
                 mailbox.Identity, mailbox.Guid, mailbox.ExternalDirectoryObjectId,
                 *(smtp_address(a) for a in mailbox.EmailAddresses)]
        if wanted in {n.strip().lower() for n in names if n}:
            return mailbox
    return None


SECOPS_SKIPS = ("all filtering, malware filtering and malware ZAP included, and Safe Links and Safe "
                "Attachments do not block or detonate it")


@dataclass
class SecOpsEntry:
    """One SecOps mailbox as the policy and rule list it."""

    value: str
    evidence: list[EvidenceRef]
    policy: SecOpsOverridePolicy | None


def _secops_entries(ctx: CheckContext) -> tuple[dict[str, SecOpsEntry], tuple[SecOpsOverridePolicy, ...]]:
    policies = ctx.objects(SECOPS_POLICIES, SecOpsOverridePolicy)
    entries: dict[str, SecOpsEntry] = {}

    def add(value: str, ref: EvidenceRef, policy: SecOpsOverridePolicy | None) -> None:
        entry = entries.setdefault((smtp_address(value) or value).strip().lower(),
                                   SecOpsEntry(value, [], policy))
        entry.evidence.append(ref)
        entry.policy = entry.policy or policy

    for policy in policies:
        for value in policy.SentTo:
            add(value, policy.ref_item("SentTo", value), policy)
    for rule in ctx.objects(SECOPS_RULES, SecOpsOverrideRule):
        if rule.Mode is not None and rule.Mode.lower() != "enforce":
            continue  # being removed: it no longer acts
        for value in rule.SentTo:
            add(value, rule.ref_item("SentTo", value), _owning_policy(rule.Policy, policies))
    return entries, policies


def _secops_mailbox(ctx: CheckContext, entry: SecOpsEntry) -> Result:
    value = entry.value
    address = smtp_address(value)
    resource = f"SecOps mailbox {address or value}"
    key = f"secops:{(address or value).lower()}"
    evidence = list(entry.evidence)
    policy = entry.policy
    if policy is not None and policy.Enabled is False:
        return result(Status.PASS, resource,
                      f"not in force: the SecOps override policy {policy.display_name} is disabled, so "
                      "mail to it is filtered normally", policy.ref("Enabled"), *evidence,
                      severity=Severity.INFO, key=key)
    policy_id = (policy.Identity or policy.Name) if policy is not None else None
    fix = (f"Set-SecOpsOverridePolicy -Identity {ps_literal(policy_id or 'SecOpsOverridePolicy')} "
           f"-RemoveSentTo {ps_literal(value)}")
    skips = f"mail to it skips {SECOPS_SKIPS}"
    if address and ctx.available(ACCEPTED_DOMAINS) and not ctx.is_internal_address(address):
        return result(Status.WARN, resource,
                      f"{address} is outside the accepted domains: Exchange Online receives no mail "
                      "for it, so the entry does nothing today, but it is no SecOps mailbox of this "
                      "organisation (stale, or waiting for its domain to be added)", *evidence,
                      severity=Severity.LOW, key=key, fix=fix)
    if not ctx.available(MAILBOXES):
        named = _security_named(address or value)
        if named:
            return result(Status.PASS, resource,
                          f"named for security work ({named}); Get-Mailbox was not collected, so "
                          "whether it is a shared mailbox of the security team was not verified",
                          *evidence, key=key)
        return result(Status.WARN, resource,
                      f"not named like a security mailbox, and Get-Mailbox was not collected, so "
                      f"whether it is a regular user's mailbox is unknown; {skips}", *evidence,
                      severity=Severity.MEDIUM, key=key, fix=fix)
    mailbox = _find_mailbox(ctx.objects(MAILBOXES, Mailbox), value)
    if mailbox is None:
        return result(Status.WARN, resource,
                      "no mailbox in the export has this address: a stale entry, and whoever is later "
                      f"given the address receives mail unfiltered ({skips})", *evidence,
                      severity=Severity.MEDIUM, key=key, fix=fix)
    evidence.append(mailbox.ref("RecipientTypeDetails"))
    kind = mailbox.RecipientTypeDetails
    label = f"{mailbox.DisplayName or mailbox.display_name} ({kind or 'type not in the export'})"
    named = _security_named(address or value, mailbox.Alias, mailbox.Name, mailbox.DisplayName)
    if named and kind in ("SharedMailbox", None):
        return result(Status.PASS, resource,
                      f"{label}, named for security work ({named}): a mailbox where the security "
                      "team reviews unfiltered mail, as advanced delivery intends", *evidence, key=key)
    if named and kind == "UserMailbox":
        return result(Status.PASS, resource,
                      f"{label}, named for security work ({named}); Microsoft asks for a mailbox "
                      "dedicated to the security team, so keep it out of personal use", *evidence,
                      key=key)
    if kind == "UserMailbox":
        return result(Status.FAIL, resource,
                      f"{label} is a regular user's mailbox, not one named for security work: every "
                      f"message sent to this person skips {SECOPS_SKIPS}", *evidence,
                      severity=Severity.HIGH, key=key, fix=fix)
    what = "a shared mailbox" if kind == "SharedMailbox" else f"a {kind or 'recipient of unknown type'}"
    return result(Status.WARN, resource,
                  f"{label} is {what} not named for security work: confirm only the security team "
                  f"reads it, since {skips}", *evidence, severity=Severity.MEDIUM, key=key, fix=fix)


def _secops_results(ctx: CheckContext) -> Iterator[Result]:
    entries, policies = _secops_entries(ctx)
    for entry in entries.values():
        yield _secops_mailbox(ctx, entry)
    if not entries:
        alone = (f" (the policy {policies[0].display_name} lists none)" if policies else "")
        yield result(Status.PASS, "advanced delivery: SecOps mailboxes",
                     f"no SecOps mailboxes are configured{alone}: no recipient's mail skips filtering",
                     EvidenceRef(file=f"exo/{SECOPS_POLICIES}.json", pointer="", observed=0),
                     key="secops", summary=True)


MS_ADVANCED_DELIVERY = Reference(
    "Microsoft: Configure the advanced delivery policy for third-party phishing simulations and "
    "email delivery to SecOps mailboxes",
    "https://learn.microsoft.com/en-us/defender-office-365/advanced-delivery-policy-configure",
)
MS_NEW_PHISH_SIM_RULE = Reference(
    "Microsoft: New-ExoPhishSimOverrideRule (SenderIpRanges: up to 10 entries; Domains)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-exophishsimoverriderule",
)
MS_SET_PHISH_SIM_RULE = Reference(
    "Microsoft: Set-ExoPhishSimOverrideRule",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-exophishsimoverriderule",
)
MS_SET_SECOPS_POLICY = Reference(
    "Microsoft: Set-SecOpsOverridePolicy (SentTo: groups are not allowed)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-secopsoverridepolicy",
)
KNOWBE4_ADVANCED_DELIVERY = Reference(
    "KnowBe4: Advanced Delivery Policies in Microsoft Defender for Office 365",
    "https://support.knowbe4.com/hc/en-us/articles/4404511190803-Advanced-Delivery-Policies-in-Microsoft-Defender-for-Office-365",
)
HOXHUNT_ADVANCED_DELIVERY = Reference(
    "Hoxhunt: Secure by Default and Advanced Delivery for Hoxhunt customers",
    "https://support.hoxhunt.com/hc/en-us/articles/4407364734610-Ensuring-mail-delivery-Introducing-Secure-by-Default-and-Advanced-Delivery-for-Hoxhunt-customers",
)


@check(
    id="POL-007",
    title="Advanced delivery overrides let unknown senders or ordinary mailboxes skip filtering",
    severity=Severity.HIGH,
    rationale=(
        "The advanced delivery policy marks messages as system overrides. A phishing-simulation "
        "rule exempts mail from its sending IPs that uses one of its domains (a MAIL FROM domain "
        "anyone can write) from spam and phishing filtering, high-confidence phishing included, "
        "from ZAP, Safe Links blocking and Safe Attachments detonation, and raises no alert. Mail "
        "to a SecOps mailbox skips all of that and malware filtering too. Entered for a real "
        "simulation vendor or a security team's shared mailbox this is Microsoft's design; "
        "entered for any other address, for the gateway's own IPs (Microsoft warns that this "
        "exempts every Internet sender who uses the domain), or for an ordinary user's mailbox, "
        "it is an unfiltered way in."
    ),
    remediation=Remediation(
        "Keep only the simulation vendor's published sending IPs and the domains it assigns in "
        "the phishing-simulation rule; behind a gateway configure Enhanced Filtering for "
        "Connectors instead of listing the gateway's IPs. Keep SecOps mailboxes to shared "
        "mailboxes of the security team. Document a vendor this tool does not know in a "
        "--gateway-file profile used with --gateway NAME.",
        "Get-ExoPhishSimOverrideRule | Format-List Identity,Mode,Domains,SenderIpRanges\n"
        "Get-ExoPhishSimOverrideRule | Set-ExoPhishSimOverrideRule -RemoveSenderIpRanges \"<ip>\"\n"
        "Get-SecOpsOverridePolicy | Format-List Identity,Enabled,SentTo\n"
        "Set-SecOpsOverridePolicy -Identity SecOpsOverridePolicy -RemoveSentTo \"<address>\"",
    ),
    requires=(PHISH_POLICIES, PHISH_RULES, SECOPS_POLICIES, SECOPS_RULES),
    uses=(MAILBOXES, ACCEPTED_DOMAINS),
    references=(MS_ADVANCED_DELIVERY, MS_NEW_PHISH_SIM_RULE, MS_SET_PHISH_SIM_RULE,
                MS_SET_SECOPS_POLICY, KNOWBE4_ADVANCED_DELIVERY, HOXHUNT_ADVANCED_DELIVERY),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1566")),
    legitimate=(
        "Phishing-simulation rules whose sending IPs are a known vendor's published addresses "
        "(auditor/simulation_vendors.toml) or are documented in the user's --gateway-file profile; "
        "SecOps mailboxes that are mailboxes named for security work; disabled policies and "
        "rules pending deletion; no overrides at all."
    ),
)
def advanced_delivery_overrides(ctx: CheckContext) -> Iterator[Result]:
    yield from _phish_sim_results(ctx)
    yield from _secops_results(ctx)


CHECKS = (
    connection_filter_allow_list,
    connection_filter_safe_list,
    anti_spam_allowed_senders,
    tenant_allow_block_list,
    external_auto_forwarding,
    external_journaling,
    advanced_delivery_overrides,
)
