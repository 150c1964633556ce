"""Bypass vectors: organisation-wide settings and Microsoft's own domains that let mail in as, or
for, the organisation without passing the gateway; and the audit settings that decide whether
such changes leave a trace."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

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
from auditor.evidence import evidence_path
from auditor.models import (
    AcceptedDomain,
    AdminAuditLogConfig,
    EvidenceRef,
    Mailbox,
    MailboxAuditBypassAssociation,
    ManagementRoleAssignment,
    TransportConfig,
)

from ._analysis import ConnectorLock, RuleLock, api_only, connector_lock, lockdown_command, rule_lock

MS_DIRECT_SEND = Reference(
    "Microsoft: Introducing more control over Direct Send in Exchange Online",
    "https://techcommunity.microsoft.com/blog/exchange/introducing-more-control-over-direct-send-in-exchange-online/4408790",
)
MS_SET_ORG = Reference(
    "Microsoft: Set-OrganizationConfig (RejectDirectSend)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-organizationconfig",
)


@check(
    id="ORG-001",
    title="Direct Send is allowed while inbound mail is not locked down",
    severity=Severity.HIGH,
    rationale=(
        "Direct Send is anonymous SMTP to the tenant's endpoint with a sender in one of its own "
        "domains. Without an inbound lockdown, anyone can use it to deliver mail that claims to "
        "come from inside the organisation, around the gateway. RejectDirectSend refuses such "
        "mail when it matches no connector."
    ),
    remediation=Remediation(
        "Move printers and applications that use Direct Send to authenticated submission or a "
        "certificate connector, then reject Direct Send; lock inbound mail to the gateway "
        "(CONN-001) as well, since RejectDirectSend does not stop other senders.",
        "Set-OrganizationConfig -RejectDirectSend $true",
    ),
    requires=("Get-OrganizationConfig", "Get-InboundConnector", "Get-AcceptedDomain"),
    uses=("Get-TransportRule",),
    references=(MS_DIRECT_SEND, MS_SET_ORG),
    mappings=Mappings(attack=("T1684.002", "T1672", "T1566"), cis=("6.5.5",)),
    legitimate=(
        "RejectDirectSend on; or Direct Send allowed while a Partner connector lock covers every "
        "accepted domain (Exchange Online then refuses outside mail that does not come through the "
        "gateway, so Direct Send is no way around it)."
    ),
)
def reject_direct_send(ctx: CheckContext) -> Iterator[Result]:
    org = ctx.organization_config
    if org is None:
        yield result(Status.NOT_EVALUATED, "organization config",
                     "not evaluated: the export holds no organization config object", key="org")
        return
    resource = f"organization {org.display_name}"
    if org.RejectDirectSend is None:
        yield result(Status.NOT_EVALUATED, resource,
                     "not evaluated: the export does not contain RejectDirectSend (export it with "
                     "a current ExchangeOnlineManagement module)", org.ref("RejectDirectSend"),
                     key="org")
        return
    if org.RejectDirectSend:
        yield result(Status.PASS, resource, "Direct Send is rejected", org.ref("RejectDirectSend"),
                     key="org")
        return
    if not ctx.gateway.detected:
        yield result(Status.WARN, resource,
                     "Direct Send is allowed; with no gateway detected, Exchange Online's own "
                     "filtering judges such mail, but rejecting it removes an easy way to spoof "
                     "internal senders", org.ref("RejectDirectSend"), severity=Severity.MEDIUM,
                     key="org")
        return
    domains = [(d.DomainName or "").lower() for d in ctx.accepted_domains
               if d.DomainName and not d.OutboundOnly]
    locks = [v.lock for v in (connector_lock(c, ctx.gateway) for c in ctx.inbound_connectors) if v.lock]
    uncovered = [d for d in domains if not any(lock.covers(d) for lock in locks)]
    if not uncovered:
        yield result(Status.PASS, resource,
                     "Direct Send is allowed, but a Partner connector lock refuses mail that does "
                     "not come through it for every accepted domain",
                     org.ref("RejectDirectSend"), locks[0].connector.ref("SenderDomains"), key="org")
        return
    rules = ctx.transport_rules if ctx.available("Get-TransportRule") else ()
    rule_locks = [lock for rule in rules if (lock := rule_lock(rule, ctx.as_of))]
    if rule_locks and all(any(not r.domains or d in r.domains for r in rule_locks) for d in uncovered):
        yield result(Status.WARN, resource,
                     "Direct Send is allowed and only a transport rule "
                     f"('{rule_locks[0].rule.display_name}') stops outside mail not from the "
                     "gateway: the rule acts after the message is accepted",
                     org.ref("RejectDirectSend"), rule_locks[0].rule.ref("ExceptIfSenderIpRanges"),
                     severity=Severity.MEDIUM, key="org",
                     fix="Set-OrganizationConfig -RejectDirectSend $true")
        return
    yield result(Status.FAIL, resource,
                 "Direct Send is allowed and inbound mail is not locked down for "
                 f"{', '.join(uncovered)}: anyone can send mail as these domains straight to "
                 "Exchange Online, around the gateway", org.ref("RejectDirectSend"), key="org",
                 fix="Set-OrganizationConfig -RejectDirectSend $true")


# --- DOM-001: Microsoft's own domains (<tenant>.onmicrosoft.com) -----------------------------

MICROSOFT_SUFFIX = ".onmicrosoft.com"
MS_DOMAINS_FAQ = Reference(
    "Microsoft: Domains FAQ (the onmicrosoft.com domain every organisation keeps)",
    "https://learn.microsoft.com/en-us/microsoft-365/admin/setup/domains-faq",
)
MS_THIRD_PARTY = Reference(
    "Microsoft: Manage mail flow using a third-party cloud service with Exchange Online",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/manage-mail-flow-using-third-party-cloud",
)
MS_SET_INBOUND = Reference(
    "Microsoft: Set-InboundConnector (AssociatedAcceptedDomains)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-inboundconnector",
)
PROOFPOINT_ESSENTIALS_DIRECT = Reference(
    "Proofpoint Essentials: methods to prevent Exchange Online Protection direct delivery "
    "(the onmicrosoft.com domain)",
    "https://excelmicro.kayako.com/en-us/article/1011-proofpoint-essentials-methods-to-prevent-exchange-online-protection-direct-delivery",
)


def is_microsoft_domain(name: str) -> bool:
    """<tenant>.onmicrosoft.com and the hybrid <tenant>.mail.onmicrosoft.com: Microsoft's zone,
    whose MX is Exchange Online whatever the organisation's own domains publish."""
    return name.endswith(MICROSOFT_SUFFIX)


