"""Bypass vector: organisation-wide settings that let outsiders in as the organisation."""

from __future__ import annotations

from collections.abc import Iterator

from auditor.context import CheckContext
from auditor.engine import Mappings, Reference, Remediation, Result, Severity, Status, check, result

from ._analysis import connector_lock, rule_lock

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


CHECKS = (
    reject_direct_send,
)
