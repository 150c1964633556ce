"""GW-001: one verdict per accepted domain, linked to the findings behind it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.dnsevidence import DomainDns
from auditor.engine import Finding, Severity, Status
from reports.render import render

from ..conftest import accepted, audit, connector, findings_for, mimecast_us_ranges, rule
from .test_dns import EOP_MX, GATEWAY_MX, healthy, mx, resolving

MakeExport = Callable[..., Path]
DOMAIN = "contoso.example"
INITIAL = "contoso.onmicrosoft.com"


def _export(make_export: MakeExport, *, connectors: list[dict[str, Any]] | None = None,
            rules: list[dict[str, Any]] | None = None, dns: list[DomainDns] | None = None,
            direct_send_rejected: bool = True) -> Path:
    files: dict[str, Any] = {
        "Get-AcceptedDomain": accepted(DOMAIN, INITIAL),
        "Get-InboundConnector": (connectors if connectors is not None
                                 else [connector(SenderIPAddresses=mimecast_us_ranges())]),
        "Get-TransportRule": rules or [],
        "Get-OrganizationConfig": {"Name": INITIAL, "Identity": INITIAL,
                                   "RejectDirectSend": direct_send_rejected},
    }
    folder = make_export(files)
    if dns is not None:
        (folder / "dns").mkdir()
        for recording in dns:
            (folder / "dns" / f"{recording.domain}.json").write_bytes(recording.to_bytes())
    return folder


def _recorded(*answers: Any) -> DomainDns:
    return DomainDns.build(DOMAIN, [*answers, *healthy(DOMAIN)], f"dns/{DOMAIN}.json")


def _verdicts(folder: Path, gateway: str | None = "mimecast") -> dict[str, Finding]:
    report = audit(folder, gateway=gateway)
    return {f.resource.removeprefix("accepted domain "): f for f in findings_for(report, "GW-001")}


def _fingerprints(folder: Path, check_id: str) -> set[str]:
    return {f.fingerprint for f in findings_for(audit(folder, gateway="mimecast"), check_id)
            if f.status.is_finding}


def test_locked_tenant_with_mx_at_the_gateway_is_protected(make_export: MakeExport) -> None:
    verdicts = _verdicts(_export(make_export, dns=[_recorded()]))
    assert {d: (f.status, f.verdict) for d, f in verdicts.items()} == {
        DOMAIN: (Status.PASS, "protected"), INITIAL: (Status.PASS, "protected")}
    assert "its MX sends mail to Mimecast" in verdicts[DOMAIN].message
    assert verdicts[DOMAIN].related == ()
    assert any(e.file == f"dns/{DOMAIN}.json" for e in verdicts[DOMAIN].evidence)


def test_no_lockdown_makes_every_receiving_domain_bypassable(make_export: MakeExport) -> None:
    folder = _export(make_export, connectors=[], dns=[_recorded()])
    verdicts = _verdicts(folder)
    for name in (DOMAIN, INITIAL):
        assert (verdicts[name].status, verdicts[name].verdict) == (Status.FAIL, "bypassable")
        assert verdicts[name].severity is Severity.HIGH
        assert "CONN-001 (accepted domain " + name in verdicts[name].message
    conn = {f.resource: f.fingerprint for f in findings_for(audit(folder, gateway="mimecast"),
                                                            "CONN-001")}
    assert conn[f"accepted domain {DOMAIN}"] in verdicts[DOMAIN].related
    assert conn[f"accepted domain {INITIAL}"] not in verdicts[DOMAIN].related


def test_open_route_with_weakened_filtering_is_critical(make_export: MakeExport) -> None:
    spoofable = rule("Trust partner", SetSCL=-1, SenderDomainIs=["fabrikam.example"])
    folder = _export(make_export, connectors=[], rules=[spoofable], dns=[_recorded()])
    found = _verdicts(folder)[DOMAIN]
    assert (found.status, found.verdict, found.severity) == (Status.FAIL, "bypassable",
                                                             Severity.CRITICAL)
    assert "RULE-001 (transport rule Trust partner)" in found.message
    assert _fingerprints(folder, "RULE-001") <= set(found.related)


def test_weakened_filtering_behind_a_closed_route_is_protected_with_reservations(
        make_export: MakeExport) -> None:
    spoofable = rule("Trust partner", SetSCL=-1, SenderDomainIs=["fabrikam.example"])
    found = _verdicts(_export(make_export, rules=[spoofable], dns=[_recorded()]))[DOMAIN]
    assert (found.status, found.verdict, found.severity) == (Status.WARN, "protected",
                                                             Severity.MEDIUM)
    assert "filtering is weakened" in found.message


def test_mx_only_at_exchange_online_is_not_routed_through_the_gateway(make_export: MakeExport) -> None:
    recorded = _recorded(mx(DOMAIN, (0, EOP_MX)), *resolving(EOP_MX))
    locked = _verdicts(_export(make_export, dns=[recorded]))[DOMAIN]
    assert (locked.status, locked.verdict, locked.severity) == (
        Status.FAIL, "not routed through the gateway", Severity.MEDIUM)
    assert "refuses mail that does not come through the gateway" in locked.message
    open_ = _verdicts(_export(make_export, connectors=[], dns=[recorded]))[DOMAIN]
    assert (open_.status, open_.verdict, open_.severity) == (
        Status.FAIL, "not routed through the gateway", Severity.CRITICAL)


def test_stale_exchange_online_mx_behind_a_lock_is_a_caveat(make_export: MakeExport) -> None:
    recorded = _recorded(mx(DOMAIN, (10, GATEWAY_MX[0]), (20, EOP_MX)), *resolving(EOP_MX))
    found = _verdicts(_export(make_export, dns=[recorded]))[DOMAIN]
    assert (found.status, found.verdict, found.severity) == (Status.WARN, "protected", Severity.LOW)
    assert "Caveats: DNS-001 (domain contoso.example)" in found.message


def test_without_dns_evidence_a_closed_route_cannot_be_confirmed(make_export: MakeExport) -> None:
    verdicts = _verdicts(_export(make_export))
    assert (verdicts[DOMAIN].status, verdicts[DOMAIN].verdict) == (Status.NOT_EVALUATED,
                                                                   "cannot tell")
    assert "DNS-001 not evaluated: dns is missing" in verdicts[DOMAIN].message
    # The onmicrosoft.com domain needs no DNS: Microsoft routes it to Exchange Online.
    assert verdicts[INITIAL].verdict == "protected"


def test_without_dns_evidence_an_open_route_is_still_bypassable(make_export: MakeExport) -> None:
    found = _verdicts(_export(make_export, connectors=[]))[DOMAIN]
    assert (found.status, found.verdict) == (Status.FAIL, "bypassable")


def test_missing_accepted_domains_are_not_evaluated(make_export: MakeExport) -> None:
    report = audit(make_export({"Get-InboundConnector": [connector()]}), gateway="mimecast")
    found = findings_for(report, "GW-001")
    assert [(f.status, f.resource) for f in found] == [(Status.NOT_EVALUATED, "Get-AcceptedDomain")]


def test_no_gateway_means_no_verdict(make_export: MakeExport) -> None:
    report = audit(_export(make_export, connectors=[]), gateway=None)
    assert [(f.status, f.resource) for f in findings_for(report, "GW-001")] == [
        (Status.NOT_EVALUATED, "gateway")]


def test_outbound_only_domains_receive_nothing(make_export: MakeExport) -> None:
    folder = make_export({"Get-AcceptedDomain": [{"DomainName": DOMAIN, "OutboundOnly": True}],
                          "Get-InboundConnector": []})
    found = _verdicts(folder)[DOMAIN]
    assert (found.status, found.verdict) == (Status.PASS, "protected")


def test_reports_open_with_the_verdict_table_linking_to_findings(make_export: MakeExport) -> None:
    folder = _export(make_export, connectors=[], dns=[_recorded()])
    data = audit(folder, gateway="mimecast").to_json()
    html = render(data, "html")
    table = html.index("Is each domain's mail protected by the gateway?")
    assert table < html.index("<h2>Summary</h2>")
    conn = next(f for f in data["findings"] if f["check_id"] == "CONN-001"
                and f["status"] == "fail")
    assert f'href="#f-{conn["fingerprint"]}"' in html
    assert f'id="f-{conn["fingerprint"]}"' in html
    gw = next(f for f in data["findings"] if f["check_id"] == "GW-001")
    assert gw["verdict"] == "bypassable" and conn["fingerprint"] in gw["related"]
    markdown = render(data, "md")
    assert markdown.index("## Is each domain") < markdown.index("## Summary")


API_GATEWAY = """\
schema_version = 1
id = "api-product"
name = "API product"
vendor = "Example"
deployment = "api"
"""


def test_an_api_only_gateway_has_no_route_to_lock(make_export: MakeExport, tmp_path: Path) -> None:
    """MX at Exchange Online and no connector is the API products' documented setup."""
    profile = tmp_path / "api.toml"
    profile.write_text(API_GATEWAY)
    recorded = _recorded(mx(DOMAIN, (0, EOP_MX)), *resolving(EOP_MX))
    report = audit(_export(make_export, connectors=[], dns=[recorded]), gateway="api-product",
                   gateway_file=profile)
    for check_id in ("CONN-001", "GW-001"):
        found = findings_for(report, check_id)
        assert {(f.status, f.resource) for f in found} == {
            (Status.PASS, f"accepted domain {DOMAIN}"), (Status.PASS, f"accepted domain {INITIAL}")}
        assert all("through its API" in f.message for f in found)


