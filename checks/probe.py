"""PROBE-001: what Exchange Online answered an SMTP probe sent to the tenant around the gateway.

The configuration checks (CONN-001, ORG-001) say whether the tenant *should* refuse mail that does
not come through the gateway; the opt-in probe (``mailflow-audit probe``) asks Exchange Online
itself and stops before DATA. Its transcript is the evidence: 5.7.51 at RCPT TO is a connector
lock, 5.7.68 a Direct Send block only, 250 an envelope accepted from outside the gateway, and a
reputation block or a timeout says nothing about the tenant. Such an inconclusive probe is *not
evaluated* rather than a warning: it is no finding about the tenant (a warning would trip
``--fail-on`` for what the prober's network did), yet it is no pass either, and
``--fail-on-incomplete`` still stops on it.
"""

from __future__ import annotations

from collections.abc import Iterator

from auditor.context import CheckContext
from auditor.engine import (
    Finding,
    Mappings,
    Reference,
    Remediation,
    Result,
    Severity,
    Status,
    check,
    result,
)
from auditor.evidence import evidence_path
from auditor.models import EvidenceRef, ProbeTranscript, TransportRule
from auditor.probe import (
    DIRECT_SEND_ONLY,
    ENVELOPE_ACCEPTED,
    INCONCLUSIVE,
    LOCKED,
    PROBE_KEY,
    Outcome,
    classify,
)

from ._analysis import RuleLock, api_only, lockdown_command, rule_lock
from .connectors import MIMECAST_LOCKDOWN, MS_THIRD_PARTY
from .organization import MS_DIRECT_SEND

MS_TLS_HYBRID_ISSUES = Reference(
    "Microsoft Exchange Team: TLS certificates in Exchange Hybrid, common issues (550 5.7.51 "
    "TenantInboundAttribution)",
    "https://techcommunity.microsoft.com/blog/exchange/tls-certificates-in-exchange-hybrid---common-issues--how-to-fix-them/4420592",
)
MS_DIRECT_TO_TENANT = Reference(
    "Microsoft Exchange Team: Direct Send vs sending directly to an Exchange Online tenant",
    "https://techcommunity.microsoft.com/blog/exchange/direct-send-vs-sending-directly-to-an-exchange-online-tenant/4439865",
)
MS_NDR = Reference(
    "Microsoft: Email non-delivery reports and SMTP errors in Exchange Online (4.7.500-699, "
    "5.7.606-649, 5.4.1)",
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online",
)
LOCK_CHECK = "CONN-001"
RULE_EVIDENCE = "Get-TransportRule"
PROBE_COMMAND = ("mailflow-audit probe --domain DOMAIN --rcpt TEST-MAILBOX@DOMAIN "
                 "--mail-from PROBE@A-DOMAIN-YOU-CONTROL --i-am-authorized --snapshot SNAPSHOT")


def _first_line(text: str | None) -> str:
    line = (text or "").splitlines()[0] if text else "(no reply)"
    return line if len(line) <= 200 else line[:197] + "..."


def _recipient_domain(transcript: ProbeTranscript) -> str:
    domain = (transcript.Recipient or "").rpartition("@")[2] or (transcript.Domain or "")
    return domain.lower().rstrip(".")


def _latest(transcripts: tuple[ProbeTranscript, ...]) -> dict[str, list[ProbeTranscript]]:
    """Transcripts per probed domain, the newest last (later entries of the file win ties)."""
    found: dict[str, list[ProbeTranscript]] = {}
    for transcript in transcripts:
        found.setdefault(_recipient_domain(transcript), []).append(transcript)
    for listed in found.values():
        listed.sort(key=lambda t: t.StartedAt.timestamp() if t.StartedAt else 0.0)
    return found


def _rule_locks(ctx: CheckContext, domain: str) -> list[RuleLock]:
    if not ctx.available(RULE_EVIDENCE):
        return []
    rules = ctx.objects(RULE_EVIDENCE, TransportRule)
    return [lock for rule in rules if (lock := rule_lock(rule, ctx.as_of)) is not None
            and (not lock.domains or domain in lock.domains)]


def _lock_findings(ctx: CheckContext, domain: str) -> list[Finding]:
    if not ctx.ran(LOCK_CHECK):
        return []
    return [f for f in ctx.findings(LOCK_CHECK) if f.resource == f"accepted domain {domain}"]


