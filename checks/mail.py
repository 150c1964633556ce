"""Proof from delivered mail: messages in the mailboxes that reached Exchange Online without
passing the gateway (their transport headers say who connected)."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from auditor.context import CheckContext
from auditor.engine import Mappings, Reference, Remediation, Result, Severity, Status, check, result
from auditor.gateways import GatewayProfile
from auditor.globmatch import glob_match
from auditor.models import EvidenceRef, MessageHeaders
from auditor.netutil import IpRange

from ._analysis import api_only
from .connectors import MIMECAST_LOCKDOWN, MS_NEW_INBOUND, MS_THIRD_PARTY

MESSAGE_HEADERS = "Mailbox-MessageHeaders"
HEADERS_FILE = "mailbox/Mailbox-MessageHeaders.json"
MS_ANTISPAM_HEADERS = Reference(
    "Microsoft: Anti-spam message headers (X-Forefront-Antispam-Report: CIP, DIR, SFV, IPV)",
    "https://learn.microsoft.com/en-us/defender-office-365/message-headers-eop-mdo",
)
MS_HEADER_ANALYZER = Reference(
    "Microsoft: View internet message headers in Outlook (Received chain)",
    "https://support.microsoft.com/en-us/office/view-internet-message-headers-in-outlook-cd039382-dc6e-4264-ac74-c048563d212c",
)
MITRE_PHISHING = Reference("MITRE ATT&CK T1566: Phishing", "https://attack.mitre.org/techniques/T1566/")

# Hosts of Exchange Online's own transport (the frontends and mailbox servers).
MICROSOFT_HOSTS = ("*.outlook.com", "*.office365.com", "*.microsoft", "*.outlook.office365.com")
# Another tenant's outbound edge: outside this tenant even though Microsoft runs it.
OTHER_TENANT_EDGE = ("*.outbound.protection.outlook.com",)
_RECEIVED = re.compile(r"^\s*from\s+(?P<from>\S+)(?P<between>.*?)\bby\s+(?P<by>[^\s;()]+)",
                       re.IGNORECASE | re.DOTALL)
_PAREN = re.compile(r"\(([^()]*)\)")
_NO_IP = "255.255.255.255"  # EOP's CIP for mail it did not receive over SMTP from outside
# collect --mailboxes records the API on each row (auditor/mailbox.py); unmarked rows were read
# over EWS.
THROUGH_GRAPH = "graph"
NO_GRAPH_HEADERS = (
    "; Microsoft Graph returned no internetMessageHeaders for it: a message without transport "
    "headers has none, and an app holding Mail.ReadBasic.All rather than Mail.Read may get none")


@dataclass(frozen=True, slots=True)
class Hop:
    """One Received header: who handed the message to whom, and the connecting IP if stated."""

    raw: str
    sender_host: str
    ip: str | None
    receiver_host: str


def _ip_in(text: str) -> str | None:
    for token in re.split(r"[\s\[\]]+", text):
        try:
            return str(ipaddress.ip_address(token.strip().removeprefix("IPv6:")))
        except ValueError:
            continue
    return None


def parse_hop(raw: str) -> Hop | None:
    match = _RECEIVED.match(raw)
    if not match:
        return None
    ip = None
    for inner in _PAREN.findall(match.group("between")):
        if (ip := _ip_in(inner)) is not None:
            break
    return Hop(raw, match.group("from").strip("[]").lower(), ip, match.group("by").lower().rstrip("."))


def _matches(host: str, patterns: Sequence[str]) -> bool:
    return any(glob_match(host, p) for p in patterns)


def _microsoft_internal(host: str) -> bool:
    return _matches(host, MICROSOFT_HOSTS) and not _matches(host, OTHER_TENANT_EDGE)


def entry_hop(received: Sequence[str]) -> Hop | None:
    """The hop that handed the message to this tenant's Exchange Online: going down the chain
    from the latest hop, the first received by a Microsoft host from a host that is not part
    of Exchange Online's own transport."""
    for raw in received:
        hop = parse_hop(raw)
        if hop is None:
            continue
        if not _matches(hop.receiver_host, MICROSOFT_HOSTS):
            return None  # left Microsoft's hops without finding the entry: unreadable
        if not _microsoft_internal(hop.sender_host):
            return hop
    return None


def antispam_fields(report: str | None) -> dict[str, str]:
    """``CIP:1.2.3.4;DIR:INB;...`` as a dict with upper-case keys."""
    fields: dict[str, str] = {}
    for part in (report or "").split(";"):
        key, sep, value = part.partition(":")
        if sep and key.strip():
            fields[key.strip().upper()] = value.strip()
    return fields


def _vendor_patterns(profile: GatewayProfile) -> tuple[str, ...]:
    """Host patterns of the gateway's own domain(s), from its MX and smart-host patterns with
    the first label generalised (us-smtp-inbound-1.mimecast.com -> *.mimecast.com)."""
    found: list[str] = []
    for pattern in (*profile.mx_patterns, *profile.smart_hosts):
        labels = pattern.lower().split(".")
        if len(labels) >= 3 and "*" not in labels[-2]:
            found.append("*." + ".".join(labels[1:]))
    return tuple(dict.fromkeys(found))


