"""Integer values of the Exchange enums that ConvertTo-Json writes as numbers.

Sources: decompiled Exchange Server code in evilashz/exchange-server-27065 (Exchange 2016/2019,
commit "KB4593466"); every file cited below is identical in PiratesRE/exchange_diff
(Exchange 2013 KB5000871). The paths are the same in both repositories. These are on-premises
builds; Exchange Online shares the types, but the values are not confirmed against an
Exchange Online build.

- RuleState, RuleMode, RuleErrorAction:
  Microsoft.Exchange.Rules.Common/MessagingPolicies/Rules/{RuleState,RuleMode,RuleErrorAction}.cs
- SenderAddressLocation: Microsoft.Exchange.MessagingPolicies.Rules/Rules/SenderAddressLocation.cs
- FromUserScope, ToUserScope:
  Microsoft.Exchange.Management/Exchange/MessagingPolicies/Rules/Tasks/FromUserScope.cs and
  .../Rules/Tasks/ToUserScope.cs
  (the Get-TransportRule object, .../Rules/Tasks/Rule.cs, types FromScope and ExceptIfFromScope
  as FromUserScope, and SentToScope and ExceptIfSentToScope as ToUserScope)
- JournalRuleScope:
  Microsoft.Exchange.Management/Exchange/MessagingPolicies/Journaling/JournalRuleScope.cs
- TenantConnectorType, TenantConnectorSource, TlsAuthLevel:
  Microsoft.Exchange.Data/{TenantConnectorType,TenantConnectorSource,TlsAuthLevel}.cs
- AcceptedDomainType:
  Microsoft.Exchange.Data.Directory/Data/Directory/SystemConfiguration/AcceptedDomainType.cs
- SpamFilteringAction:
  Microsoft.Exchange.Data.Directory/Data/Directory/SystemConfiguration/SpamFilteringAction.cs
- RecipientTypeDetails:
  Microsoft.Exchange.Data.Directory/Data/Directory/Recipient/RecipientTypeDetails.cs

Unknown (integers for these are refused):
- Get-HostedOutboundSpamFilterPolicy AutoForwardingMode: this enum is not in any source found.
- Get-TenantAllowBlockListItems Action: not in any source found.
- Get-HostedContentFilterPolicy HighConfidencePhishAction: Exchange Online types it as
  PhishFilteringAction, which is not in any source found.
- SpamFilteringAction NoAction: Exchange Online documents this member, but the on-premises enum
  ends at Quarantine = 5, so its number is unknown.
- TenantConnectorSource AdminUI: not in the source, which has only Default, Migrated
  and HybridWizard.
- RecipientTypeDetails values that only Exchange Online has, and combined flag values.
Get-TransportRule SetAuditSeverity is a string in the source (Rule.cs), not an enum, so it
needs no entry here.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# Microsoft.Exchange.Rules.Common/MessagingPolicies/Rules/RuleState.cs
_RULE_STATE: Final = {0: "Enabled", 1: "Disabled"}
# Microsoft.Exchange.Rules.Common/MessagingPolicies/Rules/RuleMode.cs (starts at Audit = 1)
_RULE_MODE: Final = {1: "Audit", 2: "AuditAndNotify", 3: "Enforce"}
# Microsoft.Exchange.Rules.Common/MessagingPolicies/Rules/RuleErrorAction.cs
_RULE_ERROR_ACTION: Final = {0: "Ignore", 1: "Defer"}
# Microsoft.Exchange.MessagingPolicies.Rules/Rules/SenderAddressLocation.cs
_SENDER_ADDRESS_LOCATION: Final = {0: "Header", 1: "Envelope", 2: "HeaderOrEnvelope"}
# Microsoft.Exchange.Management/Exchange/MessagingPolicies/Rules/Tasks/FromUserScope.cs
_FROM_USER_SCOPE: Final = {0: "InOrganization", 1: "NotInOrganization"}
# Microsoft.Exchange.Management/Exchange/MessagingPolicies/Rules/Tasks/ToUserScope.cs
_TO_USER_SCOPE: Final = {
    0: "InOrganization",
    1: "NotInOrganization",
    2: "ExternalPartner",
    3: "ExternalNonPartner",
}
# Microsoft.Exchange.Management/Exchange/MessagingPolicies/Journaling/JournalRuleScope.cs
_JOURNAL_RULE_SCOPE: Final = {0: "Internal", 1: "External", 2: "Global"}
# Microsoft.Exchange.Data/TenantConnectorType.cs (starts at OnPremises = 1)
_TENANT_CONNECTOR_TYPE: Final = {1: "OnPremises", 2: "Partner"}
# Microsoft.Exchange.Data/TenantConnectorSource.cs ([Flags], but only single values are named)
_TENANT_CONNECTOR_SOURCE: Final = {0: "Default", 1: "Migrated", 2: "HybridWizard"}
# Microsoft.Exchange.Data/TlsAuthLevel.cs (EncryptionOnly = 1, then 2, and DomainValidation = 4)
_TLS_AUTH_LEVEL: Final = {
    1: "EncryptionOnly",
    2: "CertificateValidation",
    4: "DomainValidation",
}
# Microsoft.Exchange.Data.Directory/Data/Directory/SystemConfiguration/AcceptedDomainType.cs
_ACCEPTED_DOMAIN_TYPE: Final = {
    0: "Authoritative",
    1: "ExternalRelay",
    2: "InternalRelay",
}
# Microsoft.Exchange.Data.Directory/Data/Directory/SystemConfiguration/SpamFilteringAction.cs
# (Exchange Online also documents NoAction; its number is unknown, so it is left out)
_SPAM_FILTERING_ACTION: Final = {
    0: "MoveToJmf",
    1: "AddXHeader",
    2: "ModifySubject",
    3: "Redirect",
    4: "Delete",
    5: "Quarantine",
}
# Microsoft.Exchange.Data.Directory/Data/Directory/Recipient/RecipientTypeDetails.cs
# ([Flags] long). Only single named values are listed; the AllUniqueRecipientTypes mask is left out.
_RECIPIENT_TYPE_DETAILS: Final = {
    0: "None",
    1: "UserMailbox",
    2: "LinkedMailbox",
    4: "SharedMailbox",
    8: "LegacyMailbox",
    16: "RoomMailbox",
    32: "EquipmentMailbox",
    64: "MailContact",
    128: "MailUser",
    256: "MailUniversalDistributionGroup",
    512: "MailNonUniversalGroup",
    1024: "MailUniversalSecurityGroup",
    2048: "DynamicDistributionGroup",
    4096: "PublicFolder",
    8192: "SystemAttendantMailbox",
    16384: "SystemMailbox",
    32768: "MailForestContact",
    65536: "User",
    131072: "Contact",
    262144: "UniversalDistributionGroup",
    524288: "UniversalSecurityGroup",
    1048576: "NonUniversalGroup",
    2097152: "DisabledUser",
    4194304: "MicrosoftExchange",
    8388608: "ArbitrationMailbox",
    16777216: "MailboxPlan",
    33554432: "LinkedUser",
    268435456: "RoomList",
    536870912: "DiscoveryMailbox",
    1073741824: "RoleGroup",
    2147483648: "RemoteUserMailbox",
    4294967296: "Computer",
    8589934592: "RemoteRoomMailbox",
    17179869184: "RemoteEquipmentMailbox",
    34359738368: "RemoteSharedMailbox",
    68719476736: "PublicFolderMailbox",
    137438953472: "TeamMailbox",
    274877906944: "RemoteTeamMailbox",
    549755813888: "MonitoringMailbox",
    1099511627776: "GroupMailbox",
    2199023255552: "LinkedRoomMailbox",
    4398046511104: "AuditLogMailbox",
    8796093022208: "RemoteGroupMailbox",
}

# (cmdlet, property) -> {int: name}; a property that shares one enum across cmdlets
# can appear under each cmdlet.
_ENUMS: Final[dict[tuple[str, str], dict[int, str]]] = {
    ("Get-TransportRule", "State"): _RULE_STATE,
    ("Get-TransportRule", "Mode"): _RULE_MODE,
    ("Get-TransportRule", "RuleErrorAction"): _RULE_ERROR_ACTION,
    ("Get-TransportRule", "SenderAddressLocation"): _SENDER_ADDRESS_LOCATION,
    ("Get-TransportRule", "FromScope"): _FROM_USER_SCOPE,
    ("Get-TransportRule", "ExceptIfFromScope"): _FROM_USER_SCOPE,
    ("Get-TransportRule", "SentToScope"): _TO_USER_SCOPE,
    ("Get-TransportRule", "ExceptIfSentToScope"): _TO_USER_SCOPE,
    ("Get-JournalRule", "Scope"): _JOURNAL_RULE_SCOPE,
    ("Get-InboundConnector", "ConnectorType"): _TENANT_CONNECTOR_TYPE,
    ("Get-InboundConnector", "ConnectorSource"): _TENANT_CONNECTOR_SOURCE,
    ("Get-OutboundConnector", "ConnectorType"): _TENANT_CONNECTOR_TYPE,
    ("Get-OutboundConnector", "ConnectorSource"): _TENANT_CONNECTOR_SOURCE,
    ("Get-OutboundConnector", "TlsSettings"): _TLS_AUTH_LEVEL,
    ("Get-AcceptedDomain", "DomainType"): _ACCEPTED_DOMAIN_TYPE,
    # SpamAction and HighConfidenceSpamAction are typed SpamFilteringAction in
    # .../SystemConfiguration/HostedContentFilterPolicy.cs. BulkSpamAction and PhishSpamAction exist
    # only in Exchange Online, and its cmdlet documentation gives their type as SpamFilteringAction.
    ("Get-HostedContentFilterPolicy", "SpamAction"): _SPAM_FILTERING_ACTION,
    ("Get-HostedContentFilterPolicy", "HighConfidenceSpamAction"): _SPAM_FILTERING_ACTION,
    ("Get-HostedContentFilterPolicy", "BulkSpamAction"): _SPAM_FILTERING_ACTION,
    ("Get-HostedContentFilterPolicy", "PhishSpamAction"): _SPAM_FILTERING_ACTION,
    ("Get-Mailbox", "RecipientTypeDetails"): _RECIPIENT_TYPE_DETAILS,
    ("Get-Recipient", "RecipientTypeDetails"): _RECIPIENT_TYPE_DETAILS,
    ("Get-MailUser", "RecipientTypeDetails"): _RECIPIENT_TYPE_DETAILS,
    ("Get-MailContact", "RecipientTypeDetails"): _RECIPIENT_TYPE_DETAILS,
}
ENUMS: Final[Mapping[tuple[str, str], Mapping[int, str]]] = MappingProxyType(
    {k: MappingProxyType(v) for k, v in _ENUMS.items()}
)


def enum_name(cmdlet: str, prop: str, value: int) -> str | None:
    """The name Exchange shows for an integer enum value, or None when unknown."""
    return ENUMS.get((cmdlet, prop), {}).get(value)
