"""The built-in checks, grouped by bypass vector; registered as one entry point.

Each module lists its checks in ``CHECKS``; this tuple is their union, in catalog order.
"""

from . import (
    apps,
    arc,
    changes,
    connectors,
    dkim,
    dns,
    gateway,
    mail,
    mailboxes,
    organization,
    policies,
    probe,
    transport_rules,
)

BUILTIN_CHECKS = (
    *connectors.CHECKS,
    *transport_rules.CHECKS,
    *policies.CHECKS,
    *mailboxes.CHECKS,
    *organization.CHECKS,
    *dns.CHECKS,
    *gateway.CHECKS,
    *apps.CHECKS,
    *mail.CHECKS,
    *dkim.CHECKS,
    *arc.CHECKS,
    *changes.CHECKS,
    *probe.CHECKS,
)
