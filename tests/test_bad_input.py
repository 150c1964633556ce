"""Bad input never crashes the tool and never turns into a pass.

Broken evidence makes the checks that require it *not evaluated* with the reason, while the
other checks still run; bad paths exit 3 with a message. Tenant text that is hostile to the
report formats or the terminal is shown, never executed.
"""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditor.cli import main
from tests.conftest import SAMPLES, offline, rule

MAILFLOW = Path(sys.executable).with_name("mailflow-audit")
SAMPLE_KEYS = (
    "Get-TransportRule", "Get-InboundConnector", "Get-OutboundConnector", "Get-AcceptedDomain",
    "Get-RemoteDomain", "Get-OrganizationConfig", "Get-HostedConnectionFilterPolicy",
    "Get-HostedContentFilterPolicy", "Get-JournalRule", "Get-Mailbox", "Get-InboxRule",
    "Get-ManagementRoleAssignment", "Get-ApplicationAccessPolicy",
)
# Which built-in checks require which evidence.
REQUIRED_BY = {
    "Get-TransportRule": {"RULE-001", "RULE-002"},
    "Get-InboundConnector": {"CONN-001", "CONN-002", "ORG-001"},
}
ALL_CHECKS = {"CONN-001", "CONN-002", "ORG-001", "POL-001", "RULE-001", "RULE-002"}
EVALUATED = {"pass", "fail", "warn"}

MakeExport = Callable[..., Path]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.out)


def sample(key: str) -> bytes:
    return (SAMPLES / f"{key}.json").read_bytes()


def sample_files() -> dict[str, bytes]:
    return {key: sample(key) for key in SAMPLE_KEYS}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Run:
    code = 0
    try:
        main(offline(argv))
    except SystemExit as exc:
        code = 0 if exc.code is None else int(exc.code)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def run_process(*args: str) -> Run:
    done = subprocess.run([str(MAILFLOW), *offline(list(args))], capture_output=True, text=True,
                          encoding="utf-8", check=False)
    return Run(done.returncode, done.stdout, done.stderr)


def statuses_by_check(report: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["check_id"], set()).add(finding["status"])
    return found


def outside_fences(markdown: str) -> str:
    """The Markdown text outside fenced code blocks (whose content is never rendered as HTML)."""
    kept: list[str] = []
    fence = ""
    for line in markdown.splitlines():
        stripped = line.strip()
        if fence:
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = ""
            continue
        if stripped.startswith(("```", "~~~")):
            marker = stripped[0]
            fence = marker * (len(stripped) - len(stripped.lstrip(marker)))
            continue
        kept.append(line)
    return "\n".join(kept)


def evidence_entry(report: dict[str, Any], key: str) -> dict[str, Any]:
    return next(e for e in report["snapshot"]["evidence"] if e["key"] == key)


# --- broken evidence files ---------------------------------------------------------------


