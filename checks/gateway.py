"""Cross-cutting: one verdict per accepted domain, built from the other checks' findings.

A consultant's client asks one question per domain: does its mail go through the gateway, and
can anyone get around it? GW-001 answers it from the MX records, the inbound lockdown, Direct
Send and the rules that weaken filtering, and links each verdict to the findings behind it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from auditor.context import CheckContext
from auditor.dnsevidence import DNS_KEY
from auditor.dnsmodel import DnsQuery, DnsStatus
from auditor.engine import (
    Finding,
    Mappings,
    Remediation,
    Result,
    Severity,
    Status,
    check,
    result,
)
from auditor.models import AcceptedDomain, EvidenceRef

from ._analysis import api_only
from .connectors import MS_THIRD_PARTY
from .organization import is_microsoft_domain

PROTECTED, BYPASSABLE, NOT_ROUTED, UNKNOWN = (
    "protected", "bypassable", "not routed through the gateway", "cannot tell")

# Findings about one domain that say whether outside mail can reach it around the gateway.
DOMAIN_ROUTE = {"CONN-001": "accepted domain {}", "DNS-001": "domain {}", "DOM-001": "accepted domain {}"}
# Judged only for Microsoft's domains (<tenant>.onmicrosoft.com), only for the others (their MX).
MICROSOFT_ONLY, CUSTOM_ONLY = ("DOM-001",), ("DNS-001",)
# Direct Send is a way around the gateway only for a domain no connector lock covers: the lock
# refuses Direct Send to the domains it covers like any other mail not from the gateway.
DIRECT_SEND = "ORG-001"
# Tenant-wide findings about the same: any one of them applies to every domain.
TENANT_ROUTE = (DIRECT_SEND, "CONN-002", "CONN-003", "CONN-004", "CONN-009", "RULE-005")
# Tenant-wide findings that weaken Exchange Online's own filtering: a caveat for a protected
# domain, and what makes an open route worse (mail taking it is not filtered at all).
FILTERING = ("RULE-001", "RULE-003", "RULE-004", "POL-001", "POL-002", "POL-003", "POL-004",
             "CONN-005", "CONN-008")
# Weakens only the filtering of mail that came through a connector (the gateway's, or the one
# flagged), not of mail sent straight to the tenant's endpoint around it.
GATEWAY_PATH_ONLY = ("CONN-005", "CONN-008")
# Routes whose mail Exchange attributes to the organisation itself: DMARC is no backstop there.
ATTRIBUTED_ROUTES = ("CONN-009",)
# How many findings a verdict names before it counts the rest.
LISTED = 10
# Whether spoofing the domain itself is refused where the route is open.
DMARC = "DNS-006"
# What Exchange Online answered an SMTP probe of the domain: proof, not configuration. Optional
# (most audits run no probe): only an open or half-open answer counts; no probe leaves no gap.
PROBE = "PROBE-001"


@dataclass
class _Judgement:
    """What the findings say about one domain."""

    route_open: list[Finding] = field(default_factory=list)
    caveats: list[Finding] = field(default_factory=list)
    weakening: list[Finding] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def related(self) -> tuple[str, ...]:
        seen = dict.fromkeys(f.fingerprint for f in self.route_open + self.caveats + self.weakening)
        return tuple(seen)

    def extend(self, other: _Judgement) -> None:
        self.route_open += other.route_open
        self.caveats += other.caveats
        self.weakening += other.weakening
        self.unknown += other.unknown


class _Findings:
    """The findings GW-001 reads, sorted out once for all the tenant's domains (read again for
    each domain, they made a tenant of 5,000 domains take half a minute): those about one domain
    by check and resource, and what the tenant-wide ones say, with and without Direct Send."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.by_resource: dict[tuple[str, str], list[Finding]] = {}
        for check_id in (*DOMAIN_ROUTE, PROBE, DMARC):
            for finding in ctx.findings(check_id):
                self.by_resource.setdefault((check_id, finding.resource), []).append(finding)
        self.tenant = {locked: _tenant_wide(ctx, locked) for locked in (False, True)}

    def about(self, check_id: str, resource: str) -> list[Finding]:
        return self.by_resource.get((check_id, resource), [])


