"""Bypass vectors of the connectors: can mail reach Exchange Online without the gateway, is the
gateway's own connector trusting more than the gateway, and does outbound mail leave some other way?"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
from auditor.gateways import GatewayContext, GatewayProfile
from auditor.models import EvidenceRef, ExoObject, InboundConnector, OutboundConnector, TransportRule
from auditor.netutil import IpRange, IpSet
from auditor.values import sender_domain_entry

from ._analysis import (
    analyse_conditions,
    api_only,
    connector_cidrs,
    connector_lock,
    filter_bypass,
    lockdown_command,
    predicate_names,
    range_width_severity,
    rule_in_force,
    rule_lock,
    smart_host_owner,
    user_documented,
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
SOPHOS_TLS = Reference(
    "Sophos: Enforce TLS connections (the certificate Sophos Email presents)",
    "https://docs.sophos.com/central/customer/help/en-us/ManageYourProducts/EmailSecurity/SecureMessagePolicy/EmailEnforceTLSConnections/index.html",
)
MS_INBOUND_FAQ = Reference(
    "Microsoft: Inbound connector FAQ",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/use-connectors-to-configure-mail-flow/inbound-connector-faq",
)
MS_EFC = Reference(
    "Microsoft: Enhanced Filtering for Connectors in Exchange Online",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/use-connectors-to-configure-mail-flow/enhanced-filtering-for-connectors",
)
MS_SET_INBOUND = Reference(
    "Microsoft: Set-InboundConnector (EFSkipIPs, EFSkipLastIP, EFUsers, EFTestMode)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-inboundconnector",
)
MS_NEW_OUTBOUND = Reference(
    "Microsoft: New-OutboundConnector",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-outboundconnector",
)
MS_NEW_TRANSPORT_RULE = Reference(
    "Microsoft: New-TransportRule (RouteMessageOutboundConnector)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-transportrule",
)
MS_SEARCH_AUDIT_LOG = Reference(
    "Microsoft: Search-UnifiedAuditLog",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/search-unifiedauditlog",
)
MS_ALERT_POLICIES = Reference(
    "Microsoft: Alert policies (Suspicious connector activity)",
    "https://learn.microsoft.com/en-us/purview/alert-policies",
)
MS_OAUTH_CONNECTOR_ABUSE = Reference(
    "Microsoft: Malicious OAuth applications used to compromise email servers and spread spam "
    "(attackers added an inbound connector and transport rules)",
    "https://www.microsoft.com/en-us/security/blog/2022/09/22/malicious-oauth-applications-used-to-compromise-email-servers-and-spread-spam/",
)



def _parse_range(text: str) -> IpRange | None:
    try:
        return IpRange.parse(text)
    except ValueError:
        return None


def _worst(*severities: Severity) -> Severity:
    return max(severities, key=lambda s: s.rank)


def _inbound(conn: InboundConnector) -> str:
    return f"inbound connector {conn.display_name}"


def _outbound(conn: OutboundConnector) -> str:
    return f"outbound connector {conn.display_name}"


def _exported(obj: ExoObject, prop: str) -> bool:
    """Whether the export holds the property at all (a Select-Object export may leave it out)."""
    return any(key.lower() == prop.lower() for key in obj.raw)


def names_gateway(conn: InboundConnector, gateway: GatewayContext) -> bool:
    """Whether a connector's certificate name or one of its sender ranges is the active gateway's."""
    if conn.TlsSenderCertificateName and gateway.is_active(
            gateway.certificate_owner(conn.TlsSenderCertificateName)):
        return True
    return any(rng is not None and gateway.covers(rng)
               for rng in map(_parse_range, conn.SenderIPAddresses))


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
    legitimate=(
        "An enabled Partner connector for sender domains * restricted to the gateway's published "
        "IP ranges or its certificate (what Microsoft's and the vendors' lockdown guides "
        "describe) passes for every accepted domain it covers; a transport-rule-only lock is a "
        "warning, not a failure; outbound-only domains receive nothing."
    ),
)
def inbound_lockdown(ctx: CheckContext) -> Iterator[Result]:
    if (no_route := api_only(ctx.gateway)) is not None:
        for domain in ctx.accepted_domains:
            if name := domain.normalised_name:
                yield result(Status.PASS, f"accepted domain {name}", f"not applicable: {no_route}",
                             domain.ref("DomainName"), key=name)
        return
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
        name = domain.normalised_name
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
                         severity=Severity.MEDIUM, key=name,
                         fix=lockdown_command(ctx.gateway, ctx.inbound_connectors))
            continue
        message = (f"no enabled Partner connector for all sender domains restricts mail for {name} "
                   f"to {ctx.gateway.names}: mail sent straight to the tenant's Exchange Online "
                   "endpoint skips the gateway")
        severity = Severity.HIGH
        evidence = list(rejected_evidence) or [domain.ref("DomainName", note="no inbound connectors")]
        if open_bypass:
            severity = Severity.CRITICAL
            names = ", ".join(f"'{r.display_name}'" for r in open_bypass)
            several = len(open_bypass) > 1
            message += (f"; and transport rule{'s' if several else ''} {names} "
                        f"switch{'' if several else 'es'} spam filtering off for mail an outsider "
                        "can send, so such mail is not filtered at all")
            evidence.extend(r.ref("SetSCL") for r in open_bypass)
        if not rules_known:
            message += " (transport rules were not collected, so a rule-based lock was not looked for)"
        yield result(Status.FAIL, resource, message, *evidence, severity=severity, key=name,
                     fix=lockdown_command(ctx.gateway, ctx.inbound_connectors))


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
    legitimate=(
        "An enabled gateway connector; a disabled connector that names no gateway address or "
        "certificate (a leftover of another service) is not this check's concern (CONN-004 judges "
        "what it would admit)."
    ),
)
def gateway_connector_enabled(ctx: CheckContext) -> Iterator[Result]:
    found = False
    for conn in ctx.inbound_connectors:
        if not names_gateway(conn, ctx.gateway):
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


# --- CONN-003: trust in a certificate every customer of the gateway shares ------------------


@check(
    id="CONN-003",
    title="An inbound connector trusts a certificate name shared by every customer of the gateway",
    severity=Severity.MEDIUM,
    rationale=(
        "Some gateways present one certificate name to every tenant they deliver to (Mimecast's "
        "*.mimecast.com, Sophos's *.prod.hydra.sophos.com), and their lockdown guides tell "
        "customers to trust it. A connector that trusts that name and nothing else accepts mail "
        "from any customer of the same gateway, an attacker's own trial account included, as if "
        "it had passed through your account and your policies. Microsoft warns that third-party "
        "cloud services share their infrastructure among many customers. Requiring the "
        "gateway's delivery IP ranges as well adds a second condition, and customer-specific "
        "certificates or IP addresses, where the vendor offers them, bind the trust to your account."
    ),
    remediation=Remediation(
        "Also restrict the connector to the gateway's published delivery IP ranges "
        "(RestrictDomainsToIPAddresses with SenderIPAddresses), or use a customer-specific "
        "certificate or IP addresses where the vendor offers them. Keep Exchange Online's own "
        "filtering active behind the gateway with Enhanced Filtering (CONN-005) rather than "
        "SCL -1 rules.",
        'Set-InboundConnector -Identity "<connector name>" -RestrictDomainsToIPAddresses $true '
        "-SenderIPAddresses <gateway ranges>",
    ),
    requires=("Get-InboundConnector",),
    references=(MS_THIRD_PARTY, MIMECAST_LOCKDOWN, SOPHOS_TLS, MS_INBOUND_FAQ),
    mappings=Mappings(attack=("T1199", "T1566")),
    legitimate=(
        "A connector that trusts the gateway's shared certificate name and also enforces the "
        "gateway's delivery IP ranges (RestrictDomainsToIPAddresses), a certificate name that is "
        "specific to one customer, and a disabled connector."
    ),
)
def shared_certificate_trust(ctx: CheckContext) -> Iterator[Result]:
    connectors = ctx.inbound_connectors
    examined = 0
    for conn in connectors:
        name = (conn.TlsSenderCertificateName or "").strip()
        if not name:
            continue
        examined += 1
        resource = _inbound(conn)
        cert = conn.ref("TlsSenderCertificateName")
        owner = ctx.gateway.certificate_owner(name)
        if owner is None or not owner.certificate_shared:
            whose = (f"{owner.name}'s certificate, which its profile says is not shared between "
                     "customers" if owner else "a name no known gateway shares between its customers")
            yield result(Status.PASS, resource, f"trusts the certificate name {name}: {whose}", cert,
                         key=conn.display_name)
            continue
        if conn.Enabled is False:
            yield result(Status.PASS, resource,
                         f"trusts {owner.name}'s shared certificate name {name}, but the connector "
                         "is disabled and admits nothing (CONN-002 reports a disabled gateway connector)",
                         cert, conn.ref("Enabled"), key=conn.display_name)
            continue
        if conn.RestrictDomainsToIPAddresses is True and conn.SenderIPAddresses:
            residual = "" if owner.customer_specific_ips else (
                f"; {owner.vendor}'s delivery ranges are shared by its customers too, a residual "
                "risk of any shared gateway (CONN-004 checks the ranges themselves)")
            yield result(Status.PASS, resource,
                         f"trusts {owner.name}'s shared certificate name {name} only together with "
                         f"the IP ranges in SenderIPAddresses (RestrictDomainsToIPAddresses){residual}",
                         cert, conn.ref("RestrictDomainsToIPAddresses"), conn.ref("SenderIPAddresses"),
                         key=conn.display_name)
            continue
        yield _shared_certificate_warning(ctx, conn, name, owner)
    if not examined:
        yield result(Status.PASS, "inbound connectors",
                     f"none of the {len(connectors)} inbound connectors trusts a TLS certificate name",
                     key="none", summary=True)


def _shared_certificate_warning(ctx: CheckContext, conn: InboundConnector, name: str,
                                owner: GatewayProfile) -> Result:
    guidance = owner.references[0][1] if owner.references else MS_THIRD_PARTY.url
    unrestricted = ("lists no sender IP addresses" if not conn.SenderIPAddresses else
                    "does not enforce its sender IP addresses (RestrictDomainsToIPAddresses is "
                    f"{conn.RestrictDomainsToIPAddresses})")
    message = (f"trusts {name}, a certificate name {owner.name} presents for every customer, and "
               f"{unrestricted}: any {owner.vendor} customer, an attacker's own account included, "
               "can deliver mail this connector accepts as having come through your gateway")
    on_premises = (conn.ConnectorType or "").lower() == "onpremises"
    if on_premises:
        message += ("; as an OnPremises connector it gives that mail the rights of your own servers "
                    "(relay through the tenant, attribution to your organisation)")
    message += (f". {owner.vendor}'s guidance: {guidance}; Microsoft: third-party cloud services "
                f"share their infrastructure among many customers ({MS_THIRD_PARTY.url})")
    if conn.SenderIPAddresses:
        ranges = ""
    elif ctx.gateway.is_active(owner) and (cidrs := connector_cidrs(ctx.gateway)):
        ranges = " -SenderIPAddresses " + ",".join(cidrs)
    else:
        ranges = " -SenderIPAddresses <the gateway's delivery IP ranges>"
    fix = (f"Set-InboundConnector -Identity {ps_literal(conn.display_name)} "
           f"-RestrictDomainsToIPAddresses $true{ranges}")
    return result(Status.WARN, _inbound(conn), message,
                  conn.ref("TlsSenderCertificateName"), conn.ref("SenderIPAddresses"),
                  conn.ref("RestrictDomainsToIPAddresses"),
                  severity=Severity.HIGH if on_premises else Severity.MEDIUM,
                  key=conn.display_name, fix=fix)


# --- CONN-004: sender IP ranges that are not the gateway's ----------------------------------


@check(
    id="CONN-004",
    title="An inbound connector accepts mail from IP ranges that are not the gateway's",
    severity=Severity.HIGH,
    rationale=(
        "SenderIPAddresses decides which connecting servers a connector treats as its partner or "
        "as your own servers. On the connector that locks the tenant to the gateway, every extra "
        "range is a way in around the gateway. Ranges that belong to no known gateway and that "
        "you have not documented in a profile file, another vendor's or Exchange Online's shared "
        "ranges, and very wide ranges let whoever sends from them in. A careless change or an "
        "attacker with admin rights widens the list, and nothing else records it."
    ),
    remediation=Remediation(
        "Remove every range that is not the gateway's published delivery range. Keep a legitimate "
        "partner's or on-premises relay's addresses on its own connector, and document them in "
        "a profile file (--gateway-file, with --gateway NAME to keep the gateway) so the audit "
        "recognises them.",
        'Set-InboundConnector -Identity "<connector name>" -SenderIPAddresses @{Remove="<range>"}',
    ),
    requires=("Get-InboundConnector",),
    references=(MS_NEW_INBOUND, MS_THIRD_PARTY, MIMECAST_LOCKDOWN),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1566")),
    legitimate=(
        "The gateway's published delivery ranges, addresses listed in the user's own profile "
        "file (an on-premises relay, a partner), and connectors that recognise mail by "
        "certificate only."
    ),
)
def inbound_sender_ranges(ctx: CheckContext) -> Iterator[Result]:
    connectors = ctx.inbound_connectors
    for conn in connectors:
        if not conn.SenderIPAddresses:
            yield result(Status.PASS, _inbound(conn),
                         "lists no sender IP addresses (it recognises mail by certificate or sender "
                         "domain)", conn.ref("SenderIPAddresses"), key=conn.display_name)
            continue
        lock = connector_lock(conn, ctx.gateway).lock
        locks_by_ip = lock is not None and lock.by_ip
        flagged = [r for text in conn.SenderIPAddresses
                   if (r := _sender_range_result(ctx, conn, text, locks_by_ip)) is not None]
        yield from flagged
        if not flagged:
            documented = " (or documented in your profile file)" if ctx.gateway.mode != "auto" else ""
            yield result(Status.PASS, _inbound(conn),
                         f"every sender IP range is {ctx.gateway.names}'s published range{documented}",
                         conn.ref("SenderIPAddresses"), key=conn.display_name)
    if not connectors:
        yield result(Status.PASS, "inbound connectors",
                     "there are no inbound connectors, so none accepts mail by IP address",
                     key="none", summary=True)


def _sender_range_result(ctx: CheckContext, conn: InboundConnector, text: str,
                         locks_by_ip: bool) -> Result | None:
    """A finding for one SenderIPAddresses entry, or None when it is the gateway's or documented."""
    resource = f"{_inbound(conn)}: {text}"
    key = f"{conn.display_name}:{text}"
    entry = conn.ref_item("SenderIPAddresses", text)
    rng = _parse_range(text)
    if rng is None:
        return result(Status.WARN, resource,
                      f"sender IP entry {text!r} could not be read as an address or range; check "
                      "it in the admin centre", entry, severity=Severity.MEDIUM, key=key)
    owner = ctx.gateway.owner(rng)
    if ctx.gateway.covers(rng) or (owner is not None and user_documented(owner)):
        return None
    if owner is not None and owner.deployment == "exchange-online":
        status, severity = Status.FAIL, Severity.CRITICAL
        message = (f"{text} is Exchange Online's own sending range: every Microsoft 365 tenant "
                   "connects from it, so any of them can deliver mail this connector accepts")
    elif owner is not None:
        status, severity = Status.FAIL, _worst(Severity.HIGH, range_width_severity(rng))
        message = (f"{text} belongs to {owner.name}, not the gateway in use ({ctx.gateway.names}): "
                   f"a former gateway's range or a sign of tampering; every {owner.vendor} "
                   "customer can connect from it")
    else:
        severity = range_width_severity(rng)
        message = (f"{text} (/{rng.prefix_len}, {rng.size} addresses) belongs to no known gateway "
                   "and is not in your profile file")
        if locks_by_ip:
            severity = _worst(Severity.HIGH, severity)
            message += (": this connector restricts inbound mail to its IP ranges, so servers in "
                        "this range deliver straight to Exchange Online around the gateway")
        else:
            message += (": confirm it is a partner's or your own relay and document it in a profile "
                        "file (--gateway-file with --gateway NAME)")
        status = Status.FAIL if severity.rank >= Severity.HIGH.rank else Status.WARN
        if not ctx.gateway.detected:
            status = Status.WARN
            message += ("; no gateway is known to compare it with (name it with --gateway NAME or "
                        "--gateway-file FILE)")
    if conn.Enabled is False:
        status, severity = Status.WARN, Severity.LOW
        message += " (the connector is disabled now; enabling it again reopens this)"
    fix = (f"Set-InboundConnector -Identity {ps_literal(conn.display_name)} "
           f"-SenderIPAddresses @{{Remove={ps_literal(text)}}}")
    return result(status, resource, message, entry, severity=severity, key=key, fix=fix)


