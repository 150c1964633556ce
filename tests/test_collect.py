"""`mailflow-audit collect` end to end against the local identity platform and admin API."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.cli_collect import TerminalProgress
from auditor.engine import discover
from auditor.evidence import EXO_SPECS, State
from auditor.exo_rest import PLAN, CmdletResult
from auditor.snapshot import load_snapshot, verify_snapshot
from tests.fakeexo import CLIENT_ID, DEMO, TENANT_DOMAIN, TENANT_ID, FakeExo, Fault, self_signed

from .conftest import audit
from .conftest import run_cli as run

SECRET = "mfa-CANARY-7Kq~secret-value-do-not-leak"


@pytest.fixture
def fake() -> Iterator[FakeExo]:
    with FakeExo(secret=SECRET) as server:
        yield server


def collect_args(fake: FakeExo, out: Path, *extra: str) -> list[str]:
    return ["collect", "--tenant", TENANT_DOMAIN, "--client-id", CLIENT_ID, "--out", str(out),
            "--authority-host", fake.url, "--admin-api", fake.url, "--no-dns", "--backoff", "0.01",
            *extra]


def test_collect_with_azure_identity_variables_writes_a_snapshot_that_audits_like_the_export(
        fake: FakeExo, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT_DOMAIN)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    out = tmp_path / "snap"
    code, stdout, stderr = run(["collect", "--out", str(out), "--authority-host", fake.url,
                                "--admin-api", fake.url, "--no-dns", "--no-graph"], capsys)
    assert code == 0, stderr
    assert stdout.startswith("snapshot ") and str(out) in stdout
    assert "ok       Get-TransportRule" in stderr  # plain lines when stderr is not a terminal
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tenant"]["tenant_id"] == TENANT_ID
    assert manifest["source"] == {"kind": "admin-api", "host": fake.url, "auth": "client secret",
                                  "client_id": CLIENT_ID}
    rules = next(e for e in manifest["evidence"] if e["key"] == "Get-TransportRule")
    assert rules["source"] == "admin API InvokeCommand Get-TransportRule -ResultSize Unlimited"
    assert rules["collected_at"] == manifest["created_at"]
    assert verify_snapshot(out).ok

    # Compared: the checks that read only what the admin API serves (the demo also has DNS and
    # Graph evidence, which this collection skipped).
    admin_api = {spec.key for spec in EXO_SPECS}
    other_checks = {c.id for c in discover().checks
                    if not set(c.meta.requires + c.meta.uses) <= admin_api}

    def verdicts(path: Path) -> set[tuple[str, str, str]]:
        return {(f.check_id, f.status.value, f.resource) for f in audit(path).findings
                if f.check_id not in other_checks}

    live, exported = verdicts(out), verdicts(DEMO)
    assert live == exported


def test_collect_with_a_certificate_into_a_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    certificate, der = self_signed(tmp_path)
    with FakeExo(certificate_der=der) as fake:
        out = tmp_path / "snap.zip"
        code, _, stderr = run(collect_args(fake, out, "--certificate", str(certificate)), capsys)
    assert code == 0, stderr
    snapshot = load_snapshot(out)
    assert snapshot.source["auth"] == "certificate"
    assert snapshot.evidence.get("Get-InboundConnector").state.value == "ok"


def test_a_denied_item_is_marked_with_the_missing_role_and_its_checks_are_not_evaluated(
        fake: FakeExo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.denied = {"Get-InboundConnector"}
    out = tmp_path / "snap"
    code, _, stderr = run(collect_args(fake, out, "--client-secret", SECRET), capsys)
    assert code == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(e for e in manifest["evidence"] if e["key"] == "Get-InboundConnector")
    assert entry["state"] == "denied" and entry["path"] is None
    assert "Exchange.ManageAsApp" in entry["error"] and "Global Reader" in entry["error"]
    report = audit(out)
    needing = [f for f in report.findings if f.check_id == "CONN-001"]
    assert needing and all(f.status.value == "not_evaluated" for f in needing)
    assert any("403" in f.message for f in needing)


def test_fail_on_incomplete_exits_2_when_an_item_was_not_collected(
        fake: FakeExo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.faults["Get-JournalRule"] = [Fault.reply(503)] * 5
    code, _, stderr = run(collect_args(fake, tmp_path / "snap", "--client-secret", SECRET,
                                       "--fail-on-incomplete"), capsys)
    assert code == 2
    assert "error    Get-JournalRule: gave up after 5 attempts: HTTP 503" in stderr


def test_an_existing_snapshot_folder_is_refused_before_any_request(
        fake: FakeExo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "snap"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = run(collect_args(fake, out, "--client-secret", SECRET), capsys)
    assert code == 3 and "not empty" in stderr and fake.requests == []


def test_no_credential_is_a_usage_error(fake: FakeExo, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run(collect_args(fake, tmp_path / "snap"), capsys)
    assert code == 3 and "AZURE_CLIENT_SECRET" in stderr and fake.requests == []


def test_device_code_sign_in_prints_the_instructions_on_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeExo(device_interval=0) as fake:
        code, stdout, stderr = run(collect_args(fake, tmp_path / "snap", "--device-code",
                                                "--no-inbox-rules"), capsys)
        anchors = {r.headers["X-AnchorMailbox"] for r in fake.invoke_requests()}
    assert code == 0, stderr
    assert "microsoft.com/devicelogin" in stderr and "F7KQ2XHPL" not in stdout
    assert anchors == {"UPN:consultant@contoso.com"}


def test_secrets_and_tokens_never_reach_output_files_or_logs(
        fake: FakeExo, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A run with faults, then an audit with every report format: grep it all for secrets."""
    caplog.set_level(logging.DEBUG)
    fake.denied = {"Get-DkimSigningConfig"}
    fake.faults["Get-TransportRule"] = [Fault("expire"), Fault.throttle("0.01"), Fault("truncate")]
    out, reports = tmp_path / "snap", tmp_path / "reports"
    code, stdout, stderr = run(collect_args(fake, out, "--client-secret", SECRET), capsys)
    assert code == 0, stderr
    code, audit_out, audit_err = run(["audit", str(out), "--no-dns", "--out", str(reports)], capsys)
    wrong = run(collect_args(fake, tmp_path / "other", "--client-secret", SECRET + "x"), capsys)
    assert wrong[0] == 3 and "AADSTS7000215" in wrong[2]
    secrets = [SECRET, SECRET + "x", *fake.issued]
    assert len(fake.issued) >= 2  # the renewal after the expired token issued a second one
    texts = [stdout, stderr, audit_out, audit_err, *wrong[1:], caplog.text]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in [*out.rglob("*"), *reports.rglob("*")]
              if p.is_file()]
    for secret in secrets:
        for text in texts:
            assert secret not in text
            assert secret.split(".")[-1] not in text  # not even a token's signature part


