"""The built-in checks, grouped by bypass vector; registered as one entry point."""

from . import connectors, organization, policies, transport_rules

BUILTIN_CHECKS = (
    connectors.inbound_lockdown,
    connectors.gateway_connector_enabled,
    transport_rules.scl_bypass_rules,
    transport_rules.external_copy_rules,
    policies.connection_filter_allow_list,
    organization.reject_direct_send,
)