@check(
    id="DOM-001",
    title="The tenant's onmicrosoft.com domain is left out of the inbound lockdown",
    severity=Severity.MEDIUM,
    rationale=(
        "Every tenant keeps its initial domain <tenant>.onmicrosoft.com, and hybrid tenants a "
        "coexistence domain <tenant>.mail.onmicrosoft.com, and mailboxes have addresses in them. "
        "Their MX records are Microsoft's and point at Exchange Online, whatever the custom "
        "domains' MX says, so mail to those addresses never meets the gateway unless the inbound "
        "lockdown also covers them. The classic miss is a gateway connector limited with "
        "AssociatedAcceptedDomains to the custom domains, or a reject rule limited by recipient "
        "domain: the custom domains look locked while anyone who guesses the tenant name can send "
        "to user@<tenant>.onmicrosoft.com around the gateway. Exploiting it needs that address, "
        "which is often guessable from the tenant's name."
    ),
    remediation=Remediation(
        "Let the gateway's Partner connector cover every accepted domain (AssociatedAcceptedDomains "
        "empty), as Microsoft's lockdown guide describes, or add the onmicrosoft.com domains to its "
        "list; a reject rule limited by recipient domain needs them too. Mailboxes whose primary "
        "address is an onmicrosoft.com address receive outside mail only this way: give them a "
        "custom-domain primary address first.",
        'Set-InboundConnector -Identity "<gateway connector>" -AssociatedAcceptedDomains $null\n'
        "# or keep the list and add the Microsoft domains:\n"
        'Set-InboundConnector -Identity "<gateway connector>" -AssociatedAcceptedDomains '
        "contoso.com,contoso.onmicrosoft.com,contoso.mail.onmicrosoft.com",
    ),
    requires=("Get-AcceptedDomain", "Get-InboundConnector"),
    uses=("Get-TransportRule", "Get-Mailbox"),
    references=(MS_THIRD_PARTY, MS_SET_INBOUND, MS_DOMAINS_FAQ, PROOFPOINT_ESSENTIALS_DIRECT),
    mappings=Mappings(attack=("T1566", "T1684.002", "T1672")),
    needs_gateway=True,
    legitimate=(
        "A Partner connector for all sender domains with AssociatedAcceptedDomains empty (Microsoft's "
        "and the vendors' lockdown) or listing the onmicrosoft.com domains, or an enforcing reject "
        "rule with no recipient-domain limit, covers them; an API-only gateway has no route to lock. "
        "Only *.onmicrosoft.com accepted domains are judged here (CONN-001 judges every domain)."
    ),
)
def onmicrosoft_route(ctx: CheckContext) -> Iterator[Result]:
    microsoft = [(d, name) for d in ctx.accepted_domains
                 if is_microsoft_domain(name := d.normalised_name)]
    if not microsoft:
        yield result(Status.NOT_EVALUATED, "accepted domains",
                     "not evaluated: the export holds no <tenant>.onmicrosoft.com accepted domain; "
                     "every tenant has one, so the accepted domains were not exported completely",
                     key="none")
        return
    locks = [v.lock for v in (connector_lock(c, ctx.gateway) for c in ctx.inbound_connectors) if v.lock]
    rules_known = ctx.available("Get-TransportRule")
    rules = ctx.transport_rules if rules_known else ()
    rule_locks = [lock for rule in rules if (lock := rule_lock(rule, ctx.as_of)) is not None]
    mailboxes = ctx.objects("Get-Mailbox", Mailbox) if ctx.available("Get-Mailbox") else None
    for domain, name in microsoft:
        yield _microsoft_domain_result(ctx, domain, name, locks, rule_locks, rules_known, mailboxes)