# --- CONN-005: Enhanced Filtering for Connectors ---------------------------------------------

# Exchange Online skips private hops itself; listing them in EFSkipIPs is not supported.
PRIVATE_RANGES = IpSet.from_strings(("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


@check(
    id="CONN-005",
    title="Enhanced Filtering for Connectors is not set up on the gateway's inbound connector",
    severity=Severity.MEDIUM,
    rationale=(
        "Behind an MX gateway, Exchange Online sees the gateway's IP address as the sender of "
        "every message, so SPF, DMARC, spoof intelligence and IP reputation judge the gateway, "
        "not the real sender. Enhanced Filtering (skip listing) makes Exchange Online look past "
        "the gateway's hop. Switched off, limited to a few recipients (EFUsers) or in test mode, "
        "it leaves Exchange Online's filtering blind for most mail. Skip-listing ranges that are "
        "not the gateway's makes Exchange Online look past real senders to Received headers they "
        "wrote themselves."
    ),
    remediation=Remediation(
        "Turn on Enhanced Filtering on the gateway's inbound connector: skip the last hop, or list "
        "exactly the gateway's delivery ranges; apply it to every recipient (EFUsers empty) and "
        "not in test mode. Then retire SCL -1 rules for the gateway, as Microsoft advises. Not "
        "needed when the MX points at Exchange Online (no gateway, or an API-only product).",
        'Set-InboundConnector -Identity "<connector name>" -EFSkipLastIP $true -EFUsers $null '
        "-EFTestMode $false\n"
        '# or list the gateway\'s ranges: Set-InboundConnector -Identity "<connector name>" '
        "-EFSkipLastIP $false -EFSkipIPs <gateway ranges>",
    ),
    requires=("Get-InboundConnector",),
    references=(MS_EFC, MS_SET_INBOUND, MS_THIRD_PARTY),
    mappings=Mappings(attack=("T1685", "T1562.001")),
    legitimate=(
        "Skip listing the last hop or exactly the gateway's delivery ranges, for every recipient, "
        "as Microsoft recommends; and no skip listing at all where no MX gateway is in front (MX "
        "at Exchange Online, an API-only product)."
    ),
)
def enhanced_filtering(ctx: CheckContext) -> Iterator[Result]:
    if not ctx.gateway.detected:
        yield result(Status.NOT_EVALUATED, "gateway",
                     "not evaluated: no gateway is known, so whether mail reaches Exchange Online "
                     "through another hop (the only case where Enhanced Filtering is needed) is "
                     "unknown; name the gateway with --gateway NAME or --gateway-file FILE",
                     key="gateway")
        return
    if not any(p.deployment == "mx" for p in ctx.gateway.active):
        kinds = ", ".join(sorted({p.deployment for p in ctx.gateway.active}))
        yield result(Status.PASS, "gateway",
                     f"{ctx.gateway.names} does not receive the tenant's mail in front of Exchange "
                     f"Online (deployment: {kinds}): mail arrives from the real sender, whose "
                     "address Exchange Online sees, so Enhanced Filtering is not needed",
                     key="gateway")
        return
    connectors = ctx.inbound_connectors
    found = False
    for conn in connectors:
        if names_gateway(conn, ctx.gateway):
            found = True
            yield _enhanced_filtering_result(ctx, conn)
    if not found:
        yield result(Status.FAIL, "inbound connectors",
                     f"none of the {len(connectors)} inbound connectors that could be read names "
                     f"{ctx.gateway.names}'s addresses or certificate, so Enhanced Filtering (set per "
                     "connector) is not configured for the gateway's mail: Exchange Online judges "
                     "the gateway's IP address instead of the real sender's. Create the gateway's "
                     "connector (CONN-001) with skip listing",
                     EvidenceRef(file="exo/Get-InboundConnector.json", pointer="",
                                 observed=len(connectors), note="no connector names the gateway"),
                     key="none", fix=lockdown_command(ctx.gateway) + " -EFSkipLastIP $true")


def _enhanced_filtering_result(ctx: CheckContext, conn: InboundConnector) -> Result:
    resource, key = _inbound(conn), conn.display_name
    identity = ps_literal(conn.display_name)
    if not (_exported(conn, "EFSkipLastIP") or _exported(conn, "EFSkipIPs")):
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: the export holds neither EFSkipLastIP nor EFSkipIPs (export "
                      "Get-InboundConnector with all its properties)", conn.ref("EFSkipLastIP"),
                      key=key)
    if conn.Enabled is False:
        return result(Status.WARN, resource,
                      "the connector is disabled, so Enhanced Filtering configured on it does not "
                      "apply (CONN-002)", conn.ref("Enabled"), severity=Severity.MEDIUM, key=key)
    skip_last = conn.EFSkipLastIP is True
    if not skip_last and not conn.EFSkipIPs:
        return result(Status.FAIL, resource,
                      f"Enhanced Filtering is off (EFSkipLastIP is {conn.EFSkipLastIP}, EFSkipIPs is "
                      f"empty): Exchange Online sees {ctx.gateway.names}'s IP address as the sender "
                      "of every message, so SPF, DMARC and spoof intelligence judge the gateway "
                      "instead of the real sender", conn.ref("EFSkipLastIP"), conn.ref("EFSkipIPs"),
                      severity=Severity.MEDIUM, key=key,
                      fix=f"Set-InboundConnector -Identity {identity} -EFSkipLastIP $true")
    problems: list[tuple[Status, Severity, str, EvidenceRef, str]] = []
    if not skip_last:  # EFSkipIPs is used only when EFSkipLastIP is $false
        problems += [p for text in conn.EFSkipIPs if (p := _skip_ip_problem(ctx, conn, text))]
    if conn.EFUsers:
        problems.append((Status.WARN, Severity.MEDIUM,
                         f"Enhanced Filtering applies only to the {len(conn.EFUsers)} address(es) in "
                         "EFUsers, and only to messages whose recipients are all listed; everyone "
                         "else's mail is judged by the gateway's IP address", conn.ref("EFUsers"),
                         f"Set-InboundConnector -Identity {identity} -EFUsers $null"))
    if conn.EFTestMode is True:
        problems.append((Status.WARN, Severity.MEDIUM,
                         "Enhanced Filtering is in test mode (EFTestMode), so Exchange Online does not "
                         "act on the real sender it finds", conn.ref("EFTestMode"),
                         f"Set-InboundConnector -Identity {identity} -EFTestMode $false"))
    if not problems:
        how = ("skips the last hop (EFSkipLastIP)" if skip_last
               else f"skips {ctx.gateway.names}'s delivery ranges (EFSkipIPs)")
        return result(Status.PASS, resource,
                      f"Enhanced Filtering {how} for every recipient: Exchange Online judges the real "
                      "sender", conn.ref("EFSkipLastIP" if skip_last else "EFSkipIPs"), key=key)
    failed = any(status is Status.FAIL for status, *_ in problems)
    return result(Status.FAIL if failed else Status.WARN, resource,
                  "; ".join(text for _, _, text, _, _ in problems),
                  *(ref for *_, ref, _ in problems),
                  severity=_worst(*(severity for _, severity, *_ in problems)), key=key,
                  fix="\n".join(dict.fromkeys(fix for *_, fix in problems)))


def _skip_ip_problem(ctx: CheckContext, conn: InboundConnector,
                     text: str) -> tuple[Status, Severity, str, EvidenceRef, str] | None:
    """What is wrong with one EFSkipIPs entry, or None when it is the gateway's."""
    ref = conn.ref_item("EFSkipIPs", text)
    fix = (f"Set-InboundConnector -Identity {ps_literal(conn.display_name)} "
           f"-EFSkipIPs @{{Remove={ps_literal(text)}}}")
    rng = _parse_range(text)
    if rng is None:
        return (Status.WARN, Severity.MEDIUM,
                f"EFSkipIPs entry {text!r} could not be read as an address or range", ref, fix)
    owner = ctx.gateway.owner(rng)
    if ctx.gateway.covers(rng) or (owner is not None and user_documented(owner)):
        return None
    if PRIVATE_RANGES.covers(rng):
        return (Status.WARN, Severity.LOW,
                f"EFSkipIPs lists the private range {text}: Exchange Online skips private hops by "
                "itself and does not support listing them", ref, fix)
    if owner is not None and owner.deployment == "exchange-online":
        whose = "is Exchange Online's own range, which Microsoft does not support skip-listing"
    else:
        whose = f"is not {ctx.gateway.names}'s" + (f" (it belongs to {owner.name})" if owner else "")
    return (Status.FAIL, Severity.HIGH,
            f"EFSkipIPs entry {text} {whose}: for mail from there Exchange Online looks past the real "
            "sender to Received headers it wrote, so authentication is judged against a forged source",
            ref, fix)


# --- CONN-006: outbound routing around the gateway -------------------------------------------


@check(
    id="CONN-006",
    title="Outbound mail is routed to a host that is not the gateway, or the gateway's outbound "
          "connector is disabled",
    severity=Severity.HIGH,
    rationale=(
        "An outbound connector decides where Exchange Online hands mail over. One that sends "
        "mail to a smart host that is not the gateway, whether for every domain, for a few, or "
        "only for the messages a transport rule picks (IsTransportRuleScoped with "
        "RouteMessageOutboundConnector), is a quiet way to intercept or exfiltrate mail that no "
        "mailbox owner sees. A disabled gateway outbound connector sends mail straight out, "
        "skipping the gateway's outbound scanning, DLP and archiving."
    ),
    remediation=Remediation(
        "Confirm every smart host is the gateway's or a documented partner's; disable the "
        "connectors and routing rules that are not, and find out who created them. Re-enable the "
        "gateway's outbound connector. Document legitimate hosts in a profile file (smart_hosts, "
        "--gateway-file with --gateway NAME) so the audit recognises them.",
        'Set-OutboundConnector -Identity "<connector name>" -Enabled $false\n'
        'Disable-TransportRule -Identity "<rule routing to it>"\n'
        'Set-OutboundConnector -Identity "<gateway connector>" -Enabled $true',
    ),
    requires=("Get-OutboundConnector",),
    uses=("Get-TransportRule",),
    references=(MS_NEW_OUTBOUND, MS_NEW_TRANSPORT_RULE, MS_THIRD_PARTY),
    mappings=Mappings(attack=("T1557", "T1114.003", "T1020")),
    legitimate=(
        "Relaying to the gateway's own outbound smart hosts, hosts documented in the user's "
        "profile file, forced-TLS partner connectors that deliver to the recipients' own MX, "
        "rule-scoped connectors no rule in force uses, and a disabled spare next to an enabled "
        "gateway connector."
    ),
)
def outbound_routing(ctx: CheckContext) -> Iterator[Result]:
    connectors = ctx.outbound_connectors
    rules = ctx.transport_rules if ctx.available("Get-TransportRule") else None
    relays = [c for c in connectors if c.Enabled is True and _relays_to_gateway(c, ctx.gateway)]
    for conn in connectors:
        yield _outbound_result(ctx, conn, rules, relays)
    if not connectors:
        yield result(Status.PASS, "outbound connectors",
                     "there are no outbound connectors: Exchange Online delivers outbound mail "
                     "itself, to each recipient's MX", key="none", summary=True)


def _relays_to_gateway(conn: OutboundConnector, gateway: GatewayContext) -> bool:
    return conn.UseMXRecord is not True and bool(conn.SmartHosts) and all(
        gateway.is_active(smart_host_owner(h, gateway)) for h in conn.SmartHosts)


def _recipient_scope(conn: OutboundConnector) -> str:
    if conn.IsTransportRuleScoped is True:
        return "the mail transport rules route to it"
    domains = [d.strip() for d in conn.RecipientDomains if d.strip()]
    if "*" in domains:
        return "mail for every recipient domain (*)"
    parts = [", ".join(domains)] if domains else []
    if conn.AllAcceptedDomains:
        parts.append("all accepted domains")
    return "mail for " + " and ".join(parts) if parts else "no mail (no recipient domain)"


def _outbound_result(ctx: CheckContext, conn: OutboundConnector, rules: tuple[TransportRule, ...] | None,
                     relays: list[OutboundConnector]) -> Result:
    resource, key = _outbound(conn), conn.display_name
    identity = ps_literal(conn.display_name)
    to_gateway = _relays_to_gateway(conn, ctx.gateway)
    if conn.Enabled is None:
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: the export does not say whether the connector is enabled",
                      conn.ref("Enabled"), key=key)
    if conn.Enabled is False:
        if to_gateway and not relays:
            changed = f" (last changed {conn.WhenChanged:%Y-%m-%d})" if conn.WhenChanged else ""
            return result(Status.FAIL, resource,
                          f"the outbound connector to {ctx.gateway.names} is disabled{changed}: "
                          "outbound mail leaves Exchange Online directly, skipping the gateway's "
                          "outbound scanning, DLP and archiving",
                          conn.ref("Enabled"), conn.ref("SmartHosts"), key=key,
                          fix=f"Set-OutboundConnector -Identity {identity} -Enabled $true")
        also = f" ('{relays[0].display_name}' relays to the gateway)" if to_gateway else ""
        return result(Status.PASS, resource, f"the connector is disabled and routes no mail{also}",
                      conn.ref("Enabled"), key=key)
    scope = _recipient_scope(conn)
    if conn.UseMXRecord is True or not conn.SmartHosts:
        return result(Status.PASS, resource,
                      f"delivers {scope} to the recipients' own MX (no third-party host receives "
                      "it); the gateway's outbound scanning does not see that mail",
                      conn.ref("UseMXRecord"), conn.ref("RecipientDomains"), key=key)
    owners = {h: smart_host_owner(h, ctx.gateway) for h in conn.SmartHosts}
    strangers = [h for h, o in owners.items()
                 if not (ctx.gateway.is_active(o) or (o is not None and user_documented(o)))]
    archives = [h for h in strangers if ctx.gateway.is_active(ctx.gateway.archive_owner(h))]
    if archives and archives == strangers:
        return result(Status.PASS, resource,
                      f"relays {scope} to {', '.join(conn.SmartHosts)}, the archive (journaling) "
                      f"service of {ctx.gateway.names}", conn.ref("SmartHosts"), key=key)
    if not strangers:
        whose = ctx.gateway.names if to_gateway else "the gateway's or documented in your profile file"
        return result(Status.PASS, resource,
                      f"relays {scope} to {', '.join(conn.SmartHosts)} ({whose})",
                      conn.ref("SmartHosts"), key=key)
    hosts = ", ".join(_host_label(h, owners[h]) for h in strangers)
    evidence = [conn.ref_item("SmartHosts", h) for h in strangers]
    disable = f"Set-OutboundConnector -Identity {identity} -Enabled $false"
    if conn.IsTransportRuleScoped is True:
        routed = _rule_routing(ctx, conn, rules, hosts)
        if isinstance(routed, Result):
            return routed
        status, severity, message, refs, fix = routed
        evidence += [conn.ref("IsTransportRuleScoped"), *refs]
    elif not conn.AllAcceptedDomains and not any(d.strip() for d in conn.RecipientDomains):
        return result(Status.PASS, resource,
                      f"sends to {hosts}, but is scoped to no recipient domain and no transport rule, "
                      "so it routes no mail", conn.ref("RecipientDomains"),
                      conn.ref("IsTransportRuleScoped"), key=key)
    else:
        everything = "*" in (d.strip() for d in conn.RecipientDomains)
        status, severity = Status.FAIL, Severity.CRITICAL if everything else Severity.HIGH
        message = (f"sends {scope} to {hosts}, not {ctx.gateway.names}: the audit cannot tie that "
                   "host to your gateway, so it is an interception or exfiltration route that the "
                   "gateway's outbound scanning, DLP and archiving never see")
        evidence.append(conn.ref("RecipientDomains"))
        fix = disable
    if (conn.ConnectorType or "").lower() == "onpremises":
        status, severity = Status.WARN, Severity.LOW
        message += ("; it is an OnPremises connector: if these are your own servers (hybrid), "
                    "document them in a profile file (smart_hosts) to clear this")
    elif not ctx.gateway.detected:
        status, severity = Status.WARN, Severity.MEDIUM
        message += ("; no gateway is known to compare it with: if it is your gateway, name it with "
                    "--gateway NAME or --gateway-file FILE")
    return result(status, resource, message, *evidence, severity=severity, key=key, fix=fix)


def _host_label(host: str, owner: GatewayProfile | None) -> str:
    return f"{host} ({owner.name})" if owner else host


def _routes_to(rule: TransportRule, conn: OutboundConnector) -> bool:
    target = (rule.RouteMessageOutboundConnector or "").strip().lower()
    return bool(target) and target in {(conn.Name or "").lower(), (conn.Identity or "").lower()}


def _rule_routing(ctx: CheckContext, conn: OutboundConnector, rules: tuple[TransportRule, ...] | None,
                  hosts: str) -> Result | tuple[Status, Severity, str, list[EvidenceRef], str]:
    """The verdict on a rule-scoped connector to a foreign host: which rules in force use it."""
    resource, key = _outbound(conn), conn.display_name
    if rules is None:
        return result(Status.WARN, resource,
                      f"sends the mail transport rules pick to {hosts}, not {ctx.gateway.names}; "
                      "transport rules were not collected, so which mail that is could not be checked",
                      conn.ref("SmartHosts"), conn.ref("IsTransportRuleScoped"),
                      severity=Severity.HIGH, key=key)
    routing = [r for r in rules if _routes_to(r, conn)]
    in_force = [r for r in routing if rule_in_force(r, ctx.as_of) is None]
    if not in_force:
        idle = "; ".join(f"'{r.display_name}': {rule_in_force(r, ctx.as_of)}" for r in routing)
        return result(Status.PASS, resource,
                      f"sends to {hosts} only the mail transport rules route to it, and no rule in "
                      "force does (" + (idle or "no rule names it") + ")",
                      conn.ref("IsTransportRuleScoped"), *(r.ref("State") for r in routing), key=key)
    broad = [r for r in in_force
             if all(n in ("FromScope", "SentToScope") for n in predicate_names(r))]
    names = ", ".join(f"'{r.display_name}'" for r in in_force)
    picked = "every message they see" if broad else "the messages their conditions pick"
    message = (f"transport rule(s) {names} route {picked} to {hosts}, not {ctx.gateway.names}: a "
               "quiet interception or exfiltration route that no mailbox owner sees")
    if any((r.SentToScope or "").lower() != "notinorganization" for r in in_force):
        message += ", and it can include mail to your own mailboxes"
    fix = "\n".join([*(f"Disable-TransportRule -Identity {ps_literal(r.display_name)} -Confirm:$false"
                       for r in in_force),
                     f"Set-OutboundConnector -Identity {ps_literal(conn.display_name)} -Enabled $false"])
    return (Status.FAIL, Severity.CRITICAL if broad else Severity.HIGH, message,
            [r.ref("RouteMessageOutboundConnector") for r in in_force], fix)


# --- CONN-007: connectors and rules changed recently ----------------------------------------

_CONNECTOR_OPERATIONS = {
    "inbound connector": "New-InboundConnector,Set-InboundConnector",
    "outbound connector": "New-OutboundConnector,Set-OutboundConnector",
    "transport rule": "New-TransportRule,Set-TransportRule,Enable-TransportRule,Disable-TransportRule",
}


@check(
    id="CONN-007",
    title="Connectors or transport rules were created or changed recently",
    severity=Severity.INFO,
    rationale=(
        "Attackers who take over an admin account, or an app with Exchange rights, add inbound "
        "connectors and transport rules to relay mail or reroute it, change the gateway's "
        "connector, and remove their objects afterwards (Microsoft, September 2022). Whatever "
        "the other checks conclude, a connector or rule created or changed shortly before the "
        "evidence was collected deserves a look: was the change planned, and who made it?"
    ),
    remediation=Remediation(
        "Confirm each listed change with its owner and in the unified audit log, and revert what "
        "nobody can explain. Keep the 'Suspicious connector activity' alert policy on. The "
        "review window is --changed-within DAYS (default 30), counted back from the time the "
        "evidence was collected.",
        "Search-UnifiedAuditLog -StartDate <date> -EndDate <date> -Operations "
        "New-InboundConnector,Set-InboundConnector,New-OutboundConnector,Set-OutboundConnector,"
        "New-TransportRule,Set-TransportRule,Enable-TransportRule",
    ),
    requires=("Get-InboundConnector", "Get-OutboundConnector", "Get-TransportRule"),
    references=(MS_SEARCH_AUDIT_LOG, MS_ALERT_POLICIES, MS_OAUTH_CONNECTOR_ABUSE),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1098"), scuba=("MS.SECURITYSUITE.4.1v1",)),
    legitimate=(
        "Nothing is judged bad: changes older than the review window (--changed-within, default "
        "30 days) pass, recent ones are listed for review at info severity."
    ),
)
def recent_changes(ctx: CheckContext) -> Iterator[Result]:
    examined = 0
    for conn in (*ctx.inbound_connectors, *ctx.outbound_connectors):
        examined += 1
        kind = "inbound connector" if isinstance(conn, InboundConnector) else "outbound connector"
        changed = "WhenChanged" if conn.WhenChanged or not conn.WhenChangedUTC else "WhenChangedUTC"
        created = "WhenCreated" if conn.WhenCreated or not conn.WhenCreatedUTC else "WhenCreatedUTC"
        yield _change_result(ctx, kind, conn, changed, created, who="")
    for rule in ctx.transport_rules:
        examined += 1
        yield _change_result(ctx, "transport rule", rule, "WhenChanged", None,
                             who=rule.LastModifiedBy or "")
    if not examined:
        yield result(Status.PASS, "connectors and transport rules",
                     "there are no connectors or transport rules, so none changed recently",
                     key="none", summary=True)


def _change_result(ctx: CheckContext, kind: str, obj: ExoObject, changed_prop: str,
                   created_prop: str | None, *, who: str) -> Result:
    resource, key = f"{kind} {obj.display_name}", f"{kind}:{obj.display_name}"
    window: timedelta = ctx.settings.changed_within
    since = ctx.as_of - window
    changed: datetime | None = getattr(obj, changed_prop)
    created: datetime | None = getattr(obj, created_prop) if created_prop else None
    if changed is None:
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: the export holds no WhenChanged for this {kind}, so whether it "
                      f"changed in the {window.days} days before collection is unknown",
                      obj.ref("WhenChanged"), key=key)
    if changed < since:
        return result(Status.PASS, resource,
                      f"last changed on {changed:%Y-%m-%d}, {(ctx.as_of - changed).days} days before "
                      f"the evidence was collected (outside the {window.days}-day review window)",
                      obj.ref(changed_prop), key=key)
    is_new = created is not None and created >= since
    moment = created if is_new and created is not None else changed
    age = max((ctx.as_of - moment).days, 0)
    by = f", last modified by {who}" if who else ""
    message = (f"{'created' if is_new else 'changed'} on {moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC, "
               f"{age} day(s) "
               f"before the evidence was collected (review window {window.days} days){by}: "
               "confirm the change was planned and authorised")
    evidence = [obj.ref(changed_prop)] + ([obj.ref(created_prop)] if is_new and created_prop else [])
    start = (moment - timedelta(days=1)).strftime("%Y-%m-%d")
    end = (ctx.as_of + timedelta(days=1)).strftime("%Y-%m-%d")
    fix = (f"Search-UnifiedAuditLog -StartDate {ps_literal(start)} -EndDate {ps_literal(end)} "
           f"-Operations {_CONNECTOR_OPERATIONS[kind]} -ObjectIds {ps_literal(obj.display_name)}")
    return result(Status.WARN, resource, message, *evidence, key=key, fix=fix)


