"""Bypass vector: DNS. Does the Internet's mail meet the gateway at all, and is spoofed mail
sent around it caught by SPF and DMARC? Judged only from recorded answers."""

from __future__ import annotations

import functools
from collections.abc import Iterator

from auditor import spf
from auditor.context import CheckContext
from auditor.dnsevidence import DNS_KEY, NOT_RECORDED, SPF_TREE, DomainDns
from auditor.dnsmodel import DnsAnswer, DnsQuery, DnsStatus
from auditor.dnsmodel import ascii_name as spf_name
from auditor.engine import Mappings, Reference, Remediation, Result, Severity, Status, check, result
from auditor.globmatch import glob_match
from auditor.mailrecords import (
    dmarc_candidates,
    dmarc_records,
    parse_dmarc,
    parse_mta_sts,
    parse_tlsrpt,
    policy_rank,
)
from auditor.models import EvidenceRef, OutboundConnector
from auditor.mtasts import mx_matches, parse_policy
from auditor.netutil import IpRange, IpSet
from auditor.spf import SpfTree

from ._analysis import api_only, connector_lock, smart_host_owner

MS_MX = Reference(
    "Microsoft: Manage mail flow using a third-party cloud service (MX to the gateway only)",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/manage-mail-flow-using-third-party-cloud",
)
RFC7505 = Reference("RFC 7505: A \"Null MX\" No Service Resource Record", "https://www.rfc-editor.org/rfc/rfc7505")
RFC7489 = Reference("RFC 7489: DMARC", "https://www.rfc-editor.org/rfc/rfc7489")
MS_DMARC = Reference(
    "Microsoft: Set up DMARC to validate the From address domain",
    "https://learn.microsoft.com/en-us/defender-office-365/email-authentication-dmarc-configure",
)
RFC8461 = Reference("RFC 8461: SMTP MTA Strict Transport Security (MTA-STS)",
                    "https://www.rfc-editor.org/rfc/rfc8461")
RFC8460 = Reference("RFC 8460: SMTP TLS Reporting", "https://www.rfc-editor.org/rfc/rfc8460")


DomainList = tuple[tuple[str, DomainDns | None], ...]  # each domain to judge, with its answers


def _domains(ctx: CheckContext, *, include_outbound_only: bool = False) -> DomainList:
    """Each domain to judge: accepted domains (when known) that receive mail (or, for sender
    checks, that send it), and any other domain with recorded DNS. Initial
    ``*.onmicrosoft.com`` domains are Microsoft's to route and sign. (The same for every check
    of an audit: listed once.)"""
    receiving, sending = ctx.per_audit(_domain_lists, reads=("Get-AcceptedDomain", DNS_KEY))
    return sending if include_outbound_only else receiving


def _domain_lists(ctx: CheckContext) -> tuple[DomainList, DomainList]:
    """``_domains`` without and with outbound-only domains (one list when no domain is known
    to be outbound-only)."""
    accepted = ctx.accepted_domains if ctx.available("Get-AcceptedDomain") else ()
    recorded = ctx.recorded_domains()

    def listed(include_outbound_only: bool) -> DomainList:
        names: dict[str, None] = {}
        for domain in accepted:
            name = domain.normalised_name
            if name and not name.startswith("*") and (include_outbound_only or not domain.OutboundOnly):
                names[name] = None
        for name in recorded:
            names[name] = None
        return tuple((name, ctx.dns(name)) for name in names if not name.endswith(".onmicrosoft.com"))

    receiving = listed(False)
    return receiving, listed(True) if any(d.OutboundOnly for d in accepted) else receiving


def _not_recorded(name: str, check_id: str) -> Result:
    return result(Status.NOT_EVALUATED, f"domain {name}",
                  f"not evaluated: no DNS answers were recorded for {name}",
                  key=f"{check_id}:{name}")


def _unanswered(dd: DomainDns, query: DnsQuery, what: str) -> Result | None:
    found = dd.lookup(query)
    return _failed_lookup(dd, query, found, what) if found.status.temporary else None


def _failed_lookup(dd: DomainDns, query: DnsQuery, found: DnsAnswer, what: str) -> Result:
    """Why the domain is not evaluated: its ``what`` lookup failed (``found``, a temporary failure)."""
    detail = found.detail or found.status.value
    return result(Status.NOT_EVALUATED, f"domain {dd.domain}",
                  f"not evaluated: the {what} lookup failed ({found.status.value}: {detail})",
                  dd.ref(query), key=dd.domain)


