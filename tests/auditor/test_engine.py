"""The check engine: discovery, the metadata contract, isolation, and no silent passes."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditor.context import AuditContext, CheckContext
from auditor.engine import (
    Check,
    Registry,
    Remediation,
    Result,
    Severity,
    Status,
    check,
    discover,
    in_dependency_order,
    plan_checks,
    run_check,
    run_checks,
    run_ordered,
)
from auditor.errors import UndeclaredEvidenceError
from auditor.evidence import CATALOG, EVIDENCE_KEYS, SPECS, Collection, EvidenceStore, State, parse_evidence
from auditor.gateways import builtin_profiles, resolve_gateway
from auditor.models import Rejected, SourceRef

from ..conftest import mimecast_us_ranges

REGISTRY = discover()


def _context(store: EvidenceStore | None = None) -> AuditContext:
    store = store or EvidenceStore({})
    return AuditContext(evidence=store, gateway=resolve_gateway(store, builtin_profiles()),
                        as_of=datetime(2026, 11, 1, tzinfo=UTC))


def _ok_store(**items: Collection) -> EvidenceStore:
    return EvidenceStore(dict(items))


def _check(func: Callable[[CheckContext], Iterator[Result]], *,
           requires: tuple[str, ...] = ("Get-TransportRule",), check_id: str = "TEST-001") -> Check:
    return check(id=check_id, title="t", severity=Severity.LOW, rationale="r",
                 remediation=Remediation("fix"), requires=requires)(func)


def _entry_point(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group="mailflow_auditor.checks")


def test_builtin_checks_are_found_through_the_entry_point_group() -> None:
    ids = {c.id for c in REGISTRY.checks}
    assert {"CONN-001", "CONN-002", "RULE-001", "RULE-002", "POL-001", "ORG-001"} <= ids
    assert REGISTRY.problems == ()


@pytest.mark.parametrize("chk", REGISTRY.checks, ids=lambda c: c.id)
def test_every_registered_check_honours_the_metadata_contract(chk: Check) -> None:
    meta = chk.meta
    assert meta.title and meta.rationale and meta.remediation.text
    assert meta.remediation.powershell, "remediation must give the PowerShell to run"
    assert meta.references and all(r.url.startswith("https://") for r in meta.references)
    assert meta.requires and all(k in EVIDENCE_KEYS for k in meta.requires + meta.uses)
    assert meta.mappings.attack, "every bypass maps to at least one ATT&CK technique"
    assert all(t.startswith("T") for t in meta.mappings.attack)


@pytest.mark.parametrize("chk", REGISTRY.checks, ids=lambda c: c.id)
def test_every_check_is_not_evaluated_on_an_empty_snapshot(chk: Check) -> None:
    findings = run_check(chk, _context())
    assert findings, "a check must always say something"
    assert {f.status for f in findings} == {Status.NOT_EVALUATED}
    for finding in findings:
        assert finding.message.startswith("not evaluated")


def test_every_check_is_not_evaluated_when_its_evidence_was_denied() -> None:
    store = EvidenceStore({spec.key: Collection(key=spec.key, state=State.DENIED,
                                                reason="403: role View-Only Configuration missing")
                           for spec in CATALOG})
    for chk in REGISTRY.checks:
        findings = run_check(chk, _context(store))
        assert {f.status for f in findings} == {Status.NOT_EVALUATED}
        if set(chk.meta.requires) & {spec.key for spec in CATALOG}:
            assert any("denied" in f.message and "View-Only" in f.message for f in findings)


def test_a_crashing_check_becomes_an_error_and_the_run_goes_on() -> None:
    def boom(ctx: CheckContext) -> Iterator[Result]:
        raise RuntimeError("kaput")

    store = _ok_store(**{"Get-TransportRule": Collection("Get-TransportRule", State.OK)})
    findings = run_check(_check(boom), _context(store))
    assert [(f.status, f.check_id) for f in findings] == [(Status.ERROR, "TEST-001")]
    assert "RuntimeError: kaput" in findings[0].message


def test_debug_re_raises_a_crash() -> None:
    def boom(ctx: CheckContext) -> Iterator[Result]:
        raise RuntimeError("kaput")

    store = _ok_store(**{"Get-TransportRule": Collection("Get-TransportRule", State.OK)})
    with pytest.raises(RuntimeError):
        run_check(_check(boom), _context(store), debug=True)


def test_a_check_that_reports_nothing_is_an_error_not_a_pass() -> None:
    def silent(ctx: CheckContext) -> Iterator[Result]:
        yield from ()

    store = _ok_store(**{"Get-TransportRule": Collection("Get-TransportRule", State.OK)})
    findings = run_check(_check(silent), _context(store))
    assert [f.status for f in findings] == [Status.ERROR]


def test_reading_undeclared_evidence_is_an_error() -> None:
    def sneaky(ctx: CheckContext) -> Iterator[Result]:
        ctx.inbound_connectors  # noqa: B018 - the access itself must fail
        yield Result(Status.PASS, "x", "fine")

    store = _ok_store(**{"Get-TransportRule": Collection("Get-TransportRule", State.OK)})
    findings = run_check(_check(sneaky), _context(store))
    assert [f.status for f in findings] == [Status.ERROR]
    assert "Get-InboundConnector" in findings[0].message


def test_rejected_objects_and_partial_collections_are_reported_beside_results() -> None:
    rejected = Rejected(SourceRef("exo/Get-TransportRule.json", "/3"), "Odd rule",
                        "SetSCL at /3/SetSCL: expected a whole number, found 'abc'")
    store = _ok_store(**{"Get-TransportRule": Collection(
        "Get-TransportRule", State.PARTIAL, rejected=(rejected,), reason="more pages")})

    def fine(ctx: CheckContext) -> Iterator[Result]:
        yield Result(Status.PASS, "rules", "nothing wrong in what was read")

    findings = run_check(_check(fine), _context(store))
    assert [(f.status, f.resource) for f in findings] == [
        (Status.PASS, "rules"),
        (Status.NOT_EVALUATED, "Odd rule"),
        (Status.NOT_EVALUATED, "Get-TransportRule"),
    ]
    assert findings[1].evidence[0].pointer == "/3"


def test_fingerprints_are_stable_and_distinct() -> None:
    def two(ctx: CheckContext) -> Iterator[Result]:
        yield Result(Status.FAIL, "rule A", "bad", key="a")
        yield Result(Status.FAIL, "rule B", "bad", key="b")

    store = _ok_store(**{"Get-TransportRule": Collection("Get-TransportRule", State.OK)})
    first = [f.fingerprint for f in run_check(_check(two), _context(store))]
    second = [f.fingerprint for f in run_check(_check(two), _context(store))]
    assert first == second and len(set(first)) == 2


def test_a_broken_plugin_is_reported_and_the_builtin_checks_still_load() -> None:
    registry = discover([
        _entry_point("builtin", "checks:BUILTIN_CHECKS"),
        _entry_point("broken", "no_such_module_for_mailflow:CHECKS"),
    ])
    assert len(registry.checks) == len(REGISTRY.checks)
    assert len(registry.problems) == 1
    assert "no_such_module_for_mailflow" in registry.problems[0].message


def test_plugins_with_bad_ids_duplicate_ids_or_non_checks_are_rejected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mf_plugin_demo.py").write_text(
        "from auditor.engine import Remediation, Result, Severity, Status, check\n"
        "def _make(id):\n"
        "    return check(id=id, title='t', severity=Severity.LOW, rationale='r',\n"
        "                 remediation=Remediation('fix'), requires=('Get-TransportRule',))(\n"
        "        lambda ctx: iter([Result(Status.PASS, 'x', 'y')]))\n"
        "CHECKS = [_make('lowercase-1'), _make('RULE-001'), 'not a check', _make('EXT-001')]\n"
        "UNKNOWN_EVIDENCE = check(id='EXT-002', title='t', severity=Severity.LOW, rationale='r',\n"
        "    remediation=Remediation('fix'), requires=('Get-Nothing',))(lambda ctx: iter([]))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = discover([
        _entry_point("builtin", "checks:BUILTIN_CHECKS"),
        _entry_point("demo", "mf_plugin_demo:CHECKS"),
        _entry_point("demo2", "mf_plugin_demo:UNKNOWN_EVIDENCE"),
    ])
    assert "EXT-001" in {c.id for c in registry.checks}
    messages = " | ".join(p.message for p in registry.problems)
    assert "lowercase-1" in messages
    assert "already registered" in messages
    assert "is not a check" in messages
    assert "Get-Nothing" in messages


def test_registry_lookup_is_case_insensitive() -> None:
    assert isinstance(REGISTRY, Registry)
    chk = REGISTRY.get("rule-001")
    assert chk is not None and chk.id == "RULE-001"


def test_ps_literal_doubles_every_kind_of_single_quote() -> None:
    from auditor.engine import ps_literal

    assert ps_literal("O'Brien \u2018x\u2019 $env:PATH") == "'O''Brien \u2018\u2018x\u2019\u2019 $env:PATH'"


def _verdict_check(sources: tuple[str, ...], reads: str) -> Check:
    def verdict(ctx: CheckContext) -> Iterator[Result]:
        found = ctx.findings(reads)
        yield Result(Status.PASS, "tenant", f"{len(found)} finding(s); ran={ctx.ran(reads)}",
                     related=tuple(f.fingerprint for f in found), verdict="seen")

    return check(id="TEST-009", title="t", severity=Severity.LOW, rationale="r",
                 remediation=Remediation("fix"), requires=("Get-TransportRule",),
                 derives_from=sources)(verdict)


def _rules_store() -> EvidenceStore:
    return _ok_store(**{"Get-TransportRule": Collection(key="Get-TransportRule", state=State.OK)})


def test_a_verdict_check_runs_after_the_checks_it_derives_from_whatever_their_order() -> None:
    def plain(ctx: CheckContext) -> Iterator[Result]:
        yield Result(Status.FAIL, "rule x", "bad", key="x")

    source = _check(plain, check_id="TEST-001")
    findings = run_checks([_verdict_check(("TEST-001",), "TEST-001"), source],
                          _context(_rules_store()))
    assert [f.check_id for f in findings] == ["TEST-001", "TEST-009"]
    assert findings[1].message == "1 finding(s); ran=True"
    assert findings[1].related == (findings[0].fingerprint,) and findings[1].verdict == "seen"


def test_a_verdict_check_runs_after_the_verdict_checks_it_derives_from() -> None:
    """A verdict built on another verdict (GW-001 on PROBE-001, itself built on CONN-001) sees
    its findings, whatever the registration order."""
    def plain(ctx: CheckContext) -> Iterator[Result]:
        yield Result(Status.FAIL, "rule x", "bad", key="x")

    def middle(ctx: CheckContext) -> Iterator[Result]:
        yield Result(Status.WARN, "tenant", f"{len(ctx.findings('TEST-001'))} below", key="m")

    middle_check = check(id="TEST-008", title="t", severity=Severity.LOW, rationale="r",
                         remediation=Remediation("fix"), requires=("Get-TransportRule",),
                         derives_from=("TEST-001",))(middle)
    findings = run_checks([_verdict_check(("TEST-008",), "TEST-008"), middle_check,
                           _check(plain, check_id="TEST-001")], _context(_rules_store()))
    assert [f.check_id for f in findings] == ["TEST-001", "TEST-008", "TEST-009"]
    assert findings[2].message == "1 finding(s); ran=True"
    assert findings[2].related == (findings[1].fingerprint,)


def test_verdict_checks_that_derive_from_each_other_still_all_run() -> None:
    first = _verdict_check(("TEST-001",), "TEST-001")
    cycle = [first, check(id="TEST-001", title="t", severity=Severity.LOW, rationale="r",
                          remediation=Remediation("fix"), requires=("Get-TransportRule",),
                          derives_from=("TEST-009",))(lambda ctx: iter(()))]
    assert sorted(f.check_id for f in run_checks(cycle, _context(_rules_store()))) == [
        "TEST-001", "TEST-009"]


def test_a_verdict_check_knows_which_sources_did_not_run() -> None:
    findings = run_checks([_verdict_check(("TEST-001",), "TEST-001")], _context(_rules_store()))
    assert findings[0].message == "0 finding(s); ran=False"


def test_a_verdict_check_cannot_read_findings_it_did_not_declare() -> None:
    findings = run_checks([_verdict_check(("TEST-002",), "TEST-001")], _context(_rules_store()))
    assert findings[0].status is Status.ERROR
    assert "without declaring it in derives_from" in findings[0].message


def test_a_check_cannot_derive_from_itself_or_from_a_non_id() -> None:
    registry = discover([_entry_point("bad", "tests.auditor.test_engine:SELF_DERIVED")])
    assert registry.checks == ()
    assert "derives_from names ['TEST-009', 'not an id']" in registry.problems[0].message


SELF_DERIVED = _verdict_check(("TEST-009", "not an id"), "TEST-009")


def test_each_evidence_item_is_looked_up_once_per_check_and_gaps_still_qualify_summaries() -> None:
    """The engine reads each declared item's collection once per check (bulk mode runs checks
    hundreds of thousands of times), and what it read still decides the coverage findings: a
    summary pass over a partial optional item is not evaluated."""
    asked: list[str] = []

    class CountingStore(EvidenceStore):
        def get(self, key: str) -> Collection:
            asked.append(key)
            return super().get(key)

    rejected = Rejected(SourceRef("exo/Get-InboundConnector.json", "/0"), "Odd connector", "unreadable")
    store = CountingStore({
        "Get-TransportRule": Collection("Get-TransportRule", State.OK),
        "Get-InboundConnector": Collection("Get-InboundConnector", State.PARTIAL, rejected=(rejected,),
                                           reason="more pages"),
    })

    def summary(ctx: CheckContext) -> Iterator[Result]:
        yield Result(Status.PASS, "rules", "nothing found", summary=True)

    chk = check(id="TEST-002", title="t", severity=Severity.LOW, rationale="r",
                remediation=Remediation("fix"), requires=("Get-TransportRule",),
                uses=("Get-InboundConnector", "Get-OutboundConnector"))(summary)
    context = _context(store)
    asked.clear()
    findings = run_check(chk, context)
    assert sorted(asked) == ["Get-InboundConnector", "Get-OutboundConnector", "Get-TransportRule"]
    assert [(f.status, f.resource) for f in findings] == [
        (Status.NOT_EVALUATED, "rules"),
        (Status.NOT_EVALUATED, "Odd connector"),
        (Status.NOT_EVALUATED, "Get-InboundConnector"),
    ]
    assert "Get-InboundConnector: 1 object(s) unreadable" in findings[0].message


def test_a_check_needing_a_gateway_names_the_hints_of_each_audit() -> None:
    """The not-evaluated finding of a check that needs a gateway is made once per message: an
    audit with other hints gets its own."""
    def needs(ctx: CheckContext) -> Iterator[Result]:
        yield Result(Status.PASS, "x", "fine")

    chk = check(id="TEST-003", title="t", severity=Severity.HIGH, rationale="r",
                remediation=Remediation("fix"), requires=("Get-TransportRule",),
                needs_gateway=True)(needs)
    plain = _ok_store(**{"Get-TransportRule": Collection("Get-TransportRule", State.OK)})
    hinted = _ok_store(**{
        "Get-TransportRule": Collection("Get-TransportRule", State.OK),
        "Get-HostedConnectionFilterPolicy": parse_evidence(
            SPECS["Get-HostedConnectionFilterPolicy"],
            json.dumps([{"Name": "Default", "IPAllowList": mimecast_us_ranges()[:1]}]).encode()),
    })
    first, again, other = (run_check(chk, _context(s)) for s in (plain, plain, hinted))
    assert first == again
    assert [(f.status, f.resource, f.severity) for f in first + other] == [
        (Status.NOT_EVALUATED, "gateway", Severity.HIGH)] * 2
    assert "(hints:" not in first[0].message and "(hints: connection filter policy" in other[0].message
    assert first[0].fingerprint == other[0].fingerprint


def test_checks_see_only_their_own_declarations_one_after_the_other() -> None:
    def reads_connectors(ctx: CheckContext) -> Iterator[Result]:
        yield Result(Status.PASS, "x", f"{len(ctx.inbound_connectors)} connectors")

    store = _ok_store(**{"Get-TransportRule": Collection("Get-TransportRule", State.OK),
                         "Get-InboundConnector": Collection("Get-InboundConnector", State.OK)})
    declared = check(id="TEST-004", title="t", severity=Severity.LOW, rationale="r",
                     remediation=Remediation("fix"), requires=("Get-TransportRule",),
                     uses=("Get-InboundConnector",))(reads_connectors)
    undeclared = _check(reads_connectors, check_id="TEST-005")
    for _ in range(2):
        assert [f.status for f in run_check(declared, _context(store))] == [Status.PASS]
        assert [f.status for f in run_check(undeclared, _context(store))] == [Status.ERROR]


def test_checks_put_in_order_once_run_as_run_checks_runs_them() -> None:
    context = _context()
    assert run_ordered(in_dependency_order(REGISTRY.checks), context) == run_checks(REGISTRY.checks,
                                                                                    context)


def test_one_plan_serves_audits_whose_stores_answer_alike() -> None:
    """A plan works out what each check's evidence says once: a check whose evidence is missing
    gets the same findings in every audit it serves, and the others run on each audit's own
    evidence, as without a plan."""
    def count_rules(ctx: CheckContext) -> Iterator[Result]:
        yield Result(Status.PASS, "rules", f"{len(ctx.transport_rules)} rules")

    counting = _check(count_rules)
    blocked = _check(count_rules, requires=("Get-InboundConnector",), check_id="TEST-002")
    stores = [_ok_store(**{"Get-TransportRule": parse_evidence(
        SPECS["Get-TransportRule"], json.dumps([{"Name": f"r{i}"} for i in range(n)]).encode())})
        for n in (1, 2)]
    plan = plan_checks([counting, blocked], stores[0])
    runs = [run_ordered([counting, blocked], _context(s), plan=plan) for s in stores]
    assert [[f.message for f in found] for found in runs] == [
        ["1 rules", "not evaluated: Get-InboundConnector is missing: Get-InboundConnector was not collected"],
        ["2 rules", "not evaluated: Get-InboundConnector is missing: Get-InboundConnector was not collected"]]
    assert runs[0][1] is runs[1][1]
    assert runs == [run_ordered([counting, blocked], _context(s)) for s in stores]


def test_a_value_shared_per_audit_is_worked_out_once_per_audit_and_checks_declarations() -> None:
    calls: list[int] = []

    def rule_count(ctx: CheckContext, plus: int) -> int:
        calls.append(plus)
        return len(ctx.transport_rules) + plus

    store = _ok_store(**{"Get-TransportRule": parse_evidence(
        SPECS["Get-TransportRule"], json.dumps([{"Name": "r"}]).encode())})
    audit, other = _context(store), _context(store)
    views = [CheckContext(a, ("Get-TransportRule",)) for a in (audit, audit, other)]
    counted = [v.per_audit(rule_count, 0, reads=("Get-TransportRule",)) for v in views]
    assert counted == [1, 1, 1] and calls == [0, 0]  # once per audit
    assert views[0].per_audit(rule_count, 5, reads=("Get-TransportRule",)) == 6  # other arguments
    with pytest.raises(UndeclaredEvidenceError):
        CheckContext(audit, ("Get-InboundConnector",)).per_audit(rule_count, 0, reads=("Get-TransportRule",))