def _label(finding: Finding) -> str:
    return f"{finding.check_id} ({finding.resource})"


def _labels(findings: Sequence[Finding]) -> str:
    """The findings named one by one, up to ``LISTED``, and the rest counted by check: a tenant
    with hundreds of weakening rules would repeat them all in every domain's verdict (the
    verdict's ``related`` still links every one)."""
    named = "; ".join(_label(f) for f in findings[:LISTED])
    if len(findings) <= LISTED:
        return named
    rest = Counter(f.check_id for f in findings[LISTED:])
    return (f"{named}; and {len(findings) - LISTED} more: "
            + ", ".join(f"{count} of {check_id}" for check_id, count in rest.items()))


def _worst(findings: list[Finding], floor: Severity) -> Severity:
    return max((floor, *(f.severity for f in findings)), key=lambda s: s.rank)


def _sort(finding: Finding, judgement: _Judgement, route: bool) -> None:
    if finding.status is Status.FAIL:
        (judgement.route_open if route else judgement.weakening).append(finding)
    elif finding.status is Status.WARN:
        judgement.caveats.append(finding)
    elif finding.status.is_incomplete and route:
        judgement.unknown.append(f"{finding.check_id} could not judge {finding.resource} "
                                 f"({finding.status.value})")


def _judge(found: _Findings, name: str) -> _Judgement:
    ctx = found.ctx
    judgement = _Judgement()
    microsoft = is_microsoft_domain(name)
    for check_id, pattern in DOMAIN_ROUTE.items():
        if check_id in (CUSTOM_ONLY if microsoft else MICROSOFT_ONLY):
            continue  # Microsoft's zone has no MX of the tenant's to judge; custom domains no MOERA
        if not ctx.ran(check_id):
            judgement.unknown.append(f"{check_id} is not part of this audit")
            continue
        mine = found.about(check_id, pattern.format(name))
        if not mine:
            blocked = [f.message for f in ctx.findings(check_id) if f.status.is_incomplete]
            judgement.unknown.append(f"{check_id} {blocked[0]}" if blocked
                                     else f"{check_id} reported nothing for {name}")
        for finding in mine:
            _sort(finding, judgement, route=True)
    judgement.extend(found.tenant[_connector_locked(found, name)])
    for finding in found.about(PROBE, f"SMTP probe to {name}"):
        if finding.status.is_finding:
            _sort(finding, judgement, route=True)
    return judgement


def _tenant_wide(ctx: CheckContext, locked: bool) -> _Judgement:
    """What the tenant-wide findings say of every domain (Direct Send left out of those a
    connector lock covers)."""
    judgement = _Judgement()
    for check_id in TENANT_ROUTE:
        if check_id == DIRECT_SEND and locked:
            continue
        for finding in ctx.findings(check_id):
            _sort(finding, judgement, route=True)
    for check_id in FILTERING:
        for finding in ctx.findings(check_id):
            if finding.status is Status.FAIL:
                judgement.weakening.append(finding)
    return judgement


def _connector_locked(found: _Findings, name: str) -> bool:
    """Whether CONN-001 found a Partner connector lock to the gateway covering the domain."""
    return found.ctx.ran("CONN-001") and any(
        f.status is Status.PASS for f in found.about("CONN-001", DOMAIN_ROUTE["CONN-001"].format(name)))