def _mx_ready(ctx: CheckContext, check_id: str,
              ) -> Iterator[tuple[str, DomainDns, DnsQuery, DnsAnswer] | Result]:
    """Each domain with its answered MX lookup, or the result saying why it cannot be judged."""
    for name, dd in _domains(ctx):
        if dd is None:
            yield _not_recorded(name, check_id)
            continue
        query = DnsQuery.of(name, "MX")
        mx = dd.lookup(query)
        if mx.status.temporary:
            yield _failed_lookup(dd, query, mx, "MX")
            continue
        yield name, dd, query, mx


def _is_null_mx(mx: DnsAnswer) -> bool:
    hosts = mx.mx()
    return len(hosts) == 1 and hosts[0][1] == ""


@check(
    id="DNS-001",
    title="An MX record lets mail reach the mailboxes around the gateway",
    severity=Severity.HIGH,
    rationale=(
        "Senders deliver to any host in a domain's MX set, and spammers deliberately try the "
        "lowest-preference ones. An Exchange Online host (*.mail.protection.outlook.com or "
        "*.mx.microsoft) or any other host beside the gateway's, at whatever preference, is a "
        "way in that skips the gateway; a domain whose MX no longer names the gateway at all "
        "is not protected by it."
    ),
    remediation=Remediation(
        "Publish only the gateway's MX hosts for every domain that receives mail, and lock "
        "Exchange Online to the gateway (CONN-001) so that a forgotten MX cannot be used.",
        "Resolve-DnsName -Type MX <domain>   # then remove every MX host that is not the gateway's "
        "at the DNS provider",
    ),
    requires=(DNS_KEY,),
    uses=("Get-AcceptedDomain", "Get-InboundConnector"),
    references=(MS_MX,),
    mappings=Mappings(attack=("T1566", "T1685", "T1562.001")),
    needs_gateway=True,
    legitimate=(
        "An MX set naming only the gateway's hosts; a null MX; a stale Exchange Online MX that a "
        "Partner connector lock already closes is only a low warning; with a gateway deployed "
        "through the API the MX rightly points at Exchange Online."
    ),
)
def mx_around_gateway(ctx: CheckContext) -> Iterator[Result]:
    if (no_route := api_only(ctx.gateway)) is not None:
        for name, dd in _domains(ctx):
            yield result(Status.PASS, f"domain {name}", f"not applicable: {no_route}",
                         *([dd.ref(DnsQuery.of(name, "MX"))] if dd else []), key=name)
        return
    locks = []
    if ctx.available("Get-InboundConnector"):
        locks = [v.lock for c in ctx.inbound_connectors
                 if (v := connector_lock(c, ctx.gateway)).lock and v.lock.names_gateway]
    for item in _mx_ready(ctx, "DNS-001"):
        if isinstance(item, Result):
            yield item
            continue
        name, dd, query, mx = item
        resource = f"domain {name}"
        if mx.status is not DnsStatus.OK:
            yield result(Status.PASS, resource, f"no MX records ({mx.status.value}): mail is not "
                         "routed to any host (DNS-002 judges whether that is intended)",
                         dd.ref(query), key=name)
            continue
        if _is_null_mx(mx):
            yield result(Status.PASS, resource, "null MX: the domain receives no mail",
                         dd.ref(query), key=name)
            continue
        hosts = [host for _, host in mx.mx()]
        around, to_exchange = [], 0
        for preference, host in mx.mx():
            if any(p.matches_mx(host) for p in ctx.gateway.active):
                continue
            owner = next((p for p in ctx.gateway.known if p.matches_mx(host)), None)
            to_exchange += bool(owner and owner.deployment == "exchange-online")
            label = (f"{host} (Exchange Online)" if owner and owner.deployment == "exchange-online"
                     else f"{host} ({owner.name}, not the gateway in use)" if owner
                     else f"{host} (no known gateway)")
            around.append(f"{label} at preference {preference}")
        if not around:
            yield result(Status.PASS, resource,
                         f"every MX host is {ctx.gateway.names}'s: {', '.join(hosts)}",
                         dd.ref(query), key=name)
            continue
        all_around = len(around) == len(hosts)
        message = ("the MX set does not name the gateway at all: " if all_around else
                   "the MX set also names hosts that are not the gateway's: ") + "; ".join(around)
        lock = next((lock for lock in locks if lock.covers(name)), None)
        if lock is not None and to_exchange == len(around) and not all_around:
            yield result(Status.WARN, resource, message + f". Partner connector "
                         f"'{lock.connector.display_name}' refuses mail for {name} that does not "
                         "come from the gateway, so this route is closed, but senders that try it "
                         "are rejected: remove the stale MX", dd.ref(query),
                         lock.connector.ref("RestrictDomainsToIPAddresses"), severity=Severity.LOW,
                         key=name)
            continue
        yield result(Status.FAIL, resource, message, dd.ref(query),
                     severity=Severity.CRITICAL if all_around else Severity.HIGH, key=name)


