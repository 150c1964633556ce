"""Who changed it: the unified audit log's admin operations on the objects the gateway depends on.

The other checks say what is wrong now; CHG-001 says who made each change to a connector,
transport rule, filtering policy, journal rule or organisation-wide setting in the review window,
when, from which client IP and app, with which parameters, and links each change to the findings
about the same object. A change to an object that now fails or warns is a warning (the finding
then has a name and a date behind it); any other change is recorded at info severity.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

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
    ps_literal,
    result,
)
from auditor.evidence import evidence_path
from auditor.models import AdminOperation, EvidenceRef, Rejected, UnifiedAuditRecord

from .connectors import MS_ALERT_POLICIES, MS_OAUTH_CONNECTOR_ABUSE, MS_SEARCH_AUDIT_LOG

AUDIT_LOG = "Search-UnifiedAuditLog"
TABL = "Tenant Allow/Block List"
MAX_VALUE = 400  # characters of one parameter value quoted in a message


@dataclass(frozen=True, slots=True)
class ObjectKind:
    """A kind of gateway-relevant object: how findings name it (``label``), the evidence file
    that holds it, and whether there is only one per tenant (organisation-wide settings)."""

    label: str
    evidence: str | None = None
    single: bool = False
    named_as: str = ""  # how findings name it, when not by ``label`` (a DKIM config: "domain")

    @property
    def finding_label(self) -> str:
        return self.named_as or self.label


# Cmdlet noun -> the object it changes. Findings name objects "<label> <name>" (or
# "<label> <name>: <detail>"); a change to a single object relates to every finding that cites
# its evidence file.
KINDS: dict[str, ObjectKind] = {
    "InboundConnector": ObjectKind("inbound connector", "Get-InboundConnector"),
    "OutboundConnector": ObjectKind("outbound connector", "Get-OutboundConnector"),
    "TransportRule": ObjectKind("transport rule", "Get-TransportRule"),
    "HostedConnectionFilterPolicy": ObjectKind("connection filter policy",
                                               "Get-HostedConnectionFilterPolicy"),
    "HostedContentFilterPolicy": ObjectKind("anti-spam policy", "Get-HostedContentFilterPolicy"),
    "HostedOutboundSpamFilterPolicy": ObjectKind("outbound spam policy",
                                                 "Get-HostedOutboundSpamFilterPolicy"),
    "JournalRule": ObjectKind("journal rule", "Get-JournalRule"),
    "AcceptedDomain": ObjectKind("accepted domain", "Get-AcceptedDomain"),
    "RemoteDomain": ObjectKind("remote domain", "Get-RemoteDomain"),
    "DkimSigningConfig": ObjectKind("DKIM signing config", "Get-DkimSigningConfig", named_as="domain"),
    "TenantAllowBlockListItems": ObjectKind(TABL),
    "TenantAllowBlockListSpoofItems": ObjectKind(TABL),
    "ExoPhishSimOverrideRule": ObjectKind("phishing simulation override rule",
                                          "Get-ExoPhishSimOverrideRule"),
    "ExoSecOpsOverrideRule": ObjectKind("SecOps override rule", "Get-ExoSecOpsOverrideRule"),
    "MailboxAuditBypassAssociation": ObjectKind("mailbox audit bypass",
                                                "Get-MailboxAuditBypassAssociation",
                                                named_as="account"),
    "PhishSimOverridePolicy": ObjectKind("phishing simulation override policy",
                                         "Get-PhishSimOverridePolicy", single=True),
    "SecOpsOverridePolicy": ObjectKind("SecOps override policy", "Get-SecOpsOverridePolicy",
                                       single=True),
    "OrganizationConfig": ObjectKind("organization", "Get-OrganizationConfig", single=True),
    "TransportConfig": ObjectKind("transport config", "Get-TransportConfig", single=True),
    "AdminAuditLogConfig": ObjectKind("admin audit log config", "Get-AdminAuditLogConfig",
                                      single=True),
    "ArcConfig": ObjectKind("ARC config", "Get-ArcConfig", single=True),
}
READ_VERBS = frozenset({"get", "test", "search", "export", "validate"})
# Parameter values that switch a protection off, whatever the object's findings are now (it may
# have been removed since, or the protection restored another way): (cmdlet noun, parameter) ->
# the value that weakens.
WEAKENING: dict[tuple[str, str], bool] = {
    ("inboundconnector", "restrictdomainstoipaddresses"): False,
    ("inboundconnector", "restrictdomainstocertificate"): False,
    ("inboundconnector", "enabled"): False,
    ("organizationconfig", "rejectdirectsend"): False,
    ("organizationconfig", "auditdisabled"): True,
    ("adminauditlogconfig", "unifiedauditlogingestionenabled"): False,
    ("mailboxauditbypassassociation", "auditbypassenabled"): True,
    ("hostedconnectionfilterpolicy", "enablesafelist"): True,
}
WEAKENING_VERBS = frozenset({("disable", "transportrule")})
# Findings about a domain or the tenant that rest on the connectors and rules that lock it: a
# change to an object they cite is a change to what they judge. (Others cite objects only to
# name the gateway, say, and are linked by name alone.)
LOCK_VERDICTS = ("CONN-001", "DOM-001", "ORG-001")
# The checks whose findings are about these objects.
SOURCES = ("ARC-001", "CONN-001", "CONN-002", "CONN-003", "CONN-004", "CONN-005", "CONN-006",
           "CONN-008", "CONN-009", "DKIM-001", "DOM-001", "ORG-001", "ORG-002", "ORG-003", "POL-001",
           "POL-002", "POL-003", "POL-004", "POL-005", "POL-006", "POL-007", "RULE-001", "RULE-002",
           "RULE-003", "RULE-004", "RULE-005", "RULE-006", "RULE-007")

MS_AUDIT_PROPERTIES = Reference(
    "Microsoft: Detailed properties in the audit log (ExchangeAdmin: Parameters, ClientIP, AppId)",
    "https://learn.microsoft.com/en-us/purview/audit-log-detailed-properties",
)
MS_GRAPH_AUDIT_QUERY = Reference(
    "Microsoft Graph: Create auditLogQuery (POST /security/auditLog/queries)",
    "https://learn.microsoft.com/en-us/graph/api/security-auditcoreroot-post-auditlogqueries",
)
MIMECAST_CHANGE_LOG = Reference(
    "Mimecast: Microsoft 365 Mail Lockdown (the connector whose changes matter most)",
    "https://mimecastsupport.zendesk.com/hc/en-us/articles/34000358773523-Connect-Process-Microsoft-365-Mail-Lockdown",
)


@dataclass(frozen=True, slots=True)
class _Target:
    """The object one operation changed."""

    kind: ObjectKind
    name: str  # "" for a single object
    names: tuple[str, ...]  # every identity the record gives for it (case-folded)

    @property
    def resource(self) -> str:
        return f"{self.kind.label} {self.name}" if self.name else self.kind.label


def _noun(operation: str) -> tuple[str, str]:
    verb, _, noun = operation.partition("-")
    return verb.lower(), noun


def _target(op: AdminOperation) -> _Target | None:
    """The gateway-relevant object an operation changed, or None (another object, a read)."""
    verb, noun = _noun(op.operation)
    kind = next((k for n, k in KINDS.items() if n.lower() == noun.lower()), None)
    if kind is None or not noun or verb in READ_VERBS:
        return None
    if kind.single:
        return _Target(kind, "", ())
    if kind.label == TABL:
        entries = [e for e in re.split(r"[;,\s]+", op.parameter("Entries") or "") if e]
        shown = f"{op.parameter('ListType') or 'entries'} {' '.join(entries) or op.object_id}"
        return _Target(kind, shown.strip(), tuple(e.casefold() for e in entries))
    candidates = [op.parameter("Identity"), op.parameter("Name"), op.object_id]
    names = [c.strip() for c in candidates if c and c.strip()]
    # An ObjectId can be a path ending with the object's name (".../contoso.onmicrosoft.com/Name").
    names += [n.rsplit("\\", 1)[-1].rsplit("/", 1)[-1] for n in names if "\\" in n or "/" in n]
    shown = next(iter(names), "")
    return _Target(kind, shown, tuple(dict.fromkeys(n.casefold() for n in names)))


def _names_object(finding: Finding, target: _Target) -> bool:
    """Whether a finding's resource names the object: "<label> <name>", "<label> <name>: ..."
    or one of the two of "inbound connectors <a> and <b>"."""
    resource = finding.resource.casefold()
    label = target.kind.finding_label.casefold()
    if target.kind.label == TABL:  # "Tenant Allow/Block List: allow Sender <entry>"
        return resource.startswith(f"{label}: ") and any(resource.endswith(f" {e}") for e in target.names)
    for name in target.names:
        exact = f"{label} {name}"
        if resource == exact or resource.startswith(exact + ": "):
            return True
        plural = f"{label}s "
        if resource.startswith(plural) and (resource.startswith(f"{plural}{name} and ")
                                            or resource.endswith(f" and {name}")):
            return True
    return False


def _object_pointer(pointer: str) -> str:
    """The pointer of the object a property pointer sits in: up to the first list index
    ("/0/Enabled" -> "/0", "/value/3/Name" -> "/value/3"); "" for a file of one object."""
    parts = pointer.split("/")
    for index, part in enumerate(parts[1:], start=1):
        if part.isdigit():
            return "/".join(parts[:index + 1])
    return ""


def _cites(finding: Finding, file: str, anchor: str) -> bool:
    return any(ref.file == file and (ref.pointer == anchor or ref.pointer.startswith(anchor + "/"))
               for ref in finding.evidence)


def _related(target: _Target, findings: tuple[Finding, ...]) -> list[Finding]:
    """The findings about the object: those naming it, and the lock verdicts citing it (the
    object's place in its evidence file is learnt from the findings that name it)."""
    if target.kind.evidence is None:
        return [f for f in findings if _names_object(f, target)]
    file = evidence_path(target.kind.evidence)
    if target.kind.single:
        label = target.kind.finding_label.casefold()
        return [f for f in findings if f.resource.casefold().startswith(label + " ")
                or f.resource.casefold() == label or _cites(f, file, "")]
    named = [f for f in findings if _names_object(f, target)]
    anchors = Counter(_object_pointer(ref.pointer) for f in named for ref in f.evidence
                      if ref.file == file)
    anchor = anchors.most_common(1)[0][0] if anchors else None
    cited = [f for f in findings if anchor and f.check_id in LOCK_VERDICTS and f not in named
             and _cites(f, file, anchor)]
    return named + cited


def _weakened(op: AdminOperation) -> list[str]:
    """The parameters (or the verb) by which an operation switched a protection off."""
    verb, noun = _noun(op.operation)
    found = [f"{op.operation}"] if (verb, noun.lower()) in WEAKENING_VERBS else []
    if verb != "set":  # a new object created disabled or unrestricted switched nothing off
        return found
    for name, value in op.parameters:
        weakening = WEAKENING.get((noun.lower(), name.lower()))
        flag = value.strip().lower().lstrip("$") if isinstance(value, str) else ""
        if weakening is not None and flag in ("true", "false", "1", "0") \
                and (flag in ("true", "1")) is weakening:
            found.append(f"-{name} {value}")
    return found


def _value(text: str) -> str:
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "..."


def _describe(op: AdminOperation) -> str:
    who = op.user or "an unrecorded user"
    where = f"from {op.client_ip}" if op.client_ip else "from no recorded client IP"
    app = f"app {op.app}" if op.app else "no recorded app"
    shown = [f"-{name} {_value(value)}" for name, value in op.parameters if name]
    params = " ".join(shown) if shown else "(no parameters recorded)"
    external = (" (run by Microsoft personnel or a delegated partner administrator: ExternalAccess "
                "true)" if op.external else "")
    return (f"{op.operation} by {who} on {op.when:%Y-%m-%d %H:%M} UTC {where}, {app}{external}: "
            f"{params}")


def _evidence(op: AdminOperation) -> list[EvidenceRef]:
    refs = [op.ref("Operation", op.operation), op.ref("UserId", op.user),
            op.ref("CreationTime", op.when.isoformat()), op.ref("ClientIP", op.client_ip or None)]
    if op.app:
        refs.append(op.ref("AppId", op.app))
    if op.parameters:
        refs.append(op.ref("Parameters", [{"Name": n, "Value": v} for n, v in op.parameters],
                           note="values of secret parameters are redacted"))
    return refs


def _label(finding: Finding) -> str:
    return f"{finding.check_id} {finding.status.value} ({finding.resource})"


def _investigate(op: AdminOperation, ctx: CheckContext) -> str:
    """What else the same account changed in the window (the PowerShell to look). The user name
    is attacker-controlled text: it appears only quoted."""
    start = (ctx.as_of - ctx.settings.changed_within).strftime("%Y-%m-%d")
    end = (ctx.as_of + timedelta(days=1)).strftime("%Y-%m-%d")
    who = f" -UserIds {ps_literal(op.user)}" if op.user else ""
    return ("# everything this account changed in Exchange Online in the review window:\n"
            f"Search-UnifiedAuditLog -StartDate {start} -EndDate {end} -RecordType ExchangeAdmin"
            f"{who} -ResultSize 5000 | Select-Object CreationDate,Operations,AuditData")


def _judge(ctx: CheckContext, op: AdminOperation, target: _Target,
           findings: tuple[Finding, ...]) -> Result:
    description = _describe(op)
    refs = _evidence(op)
    key = op.record_id or op.record.source.pointer
    if op.succeeded is False:
        return result(Status.PASS, target.resource,
                      f"{description}; the operation failed, so it changed nothing (a record of "
                      "the attempt)", *refs, severity=Severity.INFO, key=key)
    related = _related(target, findings)
    problems = [f for f in related if f.status.is_finding]
    common = {"key": key, "verdict": f"changed by {op.user or 'an unrecorded user'} on {op.when:%Y-%m-%d}",
              "related": tuple(dict.fromkeys(f.fingerprint for f in related))}
    if problems:
        return result(Status.WARN, target.resource,
                      f"{description}; this object now has findings: "
                      f"{'; '.join(_label(f) for f in problems)}. Confirm the change with the person "
                      "who made it, and review what else the account changed", *refs,
                      fix=_investigate(op, ctx), **common)
    weakened = _weakened(op)
    if weakened:
        # A lock switched off relates to the lock verdicts that now fail, even when its connector
        # has since been removed and no finding names it.
        locks = [f for f in findings if f.check_id in LOCK_VERDICTS and f.status.is_finding] \
            if target.kind.label == "inbound connector" else []
        common["related"] = tuple(dict.fromkeys((*common["related"], *(f.fingerprint for f in locks))))
        now = (f"; the lock verdicts that now fail: {'; '.join(_label(f) for f in locks)}" if locks
               else "; no finding about this object fails or warns now")
        return result(Status.WARN, target.resource,
                      f"{description}; this operation switched protection off "
                      f"({', '.join(weakened)}){now}. Confirm it with the person who made it",
                      *refs, fix=_investigate(op, ctx), **common)
    gone = ("; the object no longer exists, so no finding names it (what it did while it existed "
            "is not judged)" if _noun(op.operation)[0] == "remove" else
            "; no finding about this object fails or warns")
    return result(Status.PASS, target.resource,
                  f"{description}{gone} (a record of the change, not a problem)", *refs,
                  severity=Severity.INFO, **common)


def _operations(records: Iterable[UnifiedAuditRecord]) -> tuple[list[AdminOperation], list[Rejected]]:
    read: list[AdminOperation] = []
    rejected: list[Rejected] = []
    for record in records:
        op = record.admin_operation()
        (rejected if isinstance(op, Rejected) else read).append(op)
    return read, rejected


@check(
    id="CHG-001",
    title="Who changed it: admin operations on the gateway's connectors, rules and policies",
    severity=Severity.MEDIUM,
    rationale=(
        "A bypass is a state, and states are made by people or apps: an admin who widened the "
        "gateway's connector, added an SCL -1 rule or an allow-list entry, or switched Direct Send "
        "back on. Attackers who take over an admin account or an app with Exchange rights do "
        "exactly this, and remove their traces afterwards (Microsoft, September 2022). The "
        "unified audit log records every such cmdlet (Exchange admin audit logging is on by "
        "default) with who ran it, when, from which client IP and app, and with which "
        "parameters: the difference between a documented change and an intrusion. CHG-001 lists "
        "the admin operations on the objects the gateway depends on in the review window and "
        "links each to the findings about the same object."
    ),
    remediation=Remediation(
        "For each warning, ask the person or the owner of the app named whether the change was "
        "planned; if not, treat the account as compromised (reset its credentials, revoke its "
        "sessions, review everything else it changed) and revert the change. To collect the "
        "evidence: run the export script (it searches the audit log for ExchangeAdmin records, "
        "-AuditDays 30 by default), or `mailflow-audit collect` with the Graph permission "
        "AuditLogsQuery-Exchange.Read.All (or AuditLogsQuery.Read.All). The review window is "
        "--changed-within DAYS (default 30) before the evidence was collected.",
        "# repeat with the same -SessionId until it returns nothing (at most 50,000 records):\n"
        "Search-UnifiedAuditLog -StartDate (Get-Date).AddDays(-30) -EndDate (Get-Date) "
        "-RecordType ExchangeAdmin -SessionId audit -SessionCommand ReturnLargeSet -ResultSize 5000",
    ),
    requires=(AUDIT_LOG,),
    references=(MS_SEARCH_AUDIT_LOG, MS_AUDIT_PROPERTIES, MS_GRAPH_AUDIT_QUERY, MS_ALERT_POLICIES,
                MS_OAUTH_CONNECTOR_ABUSE, MIMECAST_CHANGE_LOG),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1098", "T1078.004"),
                      scuba=("MS.SECURITYSUITE.4.1v1",)),
    derives_from=SOURCES,
    legitimate=(
        "Changes are records, not problems: an admin operation on an object with no failing or "
        "warning finding (the vendor's own setup, such as Mimecast's SCL -1 rule for its IPs or "
        "the lock connector, changed by the admin who maintains it) passes at info severity "
        "unless the operation itself switched a protection off (a connector's IP or certificate "
        "restriction or the connector itself, Direct Send rejection, audit logging, a transport "
        "rule); a failed operation changed nothing and passes; reads and other objects are not "
        "listed."
    ),
)
def admin_changes(ctx: CheckContext) -> Iterator[Result]:
    records = ctx.objects(AUDIT_LOG, UnifiedAuditRecord)
    findings = tuple(f for source in SOURCES for f in ctx.findings(source))
    operations, rejected = _operations(records)
    since = ctx.as_of - ctx.settings.changed_within
    days = ctx.settings.changed_within.days
    reported = 0
    for op in sorted(operations, key=lambda o: (o.when, o.record_id)):
        target = _target(op) if op.is_exchange_admin and op.when >= since else None
        if target is not None:
            reported += 1
            yield _judge(ctx, op, target, findings)
    for bad in rejected:
        yield result(Status.NOT_EVALUATED, bad.name,
                     f"not evaluated: this audit record could not be read: {bad.reason}",
                     EvidenceRef(bad.source.file, bad.pointer or bad.source.pointer, bad.observed,
                                 note=bad.reason), key=f"rejected:{bad.source.pointer}")
    if reported:
        return
    read = (f"{len(operations)} audit record(s) read" if operations
            else "the audit log export holds no records")
    if rejected:
        yield result(Status.NOT_EVALUATED, "admin operations",
                     f"not evaluated: no admin operation on the gateway's connectors, rules or "
                     f"policies in the {days} days before collection among the records that could "
                     f"be read ({len(rejected)} could not)", key="none")
        return
    yield result(Status.PASS, "admin operations",
                 f"no admin operation on the gateway's connectors, rules, policies or organisation "
                 f"settings was recorded in the {days} days before collection ({read})",
                 EvidenceRef(evidence_path(AUDIT_LOG), "", len(records)),
                 severity=Severity.INFO, key="none", summary=True)


CHECKS = (admin_changes,)