def _microsoft_domain_result(ctx: CheckContext, domain: AcceptedDomain, name: str,
                             locks: list[ConnectorLock], rule_locks: list[RuleLock], rules_known: bool,
                             mailboxes: tuple[Mailbox, ...] | None) -> Result:
    resource = f"accepted domain {name}"
    if (no_route := api_only(ctx.gateway)) is not None:
        return result(Status.PASS, resource, f"not applicable: {no_route}", domain.ref("DomainName"),
                      key=name)
    if domain.OutboundOnly:
        return result(Status.PASS, resource, "receives no mail from outside (outbound only)",
                      domain.ref("OutboundOnly"), key=name)
    direct = (f"mail for {name} always reaches Exchange Online directly (Microsoft's MX), "
              "whatever the custom domains' MX says")
    covering = sorted((lock for lock in locks if lock.covers(name)), key=lambda lock: not lock.names_gateway)
    if covering:
        lock = covering[0]
        scope = ("every accepted domain (AssociatedAcceptedDomains empty)" if lock.covers_all_domains
                 else f"{name} among its AssociatedAcceptedDomains")
        whose = (f"{ctx.gateway.names}" if lock.names_gateway
                 else "the addresses it lists (CONN-001 judges whether they are the gateway's)")
        return result(Status.PASS, resource,
                      f"{direct}; Partner connector '{lock.connector.display_name}' covers {scope} and "
                      f"refuses mail that does not come from {whose}",
                      domain.ref("DomainName"), lock.connector.ref("AssociatedAcceptedDomains"), key=name)
    by_rule = [lock for lock in rule_locks if not lock.domains or name in lock.domains]
    if by_rule:
        rule = by_rule[0].rule
        return result(Status.PASS, resource,
                      f"{direct}; transport rule '{rule.display_name}' rejects outside mail to it that "
                      "does not come from the gateway (CONN-001 reports the limits of a rule-only lock)",
                      domain.ref("DomainName"), rule.ref("ExceptIfSenderIpRanges"), key=name)
    return _left_out(ctx, domain, name, direct, locks, rule_locks, rules_known, mailboxes)