@check(
    id="DNS-002",
    title="A domain that receives mail has no usable MX",
    severity=Severity.MEDIUM,
    rationale=(
        "An accepted domain without MX records falls back to its address record, and an MX "
        "host that does not resolve makes senders give up or try the next host: mail is lost, "
        "or delivered where nobody meant it to go. A domain that takes no mail should say so "
        "with a null MX (RFC 7505) and an SPF record ending in -all."
    ),
    remediation=Remediation(
        "Publish the gateway's MX hosts (and fix hosts that do not resolve), or, for a domain "
        "that receives no mail, a null MX and `v=spf1 -all`.",
        "Resolve-DnsName -Type MX <domain>; Resolve-DnsName <mx host>",
    ),
    requires=(DNS_KEY,),
    uses=("Get-AcceptedDomain",),
    references=(RFC7505,),
    mappings=Mappings(attack=("T1566",)),
    legitimate=(
        "A domain with resolvable MX hosts, a deliberate null MX (RFC 7505), and outbound-only "
        "domains."
    ),
)
def mx_usable(ctx: CheckContext) -> Iterator[Result]:
    for item in _mx_ready(ctx, "DNS-002"):
        if isinstance(item, Result):
            yield item
            continue
        name, dd, query, mx = item
        resource = f"domain {name}"
        if mx.status is DnsStatus.NXDOMAIN:
            # (a domain of a bulk list, or named with --domain, is no accepted domain)
            why = "yet it is an accepted domain" if ctx.available("Get-AcceptedDomain") and any(
                d.normalised_name == name for d in ctx.accepted_domains
            ) else "so no mail reaches it"
            yield result(Status.FAIL, resource, f"{name} does not exist in DNS (NXDOMAIN), {why}",
                         dd.ref(query), key=name)
            continue
        if mx.status is DnsStatus.NODATA:
            yield result(Status.WARN, resource, "no MX records: senders fall back to the domain's "
                         "address record; publish MX records, or a null MX if it takes no mail",
                         dd.ref(query), severity=Severity.LOW, key=name)
            continue
        if _is_null_mx(mx):
            yield result(Status.PASS, resource, "null MX: declared as receiving no mail",
                         dd.ref(query), key=name)
            continue
        dead, unknown = [], []
        for _, host in mx.mx():
            a = dd.get(host, "A")
            if a.status is DnsStatus.OK:
                continue
            aaaa = dd.get(host, "AAAA")
            if aaaa.status is DnsStatus.OK:
                continue
            if a.status.temporary or aaaa.status.temporary:
                unknown.append(host)
            else:
                dead.append(host)
        refs = [dd.ref(query)] + [dd.ref(DnsQuery.of(h, "A")) for h in dead + unknown]
        if dead:
            yield result(Status.FAIL, resource, f"MX host(s) with no address: {', '.join(dead)}",
                         *refs, key=name)
        elif unknown:
            statuses = sorted({a.status.value for h in unknown for t in ("A", "AAAA")
                               if (a := dd.get(h, t)).status.temporary})
            yield result(Status.NOT_EVALUATED, resource, "not evaluated: the address lookups of "
                         f"{', '.join(unknown)} failed ({', '.join(statuses)})", *refs, key=name)
        else:
            yield result(Status.PASS, resource, "every MX host resolves", dd.ref(query), key=name)


