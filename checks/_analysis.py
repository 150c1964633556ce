"""Judgements several checks share: is a rule in force, who can satisfy its conditions,
which inbound connectors lock the tenant to the gateway. Pure functions over models."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from auditor.engine import ps_literal
from auditor.gateways import GatewayContext
from auditor.models import EvidenceRef, InboundConnector, TransportRule
from auditor.netutil import IpRange
from auditor.values import sender_domain_entry

# Header names Exchange Online acts on to skip spam filtering when a rule sets them.
SCL_HEADER = "x-ms-exchange-organization-scl"

# Condition properties of New-TransportRule, by predicate name (Conditions lists predicates
# as Microsoft.Exchange.MessagingPolicies.Rules.Tasks.<Name>Predicate).
CONDITION_PROPERTIES: dict[str, tuple[str, ...]] = {
    "SenderIpRanges": ("SenderIpRanges",),
    "FromScope": ("FromScope",),
    "From": ("From",),
    "FromMemberOf": ("FromMemberOf",),
    "SenderDomainIs": ("SenderDomainIs",),
    "FromAddressContains": ("FromAddressContainsWords",),
    "FromAddressMatches": ("FromAddressMatchesPatterns",),
    "SentTo": ("SentTo",),
    "SentToMemberOf": ("SentToMemberOf",),
    "SentToScope": ("SentToScope",),
    "RecipientDomainIs": ("RecipientDomainIs",),
    "HeaderContains": ("HeaderContainsMessageHeader", "HeaderContainsWords"),
    "HeaderMatches": ("HeaderMatchesMessageHeader", "HeaderMatchesPatterns"),
    "SubjectContains": ("SubjectContainsWords",),
    "SubjectOrBodyContains": ("SubjectOrBodyContainsWords",),
    "SubjectMatches": ("SubjectMatchesPatterns",),
    "SubjectOrBodyMatches": ("SubjectOrBodyMatchesPatterns",),
}


def rule_in_force(rule: TransportRule, as_of: datetime) -> str | None:
    """None when the rule acts on mail at ``as_of``; otherwise why it does not."""
    if rule.State is not None and rule.State.lower() != "enabled":
        return f"the rule is {rule.State}"
    if rule.Mode is not None and rule.Mode.lower() != "enforce":
        return f"the rule is in {rule.Mode} mode, which takes no action on delivery"
    if rule.ActivationDate is not None and rule.ActivationDate > as_of:
        return f"the rule only becomes active on {rule.ActivationDate:%Y-%m-%d}"
    if rule.ExpiryDate is not None and rule.ExpiryDate <= as_of:
        return f"the rule expired on {rule.ExpiryDate:%Y-%m-%d}"
    return None


def filter_bypass(rule: TransportRule) -> EvidenceRef | None:
    """The action by which a rule skips spam filtering (SCL -1), if it has one."""
    if rule.SetSCL == -1:
        return rule.ref("SetSCL")
    if (rule.SetHeaderName or "").strip().lower() == SCL_HEADER and (
        (rule.SetHeaderValue or "").strip() == "-1"
    ):
        return rule.ref("SetHeaderName", note="sets X-MS-Exchange-Organization-SCL to -1")
    return None


@dataclass(frozen=True)
class Condition:
    """One condition of a rule and whether a sender on the Internet can make it true."""

    name: str
    outsider: bool
    evidence: EvidenceRef
    detail: str


@dataclass(frozen=True)
class ConditionAnalysis:
    conditions: tuple[Condition, ...]
    unknown_ranges: tuple[str, ...] = ()  # SenderIpRanges entries that are not the gateway's
    exchange_online_ranges: tuple[str, ...] = ()  # entries inside Exchange Online's own ranges
    unparsed_ranges: tuple[str, ...] = ()

    @property
    def gated(self) -> bool:
        """Some condition an outsider cannot satisfy (conditions are ANDed)."""
        return any(not c.outsider for c in self.conditions)

    @property
    def outsider_conditions(self) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if c.outsider)


def predicate_names(rule: TransportRule) -> list[str]:
    """Every condition of a rule: the predicates its ``Conditions`` list names, plus any
    condition property that holds a value (exports made with Select-Object may lack one or
    the other)."""
    names = [text.rsplit(".", 1)[-1].removesuffix("Predicate") for text in rule.Conditions]
    for name, props in CONDITION_PROPERTIES.items():
        if name not in names and any(getattr(rule, p, None) for p in props):
            names.append(name)
    return names


def analyse_conditions(rule: TransportRule, gateway: GatewayContext) -> ConditionAnalysis:
    """Classify each condition of a rule by whether an outsider controls it.

    Only two conditions keep outsiders out: the connecting IP (``SenderIpRanges``) when every
    range is the gateway's, and ``FromScope InOrganization`` (authenticated or internal mail).
    Everything else (sender, recipients, headers, subject, any condition this tool does not
    model) is something an outsider can write into a message.
    """
    names = predicate_names(rule)
    conditions: list[Condition] = []
    unknown: list[str] = []
    eop: list[str] = []
    unparsed: list[str] = []
    for name in names:
        props = CONDITION_PROPERTIES.get(name)
        evidence = rule.ref(props[0]) if props else rule.ref("Conditions", note=f"{name} condition")
        if name == "SenderIpRanges":
            for text in rule.SenderIpRanges:
                try:
                    rng = IpRange.parse(text)
                except ValueError:
                    unparsed.append(text)
                    continue
                owner = gateway.owner(rng)
                if owner is not None and owner.deployment == "exchange-online":
                    eop.append(text)
                elif not gateway.covers(rng):
                    unknown.append(text)
            gated = bool(rule.SenderIpRanges) and not (unknown or eop or unparsed)
            detail = ("sender IP is one of the gateway's published ranges" if gated
                      else "sender IP ranges include addresses that are not the gateway's")
            conditions.append(Condition(name, not gated, evidence, detail))
        elif name == "FromScope":
            scope = (rule.FromScope or "").lower()
            inside = scope == "inorganization"
            conditions.append(Condition(name, not inside, evidence,
                                        f"sender is {rule.FromScope or 'in any scope'}"))
        else:
            readable = ", ".join(
                str(v) for p in (props or ()) for v in _as_list(getattr(rule, p, None))
            )
            detail = f"{name} {readable}".strip() if props else f"{name} (not modelled by this tool)"
            conditions.append(Condition(name, True, evidence, detail))
    return ConditionAnalysis(tuple(conditions), tuple(unknown), tuple(eop), tuple(unparsed))


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, tuple | list):
        return list(value)
    return [value]


@dataclass(frozen=True)
class ConnectorLock:
    """An enabled Partner connector that restricts delivery for all sender domains."""

    connector: InboundConnector
    by_ip: bool
    by_certificate: bool
    covers_all_domains: bool
    domains: frozenset[str]
    names_gateway: bool  # its IPs or certificate are the active gateway's

    def covers(self, domain: str) -> bool:
        return self.covers_all_domains or domain in self.domains


@dataclass(frozen=True)
class ConnectorVerdict:
    """Why one inbound connector does or does not lock the tenant down."""

    connector: InboundConnector
    lock: ConnectorLock | None
    reasons: tuple[EvidenceRef, ...] = field(default=())


def connector_lock(conn: InboundConnector, gateway: GatewayContext) -> ConnectorVerdict:
    """Does this connector make Exchange Online refuse mail that did not come from it?

    Exchange Online applies ``RestrictDomainsToIPAddresses`` / ``RestrictDomainsToCertificate``
    only on Partner connectors, only for the sender domains the connector lists, and only for
    the recipient domains in ``AssociatedAcceptedDomains`` (all when empty).
    """
    reasons: list[EvidenceRef] = []
    if conn.Enabled is not True:
        reasons.append(conn.ref("Enabled", note="the connector is disabled"))
    if (conn.ConnectorType or "").lower() != "partner":
        reasons.append(conn.ref("ConnectorType", note="restrictions apply only to Partner connectors"))
    senders = [sender_domain_entry(s)[0] for s in conn.SenderDomains]
    if "*" not in senders:
        reasons.append(conn.ref("SenderDomains", note="restricts only the listed sender domains, "
                                                      "not all senders (needs *)"))
    by_ip = bool(conn.RestrictDomainsToIPAddresses) and bool(conn.SenderIPAddresses)
    by_cert = bool(conn.RestrictDomainsToCertificate) and bool(conn.TlsSenderCertificateName)
    if not (by_ip or by_cert):
        reasons.append(conn.ref("RestrictDomainsToIPAddresses",
                                note="neither RestrictDomainsToIPAddresses (with SenderIPAddresses) "
                                     "nor RestrictDomainsToCertificate (with "
                                     "TlsSenderCertificateName) is set"))
    if reasons:
        return ConnectorVerdict(conn, None, tuple(reasons))
    names_gateway = False
    if by_cert and conn.TlsSenderCertificateName:
        names_gateway = gateway.is_active(gateway.certificate_owner(conn.TlsSenderCertificateName))
    if by_ip and not names_gateway:
        for text in conn.SenderIPAddresses:
            try:
                if gateway.covers(IpRange.parse(text)):
                    names_gateway = True
                    break
            except ValueError:
                continue
    domains = frozenset(d.lower().rstrip(".") for d in conn.AssociatedAcceptedDomains)
    lock = ConnectorLock(conn, by_ip, by_cert, not domains, domains, names_gateway)
    return ConnectorVerdict(conn, lock)


@dataclass(frozen=True)
class RuleLock:
    """An enforcing transport rule that rejects external mail not from listed IPs."""

    rule: TransportRule
    domains: frozenset[str]  # recipient domains it is limited to; empty = all


def rule_lock(rule: TransportRule, as_of: datetime) -> RuleLock | None:
    """A reject/delete rule for outside mail with the gateway's IPs as the exception."""
    if rule_in_force(rule, as_of) is not None:
        return None
    rejects = bool(rule.RejectMessageReasonText) or bool(rule.DeleteMessage) or bool(rule.Quarantine)
    outside = (rule.FromScope or "").lower() == "notinorganization"
    if not (rejects and outside and rule.ExceptIfSenderIpRanges):
        return None
    names = predicate_names(rule)
    narrowing = [n for n in names if n not in ("FromScope", "SentToScope", "RecipientDomainIs")]
    if narrowing:
        return None
    return RuleLock(rule, frozenset(d.lower() for d in rule.RecipientDomainIs))


