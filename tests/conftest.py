"""Shared test helpers: build export folders from Python objects and audit them in-process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor.audit import Report, run_audit
from auditor.engine import Finding, discover
from auditor.gateways import builtin_profiles, find_profile, load_profile_file
from auditor.snapshot import open_source
from tests.dnsserver import knot_factory, knot_session_factory  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "tests" / "fixtures" / "exo-samples"
DEMO = REPO / "examples" / "contoso"

# Documentation ranges standing in for a gateway in hand-written fixtures.
DOC_GATEWAY = """\
schema_version = 1
id = "doc-gateway"
name = "Documentation gateway"
vendor = "Example"
tls_certificate_names = ["*.gateway.example"]
smart_hosts = ["outbound.gateway.example"]
[[ip_ranges]]
cidrs = ["198.51.100.0/24", "203.0.113.0/25"]
"""


def offline(argv: list[str]) -> list[str]:
    """Tests never ask a real DNS server: audits and imports get --no-dns unless they name one."""
    if argv[:1] in (["audit"], ["import"]) and not any(
            a in ("--no-dns", "--nameserver") for a in argv):
        return [*argv, "--no-dns"]
    return argv


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI run in-process as a user runs it (offline, see ``offline``): exit code, stdout, stderr."""
    from auditor.cli import main

    try:
        main(offline(argv))
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _no_system_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's resolver is never a test's target: a test must name a loopback server."""
    def refuse() -> list[object]:
        raise AssertionError("a test tried to use the system DNS resolver")

    monkeypatch.setattr("auditor.dnsresolve.system_nameservers", refuse)
    monkeypatch.setattr("auditor.cli.system_nameservers", refuse)


@pytest.fixture(autouse=True)
def _loopback_https_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS from a test (MTA-STS policies) may reach 127.0.0.1 and ::1 only; anything else
    fails as an unreachable server would."""
    send = httpx.AsyncClient.send

    async def guarded(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if request.url.host not in ("127.0.0.1", "::1", "localhost"):
            raise httpx.ConnectError(f"tests reach only loopback, not {request.url.host}",
                                     request=request)
        return await send(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", guarded)


def mimecast_us_ranges() -> list[str]:
    profile = find_profile(builtin_profiles(), "mimecast")
    return [r.text for g in profile.range_groups if g.region == "us" for r in g.ranges]


@pytest.fixture
def doc_gateway(tmp_path: Path) -> Path:
    path = tmp_path / "doc-gateway.toml"
    path.write_text(DOC_GATEWAY)
    return path


@pytest.fixture
def make_export(tmp_path: Path) -> Callable[..., Path]:
    """Write an export folder: {"Get-TransportRule": [...], ...} -> folder of JSON files."""
    counter = iter(range(1000))

    def make(files: dict[str, Any], *, name: str | None = None) -> Path:
        folder = tmp_path / (name or f"export{next(counter)}")
        folder.mkdir()
        for key, value in files.items():
            data = value if isinstance(value, bytes) else json.dumps(value).encode()
            (folder / f"{key}.json").write_bytes(data)
        return folder

    return make


def audit(path: Path, *, gateway: str | None = None, gateway_file: Path | None = None) -> Report:
    profile = load_profile_file(gateway_file) if gateway_file else None
    return run_audit(open_source(path), discover(), gateway=gateway, user_profile=profile)


def findings_for(report: Report, check_id: str) -> list[Finding]:
    return [f for f in report.findings if f.check_id == check_id]


def statuses(findings: Iterable[Finding]) -> set[tuple[str, str]]:
    return {(f.status.value, f.resource) for f in findings}


def connector(**overrides: Any) -> dict[str, Any]:
    """A locked-down Partner connector for the documentation gateway, with overrides."""
    base = {
        "Name": "Gateway inbound",
        "Enabled": True,
        "ConnectorType": "Partner",
        "SenderDomains": ["smtp:*;1"],
        "SenderIPAddresses": ["198.51.100.0/24", "203.0.113.0/25"],
        "RestrictDomainsToIPAddresses": True,
        "RestrictDomainsToCertificate": False,
        "RequireTls": True,
        "TlsSenderCertificateName": None,
        "AssociatedAcceptedDomains": [],
        "WhenChanged": "2025-01-01T00:00:00Z",
    }
    base.update(overrides)
    return base


def accepted(*names: str) -> list[dict[str, Any]]:
    return [{"DomainName": n, "DomainType": "Authoritative", "Default": i == 0,
             "InitialDomain": n.endswith(".onmicrosoft.com")} for i, n in enumerate(names)]


def rule(name: str, **props: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"Name": name, "State": "Enabled", "Mode": "Enforce", "Priority": 0}
    base.update(props)
    return base
