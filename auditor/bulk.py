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
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import IO, TYPE_CHECKING, Any, cast

from . import __version__
from .audit import finding_json
from .context import AuditContext, AuditSettings
from .dnscollect import collect_each, policy_fetching
from .dnsevidence import DNS_KEY, DomainDns, domain_problem
from .dnsmodel import normalise_name
from .dnsresolve import Nameserver, Resolver
from .engine import (
    Check,
    Finding,
    PlannedCheck,
    Registry,
    Severity,
    Status,
    discover,
    in_dependency_order,
    plan_checks,
    run_ordered,
)
from .errors import BulkIncompleteError
from .evidence import Collection, EvidenceStore
from .gateways import GatewayContext, GatewayProfile, GatewayResolver, builtin_profiles

if TYPE_CHECKING:
    from reports.render import BulkHtmlRows, HtmlRow

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
        problem = domain_problem(name)
        if problem:
            rejected.append((text, problem))
        else:
            domains.setdefault(name, None)
    return list(domains), rejected


@dataclass(frozen=True)
class DomainResult:
    """One domain of a bulk run: the gateway recognised from its MX and its findings."""

    domain: str
    gateway: GatewayContext
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class BulkReport:
    """A bulk run judged in one process: each domain's result, the list entries that were not
    domains, and the resolvers asked."""

    results: tuple[DomainResult, ...]
    rejected: tuple[tuple[str, str], ...]
    registry: Registry
    resolvers: tuple[str, ...]
    generated_at: datetime

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    def to_json(self) -> dict[str, Any]:
        """The report's JSON: each finding as ``{"domain", "gateway", **finding_json(...)}``."""
        domains: list[dict[str, Any]] = []
        findings: list[dict[str, Any]] = []
        for judged, gateway, rows in finding_dicts(self.results, self.registry):
            domains.append(_domain_entry(judged, gateway))
            findings += rows
        return bulk_json(domains, findings, self.rejected, self.resolvers, self.generated_at)


def finding_dicts(results: Iterable[DomainResult], registry: Registry,
                  ) -> Iterator[tuple[DomainResult, list[str], list[dict[str, Any]]]]:
    """Each domain's result, its gateway list, and its findings as the JSON report has them:
    ``{"domain", "gateway", **finding_json(...)}``.

    Built faster than that, with the same result: the fields a finding takes from its
    check's metadata (remediation, references, mappings) are made once per check and shared
    by all of its findings, and a domain's gateway list is shared by its entries."""
    meta = {c.id: c.meta for c in registry.checks}
    from_meta: dict[str, dict[str, Any] | None] = {}
    for r in results:
        gateway = [p.id for p in r.gateway.active]
        rows = []
        for f in r.findings:
            if f.check_id not in from_meta:
                from_meta[f.check_id] = _meta_fields(f, meta.get(f.check_id))
            shared = from_meta[f.check_id]
            if shared is None:
                rows.append({"domain": r.domain, "gateway": gateway, **finding_json(f, meta.get(f.check_id))})
                continue
            row = {"domain": r.domain, "gateway": gateway, **finding_json(f, None)}
            row.update(shared)
            rows.append(row)
        yield r, gateway, rows


def _meta_fields(finding: Finding, meta: Any) -> dict[str, Any] | None:
    """The fields of ``finding_json`` that come from the check's metadata (the same for every
    finding of the check): those that differ from the finding rendered without it. None when
    the metadata adds or moves fields (then each finding is rendered whole)."""
    full = finding_json(finding, meta)
    bare = finding_json(finding, None)
    if list(full) != list(bare):
        return None
    return {key: value for key, value in full.items() if bare[key] != value}


def bulk_json(domains: list[dict[str, Any]], findings: list[dict[str, Any]] | WrittenFindings,
              rejected: Iterable[tuple[str, str]], resolvers: Iterable[str],
              generated_at: datetime) -> dict[str, Any]:
    """The bulk JSON report (a contract like the tenant report's: fields only added)."""
    if isinstance(findings, WrittenFindings):
        by_status, by_severity = findings.by_status, findings.by_severity
    else:
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


_PROBLEMS = frozenset(s for s in Status if s.is_finding)  # the statuses --fail-on counts
_INCOMPLETE = frozenset(s for s in Status if s.is_incomplete)


