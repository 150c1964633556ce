"""Typed models of the Exchange Online objects the checks read.

Attribute names are the cmdlets' property names, so a finding's property and the PowerShell
the admin types agree. Every object keeps where it came from (file and JSON pointer) and its
raw properties, so a finding can quote exactly what the evidence says.
"""

from __future__ import annotations

import dataclasses
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
    CMDLET: ClassVar[str] = "Get-AcceptedDomain"
    Name: str | None = prop()
    DomainName: str | None = prop()
    DomainType: str | None = prop(ENUM)
    Default: bool | None = prop()
    InitialDomain: bool | None = prop()
    MatchSubDomains: bool | None = prop()
    IsCoexistenceDomain: bool | None = prop()
    OutboundOnly: bool | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteDomain(ExoObject):
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
    CMDLET: ClassVar[str] = "Get-OrganizationConfig"
    Name: str | None = prop()
    DisplayName: str | None = prop()
    Guid: str | None = prop()
    RejectDirectSend: bool | None = prop()
    AuditDisabled: bool | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig(ExoObject):
    CMDLET: ClassVar[str] = "Get-TransportConfig"
    SmtpClientAuthenticationDisabled: bool | None = prop()
    JournalingReportNdrTo: str | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedConnectionFilterPolicy(ExoObject):
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
    CMDLET: ClassVar[str] = "Get-HostedOutboundSpamFilterPolicy"
    Name: str | None = prop()
    Identity: str | None = prop()
    IsDefault: bool | None = prop()
    AutoForwardingMode: str | None = prop(ENUM)
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalRule(ExoObject):
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
    CMDLET: ClassVar[str] = "Get-DkimSigningConfig"
    Name: str | None = prop()
    Domain: str | None = prop()
    Enabled: bool | None = prop()
    Selector1CNAME: str | None = prop()
    Selector2CNAME: str | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantAllowBlockListItem(ExoObject):
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
    CMDLET: ClassVar[str] = "Get-ApplicationAccessPolicy"
    AppId: str | None = prop()
    ScopeIdentity: str | None = prop()
    AccessRight: str | None = prop(ENUM)
    Description: str | None = prop()



@dataclass(frozen=True, slots=True, kw_only=True)
class ArcConfig(ExoObject):
    CMDLET: ClassVar[str] = "Get-ArcConfig"
    Identity: str | None = prop()
    ArcTrustedSealers: tuple[str, ...] = multi()  # one comma-separated string as the cmdlet shows it


@dataclass(frozen=True, slots=True, kw_only=True)
class PhishSimOverridePolicy(ExoObject):
    CMDLET: ClassVar[str] = "Get-PhishSimOverridePolicy"
    Name: str | None = prop()
    Identity: str | None = prop()
    Enabled: bool | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class PhishSimOverrideRule(ExoObject):
    CMDLET: ClassVar[str] = "Get-ExoPhishSimOverrideRule"
    Name: str | None = prop()
    Identity: str | None = prop()
    Policy: str | None = prop()
    Domains: tuple[str, ...] = multi(SPLIT)
    SenderIpRanges: tuple[str, ...] = multi(SPLIT)
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class SecOpsOverridePolicy(ExoObject):
    CMDLET: ClassVar[str] = "Get-SecOpsOverridePolicy"
    Name: str | None = prop()
    Identity: str | None = prop()
    Enabled: bool | None = prop()
    SentTo: tuple[str, ...] = multi(SPLIT)
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class SecOpsOverrideRule(ExoObject):
    CMDLET: ClassVar[str] = "Get-ExoSecOpsOverrideRule"
    Name: str | None = prop()
    Identity: str | None = prop()
    Policy: str | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminAuditLogConfig(ExoObject):
    CMDLET: ClassVar[str] = "Get-AdminAuditLogConfig"
    Identity: str | None = prop()
    UnifiedAuditLogIngestionEnabled: bool | None = prop()
    AdminAuditLogEnabled: bool | None = prop()
    WhenChanged: datetime | None = prop()


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxAuditBypassAssociation(ExoObject):
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