def _mx_route(ctx: CheckContext, name: str) -> tuple[str, EvidenceRef | None]:
    """'gateway', 'around' (no MX host is the gateway's), 'none' (no MX, null MX) or why unknown."""
    dd = ctx.dns(name)
    if dd is None:
        return "no DNS answers were recorded for it", None
    query = DnsQuery.of(name, "MX")
    mx = dd.lookup(query)
    if mx.status.temporary:
        return f"its MX lookup failed ({mx.detail or mx.status.value})", dd.ref(query)
    hosts = [host for _, host in mx.mx()] if mx.status is DnsStatus.OK else []
    if not [h for h in hosts if h]:
        return "none", dd.ref(query)
    if any(p.matches_mx(h) for h in hosts for p in ctx.gateway.active):
        return "gateway", dd.ref(query)
    return "around", dd.ref(query)


def _dmarc_note(findings: _Findings, name: str, routes: list[Finding]) -> str:
    if is_microsoft_domain(name) or any(f.check_id in ATTRIBUTED_ROUTES for f in routes):
        return ""
    found = findings.about(DMARC, f"domain {name}")
    if any(f.status is Status.PASS for f in found):
        return (f" Mail that spoofs {name} itself on this route is still refused by its DMARC "
                "policy; mail from any other sender is not.")
    if any(f.status.is_finding for f in found):
        return f" {name}'s DMARC policy does not refuse spoofed mail either ({DMARC})."
    return ""


@check(
    id="GW-001",
    title="Per-domain verdict: is the domain's mail protected by the gateway?",
    severity=Severity.HIGH,
    rationale=(
        "The other checks each examine one object; whether a domain is actually protected "
        "depends on all of them together. Its MX must send the Internet's mail to the gateway, "
        "Exchange Online must refuse mail that did not come through the gateway (a Partner "
        "connector lock, or at least an enforcing rule and Direct Send rejected), and nothing "
        "may reopen the route. A domain whose route is closed but whose Exchange Online "
        "filtering is weakened is protected by the gateway alone; one whose route is open is "
        "bypassable, and worse when the filtering behind it is weakened too."
    ),
    remediation=Remediation(
        "Fix the findings listed with each verdict, starting with those that open the route "
        "(CONN-001, DNS-001, DOM-001, ORG-001, RULE-005).",
        "# what the verdict is built from, to re-check after fixing:\n"
        "Get-InboundConnector | Format-List Name,Enabled,ConnectorType,SenderDomains,"
        "RestrictDomainsToIPAddresses,SenderIPAddresses,RestrictDomainsToCertificate,"
        "TlsSenderCertificateName\n"
        "Get-OrganizationConfig | Format-List RejectDirectSend\n"
        "Resolve-DnsName -Type MX <domain>",
    ),
    legitimate=(
        "A domain whose MX names only the gateway and whose mail Exchange Online accepts only "
        "from the gateway is protected, even with a stale Exchange Online MX left behind the "
        "lock or Exchange Online filtering relaxed for the gateway (both are listed as "
        "reservations, not as a bypass); an outbound-only domain receives nothing."
    ),
    requires=("Get-AcceptedDomain",),
    uses=(DNS_KEY,),
    references=(MS_THIRD_PARTY,),
    mappings=Mappings(attack=("T1566", "T1685", "T1562.001")),
    needs_gateway=True,
    derives_from=(*DOMAIN_ROUTE, *TENANT_ROUTE, *FILTERING, DMARC, PROBE),
)
def domain_verdicts(ctx: CheckContext) -> Iterator[Result]:
    domains = ctx.objects("Get-AcceptedDomain", AcceptedDomain)
    dns_known = ctx.available(DNS_KEY)
    found = _Findings(ctx)
    for domain in domains:
        name = domain.normalised_name
        if not name:
            continue
        yield _verdict(found, domain, name, dns_known)
    if not domains:
        yield result(Status.NOT_EVALUATED, "accepted domains",
                     "not evaluated: the export holds no accepted domain (every tenant has at "
                     "least its onmicrosoft.com domain, so the export is incomplete)", key="none")


