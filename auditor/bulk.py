"""Bulk mode: audit the DNS of many domains without a tenant, each against its own gateway.

Each domain is judged alone, by the checks that need nothing but DNS, with the gateway its
MX points to; lookups shared between domains (a common include) were asked once.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from . import __version__
from .audit import finding_json
from .context import AuditContext
from .dnscollect import collect_with_policies
from .dnsevidence import DNS_KEY, DomainDns, dns_path
from .dnsmodel import normalise_name
from .dnsresolve import Nameserver, Resolver
from .engine import Check, Finding, Registry, Severity, Status, discover, run_checks
from .errors import BulkIncompleteError
from .evidence import Collection, EvidenceStore
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
        """The report's JSON: each finding as ``{"domain", "gateway", **finding_json(...)}``.

        Built faster than that, with the same result: the fields a finding takes from its
        check's metadata (remediation, references, mappings) are made once per check and shared
        by all of its findings (which also shrinks what worker processes send back), and a
        domain's gateway list is shared by its entries."""
        meta = {c.id: c.meta for c in self.registry.checks}
        from_meta: dict[str, dict[str, Any] | None] = {}
        domains = []
        findings = []
        for r in self.results:
            gateway = [p.id for p in r.gateway.active]
            domains.append({"domain": r.domain, "gateway": gateway, "worst": _worst(r.findings)})
            for f in r.findings:
                if f.check_id not in from_meta:
                    from_meta[f.check_id] = _meta_fields(f, meta.get(f.check_id))
                shared = from_meta[f.check_id]
                if shared is None:
                    findings.append({"domain": r.domain, "gateway": gateway,
                                     **finding_json(f, meta.get(f.check_id))})
                    continue
                row = {"domain": r.domain, "gateway": gateway, **finding_json(f, None)}
                row.update(shared)
                findings.append(row)
        return bulk_json(domains, findings, self.rejected, self.resolvers, self.generated_at)


def _meta_fields(finding: Finding, meta: Any) -> dict[str, Any] | None:
    """The fields of ``finding_json`` that come from the check's metadata (the same for every
    finding of the check): those that differ from the finding rendered without it. None when
    the metadata adds or moves fields (then each finding is rendered whole)."""
    full = finding_json(finding, meta)
    bare = finding_json(finding, None)
    if list(full) != list(bare):
        return None
    return {key: value for key, value in full.items() if bare[key] != value}


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


@dataclass(frozen=True)
class _OneDomainStore(EvidenceStore):
    """A store of one domain's DNS and no tenant evidence, whose ``get`` answers from a table
    shared by every domain of the run: what ``EvidenceStore.get`` says of a key depends only on
    the key then (the DNS collection, or a missing item), and checks ask it thousands of times."""

    shared: dict[str, Collection[Any]] = field(default_factory=dict, repr=False, compare=False)

    def get(self, key: str) -> Collection[Any]:
        found = self.shared.get(key)
        if found is None:
            found = self.shared[key] = super().get(key)
        return found


def audit_domains(recorded: Iterable[DomainDns], registry: Registry,
                  profiles: tuple[GatewayProfile, ...], *, rejected: Iterable[tuple[str, str]] = (),
                  resolvers: Iterable[str] = ()) -> BulkReport:
    """Judge each domain alone, with the gateway its own MX points to."""
    checks = dns_only(registry)
    now = datetime.now(UTC)
    results = []
    shared: dict[str, Collection[Any]] = {}
    for domain in recorded:
        store = _OneDomainStore({}, dns={domain.domain: domain}, shared=shared)
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
    """A worker runs one job and exits: its cyclic garbage collector stays off for good (turned
    back on, its first collection would walk every object the job made, at the job's end)."""
    global _progress_counter
    _progress_counter = counter
    gc.disable()


def _count_one(done: int, total: int) -> None:
    with _progress_counter.get_lock():
        _progress_counter.value += 1


