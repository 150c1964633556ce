"""`mailflow-audit probe` as a user runs it: refused without authorisation, one connection, the
transcript kept as evidence (a snapshot that still verifies, or a file), the verdict printed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from auditor.snapshot import import_export_folder, verify_snapshot, write_snapshot
from tests.auditor.test_probe import OUTSIDE_SENDER, TEST_MAILBOX, FakeExchange

from .conftest import accepted
from .conftest import run_cli as run


@pytest.fixture
def open_tenant() -> Iterator[FakeExchange]:
    with FakeExchange("open") as server:
        yield server


@pytest.fixture
def locked_tenant() -> Iterator[FakeExchange]:
    with FakeExchange("locked") as server:
        yield server


def probe_args(server: FakeExchange, *extra: str, rcpt: str = TEST_MAILBOX) -> list[str]:
    return ["probe", "--rcpt", rcpt, "--mail-from", OUTSIDE_SENDER,
            "--host", f"127.0.0.1:{server.port}", "--ca-file", str(server.ca_file),
            "--timeout", "5", *extra]


def test_the_probe_refuses_to_run_without_i_am_authorized(
        open_tenant: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(probe_args(open_tenant, "--out", str(tmp_path / "p.json")), capsys)
    assert code == 2 and "--i-am-authorized" in err
    assert open_tenant.connections == 0 and not (tmp_path / "p.json").exists()


def test_send_canary_is_refused_without_i_am_authorized_too(
        open_tenant: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(probe_args(open_tenant, "--send-canary", "--out", str(tmp_path / "p.json")),
                       capsys)
    assert code == 2 and "--send-canary" in err
    assert open_tenant.connections == 0 and open_tenant.messages == []


def test_an_address_with_a_line_break_is_refused_before_connecting(
        open_tenant: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = probe_args(open_tenant, "--i-am-authorized", "--out", str(tmp_path / "p.json"),
                      rcpt=f"{TEST_MAILBOX}\r\nDATA")
    code, _, err = run(args, capsys)
    assert code == 3 and "--rcpt" in err
    assert open_tenant.connections == 0


def test_a_domain_with_a_dash_needs_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["probe", "--rcpt", "probe@my-company.com", "--mail-from", OUTSIDE_SENDER,
                        "--i-am-authorized", "--out", str(tmp_path / "p.json")], capsys)
    assert code == 3 and "--host" in err


def test_the_transcript_goes_somewhere(open_tenant: FakeExchange,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(probe_args(open_tenant, "--i-am-authorized"), capsys)
    assert code == 3 and "--snapshot" in err and open_tenant.connections == 0


def test_an_open_tenant_writes_the_transcript_and_exits_1(
        open_tenant: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "Probe-SMTP.json"
    code, stdout, err = run(probe_args(open_tenant, "--i-am-authorized", "--out", str(out)), capsys)
    assert code == 1
    assert "PROBE-001" in stdout and "envelope accepted" in stdout
    assert "RCPT: RCPT TO:<probe-target@contoso.com> -> 250" in err
    record = json.loads(out.read_text())[0]
    assert record["Recipient"] == TEST_MAILBOX and record["HeloName"] == "auditor.example"
    assert open_tenant.connections == 1 and "DATA" not in open_tenant.commands


def test_a_locked_tenant_probed_into_a_snapshot_verifies_and_passes(
        locked_tenant: FakeExchange, make_export: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    export = make_export({"Get-AcceptedDomain": accepted("contoso.com", "contoso.onmicrosoft.com"),
                          "Get-InboundConnector": [{
                              "Name": "Inbound from Mimecast", "Enabled": True,
                              "ConnectorType": "Partner", "SenderDomains": ["smtp:*;1"],
                              "RestrictDomainsToCertificate": True, "RequireTls": True,
                              "TlsSenderCertificateName": "*.mimecast.com"}]})
    snapshot = tmp_path / "snapshot"
    write_snapshot(import_export_folder(export), snapshot)
    code, stdout, _ = run(probe_args(locked_tenant, "--i-am-authorized", "--snapshot", str(snapshot)),
                          capsys)
    assert verify_snapshot(snapshot).ok
    assert code == 0, stdout
    assert "PROBE-001 pass SMTP probe to contoso.com: locked by connector" in stdout
    code, stdout, _ = run(["audit", str(snapshot), "--format", "json"], capsys)
    verdicts = [f for f in json.loads(stdout)["findings"] if f["check_id"] == "PROBE-001"]
    assert [(f["status"], f["resource"]) for f in verdicts] == [("pass", "SMTP probe to contoso.com")]


def test_send_canary_with_authorisation_sends_one_message(
        open_tenant: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "Probe-SMTP.json"
    code, _, _ = run(probe_args(open_tenant, "--i-am-authorized", "--send-canary", "--out", str(out)),
                     capsys)
    assert code == 1
    assert len(open_tenant.messages) == 1 and open_tenant.connections == 1
    assert json.loads(out.read_text())[0]["CanaryId"]


def test_a_snapshot_that_does_not_verify_is_refused_before_connecting(
        open_tenant: FakeExchange, make_export: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = tmp_path / "snapshot"
    write_snapshot(import_export_folder(make_export({"Get-AcceptedDomain": accepted("contoso.com")})),
                   snapshot)
    (snapshot / "exo" / "Get-AcceptedDomain.json").write_text("[]")
    code, _, err = run(probe_args(open_tenant, "--i-am-authorized", "--snapshot", str(snapshot)),
                       capsys)
    assert code == 3 and "does not verify" in err
    assert open_tenant.connections == 0
