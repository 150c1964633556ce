"""Typed models of the Exchange Online objects the checks read.

Attribute names are the cmdlets' property names, so a finding's property and the PowerShell
the admin types agree. Every object keeps where it came from (file and JSON pointer) and its
raw properties, so a finding can quote exactly what the evidence says.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, ClassVar

from . import values
from .psjson import RawObject, pointer_escape


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where an object sits: a snapshot-relative file and a JSON pointer into it."""

    file: str
    pointer: str


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """One piece of evidence a finding rests on: file, JSON pointer and the value observed."""

    file: str
    pointer: str
    observed: Any = None
    property: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An object that could not be read, with the reason; checks never see it as a pass."""

    source: SourceRef
    name: str
    reason: str
    pointer: str = ""  # the property that could not be read
    observed: Any = None


# Field kinds beyond what the type hint says.
ENUM = "enum"
SPLIT = "split"  # multi-valued text that cannot contain spaces: may be split on spaces


def prop(kind: str | None = None) -> Any:
    """A model property, absent in the evidence unless present (None or empty)."""
    return field(default=None, metadata={"kind": kind} if kind else {})


def multi(kind: str | None = None) -> Any:
    return field(default=(), metadata={"kind": kind} if kind else {})


@dataclass(frozen=True, slots=True, kw_only=True)
class ExoObject:
    """Common part of every model: provenance and the raw properties."""

    CMDLET: ClassVar[str] = ""
    source: SourceRef = field(compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def display_name(self) -> str:
        for key in ("Name", "DomainName", "Identity", "UserPrincipalName", "Value"):
            value = self.raw.get(key)
            if isinstance(value, str) and value:
                return value
        return self.source.pointer or "/"

    def ref(self, name: str, note: str | None = None) -> EvidenceRef:
        """Evidence pointing at one property of this object, with its raw value."""
        key = _actual_key(self.raw, name)
        return EvidenceRef(
            file=self.source.file,
            pointer=f"{self.source.pointer}/{pointer_escape(key)}",
            observed=self.raw.get(key),
            property=name,
            note=note,
        )

    def ref_item(self, name: str, value: str, note: str | None = None) -> EvidenceRef:
        """Evidence pointing at one value of a multi-valued property (its list index if listed)."""
        key = _actual_key(self.raw, name)
        raw = self.raw.get(key)
        base = f"{self.source.pointer}/{pointer_escape(key)}"
        if isinstance(raw, list):
            for index, item in enumerate(raw):
                if item == value:
                    return EvidenceRef(self.source.file, f"{base}/{index}", item, name, note)
        return EvidenceRef(self.source.file, base, raw, name, note)


def _actual_key(raw: Mapping[str, Any], name: str) -> str:
    if name in raw:
        return name
    lowered = name.lower()
    for key in raw:
        if key.lower() == lowered:
            return key
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportRule(ExoObject):
    """A mail flow rule: the commonest way to wave mail past filtering (SCL -1, a bypass header)
    on a condition an outsider can satisfy."""

    CMDLET: ClassVar[str] = "Get-TransportRule"
    Name: str | None = prop()
    Identity: str | None = prop()
    Guid: str | None = prop()
    State: str | None = prop(ENUM)
    Mode: str | None = prop(ENUM)
    Priority: int | None = prop()
    Comments: str | None = prop()
    Description: str | None = prop()
    Conditions: tuple[str, ...] = multi(SPLIT)
    Exceptions: tuple[str, ...] = multi(SPLIT)
    Actions: tuple[str, ...] = multi(SPLIT)
    SenderAddressLocation: str | None = prop(ENUM)
    FromScope: str | None = prop(ENUM)
    SentToScope: str | None = prop(ENUM)
    ExceptIfFromScope: str | None = prop(ENUM)
    ExceptIfSentToScope: str | None = prop(ENUM)
    SenderIpRanges: tuple[str, ...] = multi(SPLIT)
    ExceptIfSenderIpRanges: tuple[str, ...] = multi(SPLIT)
    SenderDomainIs: tuple[str, ...] = multi(SPLIT)
    ExceptIfSenderDomainIs: tuple[str, ...] = multi(SPLIT)
    From: tuple[str, ...] = multi()
    FromMemberOf: tuple[str, ...] = multi()
    FromAddressContainsWords: tuple[str, ...] = multi()
    FromAddressMatchesPatterns: tuple[str, ...] = multi()
    SentTo: tuple[str, ...] = multi()
    SentToMemberOf: tuple[str, ...] = multi()
    RecipientDomainIs: tuple[str, ...] = multi(SPLIT)
    HeaderContainsMessageHeader: str | None = prop()
    HeaderContainsWords: tuple[str, ...] = multi()
    HeaderMatchesMessageHeader: str | None = prop()
    HeaderMatchesPatterns: tuple[str, ...] = multi()
    SubjectContainsWords: tuple[str, ...] = multi()
    SubjectOrBodyContainsWords: tuple[str, ...] = multi()
    SubjectMatchesPatterns: tuple[str, ...] = multi()
    SubjectOrBodyMatchesPatterns: tuple[str, ...] = multi()
    ExceptIfFrom: tuple[str, ...] = multi()
    ExceptIfFromMemberOf: tuple[str, ...] = multi()
    ExceptIfFromAddressContainsWords: tuple[str, ...] = multi()
    ExceptIfFromAddressMatchesPatterns: tuple[str, ...] = multi()
    ExceptIfSentTo: tuple[str, ...] = multi()
    ExceptIfSentToMemberOf: tuple[str, ...] = multi()
    ExceptIfRecipientDomainIs: tuple[str, ...] = multi(SPLIT)
    ExceptIfHeaderContainsMessageHeader: str | None = prop()
    ExceptIfHeaderContainsWords: tuple[str, ...] = multi()
    ExceptIfHeaderMatchesMessageHeader: str | None = prop()
    ExceptIfHeaderMatchesPatterns: tuple[str, ...] = multi()
    ExceptIfSubjectContainsWords: tuple[str, ...] = multi()
    ExceptIfSubjectOrBodyContainsWords: tuple[str, ...] = multi()
    ExceptIfSubjectMatchesPatterns: tuple[str, ...] = multi()
    ExceptIfSubjectOrBodyMatchesPatterns: tuple[str, ...] = multi()
    SetSCL: int | None = prop()
    SetHeaderName: str | None = prop()
    SetHeaderValue: str | None = prop()
    RemoveHeader: str | None = prop()
    PrependSubject: str | None = prop()
    ApplyHtmlDisclaimerText: str | None = prop()
    RedirectMessageTo: tuple[str, ...] = multi()
    BlindCopyTo: tuple[str, ...] = multi()
    AddToRecipients: tuple[str, ...] = multi()
    CopyTo: tuple[str, ...] = multi()
    RouteMessageOutboundConnector: str | None = prop()
    RejectMessageReasonText: str | None = prop()
    RejectMessageEnhancedStatusCode: str | None = prop()
    SmtpRejectMessageRejectText: str | None = prop()
    DeleteMessage: bool | None = prop()
    Quarantine: bool | None = prop()
    StopRuleProcessing: bool | None = prop()
    ActivationDate: datetime | None = prop()
    ExpiryDate: datetime | None = prop()
    WhenChanged: datetime | None = prop()
    CreatedBy: str | None = prop()
    LastModifiedBy: str | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundConnector(ExoObject):
    """An inbound connector: how Exchange Online recognises the gateway's mail, and whether it
    accepts mail from anywhere else."""

    CMDLET: ClassVar[str] = "Get-InboundConnector"
    Name: str | None = prop()
    Identity: str | None = prop()
    Enabled: bool | None = prop()
    ConnectorType: str | None = prop(ENUM)
    ConnectorSource: str | None = prop(ENUM)
    Comment: str | None = prop()
    SenderIPAddresses: tuple[str, ...] = multi(SPLIT)
    SenderDomains: tuple[str, ...] = multi(SPLIT)
    AssociatedAcceptedDomains: tuple[str, ...] = multi(SPLIT)
    RestrictDomainsToIPAddresses: bool | None = prop()
    RestrictDomainsToCertificate: bool | None = prop()
    RequireTls: bool | None = prop()
    TlsSenderCertificateName: str | None = prop()
    TrustedOrganizations: tuple[str, ...] = multi(SPLIT)
    CloudServicesMailEnabled: bool | None = prop()
    TreatMessagesAsInternal: bool | None = prop()
    EFSkipIPs: tuple[str, ...] = multi(SPLIT)
    EFSkipLastIP: bool | None = prop()
    EFUsers: tuple[str, ...] = multi(SPLIT)
    EFTestMode: bool | None = prop()
    WhenChanged: datetime | None = prop()
    WhenCreated: datetime | None = prop()
    WhenChangedUTC: datetime | None = prop()
    WhenCreatedUTC: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundConnector(ExoObject):
    """An outbound connector: where Exchange Online sends mail (the gateway, or a smart host
    nobody vetted)."""

    CMDLET: ClassVar[str] = "Get-OutboundConnector"
    Name: str | None = prop()
    Identity: str | None = prop()
    Enabled: bool | None = prop()
    ConnectorType: str | None = prop(ENUM)
    ConnectorSource: str | None = prop(ENUM)
    Comment: str | None = prop()
    SmartHosts: tuple[str, ...] = multi(SPLIT)
    UseMXRecord: bool | None = prop()
    RecipientDomains: tuple[str, ...] = multi(SPLIT)
    IsTransportRuleScoped: bool | None = prop()
    AllAcceptedDomains: bool | None = prop()
    TlsSettings: str | None = prop(ENUM)
    TlsDomain: str | None = prop()
    RouteAllMessagesViaOnPremises: bool | None = prop()
    CloudServicesMailEnabled: bool | None = prop()
    TestMode: bool | None = prop()
    WhenChanged: datetime | None = prop()
    WhenCreated: datetime | None = prop()
    WhenChangedUTC: datetime | None = prop()
    WhenCreatedUTC: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedDomain(ExoObject):
    """A domain the tenant receives mail for: each one's MX, SPF and DMARC are checked."""

    CMDLET: ClassVar[str] = "Get-AcceptedDomain"
    Name: str | None = prop()
    DomainName: str | None = prop()
    DomainType: str | None = prop(ENUM)
    Default: bool | None = prop()
    InitialDomain: bool | None = prop()
    MatchSubDomains: bool | None = prop()
    IsCoexistenceDomain: bool | None = prop()
    OutboundOnly: bool | None = prop()

    @property
    def normalised_name(self) -> str:
        """``DomainName`` as the checks compare it: lower case, no trailing dot ('' if absent)."""
        return (self.DomainName or "").lower().rstrip(".")


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteDomain(ExoObject):
    """Settings for mail to an outside domain (``*`` for all): whether automatic forwarding
    is allowed there."""

    CMDLET: ClassVar[str] = "Get-RemoteDomain"
    Name: str | None = prop()
    Identity: str | None = prop()
    DomainName: str | None = prop()
    AutoForwardEnabled: bool | None = prop()
    IsInternal: bool | None = prop()
    TrustedMailInboundEnabled: bool | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class OrganizationConfig(ExoObject):
    """Tenant-wide settings read here: whether Direct Send is refused and whether mailbox
    auditing is off."""

    CMDLET: ClassVar[str] = "Get-OrganizationConfig"
    Name: str | None = prop()
    DisplayName: str | None = prop()
    Guid: str | None = prop()
    RejectDirectSend: bool | None = prop()
    AuditDisabled: bool | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig(ExoObject):
    """Tenant-wide transport settings read here: SMTP AUTH and where journal NDRs go."""

    CMDLET: ClassVar[str] = "Get-TransportConfig"
    SmtpClientAuthenticationDisabled: bool | None = prop()
    JournalingReportNdrTo: str | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedConnectionFilterPolicy(ExoObject):
    """A connection filter policy: its IP allow list lets mail from those addresses skip spam
    filtering."""

    CMDLET: ClassVar[str] = "Get-HostedConnectionFilterPolicy"
    Name: str | None = prop()
    Identity: str | None = prop()
    IsDefault: bool | None = prop()
    IPAllowList: tuple[str, ...] = multi(SPLIT)
    IPBlockList: tuple[str, ...] = multi(SPLIT)
    EnableSafeList: bool | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedContentFilterPolicy(ExoObject):
    """An anti-spam policy: its allowed senders and domains skip spam filtering."""

    CMDLET: ClassVar[str] = "Get-HostedContentFilterPolicy"
    Name: str | None = prop()
    Identity: str | None = prop()
    IsDefault: bool | None = prop()
    AllowedSenders: tuple[str, ...] = multi(SPLIT)
    AllowedSenderDomains: tuple[str, ...] = multi(SPLIT)
    BlockedSenders: tuple[str, ...] = multi(SPLIT)
    BlockedSenderDomains: tuple[str, ...] = multi(SPLIT)
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedOutboundSpamFilterPolicy(ExoObject):
    """An outbound spam policy: whether mail may be forwarded out automatically."""

    CMDLET: ClassVar[str] = "Get-HostedOutboundSpamFilterPolicy"
    Name: str | None = prop()
    Identity: str | None = prop()
    IsDefault: bool | None = prop()
    AutoForwardingMode: str | None = prop(ENUM)
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalRule(ExoObject):
    """A journal rule: a copy of matching mail goes to its address (outside the tenant, it
    leaks every message)."""

    CMDLET: ClassVar[str] = "Get-JournalRule"
    Name: str | None = prop()
    Identity: str | None = prop()
    Enabled: bool | None = prop()
    JournalEmailAddress: str | None = prop()
    Scope: str | None = prop(ENUM)
    Recipient: str | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimSigningConfig(ExoObject):
    """A domain's DKIM signing in Exchange Online: compared with the selector records DNS
    publishes."""

    CMDLET: ClassVar[str] = "Get-DkimSigningConfig"
    Name: str | None = prop()
    Domain: str | None = prop()
    Enabled: bool | None = prop()
    Selector1CNAME: str | None = prop()
    Selector2CNAME: str | None = prop()
    Selector1KeySize: int | None = prop()
    Selector2KeySize: int | None = prop()
    # Microsoft signs with SelectorBeforeRotateOnDate until RotateOnDate, then with the other.
    RotateOnDate: datetime | None = prop()
    SelectorBeforeRotateOnDate: str | None = prop()
    SelectorAfterRotateOnDate: str | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantAllowBlockListItem(ExoObject):
    """An entry of the Tenant Allow/Block List (sender, URL or file): an allow entry lets mail
    through filtering."""

    CMDLET: ClassVar[str] = "Get-TenantAllowBlockListItems"
    Identity: str | None = prop()
    Value: str | None = prop()
    Action: str | None = prop(ENUM)
    ListSubType: str | None = prop()
    Notes: str | None = prop()
    SubmissionID: str | None = prop()
    ModifiedBy: str | None = prop()
    LastModifiedBy: str | None = prop()
    ExpirationDate: datetime | None = prop()
    NoExpiration: bool | None = prop()
    RemoveAfter: int | None = prop()  # 45: removed 45 days after the entry last matched
    LastUsedDate: datetime | None = prop()
    SysManaged: bool | None = prop()
    LastModifiedDateTime: datetime | None = prop()
    CreatedDateTime: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantAllowBlockListSpoofItem(ExoObject):
    """A spoofed-sender pair. The cmdlet types Action and SpoofType as plain strings, so they
    are read as text: an unexpected value is reported by the check, never dropped."""

    CMDLET: ClassVar[str] = "Get-TenantAllowBlockListSpoofItems"
    Identity: str | None = prop()
    SpoofedUser: str | None = prop()
    SendingInfrastructure: str | None = prop()
    SpoofType: str | None = prop()
    Action: str | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class Mailbox(ExoObject):
    """A mailbox and where it forwards mail (perhaps outside the tenant, past the gateway)."""

    CMDLET: ClassVar[str] = "Get-Mailbox"
    Identity: str | None = prop()
    Name: str | None = prop()
    Alias: str | None = prop()
    Guid: str | None = prop()
    ExternalDirectoryObjectId: str | None = prop()
    DistinguishedName: str | None = prop()
    LegacyExchangeDN: str | None = prop()
    UserPrincipalName: str | None = prop()
    PrimarySmtpAddress: str | None = prop()
    DisplayName: str | None = prop()
    RecipientTypeDetails: str | None = prop(ENUM)
    ForwardingSmtpAddress: str | None = prop()
    ForwardingAddress: str | None = prop()
    DeliverToMailboxAndForward: bool | None = prop()
    EmailAddresses: tuple[str, ...] = multi(SPLIT)


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxRule(ExoObject):
    """A mailbox's inbox rule: one that forwards or redirects out is a way to take mail out
    unseen."""

    CMDLET: ClassVar[str] = "Get-InboxRule"
    Name: str | None = prop()
    Identity: str | None = prop()
    MailboxOwnerId: str | None = prop()
    Enabled: bool | None = prop()
    ForwardTo: tuple[str, ...] = multi()
    ForwardAsAttachmentTo: tuple[str, ...] = multi()
    RedirectTo: tuple[str, ...] = multi()
    DeleteMessage: bool | None = prop()
    SoftDeleteMessage: bool | None = prop()
    MoveToFolder: str | None = prop()
    MarkAsRead: bool | None = prop()
    SubjectContainsWords: tuple[str, ...] = multi()
    BodyContainsWords: tuple[str, ...] = multi()
    SubjectOrBodyContainsWords: tuple[str, ...] = multi()
    FromAddressContainsWords: tuple[str, ...] = multi()
    HeaderContainsWords: tuple[str, ...] = multi()
    From: tuple[str, ...] = multi()
    StopProcessingRules: bool | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagementRoleAssignment(ExoObject):
    """Who holds an admin role (directly or through a group or policy): who can change mail
    flow."""

    CMDLET: ClassVar[str] = "Get-ManagementRoleAssignment"
    Name: str | None = prop()
    Role: str | None = prop()
    RoleAssigneeType: str | None = prop(ENUM)
    RoleAssignee: str | None = prop()
    RoleAssigneeName: str | None = prop()
    Enabled: bool | None = prop()
    CustomResourceScope: str | None = prop()
    RecipientWriteScope: str | None = prop(ENUM)
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationAccessPolicy(ExoObject):
    """Which mailboxes an application may reach (one that no policy names reaches them all)."""

    CMDLET: ClassVar[str] = "Get-ApplicationAccessPolicy"
    AppId: str | None = prop()
    ScopeIdentity: str | None = prop()
    AccessRight: str | None = prop(ENUM)
    Description: str | None = prop()