def _left_out(ctx: CheckContext, domain: AcceptedDomain, name: str, direct: str,
              locks: list[ConnectorLock], rule_locks: list[RuleLock], rules_known: bool,
              mailboxes: tuple[Mailbox, ...] | None) -> Result:
    resource = f"accepted domain {name}"
    evidence = [domain.ref("DomainName")]
    gaps: list[str] = []
    fixes: list[str] = []
    for lock in locks:
        listed = sorted(lock.domains)
        gaps.append(f"Partner connector '{lock.connector.display_name}' is limited by "
                    f"AssociatedAcceptedDomains to {', '.join(listed)}")
        evidence.append(lock.connector.ref("AssociatedAcceptedDomains"))
        fixes.append(f"Set-InboundConnector -Identity {ps_literal(lock.connector.display_name)} "
                     "-AssociatedAcceptedDomains $null")
    for rule_lock_ in rule_locks:
        listed = sorted(rule_lock_.domains)
        gaps.append(f"transport rule '{rule_lock_.rule.display_name}' rejects only mail to "
                    f"{', '.join(listed)} (RecipientDomainIs)")
        evidence.append(rule_lock_.rule.ref("RecipientDomainIs"))
        fixes.append(f"Set-TransportRule -Identity {ps_literal(rule_lock_.rule.display_name)} "
                     f"-RecipientDomainIs {','.join(ps_literal(d) for d in [*listed, name])}")
    if gaps:
        message = (f"{direct}, and the inbound lockdown leaves it out: {'; '.join(gaps)}. Anyone who "
                   f"knows or guesses a user@{name} address delivers to that mailbox around "
                   f"{ctx.gateway.names}")
    else:
        message = (f"{direct}, and no Partner connector lock or enforcing reject rule covers it or "
                   "any other accepted domain (CONN-001 says why for each): anyone who knows or "
                   f"guesses a user@{name} address delivers to that mailbox around "
                   f"{ctx.gateway.names}")
        fixes.append(lockdown_command(ctx.gateway, ctx.inbound_connectors))
        if not rules_known:
            message += " (transport rules were not collected, so a rule-based lock was not looked for)"
    if mailboxes is not None:
        primary = [m for m in mailboxes
                   if (m.PrimarySmtpAddress or "").lower().rsplit("@", 1)[-1] == name]
        if primary:
            names = ", ".join(m.PrimarySmtpAddress or m.display_name for m in primary[:3])
            names += ", ..." if len(primary) > 3 else ""
            message += (f". {len(primary)} mailbox(es) have their primary address here ({names}): "
                        "outside mail to them arrives only this way, so give them a custom-domain "
                        "primary address before covering the domain")
            evidence.append(primary[0].ref("PrimarySmtpAddress"))
    return result(Status.FAIL, resource, message, *evidence, key=name, fix="\n".join(fixes))


# --- ORG-002: SMTP AUTH organisation-wide ----------------------------------------------------

MS_SMTP_AUTH = Reference(
    "Microsoft: Enable or disable SMTP AUTH in Exchange Online",
    "https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission",
)
MS_SET_TRANSPORT_CONFIG = Reference(
    "Microsoft: Set-TransportConfig (SmtpClientAuthenticationDisabled)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-transportconfig",
)
SMTP_AUTH_FIX = "Set-TransportConfig -SmtpClientAuthenticationDisabled $true"
PER_MAILBOX = ("per-mailbox settings (Get-CASMailbox SmtpClientAuthenticationDisabled) override it "
               "and are not in the evidence")


