"""The PowerShell export script: read-only by construction, the export-folder contract, and
what its runs write importing without warnings (PowerShell cannot run here: the runs under
tests/fixtures/export-script-run/ are written by hand in the shapes each version produces)."""

from __future__ import annotations

import codecs
import json
import re
import shutil
from pathlib import Path

import pytest

from auditor.cli import main
from auditor.engine import discover
from auditor.evidence import EXO_SPECS, SPECS, State
from auditor.exo_rest import ALLOWED_CMDLETS, PLAN
from auditor.snapshot import import_export_folder, load_snapshot, write_snapshot

from .conftest import audit

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "auditor" / "export_script.ps1"
RUNS = REPO / "tests" / "fixtures" / "export-script-run"
# Commands the script may call besides the allowlisted Get-* cmdlets: session, file and
# formatting helpers. None of them is an Exchange cmdlet, and none changes the tenant.
UTILITIES = frozenset(c.lower() for c in (
    "Join-Path", "Get-Location", "Get-Date", "New-Object", "ConvertTo-Json",
    "Get-Command", "Get-ConnectionInformation", "Where-Object", "Select-Object", "Test-Path",
    "Get-ChildItem", "New-Item", "Resolve-Path", "Get-Module", "Sort-Object", "Write-Progress",
    "ForEach-Object", "Write-Host"))
# Exchange cmdlets that read without being named Get-*: the audit log search (it only searches).
READ_ONLY_SEARCHES = frozenset({"search-unifiedauditlog"})
VERB_NOUN = re.compile(r"\b([A-Za-z]+-[A-Za-z]+)\b")


def code_of(script: str) -> str:
    """The script without comments and single-quoted (literal, never expanded) strings.

    Double-quoted strings stay: their ``$( )`` subexpressions run code.
    """
    script = re.sub(r"<#.*?#>", "", script, flags=re.DOTALL)
    out: list[str] = []
    quote: str | None = None
    index = 0
    while index < len(script):
        char = script[index]
        if quote == "'":
            if char == "'" and script[index + 1:index + 2] == "'":
                index += 2
                continue
            if char == "'":
                quote = None
                out.append("''")
        elif quote == '"':
            out.append(char)
            if char == "`":
                out.append(script[index + 1:index + 2])
                index += 1
            elif char == '"':
                quote = None
        elif char == "#":
            while index < len(script) and script[index] != "\n":
                index += 1
            continue
        else:
            if char in "'\"":
                quote = char
                if char == '"':
                    out.append(char)
            else:
                out.append(char)
        index += 1
    return "".join(out)


@pytest.fixture(scope="module")
def script() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def table(script: str) -> list[tuple[str, str, dict[str, str]]]:
    rows = re.findall(r"@\{ File = '([^']+)'; Cmdlet = '([^']+)'; Parameters = @\{([^}]*)\}", script)
    return [(f, c, dict(re.findall(r"(\w+) = '([^']*)'", p))) for f, c, p in rows]


def test_every_command_in_the_code_is_an_allowlisted_get_cmdlet_or_a_local_helper(script: str) -> None:
    code = code_of(script)
    commands = {m.lower() for m in VERB_NOUN.findall(code)}
    own = {m.lower() for m in re.findall(r"^function ([A-Za-z]+-[A-Za-z]+)", code, re.MULTILINE)}
    assert commands and own == {"convertto-exportobject", "get-failurestatus", "write-exportfile"}
    outside = commands - ALLOWED_CMDLETS - UTILITIES - READ_ONLY_SEARCHES - own
    assert not outside, f"the script calls commands outside the allowlist: {sorted(outside)}"
    for helper in UTILITIES:
        assert helper not in ALLOWED_CMDLETS


def test_the_parser_would_catch_a_write_cmdlet(script: str) -> None:
    tampered = script.replace("Write-Host \"Export written",
                              "Set-OrganizationConfig -RejectDirectSend $false\nWrite-Host \"x")
    commands = {m.lower() for m in VERB_NOUN.findall(code_of(tampered))}
    assert "set-organizationconfig" in commands - ALLOWED_CMDLETS - UTILITIES - READ_ONLY_SEARCHES


def test_the_parser_would_catch_the_audit_section_switching_auditing_off(script: str) -> None:
    """The one non-Get cmdlet allowed is the search itself, not its audit-log neighbours."""
    tampered = script.replace("$AuditFile = 'Search-UnifiedAuditLog'",
                              "Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $false\n"
                              "$AuditFile = 'Search-UnifiedAuditLog'")
    assert tampered != script
    commands = {m.lower() for m in VERB_NOUN.findall(code_of(tampered))}
    assert "set-adminauditlogconfig" in commands - ALLOWED_CMDLETS - UTILITIES - READ_ONLY_SEARCHES