def test_onmicrosoft_domain_left_out_of_the_lock_is_bypassable(make_export: MakeExport) -> None:
    """DOM-001's classic miss: the custom domain is locked and protected, the tenant's own
    onmicrosoft.com domain is not; Direct Send counts only against the domain left open."""
    scoped = connector(SenderIPAddresses=mimecast_us_ranges(), AssociatedAcceptedDomains=[DOMAIN])
    folder = _export(make_export, connectors=[scoped], dns=[_recorded()], direct_send_rejected=False)
    verdicts = _verdicts(folder)
    assert (verdicts[DOMAIN].status, verdicts[DOMAIN].verdict) == (Status.PASS, "protected")
    assert (verdicts[INITIAL].status, verdicts[INITIAL].verdict) == (Status.FAIL, "bypassable")
    assert f"DOM-001 (accepted domain {INITIAL})" in verdicts[INITIAL].message
    assert "ORG-001" in verdicts[INITIAL].message
    assert _fingerprints(folder, "DOM-001") <= set(verdicts[INITIAL].related)
    assert not _fingerprints(folder, "DOM-001") & set(verdicts[DOMAIN].related)


def test_direct_send_still_opens_a_domain_no_connector_lock_covers(make_export: MakeExport) -> None:
    lock = rule("Reject mail not from gateway", FromScope="NotInOrganization",
                RejectMessageReasonText="Use the gateway", ExceptIfSenderIpRanges=mimecast_us_ranges(),
                Conditions=["Microsoft.Exchange.MessagingPolicies.Rules.Tasks.FromScopePredicate"])
    folder = _export(make_export, connectors=[], rules=[lock], dns=[_recorded()],
                     direct_send_rejected=False)
    found = _verdicts(folder)[DOMAIN]
    assert "ORG-001" in found.message and found.status is not Status.PASS