# --- CONN-008 / CONN-009: internal trust on inbound connectors -------------------------------

MS_HYBRID_CONNECTORS = Reference(
    "Microsoft: Configure mail flow using connectors (OnPremises connectors and the Hybrid "
    "Configuration wizard)",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/use-connectors-to-configure-mail-flow/use-connectors-to-configure-mail-flow",
)
MS_SET_INBOUND_TRUST = Reference(
    "Microsoft: Set-InboundConnector (TreatMessagesAsInternal, CloudServicesMailEnabled)",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-inboundconnector",
)
MC1226222 = Reference(
    "Message center MC1226222, as summarised by mwpro: prevent and fix on-premises connector "
    "configuration (certificates outside accepted domains, IP addresses shared with other tenants)",
    "https://mwpro.co.uk/blog/2026/02/04/updated-prevent-fix-guidance-for-on-premises-connectors-configuration-mc1226222",
)
TRUSTWAVE_INTEGRATED = Reference(
    "Trustwave: MailMarshal Cloud Integrated mode for Microsoft 365 (an OnPremises-type connector "
    "by the vendor's design)",
    "https://support.trustwave.com/MailMarshalCloud/kb/item.asp?id=21244",
)
INTERNAL_FLAGS = ("TreatMessagesAsInternal", "CloudServicesMailEnabled")


