"""Checks: how they are declared, found, validated and run in isolation.

A check is a small function decorated with :func:`check`, which attaches its metadata. It
receives an :class:`~auditor.context.CheckContext` and yields :class:`Result` objects, one per
resource examined, passes included. The engine turns results into findings, and turns
missing evidence, unreadable objects, crashes and silence into explicit findings: nothing
becomes a pass by accident.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .errors import CheckDefinitionError, UndeclaredEvidenceError
from .evidence import EVIDENCE_KEYS, Collection, EvidenceStore, State, evidence_path
from .frozen import built_directly
from .models import EvidenceRef

if TYPE_CHECKING:
    from .context import AuditContext, CheckContext

ENTRY_POINT_GROUP = "mailflow_auditor.checks"
CHECK_ID = re.compile(r"^[A-Z][A-Z0-9]{1,9}-\d{3}$")


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.CRITICAL: 4,
    Severity.HIGH: 3,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
    Severity.INFO: 0,
}


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    WARN = "warn"
    NOT_EVALUATED = "not_evaluated"
    ERROR = "error"

    @property
    def is_finding(self) -> bool:
        """Statuses that report a problem with the tenant (counted by --fail-on)."""
        return self in (Status.FAIL, Status.WARN)

    @property
    def is_incomplete(self) -> bool:
        return self in (Status.NOT_EVALUATED, Status.ERROR)


@dataclass(frozen=True, slots=True)
class Reference:
    """A page a finding cites (the vendor's or standard's own words)."""

    title: str
    url: str


@dataclass(frozen=True, slots=True)
class Remediation:
    """How to fix what a check finds, in words and as a command to run."""

    text: str
    powershell: str = ""


@dataclass(frozen=True, slots=True)
class Mappings:
    """Framework ids; empty where no control exists (never invented)."""

    attack: tuple[str, ...] = ()
    cis: tuple[str, ...] = ()
    scuba: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckMeta:
    """What a check is, kept beside its function: id, title, risk, fix, references, mappings and
    the evidence it reads."""

    id: str
    title: str
    severity: Severity
    rationale: str
    remediation: Remediation
    requires: tuple[str, ...]
    uses: tuple[str, ...] = ()  # optional evidence: read when usable, its absence is noted
    references: tuple[Reference, ...] = ()
    mappings: Mappings = field(default_factory=Mappings)
    needs_gateway: bool = False  # not evaluated when no gateway is known
    # A verdict check: runs after all others and reads the findings of these checks.
    derives_from: tuple[str, ...] = ()
    legitimate: str = ""  # the legitimate setup this check deliberately leaves alone

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity.value,
            "rationale": self.rationale,
            "remediation": {"text": self.remediation.text, "powershell": self.remediation.powershell},
            "references": [{"title": r.title, "url": r.url} for r in self.references],
            "requires": list(self.requires),
            "uses": list(self.uses),
            "needs_gateway": self.needs_gateway,
            "derives_from": list(self.derives_from),
            "legitimate": self.legitimate,
            "mappings": {
                "attack": list(self.mappings.attack),
                "cis": list(self.mappings.cis),
                "scuba": list(self.mappings.scuba),
            },
        }


@dataclass(frozen=True, slots=True)
class Result:
    """What a check says about one resource."""

    status: Status
    resource: str
    message: str
    evidence: tuple[EvidenceRef, ...] = ()
    severity: Severity | None = None  # overrides the check's default
    key: str = ""  # distinguishes several results about one resource (for the fingerprint)
    summary: bool = False  # "nothing found among all objects": only true if all were read
    fix: str = ""  # the PowerShell that fixes this very finding (names quoted with ps_literal)
    related: tuple[str, ...] = ()  # fingerprints of the findings behind a verdict
    verdict: str = ""  # a verdict check's one-phrase outcome (e.g. "bypassable")


_new_result = built_directly(Result)  # (several results a domain in bulk)


def result(status: Status, resource: str, message: str, *evidence: EvidenceRef,
           severity: Severity | None = None, key: str = "", summary: bool = False,
           fix: str = "", related: tuple[str, ...] = (), verdict: str = "") -> Result:
    return _new_result(status, resource, message, evidence, severity, key, summary, fix, related, verdict)


_PS_QUOTES = "'\u2018\u2019\u201a\u201b"


def ps_literal(value: str) -> str:
    """A PowerShell single-quoted string holding ``value`` verbatim.

    PowerShell treats the typographic single quotes as quotes too, so each is doubled like
    the ASCII one; nothing inside a single-quoted string is expanded.
    """
    return "'" + "".join(c + c if c in _PS_QUOTES else c for c in value) + "'"


CheckFunc = Callable[["CheckContext"], Iterable[Result]]


@dataclass(frozen=True, slots=True)
class Check:
    """A check's function with its metadata and where it came from (built in, or a plugin)."""

    meta: CheckMeta
    func: CheckFunc
    origin: str = "builtin"

    @property
    def id(self) -> str:
        return self.meta.id