def _truncated() -> bytes:
    data = sample("Get-TransportRule")
    return data[: len(data) * 2 // 3]


def _utf16_with_lone_surrogate() -> bytes:
    text = sample("Get-TransportRule").decode("utf-8")
    encoded = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    marker = "Gateway already filtered".encode("utf-16-le")
    at = encoded.index(marker)
    return encoded[:at] + b"\x00\xd8" + encoded[at:]


def _neither_utf8_nor_1252() -> bytes:
    return sample("Get-TransportRule").replace(b"Gateway already", b"Gateway \x81\x8d already", 1)


def _depth_limited() -> bytes:
    """What `Get-InboundConnector | ConvertTo-Json -Depth 1` writes: lists replaced by their
    type name."""
    body = json.loads(sample("Get-InboundConnector"))
    objects = []
    for item in body["value"]:
        objects.append({
            key: ("Microsoft.Exchange.Data.MultiValuedProperty`1[System.String]"
                  if isinstance(value, list) else value)
            for key, value in item.items() if "@" not in key
        })
    return json.dumps(objects, indent=2).encode()


@dataclass(frozen=True)
class Broken:
    key: str
    data: Callable[[], bytes]
    reason: str


BROKEN = {
    "truncated-json": Broken("Get-TransportRule", _truncated, "not valid JSON at line"),
    "invalid-utf16": Broken("Get-TransportRule", _utf16_with_lone_surrogate,
                            "invalid utf-16-le at byte"),
    "not-utf8-nor-1252": Broken("Get-TransportRule", _neither_utf8_nor_1252,
                                "not valid UTF-8"),
    "depth-limited": Broken("Get-InboundConnector", _depth_limited, "-Depth 10"),
    "error-body": Broken("Get-TransportRule",
                         lambda: (SAMPLES / "_error_cmdlet_not_found_object.json").read_bytes(),
                         "couldn't be found"),
    "empty-file": Broken("Get-TransportRule", lambda: b"", "the file is empty"),
}


@pytest.fixture(params=sorted(BROKEN))
def broken(request: pytest.FixtureRequest, make_export: MakeExport) -> tuple[Broken, Path]:
    case = BROKEN[request.param]
    files = sample_files()
    files[case.key] = case.data()
    return case, make_export(files)


def test_broken_file_audits_without_a_traceback(
    broken: tuple[Broken, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = broken
    run = run_cli(["audit", str(folder), "--format", "json"], capsys)
    assert run.code == 0
    assert "Traceback" not in run.err


def test_broken_file_is_evidence_in_error_with_the_reason(
    broken: tuple[Broken, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    case, folder = broken
    entry = evidence_entry(run_cli(["audit", str(folder), "--format", "json"], capsys).report,
                           case.key)
    assert entry["state"] == "error"
    assert case.reason in entry["error"]


def test_checks_needing_the_broken_file_are_not_evaluated_with_the_reason(
    broken: tuple[Broken, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    case, folder = broken
    report = run_cli(["audit", str(folder), "--format", "json"], capsys).report
    needing = [f for f in report["findings"] if f["check_id"] in REQUIRED_BY[case.key]]
    assert {f["check_id"] for f in needing} == REQUIRED_BY[case.key]
    for finding in needing:
        assert finding["status"] == "not_evaluated"
        assert f"{case.key} is error" in finding["message"]
        assert case.reason in finding["message"]


def test_checks_not_needing_the_broken_file_still_run(
    broken: tuple[Broken, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    case, folder = broken
    found = statuses_by_check(run_cli(["audit", str(folder), "--format", "json"], capsys).report)
    others = ALL_CHECKS - REQUIRED_BY[case.key]
    assert set(found) >= others
    for check_id in others:
        assert found[check_id] & EVALUATED, (check_id, found[check_id])


def test_broken_file_fails_an_incomplete_audit_with_exit_2(
    broken: tuple[Broken, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = broken
    run = run_cli(["audit", str(folder), "--format", "json", "--fail-on-incomplete"], capsys)
    assert run.code == 2


def test_windows_1252_file_is_audited_with_a_warning(
    make_export: MakeExport, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.loads(sample("Get-TransportRule"))
    body["value"][0]["Name"] = "Règle – passerelle"
    files = sample_files()
    files["Get-TransportRule"] = json.dumps(body, ensure_ascii=False).encode("cp1252")
    report = run_cli(["audit", str(make_export(files)), "--format", "json"], capsys).report
    entry = evidence_entry(report, "Get-TransportRule")
    assert entry["state"] == "ok"
    assert any("Windows-1252" in w for w in entry["warnings"])
    resources = {f["resource"] for f in report["findings"] if f["check_id"] == "RULE-001"}
    assert "transport rule Règle – passerelle" in resources


def test_out_of_range_date_does_not_stop_the_audit(
    make_export: MakeExport, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sample_files()
    files["Get-TransportRule"] = json.dumps([
        rule("Never expires", SetSCL=-1, HeaderContainsMessageHeader="X-Scanned",
             HeaderContainsWords=["yes"], ExpiryDate="/Date(253402300799999+0100)/"),
    ]).encode()
    run = run_cli(["audit", str(make_export(files)), "--format", "json"], capsys)
    assert "internal error" not in run.err
    assert run.code == 0
    assert statuses_by_check(run.report)["POL-001"] & EVALUATED


def test_partial_page_is_not_evaluated_for_the_uncollected_objects(
    make_export: MakeExport, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.loads(sample("Get-TransportRule"))
    body["@odata.nextLink"] = "https://outlook.office365.com/adminapi/beta/x/InvokeCommand?$skiptoken=1"
    files = sample_files()
    files["Get-TransportRule"] = json.dumps(body).encode()
    report = run_cli(["audit", str(make_export(files)), "--format", "json"], capsys).report
    assert evidence_entry(report, "Get-TransportRule")["state"] == "partial"
    for check_id in ("RULE-001", "RULE-002"):
        partial = [f for f in report["findings"]
                   if f["check_id"] == check_id and f["resource"] == "Get-TransportRule"]
        assert [f["status"] for f in partial] == ["not_evaluated"]
        assert "only part of the results" in partial[0]["message"]


def test_unreadable_object_is_not_evaluated_and_others_are_checked(
    make_export: MakeExport, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sample_files()
    files["Get-TransportRule"] = json.dumps([
        rule("Bad SCL", SetSCL="minus one", HeaderContainsMessageHeader="X-Scanned",
             HeaderContainsWords=["yes"]),
        rule("Header bypass", SetSCL=-1, HeaderContainsMessageHeader="X-Scanned",
             HeaderContainsWords=["yes"]),
    ]).encode()
    report = run_cli(["audit", str(make_export(files)), "--format", "json"], capsys).report
    rule_findings = {(f["resource"], f["status"]) for f in report["findings"]
                     if f["check_id"] == "RULE-001"}
    assert ("Bad SCL", "not_evaluated") in rule_findings
    assert ("transport rule Header bypass", "fail") in rule_findings
    assert not any(status == "pass" and "Bad SCL" in resource
                   for resource, status in rule_findings)


def test_oversized_file_is_not_evaluated_naming_the_limit(
    make_export: MakeExport, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_export(sample_files())
    run = run_cli(["audit", str(folder), "--format", "json", "--max-file-size", "10000"], capsys)
    found = statuses_by_check(run.report)
    assert found["RULE-001"] == {"not_evaluated"}
    assert "10000-byte limit" in evidence_entry(run.report, "Get-TransportRule")["error"]
    assert found["POL-001"] & EVALUATED


# --- bad paths ---------------------------------------------------------------------------


def test_empty_folder_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    run = run_cli(["audit", str(folder)], capsys)
    assert run.code == 3
    assert "the folder is empty" in run.err
    assert "Traceback" not in run.err


def test_folder_without_export_files_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing here")
    run = run_cli(["audit", str(folder)], capsys)
    assert run.code == 3
    assert "no export file found" in run.err


def test_path_that_does_not_exist_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli(["audit", str(tmp_path / "nowhere")], capsys)
    assert run.code == 3
    assert "no such file or folder" in run.err
    assert "Traceback" not in run.err


def test_file_instead_of_a_folder_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "Get-TransportRule.json"
    target.write_bytes(sample("Get-TransportRule"))
    run = run_cli(["audit", str(target)], capsys)
    assert run.code == 3
    assert "not a folder" in run.err
    assert "Traceback" not in run.err


def test_import_of_a_missing_folder_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli(["import", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s")], capsys)
    assert run.code == 3
    assert "no such folder" in run.err
    assert not (tmp_path / "s").exists()


def test_verify_of_a_path_that_does_not_exist_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli(["verify", str(tmp_path / "nowhere")], capsys)
    assert run.code == 3
    assert "Traceback" not in run.err


def test_corrupt_zip_snapshot_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "snapshot.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    run = run_cli(["audit", str(archive)], capsys)
    assert run.code == 3
    assert "Traceback" not in run.err


HOSTILE_MANIFEST = {
    "evidence-key": lambda m: m["evidence"].append(
        {"key": "<script>alert(1)</script>", "state": "missing", "error": "not collected"}),
    "object-count": lambda m: m["evidence"][0].update(objects="<script>alert(2)</script>"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFEST))
def test_hostile_snapshot_manifest_cannot_inject_html_into_markdown(
    case: str, make_export: MakeExport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = tmp_path / "snapshot"
    assert run_cli(["import", str(make_export(sample_files())), "--out", str(snapshot)],
                   capsys).code == 0
    manifest = json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))
    HOSTILE_MANIFEST[case](manifest)
    (snapshot / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    out = tmp_path / "report"
    run = run_cli(["audit", str(snapshot), "--out", str(out)], capsys)
    if run.code == 3:  # a manifest value of the wrong type is refused with a clear message
        assert run.err.startswith("mailflow-audit: error: manifest") and "Traceback" not in run.err
        return
    assert run.code == 0
    assert "<script" not in outside_fences((out / "report.md").read_text(encoding="utf-8"))


# --- a 200 MB export ---------------------------------------------------------------------

BIG_BYTES = 200 * 1024 * 1024


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """An export folder whose Get-Mailbox.json is a valid REST body of about 200 MB."""
    folder = tmp_path_factory.mktemp("big") / "export"
    folder.mkdir()
    for key in SAMPLE_KEYS:
        if key != "Get-Mailbox":
            (folder / f"{key}.json").write_bytes(sample(key))
    body = json.loads(sample("Get-Mailbox"))
    template = body["value"][0]
    head = {k: v for k, v in body.items() if k != "value"}
    count = 0
    with (folder / "Get-Mailbox.json").open("w", encoding="utf-8") as out:
        out.write(json.dumps(head)[:-1] + ', "value": [\n')
        written = 0
        while written < BIG_BYTES:
            chunk = []
            for _ in range(1000):
                user = f"user{count:07d}"
                item = dict(template, UserPrincipalName=f"{user}@contoso.com",
                            PrimarySmtpAddress=f"{user}@contoso.com", DisplayName=f"User {count}",
                            EmailAddresses=[f"SMTP:{user}@contoso.com",
                                            f"smtp:{user}@contoso.onmicrosoft.com"])
                chunk.append(json.dumps(item))
                count += 1
            text = (",\n" if written else "") + ",\n".join(chunk)
            out.write(text)
            written += len(text)
        out.write("\n]}\n")
    size = (folder / "Get-Mailbox.json").stat().st_size
    assert size >= BIG_BYTES
    return folder, count


@pytest.mark.slow
def test_200_mb_export_audits(big_export: tuple[Path, int]) -> None:
    folder, count = big_export
    run = run_process("audit", str(folder), "--format", "json")
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    report = json.loads(run.out)
    mailbox = evidence_entry(report, "Get-Mailbox")
    assert (mailbox["state"], mailbox["objects"], mailbox["rejected"]) == ("ok", count, 0)
    assert statuses_by_check(report)["RULE-001"] & EVALUATED


@pytest.mark.slow
def test_200_mb_export_imports(big_export: tuple[Path, int], tmp_path: Path) -> None:
    folder, count = big_export
    out = tmp_path / "snapshot"
    run = run_process("import", str(folder), "--out", str(out))
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    mailbox = next(e for e in manifest["evidence"] if e["key"] == "Get-Mailbox")
    assert (mailbox["state"], mailbox["objects"]) == ("ok", count)
    assert mailbox["size"] == (folder / "Get-Mailbox.json").stat().st_size


@pytest.mark.slow
def test_200_mb_export_over_the_size_limit_is_an_evidence_error(
    big_export: tuple[Path, int],
) -> None:
    folder, _ = big_export
    run = run_process("audit", str(folder), "--format", "json", "--max-file-size", "1000000")
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    report = json.loads(run.out)
    mailbox = evidence_entry(report, "Get-Mailbox")
    assert mailbox["state"] == "error"
    assert "1000000-byte limit" in mailbox["error"]
    assert "--max-file-size" in mailbox["error"]
    found = statuses_by_check(report)
    for check_id in ALL_CHECKS:
        assert found[check_id] & EVALUATED, (check_id, found[check_id])


# --- hostile tenant text -----------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
TEMPLATE = "{{ 7*7 }}{% raw %}"
NEWLINES = "first line\nsecond line\r\n| injected | row |"
BIDI = "Invoice\u202egpj.exe\u200b\u200d"
ANSI = "\x1b[31mred\x1b[0m rule"
HOSTILE = (SCRIPT, TEMPLATE, NEWLINES, BIDI, ANSI)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """`audit --out` of a tenant whose SCL -1 transport rules have hostile names."""
    base = tmp_path_factory.mktemp("hostile")
    folder = base / "export"
    folder.mkdir()
    for key in SAMPLE_KEYS:
        (folder / f"{key}.json").write_bytes(sample(key))
    rules = [rule(name, Priority=i, SetSCL=-1, HeaderContainsMessageHeader="X-Scanned",
                  HeaderContainsWords=["yes"], Comments=name)
             for i, name in enumerate(HOSTILE)]
    (folder / "Get-TransportRule.json").write_text(json.dumps(rules), encoding="utf-8")
    out = base / "report"
    run = run_process("audit", str(folder), "--out", str(out))
    assert run.code == 0, run.err
    return out, run


def test_hostile_names_audit_without_a_traceback(hostile: tuple[Path, Run]) -> None:
    out, run = hostile
    assert "Traceback" not in run.err
    assert {p.name for p in out.iterdir()} == {"report.html", "report.md", "report.json"}


def test_html_report_has_no_unescaped_script_tag(hostile: tuple[Path, Run]) -> None:
    html = (hostile[0] / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "transport rule &lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_html_report_keeps_template_syntax_literal(hostile: tuple[Path, Run]) -> None:
    html = (hostile[0] / "report.html").read_text(encoding="utf-8")
    assert f"transport rule {TEMPLATE}" in html
    assert "transport rule 49" not in html


def test_html_report_shows_bidi_and_zero_width_characters_visibly(
    hostile: tuple[Path, Run],
) -> None:
    html = (hostile[0] / "report.html").read_text(encoding="utf-8")
    for char in ("\u202e", "\u200b", "\u200d"):
        assert char not in html
    assert "Invoice&lt;U+202E&gt;gpj.exe&lt;U+200B&gt;&lt;U+200D&gt;" in html


def test_html_report_shows_the_escape_character_visibly(hostile: tuple[Path, Run]) -> None:
    html = (hostile[0] / "report.html").read_text(encoding="utf-8")
    assert "\x1b" not in html
    assert "&lt;U+001B&gt;[31mred" in html


def test_markdown_report_has_no_raw_script_tag(hostile: tuple[Path, Run]) -> None:
    markdown = outside_fences((hostile[0] / "report.md").read_text(encoding="utf-8"))
    assert "## Evidence" in markdown  # the fence filter kept the rest of the report
    assert "<script" not in markdown.lower()
    assert "&lt;script&gt;" in markdown


def test_markdown_report_keeps_newlines_out_of_table_rows(hostile: tuple[Path, Run]) -> None:
    markdown = outside_fences((hostile[0] / "report.md").read_text(encoding="utf-8"))
    assert not any(line.startswith(("second line", "| injected"))
                   for line in markdown.splitlines())


def test_markdown_report_has_no_bidi_or_escape_characters(hostile: tuple[Path, Run]) -> None:
    markdown = (hostile[0] / "report.md").read_text(encoding="utf-8")
    for char in ("\u202e", "\u200b", "\u200d", "\x1b"):
        assert char not in markdown


def test_json_report_keeps_the_exact_names(hostile: tuple[Path, Run]) -> None:
    report = json.loads((hostile[0] / "report.json").read_text(encoding="utf-8"))
    resources = {f["resource"] for f in report["findings"] if f["check_id"] == "RULE-001"}
    assert {f"transport rule {name}" for name in HOSTILE} <= resources


def test_hostile_rules_are_reported_as_failing(hostile: tuple[Path, Run]) -> None:
    report = json.loads((hostile[0] / "report.json").read_text(encoding="utf-8"))
    failed = {f["resource"] for f in report["findings"]
              if f["check_id"] == "RULE-001" and f["status"] == "fail"}
    assert failed == {f"transport rule {name}" for name in HOSTILE}


def test_terminal_output_has_no_escape_or_bidi_characters(hostile: tuple[Path, Run]) -> None:
    _, run = hostile
    terminal = run.out + run.err
    for char in ("\x1b", "\u202e", "\u200b", "\r"):
        assert char not in terminal


def test_terminal_output_shows_the_escape_character_visibly(hostile: tuple[Path, Run]) -> None:
    _, run = hostile
    # click strips ANSI sequences itself when not on a terminal; the tool must mark them first.
    assert "transport rule <U+001B>[31mred<U+001B>[0m rule" in run.err


def test_terminal_output_keeps_each_finding_on_one_line(hostile: tuple[Path, Run]) -> None:
    _, run = hostile
    assert not any(line.startswith(("second line", "| injected")) for line in run.err.splitlines())
