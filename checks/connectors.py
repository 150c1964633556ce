"""Bypass vector: the inbound path. Can mail reach Exchange Online without the gateway?"""

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
from auditor.netutil import IpRange

from ._analysis import (
    analyse_conditions,
    connector_lock,
    filter_bypass,
    lockdown_command,
    rule_in_force,
    rule_lock,
)

MS_THIRD_PARTY = Reference(
    "Microsoft: Manage mail flow using a third-party cloud service with Exchange Online",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/manage-mail-flow-using-third-party-cloud",
)
MS_NEW_INBOUND = Reference(
    "Microsoft: New-InboundConnector",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-inboundconnector",
)
MIMECAST_LOCKDOWN = Reference(
    "Mimecast: Microsoft 365 Mail Lockdown",
    "https://mimecastsupport.zendesk.com/hc/en-us/articles/34000358773523-Connect-Process-Microsoft-365-Mail-Lockdown",
)


@check(
    id="CONN-001",
    title="Inbound mail is not restricted to the gateway",
    severity=Severity.HIGH,
    rationale=(
        "Every tenant has a public endpoint (<domain>.mail.protection.outlook.com) that accepts "
        "mail for its accepted domains whatever the MX records say. Unless an enabled Partner "
        "inbound connector for all sender domains restricts delivery to the gateway's IP "
        "addresses or TLS certificate, anyone can send straight to Exchange Online and skip "
        "the gateway's filtering, sandboxing and URL rewriting. A transport rule that rejects "
        "mail not from the gateway is a partial lock: the message is still accepted over SMTP "
        "and the rule can be disabled, set to audit, expire or be pre-empted."
    ),
    remediation=Remediation(
        "Create (or fix) a Partner inbound connector for sender domain * that accepts mail only "
        "from the gateway, by its published IP ranges or its TLS certificate name, as the "
        "gateway vendor's lockdown guide describes. Leave AssociatedAcceptedDomains empty so it "
        "covers every accepted domain, including <tenant>.onmicrosoft.com.",
        'New-InboundConnector -Name "Inbound from gateway" -ConnectorType Partner '
        "-SenderDomains * -RestrictDomainsToIPAddresses $true "
        "-SenderIPAddresses <gateway ranges> -RequireTls $true\n"
        "# or, by certificate:\n"
        'Set-InboundConnector -Identity "Inbound from gateway" -RestrictDomainsToCertificate $true '
        "-TlsSenderCertificateName <gateway certificate name> -RequireTls $true",
    ),
    requires=("Get-InboundConnector", "Get-AcceptedDomain"),
    uses=("Get-TransportRule",),
    references=(MS_THIRD_PARTY, MS_NEW_INBOUND, MIMECAST_LOCKDOWN),
    mappings=Mappings(attack=("T1566", "T1684.002", "T1672")),
    needs_gateway=True,
)
def inbound_lockdown(ctx: CheckContext) -> Iterator[Result]:
    verdicts = [connector_lock(c, ctx.gateway) for c in ctx.inbound_connectors]
    locks = [v.lock for v in verdicts if v.lock is not None]
    rules_known = ctx.available("Get-TransportRule")
    rules = ctx.transport_rules if rules_known else ()
    rule_locks = [lock for rule in rules if (lock := rule_lock(rule, ctx.as_of)) is not None]
    open_bypass = [
        r for r in rules
        if filter_bypass(r) and rule_in_force(r, ctx.as_of) is None
        and not analyse_conditions(r, ctx.gateway).gated
    ]
    rejected_evidence = [ref for v in verdicts for ref in v.reasons]
    for domain in ctx.accepted_domains:
        name = (domain.DomainName or "").lower().rstrip(".")
        if not name:
            continue
        resource = f"accepted domain {name}"
        if domain.OutboundOnly:
            yield result(Status.PASS, resource, "receives no mail from outside (outbound only)",
                         domain.ref("OutboundOnly"), key=name)
            continue
        covering = [lock for lock in locks if lock.covers(name)]
        gateway_locks = [lock for lock in covering if lock.names_gateway]
        if gateway_locks:
            lock = gateway_locks[0]
            how = " and ".join(part for part, on in (("IP address", lock.by_ip),
                                                     ("TLS certificate", lock.by_certificate)) if on)
            evidence = [lock.connector.ref("RestrictDomainsToIPAddresses" if lock.by_ip
                                           else "RestrictDomainsToCertificate")]
            if lock.by_ip:
                evidence.append(lock.connector.ref("SenderIPAddresses"))
            if lock.by_certificate:
                evidence.append(lock.connector.ref("TlsSenderCertificateName"))
            yield result(Status.PASS, resource,
                         f"locked to {ctx.gateway.names} by {how}: Partner connector "
                         f"'{lock.connector.display_name}' (sender domains *)",
                         *evidence, key=name)
            continue
        if covering:
            lock = covering[0]
            yield result(Status.WARN, resource,
                         f"Partner connector '{lock.connector.display_name}' restricts delivery, "
                         f"but to IP addresses or a certificate that are not {ctx.gateway.names}'s "
                         "published ones: confirm they are the gateway's (or add them to a "
                         "--gateway-file profile)",
                         lock.connector.ref("SenderIPAddresses"),
                         lock.connector.ref("TlsSenderCertificateName"),
                         severity=Severity.MEDIUM, key=name)
            continue
        partial = [lock for lock in rule_locks if not lock.domains or name in lock.domains]
        if partial:
            rule = partial[0].rule
            yield result(Status.WARN, resource,
                         f"no connector lock; transport rule '{rule.display_name}' rejects outside "
                         "mail not from listed IPs. Exchange Online still accepts such mail over "
                         "SMTP before the rule runs, and the rule can be disabled, set to audit, "
                         "expire or be pre-empted by a higher-priority rule",
                         rule.ref("ExceptIfSenderIpRanges"), rule.ref("State"),
                         severity=Severity.MEDIUM, key=name, fix=lockdown_command(ctx.gateway))
            continue
        message = (f"no enabled Partner connector for all sender domains restricts mail for {name} "
                   f"to {ctx.gateway.names}: mail sent straight to the tenant's Exchange Online "
                   "endpoint skips the gateway")
        severity = Severity.HIGH
        evidence = list(rejected_evidence) or [domain.ref("DomainName", note="no inbound connectors")]
        if open_bypass:
            severity = Severity.CRITICAL
            message += (f"; and transport rule '{open_bypass[0].display_name}' switches spam "
                        "filtering off for mail an outsider can send, so such mail is not filtered "
                        "at all")
            evidence.append(open_bypass[0].ref("SetSCL"))
        if not rules_known:
            message += " (transport rules were not collected, so a rule-based lock was not looked for)"
        yield result(Status.FAIL, resource, message, *evidence, severity=severity, key=name,
                     fix=lockdown_command(ctx.gateway))


