"""The evidence catalogue and the parsed, read-only view of one snapshot's evidence.

An evidence item is one cmdlet's output (one file). Its state says whether checks may use
it: only ``ok`` and ``partial`` items are parsed; ``missing``, ``denied`` and ``error`` carry
the reason that every check needing them reports as *not evaluated*.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from . import models
from .dnsevidence import DNS_KEY, DomainDns
from .errors import EvidenceError
from .models import ExoObject, Rejected
from .psjson import parse_document

EXO_DIR = "exo"
GRAPH_DIR = "graph"
MAILBOX_DIR = "mailbox"


class State(StrEnum):
    OK = "ok"
    PARTIAL = "partial"  # some results were not collected (a page link not followed)
    MISSING = "missing"
    DENIED = "denied"
    ERROR = "error"

    @property
    def usable(self) -> bool:
        return self is State.OK or self is State.PARTIAL  # (members are singletons)


@dataclass(frozen=True, slots=True)
class EvidenceSpec:
    """One kind of evidence: its key (the export file's stem) and the model it yields."""

    key: str
    model: type[ExoObject]
    single: bool = False  # the cmdlet returns one object (organisation-wide settings)
    folder: str = EXO_DIR  # the snapshot folder: exo/ (admin API), graph/, mailbox/

    @property
    def filename(self) -> str:
        return f"{self.key}.json"

    @property
    def path(self) -> str:
        """Where the raw file lives inside a snapshot."""
        return f"{self.folder}/{self.filename}"


CATALOG: tuple[EvidenceSpec, ...] = (
    EvidenceSpec("Get-TransportRule", models.TransportRule),
    EvidenceSpec("Get-InboundConnector", models.InboundConnector),
    EvidenceSpec("Get-OutboundConnector", models.OutboundConnector),
    EvidenceSpec("Get-AcceptedDomain", models.AcceptedDomain),
    EvidenceSpec("Get-RemoteDomain", models.RemoteDomain),
    EvidenceSpec("Get-OrganizationConfig", models.OrganizationConfig, single=True),
    EvidenceSpec("Get-TransportConfig", models.TransportConfig, single=True),
    EvidenceSpec("Get-HostedConnectionFilterPolicy", models.HostedConnectionFilterPolicy),
    EvidenceSpec("Get-HostedContentFilterPolicy", models.HostedContentFilterPolicy),
    EvidenceSpec("Get-HostedOutboundSpamFilterPolicy", models.HostedOutboundSpamFilterPolicy),
    EvidenceSpec("Get-JournalRule", models.JournalRule),
    EvidenceSpec("Get-DkimSigningConfig", models.DkimSigningConfig),
    EvidenceSpec("Get-TenantAllowBlockListItems-Sender", models.TenantAllowBlockListItem),
    EvidenceSpec("Get-TenantAllowBlockListItems-Url", models.TenantAllowBlockListItem),
    EvidenceSpec("Get-TenantAllowBlockListItems-FileHash", models.TenantAllowBlockListItem),
    EvidenceSpec("Get-TenantAllowBlockListItems-IP", models.TenantAllowBlockListItem),
    EvidenceSpec("Get-TenantAllowBlockListSpoofItems", models.TenantAllowBlockListSpoofItem),
    EvidenceSpec("Get-Mailbox", models.Mailbox),
    EvidenceSpec("Get-InboxRule", models.InboxRule),
    EvidenceSpec("Get-ManagementRoleAssignment", models.ManagementRoleAssignment),
    EvidenceSpec("Get-ApplicationAccessPolicy", models.ApplicationAccessPolicy),
    EvidenceSpec("Get-ArcConfig", models.ArcConfig, single=True),
    EvidenceSpec("Get-PhishSimOverridePolicy", models.PhishSimOverridePolicy),
    EvidenceSpec("Get-ExoPhishSimOverrideRule", models.PhishSimOverrideRule),
    EvidenceSpec("Get-SecOpsOverridePolicy", models.SecOpsOverridePolicy),
    EvidenceSpec("Get-ExoSecOpsOverrideRule", models.SecOpsOverrideRule),
    EvidenceSpec("Get-AdminAuditLogConfig", models.AdminAuditLogConfig, single=True),
    EvidenceSpec("Get-MailboxAuditBypassAssociation", models.MailboxAuditBypassAssociation),
    # Microsoft Graph (auditor/graph.py): REST bodies, {"value": [...]}, one file per key.
    EvidenceSpec("Graph-ServicePrincipals", models.GraphServicePrincipal, folder=GRAPH_DIR),
    EvidenceSpec("Graph-Applications", models.GraphApplication, folder=GRAPH_DIR),
    EvidenceSpec("Graph-ResourceAppRoles", models.GraphResourceServicePrincipal, folder=GRAPH_DIR),
    EvidenceSpec("Graph-AppRoleAssignments", models.GraphAppRoleAssignment, folder=GRAPH_DIR),
    EvidenceSpec("Graph-DelegatedGrants", models.GraphDelegatedGrant, folder=GRAPH_DIR),
    # Mailbox contents over EWS (auditor/mailbox.py): {"mailboxes": [...], "value": [...]}.
    EvidenceSpec("Mailbox-InboxRules", models.InboxRule, folder=MAILBOX_DIR),
    EvidenceSpec("Mailbox-MessageHeaders", models.MessageHeaders, folder=MAILBOX_DIR),
    EvidenceSpec("Search-UnifiedAuditLog", models.UnifiedAuditRecord, folder="audit"),  # auditor/auditlog.py
    EvidenceSpec("Probe-SMTP", models.ProbeTranscript, folder="probe"),  # mailflow-audit probe
)
SPECS: Mapping[str, EvidenceSpec] = {spec.key: spec for spec in CATALOG}
EXO_SPECS = tuple(spec for spec in CATALOG if spec.folder == EXO_DIR)  # what the admin API serves
EVIDENCE_KEYS = frozenset(SPECS) | {DNS_KEY}  # what a check may list in requires / uses
_BY_FILENAME: Mapping[str, EvidenceSpec] = {spec.filename.lower(): spec for spec in CATALOG}


def spec_for_filename(name: str) -> EvidenceSpec | None:
    """The evidence an export file holds, matched case-insensitively (Windows file names)."""
    return _BY_FILENAME.get(name.lower())


M = TypeVar("M", bound=ExoObject)


@dataclass(frozen=True, slots=True)
class Collection(Generic[M]):
    """The parsed objects of one evidence item, plus what could not be read and why."""

    key: str
    state: State
    items: tuple[M, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    reason: str | None = None  # why the item is not usable, or why it is partial
    warnings: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[M]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def parse_evidence(spec: EvidenceSpec, data: bytes) -> Collection[Any]:
    """Parse one evidence file's bytes into its collection (never raises for bad input)."""
    try:
        document = parse_document(data, spec.filename)
    except EvidenceError as exc:
        return Collection(key=spec.key, state=State.ERROR, reason=exc.reason)
    items: list[ExoObject] = []
    rejected: list[Rejected] = []
    for raw in document.objects:
        built = models.build(spec.model, raw, spec.path)
        (rejected if isinstance(built, Rejected) else items).append(built)
    warnings = list(document.warnings)
    if spec.single and len(items) + len(rejected) > 1:
        warnings.append(f"expected one object, found {len(items) + len(rejected)}; using all")
    if document.incomplete:
        return Collection(
            key=spec.key,
            state=State.PARTIAL,
            items=tuple(items),
            rejected=tuple(rejected),
            reason=document.incomplete,
            warnings=tuple(warnings),
        )
    return Collection(
        key=spec.key,
        state=State.OK,
        items=tuple(items),
        rejected=tuple(rejected),
        warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class EvidenceStore:
    """Every catalogued evidence item of one snapshot, parsed or with its reason, and the
    recorded DNS answers per domain."""

    collections: Mapping[str, Collection[Any]] = field(default_factory=dict)
    dns: Mapping[str, DomainDns] = field(default_factory=dict)
    dns_reason: str = "DNS was not collected for this snapshot"

    def get(self, key: str) -> Collection[Any]:
        if key == DNS_KEY:
            if self.dns:
                return Collection(key=DNS_KEY, state=State.OK)
            return Collection(key=DNS_KEY, state=State.MISSING, reason=self.dns_reason)
        found = self.collections.get(key)
        if found is None:
            return Collection(key=key, state=State.MISSING, reason=f"{key} was not collected")
        return found

    def usable(self, key: str) -> tuple[ExoObject, ...]:
        """Objects of an item if it is usable, else nothing (for context, not for verdicts)."""
        collection = self.get(key)
        return collection.items if collection.state.usable else ()

    def keys(self) -> Iterable[str]:
        return self.collections.keys()


def evidence_path(key: str) -> str:
    """Where an evidence key's raw answers live in a snapshot (``dns/`` for DNS)."""
    return f"{DNS_KEY}/" if key == DNS_KEY else SPECS[key].path