@check(
    id="DNS-006",
    title="DMARC does not make receivers reject mail that spoofs the domain",
    severity=Severity.HIGH,
    rationale=(
        "Mail sent around the gateway, or spoofing the domain to others, is only refused by "
        "receivers (Exchange Online included) when the domain publishes an enforcing DMARC "
        "policy. No record, p=none, pct below 100, or a weaker policy for subdomains leaves "
        "that door open."
    ),
    remediation=Remediation(
        "Publish a DMARC record with p=quarantine or p=reject, pct=100 (or no pct), and sp no "
        "weaker than p, after checking the aggregate reports that legitimate mail passes.",
        'New DNS TXT record _dmarc.<domain>: "v=DMARC1; p=reject; rua=mailto:dmarc@<domain>"',
    ),
    requires=(DNS_KEY,),
    uses=("Get-AcceptedDomain",),
    references=(RFC7489, MS_DMARC),
    mappings=Mappings(attack=("T1684.002", "T1672"), cis=("2.1.10",),
                      scuba=("MS.EXO.4.1v1", "MS.EXO.4.2v1")),
    legitimate=(
        "p=reject, or p=quarantine at pct=100, with a subdomain policy at least as strict; an "
        "organisational-domain policy that covers the subdomain."
    ),
)
def dmarc_policy(ctx: CheckContext) -> Iterator[Result]:
    for name, dd in _domains(ctx):
        if dd is None:
            yield _not_recorded(name, "DNS-006")
            continue
        resource = f"domain {name}"
        found: tuple[str, DnsAnswer, list[str]] | None = None  # where, the answer, its records
        failed: Result | None = None
        for candidate in dmarc_candidates(name):
            query = DnsQuery.of(f"_dmarc.{candidate}", "TXT")
            answer = dd.lookup(query)
            if answer.status.temporary:
                failed = _failed_lookup(dd, query, answer, f"_dmarc.{candidate}")
                break
            records = dmarc_records(answer)
            if records:
                found = (candidate, answer, records)
                break
        if failed:
            yield failed
            continue
        if found is None:
            yield result(Status.FAIL, resource, "no DMARC record for the domain or its parents: "
                         "receivers apply no policy to mail that spoofs it",
                         dd.ref(DnsQuery.of(f"_dmarc.{name}", "TXT")), key=name)
            continue
        where, answer, records = found
        ref = dd.ref(answer.query)
        if len(records) > 1:
            yield result(Status.FAIL, resource, f"_dmarc.{where} holds {len(records)} DMARC records; "
                         "receivers ignore them all", ref, key=name)
            continue
        dmarc = parse_dmarc(records[0])
        inherited = where != name
        policy = dmarc.subdomain_policy if inherited else dmarc.policy
        origin = f"inherited from _dmarc.{where} (sp)" if inherited else f"_dmarc.{name}"
        if dmarc.problems:
            yield result(Status.FAIL, resource, f"the DMARC record ({origin}) is invalid: "
                         + "; ".join(dmarc.problems), ref, severity=Severity.MEDIUM, key=name)
        elif policy == "none":
            yield result(Status.FAIL, resource, f"DMARC policy is none ({origin}): spoofed mail is "
                         "reported, not refused", ref, severity=Severity.MEDIUM, key=name)
        else:
            weaker = []  # every weakness is named, not only the first found
            if dmarc.pct < 100:
                weaker.append(f"DMARC p={policy} applies to only {dmarc.pct}% of failing mail ({origin})")
            if not inherited and policy_rank(dmarc.subdomain_policy) < policy_rank(dmarc.policy):
                weaker.append(f"subdomains get a weaker policy (sp={dmarc.subdomain_policy}) than "
                              f"the domain (p={dmarc.policy})")
            if weaker:
                yield result(Status.WARN, resource, "; ".join(weaker), ref, severity=Severity.MEDIUM,
                             key=name)
            else:
                yield result(Status.PASS, resource, f"DMARC p={policy} ({origin})", ref, key=name)


@check(
    id="DNS-007",
    title="MTA-STS or TLS reporting is missing or invalid",
    severity=Severity.LOW,
    rationale=(
        "MTA-STS makes sending servers insist on TLS to the published MX hosts, so that a "
        "network attacker cannot strip encryption or redirect delivery; TLS-RPT reports when "
        "that fails. Without them, downgrade and MX spoofing go unnoticed."
    ),
    remediation=Remediation(
        "Publish _mta-sts.<domain> (v=STSv1; id=...) with a policy at "
        "https://mta-sts.<domain>/.well-known/mta-sts.txt listing the gateway's MX hosts, and "
        "_smtp._tls.<domain> (v=TLSRPTv1; rua=mailto:...).",
        'New DNS TXT records: _mta-sts.<domain> "v=STSv1; id=20261125" and '
        '_smtp._tls.<domain> "v=TLSRPTv1; rua=mailto:tlsrpt@<domain>"',
    ),
    requires=(DNS_KEY,),
    uses=("Get-AcceptedDomain",),
    references=(RFC8461, RFC8460),
    mappings=Mappings(attack=("T1557",)),
    legitimate=(
        "A valid MTA-STS record and policy whose mx patterns cover every MX host, and a TLS-RPT "
        "record; domains that receive no mail."
    ),
)
def mta_sts(ctx: CheckContext) -> Iterator[Result]:
    for name, dd in _domains(ctx):
        if dd is None:
            yield _not_recorded(name, "DNS-007")
            continue
        resource = f"domain {name}"
        mx = dd.lookup(DnsQuery.of(name, "MX"))
        if mx.status is DnsStatus.OK and _is_null_mx(mx):
            yield result(Status.PASS, resource, "null MX: no mail to protect in transit", key=name)
            continue
        problems: list[str] = []
        refs: list[EvidenceRef] = []
        failures: list[str] = []
        sts_valid = False
        for label, parser, what, prefix in (("_mta-sts", parse_mta_sts, "MTA-STS", "v=STSv1"),
                                            ("_smtp._tls", parse_tlsrpt, "TLS-RPT", "v=TLSRPTv1")):
            query = DnsQuery.of(f"{label}.{name}", "TXT")
            answer = dd.lookup(query)
            if answer.status.temporary:
                failures.append(f"{what} lookup {answer.status.value}: {answer.detail or ''}".rstrip(": "))
                refs.append(dd.ref(query))
                continue
            answered = answer.status is DnsStatus.OK
            records = [text for text in (t.decode("utf-8", "replace") for t in answer.txt())
                       if answered and text.startswith(prefix)]
            if not records:
                problems.append(f"no {what} record")
            elif len(records) > 1:
                problems.append(f"{len(records)} {what} records")
            else:
                record = parser(records[0])
                if record.problems:
                    problems.append(f"{what} record invalid: " + "; ".join(record.problems))
                elif what == "MTA-STS":
                    sts_valid = True
            refs.append(dd.ref(query))
        policy_note = ""
        if sts_valid:
            policy_problems, policy_failure, policy_note = _policy_verdict(dd, mx)
            problems.extend(policy_problems)
            if policy_failure:
                failures.append(policy_failure)
        if failures:
            yield result(Status.NOT_EVALUATED, resource, "not evaluated: " + "; ".join(failures),
                         *refs, key=name)
        elif problems:
            yield result(Status.WARN, resource, "; ".join(problems), *refs, key=name)
        else:
            yield result(Status.PASS, resource, "MTA-STS and TLS-RPT are published" + policy_note,
                         *refs, key=name)