@check(
    id="ORG-002",
    title="SMTP AUTH client submission is enabled for the whole organisation",
    severity=Severity.MEDIUM,
    rationale=(
        "SMTP AUTH (authenticated client submission to smtp.office365.com) sends mail from inside "
        "Exchange Online: the message never meets the inbound gateway, so an account whose "
        "password or token is stolen can send internal phishing that the gateway never scans. It "
        "is also a target for password spraying. Exploiting it needs working credentials, so it "
        "is less exploitable than an open anonymous route; Microsoft recommends turning it off "
        "organisation-wide and enabling it only for the mailboxes that still need it."
    ),
    remediation=Remediation(
        "Disable SMTP AUTH for the organisation and enable it only on the mailboxes of devices or "
        "applications that cannot use anything else (or move them to a connector or OAuth).",
        SMTP_AUTH_FIX + "\n"
        "# only where still needed:\n"
        'Set-CASMailbox -Identity "<device mailbox>" -SmtpClientAuthenticationDisabled $false',
    ),
    requires=("Get-TransportConfig",),
    references=(MS_SMTP_AUTH, MS_SET_TRANSPORT_CONFIG),
    mappings=Mappings(attack=("T1078.004", "T1534", "T1110.003"), cis=("6.5.4",),
                      scuba=("MS.EXO.5.1v1",)),
    legitimate=(
        "SMTP AUTH off organisation-wide (SmtpClientAuthenticationDisabled $true, the default for "
        "tenants created since January 2020), with per-mailbox exceptions for the devices and "
        "applications that need it, as Microsoft recommends; those exceptions are not in the "
        "evidence and are not judged."
    ),
)
def smtp_auth(ctx: CheckContext) -> Iterator[Result]:
    configs = ctx.objects("Get-TransportConfig", TransportConfig)
    if not configs:
        yield result(Status.NOT_EVALUATED, "transport config",
                     "not evaluated: the export holds no transport config object", key="transport")
        return
    config = configs[0]
    resource = f"transport config {config.display_name}"
    value = config.SmtpClientAuthenticationDisabled
    if value is None:
        yield result(Status.NOT_EVALUATED, resource,
                     "not evaluated: the export does not contain a readable "
                     "SmtpClientAuthenticationDisabled", config.ref("SmtpClientAuthenticationDisabled"),
                     key="transport")
    elif value:
        yield result(Status.PASS, resource,
                     f"SMTP AUTH is disabled organisation-wide; {PER_MAILBOX}, so mailboxes enabled "
                     "one by one are not seen", config.ref("SmtpClientAuthenticationDisabled"),
                     key="transport")
    else:
        yield result(Status.FAIL, resource,
                     "SMTP AUTH is enabled organisation-wide (SmtpClientAuthenticationDisabled "
                     "false): any account whose credentials are stolen can submit mail that never "
                     f"meets the inbound gateway, and passwords can be sprayed against it; {PER_MAILBOX}, "
                     "so mailboxes disabled one by one are not seen",
                     config.ref("SmtpClientAuthenticationDisabled"), key="transport", fix=SMTP_AUTH_FIX)


# --- ORG-003: audit logging off or bypassed ---------------------------------------------------

AUDIT_CONFIG = "Get-AdminAuditLogConfig"
BYPASS = "Get-MailboxAuditBypassAssociation"
ORG_CONFIG = "Get-OrganizationConfig"
ROLE_ASSIGNMENTS = "Get-ManagementRoleAssignment"
UAL_FIX = "Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true"
MAILBOX_AUDIT_FIX = "Set-OrganizationConfig -AuditDisabled $false"
MS_AUDIT_ON_OFF = Reference(
    "Microsoft Purview: Turn auditing on or off (read the value in Exchange Online PowerShell)",
    "https://learn.microsoft.com/purview/audit-log-enable-disable",
)
MS_GET_ADMIN_AUDIT_LOG_CONFIG = Reference(
    "Microsoft: Get-AdminAuditLogConfig (UnifiedAuditLogIngestionEnabled is always False in "
    "Security & Compliance PowerShell)",
    "https://learn.microsoft.com/powershell/module/exchangepowershell/get-adminauditlogconfig",
)
MS_MAILBOX_AUDITING = Reference(
    "Microsoft Purview: Manage mailbox auditing (AuditDisabled, bypass associations)",
    "https://learn.microsoft.com/purview/audit-mailboxes",
)
MS_SET_AUDIT_BYPASS = Reference(
    "Microsoft: Set-MailboxAuditBypassAssociation",
    "https://learn.microsoft.com/powershell/module/exchangepowershell/set-mailboxauditbypassassociation",
)
MITRE_CLOUD_LOGS = Reference(
    "MITRE ATT&CK: Disable or Modify Cloud Logs (T1685.002, formerly T1562.008)",
    "https://attack.mitre.org/techniques/T1562/008/",
)
SCUBA_EXO = Reference(
    "CISA ScubaGear: Exchange Online baseline (MS.EXO.13.1v1 mailbox auditing)",
    "https://github.com/cisagov/ScubaGear/blob/main/PowerShell/ScubaGear/baselines/exo.md",
)
SCUBA_SECURITY_SUITE = Reference(
    "CISA ScubaGear: Security Suite baseline (MS.SECURITYSUITE.5.1v1 unified audit logging)",
    "https://github.com/cisagov/ScubaGear/blob/main/PowerShell/ScubaGear/baselines/securitysuite.md",
)
SC_CAVEAT = (
    "Microsoft notes the value is accurate only in Exchange Online PowerShell: in Security & "
    "Compliance PowerShell (Connect-IPPSSession) it is always False. The export script and live "
    "collection read it through Exchange Online; if this file was written in a Security & "
    "Compliance session, confirm with Get-AdminAuditLogConfig in Exchange Online PowerShell or on "
    "the Purview Audit page before acting"
)
# Roles that come with every mailbox through role assignment policies, not admin rights.
END_USER_ROLE_PREFIX = "my"