def _stamps(row: MessageHeaders, profiles: Sequence[GatewayProfile]) -> list[str]:
    names = [n.lower() for n in row.HeaderNames]
    patterns = [s.lower() for p in profiles for s in p.header_stamps]
    return sorted({n for n in names for p in patterns if glob_match(n, p)})


def _internal(row: MessageHeaders, report: dict[str, str]) -> str | None:
    """Why a message is not inbound mail from outside, if Exchange Online says so."""
    if (row.OrganizationAuthAs or "").strip().lower() == "internal":
        return "X-MS-Exchange-Organization-AuthAs: Internal"
    if (row.MessageDirectionality or "").strip().lower() == "originating":
        return "X-MS-Exchange-Organization-MessageDirectionality: Originating"
    if report.get("DIR", "").upper() in ("INT", "OUT"):
        return f"X-Forefront-Antispam-Report DIR:{report['DIR']}"
    return None


@check(
    id="MAIL-001",
    title="Delivered mail reached a mailbox without passing the gateway",
    severity=Severity.CRITICAL,
    rationale=(
        "The transport headers of a delivered message record who connected to Exchange Online: "
        "EOP writes the connecting IP into X-Forefront-Antispam-Report (CIP) and the hop into "
        "the Received chain (under Enhanced Filtering, CIP names the original sender instead, so "
        "the Received hop is what is judged). A message from outside whose connecting IP is not "
        "the gateway's "
        "was delivered around it: whatever the connectors and rules look like, the route is "
        "open, and senders (or an attacker sending to <tenant>.mail.protection.outlook.com "
        "directly) already use it, skipping the gateway's filtering, sandboxing and URL rewriting."
    ),
    remediation=Remediation(
        "Close the route the message took: restrict inbound mail to the gateway with a Partner "
        "inbound connector for all sender domains (by the gateway's IP ranges or its TLS "
        "certificate, as the vendor's lockdown guide says), see CONN-001; then trace the "
        "messages named here to find who sends directly and whether more arrived.",
        'New-InboundConnector -Name "Inbound from gateway" -ConnectorType Partner -SenderDomains * '
        "-RestrictDomainsToIPAddresses $true -SenderIPAddresses <gateway ranges> -RequireTls $true\n"
        "Get-MessageTraceV2 -MessageId '<message id>' -RecipientAddress '<mailbox>' | Format-List",
    ),
    requires=(MESSAGE_HEADERS,),
    references=(MS_ANTISPAM_HEADERS, MS_HEADER_ANALYZER, MS_THIRD_PARTY, MS_NEW_INBOUND,
                MIMECAST_LOCKDOWN, MITRE_PHISHING),
    mappings=Mappings(attack=("T1566",)),
    needs_gateway=True,
    legitimate=(
        "Mail handed to Exchange Online by an address in the gateway's published ranges (the "
        "Received hop Exchange Online wrote as the message entered; CIP only when that hop is "
        "unreadable and Enhanced Filtering did not rewrite CIP); for gateways with "
        "customer-specific IPs (Cisco) mail from a host of the gateway's domain carrying its "
        "header stamps; internal mail (AuthAs Internal, directionality Originating, DIR:INT, "
        "including mail relayed from on-premises through a connector that authenticates as "
        "internal); and every message when the gateway works through the API."
    ),
)
def delivered_around_gateway(ctx: CheckContext) -> Iterator[Result]:
    rows = ctx.objects(MESSAGE_HEADERS, MessageHeaders)
    if (no_route := api_only(ctx.gateway)) is not None:
        yield result(Status.PASS, "delivered mail", f"not applicable: {no_route}",
                     EvidenceRef(HEADERS_FILE, "", len(rows)), key="api")
        return
    profiles = ctx.gateway.active
    ranges_known = any(p.range_groups and any(g.ranges for g in p.range_groups) for p in profiles)
    counts: dict[str, Counter[str]] = {}
    through_graph: set[str] = set()
    read_any = False
    for row in rows:
        mailbox = row.Mailbox or "unknown mailbox"
        tally = counts.setdefault(mailbox, Counter())
        if _read_through_graph(row):
            through_graph.add(mailbox)
        if row.CollectionState:
            if row.CollectionState.lower() != "empty":
                yield result(Status.NOT_EVALUATED, f"mailbox {mailbox}",
                             f"not evaluated: the messages of this mailbox were not read "
                             f"({row.CollectionState}): {row.CollectionError or 'no reason recorded'}",
                             row.ref("CollectionError"), key=f"unread:{mailbox}")
            continue
        read_any = True
        verdict = _judge(ctx, row, profiles, ranges_known)
        if isinstance(verdict, str):
            tally[verdict] += 1
        else:
            yield verdict
    for mailbox, tally in counts.items():
        if tally:
            parts = [f"{n} {what}" for what, n in sorted(tally.items())]
            api = " (read through Microsoft Graph)" if mailbox in through_graph else ""
            yield result(Status.PASS, f"mailbox {mailbox}",
                         f"of the sampled messages{api}: {', '.join(parts)}",
                         EvidenceRef(HEADERS_FILE, "", sum(tally.values()), note=mailbox),
                         key=f"mailbox:{mailbox}", summary=True)
    if not read_any:
        yield result(Status.NOT_EVALUATED, "delivered mail",
                     "not evaluated: the evidence holds no delivered message to examine (no mailbox "
                     "was read, or every sampled inbox was empty)",
                     EvidenceRef(HEADERS_FILE, "", 0), key="none")