def _domain_entry(judged: DomainResult, gateway: list[str]) -> dict[str, Any]:
    """A domain's line of the report: its worst finding (its most severe fail or warn, None
    when it has none) and how many of its results are not evaluated or in error, without which
    no worst finding would look clean."""
    worst: Severity | None = None
    incomplete = 0
    for finding in judged.findings:
        if finding.status in _PROBLEMS:
            if worst is None or finding.severity.rank > worst.rank:
                worst = finding.severity
        elif finding.status in _INCOMPLETE:
            incomplete += 1
    return {"domain": judged.domain, "gateway": gateway, "worst": worst.value if worst else None,
            "incomplete": incomplete}


@dataclass(frozen=True)
class _OneDomainStore(EvidenceStore):
    """A store of one domain's DNS and no tenant evidence, whose ``get`` answers from a table
    shared by every domain of the run: what ``EvidenceStore.get`` says of a key depends only on
    the key then (the DNS collection, or a missing item), and it is asked for every domain."""

    shared: dict[str, Collection[Any]] = field(default_factory=dict, repr=False, compare=False)

    def get(self, key: str) -> Collection[Any]:
        found = self.shared.get(key)
        if found is None:
            found = self.shared[key] = super().get(key)
        return found


class DomainJudge:
    """Judges domains one at a time, each alone by the checks that need nothing but DNS, with
    the gateway its own MX points to; what depends only on the run is worked out once."""

    def __init__(self, registry: Registry, profiles: tuple[GatewayProfile, ...]) -> None:
        self.checks = in_dependency_order(dns_only(registry))  # the same order for every domain
        self.now = datetime.now(UTC)
        self.shared: dict[str, Collection[Any]] = {}
        self.gateways = GatewayResolver(profiles)  # what depends only on the profiles
        # The defaults, frozen: one for every domain. Only the domain's MX can name its gateway.
        self.settings = AuditSettings(unknown_gateway=(
            "none of the domain's MX hosts is a known gateway's: its gateway has no profile "
            "here, or it has none"))
        self.plan: tuple[PlannedCheck, ...] | None = None  # one for all: their stores answer get() alike

    def __call__(self, domain: DomainDns) -> DomainResult:
        store = _OneDomainStore({}, dns={domain.domain: domain}, shared=self.shared)
        gateway = self.gateways.resolve(store)
        context = AuditContext(store, gateway, self.now, self.settings)
        if self.plan is None:
            self.plan = plan_checks(self.checks, store)
        return DomainResult(domain.domain, gateway, tuple(run_ordered(self.checks, context, plan=self.plan)))


def audit_domains(recorded: Iterable[DomainDns], registry: Registry,
                  profiles: tuple[GatewayProfile, ...], *, rejected: Iterable[tuple[str, str]] = (),
                  resolvers: Iterable[str] = ()) -> BulkReport:
    """Judge each domain alone, with the gateway its own MX points to."""
    judge = DomainJudge(registry, profiles)
    results = tuple(map(judge, recorded))
    return BulkReport(results, tuple(rejected), registry, tuple(resolvers), judge.now)


@dataclass(frozen=True)
class BulkJob:
    """What one worker process audits: the blocks of the list it claims (``block`` neighbours
    each, see ``run_job``) and how to ask DNS."""

    domains: tuple[str, ...]
    nameservers: tuple[Nameserver, ...]
    timeout: float
    concurrency: int
    text_fd: int  # the file the findings' JSON text goes to (opened by the parent, inherited)
    with_findings: bool = True  # write the CSV and HTML reports' rows too, not only the JSON text
    block: int = 32

    @property
    def blocks(self) -> int:
        return math.ceil(len(self.domains) / self.block)


@dataclass(frozen=True)
class Part:
    """What a worker sends back, domain by domain in the order it wrote them: each domain's entry in
    the report and the length (UTF-8 bytes) of its findings' JSON text, which the worker wrote
    to its job's file, one domain after the other (the text, a hundred megabytes for 10,000
    domains, was most of the time spent sending the parts back and writing the report); the
    counts the summary needs, and the queries sent. When asked for, the CSV and HTML reports'
    rows too, rendered by the worker: each domain's CSV rows, and the HTML rows with their
    places (the finding dicts, sent back instead, took longer to send than to render, and the
    parent rendered them alone)."""

    domains: list[dict[str, Any]]
    lengths: list[int]
    by_status: Counter[str]
    by_severity: Counter[str]
    sent: int
    csv: list[str] | None = None
    html: list[HtmlRow] | None = None