def check(
    *,
    id: str,
    title: str,
    severity: Severity,
    rationale: str,
    remediation: Remediation,
    requires: tuple[str, ...],
    uses: tuple[str, ...] = (),
    references: tuple[Reference, ...] = (),
    mappings: Mappings | None = None,
    needs_gateway: bool = False,
    derives_from: tuple[str, ...] = (),
    legitimate: str = "",
) -> Callable[[CheckFunc], Check]:
    """Declare a check: the function and its metadata, side by side."""

    def wrap(func: CheckFunc) -> Check:
        meta = CheckMeta(id=id, title=title, severity=severity, rationale=rationale,
                         remediation=remediation, requires=requires, uses=uses,
                         references=references,
                         mappings=mappings or Mappings(), needs_gateway=needs_gateway,
                         derives_from=derives_from, legitimate=legitimate)
        return Check(meta=meta, func=func, origin=func.__module__)

    return wrap


def validate(check_obj: Check) -> None:
    """Raise CheckDefinitionError when a check breaks the metadata contract."""
    meta = check_obj.meta
    problems = []
    if not CHECK_ID.match(meta.id):
        problems.append(f"id {meta.id!r} is not like ABC-123")
    for name in ("title", "rationale"):
        if not getattr(meta, name).strip():
            problems.append(f"{name} is empty")
    if not meta.remediation.text.strip():
        problems.append("remediation text is empty")
    if not isinstance(meta.severity, Severity):
        problems.append("severity is not a Severity")
    if not meta.requires:
        problems.append("requires lists no evidence")
    unknown = [key for key in meta.requires + meta.uses if key not in EVIDENCE_KEYS]
    if unknown:
        problems.append(f"requires unknown evidence {unknown}")
    bad_sources = [i for i in meta.derives_from if not CHECK_ID.match(i) or i == meta.id]
    if bad_sources:
        problems.append(f"derives_from names {bad_sources}, not other check ids")
    if problems:
        raise CheckDefinitionError(f"check {meta.id!r} ({check_obj.origin}): " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """A check or plugin that could not be loaded; reported, never fatal."""

    source: str
    message: str


@dataclass(frozen=True, slots=True)
class Registry:
    """The checks found through the entry points, and the plugins that could not be loaded."""

    checks: tuple[Check, ...]
    problems: tuple[PluginProblem, ...] = ()

    def get(self, check_id: str) -> Check | None:
        wanted = check_id.strip().upper()
        return next((c for c in self.checks if c.id == wanted), None)


def _flatten(obj: Any) -> Iterator[Any]:
    if isinstance(obj, Check):
        yield obj
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _flatten(item)
    else:
        yield obj


def discover(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> Registry:
    """Load every check registered under the ``mailflow_auditor.checks`` entry-point group.

    A plugin that fails to import, yields something that is not a check, breaks the
    metadata contract or reuses an id is reported in ``problems``; the others still load.
    """
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    checks: dict[str, Check] = {}
    problems: list[PluginProblem] = []
    for ep in sorted(entry_points, key=lambda e: (e.name != "builtin", e.name)):
        label = f"entry point {ep.name} = {ep.value}"
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plugin must not stop the audit
            problems.append(PluginProblem(label, f"failed to load: {type(exc).__name__}: {exc}"))
            continue
        for item in _flatten(loaded):
            if not isinstance(item, Check):
                problems.append(PluginProblem(label, f"{item!r} is not a check"))
                continue
            try:
                validate(item)
            except CheckDefinitionError as exc:
                problems.append(PluginProblem(label, str(exc)))
                continue
            if item.id in checks:
                problems.append(PluginProblem(label, f"check id {item.id} is already registered "
                                                     f"by {checks[item.id].origin}; ignored"))
                continue
            checks[item.id] = item
    return Registry(checks=tuple(sorted(checks.values(), key=lambda c: c.id)),
                    problems=tuple(problems))


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of a check about one resource, with its evidence; the fingerprint stays the
    same from one audit to the next."""

    check_id: str
    title: str
    severity: Severity
    status: Status
    resource: str
    message: str
    evidence: tuple[EvidenceRef, ...]
    fingerprint: str
    fix: str = ""
    related: tuple[str, ...] = ()
    verdict: str = ""


def fingerprint(check_id: str, resource: str, key: str) -> str:
    """Stable across runs: depends on what was examined, not on what was found."""
    # (the first 20 hex digits: those of the first 10 bytes, without writing out all 64)
    return hashlib.sha256(f"{check_id}\x1f{resource}\x1f{key}".encode()).digest()[:10].hex()


_new_finding = built_directly(Finding)


def _finding(meta: CheckMeta, res: Result) -> Finding:
    # Positional, in the order of Finding's fields: cheaper than by keyword, six times a domain.
    return _new_finding(meta.id, meta.title, res.severity or meta.severity, res.status, res.resource,
                        res.message, res.evidence, fingerprint(meta.id, res.resource, res.key), res.fix,
                        res.related, res.verdict)


@lru_cache(maxsize=1 << 8)
def _gateway_unknown(check_id: str, title: str, severity: Severity, message: str) -> Finding:
    """``_finding`` of a check that needs a gateway when none is known: the same for every domain
    of a bulk audit (findings are frozen: one is shared)."""
    return Finding(check_id, title, severity, Status.NOT_EVALUATED, "gateway", message, (),
                   fingerprint(check_id, "gateway", "gateway"))


def _unusable_evidence(required: list[tuple[str, Collection[Any]]]) -> list[Result]:
    results = []
    for key, collection in required:
        if collection.state.usable:
            continue
        state = collection.state.value
        results.append(Result(
            status=Status.NOT_EVALUATED,
            resource=key,
            message=f"not evaluated: {key} is {state}: {collection.reason}",
            evidence=(EvidenceRef(file=evidence_path(key), pointer="",
                                  observed=state, note=collection.reason),),
            key=f"evidence:{key}",
        ))
    return results


def _qualify_summaries(results: list[Result], read: list[tuple[str, Collection[Any]]]) -> list[Result]:
    """A "nothing found" pass only holds if every object was read: otherwise it is not
    evaluated, since the unread objects may be exactly the ones that would fail."""
    unread = [(key, len(c.rejected), c.state) for key, c in read
              if c.rejected or c.state is State.PARTIAL]
    if not unread:
        return results
    gaps = "; ".join(f"{key}: {count} object(s) unreadable" if count else f"{key}: partial"
                     for key, count, _ in unread)
    return [
        replace(r, status=Status.NOT_EVALUATED,
                message=f"not evaluated: {r.message}, among the objects that could be read ({gaps})")
        if r.summary and r.status is Status.PASS else r
        for r in results
    ]


def _read_collections(meta: CheckMeta, evidence: EvidenceStore,
                      required: list[tuple[str, Collection[Any]]]) -> list[tuple[str, Collection[Any]]]:
    """The evidence a check read: what it requires, and the optional evidence that was usable."""
    read = list(required)
    for key in meta.uses:
        if key != "dns" and (collection := evidence.get(key)).state.usable:
            read.append((key, collection))
    return read


def _coverage_gaps(read: list[tuple[str, Collection[Any]]]) -> list[Result]:
    """Objects the check could not see: rejected objects and partial collections."""
    results = []
    for key, collection in read:
        for rejected in collection.rejected:
            results.append(Result(
                status=Status.NOT_EVALUATED,
                resource=rejected.name,
                message=f"not evaluated: this object of {key} could not be read: {rejected.reason}",
                evidence=(EvidenceRef(file=rejected.source.file,
                                      pointer=rejected.pointer or rejected.source.pointer,
                                      observed=rejected.observed, note=rejected.reason),),
                key=f"rejected:{rejected.source.pointer}",
            ))
        if collection.state is State.PARTIAL:
            results.append(Result(
                status=Status.NOT_EVALUATED,
                resource=key,
                message=f"incomplete: {key} holds only part of the results ({collection.reason}); "
                        "objects not collected were not examined",
                evidence=(EvidenceRef(file=evidence_path(key), pointer="", note=collection.reason),),
                key=f"partial:{key}",
            ))
    return results


@lru_cache(maxsize=1)
def _check_context() -> type[CheckContext]:
    """``CheckContext``, imported once, when first needed (not at import: see TYPE_CHECKING)."""
    from .context import CheckContext

    return CheckContext


@dataclass(frozen=True, slots=True)
class PlannedCheck:
    """A check, with what its declared evidence says in a store worked out before it runs."""

    check: Check
    blocked: tuple[Finding, ...]  # its findings when required evidence is unusable (it does not run)
    read: tuple[tuple[str, Collection[Any]], ...]  # what it reads: required, and usable optional items
    incomplete: bool  # something it reads has unreadable objects or is partial
    allowed: frozenset[str]  # the evidence it declared (requires and uses)
    sources: frozenset[str]  # the checks it derives from


def plan_check(chk: Check, evidence: EvidenceStore) -> PlannedCheck:
    """What ``chk``'s declared evidence says in ``evidence``: each item's collection is looked up
    once."""
    meta = chk.meta
    required = [(key, evidence.get(key)) for key in meta.requires]
    blocked = tuple(_finding(meta, r) for r in _unusable_evidence(required))
    read = _read_collections(meta, evidence, required) if not blocked else required
    return PlannedCheck(chk, blocked, tuple(read),
                        any(c.rejected or c.state is State.PARTIAL for _, c in read),
                        frozenset(meta.requires + meta.uses), frozenset(meta.derives_from))


def plan_checks(ordered: Iterable[Check], evidence: EvidenceStore) -> tuple[PlannedCheck, ...]:
    """``plan_check`` of each check, in order. One plan serves every audit whose store answers
    ``get`` as ``evidence`` does, key for key (a bulk audit's stores, which differ only in the
    DNS answers of their domain): the states are then worked out once, not once per audit."""
    return tuple(plan_check(chk, evidence) for chk in ordered)


def run_check(chk: Check, ctx: AuditContext, *, debug: bool = False,
              earlier: tuple[Finding, ...] = (), ran: frozenset[str] = frozenset()) -> list[Finding]:
    """Run one check in isolation and return its findings (never raises unless ``debug``).

    A verdict check (``derives_from``) also sees the ``earlier`` findings of the checks it names
    and which checks ``ran``. Each evidence item's collection is looked up once."""
    return run_planned(plan_check(chk, ctx.evidence), ctx, debug=debug, earlier=earlier, ran=ran)


def run_planned(planned: PlannedCheck, ctx: AuditContext, *, debug: bool = False,
                earlier: tuple[Finding, ...] = (), ran: frozenset[str] = frozenset()) -> list[Finding]:
    """``run_check`` of a check planned for ``ctx.evidence`` (or a store that answers alike)."""
    if planned.blocked:
        return list(planned.blocked)
    chk = planned.check
    meta = chk.meta
    if meta.needs_gateway and not ctx.gateway.detected:
        hints = "; ".join(c.description for c in ctx.gateway.hints()[:3]) if ctx.gateway.clues else ""
        message = f"not evaluated: {ctx.settings.unknown_gateway}"
        if hints:
            message += f" (hints: {hints})"
        return [_gateway_unknown(meta.id, meta.title, meta.severity, message)]
    view = _check_context().of_sets(ctx, planned.allowed, planned.sources,
                                    findings=tuple(f for f in earlier if f.check_id in meta.derives_from)
                                    if earlier else (), ran=ran)
    try:
        results = list(chk.func(view))
        if not results:
            results = [Result(Status.ERROR, meta.id,
                              "error: the check examined nothing and reported nothing; "
                              "this is a defect in the check", key="silent")]
    except Exception as exc:
        if debug:
            raise
        where = traceback.extract_tb(exc.__traceback__)[-1]
        detail = "" if isinstance(exc, UndeclaredEvidenceError) else (
            f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
        results = [Result(Status.ERROR, meta.id,
                          f"error: the check crashed: {type(exc).__name__}: {exc}{detail}",
                          key="crash")]
    if planned.incomplete:  # else neither changes anything
        read = list(planned.read)
        results = _qualify_summaries(results, read) + _coverage_gaps(read)
    return [_finding(meta, r) for r in results]


def in_dependency_order(checks: Iterable[Check]) -> list[Check]:
    """Plain checks first, then each verdict check after the verdict checks it derives from
    (registration order otherwise; a cycle runs in registration order, each check seeing the
    findings made before it)."""
    listed = list(checks)
    ordered = [c for c in listed if not c.meta.derives_from]
    pending = [c for c in listed if c.meta.derives_from]
    verdicts = {c.id for c in pending}
    done: set[str] = set()
    while pending:
        ready = [c for c in pending if not (set(c.meta.derives_from) & verdicts) - done - {c.id}]
        chosen = ready[0] if ready else pending[0]
        ordered.append(chosen)
        done.add(chosen.id)
        pending.remove(chosen)
    return ordered


def run_checks(checks: Iterable[Check], ctx: AuditContext, *, debug: bool = False) -> list[Finding]:
    """Run every check; verdict checks run last, over the findings of the checks they derive
    from (verdict checks included: see ``in_dependency_order``)."""
    return run_ordered(in_dependency_order(checks), ctx, debug=debug)


def run_ordered(ordered: Iterable[Check], ctx: AuditContext, *, debug: bool = False,
                plan: tuple[PlannedCheck, ...] | None = None) -> list[Finding]:
    """``run_checks`` for checks already ``in_dependency_order`` (put so once for many audits).
    ``plan``: ``plan_checks(ordered, ...)`` made once for many audits whose stores answer alike
    (else it is made from ``ctx.evidence``)."""
    findings: list[Finding] = []
    ran: set[str] = set()
    for planned in plan if plan is not None else plan_checks(ordered, ctx.evidence):
        meta = planned.check.meta
        if meta.derives_from:
            findings.extend(run_planned(planned, ctx, debug=debug, earlier=tuple(findings),
                                        ran=frozenset(ran)))
        else:
            findings.extend(run_planned(planned, ctx, debug=debug))
        ran.add(meta.id)
    return findings