@dataclass(frozen=True, slots=True, kw_only=True)
class ArcConfig(ExoObject):
    """The domains whose ARC seals Exchange Online trusts (the gateway's, if it rewrites mail)."""

    CMDLET: ClassVar[str] = "Get-ArcConfig"
    Identity: str | None = prop()
    ArcTrustedSealers: tuple[str, ...] = multi()  # one comma-separated string as the cmdlet shows it

    @property
    def lists_sealers(self) -> bool:
        """Whether the export holds ArcTrustedSealers at all (null counts: it means none)."""
        return _actual_key(self.raw, "ArcTrustedSealers") in self.raw

    def trusted_sealers(self) -> tuple[tuple[str, str], ...]:
        """Each trusted sealer domain (lower case, no trailing dot) with the raw value it was read
        from: the cmdlet writes one comma-separated string, a list may hold several."""
        found: dict[str, str] = {}
        for item in self.ArcTrustedSealers:
            for part in re.split(r"[\s,;]+", item):
                domain = part.strip().lower().rstrip(".")
                if domain:
                    found.setdefault(domain, item)
        return tuple(found.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class PhishSimOverridePolicy(ExoObject):
    """The advanced delivery policy for third-party phishing simulations (there is one)."""

    CMDLET: ClassVar[str] = "Get-PhishSimOverridePolicy"
    Name: str | None = prop()
    Identity: str | None = prop()
    Guid: str | None = prop()
    Enabled: bool | None = prop()
    Comment: str | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class PhishSimOverrideRule(ExoObject):
    """A phishing-simulation override rule: mail from one of ``SenderIpRanges`` whose MAIL FROM
    or DKIM domain is one of ``Domains`` skips filtering. ``Mode`` is Enforce for the valid rule
    (PendingDeletion for one being removed)."""

    CMDLET: ClassVar[str] = "Get-ExoPhishSimOverrideRule"
    Name: str | None = prop()
    Identity: str | None = prop()
    Guid: str | None = prop()
    Policy: str | None = prop()
    Mode: str | None = prop(ENUM)
    Domains: tuple[str, ...] = multi(SPLIT)
    SenderIpRanges: tuple[str, ...] = multi(SPLIT)
    Comment: str | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class SecOpsOverridePolicy(ExoObject):
    """The advanced delivery policy for SecOps mailboxes: mail to ``SentTo`` is not filtered."""

    CMDLET: ClassVar[str] = "Get-SecOpsOverridePolicy"
    Name: str | None = prop()
    Identity: str | None = prop()
    Guid: str | None = prop()
    Enabled: bool | None = prop()
    SentTo: tuple[str, ...] = multi(SPLIT)
    Comment: str | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class SecOpsOverrideRule(ExoObject):
    """The SecOps override rule; ``SentTo`` mirrors its policy's (Set-SecOpsOverridePolicy
    updates both)."""

    CMDLET: ClassVar[str] = "Get-ExoSecOpsOverrideRule"
    Name: str | None = prop()
    Identity: str | None = prop()
    Guid: str | None = prop()
    Policy: str | None = prop()
    Mode: str | None = prop(ENUM)
    SentTo: tuple[str, ...] = multi(SPLIT)
    Comment: str | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminAuditLogConfig(ExoObject):
    """Whether admin actions reach the unified audit log (where CHG-001 finds who changed what)."""

    CMDLET: ClassVar[str] = "Get-AdminAuditLogConfig"
    Identity: str | None = prop()
    UnifiedAuditLogIngestionEnabled: bool | None = prop()
    AdminAuditLogEnabled: bool | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxAuditBypassAssociation(ExoObject):
    """An account whose mailbox actions are never audited."""

    CMDLET: ClassVar[str] = "Get-MailboxAuditBypassAssociation"
    Name: str | None = prop()
    Identity: str | None = prop()
    AuditBypassEnabled: bool | None = prop()
    WhenChanged: datetime | None = prop()

# --- Microsoft Graph (folder graph/): property names as Graph spells them --------------------

CERTIFICATE = "certificate"
SECRET = "secret"  # noqa: S105 - a credential kind, not a password
SYMMETRIC_KEY = "symmetric key"


@dataclass(frozen=True, slots=True)
class AppCredential:
    """One certificate or client secret of an app or a service principal: its id, name, type and
    validity dates. The secret, its hint and a certificate's key are never read."""

    kind: str  # CERTIFICATE, SECRET or SYMMETRIC_KEY
    keyId: str | None
    displayName: str | None
    type: str | None
    startDateTime: datetime | None
    endDateTime: datetime | None
    source: SourceRef
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        name = f" {self.displayName!r}" if self.displayName else ""
        return f"{self.kind}{name} (keyId {self.keyId or 'unknown'})"

    def ref(self, name: str, note: str | None = None) -> EvidenceRef:
        key = _actual_key(self.raw, name)
        return EvidenceRef(self.source.file, f"{self.source.pointer}/{pointer_escape(key)}",
                           self.raw.get(key), name, note)


@dataclass(frozen=True, slots=True)
class CredentialSet:
    """The credentials listed on an object, those that could not be read, and the credential
    properties the evidence does not hold at all (then the credentials are unknown)."""

    items: tuple[AppCredential, ...]
    rejected: tuple[Rejected, ...]
    absent: tuple[str, ...]


_CREDENTIAL_LISTS = (("keyCredentials", CERTIFICATE), ("passwordCredentials", SECRET))


def _credential(item: Mapping[str, Any], kind: str, source: SourceRef) -> AppCredential:
    """One credential entry; raises ValueError naming the property that cannot be read."""
    fields: dict[str, Any] = {}
    for name, convert in (("keyId", values.to_str), ("displayName", values.to_str),
                          ("type", values.to_str), ("startDateTime", values.to_datetime),
                          ("endDateTime", values.to_datetime)):
        try:
            fields[name] = convert(item.get(name))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if kind == CERTIFICATE and fields["type"] and "x509" not in fields["type"].lower():
        kind = SYMMETRIC_KEY
    return AppCredential(kind=kind, source=source, raw=item, **fields)


def app_credentials(obj: ExoObject) -> CredentialSet:
    """The ``keyCredentials`` and ``passwordCredentials`` of a Graph application or service
    principal, each with a pointer to its entry."""
    items: list[AppCredential] = []
    rejected: list[Rejected] = []
    absent: list[str] = []
    for name, kind in _CREDENTIAL_LISTS:
        key = _actual_key(obj.raw, name)
        if key not in obj.raw:
            absent.append(name)
            continue
        listed = obj.raw[key]
        base = f"{obj.source.pointer}/{pointer_escape(key)}"
        if listed is None:
            listed = []
        if not isinstance(listed, list):
            rejected.append(Rejected(obj.source, obj.display_name, f"{name} is not a list",
                                     base, listed))
            continue
        for index, item in enumerate(listed):
            source = SourceRef(obj.source.file, f"{base}/{index}")
            if not isinstance(item, dict):
                rejected.append(Rejected(source, obj.display_name,
                                         f"{name}/{index} is not an object", source.pointer, item))
                continue
            try:
                items.append(_credential(item, kind, source))
            except ValueError as exc:
                rejected.append(Rejected(source, obj.display_name, f"{name}/{index}: {exc}",
                                         source.pointer, None))
    return CredentialSet(tuple(items), tuple(rejected), tuple(absent))


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphObject(ExoObject):
    """A Microsoft Graph directory object: named by ``displayName``, identified by ``id``."""

    id: str | None = prop()
    displayName: str | None = prop()

    @property
    def display_name(self) -> str:
        return self.displayName or self.id or self.source.pointer or "/"


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphServicePrincipal(GraphObject):
    """``GET /servicePrincipals``: an app's identity in this tenant (its own or a vendor's)."""

    CMDLET: ClassVar[str] = "Graph-ServicePrincipals"
    appId: str | None = prop()
    appOwnerOrganizationId: str | None = prop()
    servicePrincipalType: str | None = prop()
    publisherName: str | None = prop()
    accountEnabled: bool | None = prop()

    def credentials(self) -> CredentialSet:
        return app_credentials(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphApplication(GraphObject):
    """``GET /applications``: an app registered in this tenant (where its credentials live)."""

    CMDLET: ClassVar[str] = "Graph-Applications"
    appId: str | None = prop()
    signInAudience: str | None = prop()
    createdDateTime: datetime | None = prop()

    def credentials(self) -> CredentialSet:
        return app_credentials(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphResourceServicePrincipal(GraphObject):
    """A resource API's service principal (Exchange Online, Microsoft Graph) with ``appRoles``:
    the tenant's own record of which app role id means which permission."""

    CMDLET: ClassVar[str] = "Graph-ResourceAppRoles"
    appId: str | None = prop()

    def app_roles(self) -> dict[str, str]:
        """App role id (lower case) -> permission name (``value``), from the evidence."""
        listed = self.raw.get(_actual_key(self.raw, "appRoles"))
        roles: dict[str, str] = {}
        for role in listed if isinstance(listed, list) else ():
            if isinstance(role, dict) and isinstance(role.get("id"), str) \
                    and isinstance(role.get("value"), str):
                roles[role["id"].lower()] = role["value"]
        return roles


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphAppRoleAssignment(ExoObject):
    """``GET /servicePrincipals/{resource}/appRoleAssignedTo``: an application permission
    granted (admin consented) to a principal on a resource API."""

    CMDLET: ClassVar[str] = "Graph-AppRoleAssignments"
    id: str | None = prop()
    appRoleId: str | None = prop()
    principalId: str | None = prop()
    principalDisplayName: str | None = prop()
    principalType: str | None = prop()
    resourceId: str | None = prop()
    resourceDisplayName: str | None = prop()
    createdDateTime: datetime | None = prop()

    @property
    def display_name(self) -> str:
        return self.principalDisplayName or self.principalId or self.source.pointer or "/"


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphDelegatedGrant(ExoObject):
    """``GET /oauth2PermissionGrants``: delegated permissions (such as EWS.AccessAsUser.All)
    consented for a client app on a resource API, for all users or one."""

    CMDLET: ClassVar[str] = "Graph-DelegatedGrants"
    id: str | None = prop()
    clientId: str | None = prop()
    consentType: str | None = prop()
    principalId: str | None = prop()
    resourceId: str | None = prop()
    scope: str | None = prop()


# --- Mailbox evidence over EWS (folder mailbox/) ------------------------------------------------
# Inbox rules read over EWS are stored with Get-InboxRule's property names and use InboxRule.


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageHeaders(ExoObject):
    """What proves how one delivered message reached Exchange Online: its id, date and sender,
    the Received chain (top = latest hop), EOP's X-Forefront-Antispam-Report, the organisation's
    AuthAs / directionality stamps and the names of all its headers (for gateway stamps).

    A row with ``CollectionState`` is not a message but a mailbox whose messages were not read
    (``denied``, ``missing``, ``error``) or whose inbox is ``empty``, with the reason."""

    CMDLET: ClassVar[str] = "Mailbox-MessageHeaders"
    Mailbox: str | None = prop()
    InternetMessageId: str | None = prop()
    DateTimeReceived: datetime | None = prop()
    Sender: str | None = prop()
    Received: tuple[str, ...] = multi()
    AntispamReport: str | None = prop()
    AuthenticationResults: str | None = prop()
    OrganizationAuthAs: str | None = prop()
    MessageDirectionality: str | None = prop()
    HeaderNames: tuple[str, ...] = multi()
    CollectionState: str | None = prop()
    CollectionError: str | None = prop()

    @property
    def display_name(self) -> str:
        return f"{self.Mailbox or '?'}: {self.InternetMessageId or self.source.pointer}"



# --- Unified audit log (folder audit/): Search-UnifiedAuditLog, or Graph's audit log query ------

EXCHANGE_ADMIN = "ExchangeAdmin"
_EXCHANGE_ADMIN_TYPES = frozenset({"exchangeadmin", "1"})  # AuditLogRecordType ExchangeAdmin = 1
REDACTED = "(redacted)"
# A parameter is secret when one of its words says so, or its last word names key material.
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "secret", "token",
                           "credential", "credentials", "pfx", "privatekey"})
_SECRET_LAST_WORDS = frozenset({"key", "certificate", "cert", "sas", "connectionstring"})
_CONTENT_WORDS = frozenset({"data", "blob", "bytes", "content", "value", "raw", "file"})


def _words(name: str) -> list[str]:
    """A parameter name's words: ``TlsSenderCertificateName`` -> tls, sender, certificate, name."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]


def is_secret_parameter(name: str) -> bool:
    """Whether a cmdlet parameter's name suggests its value is a secret (a password, a key, a
    certificate's content); a certificate's *name* (TlsCertificateName) is not one."""
    words = _words(name)
    if not words:
        return False
    return (any(w in _SECRET_WORDS for w in words) or words[-1] in _SECRET_LAST_WORDS
            or ("certificate" in words[:-1] and words[-1] in _CONTENT_WORDS))


def redact_parameters(parameters: Any) -> Any:
    """Audit-record ``Parameters`` ([{Name, Value}]) with the values of secret parameters
    replaced by REDACTED; anything else is returned unchanged."""
    if not isinstance(parameters, list):
        return parameters
    return [dict(p, Value=REDACTED) if isinstance(p, dict) and isinstance(p.get("Name"), str)
            and is_secret_parameter(p["Name"]) and p.get("Value") not in (None, "") else p
            for p in parameters]


def _parameter_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class AdminOperation:
    """One admin operation read from an audit record, whichever shape it came in: who ran which
    cmdlet on which object, when, from which client IP and app, with which parameters (the
    values of secret ones redacted)."""

    operation: str
    user: str
    when: datetime
    object_id: str
    client_ip: str
    app: str
    parameters: tuple[tuple[str, str], ...]
    succeeded: bool | None  # None: the record does not say
    external: bool  # run by Microsoft personnel or a delegated (partner) administrator
    record_type: str
    record_id: str
    record: UnifiedAuditRecord = field(repr=False, compare=False)
    details: str  # the JSON pointer of the record's AuditData
    embedded: bool  # AuditData is JSON text (a pointer cannot reach inside it)

    @property
    def is_exchange_admin(self) -> bool:
        """ExchangeAdmin, or a record that does not say its type (the query asked for that type)."""
        return self.record_type in ("", EXCHANGE_ADMIN)

    def parameter(self, name: str) -> str | None:
        return next((v for n, v in self.parameters if n.lower() == name.lower()), None)

    def ref(self, name: str, observed: Any = None, note: str | None = None) -> EvidenceRef:
        """Evidence for one AuditData property (``observed`` as shown, e.g. redacted)."""
        if self.embedded:
            inside = f"{name} inside the AuditData JSON text"
            return EvidenceRef(self.record.source.file, self.details, observed, name,
                               f"{inside}; {note}" if note else inside)
        return EvidenceRef(self.record.source.file, f"{self.details}/{pointer_escape(name)}",
                           observed, name, note)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnifiedAuditRecord(ExoObject):
    """One unified audit log record, as ``Search-UnifiedAuditLog`` writes it (RecordType,
    CreationDate, UserIds, Operations, and AuditData: the details as a JSON *string*) or as
    Microsoft Graph's audit log query returns it (an auditLogRecord: createdDateTime, operation,
    userPrincipalName, objectId, clientIp, and auditData: the same details as an object).

    ``admin_operation()`` reads either shape, or says in a Rejected why the record cannot be read.
    """

    CMDLET: ClassVar[str] = "Search-UnifiedAuditLog"
    Identity: str | None = prop()
    RecordType: str | None = prop()
    UserIds: str | None = prop()
    Operations: str | None = prop()
    id: str | None = prop()
    auditLogRecordType: str | None = prop()
    operation: str | None = prop()
    userPrincipalName: str | None = prop()
    objectId: str | None = prop()
    clientIp: str | None = prop()

    @property
    def display_name(self) -> str:
        return self.Identity or self.id or self.source.pointer or "/"

    def _rejected(self, pointer: str, observed: Any, reason: str) -> Rejected:
        return Rejected(self.source, f"audit record {self.display_name}", reason, pointer, observed)

    def admin_operation(self) -> AdminOperation | Rejected:
        key = _actual_key(self.raw, "AuditData")
        pointer = f"{self.source.pointer}/{pointer_escape(key)}"
        raw = self.raw.get(key)
        details: Any = raw
        if isinstance(raw, str):
            try:
                details = json.loads(raw)
            except ValueError as exc:
                return self._rejected(pointer, raw, f"AuditData is not valid JSON ({exc})")
        if not isinstance(details, dict):
            what = "missing" if details is None else "not an object"
            return self._rejected(pointer, raw, f"AuditData is {what}: the operation's object, "
                                                "parameters and client cannot be read")
        try:
            return self._operation(details, pointer, embedded=isinstance(raw, str))
        except ValueError as exc:
            return self._rejected(pointer, raw, f"AuditData: {exc}")

    def _operation(self, details: Mapping[str, Any], pointer: str, *, embedded: bool) -> AdminOperation:
        """Raises ValueError naming the property that cannot be read."""
        def text(name: str, *fallbacks: Any) -> str:
            for value in (details.get(name), *fallbacks):
                try:
                    converted = values.to_str(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
                if converted:
                    return converted.strip()
            return ""

        stamp = next((v for v in (details.get("CreationTime"), self.raw.get(
            _actual_key(self.raw, "createdDateTime")), self.raw.get(_actual_key(self.raw, "CreationDate")))
            if v not in (None, "")), None)
        try:
            when = values.to_datetime(stamp)
        except ValueError as exc:
            raise ValueError(f"CreationTime: {exc}") from None
        if when is None:
            raise ValueError("the record holds no time (CreationTime)")
        operation = text("Operation", self.operation, self.Operations)
        if not operation:
            raise ValueError("the record names no operation")
        listed = details.get("Parameters")
        if listed is None:
            listed = []
        if not isinstance(listed, list) or not all(isinstance(p, dict) for p in listed):
            raise ValueError("Parameters is not a list of {Name, Value} objects")
        parameters = tuple(
            (str(p.get("Name") or ""), REDACTED if is_secret_parameter(str(p.get("Name") or ""))
             and p.get("Value") not in (None, "") else _parameter_text(p.get("Value")))
            for p in listed)
        status = text("ResultStatus").lower()
        record_type = text("RecordType", self.RecordType, self.auditLogRecordType)
        try:
            external = bool(values.to_bool(details.get("ExternalAccess")))
        except ValueError as exc:
            raise ValueError(f"ExternalAccess: {exc}") from None
        return AdminOperation(
            operation=operation,
            user=text("UserId", self.userPrincipalName, self.UserIds),
            when=when,
            object_id=text("ObjectId", self.objectId),
            client_ip=text("ClientIP", self.clientIp),
            app=text("AppId", details.get("ClientAppId")),
            parameters=parameters,
            succeeded=(True if status in ("true", "succeeded", "partiallysucceeded")
                       else False if status in ("false", "failed") else None),
            external=external,
            record_type=EXCHANGE_ADMIN if record_type.lower() in _EXCHANGE_ADMIN_TYPES else record_type,
            record_id=text("Id", self.Identity, self.id),
            record=self,
            details=pointer,
            embedded=embedded,
        )


Model = typing.TypeVar("Model", bound=ExoObject)


@cache
def _plan(cls: type[ExoObject]) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """How to convert each declared property of ``cls``, derived from its type hints."""
    hints = typing.get_type_hints(cls)
    steps: list[tuple[str, Callable[[Any], Any]]] = []
    for fld in dataclasses.fields(cls):
        if fld.name in ("source", "raw"):
            continue
        hint = hints[fld.name]
        kind = fld.metadata.get("kind")
        converter: Callable[[Any], Any]
        if kind == ENUM:
            converter = values.enum_converter(cls.CMDLET, fld.name)
        elif hint == tuple[str, ...]:
            split = kind == SPLIT

            def converter(value: Any, _split: bool = split) -> tuple[str, ...]:
                return values.to_strings(value, split=_split)

        elif hint == bool | None:
            converter = values.to_bool
        elif hint == int | None:
            converter = values.to_int
        elif hint == datetime | None:
            converter = values.to_datetime
        elif hint == str | None:
            converter = values.to_str
        else:  # pragma: no cover - a model declared with an unsupported type
            raise TypeError(f"{cls.__name__}.{fld.name}: unsupported type {hint}")
        steps.append((fld.name, converter))
    return tuple(steps)


def build(cls: type[Model], obj: RawObject, file: str) -> Model | Rejected:
    """Build one model from a raw object, or a Rejected naming the first bad property."""
    source = SourceRef(file=file, pointer=obj.pointer)
    lowered = {key.lower(): key for key in obj.data}
    kwargs: dict[str, Any] = {}
    for name, converter in _plan(cls):
        key = name if name in obj.data else lowered.get(name.lower())
        if key is None:
            continue
        try:
            kwargs[name] = converter(obj.data[key])
        except ValueError as exc:
            label = _label(obj.data)
            return Rejected(
                source=source,
                name=label,
                reason=f"{name} at {obj.pointer}/{pointer_escape(key)}: {exc}",
                pointer=f"{obj.pointer}/{pointer_escape(key)}",
                observed=obj.data[key],
            )
    return cls(source=source, raw=obj.data, **kwargs)


def _label(data: Mapping[str, Any]) -> str:
    for key in ("Name", "DomainName", "Identity", "UserPrincipalName", "Value"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return "(unnamed object)"


# --- SMTP probe (folder probe/): what `mailflow-audit probe` recorded ---------------------------


@dataclass(frozen=True, slots=True)
class ProbeStep:
    """One exchange of a probe's SMTP conversation: the command sent (None for the greeting and
    for a step that failed before any reply) and the reply, with where it sits in the file."""

    index: int
    stage: str
    command: str | None
    code: int | None
    reply: str | None
    source: SourceRef

    def ref(self, note: str | None = None) -> EvidenceRef:
        return EvidenceRef(self.source.file, f"{self.source.pointer}/Reply", self.reply, "Reply",
                           note or self.stage)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeTranscript(ExoObject):
    """One run of ``mailflow-audit probe``: where it connected, as whom, the TLS session, and the
    conversation in ``Steps`` (read with :meth:`steps`); ``Error`` says why it stopped early."""

    CMDLET: ClassVar[str] = "Probe-SMTP"
    Tool: str | None = prop()
    Domain: str | None = prop()
    Host: str | None = prop()
    Port: int | None = prop()
    PeerAddress: str | None = prop()
    HeloName: str | None = prop()
    MailFrom: str | None = prop()
    Recipient: str | None = prop()
    SendCanary: bool | None = prop()
    CanaryId: str | None = prop()
    StartedAt: datetime | None = prop()
    FinishedAt: datetime | None = prop()
    TlsVersion: str | None = prop()
    TlsCipher: str | None = prop()
    TlsPeerSubject: str | None = prop()
    Error: str | None = prop()
    ErrorStage: str | None = prop()

    @property
    def display_name(self) -> str:
        return f"{self.Recipient or '?'} via {self.Host or '?'}"

    def steps(self) -> tuple[ProbeStep, ...]:
        """The recorded conversation; ValueError (naming the JSON pointer) if it cannot be read."""
        key = _actual_key(self.raw, "Steps")
        listed = self.raw.get(key)
        base = f"{self.source.pointer}/{pointer_escape(key)}"
        if not isinstance(listed, list):
            raise ValueError(f"{base}: Steps is not a list")
        steps = []
        for index, item in enumerate(listed):
            where = f"{base}/{index}"
            if not isinstance(item, dict) or not isinstance(item.get("Stage"), str):
                raise ValueError(f"{where}: a step is not an object with a Stage")
            try:
                code = values.to_int(item.get("Code"))
                command, reply = values.to_str(item.get("Command")), values.to_str(item.get("Reply"))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            steps.append(ProbeStep(index, item["Stage"], command, code, reply,
                                   SourceRef(self.source.file, where)))
        return tuple(steps)