def test_the_audit_log_is_searched_for_admin_operations_and_paged_completely(script: str) -> None:
    code = code_of(script)
    calls = re.findall(r"Search-UnifiedAuditLog [^\n]*", code)
    assert len(calls) == 1
    for part in ("-RecordType ExchangeAdmin", "-SessionId $sessionId", "-SessionCommand ReturnLargeSet",
                 "-ResultSize $AuditPageSize", "-StartDate $auditStart", "-EndDate $auditEnd"):
        assert part in calls[0]
    assert re.search(r"for \(\$page = 1; \$page -le \$maxPages; \$page\+\+\)", code)  # bounded
    assert "$AuditPageSize = 5000" in script and "$AuditSessionCap = 50000" in script
    assert "[int] $AuditDays = 30" in script and "ValidateRange(0, 180)" in script
    assert "$records.Count -lt $total" in code  # the cap hit: partial, with the reason
    assert "$AuditFile = 'Search-UnifiedAuditLog'" in script and "Search-UnifiedAuditLog" in SPECS
    assert SPECS["Search-UnifiedAuditLog"].folder != "exo"  # optional, like graph/ and mailbox/


def test_the_only_dynamic_call_runs_a_table_cmdlet_and_nothing_evaluates_text(script: str) -> None:
    code = code_of(script)
    assert re.findall(r"&\s*(\S+)", code) == ["$item.Cmdlet"]
    for banned in ("Invoke-Expression", "iex ", "Invoke-Command", "ScriptBlock]::Create", ".Invoke("):
        assert banned.lower() not in code.lower()


def test_the_table_is_the_collection_plan_file_for_file(script: str) -> None:
    rows = table(script)
    assert [f for f, _, _ in rows] == [spec.key for spec in EXO_SPECS]
    assert [(f, c, p) for f, c, p in rows] == [(c.key, c.cmdlet, dict(c.parameters)) for c in PLAN]
    assert "PerMailbox = $true" in script and "Get-InboxRule -Mailbox" in script


def test_json_is_written_depth_10_utf8_without_bom(script: str) -> None:
    code = code_of(script)
    conversions = re.findall(r"ConvertTo-Json[^\n]*", code)
    assert len(conversions) == 2 and all("-Depth 10" in c for c in conversions)
    assert "UTF8Encoding -ArgumentList $false" in code
    assert code.count("[System.IO.File]::WriteAllText(") == 2
    for writer in ("Out-File", "Set-Content", "Add-Content", ">>", " > "):
        assert writer not in code


def test_the_manifest_records_time_tenant_module_and_per_cmdlet_status(script: str) -> None:
    for key in ("collected_at", "tenant", "module_version", "cmdlets", "status", "error"):
        assert re.search(rf"\b{key}\s*=", script), key
    assert "'denied'" in script and "'partial'" in script and "'missing'" in script


def test_export_script_prints_the_shipped_file(capsys: pytest.CaptureFixture[str]) -> None:
    main(["export-script"])
    assert capsys.readouterr().out == SCRIPT.read_text(encoding="utf-8")


def test_the_script_is_package_data() -> None:
    setup = (REPO / "setup.cfg").read_text()
    assert re.search(r"^auditor = .*export_script\.ps1", setup, re.MULTILINE)


# --- sample runs ------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["ps51", "ps7"])
def test_a_run_imports_without_warnings_with_export_json_states(run: str) -> None:
    snapshot = import_export_folder(RUNS / run)
    manifest = json.loads((RUNS / run / "export.json").read_bytes())
    for item in snapshot.items:
        assert not item.warnings and not item.rejected, (item.key, item.warnings)
        if item.key not in {spec.key for spec in EXO_SPECS}:
            # Graph and mailbox evidence come from collect, never from the script: just absent.
            assert item.state is State.MISSING, item.key
            continue
        recorded = manifest["cmdlets"][item.key]
        assert item.state.value == recorded["status"]
        assert item.error == recorded["error"]
        if item.state is State.OK:
            assert item.objects == recorded["objects"]
    assert snapshot.created_at.isoformat().replace("+00:00", "Z") == manifest["collected_at"]


def test_the_51_run_has_51_shapes_and_no_bom() -> None:
    data = (RUNS / "ps51" / "Get-TransportRule.json").read_bytes()
    assert not data.startswith(codecs.BOM_UTF8) and b"\r\n" in data
    assert b'"WhenChanged":  "\\/Date(' in data


def test_the_51_run_marks_inbox_rules_denied_for_a_global_reader() -> None:
    snapshot = import_export_folder(RUNS / "ps51")
    inbox = snapshot.evidence.get("Get-InboxRule")
    assert inbox.state is State.DENIED and "not available in this session" in (inbox.reason or "")
    report = audit(RUNS / "ps51")
    needing = {c.id for c in discover().checks if "Get-InboxRule" in c.meta.requires}
    for finding in report.findings:
        assert finding.status.value != "error", finding
        if finding.check_id in needing:
            assert finding.status.value == "not_evaluated"


def test_the_7_run_has_iso_dates_and_an_error_item() -> None:
    data = (RUNS / "ps7" / "Get-TransportRule.json").read_text(encoding="utf-8")
    assert re.search(r'"WhenChanged": "\d{4}-\d\d-\d\dT[\d:.]+Z"', data)
    snapshot = import_export_folder(RUNS / "ps7")
    assert snapshot.evidence.get("Get-ApplicationAccessPolicy").state is State.ERROR
    assert snapshot.evidence.get("Get-InboxRule").state is State.OK