@check(
    id="PROBE-001",
    title="Exchange Online accepts mail for the domain from a host that is not the gateway "
          "(SMTP probe)",
    severity=Severity.HIGH,
    rationale=(
        "The configuration says what Exchange Online should do; an SMTP probe shows what it does. "
        "The opt-in probe connects to the tenant's own endpoint (<domain>.mail.protection."
        "outlook.com) from a host that is not the gateway, sends MAIL FROM and RCPT TO for a "
        "dedicated test mailbox and stops before DATA, so nothing is delivered. A Partner "
        "connector lock refuses the recipient (550 5.7.51 TenantInboundAttribution); "
        "RejectDirectSend refuses only the tenant's own sender domains (550 5.7.68), which "
        "leaves every other sender domain open; a 250 means the envelope is accepted, so mail "
        "an outsider sends straight there skips the gateway unless a transport rule rejects it "
        "after DATA (which only --send-canary can show). A reputation block (4.7.500-699, "
        "5.7.606-649) or a blocked port 25 says nothing about the tenant and is not a pass."
    ),
    remediation=Remediation(
        "Lock inbound mail to the gateway with a Partner inbound connector for sender domains * "
        "restricted to the gateway's IP ranges or certificate (CONN-001), then probe again: "
        "the recipient must be refused with 5.7.51.",
        'New-InboundConnector -Name "Inbound from gateway" -ConnectorType Partner -SenderDomains * '
        "-RestrictDomainsToIPAddresses $true -SenderIPAddresses <gateway ranges> -RequireTls $true\n"
        "# then, from a host that is not the gateway:\n"
        "mailflow-audit probe --domain <domain> --rcpt <test mailbox> "
        "--mail-from <probe@a-domain-you-control> --i-am-authorized --snapshot <snapshot>",
    ),
    requires=("Get-AcceptedDomain",),
    uses=(PROBE_KEY, RULE_EVIDENCE, "Get-InboundConnector"),
    references=(MS_THIRD_PARTY, MS_TLS_HYBRID_ISSUES, MS_DIRECT_SEND, MS_DIRECT_TO_TENANT, MS_NDR,
                MIMECAST_LOCKDOWN),
    mappings=Mappings(attack=("T1566", "T1684.002", "T1672")),
    needs_gateway=True,
    derives_from=(LOCK_CHECK,),
    legitimate=(
        "A recipient refused with 5.7.51 (the Partner connector lock the vendors' lockdown guides "
        "describe) passes; a reputation block, a throttled or timed-out probe, an unknown "
        "recipient and a domain that is not the tenant's are not evaluated rather than flagged; "
        "a gateway that works through the API has no route to lock."
    ),
)
def lockdown_probe(ctx: CheckContext) -> Iterator[Result]:
    if not ctx.available(PROBE_KEY):
        state = ctx.evidence_state(PROBE_KEY)
        kind, _, detail = state.partition(" ")
        why = (f"no probe was run{' ' + detail if detail else ''}; to run one: {PROBE_COMMAND}"
               if kind == "missing" else f"the probe evidence is {state}")
        yield result(Status.NOT_EVALUATED, PROBE_KEY, f"not evaluated: {why}",
                     EvidenceRef(evidence_path(PROBE_KEY), "", state.split(" ")[0]), key="none")
        return
    if not ctx.accepted_domains:
        yield result(Status.NOT_EVALUATED, "accepted domains",
                     "not evaluated: the export holds no accepted domain (every tenant has at least "
                     "its onmicrosoft.com domain), so no probe can be matched to the tenant",
                     key="no-domains")
        return
    transcripts = ctx.objects(PROBE_KEY, ProbeTranscript)
    if not transcripts:
        yield result(Status.NOT_EVALUATED, PROBE_KEY,
                     "not evaluated: the probe evidence holds no readable transcript",
                     EvidenceRef(evidence_path(PROBE_KEY), "", 0), key="none")
        return
    for domain, runs in sorted(_latest(transcripts).items()):
        yield _judge(ctx, domain, runs[-1], superseded=len(runs) - 1)