def _policy_verdict(dd: DomainDns, mx: DnsAnswer) -> tuple[list[str], str | None, str]:
    """Problems of the fetched MTA-STS policy, a failure that leaves it unknown, and a note."""
    fetched = dd.mta_sts_policy
    if fetched is None:
        return [], None, " (the policy file was not fetched: recorded without HTTPS)"
    if fetched.status == "timeout":
        return [], f"the MTA-STS policy fetch timed out ({fetched.detail})", ""
    if fetched.status != "ok" or fetched.body is None:
        return [f"the MTA-STS policy file cannot be fetched from {fetched.url}: {fetched.detail} "
                "(senders then apply no policy)"], None, ""
    problems = []
    content_type = (fetched.content_type or "").split(";")[0].strip().lower()
    if content_type != "text/plain":
        problems.append(f"the policy is served as {fetched.content_type or 'no content type'}, "
                        "not text/plain")
    policy = parse_policy(fetched.body)
    problems.extend(f"policy: {p}" for p in policy.problems)
    if policy.mode == "none":
        problems.append("the policy's mode is none (MTA-STS withdrawn)")
    elif policy.mode in ("enforce", "testing") and mx.status is DnsStatus.OK:
        unmatched = [h for _, h in mx.mx() if h and not any(mx_matches(h, p) for p in policy.mx)]
        if unmatched:
            problems.append(f"MX host(s) {', '.join(unmatched)} match no mx: line of the "
                            f"{policy.mode} policy ({', '.join(policy.mx) or 'none'})")
    note = f" (policy mode {policy.mode}, mx {', '.join(policy.mx)})" if not problems else ""
    return problems, None, note


RFC7208 = Reference("RFC 7208: Sender Policy Framework (SPF)", "https://www.rfc-editor.org/rfc/rfc7208")
MS_SPF = Reference(
    "Microsoft: Set up SPF to identify valid email sources for your Microsoft 365 domain",
    "https://learn.microsoft.com/en-us/defender-office-365/email-authentication-spf-configure",
)


def spf_tree(dd: DomainDns) -> tuple[SpfTree, bool]:
    """The domain's SPF tree from recorded answers, and whether every lookup was recorded
    (evaluated once per recorded domain, however many checks ask)."""
    return dd.derived(SPF_TREE, _evaluate_spf_tree)


def _evaluate_spf_tree(dd: DomainDns) -> tuple[SpfTree, bool]:
    missing: list[DnsQuery] = []

    def lookup(query: DnsQuery) -> DnsAnswer:
        found = dd.lookup(query)
        if found.detail == NOT_RECORDED:
            missing.append(query)
        return found

    tree = spf.resolve(spf.analyse(spf_name(dd.domain)), lookup)
    return tree, not missing


@functools.lru_cache(maxsize=1 << 10)  # asked by two checks, three times a domain
def _spf_query(domain: str) -> DnsQuery:
    """The lookup of a domain's SPF record (under its A-label name)."""
    return DnsQuery.of(spf_name(domain), "TXT")


def _spf_ref(dd: DomainDns) -> EvidenceRef:
    return dd.ref(_spf_query(dd.domain))


