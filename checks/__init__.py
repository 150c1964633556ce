"""The built-in checks, grouped by bypass vector; registered as one entry point."""

from . import connectors, dns, organization, policies, transport_rules

BUILTIN_CHECKS = (
    connectors.inbound_lockdown,
    connectors.gateway_connector_enabled,
    transport_rules.scl_bypass_rules,
    transport_rules.external_copy_rules,
    policies.connection_filter_allow_list,
    organization.reject_direct_send,
    dns.mx_around_gateway,
    dns.mx_usable,
    dns.spf_valid,
    dns.spf_too_permissive,
    dns.spf_matches_outbound,
    dns.dmarc_policy,
    dns.mta_sts,
)