_progress_counter: Any = None  # a multiprocessing.Value shared with the workers, for a progress bar
_claimed: Any = None  # a multiprocessing.Value shared with the workers: the next block to claim
_kept_to_exit: list[Any] | None = None  # a worker's job's objects, dropped by its exit alone


def _init_worker(counter: Any, claimed: Any) -> None:
    """A worker runs one job and exits: its cyclic garbage collector stays off for good (turned
    back on, its first collection would walk every object the job made, at the job's end), and
    what its job made is left to the process's exit (``os._exit``: nothing is freed object by
    object) instead of freed one by one before the result is sent back (a tenth of a second)."""
    global _progress_counter, _claimed, _kept_to_exit
    _progress_counter = counter
    _claimed = claimed
    _kept_to_exit = []
    gc.disable()


def shared_claims(claimed: Any, blocks: int) -> Callable[[], int | None]:
    """Blocks handed out to whichever worker asks first (``claimed``: a shared counter)."""

    def claim() -> int | None:
        with claimed.get_lock():
            index: int = claimed.value
            if index >= blocks:
                return None
            claimed.value = index + 1
        return index

    return claim


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


# The checks and gateway profiles, loaded by the parent before it forks its workers (which
# inherit them instead of reading the entry points and profile files again).
_inherited: tuple[Registry, tuple[GatewayProfile, ...]] | None = None


def run_job(job: BulkJob, progress: Callable[[int, int], None] | None = None, *,
            registry: Registry | None = None, claim: Callable[[], int | None] | None = None) -> Part:
    """Collect, judge and write blocks of the list as this worker claims them (``claim``: the
    next block's index, None once none is left; the blocks shared with the other workers, or
    all of them) until none is left: a worker that goes faster (one that does not share its
    core with the DNS server) takes more of them, and the workers end together. Each block is
    judged and written once its domains are collected, while the others' lookups go on."""
    resolver = Resolver(job.nameservers, timeout=job.timeout, concurrency=job.concurrency)
    if progress is None and _progress_counter is not None:
        progress = _count_one
    if claim is None:
        claim = (shared_claims(_claimed, job.blocks) if _claimed is not None
                 else partial(next, iter(range(job.blocks)), None))
    if registry is not None:
        profiles = builtin_profiles()
    else:
        registry, profiles = _inherited or (discover(), builtin_profiles())
    with _no_cycle_collection(), open(job.text_fd, "wb", buffering=1 << 20, closefd=False) as text_file:
        text_file.seek(0)
        writer = PartWriter(registry, text_file, with_findings=job.with_findings)
        blocks = _Blocks(job, claim, DomainJudge(registry, profiles), writer, progress)
        # No DKIM selector is asked: no check that runs in bulk reads them (DKIM-001 needs a tenant).
        asyncio.run(_collect_blocks(blocks, resolver, job))
        part = writer.part(resolver.sent)
    if _kept_to_exit is not None:
        _kept_to_exit.append(blocks)
    return part


DOMAINS_PER_QUERY_IN_FLIGHT = 4


async def _collect_blocks(blocks: _Blocks, resolver: Resolver, job: BulkJob) -> None:
    # Domains under way: a few per query in flight, since many wait on a lookup another asked
    # (a shared include) and keep none in flight; few enough that the workers' last domains,
    # once no block is left, take a fraction of a second.
    async with policy_fetching(job.timeout) as policies:
        await collect_each(blocks.names(), resolver, blocks.collected,
                           at_once=DOMAINS_PER_QUERY_IN_FLIGHT * job.concurrency,
                           dkim_selectors=None, policies=policies)


class _Block:
    """Neighbours of the list claimed at once: their recordings as they come, and how many are
    still awaited."""

    __slots__ = ("found", "left")

    def __init__(self, size: int) -> None:
        self.found: list[DomainDns | None] = [None] * size
        self.left = size


