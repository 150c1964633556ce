"""Bypass vectors of the connectors: can mail reach Exchange Online without the gateway, is the
gateway's own connector trusting more than the gateway, and does outbound mail leave some other way?"""

from __future__ import annotations

from collections.abc import Iterator
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

from ._analysis import (
    analyse_conditions,
    api_only,
    connector_cidrs,
    connector_lock,
    filter_bypass,
    lockdown_command,
    predicate_names,
    rule_in_force,
    rule_lock,
    smart_host_owner,
)
from .policies import _width_severity

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


def _user_documented(profile: GatewayProfile) -> bool:
    """A profile the user supplied (--gateway-file): the addresses it lists are theirs to vouch for."""
    return not profile.origin.startswith("builtin:")


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
            if name := (domain.DomainName or "").lower().rstrip("."):
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
            names = ", ".join(f"'{r.display_name}'" for r in open_bypass)
            several = len(open_bypass) > 1
            message += (f"; and transport rule{'s' if several else ''} {names} "
                        f"switch{'' if several else 'es'} spam filtering off for mail an outsider "
                        "can send, so such mail is not filtered at all")
            evidence.extend(r.ref("SetSCL") for r in open_bypass)
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
    if ctx.gateway.covers(rng) or (owner is not None and _user_documented(owner)):
        return None
    if owner is not None and owner.deployment == "exchange-online":
        status, severity = Status.FAIL, Severity.CRITICAL
        message = (f"{text} is Exchange Online's own sending range: every Microsoft 365 tenant "
                   "connects from it, so any of them can deliver mail this connector accepts")
    elif owner is not None:
        status, severity = Status.FAIL, _worst(Severity.HIGH, _width_severity(rng))
        message = (f"{text} belongs to {owner.name}, not the gateway in use ({ctx.gateway.names}): "
                   f"a former gateway's range or a sign of tampering; every {owner.vendor} "
                   "customer can connect from it")
    else:
        severity = _width_severity(rng)
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
    if ctx.gateway.covers(rng) or (owner is not None and _user_documented(owner)):
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
                 if not (ctx.gateway.is_active(o) or (o is not None and _user_documented(o)))]
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


CHECKS = (
    inbound_lockdown,
    gateway_connector_enabled,
    shared_certificate_trust,
    inbound_sender_ranges,
    enhanced_filtering,
    outbound_routing,
    recent_changes,
)
