"""Bypass vector: anti-spam policies that exempt senders from filtering."""

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

MS_CONNECTION_FILTER = Reference(
    "Microsoft: Configure connection filtering",
    "https://learn.microsoft.com/en-us/defender-office-365/connection-filter-policies-configure",
)
MS_EFC = Reference(
    "Microsoft: Enhanced Filtering for Connectors",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/use-connectors-to-configure-mail-flow/enhanced-filtering-for-connectors",
)


def _width_severity(rng: IpRange) -> Severity:
    """Wider ranges exempt more of the Internet: an IPv4 /8 (IPv6 /32) or wider is critical."""
    critical, high = (8, 16) if rng.family == 4 else (32, 48)
    if rng.prefix_len <= critical:
        return Severity.CRITICAL
    if rng.prefix_len <= high:
        return Severity.HIGH
    return Severity.MEDIUM


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
                             entry, severity=max(Severity.HIGH, _width_severity(rng),
                                                 key=lambda s: s.rank), key=f"{name}:{text}",
                             fix=fix)
            else:
                yield result(Status.FAIL, f"{resource}: {text}",
                             f"{text} (/{rng.prefix_len}, "
                             f"{rng.size} addresses) belongs to no known gateway: mail from it "
                             "skips spam filtering and sender authentication",
                             entry, severity=_width_severity(rng), key=f"{name}:{text}", fix=fix)
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


CHECKS = (
    connection_filter_allow_list,
)