def _is_on_premises(conn: InboundConnector) -> bool:
    return (conn.ConnectorType or "").lower() == "onpremises"


def _accepted_names(ctx: CheckContext) -> list[str]:
    names = (d.normalised_name for d in ctx.accepted_domains)
    return [n.removeprefix("*.") for n in names if n]


def _in_accepted_domain(certificate: str, accepted: list[str]) -> bool:
    name = certificate.strip().lower().rstrip(".").removeprefix("*.")
    return any(name == d or name.endswith("." + d) for d in accepted)


@dataclass(frozen=True)
class ConnectorSources:
    """Who a connector recognises as its sender: the organisation's own servers (private ranges,
    ranges in the user's profile file, a certificate in an accepted domain), the gateway in use,
    or anyone else."""

    own: tuple[str, ...]
    gateway: tuple[str, ...]
    foreign: tuple[tuple[str, EvidenceRef], ...]

    @property
    def only_own(self) -> bool:
        return bool(self.own) and not self.gateway and not self.foreign


def connector_sources(ctx: CheckContext, conn: InboundConnector, accepted: list[str]) -> ConnectorSources:
    own: list[str] = []
    gateway: list[str] = []
    foreign: list[tuple[str, EvidenceRef]] = []
    certificate = (conn.TlsSenderCertificateName or "").strip()
    if certificate:
        if _in_accepted_domain(certificate, accepted):
            own.append(f"certificate {certificate} (an accepted domain)")
        elif ctx.gateway.is_active(ctx.gateway.certificate_owner(certificate)):
            gateway.append(f"certificate {certificate}")
        else:
            foreign.append((f"certificate {certificate}", conn.ref("TlsSenderCertificateName")))
    for text in conn.SenderIPAddresses:
        rng = _parse_range(text)
        owner = ctx.gateway.owner(rng) if rng is not None else None
        if rng is None:
            foreign.append((f"{text} (unreadable)", conn.ref_item("SenderIPAddresses", text)))
        elif PRIVATE_RANGES.covers(rng):
            own.append(f"{text} (private)")
        elif owner is not None and user_documented(owner) and not ctx.gateway.is_active(owner):
            own.append(f"{text} (your profile file)")
        elif ctx.gateway.covers(rng):
            gateway.append(text)
        else:
            whose = f" ({owner.name}'s)" if owner is not None else ""
            foreign.append((f"{text}{whose}", conn.ref_item("SenderIPAddresses", text)))
    return ConnectorSources(tuple(own), tuple(gateway), tuple(foreign))


