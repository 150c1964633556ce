"""Judgements several checks share: is a rule in force, who can satisfy its conditions and
exceptions, which rules and connectors lock the tenant to the gateway, what a rule protects,
who can write a header, how an IP range compares with the gateway's. Pure functions over
models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from auditor.engine import Severity, ps_literal
from auditor.gateways import GatewayContext, GatewayProfile
from auditor.globmatch import glob_match
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
# The same predicates used as exceptions (ExceptIf<property>).
EXCEPTION_PROPERTIES: dict[str, tuple[str, ...]] = {
    name: tuple(f"ExceptIf{p}" for p in props) for name, props in CONDITION_PROPERTIES.items()
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
    """A rule's conditions, each marked as one an outsider can or cannot satisfy, and the
    sender ranges that are not the gateway's."""

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
    return _names(rule.Conditions, CONDITION_PROPERTIES, rule)


def exception_names(rule: TransportRule) -> list[str]:
    """Every exception of a rule, named like its conditions (``ExceptIfHeaderContains...`` is
    ``HeaderContains``), from the ``Exceptions`` list and the ``ExceptIf*`` properties."""
    return _names(rule.Exceptions, EXCEPTION_PROPERTIES, rule)


def _names(listed: tuple[str, ...], properties: dict[str, tuple[str, ...]],
           rule: TransportRule) -> list[str]:
    names = [text.rsplit(".", 1)[-1].removesuffix("Predicate") for text in listed]
    for name, props in properties.items():
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
    return _analyse(rule, gateway, predicate_names(rule), CONDITION_PROPERTIES,
                    rule.SenderIpRanges, rule.FromScope, "Conditions")


def analyse_exceptions(rule: TransportRule, gateway: GatewayContext) -> ConditionAnalysis:
    """Classify each exception of a rule by whether an outsider can make it true, which takes
    the message out of the rule (exceptions are ORed: any one of them suffices)."""
    return _analyse(rule, gateway, exception_names(rule), EXCEPTION_PROPERTIES,
                    rule.ExceptIfSenderIpRanges, rule.ExceptIfFromScope, "Exceptions")


def _analyse(rule: TransportRule, gateway: GatewayContext, names: list[str],
             properties: dict[str, tuple[str, ...]], ip_ranges: tuple[str, ...],
             from_scope: str | None, listing: str) -> ConditionAnalysis:
    conditions: list[Condition] = []
    unknown: list[str] = []
    eop: list[str] = []
    unparsed: list[str] = []
    for name in names:
        props = properties.get(name)
        evidence = rule.ref(props[0]) if props else rule.ref(listing, note=f"{name} predicate")
        if name == "SenderIpRanges":
            for text in ip_ranges:
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
            gated = bool(ip_ranges) and not (unknown or eop or unparsed)
            detail = ("sender IP is one of the gateway's published ranges" if gated
                      else "sender IP ranges include addresses that are not the gateway's")
            conditions.append(Condition(name, not gated, evidence, detail))
        elif name == "FromScope":
            inside = (from_scope or "").lower() == "inorganization"
            conditions.append(Condition(name, not inside, evidence,
                                        f"sender is {from_scope or 'in any scope'}"))
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


def stops_message(rule: TransportRule) -> bool:
    """Whether the rule's action keeps the message from its recipients (reject, delete,
    quarantine)."""
    return bool(rule.RejectMessageReasonText or rule.RejectMessageEnhancedStatusCode
                or rule.SmtpRejectMessageRejectText or rule.DeleteMessage or rule.Quarantine)


def lock_shape(rule: TransportRule) -> bool:
    """Shaped like a gateway lock, whether or not it is in force: it stops outside mail
    (``FromScope NotInOrganization``) unless it comes from listed IPs, and narrows that by
    nothing but recipients."""
    outside = (rule.FromScope or "").lower() == "notinorganization"
    if not (stops_message(rule) and outside and rule.ExceptIfSenderIpRanges):
        return False
    names = predicate_names(rule)
    return not [n for n in names if n not in ("FromScope", "SentToScope", "RecipientDomainIs")]


# Exceptions that exempt only mail to some recipients: a lock with them has holes for those
# recipients, not for every message an outsider sends.
RECIPIENT_EXCEPTIONS = ("SentTo", "SentToMemberOf", "RecipientDomainIs")


def lock_escapes(rule: TransportRule) -> list[str]:
    """Exceptions of a lock rule that an outsider can meet for any recipient (a header, a
    sender, a subject word, ...), beside the sender IP ranges it is meant to exempt. Headers
    Exchange itself writes (X-MS-Exchange-Organization-*) are no escape."""
    escapes = []
    for name in exception_names(rule):
        if name in ("SenderIpRanges", *RECIPIENT_EXCEPTIONS):
            continue
        if name == "FromScope" and (rule.ExceptIfFromScope or "").lower() == "inorganization":
            continue
        if name == "SentToScope" and (rule.ExceptIfSentToScope or "").lower() == "notinorganization":
            continue
        if name in ("HeaderContains", "HeaderMatches") and is_exchange_org_header(
                getattr(rule, EXCEPTION_PROPERTIES[name][0]) or ""):
            continue
        escapes.append(name)
    return escapes