def test_a_plain_admin_api_url_off_loopback_is_refused_before_signing_in(
        fake: FakeExo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = collect_args(fake, tmp_path / "snap", "--client-secret", SECRET)
    args[args.index("--admin-api") + 1] = "http://outlook.office365.com"
    code, _, stderr = run(args, capsys)
    assert code == 3 and "https" in stderr and fake.requests == []


def test_on_a_terminal_progress_is_one_redrawn_line(capsys: pytest.CaptureFixture[str]) -> None:
    progress = TerminalProgress(2, live=True)
    progress.started(PLAN[0])
    progress.started(PLAN[1])
    progress.finished(CmdletResult(PLAN[0].key, PLAN[0].cmdlet, State.OK, objects=3, pages=1))
    progress.close()
    err = capsys.readouterr().err
    assert "\n" not in err and err.count("\r") == 5  # three draws, then the line is wiped
    assert "[0/2] Get-TransportRule, Get-InboundConnector" in err and "[1/2] Get-InboundConnector" in err


def _collect_mailboxes(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str,
                       ews_blocked: str | None = None) -> tuple[int, str, Path, int]:
    """collect --mailboxes against the admin API, EWS and Graph fakes, one identity platform
    signing in to all three: (exit code, stderr, snapshot, EWS requests)."""
    from tests.auditor.test_graph_mailbox import graph_tenant
    from tests.fakeews import FakeEws, MailboxData
    from tests.fakeexo import EXO_SCOPE, load_values
    from tests.fakegraph import FakeGraph, GraphMailbox

    addresses = [m["PrimarySmtpAddress"] for m in load_values(DEMO / "Get-Mailbox.json")]
    mailboxes = {a: GraphMailbox() for a in addresses} | graph_tenant()
    out = tmp_path / "snap"
    with FakeExo(secret=SECRET) as exo, FakeGraph(secret=SECRET, mailboxes=mailboxes, tenant_id=TENANT_ID,
                                                   resources={EXO_SCOPE: exo.valid}) as graph, \
            FakeEws({a: MailboxData() for a in addresses}, accept=lambda t: t in exo.valid) as ews:
        ews.blocked = ews_blocked
        code, _, stderr = run(["collect", "--tenant", TENANT_DOMAIN, "--client-id", CLIENT_ID,
                               "--client-secret", SECRET, "--out", str(out), "--authority-host", graph.url,
                               "--admin-api", exo.url, "--graph-api", graph.url, "--ews-url", ews.url,
                               "--no-dns", "--no-graph", "--backoff", "0.01", "--mailboxes", *extra], capsys)
        return code, stderr, out, len(ews.requests)


def test_collect_reads_mailboxes_through_graph_when_ews_is_blocked_and_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Without Get-InboxRule (Global Reader cannot run it), the rules read here are all MBX-002 has.
    code, stderr, out, ews_requests = _collect_mailboxes(tmp_path, capsys, "--no-inbox-rules",
                                                         ews_blocked="forbidden")
    assert code == 0, stderr
    assert ("mailbox evidence through Microsoft Graph: auto: EWS did not serve the first request "
            "(inbox rules of adele.vance@contoso.com: reading the inbox rules was refused: HTTP 403 "
            "Forbidden from EWS)") in stderr
    assert ews_requests == 1  # the probe only
    rules = json.loads((out / "mailbox" / "Mailbox-InboxRules.json").read_text())
    assert rules["api"] == "graph" and rules["source"].startswith("Microsoft Graph GET")
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(e for e in manifest["evidence"] if e["key"] == "Mailbox-InboxRules")
    assert entry["state"] == "ok"
    assert entry["source"].endswith("(mailbox evidence over Microsoft Graph)")
    flagged = [f for f in audit(out).findings if f.check_id == "MBX-002" and f.status.value == "fail"]
    assert [f.resource for f in flagged] == ["inbox rule '.' of mailbox alex.wilber@contoso.com"]
    assert "does not return hidden inbox rules" in flagged[0].message


def test_collect_with_mailbox_api_graph_does_not_touch_ews(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, stderr, out, ews_requests = _collect_mailboxes(tmp_path, capsys, "--mailbox-api", "graph")
    assert code == 0, stderr
    assert "mailbox evidence through Microsoft Graph: --mailbox-api graph" in stderr and ews_requests == 0
    headers = load_snapshot(out).evidence.get("Mailbox-MessageHeaders")
    assert headers.state is State.OK and any(h.InternetMessageId for h in headers.items)