def test_the_51_run_saved_with_bom_and_integer_enums_audits_the_same(tmp_path: Path) -> None:
    """What 5.1 writes without the script (Out-File -Encoding utf8, no enum conversion)."""
    folder = tmp_path / "ps51-raw"
    shutil.copytree(RUNS / "ps51", folder)
    rules = json.loads((folder / "Get-TransportRule.json").read_text(encoding="utf-8"))
    for rule in rules:
        rule["State"] = {"Enabled": 0, "Disabled": 1}[rule["State"]]
        rule["Mode"] = {"Audit": 1, "AuditAndNotify": 2, "Enforce": 3}[rule["Mode"]]
    (folder / "Get-TransportRule.json").write_text(json.dumps(rules, indent=4), encoding="utf-8")
    connectors = json.loads((folder / "Get-InboundConnector.json").read_text(encoding="utf-8"))
    for connector in connectors:
        connector["ConnectorType"] = {"OnPremises": 1, "Partner": 2}[connector["ConnectorType"]]
    (folder / "Get-InboundConnector.json").write_text(json.dumps(connectors), encoding="utf-8")
    for path in folder.glob("*.json"):
        path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    raw = import_export_folder(folder)
    assert all(not i.warnings and not i.rejected for i in raw.items)

    def verdicts(path: Path) -> set[tuple[str, str, str]]:
        return {(f.check_id, f.status.value, f.resource) for f in audit(path).findings}

    assert verdicts(folder) == verdicts(RUNS / "ps51")


# --- export.json states in the importer -------------------------------------------------


def _export(folder: Path, files: dict[str, object], cmdlets: dict[str, object]) -> Path:
    folder.mkdir()
    for name, value in files.items():
        (folder / f"{name}.json").write_text(json.dumps(value))
    (folder / "export.json").write_text(json.dumps({"collected_at": "2026-01-02T03:04:05Z",
                                                    "cmdlets": cmdlets}))
    return folder


def test_recorded_states_override_and_survive_a_snapshot_round_trip(tmp_path: Path) -> None:
    folder = _export(tmp_path / "export", {
        "Get-TransportRule": [{"Name": "r", "State": "Enabled", "Mode": "Enforce", "Priority": 0}],
        "Get-Mailbox": [{"UserPrincipalName": "a@contoso.com"}],
        "Get-JournalRule": [{"Name": "j"}],
    }, {
        "Get-TransportRule": {"status": "ok"},
        "Get-Mailbox": {"status": "partial", "error": "page 3 failed"},
        "Get-JournalRule": {"status": "error", "error": "written but untrusted"},
        "Get-InboundConnector": {"status": "denied", "error": "403 Forbidden: needs Global Reader"},
        "Get-RemoteDomain": {"status": "ok"},
        "Get-NotInTheCatalogue": {"status": "denied"},
        "Get-AcceptedDomain": {"status": "bogus"},
    })
    snapshot = import_export_folder(folder)
    states = {i.key: (i.state, i.error) for i in snapshot.items}
    assert states["Get-TransportRule"] == (State.OK, None)
    assert states["Get-Mailbox"] == (State.PARTIAL, "page 3 failed")
    assert states["Get-JournalRule"] == (State.ERROR, "written but untrusted")
    assert states["Get-InboundConnector"] == (State.DENIED, "403 Forbidden: needs Global Reader")
    assert states["Get-RemoteDomain"][0] is State.MISSING
    assert "not in the export folder" in (states["Get-RemoteDomain"][1] or "")
    assert states["Get-AcceptedDomain"][0] is State.MISSING
    assert snapshot.evidence.get("Get-Mailbox").state is State.PARTIAL
    assert len(snapshot.evidence.get("Get-Mailbox")) == 1
    assert snapshot.evidence.get("Get-JournalRule").items == ()
    denied = next(i for i in snapshot.items if i.key == "Get-InboundConnector")
    assert denied.collected_at == "2026-01-02T03:04:05Z"
    write_snapshot(snapshot, tmp_path / "snap")
    loaded = load_snapshot(tmp_path / "snap")
    assert loaded.evidence.get("Get-InboundConnector").state is State.DENIED
    assert loaded.evidence.get("Get-InboundConnector").reason == "403 Forbidden: needs Global Reader"
    assert loaded.evidence.get("Get-Mailbox").state is State.PARTIAL


def test_a_folder_where_everything_was_denied_still_imports(tmp_path: Path) -> None:
    folder = _export(tmp_path / "export", {}, {spec.key: {"status": "denied", "error": "no role"}
                                               for spec in EXO_SPECS})
    snapshot = import_export_folder(folder)
    assert {i.state for i in snapshot.items if i.key in {s.key for s in EXO_SPECS}} == {State.DENIED}


def test_an_unreadable_export_json_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Get-TransportRule.json").write_text("[]")
    (folder / "export.json").write_text("{not json")
    snapshot = import_export_folder(folder)
    assert next(i for i in snapshot.items if i.key == "Get-TransportRule").state is State.OK
