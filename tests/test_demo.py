"""The bundled demo tenant: every planted bypass is found, and nothing clean is flagged."""

from __future__ import annotations

import json
from pathlib import Path

from auditor.cli import demo_folder, main
from auditor.evidence import State
from auditor.snapshot import open_source

from .conftest import DEMO, audit

EXPECTED = {
    ("APP-001", "fail", "Acme Email Archiver (appId e9b3f2a1-7c4d-4a5e-8f60-3b2a1c9d8e7f)"),
    ("APP-001", "pass", "Mimecast Sync and Recover (appId ab297ba0-ed97-4666-8172-62c14ae8461e)"),
    ("APP-002", "not_evaluated", "Acme Email Archiver (appId e9b3f2a1-7c4d-4a5e-8f60-3b2a1c9d8e7f)"),
    ("APP-002", "pass", "Contoso Mail-Flow Auditor (appId 5d0e8a31-6c2f-4b7a-9e14-2f8b3c6d7a90)"),
    ("APP-002", "fail", "Mimecast Sync and Recover (appId ab297ba0-ed97-4666-8172-62c14ae8461e)"),
    ("APP-003", "pass", "Application EWS.AccessAsApp-Mimecast Sync and Recover"),
    ("CONN-001", "pass", "accepted domain contoso.com"),
    ("CONN-001", "fail", "accepted domain contoso.mail.onmicrosoft.com"),
    ("CONN-001", "fail", "accepted domain contoso.onmicrosoft.com"),
    ("CONN-001", "pass", "accepted domain northwindtraders.com"),
    ("CONN-002", "pass", "inbound connector Mimecast Inbound"),
    ("CONN-003", "pass", "inbound connector Mimecast Inbound"),
    ("CONN-004", "pass", "inbound connector Mimecast Inbound"),
    ("CONN-005", "pass", "inbound connector Mimecast Inbound"),
    ("CONN-006", "pass", "outbound connector Legal Partner Outbound"),
    ("CONN-006", "pass", "outbound connector Outbound to Mimecast"),
    ("CONN-007", "pass", "inbound connector Mimecast Inbound"),
    ("CONN-007", "pass", "outbound connector Legal Partner Outbound"),
    ("CONN-007", "pass", "outbound connector Outbound to Mimecast"),
    ("CONN-007", "pass", "transport rule Allow partner newsletters"),
    ("CONN-007", "pass", "transport rule Block executable attachments"),
    ("CONN-007", "pass", "transport rule Executives - copy to assistant"),
    ("CONN-007", "pass", "transport rule Finance - copy to external records archive"),
    ("CONN-007", "pass", "transport rule Legal - route via partner connector"),
    ("CONN-007", "pass", "transport rule Mimecast - Bypass spam filtering from gateway"),
    ("CONN-007", "pass", "transport rule Old vendor allow (disabled)"),
    ("CONN-007", "pass", "transport rule Skip filtering - gateway scanned header (legacy)"),
    ("CONN-007", "pass", "transport rule Tag external senders"),
    ("CONN-008", "pass", "inbound Partner connectors"),
    ("CONN-008", "pass", "inbound connector Mimecast Inbound"),
    ("CONN-009", "pass", "inbound OnPremises connectors"),
    ("DNS-001", "pass", "domain contoso.com"),
    ("DNS-001", "warn", "domain northwindtraders.com"),
    ("DNS-002", "pass", "domain contoso.com"),
    ("DNS-002", "pass", "domain northwindtraders.com"),
    ("DNS-003", "pass", "domain contoso.com"),
    ("DNS-003", "pass", "domain northwindtraders.com"),
    ("DNS-004", "pass", "domain contoso.com"),
    ("DNS-004", "pass", "domain northwindtraders.com"),
    ("DNS-005", "warn", "domain contoso.com"),
    ("DNS-005", "fail", "domain northwindtraders.com"),
    ("DNS-006", "pass", "domain contoso.com"),
    ("DNS-006", "fail", "domain northwindtraders.com"),
    ("DNS-007", "pass", "domain contoso.com"),
    ("DNS-007", "warn", "domain northwindtraders.com"),
    ("DOM-001", "fail", "accepted domain contoso.mail.onmicrosoft.com"),
    ("DOM-001", "fail", "accepted domain contoso.onmicrosoft.com"),
    ("GW-001", "warn", "accepted domain contoso.com"),
    ("GW-001", "fail", "accepted domain contoso.mail.onmicrosoft.com"),
    ("GW-001", "fail", "accepted domain contoso.onmicrosoft.com"),
    ("GW-001", "warn", "accepted domain northwindtraders.com"),
    ("MAIL-001", "pass", "mailbox lynne.robbins@contoso.com"),
    ("MAIL-001", "pass", "mailbox megan.bowen@contoso.com"),
    ("MBX-001", "warn", "mailbox lynne.robbins@contoso.com"),
    ("MBX-002", "fail", "inbox rule '.' of mailbox lynne.robbins@contoso.com"),
    ("ORG-001", "fail", "organization contoso.onmicrosoft.com"),
    ("ORG-002", "pass", "transport config Transport Settings"),
    ("POL-001", "fail", "connection filter policy Default: 198.18.0.0/24"),
    ("POL-001", "fail", "connection filter policy Default: 203.0.113.0/24"),
    ("POL-002", "pass", "connection filter policy Default"),
    ("POL-003", "fail", "anti-spam policy Default: contoso.com"),
    ("POL-003", "fail", "anti-spam policy Default: payroll-partner.example"),
    ("POL-004", "pass", "Tenant Allow/Block List: IP addresses"),
    ("POL-004", "pass", "Tenant Allow/Block List: URLs"),
    ("POL-004", "fail", "Tenant Allow/Block List: allow Sender payroll-partner.example"),
    ("POL-004", "pass", "Tenant Allow/Block List: files"),
    ("POL-004", "pass", "Tenant Allow/Block List: spoofed senders"),
    ("POL-005", "pass", "outbound spam policy Default"),
    ("POL-006", "pass", "journal NDR mailbox (JournalingReportNdrTo)"),
    ("POL-006", "pass", "journal rule Journal to Mimecast archive"),
    ("RULE-001", "fail", "transport rule Allow partner newsletters"),
    ("RULE-001", "pass", "transport rule Mimecast - Bypass spam filtering from gateway"),
    ("RULE-001", "pass", "transport rule Old vendor allow (disabled)"),
    ("RULE-001", "fail", "transport rule Skip filtering - gateway scanned header (legacy)"),
    ("RULE-002", "pass", "transport rule Executives - copy to assistant"),
    ("RULE-002", "fail", "transport rule Finance - copy to external records archive"),
    ("RULE-003", "fail", "transport rule Skip filtering - gateway scanned header (legacy)"),
    ("RULE-004", "pass", "transport rules"),
    ("RULE-005", "pass", "transport rules"),
    ("RULE-006", "pass", "transport rule Legal - route via partner connector"),
    ("RULE-007", "pass", "transport rule Mimecast - Bypass spam filtering from gateway"),
    ("ARC-001", "pass", "gateway Mimecast Email Security, Cloud Gateway"),
    ("ARC-001", "pass", "trusted ARC sealer dkim.mimecast.com"),
    ("CHG-001", "pass", "inbound connector Mimecast Inbound - US2 test"),
    ("CHG-001", "warn", "accepted domain contoso.mail.onmicrosoft.com"),
    ("DKIM-001", "pass", "domain contoso.com"),
    ("DKIM-001", "pass", "domain northwindtraders.com"),
    ("ORG-003", "pass", "mailbox audit bypass"),
    ("ORG-003", "pass", "mailbox auditing for organization contoso.onmicrosoft.com"),
    ("ORG-003", "pass", "unified audit log"),
    ("POL-007", "fail", "SecOps mailbox adele.vance@contoso.com"),
    ("POL-007", "pass",
     "phishing simulation override rule _Exe:PhishSimOverr:a41f6c93-2d5e-4b7a-8c10-e9f3b2d4c6a8"),
    ("PROBE-001", "fail", "SMTP probe to contoso.onmicrosoft.com"),
    ("PROBE-001", "pass", "SMTP probe to contoso.com"),
}