def _spf_ready(ctx: CheckContext, check_id: str) -> Iterator[tuple[str, DomainDns, SpfTree] | Result]:
    for name, dd in _domains(ctx, include_outbound_only=True):
        if dd is None:
            yield _not_recorded(name, check_id)
            continue
        tree, complete = spf_tree(dd)
        if not complete:
            yield result(Status.NOT_EVALUATED, f"domain {name}", "not evaluated: the recorded DNS "
                         "lacks lookups the SPF tree needs (collected by an older version?)",
                         _spf_ref(dd), key=name)
            continue
        yield name, dd, tree


def _chain(chain: tuple[str, ...]) -> str:
    return " -> ".join(chain)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@check(
    id="DNS-003",
    title="SPF is broken (permerror or temperror) or missing",
    severity=Severity.HIGH,
    rationale=(
        "An SPF record that exceeds the 10-lookup or 2-void-lookup limits, has a syntax error, "
        "loops, or is published twice makes receivers return permerror: mail from the domain "
        "loses SPF, DMARC then rests on DKIM alone, and forged mail is judged no differently "
        "from real mail. A missing record leaves receivers nothing to check."
    ),
    remediation=Remediation(
        "Publish exactly one `v=spf1` record per domain that stays within 10 DNS-querying "
        "terms (include, a, mx, ptr, exists, redirect) across all includes, with no void "
        "lookups; remove includes of services that no longer send for the domain.",
        "Resolve-DnsName -Type TXT <domain> | Where-Object Strings -Match '^v=spf1'",
    ),
    requires=(DNS_KEY,),
    uses=("Get-AcceptedDomain",),
    references=(RFC7208, MS_SPF),
    mappings=Mappings(attack=("T1684.002", "T1672"), cis=("2.1.8",), scuba=("MS.EXO.2.2v3",)),
    legitimate=(
        "Any SPF record that evaluates within RFC 7208's limits, however long its include chain; "
        "a domain that is not an accepted domain is judged the same way but only when its DNS was "
        "recorded."
    ),
)
def spf_valid(ctx: CheckContext) -> Iterator[Result]:
    for item in _spf_ready(ctx, "DNS-003"):
        if isinstance(item, Result):
            yield item
            continue
        name, dd, tree = item
        resource = f"domain {name}"
        failed = _unanswered(dd, _spf_query(name), "SPF (TXT)")
        if failed:
            yield failed
            continue
        counts = (f"{_count(tree.lookups, 'DNS-querying term')} (limit 10), "
                  f"{_count(tree.void_lookups, 'void lookup')} (limit 2)")
        if tree.result == "none":
            yield result(Status.WARN, resource, "no SPF record: receivers cannot tell mail forged "
                         "in the domain's name from real mail", _spf_ref(dd), severity=Severity.MEDIUM,
                         key=name)
        elif tree.result == "permerror":
            # Each cause once, with the includes that led to it (none for the domain's own record).
            causes = [p.message if len(p.chain) == 1 else f"{p.message} (via {_chain(p.chain)})"
                      for p in tree.problems if p.severity == "permerror"]
            more = f"; and {len(causes) - 3} more" if len(causes) > 3 else ""
            yield result(Status.FAIL, resource, f"SPF permerror: {'; '.join(causes[:3])}{more}; {counts}",
                         _spf_ref(dd), key=name)
        elif tree.result == "temperror":
            yield result(Status.WARN, resource, f"SPF temperror while collecting: {tree.problem} "
                         "(a DNS failure: audit again to see whether it persists)", _spf_ref(dd),
                         severity=Severity.MEDIUM, key=name)
        else:
            warnings = [p.message for p in tree.problems if p.severity == "warning"]
            if warnings:
                yield result(Status.WARN, resource, f"SPF evaluates ({counts}) but: "
                             + "; ".join(warnings[:3]), _spf_ref(dd), severity=Severity.LOW, key=name)
            else:
                yield result(Status.PASS, resource, f"SPF evaluates: {counts}", _spf_ref(dd), key=name)


def _provider_patterns(ctx: CheckContext) -> tuple[str, ...]:
    """SPF includes of every known provider: ranges reached through them are theirs by design."""
    return tuple(pattern.lower() for p in ctx.gateway.known for pattern in p.spf_includes)


@functools.lru_cache(maxsize=1 << 14)  # a tree's networks share the few include names above them
def _matches_any(name: str, patterns: tuple[str, ...]) -> bool:
    return any(glob_match(name, pattern) for pattern in patterns)


