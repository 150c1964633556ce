"""The command line as a user runs it: commands, formats, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import accepted, connector, rule
from .conftest import run_cli as run


@pytest.fixture
def bypass_export(make_export: Callable[..., Path]) -> Path:
    return make_export({
        "Get-InboundConnector": [connector()],
        "Get-AcceptedDomain": accepted("contoso.com", "contoso.onmicrosoft.com"),
        "Get-TransportRule": [rule("Skip by header", HeaderContainsMessageHeader="X-Skip",
                                   HeaderContainsWords=["yes"], SetSCL="-1")],
        "Get-OrganizationConfig": {"Name": "contoso.onmicrosoft.com", "RejectDirectSend": True},
        "Get-HostedConnectionFilterPolicy": [{"Name": "Default", "IPAllowList": []}],
    })


def test_checks_list_json_prints_the_catalogue_with_metadata(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["checks", "list", "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 0
    ids = [c["id"] for c in data["checks"]]
    assert ids == sorted(ids) and "RULE-001" in ids
    first = data["checks"][0]
    for key in ("id", "title", "severity", "rationale", "remediation", "references", "requires",
                "mappings"):
        assert key in first


def test_checks_explain_shows_rationale_powershell_and_mappings(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["checks", "explain", "pol-001"], capsys)
    assert code == 0
    assert "POL-001" in out and "Set-HostedConnectionFilterPolicy" in out and "2.1.12" in out


def test_an_unknown_check_id_is_an_input_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["checks", "explain", "NOPE-999"], capsys)
    assert code == 3
    assert err.startswith("mailflow-audit: error: no check 'NOPE-999'")


@pytest.mark.parametrize(("value", "reason"), [("192.0.2.1", "an IP address, not a domain name"),
                                                ("localhost", "a single label, not a domain name"),
                                                ("a..b", "not a valid domain name")])
def test_a_tenant_audit_refuses_a_domain_option_that_is_no_domain(
        value: str, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["audit", "--demo", "--domain", value, "--format", "json"], capsys)
    assert code == 3
    assert f"Invalid value for --domain: {value!r}: {reason}" in err


def test_audit_prints_one_format_to_stdout(bypass_export: Path, doc_gateway: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["audit", str(bypass_export), "--gateway-file", str(doc_gateway),
                        "--format", "json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["schema_version"] == 1
    failing = [f for f in report["findings"] if f["status"] == "fail"]
    # A header-keyed SCL -1 rule: filtering off (RULE-001), header an outsider writes (RULE-003).
    assert sorted((f["check_id"], f["severity"]) for f in failing) == [("RULE-001", "critical"),
                                                                        ("RULE-003", "critical")]
    finding = failing[0]
    for key in ("title", "resource", "message", "evidence", "remediation", "references",
                "mappings", "fingerprint"):
        assert finding[key]
    assert finding["evidence"][0]["source"] == "exo/Get-TransportRule.json"


def test_fail_on_sets_exit_code_1(bypass_export: Path, doc_gateway: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = ["audit", str(bypass_export), "--gateway-file", str(doc_gateway)]
    assert run([*args, "--fail-on", "critical"], capsys)[0] == 1
    assert run([*args, "--fail-on", "none"], capsys)[0] == 0


def test_fail_on_incomplete_sets_exit_code_2(make_export: Callable[..., Path], doc_gateway: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_export({"Get-TransportRule": []})
    code, _, err = run(["audit", str(folder), "--gateway-file", str(doc_gateway),
                        "--fail-on-incomplete"], capsys)
    assert code == 2
    assert "not evaluated" in err


def test_usage_errors_exit_3_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["audit"], ["audit", "--demo", "x"], ["audit", "--demo", "--fail-on", "huge"],
                 ["audit", "--demo", "--format", "pdf"], ["frobnicate"]):
        code, _, err = run(args, capsys)
        assert code == 3, args
        assert "Traceback" not in err and err.startswith("mailflow-audit: error:")


def test_unknown_gateway_is_an_input_error(bypass_export: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["audit", str(bypass_export), "--gateway", "nope"], capsys)
    assert code == 3 and "known gateways" in err


def test_gateways_list_names_every_profile(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["gateways", "list"], capsys)
    assert code == 0 and "mimecast" in out and "hornetsecurity" in out


@pytest.mark.parametrize("command", [[sys.executable, "-m", "auditor"],
                                     [str(Path(sys.executable).with_name("mailflow-audit"))]])
def test_entry_points_run_as_a_user_would(command: list[str]) -> None:
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0 and "mailflow-audit" in done.stdout


def test_help_lists_every_command_and_those_imported_when_named_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``collect`` and ``export-script`` are imported only when named or listed: still listed
    by --help, in order, and run when named."""
    code, out, _ = run(["--help"], capsys)
    listed = [line.split()[0] for line in out.split("Commands:\n", 1)[1].splitlines() if line.strip()]
    assert code == 0 and listed == sorted(listed)
    assert {"audit", "collect", "domains", "export-script", "import", "probe", "verify"} <= set(listed)
    code, out, _ = run(["collect", "--help"], capsys)
    assert code == 0 and "--tenant" in out
    code, out, _ = run(["export-script"], capsys)
    assert code == 0 and "Get-TransportRule" in out
