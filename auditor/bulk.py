"""Bulk mode: audit the DNS of many domains without a tenant, each against its own gateway.

Each domain is judged alone, by the checks that need nothing but DNS, with the gateway its
MX points to; lookups shared between domains (a common include) were asked once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .audit import finding_json
from .context import AuditContext
from .dnscollect import collect_with_policies
from .dnsevidence import DNS_KEY, DomainDns, dns_path
from .dnsmodel import normalise_name
from .dnsresolve import Nameserver, Resolver
from .engine import Check, Finding, Registry, Severity, Status, discover, run_checks
from .evidence import EvidenceStore
from .gateways import GatewayContext, GatewayProfile, builtin_profiles, resolve_gateway

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

    def to_json(self) -> dict[str, Any]:
        meta = {c.id: c.meta for c in self.registry.checks}
        domains = [{"domain": r.domain, "gateway": [p.id for p in r.gateway.active],
                    "worst": _worst(r.findings)} for r in self.results]
        findings = [{"domain": r.domain, "gateway": [p.id for p in r.gateway.active],
                     **finding_json(f, meta.get(f.check_id))}
                    for r in self.results for f in r.findings]
        return bulk_json(domains, findings, self.rejected, self.resolvers, self.generated_at)


def bulk_json(domains: list[dict[str, Any]], findings: list[dict[str, Any]],
              rejected: Iterable[tuple[str, str]], resolvers: Iterable[str],
              generated_at: datetime) -> dict[str, Any]:
    """The bulk JSON report (a contract like the tenant report's: fields only added)."""
    by_status = Counter(f["status"] for f in findings)
    by_severity = Counter(f["severity"] for f in findings if f["status"] in ("fail", "warn"))
    return {
        "schema_version": BULK_SCHEMA_VERSION,
        "tool": {"name": "mailflow-auditor", "version": __version__},
        "generated_at": generated_at.isoformat().replace("+00:00", "Z"),
        "resolvers": list(resolvers),
        "summary": {
            "domains": len(domains),
            "by_status": {s.value: by_status.get(s.value, 0) for s in Status},
            "by_severity": {s.value: by_severity.get(s.value, 0) for s in Severity},
        },
        "domains": domains,
        "rejected": [{"entry": entry, "reason": reason} for entry, reason in rejected],
        "findings": findings,
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


@dataclass(frozen=True)
class BulkJob:
    """What one worker process audits: its share of the domains and how to ask DNS."""

    domains: tuple[str, ...]
    nameservers: tuple[Nameserver, ...]
    timeout: float
    concurrency: int


_progress_counter: Any = None  # a multiprocessing.Value shared with the workers


def _init_worker(counter: Any) -> None:
    global _progress_counter
    _progress_counter = counter


def _count_one(done: int, total: int) -> None:
    with _progress_counter.get_lock():
        _progress_counter.value += 1


def run_job(job: BulkJob, progress: Callable[[int, int], None] | None = None,
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Collect and judge one share of the domains; JSON-ready (domains, findings, queries sent)."""
    resolver = Resolver(job.nameservers, timeout=job.timeout, concurrency=job.concurrency)
    if progress is None and _progress_counter is not None:
        progress = _count_one
    recorded = asyncio.run(collect_with_policies(list(job.domains), resolver, [], job.timeout,
                                                 progress))
    data = audit_domains(recorded, discover(), builtin_profiles()).to_json()
    return data["domains"], data["findings"], resolver.sent


def run_bulk(domains: list[str], nameservers: list[Nameserver], *, timeout: float,
             concurrency: int, jobs: int,
             progress: Callable[[int, int], None] | None = None,
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Audit the domains in ``jobs`` processes (each with its own share and DNS cache), and put
    the results back in the order of the list."""
    jobs = max(1, min(jobs, len(domains)))
    if jobs == 1:
        return run_job(BulkJob(tuple(domains), tuple(nameservers), timeout, concurrency), progress)
    context = multiprocessing.get_context("fork")
    counter = context.Value("i", 0)
    shares = [BulkJob(tuple(domains[i::jobs]), tuple(nameservers), timeout,
                      max(1, concurrency // jobs)) for i in range(jobs)]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                             initargs=(counter,)) as pool:
        futures = [pool.submit(run_job, share) for share in shares]
        while not all(f.done() for f in futures):
            if progress is not None:
                progress(min(counter.value, len(domains)), len(domains))
            wait(futures, timeout=0.1, return_when=FIRST_EXCEPTION)
        parts = [f.result() for f in futures]
    if progress is not None:
        progress(len(domains), len(domains))
    order = {name: i for i, name in enumerate(domains)}
    merged_domains = sorted((d for part in parts for d in part[0]), key=lambda d: order[d["domain"]])
    merged_findings = sorted((f for part in parts for f in part[1]),
                             key=lambda f: order[f["domain"]])
    return merged_domains, merged_findings, sum(part[2] for part in parts)