class _Blocks:
    """A worker's blocks: claimed as the collection asks for more names, and each judged and
    written, its domains in the list's order, once they are all collected."""

    def __init__(self, job: BulkJob, claim: Callable[[], int | None], judge: DomainJudge,
                 writer: PartWriter, progress: Callable[[int, int], None] | None) -> None:
        self.job = job
        self.claim = claim
        self.judge = judge
        self.writer = writer
        self.progress = progress
        self.where: dict[str, tuple[_Block, int]] = {}  # name: its block, its place there
        self.done: list[list[DomainDns]] = []  # (kept to the worker's exit, not freed one by one)
        self.count = 0

    def names(self) -> Iterator[str]:
        size, domains = self.job.block, self.job.domains
        while (index := self.claim()) is not None:
            names = domains[index * size:(index + 1) * size]
            block = _Block(len(names))
            for place, name in enumerate(names):
                self.where[name] = (block, place)
                yield name

    def collected(self, name: str, recorded: DomainDns) -> None:
        block, place = self.where.pop(name)
        block.found[place] = recorded
        self.count += 1
        if self.progress is not None:
            self.progress(self.count, len(self.job.domains))
        block.left -= 1
        if block.left:
            return
        ready = cast(list[DomainDns], block.found)
        self.done.append(ready)
        self.writer.add([self.judge(domain) for domain in ready])


class PartWriter:
    """A worker's ``Part`` of the report: its domains' findings written to ``text_file`` (from
    its position) as the JSON report has them, domain by domain, as they are added; with
    ``with_findings``, their CSV and HTML reports' rows rendered too."""

    def __init__(self, registry: Registry, text_file: IO[bytes], *, with_findings: bool = True) -> None:
        self.registry = registry
        self.text_file = text_file
        self.writer = _FindingWriter(registry)
        self.domains: list[dict[str, Any]] = []
        self.lengths: list[int] = []
        self.statuses: Counter[Status] = Counter()
        self.severities: Counter[Severity] = Counter()
        self.rows: tuple[Callable[[list[dict[str, Any]]], str], BulkHtmlRows] | None = None
        if with_findings:
            from reports.render import BulkHtmlRows, bulk_csv_rows  # (reports render, auditor judges)

            self.rows = (bulk_csv_rows, BulkHtmlRows())
        self.csv: list[str] = []
        self.html: list[HtmlRow] = []

    def add(self, results: Sequence[DomainResult]) -> None:
        write = self.text_file.write
        for r in results:
            gateway = [p.id for p in r.gateway.active]
            self.domains.append(_domain_entry(r, gateway))
            self.lengths.append(write(self.writer.findings(r.domain, gateway, r.findings).encode()))
            self.statuses.update([f.status for f in r.findings])
            self.severities.update([f.severity for f in r.findings if f.status in _PROBLEMS])
        if self.rows is not None:
            csv_rows, html_rows = self.rows
            for _, _, mine in finding_dicts(results, self.registry):
                self.csv.append(csv_rows(mine))
                self.html += html_rows(mine)

    def part(self, sent: int) -> Part:
        by_status = Counter({status.value: n for status, n in self.statuses.items()})
        by_severity = Counter({severity.value: n for severity, n in self.severities.items()})
        if self.rows is None:
            return Part(self.domains, self.lengths, by_status, by_severity, sent)
        return Part(self.domains, self.lengths, by_status, by_severity, sent, self.csv, self.html)


def written_part(report: BulkReport, sent: int, text_file: IO[bytes], *,
                 with_findings: bool = True) -> Part:
    """A worker's ``Part`` of the report for these results (see ``PartWriter``)."""
    writer = PartWriter(report.registry, text_file, with_findings=with_findings)
    writer.add(report.results)
    return writer.part(sent)