def rule_lock(rule: TransportRule, as_of: datetime) -> RuleLock | None:
    """A reject/delete rule for outside mail with the gateway's IPs as the exception, in
    force, and with no exception an outsider can meet at will (RULE-005 says why not)."""
    if rule_in_force(rule, as_of) is not None or not lock_shape(rule) or lock_escapes(rule):
        return None
    return RuleLock(rule, frozenset(d.lower() for d in rule.RecipientDomainIs))


def pre_empting_rules(target: TransportRule, rules: Iterable[TransportRule], as_of: datetime,
                      gateway: GatewayContext) -> list[TransportRule]:
    """Rules in force that run before ``target``, stop rule processing and let the message
    through, on conditions an outsider can meet: mail matching them never reaches ``target``."""
    if target.Priority is None:
        return []
    found = []
    for other in rules:
        if other is target or other.Priority is None or other.Priority >= target.Priority:
            continue
        if not other.StopRuleProcessing or rule_in_force(other, as_of) is not None:
            continue
        if stops_message(other) or analyse_conditions(other, gateway).gated:
            continue
        found.append(other)
    return sorted(found, key=lambda r: r.Priority or 0)


@dataclass(frozen=True)
class Protection:
    """One action by which a rule protects recipients."""

    what: str
    evidence: EvidenceRef
    blocks: bool  # keeps the message from the recipient (not just marks or tags it)


def protections(rule: TransportRule) -> tuple[Protection, ...]:
    """The protective actions of a rule: rejecting, deleting, quarantining, marking as spam,
    tagging the subject or adding a warning banner."""
    found = []
    for prop in ("RejectMessageReasonText", "RejectMessageEnhancedStatusCode",
                 "SmtpRejectMessageRejectText"):
        if getattr(rule, prop):
            found.append(Protection("rejects the message", rule.ref(prop), True))
            break
    if rule.DeleteMessage:
        found.append(Protection("deletes the message", rule.ref("DeleteMessage"), True))
    if rule.Quarantine:
        found.append(Protection("quarantines the message", rule.ref("Quarantine"), True))
    if rule.SetSCL is not None and rule.SetSCL >= 5:
        found.append(Protection(f"marks it as spam (SCL {rule.SetSCL})", rule.ref("SetSCL"), False))
    if rule.PrependSubject:
        found.append(Protection(f"tags the subject with {rule.PrependSubject.strip()!r}",
                                rule.ref("PrependSubject"), False))
    if rule.ApplyHtmlDisclaimerText:
        found.append(Protection("adds a warning banner", rule.ref("ApplyHtmlDisclaimerText"), False))
    return tuple(found)


# Headers Exchange's header firewall removes from mail that enters the organisation from
# outside: only Exchange (or a trusted on-premises server) can have written them.
EXCHANGE_ORG_HEADERS = ("x-ms-exchange-organization-", "x-ms-exchange-forest-")


def is_exchange_org_header(name: str) -> bool:
    return name.strip().lower().startswith(EXCHANGE_ORG_HEADERS)


def stamp_owner(header: str, gateway: GatewayContext) -> GatewayProfile | None:
    """The gateway profile (the active one first) whose message stamps include ``header``."""
    name = header.strip().lower()
    candidates = [*gateway.active, *(p for p in gateway.known if p not in gateway.active)]
    for profile in candidates:
        if profile.deployment == "exchange-online":
            continue
        if any(glob_match(name, pattern.lower()) for pattern in profile.header_stamps):
            return profile
    return None


@dataclass(frozen=True)
class RangeVerdict:
    """How one IP range of a rule compares with the gateway's published ranges."""

    text: str
    kind: str  # gateway | wider | exchange-online | other-gateway | unknown | unreadable
    rng: IpRange | None = None
    owner: GatewayProfile | None = None
    extra: int = 0  # addresses in the range that the gateway does not publish

    @property
    def ok(self) -> bool:
        return self.kind == "gateway"


def classify_range(text: str, gateway: GatewayContext) -> RangeVerdict:
    """Inside the active gateway's published ranges, wider than them, Exchange Online's,
    another gateway's, nobody's known, or unreadable."""
    try:
        rng = IpRange.parse(text)
    except ValueError:
        return RangeVerdict(text, "unreadable")
    if gateway.covers(rng):
        return RangeVerdict(text, "gateway", rng)
    owner = gateway.owner(rng)
    if owner is not None and owner.deployment == "exchange-online":
        return RangeVerdict(text, "exchange-online", rng, owner, rng.size)
    inside = _overlap(rng, [r for p in gateway.active for g in p.range_groups for r in g.ranges])
    if inside:
        return RangeVerdict(text, "wider", rng, None, rng.size - inside)
    if owner is not None:
        return RangeVerdict(text, "other-gateway", rng, owner, rng.size)
    return RangeVerdict(text, "unknown", rng, None, rng.size)