def _judge(ctx: CheckContext, domain: str, transcript: ProbeTranscript, *, superseded: int) -> Result:
    resource = f"SMTP probe to {domain or '?'}"
    when = (f" (probed {transcript.StartedAt:%Y-%m-%d %H:%M} UTC"
            f"{f'; {superseded} earlier probe(s) of the domain superseded' if superseded else ''})"
            if transcript.StartedAt else "")
    if not domain or not ctx.is_internal_address(f"probe@{domain}"):
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: {domain or 'the recipient'} is not an accepted domain of this "
                      "tenant, so the probe says nothing about it", transcript.ref("Recipient"),
                      key=domain)
    if (no_route := api_only(ctx.gateway)) is not None:
        return result(Status.PASS, resource, f"not applicable: {no_route}", transcript.ref("Host"),
                      key=domain)
    try:
        outcome = classify(transcript, sender_internal=ctx.is_internal_address(transcript.MailFrom or ""))
    except ValueError as exc:
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: the probe's transcript cannot be read: {exc}",
                      transcript.ref("Steps"), key=domain)
    locks = _lock_findings(ctx, domain)
    related = tuple(f.fingerprint for f in locks)
    evidence = [outcome.step.ref() if outcome.step else transcript.ref("Error"), transcript.ref("Host")]
    answer = f"{outcome.step.stage} was answered {_first_line(outcome.step.reply)!r}" if (
        outcome.step and outcome.step.reply) else ""
    if outcome.verdict == INCONCLUSIVE:
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: the probe is {INCONCLUSIVE}: {outcome.reason}"
                      f"{f' ({answer})' if answer else ''}{when}",
                      *evidence, key=domain, related=related, verdict=INCONCLUSIVE)
    if outcome.verdict == LOCKED:
        differs = [f for f in locks if f.status is not Status.PASS]
        note = (f"; CONN-001 judged the configuration collected on {ctx.as_of:%Y-%m-%d} differently "
                f"({differs[0].status.value}): it may have changed since" if differs else "")
        return result(Status.PASS, resource,
                      f"{LOCKED}: {outcome.reason}; {answer}{when}{note}", *evidence, key=domain,
                      related=related, verdict=LOCKED)
    fix = lockdown_command(ctx.gateway, ctx.inbound_connectors)
    if outcome.verdict == DIRECT_SEND_ONLY:
        return result(Status.WARN, resource,
                      f"{DIRECT_SEND_ONLY}: {outcome.reason} ({answer}); a connector lock would have "
                      f"refused the recipient with 5.7.51 first, so mail from any other sender domain "
                      f"still reaches {domain} without {ctx.gateway.names}: probe again with a MAIL "
                      f"FROM outside the tenant's domains to see it{when}",
                      *evidence, transcript.ref("MailFrom"), key=domain, related=related, fix=fix,
                      verdict=DIRECT_SEND_ONLY)
    return _accepted(ctx, domain, transcript, outcome, evidence, locks, answer, when, fix)


def _accepted(ctx: CheckContext, domain: str, transcript: ProbeTranscript, outcome: Outcome,
              evidence: list[EvidenceRef], locks: list[Finding], answer: str, when: str,
              fix: str) -> Result:
    """250 at RCPT TO: exposed, unless a transport rule rejects such mail after DATA."""
    resource = f"SMTP probe to {domain}"
    related = tuple(f.fingerprint for f in locks)
    rule_locks = _rule_locks(ctx, domain)
    canary = outcome.canary
    head = f"{ENVELOPE_ACCEPTED} from a host that is not the gateway ({answer})"
    if canary is not None:
        evidence.append(canary.ref("end of the canary message"))
    if canary is not None and canary.code is not None and canary.code >= 500:
        return result(Status.WARN, resource,
                      f"{head}; the canary message was refused after DATA "
                      f"({_first_line(canary.reply)!r}): something after the envelope (a transport "
                      "rule) stops such mail, but without a connector lock it depends on that rule "
                      f"staying enabled, enforced and first (CONN-001){when}",
                      *evidence, severity=Severity.MEDIUM, key=domain, related=related, fix=fix,
                      verdict=ENVELOPE_ACCEPTED)
    if rule_locks:
        rule = rule_locks[0].rule
        evidence.append(rule.ref("ExceptIfSenderIpRanges"))
        sent = (f"the canary {transcript.CanaryId} was accepted too (250); whether the rule then "
                "rejected, deleted or quarantined it shows only in the test mailbox and the "
                "message trace" if canary is not None and canary.code is not None
                else "only --send-canary can show that it does")
        return result(Status.WARN, resource,
                      f"{head}; transport rule '{rule.display_name}' should reject such mail after "
                      f"DATA (the rule-only lock CONN-001 warns about): {sent}{when}",
                      *evidence, severity=Severity.MEDIUM, key=domain, related=related, fix=fix,
                      verdict=ENVELOPE_ACCEPTED)
    severity = max((Severity.HIGH, *(f.severity for f in locks if f.status is Status.FAIL)),
                   key=lambda s: s.rank)
    configured = [f for f in locks if f.status is Status.PASS]
    note = (f"; yet CONN-001 found a connector lock in the configuration collected on "
            f"{ctx.as_of:%Y-%m-%d}: the configuration changed since, or the probe's source address "
            "is one the connector admits" if configured else "")
    delivered = (f"; the canary {transcript.CanaryId} was accepted for delivery as well"
                 if canary is not None and canary.code is not None and canary.code < 400 else "")
    return result(Status.FAIL, resource,
                  f"exposed: {head}: mail an outsider sends straight to {transcript.Host} reaches "
                  f"{domain}'s mailboxes without {ctx.gateway.names}'s filtering, and no "
                  f"transport rule rejects it{delivered}{note}{when}",
                  *evidence, severity=severity, key=domain, related=related, fix=fix,
                  verdict="exposed")


CHECKS = (lockdown_probe,)