@check(
    id="CONN-008",
    title="An inbound connector treats outside mail as internal, or Partner connectors overlap",
    severity=Severity.HIGH,
    rationale=(
        "TreatMessagesAsInternal makes Exchange Online treat mail through a connector as internal "
        "when its sender claims an accepted domain (Microsoft: 'internal messages bypass antispam "
        "filtering'); CloudServicesMailEnabled keeps the X-MS-Exchange-Organization-* headers a "
        "message arrives with, which Exchange otherwise strips from outside mail, so the sender "
        "can set its own spam verdict and authentication result. Both are meant for mail from "
        "the organisation's own on-premises servers (the Hybrid Configuration wizard sets "
        "CloudServicesMailEnabled on its connector pair; TreatMessagesAsInternal is for "
        "on-premises servers that are not Exchange). On a Partner connector, or one whose source "
        "is not your own servers, they relax anti-spoofing for outside mail. Several enabled "
        "Partner connectors for the same sender and recipient domains make which connector, and "
        "so which restriction, applies to a message depend on where it comes from. How Exchange "
        "Online picks among overlapping connectors is not fully documented, so each overlap is "
        "reported for review, and a restriction-free duplicate of the lock as a failure."
    ),
    remediation=Remediation(
        "Clear TreatMessagesAsInternal and CloudServicesMailEnabled on every connector that is "
        "not the hybrid (or on-premises) connector from your own servers; re-run the Hybrid "
        "Configuration wizard instead of setting CloudServicesMailEnabled by hand. Keep one "
        "enabled Partner connector per sender and recipient scope, and remove the old gateway's "
        "connector once a migration is over.",
        'Set-InboundConnector -Identity "<connector name>" -TreatMessagesAsInternal $false '
        "-CloudServicesMailEnabled $false\n"
        'Set-InboundConnector -Identity "<old gateway connector>" -Enabled $false',
    ),
    requires=("Get-InboundConnector", "Get-AcceptedDomain"),
    references=(MS_SET_INBOUND_TRUST, MS_HYBRID_CONNECTORS, MS_THIRD_PARTY),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1684.002", "T1672")),
    legitimate=(
        "Hybrid: OnPremises connectors whose source is the organisation's own servers (private "
        "ranges, ranges in your profile file, or a certificate in an accepted domain) with "
        "TreatMessagesAsInternal or CloudServicesMailEnabled, as the Hybrid Configuration wizard "
        "and Microsoft's on-premises guidance set them. Two enabled Partner connectors for the same "
        "scope that both restrict delivery (one per gateway during a migration) are a low warning; "
        "a partner's own connector for its sender domain beside the lock is a medium warning "
        "unless it is restricted to the partner too, and no finding at all when it is."
    ),
)
def internal_trust(ctx: CheckContext) -> Iterator[Result]:
    accepted = _accepted_names(ctx)
    connectors = ctx.inbound_connectors
    for conn in connectors:
        yield _internal_flags_result(ctx, conn, accepted)
    yield from _overlapping_partners(ctx, connectors)