@contextmanager
def _no_cycle_collection(*, freeze: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector: a bulk run builds millions of objects that live to
    its end, and each full collection walked them all again (a third of the run's time, growing
    faster than the number of domains), while the run leaves almost no cycles behind (700
    objects for 2,000 domains). Reference counting still frees everything else at once.

    ``freeze``: the objects made meanwhile are kept out of later collections (``gc.freeze``)
    rather than all walked by the first one, for objects kept to the end with no cycles (the
    workers' unpickled results)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()


Part = tuple[list[dict[str, Any]], list[dict[str, Any]], int, list[str]]
# The checks and gateway profiles, loaded by the parent before it forks its workers (which
# inherit them instead of reading the entry points and profile files again).
_inherited: tuple[Registry, tuple[GatewayProfile, ...]] | None = None


def run_job(job: BulkJob, progress: Callable[[int, int], None] | None = None) -> Part:
    """Collect and judge one share of the domains: JSON-ready (domains, findings, queries sent,
    and each finding's text in the JSON report, written here so that workers share that work)."""
    resolver = Resolver(job.nameservers, timeout=job.timeout, concurrency=job.concurrency)
    if progress is None and _progress_counter is not None:
        progress = _count_one
    registry, profiles = _inherited or (discover(), builtin_profiles())
    with _no_cycle_collection():
        recorded = asyncio.run(collect_with_policies(list(job.domains), resolver, [], job.timeout,
                                                     progress))
        data = audit_domains(recorded, registry, profiles).to_json()
        writer = _Indented()
        texts = [writer.value(f, _FINDING_LEVEL) for f in data["findings"]]
    return data["domains"], data["findings"], resolver.sent, texts


def run_bulk(domains: list[str], nameservers: list[Nameserver], *, timeout: float,
             concurrency: int, jobs: int,
             progress: Callable[[int, int], None] | None = None,
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Audit the domains in ``jobs`` processes (each with its own share and DNS cache), and put
    the results back in the order of the list. The findings come as ``WrittenFindings``: the
    JSON report's text of each was written by the worker (``report_text`` reuses it)."""
    global _inherited
    jobs = max(1, min(jobs, len(domains)))
    if jobs == 1:
        return merge_parts(domains, [run_job(BulkJob(tuple(domains), tuple(nameservers), timeout,
                                                     concurrency), progress)])
    context = multiprocessing.get_context("fork")
    counter = context.Value("i", 0)
    shares = [BulkJob(tuple(domains[i::jobs]), tuple(nameservers), timeout,
                      max(1, concurrency // jobs)) for i in range(jobs)]
    _inherited = (discover(), builtin_profiles())
    try:
        # The workers' results are unpickled (by the pool's thread, as they arrive) and kept to
        # the end: no collection walks them meanwhile, nor once the collector is back.
        with _no_cycle_collection(freeze=True), ProcessPoolExecutor(
                max_workers=jobs, mp_context=context, initializer=_init_worker,
                initargs=(counter,)) as pool:
            futures = [pool.submit(run_job, share) for share in shares]
            while not all(f.done() for f in futures):
                if progress is not None:
                    progress(min(counter.value, len(domains)), len(domains))
                wait(futures, timeout=0.1, return_when=FIRST_EXCEPTION)
            parts = [f.result() for f in futures]
    finally:
        _inherited = None
    if progress is not None:
        progress(len(domains), len(domains))
    return merge_parts(domains, parts)


def merge_parts(domains: list[str],
                parts: list[tuple[list[dict[str, Any]], list[dict[str, Any]], int]] | list[Part],
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The workers' results in the order of the list; every domain must have come back. When
    every part carries its findings' texts, the findings come back as ``WrittenFindings``."""
    order = {name: i for i, name in enumerate(domains)}
    merged_domains = sorted((d for part in parts for d in part[0]), key=lambda d: order[d["domain"]])
    lost = set(order) - {d["domain"] for d in merged_domains}
    if lost or len(merged_domains) != len(order):
        raise BulkIncompleteError(
            f"{len(lost)} of {len(order)} domains came back from no worker "
            f"(for example {sorted(lost)[:3]}); no report was written")
    sent = sum(part[2] for part in parts)
    if not all(len(part) == 4 for part in parts):
        merged = sorted((f for part in parts for f in part[1]), key=lambda f: order[f["domain"]])
        return merged_domains, merged, sent
    # Each domain's findings, in the order its part has them (what a stable sort by the domain's
    # place in the list gives, without a key looked up for every finding).
    by_domain: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
    for part in parts:
        for f, text in zip(part[1], part[3], strict=True):
            found = by_domain.get(f["domain"])
            if found is None:
                found = by_domain[f["domain"]] = ([], [])
            found[0].append(f)
            found[1].append(text)
    findings: list[dict[str, Any]] = []
    texts: list[str] = []
    for name in sorted(by_domain, key=order.__getitem__):
        findings += by_domain[name][0]
        texts += by_domain[name][1]
    return merged_domains, WrittenFindings(findings, texts), sent


# -- The JSON report's text ----------------------------------------------------------------------

_SHARED_FIELDS = frozenset({"remediation", "references", "mappings"})  # shared by a check's findings


_FINDING_LEVEL = 2  # the depth of each finding in the report (top dict > "findings" list > finding)


class WrittenFindings(list):  # type: ignore[type-arg]
    """The report's findings, with the JSON text ``report_text`` writes for each (at its depth
    in the report), written where the finding was made. Used only while the list still holds
    exactly the findings the texts were written for."""

    def __init__(self, findings: list[dict[str, Any]], texts: list[str]) -> None:
        super().__init__(findings)
        self.written = tuple(findings)
        self.texts = texts

    def parts(self, level: int) -> list[str] | None:
        """The list's text at this depth in pieces, or None when it cannot be reused."""
        if level != _FINDING_LEVEL - 1 or len(self) != len(self.written) or not self or any(
                mine is not theirs for mine, theirs in zip(self, self.written, strict=True)):
            return None
        pad = "\n" + "  " * level
        inner = pad + "  "
        parts = ["[", inner]
        for text in self.texts:
            parts += (text, "," + inner)
        parts[-1] = pad + "]"
        return parts

    def text(self, level: int) -> str | None:
        parts = self.parts(level)
        return None if parts is None else "".join(parts)


class _Unusual(Exception):
    """A value ``json`` encodes in a way ``_Indented`` does not reproduce (subclasses, odd keys)."""


class _Indented:
    """``json.dumps(obj, indent=2, ensure_ascii=False)``, written without the generator chain of
    ``json``'s pure-Python encoder (used whenever ``indent`` is set): one string per container,
    strings escaped by ``json``'s own C function, and the containers a check's findings share
    (``_SHARED_FIELDS``) written once per depth."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.shared: dict[tuple[int, int], str] = {}

    def key(self, key: object) -> str:
        if type(key) is not str:
            raise _Unusual
        text = self.keys[key] = encode_basestring(key) + ": "
        return text

    def value(self, value: Any, level: int, field: str | None = None) -> str:
        kind = type(value)
        if kind is str:
            return encode_basestring(value)
        if value is None:
            return "null"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if kind is int:
            return int.__repr__(value)
        if kind is float:
            return _float_text(value)
        if kind is WrittenFindings:
            written = value.text(level)
            if written is not None:
                return written
            return self.value(list(value), level, field)
        if kind is not dict and kind is not list and kind is not tuple:
            raise _Unusual
        if not value:
            return "{}" if kind is dict else "[]"
        if field in _SHARED_FIELDS:
            cached = self.shared.get((id(value), level))  # alive in the report: ids are stable
            if cached is None:
                cached = self.shared[(id(value), level)] = self.container(value, level)
            return cached
        return self.container(value, level)

    def container(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...], level: int) -> str:
        pad = "\n" + "  " * level
        inner = pad + "  "
        encode = encode_basestring
        nested = self.value
        if type(value) is dict:
            keys = self.keys
            items = [(keys.get(k) or self.key(k))  # type: ignore[arg-type]
                     + (encode(v) if type(v) is str else nested(v, level + 1, k))
                     for k, v in value.items()]
            return "{" + inner + ("," + inner).join(items) + pad + "}"
        parts = [encode(v) if type(v) is str else nested(v, level + 1) for v in value]
        return "[" + inner + ("," + inner).join(parts) + pad + "]"


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def report_text(data: Any) -> str:
    """``json.dumps(data, indent=2, ensure_ascii=False) + "\\n"`` (how the JSON report is
    written), character for character, in about a third of the time for a bulk report."""
    try:
        if type(data) is dict and data:
            return _report_dict(_Indented(), data)
        return _Indented().value(data, 0) + "\n"
    except (_Unusual, RecursionError):  # json itself says what is wrong, or writes it its way
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _report_dict(writer: _Indented, data: dict[Any, Any]) -> str:
    """``writer.value(data, 0) + "\\n"`` for a report (a non-empty dict), joined once: the
    pieces of written findings (a hundred megabytes for 10,000 domains) are copied only once."""
    parts = ["{"]
    for key, value in data.items():
        parts += ("\n  ", writer.keys.get(key) or writer.key(key))
        written = value.parts(1) if type(value) is WrittenFindings else None
        if written is not None:
            parts += written
        else:
            parts.append(encode_basestring(value) if type(value) is str else writer.value(value, 1, key))
        parts.append(",")
    parts[-1] = "\n}\n"
    return "".join(parts)
