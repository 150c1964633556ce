"""`mailflow-audit collect` reads the audit log through Graph: on by default with Graph, off with
--no-audit-log or --no-graph, denied named, and CHG-001 judging what it wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditor.cli import main
from auditor.snapshot import load_snapshot
from tests.fakeauditlog import QUERIES, FakeAuditLog, audit_record
from tests.fakeexo import CLIENT_ID, TENANT_DOMAIN, FakeExo

from .conftest import audit

SECRET = "mfa-CANARY-7Kq~secret-value-do-not-leak"


@pytest.fixture
def servers() -> Iterator[tuple[FakeExo, FakeAuditLog]]:
    """The admin API, and Graph with the audit log query API; Graph's authority signs in both."""
    when = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    records = [audit_record(1, "Set-TransportRule", {"Identity": "Allow partner newsletters",
                                                     "SenderDomainIs": "contoso.com"}, when=when)]
    with FakeExo(secret=SECRET) as exo, \
            FakeAuditLog(secret=SECRET, records=records, exo_authority=exo.url) as graph:
        yield exo, graph


def collect(servers: tuple[FakeExo, FakeAuditLog], out: Path, capsys: pytest.CaptureFixture[str],
            *extra: str) -> tuple[int, str]:
    exo, graph = servers
    try:
        main(["collect", "--tenant", TENANT_DOMAIN, "--client-id", CLIENT_ID, "--client-secret", SECRET,
              "--out", str(out), "--authority-host", graph.url, "--admin-api", exo.url,
              "--graph-api", graph.url, "--no-dns", "--backoff", "0.01", *extra])
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    return code, capsys.readouterr().err


def _entry(out: Path) -> dict[str, object]:
    manifest = json.loads((out / "manifest.json").read_text())
    return next(e for e in manifest["evidence"] if e["key"] == "Search-UnifiedAuditLog")


def test_collect_searches_the_audit_log_by_default_and_chg001_attributes_the_change(
        servers: tuple[FakeExo, FakeAuditLog], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "snap"
    code, stderr = collect(servers, out, capsys)
    assert code == 0, stderr
    assert "ok       Search-UnifiedAuditLog: 1 objects" in stderr
    entry = _entry(out)
    assert entry["state"] == "ok" and entry["path"] == "audit/Search-UnifiedAuditLog.json"
    assert str(entry["source"]).startswith("Microsoft Graph audit log query (POST ")
    (query,) = servers[1].queries.values()
    start = datetime.fromisoformat(query.body["filterStartDateTime"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(query.body["filterEndDateTime"].replace("Z", "+00:00"))
    assert end - start == timedelta(days=30) and query.body["recordTypeFilters"] == ["exchangeAdmin"]
    changes = [f for f in audit(out).findings if f.check_id == "CHG-001"]
    assert [(f.status.value, f.resource) for f in changes] == [
        ("warn", "transport rule Allow partner newsletters")]
    assert "isaiah.langer@contoso.com" in changes[0].verdict


def test_audit_days_sets_the_window(servers: tuple[FakeExo, FakeAuditLog], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, stderr = collect(servers, tmp_path / "snap", capsys, "--audit-days", "7")
    assert code == 0, stderr
    (query,) = servers[1].queries.values()
    assert query.body["filterStartDateTime"][:10] == (
        datetime.fromisoformat(query.body["filterEndDateTime"].replace("Z", "+00:00"))
        - timedelta(days=7)).strftime("%Y-%m-%d")


@pytest.mark.parametrize(("flag", "reason"), [("--no-audit-log", "not collected (--no-audit-log)"),
                                              ("--no-graph", "not collected (--no-graph)")])
def test_skipping_the_audit_log_sends_no_query_and_marks_it_missing(
        servers: tuple[FakeExo, FakeAuditLog], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        flag: str, reason: str) -> None:
    out = tmp_path / "snap"
    code, stderr = collect(servers, out, capsys, flag)
    assert code == 0, stderr
    assert ("POST", QUERIES) not in servers[1].calls
    entry = _entry(out)
    assert entry["state"] == "missing" and reason in str(entry["error"])
    (finding,) = [f for f in audit(out).findings if f.check_id == "CHG-001"]
    assert finding.status.value == "not_evaluated" and reason in finding.message


def test_a_denied_audit_log_is_recorded_with_the_permission_and_fails_on_incomplete(
        servers: tuple[FakeExo, FakeAuditLog], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    servers[1].audit.denied = True
    out = tmp_path / "snap"
    code, stderr = collect(servers, out, capsys, "--fail-on-incomplete")
    assert code == 2
    assert "denied   Search-UnifiedAuditLog" in stderr
    assert load_snapshot(out).evidence.get("Search-UnifiedAuditLog").state.value == "denied"
    (finding,) = [f for f in audit(out).findings if f.check_id == "CHG-001"]
    assert finding.status.value == "not_evaluated"
    assert "AuditLogsQuery-Exchange.Read.All" in finding.message
    assert SECRET not in stderr