def _internal_flags_result(ctx: CheckContext, conn: InboundConnector, accepted: list[str]) -> Result:
    resource, key = _inbound(conn), conn.display_name
    flags = [prop for prop in INTERNAL_FLAGS if getattr(conn, prop) is True]
    refs = [conn.ref(prop) for prop in INTERNAL_FLAGS]
    if not flags:
        if not any(_exported(conn, prop) for prop in INTERNAL_FLAGS):
            return result(Status.NOT_EVALUATED, resource,
                          "not evaluated: the export holds neither TreatMessagesAsInternal nor "
                          "CloudServicesMailEnabled for this connector", *refs, key=key)
        unknown = [p for p in INTERNAL_FLAGS if getattr(conn, p) is None]
        if unknown:
            return result(Status.NOT_EVALUATED, resource,
                          f"not evaluated: {' and '.join(unknown)} could not be read", *refs, key=key)
        return result(Status.PASS, resource,
                      "neither TreatMessagesAsInternal nor CloudServicesMailEnabled is set", *refs, key=key)
    shown = " and ".join(flags)
    if conn.ConnectorType is None:
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: {shown} is set, but the export does not say the connector's "
                      "type", conn.ref("ConnectorType"), *refs, key=key)
    fix = (f"Set-InboundConnector -Identity {ps_literal(conn.display_name)} "
           + " ".join(f"-{flag} $false" for flag in flags))
    if _is_on_premises(conn):
        sources = connector_sources(ctx, conn, accepted)
        if sources.only_own:
            hybrid = " (created by the Hybrid Configuration wizard)" if (
                (conn.ConnectorSource or "").lower() == "hybridwizard") else ""
            return result(Status.PASS, resource,
                          f"{shown} set on an OnPremises connector{hybrid} whose source is your own "
                          f"servers ({', '.join(sources.own)}): the hybrid mail flow these settings "
                          "are meant for", *refs, conn.ref("ConnectorType"), key=key)
        others = [text for text, _ in sources.foreign] + list(sources.gateway)
        message = (f"{shown} set on an OnPremises connector whose source is not only your own "
                   f"servers ({', '.join(others) or 'it names no sending address or certificate'}): "
                   "mail from there is treated as internal or keeps the headers it arrives with "
                   "(CONN-009 judges the source)")
        evidence = [*refs, conn.ref("SenderIPAddresses"), conn.ref("TlsSenderCertificateName")]
    else:
        message = (f"{shown} set on a {conn.ConnectorType} connector: Microsoft documents these "
                   "settings for mail from your own on-premises servers only; here they apply to "
                   "mail from outside, which is then "
                   + ("treated as internal when its sender claims an accepted domain (anti-spam "
                      "and anti-spoofing relaxed)" if "TreatMessagesAsInternal" in flags else "")
                   + (" and " if len(flags) == 2 else "")
                   + ("allowed to carry X-MS-Exchange-Organization-* headers the sender wrote "
                      "(its own spam verdict and authentication result)"
                      if "CloudServicesMailEnabled" in flags else ""))
        evidence = [*refs, conn.ref("ConnectorType")]
    if conn.Enabled is False:
        return result(Status.WARN, resource,
                      message + " (the connector is disabled now; enabling it again reopens this)",
                      *evidence, severity=Severity.LOW, key=key, fix=fix)
    if conn.Enabled is None:
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: the export does not say whether the connector is enabled; "
                      + message, conn.ref("Enabled"), *evidence, key=key)
    return result(Status.FAIL, resource, message, *evidence, key=key, fix=fix)