@functools.lru_cache(maxsize=1 << 12)  # a record's terms, shared by every tree that includes it
def _wide_authorised(terms: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The very wide networks that ip4/ip6 terms (network, qualifier) authorise (+), in order."""
    return tuple(network for network, qualifier in terms
                 if qualifier == "+" and _is_wide(network))


@functools.lru_cache(maxsize=1 << 14)  # shared includes repeat the same networks across domains
def _is_wide(network: str) -> bool:
    """A range of a /16 or wider (IPv4), a /32 or wider (IPv6); False if it cannot be read."""
    rng = _parsed_range(network)
    return rng is not None and rng.prefix_len <= (16 if rng.family == 4 else 32)


@functools.lru_cache(maxsize=1 << 14)  # shared includes repeat the same networks across domains
def _parsed_range(text: str) -> IpRange | None:
    try:
        return IpRange.parse(text)
    except ValueError:
        return None


@check(
    id="DNS-004",
    title="SPF authorises everyone (+all, ?all) or very wide ranges",
    severity=Severity.HIGH,
    rationale=(
        "`+all` makes every server on the Internet an authorised sender and `?all` says nothing "
        "about anyone; an ip4 range of a /16 or wider authorises tens of thousands of hosts "
        "that are not the domain's. Either way, forged mail passes SPF and, through alignment, "
        "DMARC."
    ),
    remediation=Remediation(
        "End the record with -all (or ~all while checking reports), and list only the hosts "
        "and providers that really send for the domain.",
        'DNS TXT record <domain>: "v=spf1 include:<gateway include> -all"',
    ),
    requires=(DNS_KEY,),
    uses=("Get-AcceptedDomain",),
    references=(RFC7208, MS_SPF),
    mappings=Mappings(attack=("T1684.002", "T1672"), cis=("2.1.8",), scuba=("MS.EXO.2.2v3",)),
    legitimate=(
        "~all or -all endings, and wide ranges inside the includes of the gateway or of known "
        "mail providers (their ranges are theirs to publish)."
    ),
)
def spf_too_permissive(ctx: CheckContext) -> Iterator[Result]:
    providers: tuple[str, ...] | None = None  # worked out for the first wide range met
    for item in _spf_ready(ctx, "DNS-004"):
        if isinstance(item, Result):
            yield item
            continue
        name, dd, tree = item
        resource = f"domain {name}"
        if tree.result == "none":
            yield result(Status.PASS, resource, "no SPF record, so nothing is authorised "
                         "(DNS-003 reports the absence)", _spf_ref(dd), key=name)
            continue
        if tree.result in ("permerror", "temperror") and tree.all_qualifier not in ("+", "?"):
            yield result(Status.NOT_EVALUATED, resource, f"not evaluated: the SPF tree could not be "
                         f"read whole ({tree.result}: {tree.problem}; see DNS-003), so what it "
                         "authorises is unknown", _spf_ref(dd), key=name)
            continue
        wide = []
        for run in tree.network_runs:
            for network in _wide_authorised(run.terms):
                if providers is None:
                    providers = _provider_patterns(ctx)
                if any(_matches_any(d, providers) for d in run.chain):  # (it ends with run.domain)
                    continue
                wide.append(f"{network} (in {_chain(run.chain)})")
        if tree.all_qualifier in ("+", "?"):
            yield result(Status.FAIL, resource, f"SPF ends with {tree.all_term} (in {tree.all_domain}): "
                         + ("every sender passes" if tree.all_qualifier == "+"
                            else "no sender is ever refused"), _spf_ref(dd), key=name)
        elif wide:
            yield result(Status.FAIL, resource, "SPF authorises very wide ranges: " + ", ".join(wide[:5]),
                         _spf_ref(dd), key=name)
        elif tree.all_term is None and tree.result == "ok":
            yield result(Status.WARN, resource, "SPF has no all term: everyone not listed gets "
                         "neutral, not fail", _spf_ref(dd), severity=Severity.MEDIUM, key=name)
        else:
            yield result(Status.PASS, resource, f"SPF ends with {tree.all_term or 'no all term'} "
                         "and authorises no wide range of its own", _spf_ref(dd), key=name)


def outbound_via_gateway(ctx: CheckContext) -> OutboundConnector | None:
    """The enabled outbound connector that sends all mail (``*``, not rule-scoped) to the
    gateway's smart hosts (by name, or by an address in its ranges), if there is one (the caller
    declared Get-OutboundConnector)."""
    for conn in ctx.outbound_connectors:
        if conn.Enabled is not True or conn.IsTransportRuleScoped:
            continue
        if "*" not in [d.strip().lower() for d in conn.RecipientDomains]:
            continue
        owners = (smart_host_owner(h, ctx.gateway) for h in conn.SmartHosts)
        if any(o is not None and ctx.gateway.is_active(o) for o in owners):
            return conn
    return None


@check(
    id="DNS-005",
    title="SPF does not match the gateway outbound path",
    severity=Severity.MEDIUM,
    rationale=(
        "When an outbound connector sends all mail through the gateway, receivers see the "
        "gateway's servers: SPF must authorise them or the domain's real mail fails SPF. "
        "Authorising Exchange Online's own ranges as well lets any Microsoft 365 tenant pass "
        "SPF in the domain's name, although none of the domain's mail leaves that way."
    ),
    remediation=Remediation(
        "Include the gateway's SPF record (e.g. include:us._netblocks.mimecast.com) and, when "
        "every message leaves through the gateway, drop include:spf.protection.outlook.com.",
        'DNS TXT record <domain>: "v=spf1 include:<gateway include> -all"',
    ),
    requires=(DNS_KEY, "Get-OutboundConnector"),
    uses=("Get-AcceptedDomain",),
    references=(RFC7208, MS_SPF),
    mappings=Mappings(attack=("T1684.002", "T1672")),
    needs_gateway=True,
    legitimate=(
        "SPF that authorises the gateway by its include, its a:/mx: hosts or its published "
        "ranges; a parked domain that authorises nobody (v=spf1 -all); tenants whose outbound "
        "mail does not all go through the gateway."
    ),
)
def spf_matches_outbound(ctx: CheckContext) -> Iterator[Result]:
    connector = outbound_via_gateway(ctx)
    if connector is None:
        yield result(Status.PASS, "outbound connectors", "no enabled outbound connector sends all "
                     f"mail through {ctx.gateway.names}: SPF is not compared with it",
                     key="none", summary=True)
        return
    eop = [p for p in ctx.gateway.known if p.deployment == "exchange-online"]
    for item in _spf_ready(ctx, "DNS-005"):
        if isinstance(item, Result):
            yield item
            continue
        name, dd, tree = item
        resource = f"domain {name}"
        via = connector.ref("SmartHosts")
        if tree.result in ("permerror", "temperror"):
            yield result(Status.NOT_EVALUATED, resource, f"not evaluated: SPF does not evaluate "
                         f"({tree.result}: {tree.problem}; see DNS-003)", _spf_ref(dd), key=name)
            continue
        if authorises_nobody(tree):
            yield result(Status.PASS, resource, f"SPF authorises no sender ({tree.record}): the "
                         "domain sends no mail, so there is no outbound path to match",
                         _spf_ref(dd), key=name)
            continue
        includes = [t.target for t in tree.targets if t.kind in ("include", "redirect")]
        # Profiles name the gateway's SPF hosts as include: targets or a:/mx: hosts
        # (Proofpoint Essentials documents a:dispatch-us.ppe-hosted.com).
        named = includes + [t.target for t in tree.targets if t.kind in ("a", "mx")]
        authorised = IpSet(IpRange.parse(n.network) for n in tree.networks if n.qualifier == "+")
        gateway_ok = any(glob_match(i, pat.lower()) for i in named
                         for p in ctx.gateway.active for pat in p.spf_includes) or any(
            authorised.covers(r) for p in ctx.gateway.active for g in p.range_groups for r in g.ranges)
        direct = [i for i in includes if any(glob_match(i, pat.lower())
                                             for p in eop for pat in p.spf_includes)]
        if not gateway_ok:
            yield result(Status.FAIL, resource, f"all outbound mail leaves through {ctx.gateway.names} "
                         f"(connector '{connector.display_name}'), but SPF does not authorise the "
                         "gateway's sending ranges: the domain's own mail fails SPF",
                         _spf_ref(dd), via, key=name)
        elif direct:
            yield result(Status.WARN, resource, f"SPF still authorises Exchange Online directly "
                         f"(include:{direct[0]}), shared by every Microsoft 365 tenant, although all "
                         f"outbound mail leaves through {ctx.gateway.names}", _spf_ref(dd), via,
                         severity=Severity.LOW, key=name)
        else:
            yield result(Status.PASS, resource, f"SPF authorises {ctx.gateway.names}, the outbound path",
                         _spf_ref(dd), key=name)


def authorises_nobody(tree: SpfTree) -> bool:
    """``v=spf1 -all`` and the like: no network, no name that could authorise a sender."""
    return (not any(qualifier == "+" for run in tree.network_runs for _, qualifier in run.terms)
            and not any(t.kind in ("include", "redirect", "a", "mx", "exists", "ptr", "macro")
                        for t in tree.targets))


CHECKS = (
    mx_around_gateway,
    mx_usable,
    spf_valid,
    spf_too_permissive,
    spf_matches_outbound,
    dmarc_policy,
    mta_sts,
)
