"""Bulk mode: audit the DNS of many domains without a tenant, each against its own gateway.

Each domain is judged alone, by the checks that need nothing but DNS, with the gateway its
MX points to; lookups shared between domains (a common include) were asked once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .audit import finding_json
from .context import AuditContext
from .dnsevidence import DNS_KEY, DomainDns, dns_path
from .dnsmodel import normalise_name
from .engine import Check, Finding, Registry, Severity, Status, run_checks
from .evidence import EvidenceStore
from .gateways import GatewayContext, GatewayProfile, resolve_gateway

BULK_SCHEMA_VERSION = 1


def dns_only(registry: Registry) -> tuple[Check, ...]:
    """The checks a domain can be judged by without tenant evidence."""
    return tuple(c for c in registry.checks if set(c.meta.requires) <= {DNS_KEY})


def read_domains(lines: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Domains from a list (one per line, # comments), and the entries that are not domains."""
    domains: dict[str, None] = {}
    rejected: list[tuple[str, str]] = []
    for raw in lines:
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        name = normalise_name(text)
        if dns_path(name) is None:
            rejected.append((text, "not a valid domain name"))
        else:
            domains.setdefault(name, None)
    return list(domains), rejected


@dataclass(frozen=True)
class DomainResult:
    domain: str
    gateway: GatewayContext
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class BulkReport:
    results: tuple[DomainResult, ...]
    rejected: tuple[tuple[str, str], ...]
    registry: Registry
    resolvers: tuple[str, ...]
    generated_at: datetime

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    def worst(self, threshold: Severity) -> list[Finding]:
        return [f for f in self.findings if f.status.is_finding and f.severity.rank >= threshold.rank]

    def to_json(self) -> dict[str, Any]:
        meta = {c.id: c.meta for c in self.registry.checks}
        by_status = Counter(f.status.value for f in self.findings)
        by_severity = Counter(f.severity.value for f in self.findings if f.status.is_finding)
        return {
            "schema_version": BULK_SCHEMA_VERSION,
            "tool": {"name": "mailflow-auditor", "version": __version__},
            "generated_at": self.generated_at.isoformat().replace("+00:00", "Z"),
            "resolvers": list(self.resolvers),
            "summary": {
                "domains": len(self.results),
                "by_status": {s.value: by_status.get(s.value, 0) for s in Status},
                "by_severity": {s.value: by_severity.get(s.value, 0) for s in Severity},
            },
            "domains": [
                {"domain": r.domain, "gateway": [p.id for p in r.gateway.active],
                 "worst": _worst(r.findings)}
                for r in self.results
            ],
            "rejected": [{"entry": entry, "reason": reason} for entry, reason in self.rejected],
            "findings": [
                {"domain": r.domain, "gateway": [p.id for p in r.gateway.active],
                 **finding_json(f, meta.get(f.check_id))}
                for r in self.results for f in r.findings
            ],
        }


def _worst(findings: Iterable[Finding]) -> str | None:
    ranked = [f.severity for f in findings if f.status.is_finding]
    return max(ranked, key=lambda s: s.rank).value if ranked else None


def audit_domains(recorded: Iterable[DomainDns], registry: Registry,
                  profiles: tuple[GatewayProfile, ...], *, rejected: Iterable[tuple[str, str]] = (),
                  resolvers: Iterable[str] = ()) -> BulkReport:
    """Judge each domain alone, with the gateway its own MX points to."""
    checks = dns_only(registry)
    now = datetime.now(UTC)
    results = []
    for domain in recorded:
        store = EvidenceStore({}, dns={domain.domain: domain})
        gateway = resolve_gateway(store, profiles)
        context = AuditContext(evidence=store, gateway=gateway, as_of=now)
        results.append(DomainResult(domain.domain, gateway, tuple(run_checks(checks, context))))
    return BulkReport(tuple(results), tuple(rejected), registry, tuple(resolvers), now)