def connector_cidrs(gateway: GatewayContext) -> list[str]:
    """The active gateways' IPv4 ranges as a connector accepts them (/24 to /32 only)."""
    out: list[str] = []
    for profile in gateway.active:
        for group in profile.range_groups:
            for rng in group.ranges:
                if rng.family != 4:
                    continue
                if rng.prefix_len >= 24:
                    out.append(rng.text)
                    continue
                for start in range(rng.first, rng.last + 1, 256):
                    out.append(f"{IpRange.from_int(start)}/24")
    return sorted(set(out), key=lambda t: IpRange.parse(t).first)


def lockdown_command(gateway: GatewayContext) -> str:
    """PowerShell creating the inbound lock for the active gateway, with its real ranges."""
    cidrs = connector_cidrs(gateway)
    name = ps_literal(f"Inbound from {gateway.names}")
    if cidrs:
        listed = ",".join(cidrs)
        return (f"New-InboundConnector -Name {name} -ConnectorType Partner -SenderDomains * "
                f"-RestrictDomainsToIPAddresses $true -SenderIPAddresses {listed} -RequireTls $true")
    names = [n for p in gateway.active for n in p.tls_certificate_names]
    if names:
        return (f"New-InboundConnector -Name {name} -ConnectorType Partner -SenderDomains * "
                f"-RestrictDomainsToCertificate $true -TlsSenderCertificateName {ps_literal(names[0])} "
                "-RequireTls $true")
    return (f"New-InboundConnector -Name {name} -ConnectorType Partner -SenderDomains * "
            "-RestrictDomainsToIPAddresses $true -SenderIPAddresses <your gateway's delivery IPs> "
            "-RequireTls $true")