def test_onpremises_connector_from_outside_opens_every_domain(make_export: MakeExport) -> None:
    """CONN-009: mail from a foreign server attributed to the organisation skips the lock."""
    relay = connector(Name="Relay", ConnectorType="OnPremises", SenderIPAddresses=["192.0.2.10/32"],
                      RestrictDomainsToIPAddresses=False)
    folder = _export(make_export, connectors=[connector(SenderIPAddresses=mimecast_us_ranges()), relay],
                     dns=[_recorded()])
    found = _verdicts(folder)[DOMAIN]
    assert (found.status, found.verdict) == (Status.FAIL, "bypassable")
    assert "CONN-009 (inbound connector Relay)" in found.message


def test_a_verdict_names_ten_weakening_findings_counts_the_rest_and_links_them_all(
        make_export: MakeExport) -> None:
    # Tenant-wide findings repeat in every domain's verdict: hundreds of them made a
    # 5,000-domain tenant's reports tens of megabytes.
    spoofable = [rule(f"Trust partner {i:02d}", Priority=i, SetSCL=-1,
                      SenderDomainIs=[f"partner{i}.example"]) for i in range(23)]
    folder = _export(make_export, rules=spoofable, dns=[_recorded()])
    report = audit(folder, gateway="mimecast")
    weakening = [f for f in findings_for(report, "RULE-001") if f.status is Status.FAIL]
    assert len(weakening) == 23
    found = _verdicts(folder)[DOMAIN]
    named = [f for f in weakening if f"RULE-001 ({f.resource})" in found.message]
    assert len(named) == 10
    assert "; and 13 more: 13 of RULE-001." in found.message
    assert {f.fingerprint for f in weakening} <= set(found.related)
    data = report.to_json()
    for fmt in ("html", "md"):
        text = render(data, fmt)
        row = text[text.index(f"{DOMAIN} "):] if fmt == "md" else text[text.index(f">{DOMAIN}<"):]
        row = row[:row.index("\n")] if fmt == "md" else row[:row.index("</tr>")]
        shown = [fp for fp in found.related if fp in row]
        assert len(shown) == 15, fmt
        assert f" and {len(found.related) - 15} more" in row, fmt