def _sender_scope(conn: InboundConnector) -> set[str]:
    return {sender_domain_entry(s)[0] for s in conn.SenderDomains if s.strip()}


def _domains_overlap(first: set[str], second: set[str]) -> bool:
    def within(name: str, pattern: str) -> bool:
        return pattern == "*" or name == pattern or (
            pattern.startswith("*.") and name.endswith(pattern[1:]))
    return any(within(a, b) or within(b, a) for a in first for b in second)


def _scopes_overlap(first: InboundConnector, second: InboundConnector) -> bool:
    recipients_a = {d.lower().rstrip(".") for d in first.AssociatedAcceptedDomains}
    recipients_b = {d.lower().rstrip(".") for d in second.AssociatedAcceptedDomains}
    recipients = not recipients_a or not recipients_b or bool(recipients_a & recipients_b)
    return recipients and _domains_overlap(_sender_scope(first), _sender_scope(second))


def _restricts(conn: InboundConnector) -> bool:
    """Whether the connector refuses its senders' mail from anywhere but its addresses or certificate."""
    return (bool(conn.RestrictDomainsToIPAddresses) and bool(conn.SenderIPAddresses)) or (
        bool(conn.RestrictDomainsToCertificate) and bool(conn.TlsSenderCertificateName))


def _overlapping_partners(ctx: CheckContext, connectors: tuple[InboundConnector, ...]) -> Iterator[Result]:
    partners = [c for c in connectors
                if c.Enabled is True and (c.ConnectorType or "").lower() == "partner"]
    pairs = [(a, b) for i, a in enumerate(partners) for b in partners[i + 1:] if _scopes_overlap(a, b)]
    for first, second in pairs:
        resource = f"inbound connectors {first.display_name} and {second.display_name}"
        key = f"overlap:{first.display_name}|{second.display_name}"
        locks = {c.display_name: _restricts(c) for c in (first, second)}
        evidence = [ref for c in (first, second)
                    for ref in (c.ref("SenderDomains"), c.ref("AssociatedAcceptedDomains"))]
        overlap = (f"two enabled Partner connectors, '{first.display_name}' and '{second.display_name}', "
                   "cover overlapping sender and recipient domains")
        if all(locks.values()):
            yield result(Status.WARN, resource,
                         f"{overlap}, and both restrict delivery, so mail from either one's addresses "
                         "or certificate is admitted: expected while moving from one gateway to "
                         "another; disable the old gateway's connector when the move is over",
                         *evidence, severity=Severity.LOW, key=key)
        elif any(locks.values()):
            lock = next(n for n, on in locks.items() if on)
            loose = next(c for c in (first, second) if not locks[c.display_name])
            same = _sender_scope(first) == _sender_scope(second)
            narrower = "" if same else (
                f" for some of the same senders ({', '.join(sorted(_sender_scope(loose)))}): a "
                "partner's own connector is common, but it should be restricted to the partner's "
                "addresses or certificate too")
            yield result(Status.FAIL if same else Status.WARN, resource,
                         f"{overlap}; '{lock}' restricts delivery but '{loose.display_name}' does "
                         f"not{narrower}. Exchange Online attributes each message to one connector by "
                         "its connecting address, certificate and sender domain, so mail it attributes "
                         f"to '{loose.display_name}' is held to no restriction, and the lock's effect "
                         "depends on where mail comes from",
                         *evidence, loose.ref("RestrictDomainsToIPAddresses"), severity=Severity.MEDIUM,
                         key=key, fix=f"Set-InboundConnector -Identity {ps_literal(loose.display_name)} "
                                      + ("-Enabled $false" if same else
                                         "-RestrictDomainsToCertificate $true "
                                         "-TlsSenderCertificateName <the partner's certificate name>"))
        else:
            yield result(Status.WARN, resource,
                         f"{overlap}, and neither restricts delivery (CONN-001 reports the missing "
                         "lock): merge them so one connector's settings apply", *evidence,
                         severity=Severity.LOW, key=key)
    if not pairs:
        yield result(Status.PASS, "inbound Partner connectors",
                     f"no two of the {len(partners)} enabled Partner connectors cover the same sender "
                     "and recipient domains", key="overlap", summary=True)