SKIP_LISTED = "x-ms-exchange-skiplistedinternetsender"


def _read_through_graph(row: MessageHeaders) -> bool:
    return str(row.raw.get("CollectedThrough") or "").lower() == THROUGH_GRAPH


def _judge(ctx: CheckContext, row: MessageHeaders, profiles: Sequence[GatewayProfile],
           ranges_known: bool) -> str | Result:
    """A tally label for a message that passes, or the Result for one that does not."""
    report = antispam_fields(row.AntispamReport)
    resource = f"message {row.InternetMessageId or '(no message id)'} in mailbox {row.Mailbox}"
    key = f"{row.Mailbox}:{row.InternetMessageId or row.source.pointer}"
    if _internal(row, report) is not None:
        return "internal (not inbound)"
    hop = entry_hop(row.Received)
    hop_ip = hop.ip if hop is not None and hop.ip else None
    cip = report.get("CIP") if report.get("CIP") not in (None, "", _NO_IP) else None
    # The Received hop Exchange Online wrote as the message entered is who connected. CIP says
    # the same, except under Enhanced Filtering, where it names the sender before the skipped
    # gateway hop (X-MS-Exchange-SkipListedInternetSender marks that): then it proves nothing.
    skip_listed = any(n.lower() == SKIP_LISTED for n in row.HeaderNames)
    ip = hop_ip or (cip if not skip_listed else None)
    try:
        rng = IpRange.parse(ip) if ip else None
    except ValueError:
        rng = None
    if rng is None:
        missing = ("no Received hop into Exchange Online with an IP" if not hop_ip else "")
        missing += (", and CIP names the sender before a skip-listed hop (Enhanced Filtering)"
                    if cip and skip_listed else ", and no X-Forefront-Antispam-Report CIP"
                    if not cip else f", and CIP {cip!r} is not an IP")
        if not row.HeaderNames and _read_through_graph(row):
            missing += NO_GRAPH_HEADERS
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: the headers do not say who connected ({missing})",
                      row.ref("AntispamReport"), row.ref("Received"), key=key)
    host = ((hop.sender_host if hop_ip and hop is not None else report.get("PTR")) or "").lower().rstrip(".")
    stamps = _stamps(row, profiles)
    vendor_host = next((p for p in profiles if host and _matches(host, _vendor_patterns(p))), None)
    evidence = ([row.ref_item("Received", hop.raw)] if hop_ip and hop is not None
                else [row.ref("AntispamReport")])
    if cip and hop_ip:
        evidence.append(row.ref("AntispamReport"))
    evidence += [row.ref("InternetMessageId"), row.ref("DateTimeReceived"), row.ref("Sender")]
    if ctx.gateway.covers(rng):
        return f"through {ctx.gateway.names} (connecting IP in its ranges)"
    if vendor_host is not None and stamps:
        if vendor_host.customer_specific_ips or not ranges_known:
            return (f"through {vendor_host.name} (host {host} and its stamps; its IPs are per "
                    "customer, so the host and stamps are the proof)")
        return result(Status.WARN, resource,
                      f"came from {host} ({ip}) with {vendor_host.name}'s stamps ({', '.join(stamps)}), "
                      f"but {ip} is not in its shipped ranges: the ranges may be out of date (add the "
                      "address to a gateway profile of your own with --gateway-file) or the host name "
                      "and stamps were forged", *evidence, severity=Severity.MEDIUM, key=key)
    hop_text = f"; the hop that proves it: Received: {hop.raw.strip()[:300]}" if hop else ""
    owner = ctx.gateway.owner(rng)
    whose = (f"; {ip} belongs to {owner.name}" if owner is not None and not ctx.gateway.is_active(owner)
             else "")
    if owner is not None and owner.deployment == "exchange-online":
        whose = f"; {ip} is Microsoft's: sent from another Microsoft 365 tenant straight to this one"
    date = row.DateTimeReceived.isoformat() if row.DateTimeReceived else "unknown date"
    return result(
        Status.FAIL, resource,
        f"inbound message received {date} from {row.Sender or 'unknown sender'} was handed to "
        f"Exchange Online by {ip} ({host or 'unknown host'}), which is not {ctx.gateway.names}"
        f"{whose}{hop_text}",
        *evidence, key=key)


CHECKS = (delivered_around_gateway,)
