"""Snapshots: import of an export folder, writing, loading and verifying (auditor.snapshot)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditor.cli import main
from auditor.errors import InputError, SnapshotError
from auditor.evidence import CATALOG, State
from auditor.snapshot import (
    MANIFEST,
    Snapshot,
    import_export_folder,
    load_snapshot,
    verify_snapshot,
    write_snapshot,
)
from tests.conftest import SAMPLES, audit, offline

# The samples whose names are catalogued evidence.
SAMPLE_KEYS = (
    "Get-TransportRule", "Get-InboundConnector", "Get-OutboundConnector", "Get-AcceptedDomain",
    "Get-RemoteDomain", "Get-OrganizationConfig", "Get-HostedConnectionFilterPolicy",
    "Get-HostedContentFilterPolicy", "Get-JournalRule", "Get-Mailbox", "Get-InboxRule",
    "Get-ManagementRoleAssignment", "Get-ApplicationAccessPolicy",
)
RULES = "exo/Get-TransportRule.json"

MakeExport = Callable[..., Path]


def sample_files() -> dict[str, bytes]:
    return {key: (SAMPLES / f"{key}.json").read_bytes() for key in SAMPLE_KEYS}


@pytest.fixture
def export(make_export: MakeExport) -> Path:
    return make_export(sample_files(), name="export")


@pytest.fixture
def stored(export: Path, tmp_path: Path) -> Path:
    out = tmp_path / "snapshot"
    write_snapshot(import_export_folder(export), out)
    return out


def run_cli(argv: list[str]) -> int:
    try:
        main(offline(argv))
    except SystemExit as exc:
        return 0 if exc.code is None else int(exc.code)
    return 0


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def entries(snapshot: Snapshot) -> dict[str, Any]:
    return {item.key: item for item in snapshot.items}


def finding_keys(path: Path) -> list[tuple[str, str, str, str]]:
    report = audit(path)
    return sorted((f.check_id, f.status.value, f.resource, f.fingerprint) for f in report.findings)


# --- import, write, verify ---------------------------------------------------------------


def test_import_write_verify_is_ok(stored: Path) -> None:
    result = verify_snapshot(stored)
    assert result.ok
    assert result.checked == len(SAMPLE_KEYS)


def test_written_snapshot_holds_the_exact_bytes(export: Path, stored: Path) -> None:
    for key in SAMPLE_KEYS:
        assert (stored / "exo" / f"{key}.json").read_bytes() == (export / f"{key}.json").read_bytes()


def test_cli_verify_of_an_untouched_snapshot_exits_0(
    stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["verify", str(stored)]) == 0
    assert f"ok: {len(SAMPLE_KEYS)} files match the manifest" in capsys.readouterr().out


def test_verify_catches_a_one_byte_change(
    stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = stored / RULES
    data = bytearray(target.read_bytes())
    index = data.index(b"Gateway already filtered")
    data[index] = ord("g")
    target.write_bytes(bytes(data))
    code = run_cli(["verify", str(stored)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"changed: {RULES}" in out
    assert "ok:" not in out


def test_verify_reports_a_deleted_file_as_missing(
    stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (stored / "exo" / "Get-Mailbox.json").unlink()
    code = run_cli(["verify", str(stored)])
    assert code == 1
    assert "missing: exo/Get-Mailbox.json" in capsys.readouterr().out


def test_verify_reports_an_added_file(stored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (stored / "exo" / "Get-TransportConfig.json").write_text("[]")
    code = run_cli(["verify", str(stored)])
    assert code == 1
    assert "added: exo/Get-TransportConfig.json" in capsys.readouterr().out


def test_verify_reports_an_edited_manifest_field(
    stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = read_manifest(stored)
    manifest["tenant"]["organization"] = "fabrikam.onmicrosoft.com"
    (stored / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    result = verify_snapshot(stored)
    assert (result.changed, result.missing, result.added) == ((), (), ())
    assert len(result.problems) == 1
    assert "digest" in result.problems[0]
    assert run_cli(["verify", str(stored)]) == 1
    assert "manifest: " in capsys.readouterr().out


def test_tampered_evidence_is_never_used_by_an_audit(stored: Path) -> None:
    target = stored / RULES
    target.write_bytes(target.read_bytes().replace(b'"SetSCL": "-1"', b'"SetSCL": "+0"', 1))
    snapshot = load_snapshot(stored)
    rules = snapshot.evidence.get("Get-TransportRule")
    assert rules.state is State.ERROR
    assert "does not match its manifest hash" in (rules.reason or "")
    findings = [f for f in audit(stored).findings if f.check_id == "RULE-001"]
    assert findings
    assert {f.status.value for f in findings} == {"not_evaluated"}


# --- zip snapshots -----------------------------------------------------------------------


def test_zip_snapshot_round_trip(export: Path, tmp_path: Path) -> None:
    imported = import_export_folder(export)
    archive = tmp_path / "snapshot.zip"
    write_snapshot(imported, archive)
    loaded = load_snapshot(archive)
    assert loaded.snapshot_id == imported.snapshot_id
    assert loaded.blobs == imported.blobs
    assert [(i.key, i.state) for i in loaded.items] == [(i.key, i.state) for i in imported.items]
    assert verify_snapshot(archive).ok


def test_zip_snapshot_refuses_to_overwrite(export: Path, tmp_path: Path) -> None:
    archive = tmp_path / "snapshot.zip"
    archive.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        write_snapshot(import_export_folder(export), archive)
    assert archive.read_bytes() == b"precious"


# --- auditing a snapshot is auditing its export ------------------------------------------


def test_audit_of_a_snapshot_folder_matches_the_export(export: Path, stored: Path) -> None:
    expected = finding_keys(export)
    assert expected
    assert finding_keys(stored) == expected


def test_audit_of_a_zip_snapshot_matches_the_export(export: Path, tmp_path: Path) -> None:
    archive = tmp_path / "snapshot.zip"
    write_snapshot(import_export_folder(export), archive)
    assert finding_keys(archive) == finding_keys(export)


def test_audit_of_a_snapshot_matches_the_export_with_broken_and_partial_evidence(
    make_export: MakeExport, tmp_path: Path
) -> None:
    files: dict[str, Any] = dict(sample_files())
    files["Get-TransportRule"] = files["Get-TransportRule"][:5000]
    files["Get-Mailbox"] = (SAMPLES / "_response_truncated_page.json").read_bytes()
    folder = make_export(files)
    out = tmp_path / "snap"
    write_snapshot(import_export_folder(folder), out)
    loaded = load_snapshot(out)
    assert loaded.evidence.get("Get-TransportRule").state is State.ERROR
    assert loaded.evidence.get("Get-Mailbox").state is State.PARTIAL
    assert finding_keys(out) == finding_keys(folder)


# --- what an import keeps ----------------------------------------------------------------


def test_unknown_files_are_kept_under_extra_and_listed(
    make_export: MakeExport, tmp_path: Path
) -> None:
    folder = make_export({"Get-TransportRule": sample_files()["Get-TransportRule"]})
    (folder / "README.txt").write_text("collected by the helpdesk")
    (folder / "logs").mkdir()
    (folder / "logs" / "run.log").write_text("ok")
    snapshot = import_export_folder(folder)
    assert sorted(e.path for e in snapshot.extras) == ["extra/README.txt", "extra/logs/run.log"]
    out = tmp_path / "snap"
    write_snapshot(snapshot, out)
    assert (out / "extra" / "README.txt").read_text() == "collected by the helpdesk"
    assert sorted(e["path"] for e in read_manifest(out)["extra"]) == [
        "extra/README.txt", "extra/logs/run.log"]
    assert verify_snapshot(out).ok


def test_evidence_named_file_in_a_subfolder_is_an_extra(make_export: MakeExport) -> None:
    folder = make_export({"Get-AcceptedDomain": sample_files()["Get-AcceptedDomain"]})
    (folder / "old").mkdir()
    (folder / "old" / "Get-TransportRule.json").write_bytes(b"[]")
    snapshot = import_export_folder(folder)
    assert [e.path for e in snapshot.extras] == ["extra/old/Get-TransportRule.json"]
    assert snapshot.evidence.get("Get-TransportRule").state is State.MISSING


def test_every_catalogued_file_absent_is_missing_in_the_manifest(
    make_export: MakeExport, tmp_path: Path
) -> None:
    folder = make_export({"Get-TransportRule": sample_files()["Get-TransportRule"]})
    out = tmp_path / "snap"
    write_snapshot(import_export_folder(folder), out)
    states = {e["key"]: e["state"] for e in read_manifest(out)["evidence"]}
    assert set(states) == {spec.key for spec in CATALOG}
    assert states.pop("Get-TransportRule") == "ok"
    assert set(states.values()) == {"missing"}


def test_file_name_case_does_not_matter(make_export: MakeExport) -> None:
    folder = make_export({})
    (folder / "get-transportrule.JSON").write_bytes(sample_files()["Get-TransportRule"])
    snapshot = import_export_folder(folder)
    item = entries(snapshot)["Get-TransportRule"]
    assert (item.state, item.path, item.objects) == (State.OK, RULES, 6)
    assert snapshot.extras == ()


def test_two_files_differing_only_in_case_are_refused(make_export: MakeExport) -> None:
    folder = make_export({"Get-TransportRule": sample_files()["Get-TransportRule"]})
    (folder / "get-transportrule.json").write_bytes(b"[]")
    with pytest.raises(InputError, match="differ only in case"):
        import_export_folder(folder)


def test_file_over_the_size_limit_is_an_error_and_others_are_parsed(export: Path) -> None:
    size = (export / "Get-TransportRule.json").stat().st_size
    limit = 10_000
    assert size > limit > max((export / f"{k}.json").stat().st_size
                              for k in SAMPLE_KEYS if k != "Get-TransportRule")
    snapshot = import_export_folder(export, max_file_bytes=limit)
    rules = snapshot.evidence.get("Get-TransportRule")
    assert rules.state is State.ERROR
    assert f"{size} bytes is above the {limit}-byte limit" in (rules.reason or "")
    assert entries(snapshot)["Get-TransportRule"].state is State.ERROR
    connectors = snapshot.evidence.get("Get-InboundConnector")
    assert (connectors.state, len(connectors)) == (State.OK, 2)


def test_oversized_file_stays_an_error_after_a_round_trip(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    write_snapshot(import_export_folder(export, max_file_bytes=10_000), out)
    loaded = load_snapshot(out)
    rules = loaded.evidence.get("Get-TransportRule")
    assert rules.state is State.ERROR
    assert "10000-byte limit" in (rules.reason or "")
    assert verify_snapshot(out).ok


# --- refusing bad output and bad snapshots -----------------------------------------------


def test_refuses_to_write_into_a_non_empty_folder(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        write_snapshot(import_export_folder(export), out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_writes_into_an_existing_empty_folder(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    write_snapshot(import_export_folder(export), out)
    assert verify_snapshot(out).ok


def test_cli_import_into_a_non_empty_folder_exits_3(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = run_cli(["import", str(export), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3
    assert "not empty" in err
    assert "Traceback" not in err


def test_unsupported_schema_version_is_refused_on_load(stored: Path) -> None:
    manifest = read_manifest(stored)
    manifest["schema_version"] = 99
    (stored / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(SnapshotError, match="schema_version 99 is not supported"):
        load_snapshot(stored)


def test_cli_audit_of_an_unsupported_schema_version_exits_3(
    stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = read_manifest(stored)
    manifest["schema_version"] = 2
    (stored / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    code = run_cli(["audit", str(stored)])
    err = capsys.readouterr().err
    assert code == 3
    assert "schema_version 2 is not supported (this tool reads 1)" in err
    assert "Traceback" not in err


MALFORMED = {
    "tenant-is-a-list": lambda m: m.update(tenant=["contoso"]),
    "source-is-text": lambda m: m.update(source="export-folder"),
    "extra-size-is-text": lambda m: m.update(
        extra=[{"path": "extra/a.txt", "sha256": "0" * 64, "size": "big"}]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_cli_audit_of_a_malformed_manifest_exits_3(
    case: str, stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = read_manifest(stored)
    MALFORMED[case](manifest)
    (stored / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    code = run_cli(["audit", str(stored)])
    err = capsys.readouterr().err
    assert "internal error" not in err
    assert code == 3


def test_manifest_path_outside_the_snapshot_is_refused(stored: Path) -> None:
    manifest = read_manifest(stored)
    entry = next(e for e in manifest["evidence"] if e["key"] == "Get-TransportRule")
    entry["path"] = "../export/Get-TransportRule.json"
    (stored / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(SnapshotError, match="outside the snapshot"):
        load_snapshot(stored)


def test_cli_verify_of_an_export_folder_exits_3(
    export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["verify", str(export)]) == 3
    assert "not a snapshot" in capsys.readouterr().err


def test_an_oversized_evidence_file_is_kept_and_hashed_but_not_read(tmp_path: Path) -> None:
    from auditor.snapshot import import_export_folder, verify_snapshot, write_snapshot

    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Get-TransportRule.json").write_text('[{"Name": "' + "x" * 5000 + '"}]')
    (folder / "notes.bin").write_bytes(b"\0" * 5000)
    snapshot = import_export_folder(folder, max_file_bytes=1000)
    item = next(i for i in snapshot.items if i.key == "Get-TransportRule")
    assert item.state.value == "error" and "1000-byte limit" in (item.error or "")
    assert item.sha256 and item.path == "exo/Get-TransportRule.json"
    out = tmp_path / "snap"
    write_snapshot(snapshot, out)
    assert (out / "exo" / "Get-TransportRule.json").stat().st_size > 5000
    assert (out / "extra" / "notes.bin").stat().st_size == 5000
    assert verify_snapshot(out).ok