@check(
    id="CONN-009",
    title="An OnPremises inbound connector trusts servers that are not the organisation's own",
    severity=Severity.HIGH,
    rationale=(
        "Exchange Online attributes mail that matches an OnPremises connector to the organisation "
        "itself: it may relay through the tenant to any Internet address and is treated as coming "
        "from your own servers. That trust is meant for your on-premises mail servers, identified "
        "by a certificate in one of your accepted domains or by your own addresses. Microsoft "
        "calls OnPremises connectors identified by IP addresses shared with other tenants, or by "
        "a certificate that is not in an accepted domain, anti-patterns; attackers who took over "
        "tenants have added such connectors to relay spam as their victims (Microsoft, September "
        "2022)."
    ),
    remediation=Remediation(
        "Identify OnPremises connectors by a certificate in one of your accepted domains (or your "
        "own public addresses, documented in a profile file); make a third party's connector a "
        "Partner connector; disable or remove a connector nobody can explain and check the audit "
        "log for who created it.",
        'Set-InboundConnector -Identity "<connector name>" -TlsSenderCertificateName mail.contoso.com '
        "-RequireTls $true -SenderIPAddresses $null\n"
        'Set-InboundConnector -Identity "<third-party connector>" -ConnectorType Partner\n'
        'Set-InboundConnector -Identity "<unexplained connector>" -Enabled $false',
    ),
    requires=("Get-InboundConnector", "Get-AcceptedDomain"),
    references=(MS_INBOUND_FAQ, MC1226222, MS_NEW_INBOUND, MS_OAUTH_CONNECTOR_ABUSE,
                TRUSTWAVE_INTEGRATED),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1199", "T1566")),
    legitimate=(
        "OnPremises connectors identified by a certificate in an accepted domain (what the Hybrid "
        "Configuration wizard creates), by private addresses or by addresses you documented in a "
        "profile file; a disabled connector. A connector identified by the gateway's own "
        "addresses or certificate, a pattern some vendors document for their integrated modes, "
        "is a warning: the gateway's infrastructure is shared by its customers."
    ),
)
def on_premises_source(ctx: CheckContext) -> Iterator[Result]:
    accepted = _accepted_names(ctx)
    examined = 0
    for conn in ctx.inbound_connectors:
        resource, key = _inbound(conn), conn.display_name
        if conn.ConnectorType is None:
            examined += 1
            yield result(Status.NOT_EVALUATED, resource,
                         "not evaluated: the export does not say the connector's type",
                         conn.ref("ConnectorType"), key=key)
            continue
        if not _is_on_premises(conn):
            continue
        examined += 1
        yield _on_premises_result(ctx, conn, accepted)
    if not examined:
        yield result(Status.PASS, "inbound OnPremises connectors",
                     "there is no OnPremises inbound connector, so no outside server is treated as "
                     "the organisation's own", key="none", summary=True)


def _on_premises_result(ctx: CheckContext, conn: InboundConnector, accepted: list[str]) -> Result:
    resource, key = _inbound(conn), conn.display_name
    identity = ps_literal(conn.display_name)
    if conn.Enabled is None:
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: the export does not say whether the connector is enabled",
                      conn.ref("Enabled"), key=key)
    if conn.Enabled is False:
        return result(Status.PASS, resource, "an OnPremises connector, disabled: it admits nothing",
                      conn.ref("Enabled"), key=key)
    sources = connector_sources(ctx, conn, accepted)
    identified = [conn.ref("TlsSenderCertificateName"), conn.ref("SenderIPAddresses")]
    if sources.foreign:
        listed = ", ".join(text for text, _ in sources.foreign)
        return result(Status.FAIL, resource,
                      f"an OnPremises connector trusts {listed}: not your own servers (no private "
                      "range, profile-documented range or certificate in an accepted domain); mail "
                      "from there is attributed to your organisation, may relay through the tenant "
                      "and is treated as coming from your own servers",
                      conn.ref("ConnectorType"), *(ref for _, ref in sources.foreign), key=key,
                      fix=f"Set-InboundConnector -Identity {identity} -Enabled $false")
    if sources.gateway:
        return result(Status.WARN, resource,
                      f"an OnPremises connector identified by {ctx.gateway.names}'s "
                      f"{', '.join(sources.gateway)}: some gateways document this for their "
                      "integrated modes, but Microsoft calls OnPremises connectors identified by "
                      "infrastructure shared with other tenants an anti-pattern: mail any customer "
                      "of the gateway sends through it is attributed to your organisation. Prefer a "
                      "Partner connector where the vendor supports it",
                      conn.ref("ConnectorType"), *identified, severity=Severity.MEDIUM, key=key,
                      fix=f"Set-InboundConnector -Identity {identity} -ConnectorType Partner")
    if sources.own:
        return result(Status.PASS, resource,
                      f"an OnPremises connector from your own servers: {', '.join(sources.own)}",
                      conn.ref("ConnectorType"), *identified, key=key)
    if not (_exported(conn, "SenderIPAddresses") or _exported(conn, "TlsSenderCertificateName")):
        return result(Status.NOT_EVALUATED, resource,
                      "not evaluated: the export holds neither SenderIPAddresses nor "
                      "TlsSenderCertificateName, so whose servers it trusts is unknown",
                      *identified, key=key)
    return result(Status.PASS, resource,
                  "an OnPremises connector that names no sending address or certificate, so no mail "
                  "is attributed to it", conn.ref("ConnectorType"), *identified, key=key)


CHECKS = (
    inbound_lockdown,
    gateway_connector_enabled,
    shared_certificate_trust,
    inbound_sender_ranges,
    enhanced_filtering,
    outbound_routing,
    recent_changes,
    internal_trust,
    on_premises_source,
)