def _verdict(found: _Findings, domain: AcceptedDomain, name: str, dns_known: bool) -> Result:
    ctx = found.ctx
    resource = f"accepted domain {name}"
    if domain.OutboundOnly:
        return result(Status.PASS, resource, "receives no mail from outside (outbound only)",
                      domain.ref("OutboundOnly"), key=name, verdict=PROTECTED)
    if (no_route := api_only(ctx.gateway)) is not None:
        return result(Status.PASS, resource, f"{PROTECTED}: {no_route}", domain.ref("DomainName"),
                      key=name, verdict=PROTECTED)
    judgement = _judge(found, name)
    if is_microsoft_domain(name):
        route, mx_ref = "exchange-online", None
    elif dns_known:
        route, mx_ref = _mx_route(ctx, name)
    else:
        route, mx_ref = "DNS was not collected", None
    evidence = [domain.ref("DomainName")] + ([mx_ref] if mx_ref else [])
    related = judgement.related
    weakened = ""
    if judgement.weakening:
        weakened = (f" Exchange Online's own filtering is weakened too: "
                    f"{_labels(judgement.weakening)}.")
    if route == "around":
        still_open = [f for f in judgement.route_open if f.check_id != "DNS-001"]
        lock = ("and outside mail around it is still accepted: " + _labels(still_open)
                if still_open else
                "and Exchange Online refuses mail that does not come through the gateway, so "
                "mail sent to these MX hosts is refused: the domain's mail flow is broken, or "
                "it receives none")
        return result(Status.FAIL, resource, f"{NOT_ROUTED}: no MX host of {name} is "
                      f"{ctx.gateway.names}'s, {lock}.{weakened if still_open else ''}",
                      *evidence, severity=Severity.CRITICAL if still_open else Severity.MEDIUM,
                      key=name, related=related, verdict=NOT_ROUTED)
    if judgement.route_open:
        unfiltered = [f for f in judgement.weakening if f.check_id not in GATEWAY_PATH_ONLY]
        severity = Severity.CRITICAL if unfiltered else _worst(judgement.route_open, Severity.HIGH)
        return result(Status.FAIL, resource,
                      f"{BYPASSABLE}: outside mail can reach {name}'s mailboxes without the "
                      f"gateway: {_labels(judgement.route_open)}.{weakened}"
                      f"{_dmarc_note(found, name, judgement.route_open)}", *evidence,
                      severity=severity, key=name, related=related, verdict=BYPASSABLE)
    unknown = list(judgement.unknown)
    if route not in ("gateway", "none", "exchange-online"):
        unknown.append(f"its MX could not be judged: {route}")
    if unknown:
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: {UNKNOWN} whether {name} is protected: " + "; ".join(unknown),
                      *evidence, key=name, related=related, verdict=UNKNOWN)
    where = {"gateway": f"its MX sends mail to {ctx.gateway.names}",
             "none": "it publishes no MX (no mail expected)",
             "exchange-online": "its mail always goes to Exchange Online directly (a Microsoft "
                                "domain, whatever the custom domains' MX says)"}[route]
    if judgement.caveats or judgement.weakening:
        notes = f" Caveats: {_labels(judgement.caveats)}." if judgement.caveats else ""
        return result(Status.WARN, resource,
                      f"{PROTECTED}, with reservations: {where}, and Exchange Online refuses mail "
                      f"that does not come through the gateway.{notes}{weakened}", *evidence,
                      severity=Severity.MEDIUM if judgement.weakening
                      else min(_worst(judgement.caveats, Severity.LOW), Severity.MEDIUM,
                               key=lambda s: s.rank),
                      key=name, related=related, verdict=PROTECTED)
    return result(Status.PASS, resource,
                  f"{PROTECTED}: {where}, and Exchange Online refuses mail that does not come "
                  "through the gateway", *evidence, key=name, related=related, verdict=PROTECTED)


CHECKS = (domain_verdicts,)