@check(
    id="CONN-002",
    title="The gateway's inbound connector is disabled",
    severity=Severity.HIGH,
    rationale=(
        "A disabled connector neither recognises the gateway's mail as partner mail nor "
        "enforces any restriction: a connector 'disabled for troubleshooting' quietly removes "
        "the lockdown and any Enhanced Filtering configured on it."
    ),
    remediation=Remediation(
        "Re-enable the gateway's connector after confirming its settings, and find out who "
        "disabled it and when (unified audit log, Set-InboundConnector).",
        'Set-InboundConnector -Identity "<connector name>" -Enabled $true',
    ),
    requires=("Get-InboundConnector",),
    references=(MS_NEW_INBOUND, MS_THIRD_PARTY),
    mappings=Mappings(attack=("T1685", "T1562.001")),
    needs_gateway=True,
)
def gateway_connector_enabled(ctx: CheckContext) -> Iterator[Result]:
    found = False
    for conn in ctx.inbound_connectors:
        names_gateway = bool(conn.TlsSenderCertificateName) and ctx.gateway.is_active(
            ctx.gateway.certificate_owner(conn.TlsSenderCertificateName or ""))
        for text in conn.SenderIPAddresses:
            try:
                names_gateway = names_gateway or ctx.gateway.covers(IpRange.parse(text))
            except ValueError:
                continue
        if not names_gateway:
            continue
        found = True
        resource = f"inbound connector {conn.display_name}"
        if conn.Enabled is True:
            yield result(Status.PASS, resource, f"the connector for {ctx.gateway.names} is enabled",
                         conn.ref("Enabled"), key=conn.display_name)
        elif conn.Enabled is False:
            changed = f" (last changed {conn.WhenChanged:%Y-%m-%d})" if conn.WhenChanged else ""
            yield result(Status.FAIL, resource,
                         f"the connector for {ctx.gateway.names} is disabled{changed}",
                         conn.ref("Enabled"), conn.ref("WhenChanged"), key=conn.display_name,
                         fix=f"Set-InboundConnector -Identity {ps_literal(conn.display_name)} -Enabled $true")
        else:
            yield result(Status.NOT_EVALUATED, resource,
                         "not evaluated: the export does not say whether the connector is enabled",
                         conn.ref("Enabled"), key=conn.display_name)
    if not found:
        yield result(Status.PASS, "inbound connectors",
                     f"no inbound connector names {ctx.gateway.names}'s addresses or certificate, "
                     "so none is disabled; CONN-001 reports whether inbound mail is locked down",
                     key="none", summary=True)


CHECKS = (
    inbound_lockdown,
    gateway_connector_enabled,
)