@check(
    id="ORG-003",
    title="Audit logging is off or bypassed, so changes to mail flow leave no trace",
    severity=Severity.HIGH,
    rationale=(
        "The audit log is what says who disabled the gateway's connector, added an SCL -1 rule, "
        "widened an allow list or forwarded a mailbox, and when. With unified audit log ingestion "
        "off, none of those admin changes and no user activity can be searched or reach a SIEM "
        "through the Management Activity API. With AuditDisabled true, mailbox auditing is off "
        "for every mailbox: mail read, sent as, deleted and inbox rules changed are not recorded. "
        "An account with an audit bypass association acts in every mailbox it can open, its own "
        "and others' through FullAccess, SendAs or admin search, without a mailbox audit record. "
        "Attackers switch these off after taking over an admin account (ATT&CK: Disable or "
        "Modify Cloud Logs). Using them needs admin rights, but once set they hide everything "
        "that follows."
    ),
    remediation=Remediation(
        "Turn unified audit logging and organisation-wide mailbox auditing back on, remove the "
        "audit bypass of every account, then search the audit log for who changed these settings "
        "(Set-AdminAuditLogConfig, Set-OrganizationConfig, Set-MailboxAuditBypassAssociation) and "
        "review what that account changed afterwards. Keep a bypass only for a trusted service "
        "account whose product requires it, and review it regularly, as Microsoft asks.",
        UAL_FIX + "\n" + MAILBOX_AUDIT_FIX + "\n"
        "Get-MailboxAuditBypassAssociation -ResultSize Unlimited | Where-Object { $_.AuditBypassEnabled } "
        "| Format-Table Name,WhenChanged\n"
        'Set-MailboxAuditBypassAssociation -Identity "<account>" -AuditBypassEnabled $false',
    ),
    # The organisation config is in every export; the audit cmdlets joined the export script
    # later, so each is optional and judged only from its own evidence.
    requires=(ORG_CONFIG,),
    uses=(AUDIT_CONFIG, BYPASS, ROLE_ASSIGNMENTS),
    references=(MS_AUDIT_ON_OFF, MS_GET_ADMIN_AUDIT_LOG_CONFIG, MS_MAILBOX_AUDITING, MS_SET_AUDIT_BYPASS,
                MITRE_CLOUD_LOGS, SCUBA_EXO, SCUBA_SECURITY_SUITE),
    mappings=Mappings(attack=("T1685.002", "T1562.008"), cis=("3.1.1", "6.1.1", "6.1.3"),
                      scuba=("MS.EXO.13.1v1", "MS.SECURITYSUITE.5.1v1", "MS.EXO.17.1v1",
                             "MS.DEFENDER.6.1v1")),
    legitimate=(
        "Microsoft's defaults: unified audit logging on, mailbox auditing on for the organisation "
        "(AuditDisabled false) and no account bypassing it. Microsoft documents bypass for trusted "
        "service accounts of applications that open mailboxes very often (archiving, backup), to "
        "cut noise, and warns that such an account then reads and deletes unlogged in every "
        "mailbox it can open; the evidence cannot tell such an account from any other, so each "
        "bypass is reported, medium unless the account holds admin roles, for its owner to confirm."
    ),
)
def audit_logging(ctx: CheckContext) -> Iterator[Result]:
    yield _unified_audit_log(ctx)
    yield _organisation_mailbox_auditing(ctx)
    yield from _audit_bypass(ctx)