def _overlap(rng: IpRange, ranges: Iterable[IpRange]) -> int:
    """How many addresses of ``rng`` lie in the union of ``ranges``."""
    spans = sorted((r.first, r.last) for r in ranges if r.family == rng.family)
    total, covered_to = 0, rng.first - 1
    for first, last in spans:
        low, high = max(first, covered_to + 1, rng.first), min(last, rng.last)
        if low <= high:
            total += high - low + 1
            covered_to = high
    return total


def range_width_severity(rng: IpRange) -> Severity:
    """Wider ranges exempt more of the Internet: an IPv4 /8 (IPv6 /32) or wider is critical."""
    critical, high = (8, 16) if rng.family == 4 else (32, 48)
    if rng.prefix_len <= critical:
        return Severity.CRITICAL
    if rng.prefix_len <= high:
        return Severity.HIGH
    return Severity.MEDIUM


def user_documented(profile: GatewayProfile) -> bool:
    """A profile the user supplied (--gateway-file): the addresses it lists are theirs to vouch for."""
    return not profile.origin.startswith("builtin:")


def width_severity(addresses: int, family: int = 4) -> Severity:
    """How bad it is to trust ``addresses`` extra addresses: more than half a /8 (IPv6 /32)
    is critical, more than half a /16 (IPv6 /48) high, anything smaller medium."""
    critical, high = (2 ** 23, 2 ** 15) if family == 4 else (2 ** 95, 2 ** 79)
    if addresses > critical:
        return Severity.CRITICAL
    if addresses > high:
        return Severity.HIGH
    return Severity.MEDIUM


def smart_host_owner(host: str, gateway: GatewayContext) -> GatewayProfile | None:
    """The profile a smart host (a name or an IP address) belongs to, active gateways first."""
    try:
        rng = IpRange.parse(host)
    except ValueError:
        return next((p for p in gateway.active + gateway.known if p.matches_smart_host(host)), None)
    return next((p for p in gateway.active if p.ip_set.covers(rng)), None) or gateway.owner(rng)


def vouched_for(profile: GatewayProfile | None, gateway: GatewayContext) -> bool:
    """The active gateway's, or the user's own profile file's (theirs to vouch for)."""
    return profile is not None and (gateway.is_active(profile) or user_documented(profile))


def gateway_ranges(gateway: GatewayContext) -> list[str]:
    """The active gateways' published ranges as written in their profiles."""
    return list(dict.fromkeys(r.text for p in gateway.active for g in p.range_groups
                              for r in g.ranges))


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


def unrestricted_gateway_connector(connectors: Iterable[InboundConnector],
                                   gateway: GatewayContext) -> InboundConnector | None:
    """An enabled Partner connector for all senders and recipients that lists only the active
    gateway's addresses but does not restrict to them: the lock is one switch away."""
    for conn in connectors:
        if conn.Enabled is not True or (conn.ConnectorType or "").lower() != "partner":
            continue
        if conn.RestrictDomainsToIPAddresses is True or conn.AssociatedAcceptedDomains:
            continue
        if "*" not in [sender_domain_entry(s)[0] for s in conn.SenderDomains]:
            continue
        try:
            ranges = [IpRange.parse(text) for text in conn.SenderIPAddresses]
        except ValueError:
            continue
        if ranges and all(gateway.covers(r) for r in ranges):
            return conn
    return None


def lockdown_command(gateway: GatewayContext, connectors: Iterable[InboundConnector] = ()) -> str:
    """PowerShell creating the inbound lock for the active gateway, with its real ranges, or
    switching it on where a connector already lists exactly the gateway's addresses (a second
    connector would overlap it)."""
    existing = unrestricted_gateway_connector(connectors, gateway)
    if existing is not None:
        return (f"Set-InboundConnector -Identity {ps_literal(existing.display_name)} "
                "-RestrictDomainsToIPAddresses $true")
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


def api_only(gateway: GatewayContext) -> str | None:
    """Why there is no mail route to lock when every gateway in use works through the API
    (it reads mail inside Exchange Online, so the MX rightly points there); None otherwise."""
    if not gateway.active or any(p.deployment == "mx" for p in gateway.active):
        return None
    return (f"{gateway.names} works inside Exchange Online through its API (deployment: api): "
            "mail is meant to reach Exchange Online directly, so there is no route around the "
            "gateway to close")
