"""The tenant corpus proves the catalog: each realistic export gets exactly its expected findings.

``tests/corpus/<tenant>/`` holds an export folder and ``expected.json``, the sorted
``[check_id, status, resource]`` triples a human checked against the tenant's README. A change in
any check that adds, drops or changes a finding on a tenant fails here with the difference;
``python -m tests.corpus.regen TENANT`` rewrites the file and prints it for review.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from auditor.audit import Report
from auditor.engine import discover
from auditor.evidence import CATALOG as EVIDENCE_CATALOG
from auditor.evidence import EXO_SPECS, State
from tests.corpus import (
    CORPUS,
    EXPECTED,
    OPTION_KEYS,
    OPTIONS,
    Triple,
    audit_tenant,
    load_expected,
    options,
    tenant_folders,
    triples,
)

TENANTS = tenant_folders()
# The catalog the corpus must prove: every id fails or warns on some tenant and passes on another.
CATALOG = (
    *(f"CONN-{n:03d}" for n in range(1, 10)),
    *(f"RULE-{n:03d}" for n in range(1, 8)),
    *(f"POL-{n:03d}" for n in range(1, 8)),
    "MBX-001", "MBX-002", "ORG-001", "ORG-002", "ORG-003", "DOM-001",
    *(f"DNS-{n:03d}" for n in range(1, 8)),
    "GW-001",
    *(f"APP-{n:03d}" for n in range(1, 4)),
    "MAIL-001", "DKIM-001", "ARC-001", "CHG-001", "PROBE-001",
)
# Evidence only `mailflow-audit collect` gathers (Microsoft Graph, mailbox contents over EWS): a
# tenant may have it or not. The admin API's (exo/, what the export script writes) and DNS it must.
COLLECT_ONLY = frozenset(spec.key for spec in EVIDENCE_CATALOG if spec not in EXO_SPECS)
# Checks that cannot be shown both ways on a realistic tenant, with the reason (none so far).
ONE_WAY: dict[str, str] = {}


@functools.cache
def _report(name: str) -> Report:
    return audit_tenant(CORPUS / name)


def _describe(report: Report, triple: Triple) -> str:
    messages = [f.message for f in report.findings
                if (f.check_id, f.status.value, f.resource) == triple]
    return f"    {list(triple)}\n      {messages[0][:300] if messages else ''}"


def test_the_corpus_has_the_tenants_the_catalog_needs() -> None:
    assert len(TENANTS) >= 12
    for folder in TENANTS:
        assert (folder / "README.md").is_file(), f"{folder.name} has no README.md"
        assert (folder / EXPECTED).is_file(), f"{folder.name} has no {EXPECTED}: run tests.corpus.regen"


@pytest.mark.parametrize("folder", TENANTS, ids=[f.name for f in TENANTS])
def test_the_audit_finds_exactly_what_is_expected(folder: Path) -> None:
    expected = load_expected(folder)
    assert expected is not None
    report = _report(folder.name)
    found = set(triples(report))
    missing = sorted(set(expected) - found)
    unexpected = sorted(found - set(expected))
    if missing or unexpected:
        lines = [f"{folder.name}: the audit differs from {EXPECTED} "
                 f"(review, then `python -m tests.corpus.regen {folder.name}`)"]
        if missing:
            lines.append(f"  missing ({len(missing)}), expected but not produced:")
            lines += [f"    {list(t)}" for t in missing]
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}), produced but not expected:")
            lines += [_describe(report, t) for t in unexpected]
        pytest.fail("\n".join(lines), pytrace=False)


@pytest.mark.parametrize("folder", TENANTS, ids=[f.name for f in TENANTS])
def test_no_check_crashes_or_is_missing_on_a_tenant(folder: Path) -> None:
    report = _report(folder.name)
    assert not report.problems, report.problems
    errors = [(f.check_id, f.resource, f.message) for f in report.findings if f.status.value == "error"]
    assert not errors


@pytest.mark.parametrize("folder", TENANTS, ids=[f.name for f in TENANTS])
def test_every_export_file_and_dns_recording_reads_cleanly(folder: Path) -> None:
    """The corpus is evidence the loader must read whole: a typo in a fixture would otherwise
    turn into silent not-evaluated results. Admin API evidence and DNS are in every tenant; Graph
    and mailbox evidence only where `collect` gathered it, and read as missing elsewhere."""
    report = _report(folder.name)
    snapshot = report.snapshot
    for item in snapshot.items:
        if item.key in COLLECT_ONLY and not (folder / f"{item.key}.json").is_file():
            # Graph and mailbox evidence come only from `mailflow-audit collect`: a folder the export
            # script wrote simply lacks them, which must read as missing, never as empty.
            assert item.state is State.MISSING, (item.key, item.state, item.error)
            continue
        assert item.state is State.OK, (item.key, item.error)
        assert not item.rejected and not item.warnings, (item.key, item.rejected, item.warnings)
    accepted = {str(d.DomainName).lower() for d in snapshot.evidence.usable("Get-AcceptedDomain")}
    mail_domains = {d for d in accepted if not d.endswith(".onmicrosoft.com")}
    assert set(snapshot.evidence.dns) == mail_domains, "record the DNS: python -m tests.corpus.record_dns"
    assert snapshot.created_at.isoformat() == json.loads(
        (folder / "export.json").read_text())["collected_at"].replace("Z", "+00:00")


@pytest.mark.parametrize("folder", TENANTS, ids=[f.name for f in TENANTS])
def test_options_name_only_what_the_command_line_takes(folder: Path) -> None:
    chosen = options(folder)
    assert set(chosen) <= OPTION_KEYS
    if "gateway_file" in chosen:
        assert (folder / chosen["gateway_file"]).is_file()
    if not (folder / OPTIONS).exists():
        assert _report(folder.name).gateway.mode == "auto"


def test_every_check_is_proven_both_ways() -> None:
    """Each check of the catalog must fail or warn on some tenant and pass on another, or the
    corpus proves nothing about it (ONE_WAY says why an exception is unavoidable)."""
    registered = {c.id for c in discover().checks}
    missing = sorted(set(CATALOG) - registered)
    assert not missing, f"checks of the catalog that are not registered: {missing}"
    seen: dict[str, set[str]] = {}
    for folder in TENANTS:
        for check_id, status, _ in load_expected(folder) or []:
            seen.setdefault(check_id, set()).add(status)
    gaps = []
    for check_id in sorted(registered | set(CATALOG)):
        statuses = seen.get(check_id, set())
        if check_id in ONE_WAY:
            continue
        if not statuses & {"fail", "warn"}:
            gaps.append(f"{check_id} never fails or warns")
        if "pass" not in statuses:
            gaps.append(f"{check_id} never passes")
    assert not gaps, gaps


def test_the_recorded_dns_is_what_the_zone_files_serve() -> None:
    """Re-recording from the zone files gives the checked-in DNS files byte for byte, so the
    zones and the recordings cannot drift apart (needs knotd; see record_dns.py)."""
    from tests.corpus.record_dns import record, zones
    from tests.dnsserver import KnotServer, require_knot

    knotd = require_knot()
    with KnotServer(zones(), knotd=knotd) as server:
        recorded = record(TENANTS, server.address)
    on_disk = {p: p.read_bytes() for folder in TENANTS for p in sorted((folder / "dns").glob("*.json"))}
    assert sorted(recorded) == sorted(on_disk)
    changed = [str(p.relative_to(CORPUS)) for p in recorded if recorded[p] != on_disk[p]]
    assert not changed, f"re-record with `python -m tests.corpus.record_dns`: {changed}"