def _absent(ctx: CheckContext, key: str, what: str) -> Result:
    state = ctx.evidence_state(key)
    return result(Status.NOT_EVALUATED, key, f"not evaluated: {key} is {state}, so {what} was not judged",
                  EvidenceRef(file=evidence_path(key), pointer="", note=state), key=f"evidence:{key}")


def _changed(when: datetime | None) -> str:
    if when is None:
        return ""
    utc = when.astimezone(UTC) if when.tzinfo else when
    return f" (last changed {utc:%Y-%m-%d %H:%M} UTC)"


def _unified_audit_log(ctx: CheckContext) -> Result:
    if not ctx.available(AUDIT_CONFIG):
        return _absent(ctx, AUDIT_CONFIG, "whether unified audit logging is on")
    configs = ctx.objects(AUDIT_CONFIG, AdminAuditLogConfig)
    if not configs:
        return result(Status.NOT_EVALUATED, "unified audit log",
                      f"not evaluated: {AUDIT_CONFIG} holds no readable object, though every "
                      "organisation has one", EvidenceRef(file=evidence_path(AUDIT_CONFIG), pointer="",
                                                          observed=0), key="ual")
    config = configs[0]
    value = config.UnifiedAuditLogIngestionEnabled
    evidence = [config.ref("UnifiedAuditLogIngestionEnabled")]
    if config.WhenChanged:
        evidence.append(config.ref("WhenChanged"))
    if value is None:
        return result(Status.NOT_EVALUATED, "unified audit log",
                      "not evaluated: the export does not contain UnifiedAuditLogIngestionEnabled",
                      *evidence, key="ual")
    if value:
        return result(Status.PASS, "unified audit log",
                      "unified audit log ingestion is on: admin changes and user activity are recorded",
                      *evidence, key="ual")
    return result(Status.FAIL, "unified audit log",
                  f"unified audit log ingestion is off (UnifiedAuditLogIngestionEnabled false)"
                  f"{_changed(config.WhenChanged)}: changes to connectors, transport rules, filter "
                  "policies and forwarding, and every user's activity, are not recorded for audit log "
                  "search, the Management Activity API or a SIEM. " + SC_CAVEAT,
                  *evidence, key="ual", fix=UAL_FIX)


def _organisation_mailbox_auditing(ctx: CheckContext) -> Result:
    org = ctx.organization_config
    if org is None:
        return result(Status.NOT_EVALUATED, "mailbox auditing",
                      f"not evaluated: {ORG_CONFIG} holds no readable organization config object",
                      EvidenceRef(file=evidence_path(ORG_CONFIG), pointer="", observed=0),
                      key="mailbox-audit")
    resource = f"mailbox auditing for organization {org.display_name}"
    if org.AuditDisabled is None:
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: the export does not contain AuditDisabled", org.ref("AuditDisabled"),
                      key="mailbox-audit")
    if not org.AuditDisabled:
        return result(Status.PASS, resource,
                      "mailbox auditing is on by default for every mailbox (AuditDisabled false)",
                      org.ref("AuditDisabled"), key="mailbox-audit")
    return result(Status.FAIL, resource,
                  "mailbox auditing is off for the whole organisation (AuditDisabled true): no mailbox "
                  "action is recorded, whatever a mailbox's AuditEnabled says, so mail read, sent as "
                  "or deleted and inbox rules created by an intruder leave no trace",
                  org.ref("AuditDisabled"), key="mailbox-audit", fix=MAILBOX_AUDIT_FIX)