def test_the_demo_folder_is_found_from_the_checkout() -> None:
    assert demo_folder() in (DEMO, Path(demo_folder()))


def test_every_demo_evidence_file_reads_cleanly() -> None:
    snapshot = open_source(DEMO)
    for item in snapshot.items:
        assert item.state is State.OK, (item.key, item.error)
        assert item.rejected == 0 and item.warnings == (), item.key
    assert sorted(e.path for e in snapshot.extras) == ["extra/README.md", "extra/export.json"]
    assert sorted(snapshot.evidence.dns) == ["contoso.com", "northwindtraders.com"]


def test_the_demo_audit_finds_exactly_the_planted_bypasses() -> None:
    report = audit(DEMO)
    assert [p.id for p in report.gateway.active] == ["mimecast"]
    found = {(f.check_id, f.status.value, f.resource) for f in report.findings}
    assert found == EXPECTED


def test_the_demo_is_audited_as_of_its_export_time() -> None:
    report = audit(DEMO)
    assert report.snapshot.created_at.isoformat() == "2026-11-20T09:14:03+00:00"


def test_demo_command_writes_three_reports_that_show_the_bypasses(tmp_path: Path) -> None:
    out = tmp_path / "report"
    main(["audit", "--demo", "--out", str(out)])  # returns normally: exit code 0
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    for text in ("Allow partner newsletters", "finance-archive@fabrikam-records.example",
                 "203.0.113.0/24", "Mimecast Email Security"):
        assert text in html and text in markdown
    assert data["summary"]["by_status"]["fail"] == 23
    # Issue 6: who changed an object with a finding, and a probe proving the onmicrosoft route.
    assert html.count("changed by megan.bowen@contoso.com on 2026-11-05") >= 2
    assert "SMTP probe to contoso.onmicrosoft.com" in html
    # The one gap is real: a vendor's multi-tenant app keeps its credentials in the vendor's tenant.
    assert [(f["check_id"], f["status"]) for f in data["findings"] if f["status"] == "not_evaluated"] == [
        ("APP-002", "not_evaluated")]
    evidence = next(f for f in data["findings"] if f["check_id"] == "RULE-001"
                    and f["resource"].endswith("Allow partner newsletters"))
    assert evidence["evidence"][0] == {"source": "exo/Get-TransportRule.json", "pointer": "/1/SetSCL",
                                       "property": "SetSCL", "observed": "-1", "note": None}


def test_failing_demo_findings_carry_the_exact_fix() -> None:
    report = audit(DEMO)
    fixes = {f.resource: f.fix for f in report.findings if f.status.value == "fail"}
    assert fixes["transport rule Allow partner newsletters"] == (
        "Disable-TransportRule -Identity 'Allow partner newsletters' -Confirm:$false")
    assert fixes["connection filter policy Default: 203.0.113.0/24"] == (
        "Set-HostedConnectionFilterPolicy -Identity 'Default' -IPAllowList @{Remove='203.0.113.0/24'}")


def test_every_demo_file_is_installed_with_the_package() -> None:
    """A non-editable install finds the demo through setup.cfg's data_files: none may be left out."""
    import configparser
    import glob

    config = configparser.ConfigParser()
    config.read(DEMO.parent.parent / "setup.cfg")
    installed: set[str] = set()
    for patterns in config["options.data_files"].values():
        for pattern in patterns.replace("\n", ",").split(","):
            if pattern.strip():
                installed.update(glob.glob(pattern.strip(), root_dir=DEMO.parent.parent))
    on_disk = {str(p.relative_to(DEMO.parent.parent)) for p in DEMO.rglob("*") if p.is_file()}
    assert on_disk <= installed, sorted(on_disk - installed)