def run_bulk(domains: list[str], nameservers: list[Nameserver], *, timeout: float,
             concurrency: int, jobs: int,
             progress: Callable[[int, int], None] | None = None,
             registry: Registry | None = None, with_findings: bool = True,
             ) -> tuple[list[dict[str, Any]], WrittenFindings, int]:
    """Audit the domains in ``jobs`` processes (each with its own DNS cache, claiming blocks of
    the list as it goes), and put the results back in the order of the list (see
    ``merge_parts``). ``registry``: the checks, when the caller has loaded them already;
    ``with_findings``: False when only the JSON report is written (the finding dicts are then
    not sent back)."""
    jobs = max(1, min(jobs, len(domains)))
    registry = registry or discover()
    # Unlinked temporary files (gone once closed), one per worker: it writes its findings'
    # text there, read by the report's writer (see ``WrittenFindings``).
    text_files = [tempfile.TemporaryFile() for _ in range(jobs)]  # noqa: SIM115 - returned open
    try:
        bulk_jobs = [BulkJob(tuple(domains), tuple(nameservers), timeout, max(1, concurrency // jobs),
                             text_file.fileno(), with_findings, block_size(len(domains), jobs))
                     for text_file in text_files]
        if jobs == 1:
            parts = [run_job(bulk_jobs[0], progress, registry=registry)]
        else:
            parts = _run_in_processes(bulk_jobs, registry, progress)
        return merge_parts(domains, parts, text_files)
    except BaseException:
        for text_file in text_files:
            text_file.close()
        raise


MAX_BLOCK = 32
_BLOCKS_PER_JOB = 8


def block_size(domains: int, jobs: int) -> int:
    """How many neighbours of the list a worker claims at once: few enough that the workers
    end within a block of each other (a few dozen milliseconds), enough to keep the report's
    runs of text long (each is copied by one call), and at least a few blocks per worker."""
    return max(1, min(MAX_BLOCK, domains // (jobs * _BLOCKS_PER_JOB)))


def _run_in_processes(bulk_jobs: list[BulkJob], registry: Registry,
                      progress: Callable[[int, int], None] | None) -> list[Part]:
    """Run each job in a process of its own, forked with the checks and gateway profiles;
    the workers claim the blocks of the list from one shared counter."""
    global _inherited
    total = len(bulk_jobs[0].domains)
    context = multiprocessing.get_context("fork")
    counter = context.Value("i", 0) if progress is not None else None
    claimed = context.Value("i", 0)
    _inherited = (registry, builtin_profiles())
    try:
        # The workers' results are unpickled (by the pool's thread, as they arrive) and kept to
        # the end: no collection walks them meanwhile, nor once the collector is back. The
        # workers are not waited for once their results are in: they exit meanwhile.
        with _no_cycle_collection(freeze=True):
            pool = ProcessPoolExecutor(max_workers=len(bulk_jobs), mp_context=context,
                                       initializer=_init_worker, initargs=(counter, claimed))
            try:
                futures = [pool.submit(run_job, job) for job in bulk_jobs]
                while not all(f.done() for f in futures):
                    if progress is not None and counter is not None:
                        progress(min(counter.value, total), total)
                    wait(futures, timeout=0.1, return_when=FIRST_EXCEPTION)
                parts = [f.result() for f in futures]
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
    finally:
        _inherited = None
    if progress is not None:
        progress(total, total)
    return parts


def merge_parts(domains: list[str], parts: list[Part], text_files: list[IO[bytes]],
                ) -> tuple[list[dict[str, Any]], WrittenFindings, int]:
    """The workers' results in the order of the list (each domain's findings in the order its
    part has them; ``text_files[i]``: where ``parts[i]``'s texts were written); every domain
    must have come back, with all of its text. The CSV and HTML rows are there when every
    part has them."""
    order = {name: i for i, name in enumerate(domains)}
    entries: list[dict[str, Any] | None] = [None] * len(order)
    texts: list[tuple[IO[bytes], int, int]] = [(text_files[0], 0, 0)] * len(order)
    csv: list[str] | None = [""] * len(order) if all(part.csv is not None for part in parts) else None
    returned = 0
    for part, text_file in zip(parts, text_files, strict=True):
        returned += len(part.domains)
        offset = 0
        for i, (entry, length) in enumerate(zip(part.domains, part.lengths, strict=True)):
            slot = order[entry["domain"]]
            entries[slot] = entry
            texts[slot] = (text_file, offset, length)
            offset += length
            if csv is not None and part.csv is not None:
                csv[slot] = part.csv[i]
        if os.fstat(text_file.fileno()).st_size != offset:
            raise BulkIncompleteError(f"a worker wrote {os.fstat(text_file.fileno()).st_size} bytes "
                                      f"of findings where it said {offset}; no report was written")
    merged = [entry for entry in entries if entry is not None]
    if len(merged) != len(order) or returned != len(order):
        lost = [name for name, entry in zip(order, entries, strict=True) if entry is None]
        raise BulkIncompleteError(
            f"{len(lost)} of {len(order)} domains came back from no worker "
            f"(for example {sorted(lost)[:3]}); no report was written")
    runs: list[tuple[IO[bytes], int, int]] = []
    for text_file, offset, length in texts:
        if not length:
            continue
        if runs and runs[-1][0] is text_file and sum(runs[-1][1:]) == offset:
            runs[-1] = (text_file, runs[-1][1], runs[-1][2] + length)
        else:
            runs.append((text_file, offset, length))
    for text_file in text_files:
        if not any(run[0] is text_file for run in runs):
            text_file.close()  # (nothing to read in it)
    findings = WrittenFindings(
        runs, sum((part.by_status for part in parts), Counter()),
        sum((part.by_severity for part in parts), Counter()),
        csv, None if csv is None else [row for part in parts for row in part.html or ()])
    return merged, findings, sum(part.sent for part in parts)


# -- The JSON report's text ----------------------------------------------------------------------


_JSON_ONLY = "the findings were written as JSON text only (run_bulk(..., with_findings=True) writes the rest)"
_ITEM_SEP = ",\n    "  # after each item of the report's findings list (at depth 1), the last's cut
_COPY_CHUNK = 1 << 20


class WrittenFindings:
    """A bulk run's findings as its workers wrote them (see ``Part``): the JSON report's text
    of its findings list, in runs of the workers' files (each run: file, offset, length in
    bytes; every item followed by ``_ITEM_SEP``), their counts by status and severity, and,
    when the workers wrote them, each domain's CSV rows in the list's order and the HTML rows
    with their places. It stands for the findings in the report's dict (``bulk_json``):
    ``report_parts`` hands it on as it is, ``render_bulk`` takes the CSV and HTML rows."""

    def __init__(self, runs: list[tuple[IO[bytes], int, int]], by_status: Counter[str],
                 by_severity: Counter[str], csv: list[str] | None = None,
                 html: list[HtmlRow] | None = None) -> None:
        self.runs = runs
        self.by_status = by_status
        self.by_severity = by_severity
        self._csv = csv
        self._html = html

    def csv_rows(self) -> str:
        """The CSV report's rows, after its header."""
        if self._csv is None:
            raise ValueError(_JSON_ONLY)
        return "".join(self._csv)

    def html_rows(self) -> list[HtmlRow]:
        """The HTML report's rows, with their places on the page."""
        if self._html is None:
            raise ValueError(_JSON_ONLY)
        return self._html

    def close(self) -> None:
        """Close the workers' files (which deletes them): their text is read no more."""
        for text_file, _, _ in self.runs:
            text_file.close()

    def _cut_runs(self) -> list[tuple[IO[bytes], int, int]]:
        """The runs, the last without its separator."""
        runs = list(self.runs)
        text_file, offset, length = runs[-1]
        runs[-1] = (text_file, offset, length - len(_ITEM_SEP))
        return runs

    def parts(self) -> list[str]:
        """The text of the report's findings list (at depth 1) in pieces."""
        if not self.runs:
            return ["[]"]
        pieces = ["[\n    "]
        for text_file, offset, length in self._cut_runs():
            text_file.seek(offset)
            text = text_file.read(length)
            if len(text) != length:
                raise BulkIncompleteError("a worker's findings text is shorter than it said")
            pieces.append(text.decode())
        pieces.append("\n  ]")
        return pieces

    def write_to(self, out: IO[bytes]) -> None:
        """Write ``"".join(self.parts())`` (encoded) to ``out``: the runs are copied from file
        to file by the kernel where it can (``os.copy_file_range``), never read in here."""
        if not self.runs:
            out.write(b"[]")
            return
        out.write(b"[\n    ")
        out.flush()  # (the runs go straight to its file, after what it had)
        for text_file, offset, length in self._cut_runs():
            _copy(text_file, out.fileno(), offset, length)
        out.write(b"\n  ]")


def _copy(source: IO[bytes], target: int, offset: int, length: int) -> None:
    """Append ``length`` bytes of ``source`` from ``offset`` to the file ``target``."""
    end = offset + length
    in_kernel = hasattr(os, "copy_file_range")
    while offset < end:
        copied = 0
        if in_kernel:
            try:
                copied = os.copy_file_range(source.fileno(), target, end - offset, offset)
            except OSError:  # not between these files here (another file system, an old kernel)
                in_kernel = False
                continue
        else:
            source.seek(offset)
            chunk = source.read(min(end - offset, _COPY_CHUNK))
            copied = os.write(target, chunk) if chunk else 0
        if not copied:
            raise BulkIncompleteError("a worker's findings text is shorter than it said")
        offset += copied


class _Unusual(Exception):
    """A value ``json`` encodes in a way ``_Indented`` does not reproduce (subclasses, odd keys)."""


class _Indented:
    """``json.dumps(obj, indent=2, ensure_ascii=False)``, written without the generator chain of
    ``json``'s pure-Python encoder (used whenever ``indent`` is set): one string per container,
    and strings escaped by ``json``'s own C function."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def key(self, key: object) -> str:
        if type(key) is not str:
            raise _Unusual
        text = self.keys[key] = encode_basestring(key) + ": "
        return text

    def value(self, value: Any, level: int) -> str:
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
        if kind is not dict and kind is not list and kind is not tuple:
            raise _Unusual
        if not value:
            return "{}" if kind is dict else "[]"
        return self.container(value, level)

    def container(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...], level: int) -> str:
        pad = "\n" + "  " * level
        inner = pad + "  "
        encode = encode_basestring
        nested = self.value
        if type(value) is dict:
            keys = self.keys
            items = [(keys.get(k) or self.key(k))  # type: ignore[arg-type]
                     + (encode(v) if type(v) is str else nested(v, level + 1))
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


_FIELD = "\n      "  # a finding's fields: depth 3 (top dict > "findings" list > finding > field)
_REF_FIELD = "\n          "  # an evidence item's fields: depth 5 (> "evidence" list > item > field)
_OBSERVED_SEP = ",\n            "  # between the items of a list observed: depth 6
_ENUM_TEXT = {member: encode_basestring(member.value) for member in (*Severity, *Status)}


class _FindingWriter:
    """Each finding's text in the JSON report (what ``_Indented`` writes for the finding's dict,
    ``{"domain", "gateway", **finding_json(...)}``, at depth 2), written from the finding
    itself: its dict is never built (that and writing it took three times as long). The fields
    from the check's metadata are written once per check."""

    def __init__(self, registry: Registry) -> None:
        self.meta = {c.id: c.meta for c in registry.checks}
        self.meta_texts: dict[str, str] = {}
        self.values = _Indented()
        # The text of fields most findings (evidence items) share, by the values it is written from.
        self.headings: dict[tuple[Any, ...], str] = {}
        self.locations: dict[tuple[str, str], str] = {}

    def findings(self, domain: str, gateway: list[str], findings: Sequence[Finding]) -> str:
        """A domain's findings as items of the report's findings list, each followed by
        ``_ITEM_SEP``."""
        if not findings:
            return ""
        head = f'{{{_FIELD}"domain": {encode_basestring(domain)},{_FIELD}"gateway": ' \
               f'{self.values.value(gateway, 3)},{_FIELD}"check_id": '
        texts: list[str] = []
        for f in findings:
            try:
                before, after = self.finding(f)
            except (_Unusual, TypeError, KeyError, RecursionError):  # written as json would
                row = {"domain": domain, "gateway": gateway, **finding_json(f, self.meta.get(f.check_id))}
                texts += (json.dumps(row, indent=2, ensure_ascii=False).replace("\n", "\n    "), _ITEM_SEP)
                continue
            texts += (head, before, self.meta_texts[f.check_id], after, _ITEM_SEP)
        return "".join(texts)

    def finding(self, f: Finding) -> tuple[str, str]:
        """The finding's text from its "check_id" value on, before and after the fields from
        its check's metadata."""
        encode = encode_basestring
        if f.check_id not in self.meta_texts:
            self.meta_text(f)
        evidence = self.evidence(f.evidence) if f.evidence else "[]"
        related = self.values.value(list(f.related), 3) if f.related else "[]"
        key = (f.check_id, f.title, f.severity, f.status)
        heading = self.headings.get(key)
        if heading is None:
            heading = self.headings[key] = (
                f'{encode(f.check_id)},{_FIELD}"title": {encode(f.title)},'
                f'{_FIELD}"severity": {_ENUM_TEXT[f.severity]},{_FIELD}"status": {_ENUM_TEXT[f.status]},')
        return (f'{heading}{_FIELD}"resource": {encode(f.resource)},{_FIELD}"message": {encode(f.message)},'
                f'{_FIELD}"evidence": {evidence},',
                f'{_FIELD}"fingerprint": {encode(f.fingerprint)},'
                f'{_FIELD}"fix": {encode(f.fix) if f.fix else "null"},{_FIELD}"related": {related},'
                f'{_FIELD}"verdict": {encode(f.verdict) if f.verdict else "null"}\n    }}')

    def meta_text(self, f: Finding) -> None:
        """The fields ``finding_json`` takes from the check's metadata, with their commas."""
        full = finding_json(f, self.meta.get(f.check_id))
        value = self.values.value
        self.meta_texts[f.check_id] = (f'{_FIELD}"remediation": {value(full["remediation"], 3)},'
                                       f'{_FIELD}"references": {value(full["references"], 3)},'
                                       f'{_FIELD}"mappings": {value(full["mappings"], 3)},')

    def evidence(self, refs: Iterable[Any]) -> str:
        """A finding's evidence list (``_ref_json`` of each reference)."""
        encode = encode_basestring
        nested = self.values.value
        locations = self.locations
        items = []
        for ref in refs:
            file, pointer, prop, observed, note = ref.file, ref.pointer, ref.property, ref.observed, ref.note
            plain = type(pointer) is str and type(prop) is str
            location = locations.get((pointer, prop)) if plain else None
            if location is None:
                pointer_text = encode(pointer) if type(pointer) is str else nested(pointer, 5)
                property_text = encode(prop) if type(prop) is str else nested(prop, 5)
                location = f'{_REF_FIELD}"pointer": {pointer_text},{_REF_FIELD}"property": {property_text},'
                if plain:
                    locations[pointer, prop] = location
            if type(observed) is str:
                observed = encode(observed)
            elif type(observed) is list and observed:
                try:  # a list of strings (json writes a string's subclass as the string)
                    observed = "[\n            " + _OBSERVED_SEP.join(map(encode, observed)) + "\n          ]"
                except TypeError:
                    observed = nested(observed, 5)
            else:
                observed = nested(observed, 5)
            items.append(
                f'{{{_REF_FIELD}"source": {encode(file) if type(file) is str else nested(file, 5)},'
                f'{location}{_REF_FIELD}"observed": {observed},'
                f'{_REF_FIELD}"note": {"null" if note is None else nested(note, 5)}\n        }}')
        return "[\n        " + ",\n        ".join(items) + "\n      ]"


def report_text(data: Any) -> str:
    """``json.dumps(data, indent=2, ensure_ascii=False) + "\\n"`` (how the JSON report is
    written), character for character, in about a third of the time for a bulk report; its
    ``WrittenFindings`` are written as their texts."""
    return "".join(piece if type(piece) is str else "".join(piece.parts())
                   for piece in report_parts(data))


def report_parts(data: Any) -> list[str | WrittenFindings]:
    """``report_text(data)`` in pieces, its ``WrittenFindings`` as they are: to be written
    without making the whole text (a hundred megabytes for 10,000 domains)."""
    try:
        if type(data) is dict and data:
            return _report_dict(_Indented(), data)
        return [_Indented().value(data, 0) + "\n"]
    except (_Unusual, RecursionError):  # json itself says what is wrong, or writes it its way
        return [json.dumps(data, indent=2, ensure_ascii=False) + "\n"]


def _report_dict(writer: _Indented, data: dict[Any, Any]) -> list[str | WrittenFindings]:
    """``writer.value(data, 0) + "\\n"`` for a report (a non-empty dict), in pieces: its
    written findings as they are."""
    parts: list[str | WrittenFindings] = ["{"]
    for key, value in data.items():
        parts += ("\n  ", writer.keys.get(key) or writer.key(key))
        if type(value) is WrittenFindings:
            parts.append(value)
        else:
            parts.append(encode_basestring(value) if type(value) is str else writer.value(value, 1))
        parts.append(",")
    parts[-1] = "\n}\n"
    return parts