def _audit_bypass(ctx: CheckContext) -> Iterator[Result]:
    if not ctx.available(BYPASS):
        yield _absent(ctx, BYPASS, "whether any account bypasses mailbox auditing")
        return
    accounts = ctx.objects(BYPASS, MailboxAuditBypassAssociation)
    if not accounts:
        yield result(Status.NOT_EVALUATED, "mailbox audit bypass",
                     f"not evaluated: {BYPASS} holds no account; it lists one entry per account, "
                     "bypassed or not, so the accounts were not exported",
                     EvidenceRef(file=evidence_path(BYPASS), pointer="", observed=0), key="bypass")
        return
    roles = (ctx.objects(ROLE_ASSIGNMENTS, ManagementRoleAssignment)
             if ctx.available(ROLE_ASSIGNMENTS) else None)
    unknown = [a for a in accounts if a.AuditBypassEnabled is None]
    bypassed = [a for a in accounts if a.AuditBypassEnabled]
    for account in unknown:
        yield result(Status.NOT_EVALUATED, f"account {account.display_name}",
                     "not evaluated: the export does not contain AuditBypassEnabled for this account",
                     account.ref("AuditBypassEnabled"), key=account.Identity or account.display_name)
    for account in bypassed:
        yield _bypass_result(ctx, account, roles)
    if not bypassed and not unknown:
        yield result(Status.PASS, "mailbox audit bypass",
                     f"none of the {len(accounts)} accounts listed bypasses mailbox audit logging",
                     EvidenceRef(file=evidence_path(BYPASS), pointer="", observed=len(accounts)),
                     key="bypass", summary=True)


def _admin_roles(account: MailboxAuditBypassAssociation,
                 roles: tuple[ManagementRoleAssignment, ...]) -> list[ManagementRoleAssignment]:
    """Enabled admin role assignments made to the account itself (not through a role group)."""
    names = {n.strip().lower() for n in (account.Name, account.Identity) if n and n.strip()}
    return [r for r in roles
            if r.Enabled is not False and r.Role
            and not r.Role.lower().startswith(END_USER_ROLE_PREFIX)
            and {(r.RoleAssignee or "").lower(), (r.RoleAssigneeName or "").lower()} & names]


def _bypass_result(ctx: CheckContext, account: MailboxAuditBypassAssociation,
                   roles: tuple[ManagementRoleAssignment, ...] | None) -> Result:
    name = account.display_name
    evidence = [account.ref("AuditBypassEnabled")]
    if account.WhenChanged:
        evidence.append(account.ref("WhenChanged"))
    message = (f"mailbox audit logging is bypassed for {name} (AuditBypassEnabled true)"
               f"{_changed(account.WhenChanged)}: nothing it does in any mailbox it can open, its "
               "own or others' through FullAccess, SendAs or admin search, is recorded: reading, "
               "sending as, deleting, changing inbox rules")
    admin = _admin_roles(account, roles) if roles is not None else []
    if admin:
        severity = Severity.HIGH
        held = ", ".join(sorted({r.Role or "" for r in admin}))
        message += (f". It holds admin roles ({held}): an administrator whose mailbox actions are "
                    "invisible")
        evidence.extend(r.ref("Role") for r in admin)
    else:
        severity = Severity.MEDIUM
        if roles is None:
            message += (f". Whether it holds admin roles is unknown ({ROLE_ASSIGNMENTS} is "
                        f"{ctx.evidence_state(ROLE_ASSIGNMENTS)}); it would be high if it does")
        else:
            message += (". No admin role is assigned to it directly (membership of role groups is "
                        "not in the evidence)")
        message += (". Microsoft documents bypass only for trusted service accounts that open "
                    "mailboxes very often, such as an archiving or backup product's; if this is "
                    "one, confirm it and review it regularly")
    identity = account.Identity or account.Name or name
    return result(Status.FAIL, f"account {name}", message, *evidence, severity=severity,
                  key=identity,
                  fix=f"Set-MailboxAuditBypassAssociation -Identity {ps_literal(identity)} "
                      "-AuditBypassEnabled $false")


CHECKS = (
    reject_direct_send,
    onmicrosoft_route,
    smtp_auth,
    audit_logging,
)
