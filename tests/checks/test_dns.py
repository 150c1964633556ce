"""DNS-001..DNS-007: mail routed around the gateway, and spoofing that SPF/DMARC let through.

Every case is judged from recorded answers only (``DomainDns``); nothing asks a DNS server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditor.context import AuditContext
from auditor.dnsevidence import DomainDns
from auditor.dnsmodel import DnsAnswer, DnsQuery, DnsStatus, answer, txt_record
from auditor.engine import Check, Finding, Severity, Status, run_check
from auditor.evidence import SPECS, EvidenceStore, parse_evidence
from auditor.gateways import builtin_profiles, resolve_gateway
from checks import dns

from ..conftest import accepted, audit, connector, findings_for, mimecast_us_ranges

MakeExport = Callable[..., Path]
Files = dict[str, list[dict[str, Any]]]

AS_OF = datetime(2026, 11, 25, tzinfo=UTC)
DOMAIN = "contoso.example"
SUBDOMAIN = "mail.contoso.example"
RESOURCE = f"domain {DOMAIN}"
GATEWAY_MX = ("us-smtp-inbound-1.mimecast.com", "us-smtp-inbound-2.mimecast.com")
EOP_MX = "contoso-example.mail.protection.outlook.com"
MIMECAST_INCLUDE = "us._netblocks.mimecast.com"
OUTLOOK_INCLUDE = "spf.protection.outlook.com"
MIMECAST_SPF = ("v=spf1 ip4:205.139.110.0/24 ip4:216.205.24.0/24 ip4:170.10.128.0/24 "
                "ip4:170.10.129.0/24 ~all")
OUTLOOK_SPF = ("v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/15 ip4:52.102.0.0/16 "
               "ip4:52.103.0.0/17 ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 ip6:2a01:111:f403::/49 "
               "ip6:2a01:111:f403:8000::/51 ip6:2a01:111:f403:c000::/51 "
               "ip6:2a01:111:f403:f000::/52 -all")
OUTBOUND = {"Name": "Mimecast outbound", "Enabled": True, "RecipientDomains": ["*"],
            "SmartHosts": ["us-smtp-o365-outbound-1.mimecast.com"], "IsTransportRuleScoped": False}
ALL_CHECKS = (dns.mx_around_gateway, dns.mx_usable, dns.spf_valid, dns.spf_too_permissive,
              dns.spf_matches_outbound, dns.dmarc_policy, dns.mta_sts)


# --- recorded answers ---------------------------------------------------------------------

def ok(name: str, rdtype: str, *records: str) -> DnsAnswer:
    return answer(name, rdtype, DnsStatus.OK, *records)


def txt(name: str, *texts: str) -> DnsAnswer:
    return ok(name, "TXT", *(txt_record(t) for t in texts))


def status(name: str, rdtype: str, found: DnsStatus) -> DnsAnswer:
    return answer(name, rdtype, found)


def mx(domain: str, *hosts: tuple[int, str]) -> DnsAnswer:
    return ok(domain, "MX", *(f"{pref} {host}." for pref, host in hosts))


def resolving(*hosts: str) -> list[DnsAnswer]:
    """A (one documentation address each) and AAAA nodata for each host."""
    out: list[DnsAnswer] = []
    for index, host in enumerate(hosts, start=10):
        out += [ok(host, "A", f"192.0.2.{index}"), status(host, "AAAA", DnsStatus.NODATA)]
    return out


def spf(record: str, domain: str = DOMAIN) -> DnsAnswer:
    return txt(domain, "MS=ms48192736", record)


def healthy(domain: str = DOMAIN) -> list[DnsAnswer]:
    """MX only Mimecast's, SPF include of Mimecast with -all, DMARC reject, MTA-STS, TLS-RPT."""
    return [
        mx(domain, *((10, h) for h in GATEWAY_MX)),
        *resolving(*GATEWAY_MX),
        spf(f"v=spf1 include:{MIMECAST_INCLUDE} -all", domain),
        txt(MIMECAST_INCLUDE, MIMECAST_SPF),
        txt(OUTLOOK_INCLUDE, OUTLOOK_SPF),
        txt(f"_dmarc.{domain}", f"v=DMARC1; p=reject; rua=mailto:dmarc@{domain}"),
        txt(f"_mta-sts.{domain}", "v=STSv1; id=20261125T000000"),
        txt(f"_smtp._tls.{domain}", f"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"),
    ]


def recorded(*overrides: DnsAnswer, domain: str = DOMAIN) -> DomainDns:
    """The healthy recording with some answers replaced (the first answer to a query wins)."""
    return DomainDns.build(domain, [*overrides, *healthy(domain)], f"dns/{domain}.json")


# --- running a check ------------------------------------------------------------------------

def store(files: Files, recordings: tuple[DomainDns, ...]) -> EvidenceStore:
    collections = {key: parse_evidence(SPECS[key], json.dumps(value).encode())
                   for key, value in files.items()}
    return EvidenceStore(collections, dns={d.domain: d for d in recordings})


def run(chk: Check, *recordings: DomainDns, files: Files | None = None,
        gateway: str | None = None) -> list[Finding]:
    evidence = store({"Get-AcceptedDomain": accepted(DOMAIN), **(files or {})}, recordings)
    context = AuditContext(evidence, resolve_gateway(evidence, builtin_profiles(), forced=gateway),
                           AS_OF)
    return run_check(chk, context)


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.status, f.resource, f.message) for f in findings]
    return findings[0]


def verdict(findings: list[Finding]) -> tuple[Status, Severity]:
    found = only(findings)
    return found.status, found.severity


def assert_points_at(finding: Finding, dd: DomainDns, name: str, rdtype: str) -> None:
    """The finding cites the recorded answer to ``name rdtype`` in ``dns/<domain>.json``."""
    index = [a.query for a in dd.answers].index(DnsQuery.of(name, rdtype))
    cited = [(e.file, e.pointer) for e in finding.evidence]
    assert (f"dns/{dd.domain}.json", f"/answers/{index}") in cited, cited


def mimecast_lock(**overrides: Any) -> dict[str, Any]:
    return connector(Name="Mimecast inbound", SenderIPAddresses=mimecast_us_ranges(), **overrides)


# --- every check ----------------------------------------------------------------------------

@pytest.mark.parametrize("chk", ALL_CHECKS, ids=lambda c: c.id)
def test_dns_not_collected_is_not_evaluated(chk: Check) -> None:
    found = only(run(chk, files={"Get-OutboundConnector": [OUTBOUND]}, gateway="mimecast"))
    assert found.status is Status.NOT_EVALUATED
    assert found.resource == "dns"
    assert "DNS was not collected" in found.message


@pytest.mark.parametrize("chk", ALL_CHECKS, ids=lambda c: c.id)
def test_legitimate_gateway_setup_passes(chk: Check) -> None:
    found = only(run(chk, recorded(), files={"Get-OutboundConnector": [OUTBOUND]}))
    assert (found.status, found.resource) == (Status.PASS, RESOURCE), found.message


@pytest.mark.parametrize("chk", ALL_CHECKS, ids=lambda c: c.id)
def test_accepted_domain_without_recorded_dns_is_not_evaluated(chk: Check) -> None:
    findings = run(chk, recorded(), files={"Get-AcceptedDomain": accepted(DOMAIN, "fabrikam.example"),
                                           "Get-OutboundConnector": [OUTBOUND]})
    found = only([f for f in findings if f.resource == "domain fabrikam.example"])
    assert found.status is Status.NOT_EVALUATED
    assert "no DNS answers were recorded for fabrikam.example" in found.message


# --- DNS-001: MX around the gateway ---------------------------------------------------------

@pytest.mark.parametrize("eop_host", [EOP_MX, "contoso-example.o-v1.mx.microsoft"])
@pytest.mark.parametrize("preference", [5, 20])
def test_dns001_eop_host_beside_gateway_fails_high(eop_host: str, preference: int) -> None:
    dd = recorded(mx(DOMAIN, (10, GATEWAY_MX[0]), (preference, eop_host)), *resolving(eop_host))
    found = only(run(dns.mx_around_gateway, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.HIGH, RESOURCE)
    assert f"{eop_host} (Exchange Online) at preference {preference}" in found.message
    assert_points_at(found, dd, DOMAIN, "MX")


def test_dns001_mx_only_eop_while_connectors_show_mimecast_fails_critical() -> None:
    dd = recorded(mx(DOMAIN, (0, EOP_MX)), *resolving(EOP_MX))
    found = only(run(dns.mx_around_gateway, dd,
                     files={"Get-InboundConnector": [mimecast_lock()]}))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.CRITICAL, RESOURCE)
    assert "does not name the gateway at all" in found.message
    assert_points_at(found, dd, DOMAIN, "MX")


def test_dns001_unknown_host_beside_gateway_fails_high() -> None:
    dd = recorded(mx(DOMAIN, (10, GATEWAY_MX[0]), (50, "backup-mx.contoso.example")),
                  *resolving("backup-mx.contoso.example"))
    found = only(run(dns.mx_around_gateway, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.HIGH, RESOURCE)
    assert "backup-mx.contoso.example (no known gateway)" in found.message
    assert_points_at(found, dd, DOMAIN, "MX")


def test_dns001_unknown_host_stays_high_even_with_a_partner_lock() -> None:
    dd = recorded(mx(DOMAIN, (10, GATEWAY_MX[0]), (50, "backup-mx.contoso.example")),
                  *resolving("backup-mx.contoso.example"))
    findings = run(dns.mx_around_gateway, dd, files={"Get-InboundConnector": [mimecast_lock()]})
    assert verdict(findings) == (Status.FAIL, Severity.HIGH)


def test_dns001_eop_host_closed_by_partner_lock_warns_low() -> None:
    dd = recorded(mx(DOMAIN, (10, GATEWAY_MX[0]), (20, EOP_MX)), *resolving(EOP_MX))
    found = only(run(dns.mx_around_gateway, dd, files={"Get-InboundConnector": [mimecast_lock()]}))
    assert (found.status, found.severity, found.resource) == (Status.WARN, Severity.LOW, RESOURCE)
    assert "Mimecast inbound" in found.message
    assert_points_at(found, dd, DOMAIN, "MX")
    assert ("exo/Get-InboundConnector.json", "/0/RestrictDomainsToIPAddresses") in [
        (e.file, e.pointer) for e in found.evidence]


def test_dns001_partner_connector_without_restriction_does_not_soften() -> None:
    dd = recorded(mx(DOMAIN, (10, GATEWAY_MX[0]), (20, EOP_MX)), *resolving(EOP_MX))
    findings = run(dns.mx_around_gateway, dd,
                   files={"Get-InboundConnector": [mimecast_lock(RestrictDomainsToIPAddresses=False)]})
    assert verdict(findings) == (Status.FAIL, Severity.HIGH)


def test_dns001_lock_for_another_accepted_domain_does_not_soften() -> None:
    dd = recorded(mx(DOMAIN, (10, GATEWAY_MX[0]), (20, EOP_MX)), *resolving(EOP_MX))
    lock = mimecast_lock(AssociatedAcceptedDomains=["fabrikam.example"])
    findings = run(dns.mx_around_gateway, dd, files={"Get-InboundConnector": [lock]})
    assert verdict(findings) == (Status.FAIL, Severity.HIGH)


def test_dns001_only_gateway_hosts_pass() -> None:
    found = only(run(dns.mx_around_gateway, recorded()))
    assert found.status is Status.PASS
    assert "Mimecast" in found.message


def test_dns001_null_mx_passes() -> None:
    dd = recorded(mx(DOMAIN, (0, "")))
    found = only(run(dns.mx_around_gateway, dd, gateway="mimecast"))
    assert (found.status, found.resource) == (Status.PASS, RESOURCE)
    assert "null MX" in found.message


def test_dns001_skips_initial_onmicrosoft_domain() -> None:
    initial = "contoso.onmicrosoft.com"
    findings = run(dns.mx_around_gateway, recorded(),
                   recorded(mx(initial, (0, "contoso.mail.protection.outlook.com")), domain=initial),
                   files={"Get-AcceptedDomain": accepted(DOMAIN, initial)})
    assert [(f.status, f.resource) for f in findings] == [(Status.PASS, RESOURCE)]


def test_dns001_without_any_known_gateway_is_not_evaluated() -> None:
    dd = recorded(mx(DOMAIN, (0, EOP_MX)), *resolving(EOP_MX))
    found = only(run(dns.mx_around_gateway, dd))
    assert found.status is Status.NOT_EVALUATED
    assert "--gateway" in found.message


def test_dns001_failed_mx_lookup_is_not_evaluated() -> None:
    dd = recorded(status(DOMAIN, "MX", DnsStatus.SERVFAIL))
    found = only(run(dns.mx_around_gateway, dd, gateway="mimecast"))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, RESOURCE)
    assert "servfail" in found.message
    assert_points_at(found, dd, DOMAIN, "MX")


def test_dns001_reads_recorded_dns_from_an_export_folder(make_export: MakeExport) -> None:
    dd = recorded(mx(DOMAIN, (10, GATEWAY_MX[0]), (20, EOP_MX)), *resolving(EOP_MX))
    folder = make_export({"Get-AcceptedDomain": accepted(DOMAIN)})
    (folder / "dns").mkdir()
    (folder / "dns" / f"{DOMAIN}.json").write_bytes(dd.to_bytes())
    found = only(findings_for(audit(folder), "DNS-001"))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.HIGH, RESOURCE)
    assert_points_at(found, dd, DOMAIN, "MX")


# --- DNS-002: usable MX ---------------------------------------------------------------------

def test_dns002_nxdomain_fails() -> None:
    dd = recorded(status(DOMAIN, "MX", DnsStatus.NXDOMAIN))
    found = only(run(dns.mx_usable, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.MEDIUM, RESOURCE)
    assert found.message == f"{DOMAIN} does not exist in DNS (NXDOMAIN), yet it is an accepted domain"
    assert_points_at(found, dd, DOMAIN, "MX")


def test_dns002_nxdomain_of_a_domain_not_accepted_does_not_call_it_accepted() -> None:
    other = "typo-contoso.example"
    found = only([f for f in run(dns.mx_usable, recorded(), recorded(status(other, "MX", DnsStatus.NXDOMAIN),
                                                                    domain=other))
                  if f.resource == f"domain {other}"])
    assert found.status is Status.FAIL
    assert found.message == f"{other} does not exist in DNS (NXDOMAIN), so no mail reaches it"


def test_dns002_no_mx_warns_low() -> None:
    dd = recorded(status(DOMAIN, "MX", DnsStatus.NODATA))
    found = only(run(dns.mx_usable, dd))
    assert (found.status, found.severity, found.resource) == (Status.WARN, Severity.LOW, RESOURCE)
    assert_points_at(found, dd, DOMAIN, "MX")


def test_dns002_mx_host_without_address_fails() -> None:
    dead = "old-mx.contoso.example"
    dd = recorded(mx(DOMAIN, (10, GATEWAY_MX[0]), (20, dead)),
                  status(dead, "A", DnsStatus.NXDOMAIN), status(dead, "AAAA", DnsStatus.NXDOMAIN))
    found = only(run(dns.mx_usable, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.MEDIUM, RESOURCE)
    assert dead in found.message and GATEWAY_MX[0] not in found.message
    assert_points_at(found, dd, DOMAIN, "MX")
    assert_points_at(found, dd, dead, "A")


def test_dns002_mx_host_with_only_aaaa_passes() -> None:
    host = "v6-mx.contoso.example"
    dd = recorded(mx(DOMAIN, (10, host)), status(host, "A", DnsStatus.NODATA),
                  ok(host, "AAAA", "2001:db8::25"))
    assert only(run(dns.mx_usable, dd)).status is Status.PASS


def test_dns002_failed_address_lookup_is_not_evaluated() -> None:
    host = GATEWAY_MX[1]
    dd = recorded(status(host, "A", DnsStatus.TIMEOUT), status(host, "AAAA", DnsStatus.NODATA))
    found = only(run(dns.mx_usable, dd))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, RESOURCE)
    assert host in found.message


def test_dns002_failed_mx_lookup_is_not_evaluated() -> None:
    dd = recorded(status(DOMAIN, "MX", DnsStatus.TIMEOUT))
    found = only(run(dns.mx_usable, dd))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, RESOURCE)
    assert "timeout" in found.message
    assert_points_at(found, dd, DOMAIN, "MX")


def test_dns002_null_mx_passes() -> None:
    found = only(run(dns.mx_usable, recorded(mx(DOMAIN, (0, "")))))
    assert (found.status, found.resource) == (Status.PASS, RESOURCE)
    assert "null MX" in found.message


# --- DNS-003: SPF broken or missing ---------------------------------------------------------

def leaves(*names: str) -> list[DnsAnswer]:
    return [txt(n, f"v=spf1 ip4:192.0.2.{i}/32 -all") for i, n in enumerate(names, start=1)]


def includes(*names: str) -> str:
    return " ".join(f"include:{n}" for n in names)


def test_dns003_no_spf_warns_medium() -> None:
    dd = recorded(txt(DOMAIN, "MS=ms48192736"))
    found = only(run(dns.spf_valid, dd))
    assert (found.status, found.severity, found.resource) == (Status.WARN, Severity.MEDIUM, RESOURCE)
    assert "no SPF record" in found.message
    assert_points_at(found, dd, DOMAIN, "TXT")


def test_dns003_eleven_lookups_across_includes_is_permerror() -> None:
    left = [f"l{i}.spf.example" for i in range(4)]
    right = [f"r{i}.spf.example" for i in range(5)]
    dd = recorded(spf("v=spf1 include:a.spf.example include:b.spf.example -all"),
                  txt("a.spf.example", f"v=spf1 {includes(*left)} -all"),
                  txt("b.spf.example", f"v=spf1 {includes(*right)} -all"),
                  *leaves(*left, *right))
    found = only(run(dns.spf_valid, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.HIGH, RESOURCE)
    assert "permerror" in found.message
    assert "11 DNS-querying terms" in found.message
    assert_points_at(found, dd, DOMAIN, "TXT")


def test_dns003_ten_lookups_is_within_the_limit() -> None:
    names = [f"l{i}.spf.example" for i in range(10)]
    dd = recorded(spf(f"v=spf1 {includes(*names)} -all"), *leaves(*names))
    found = only(run(dns.spf_valid, dd))
    assert found.status is Status.PASS
    assert "10 DNS-querying terms" in found.message


def test_dns003_two_spf_records_fail() -> None:
    dd = recorded(txt(DOMAIN, f"v=spf1 include:{MIMECAST_INCLUDE} -all",
                      "v=spf1 include:spf.protection.outlook.com -all"))
    found = only(run(dns.spf_valid, dd))
    assert (found.status, found.resource) == (Status.FAIL, RESOURCE)
    assert "2 SPF records" in found.message
    assert_points_at(found, dd, DOMAIN, "TXT")


def test_dns003_include_loop_fails() -> None:
    dd = recorded(spf("v=spf1 include:a.spf.example -all"),
                  txt("a.spf.example", "v=spf1 include:b.spf.example -all"),
                  txt("b.spf.example", "v=spf1 include:a.spf.example -all"))
    found = only(run(dns.spf_valid, dd))
    assert (found.status, found.resource) == (Status.FAIL, RESOURCE)
    assert "loop" in found.message
    assert_points_at(found, dd, DOMAIN, "TXT")


def test_dns003_names_each_permerror_once_with_the_includes_that_led_to_it() -> None:
    dd = recorded(spf("v=spf1 include:a.spf.example include:b.spf.example -all"),
                  txt("a.spf.example", "v=spf1 include:c.spf.example -all"),
                  txt("c.spf.example", "v=spf1 include:a.spf.example -all"),
                  txt("b.spf.example", "v=spf1 ip4:192.0.2.0/24 -all", "v=spf1 -all"))
    found = only(run(dns.spf_valid, dd))
    assert found.status is Status.FAIL
    loop = "include loop: a.spf.example -> c.spf.example -> a.spf.example"
    twice = "b.spf.example publishes 2 SPF records"
    assert found.message.count(loop) == 1 and found.message.count(twice) == 1, found.message
    assert f"(via {DOMAIN} -> a.spf.example -> c.spf.example)" in found.message
    assert f"(via {DOMAIN} -> b.spf.example)" in found.message
    assert found.message.endswith("4 DNS-querying terms (limit 10), 0 void lookups (limit 2)")


def test_dns003_a_cause_in_the_domains_own_record_has_no_chain() -> None:
    dd = recorded(txt(DOMAIN, "v=spf1 -all", "v=spf1 +all"))
    found = only(run(dns.spf_valid, dd))
    assert found.message == (f"SPF permerror: {DOMAIN} publishes 2 SPF records (4.5); "
                             "0 DNS-querying terms (limit 10), 0 void lookups (limit 2)")


def test_dns003_include_servfail_is_temperror_warning() -> None:
    dd = recorded(status(MIMECAST_INCLUDE, "TXT", DnsStatus.SERVFAIL))
    found = only(run(dns.spf_valid, dd))
    assert (found.status, found.severity, found.resource) == (Status.WARN, Severity.MEDIUM, RESOURCE)
    assert "temperror" in found.message and "servfail" in found.message
    assert_points_at(found, dd, DOMAIN, "TXT")


def test_dns003_failed_spf_lookup_is_never_a_pass() -> None:
    # The domain's own record could not be read at all: nothing can be said about its SPF.
    dd = recorded(status(DOMAIN, "TXT", DnsStatus.TIMEOUT))
    found = only(run(dns.spf_valid, dd))
    assert found.status is Status.NOT_EVALUATED
    assert "timeout" in found.message


def test_dns003_lookup_missing_from_recording_is_not_evaluated() -> None:
    dd = recorded(spf("v=spf1 include:unrecorded.spf.example -all"))
    found = only(run(dns.spf_valid, dd))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, RESOURCE)
    assert "lacks lookups" in found.message


def test_dns003_valid_spf_passes() -> None:
    found = only(run(dns.spf_valid, recorded()))
    assert found.status is Status.PASS
    assert "1 DNS-querying term (limit 10), 0 void lookups (limit 2)" in found.message


# --- DNS-004: SPF too permissive ------------------------------------------------------------

@pytest.mark.parametrize(("term", "says"), [("+all", "every sender passes"),
                                             ("?all", "no sender is ever refused")])
def test_dns004_permissive_all_fails(term: str, says: str) -> None:
    dd = recorded(spf(f"v=spf1 include:{MIMECAST_INCLUDE} {term}"))
    found = only(run(dns.spf_too_permissive, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.HIGH, RESOURCE)
    assert term in found.message and says in found.message
    assert_points_at(found, dd, DOMAIN, "TXT")


def test_dns004_wide_range_of_its_own_fails() -> None:
    dd = recorded(spf(f"v=spf1 ip4:10.0.0.0/8 include:{MIMECAST_INCLUDE} -all"))
    found = only(run(dns.spf_too_permissive, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.HIGH, RESOURCE)
    assert "10.0.0.0/8" in found.message
    assert_points_at(found, dd, DOMAIN, "TXT")


@pytest.mark.parametrize(("network", "flagged"), [("ip4:172.16.0.0/16", True),
                                                  ("ip4:172.16.0.0/17", False),
                                                  ("ip6:2001:db8::/32", True),
                                                  ("ip6:2001:db8::/33", False)])
def test_dns004_wide_means_a_16_or_wider(network: str, flagged: bool) -> None:
    dd = recorded(spf(f"v=spf1 {network} include:{MIMECAST_INCLUDE} -all"))
    found = only(run(dns.spf_too_permissive, dd))
    assert (found.status is Status.FAIL) is flagged, found.message


def test_dns004_names_each_wide_range_it_authorises_in_order() -> None:
    """Which networks of a record are wide and authorised is worked out once per record (shared
    by every domain including it): each record still gets its own answer."""
    wide = recorded(spf("v=spf1 ip4:10.0.0.0/8 ip4:192.0.2.0/24 ?ip4:11.0.0.0/8 "
                        f"ip4:172.16.0.0/12 include:{MIMECAST_INCLUDE} -all"))
    narrow = recorded(spf(f"v=spf1 ip4:192.0.2.0/24 ?ip4:11.0.0.0/8 include:{MIMECAST_INCLUDE} -all"))
    for _ in range(2):
        found = only(run(dns.spf_too_permissive, wide))
        assert found.message == (f"SPF authorises very wide ranges: 10.0.0.0/8 (in {DOMAIN}), "
                                 f"172.16.0.0/12 (in {DOMAIN})")
        assert only(run(dns.spf_too_permissive, narrow)).status is Status.PASS


def test_dns004_names_the_include_chain_of_a_wide_range_once_each() -> None:
    dd = recorded(spf(f"v=spf1 include:wide.example include:{MIMECAST_INCLUDE} -all"),
                  spf("v=spf1 include:wider.example ~all", "wide.example"),
                  spf("v=spf1 ip4:10.0.0.0/8 -all", "wider.example"))
    found = only(run(dns.spf_too_permissive, dd))
    assert found.message == ("SPF authorises very wide ranges: 10.0.0.0/8 "
                             f"(in {DOMAIN} -> wide.example -> wider.example)")


def test_dns004_microsoft_include_ranges_are_not_flagged() -> None:
    dd = recorded(spf(f"v=spf1 include:{MIMECAST_INCLUDE} include:{OUTLOOK_INCLUDE} -all"))
    found = only(run(dns.spf_too_permissive, dd))
    assert found.status is Status.PASS, found.message


def test_dns004_no_all_term_warns_medium() -> None:
    dd = recorded(spf(f"v=spf1 include:{MIMECAST_INCLUDE}"))
    found = only(run(dns.spf_too_permissive, dd))
    assert (found.status, found.severity, found.resource) == (Status.WARN, Severity.MEDIUM, RESOURCE)
    assert_points_at(found, dd, DOMAIN, "TXT")


@pytest.mark.parametrize("term", ["-all", "~all"])
def test_dns004_strict_all_passes(term: str) -> None:
    dd = recorded(spf(f"v=spf1 include:{MIMECAST_INCLUDE} {term}"))
    found = only(run(dns.spf_too_permissive, dd))
    assert found.status is Status.PASS
    assert term in found.message


def test_dns004_failed_spf_lookup_is_not_evaluated() -> None:
    dd = recorded(status(DOMAIN, "TXT", DnsStatus.TIMEOUT))
    found = only(run(dns.spf_too_permissive, dd))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, RESOURCE), found.message
    assert "timeout" in found.message


def test_dns004_failed_include_lookup_is_not_a_pass() -> None:
    dd = recorded(spf("v=spf1 include:partner.spf.example -all"),
                  status("partner.spf.example", "TXT", DnsStatus.SERVFAIL))
    found = only(run(dns.spf_too_permissive, dd))
    assert found.status is Status.NOT_EVALUATED, found.message
    assert "servfail" in found.message


def test_dns004_lookup_missing_from_recording_is_not_evaluated() -> None:
    dd = recorded(spf("v=spf1 include:unrecorded.spf.example -all"))
    assert only(run(dns.spf_too_permissive, dd)).status is Status.NOT_EVALUATED


# --- DNS-005: SPF vs the outbound path ------------------------------------------------------

def outbound(**overrides: Any) -> Files:
    return {"Get-OutboundConnector": [{**OUTBOUND, **overrides}]}


def test_dns005_spf_without_gateway_include_fails_medium() -> None:
    dd = recorded(spf(f"v=spf1 include:{OUTLOOK_INCLUDE} -all"))
    found = only(run(dns.spf_matches_outbound, dd, files=outbound()))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.MEDIUM, RESOURCE)
    assert "Mimecast outbound" in found.message
    assert_points_at(found, dd, DOMAIN, "TXT")
    assert ("exo/Get-OutboundConnector.json", "/0/SmartHosts") in [
        (e.file, e.pointer) for e in found.evidence]


def test_dns005_exchange_online_include_beside_gateway_warns_low() -> None:
    dd = recorded(spf(f"v=spf1 include:{MIMECAST_INCLUDE} include:{OUTLOOK_INCLUDE} -all"))
    found = only(run(dns.spf_matches_outbound, dd, files=outbound()))
    assert (found.status, found.severity, found.resource) == (Status.WARN, Severity.LOW, RESOURCE)
    assert OUTLOOK_INCLUDE in found.message
    assert_points_at(found, dd, DOMAIN, "TXT")


def test_dns005_only_gateway_include_passes() -> None:
    found = only(run(dns.spf_matches_outbound, recorded(), files=outbound()))
    assert (found.status, found.resource) == (Status.PASS, RESOURCE)


def test_dns005_parked_domain_that_authorises_nobody_passes() -> None:
    found = only(run(dns.spf_matches_outbound, recorded(spf("v=spf1 -all")), files=outbound()))
    assert (found.status, found.resource) == (Status.PASS, RESOURCE)
    assert "authorises no sender" in found.message


def test_dns005_gateway_named_by_an_a_term_passes() -> None:
    """Proofpoint Essentials documents its SPF as a:dispatch-us.ppe-hosted.com, not an include."""
    dispatch = "dispatch-us.ppe-hosted.com"
    dd = recorded(spf(f"v=spf1 a:{dispatch} -all"), ok(dispatch, "A", "192.0.2.80"),
                  status(dispatch, "AAAA", DnsStatus.NODATA))
    files = outbound(SmartHosts=["outbound-us1.ppe-hosted.com"])
    found = only(run(dns.spf_matches_outbound, dd, files=files, gateway="proofpoint-essentials"))
    assert (found.status, found.resource) == (Status.PASS, RESOURCE)
    stranger = recorded(spf("v=spf1 a:mail.contoso.example -all"),
                        ok("mail.contoso.example", "A", "192.0.2.81"),
                        status("mail.contoso.example", "AAAA", DnsStatus.NODATA))
    assert only(run(dns.spf_matches_outbound, stranger, files=files,
                    gateway="proofpoint-essentials")).status is Status.FAIL


def test_dns001_api_deployed_gateway_expects_the_mx_at_exchange_online(tmp_path: Path) -> None:
    from auditor.gateways import load_profile_file

    profile = tmp_path / "api.toml"
    profile.write_text('schema_version = 1\nid = "api-product"\nname = "API product"\n'
                       'vendor = "Example"\ndeployment = "api"\n')
    dd = recorded(mx(DOMAIN, (0, EOP_MX)), *resolving(EOP_MX))
    evidence = store({"Get-AcceptedDomain": accepted(DOMAIN)}, (dd,))
    gateway = resolve_gateway(evidence, builtin_profiles(), forced="api-product",
                              user_profile=load_profile_file(profile))
    found = only(run_check(dns.mx_around_gateway, AuditContext(evidence, gateway, AS_OF)))
    assert (found.status, found.resource) == (Status.PASS, RESOURCE)
    assert "through its API" in found.message


def test_dns005_transport_rule_scoped_connector_does_not_count() -> None:
    dd = recorded(spf(f"v=spf1 include:{OUTLOOK_INCLUDE} -all"))
    found = only(run(dns.spf_matches_outbound, dd, files=outbound(IsTransportRuleScoped=True)))
    assert found.status is Status.PASS
    assert "no enabled outbound connector sends all mail through" in found.message


def test_dns005_disabled_connector_does_not_count() -> None:
    dd = recorded(spf(f"v=spf1 include:{OUTLOOK_INCLUDE} -all"))
    found = only(run(dns.spf_matches_outbound, dd, files=outbound(Enabled=False)))
    assert found.status is Status.PASS
    assert "no enabled outbound connector sends all mail through" in found.message


def test_dns005_missing_outbound_connectors_is_not_evaluated() -> None:
    found = only(run(dns.spf_matches_outbound, recorded()))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, "Get-OutboundConnector")


def test_dns005_failed_spf_lookup_is_not_evaluated() -> None:
    dd = recorded(status(DOMAIN, "TXT", DnsStatus.TIMEOUT))
    found = only(run(dns.spf_matches_outbound, dd, files=outbound()))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, RESOURCE)
    assert "temperror" in found.message


# --- DNS-006: DMARC -------------------------------------------------------------------------

def dmarc(record: str, domain: str = DOMAIN) -> DnsAnswer:
    return txt(f"_dmarc.{domain}", record)


def test_dns006_no_dmarc_fails_high() -> None:
    dd = recorded(status(f"_dmarc.{DOMAIN}", "TXT", DnsStatus.NXDOMAIN))
    found = only(run(dns.dmarc_policy, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.HIGH, RESOURCE)
    assert_points_at(found, dd, f"_dmarc.{DOMAIN}", "TXT")


def test_dns006_policy_none_fails_medium() -> None:
    dd = recorded(dmarc("v=DMARC1; p=none; rua=mailto:dmarc@contoso.example"))
    found = only(run(dns.dmarc_policy, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.MEDIUM, RESOURCE)
    assert "none" in found.message
    assert_points_at(found, dd, f"_dmarc.{DOMAIN}", "TXT")


def test_dns006_partial_pct_warns() -> None:
    dd = recorded(dmarc("v=DMARC1; p=reject; pct=50"))
    found = only(run(dns.dmarc_policy, dd))
    assert (found.status, found.resource) == (Status.WARN, RESOURCE)
    assert "50%" in found.message
    assert_points_at(found, dd, f"_dmarc.{DOMAIN}", "TXT")


def test_dns006_weaker_subdomain_policy_warns() -> None:
    dd = recorded(dmarc("v=DMARC1; p=reject; sp=none"))
    found = only(run(dns.dmarc_policy, dd))
    assert (found.status, found.resource) == (Status.WARN, RESOURCE)
    assert "sp=none" in found.message
    assert_points_at(found, dd, f"_dmarc.{DOMAIN}", "TXT")


def test_dns006_names_a_partial_pct_and_a_weaker_subdomain_policy_together() -> None:
    dd = recorded(dmarc("v=DMARC1; p=quarantine; pct=20; sp=none"))
    found = only(run(dns.dmarc_policy, dd))
    assert (found.status, found.severity) == (Status.WARN, Severity.MEDIUM)
    assert "only 20% of failing mail" in found.message
    assert "weaker policy (sp=none) than the domain (p=quarantine)" in found.message
    assert_points_at(found, dd, f"_dmarc.{DOMAIN}", "TXT")


def test_dns006_subdomain_inherits_the_parents_sp() -> None:
    dd = recorded(status(f"_dmarc.{SUBDOMAIN}", "TXT", DnsStatus.NXDOMAIN),
                  dmarc("v=DMARC1; p=reject; sp=none"), domain=SUBDOMAIN)
    found = only(run(dns.dmarc_policy, dd, files={"Get-AcceptedDomain": accepted(SUBDOMAIN)}))
    assert (found.status, found.severity, found.resource) == (
        Status.FAIL, Severity.MEDIUM, f"domain {SUBDOMAIN}")
    assert f"inherited from _dmarc.{DOMAIN}" in found.message
    assert_points_at(found, dd, f"_dmarc.{DOMAIN}", "TXT")


def test_dns006_subdomain_ignores_the_parents_p_when_sp_is_set() -> None:
    dd = recorded(status(f"_dmarc.{SUBDOMAIN}", "TXT", DnsStatus.NXDOMAIN),
                  dmarc("v=DMARC1; p=none; sp=reject"), domain=SUBDOMAIN)
    found = only(run(dns.dmarc_policy, dd, files={"Get-AcceptedDomain": accepted(SUBDOMAIN)}))
    assert found.status is Status.PASS, found.message


def test_dns006_two_dmarc_records_fail() -> None:
    dd = recorded(txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject", "v=DMARC1; p=none"))
    found = only(run(dns.dmarc_policy, dd))
    assert (found.status, found.resource) == (Status.FAIL, RESOURCE)
    assert "2 DMARC records" in found.message
    assert_points_at(found, dd, f"_dmarc.{DOMAIN}", "TXT")


def test_dns006_invalid_policy_fails_medium() -> None:
    dd = recorded(dmarc("v=DMARC1; p=block"))
    found = only(run(dns.dmarc_policy, dd))
    assert (found.status, found.severity, found.resource) == (Status.FAIL, Severity.MEDIUM, RESOURCE)
    assert "invalid" in found.message
    assert_points_at(found, dd, f"_dmarc.{DOMAIN}", "TXT")


def test_dns006_reject_passes() -> None:
    found = only(run(dns.dmarc_policy, recorded()))
    assert found.status is Status.PASS
    assert "p=reject" in found.message


def test_dns006_failed_lookup_is_not_evaluated() -> None:
    dd = recorded(status(f"_dmarc.{DOMAIN}", "TXT", DnsStatus.SERVFAIL))
    found = only(run(dns.dmarc_policy, dd))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, RESOURCE)
    assert "servfail" in found.message
    assert_points_at(found, dd, f"_dmarc.{DOMAIN}", "TXT")


# --- DNS-007: MTA-STS and TLS-RPT -----------------------------------------------------------

def test_dns007_neither_record_warns_low() -> None:
    dd = recorded(status(f"_mta-sts.{DOMAIN}", "TXT", DnsStatus.NXDOMAIN),
                  status(f"_smtp._tls.{DOMAIN}", "TXT", DnsStatus.NXDOMAIN))
    found = only(run(dns.mta_sts, dd))
    assert (found.status, found.severity, found.resource) == (Status.WARN, Severity.LOW, RESOURCE)
    assert "no MTA-STS record" in found.message and "no TLS-RPT record" in found.message
    assert_points_at(found, dd, f"_mta-sts.{DOMAIN}", "TXT")
    assert_points_at(found, dd, f"_smtp._tls.{DOMAIN}", "TXT")


def test_dns007_both_records_pass() -> None:
    dd = recorded()
    found = only(run(dns.mta_sts, dd))
    assert found.status is Status.PASS
    assert_points_at(found, dd, f"_mta-sts.{DOMAIN}", "TXT")


def test_dns007_mta_sts_without_id_warns() -> None:
    dd = recorded(txt(f"_mta-sts.{DOMAIN}", "v=STSv1"))
    found = only(run(dns.mta_sts, dd))
    assert (found.status, found.severity, found.resource) == (Status.WARN, Severity.LOW, RESOURCE)
    assert "no id= tag" in found.message
    assert_points_at(found, dd, f"_mta-sts.{DOMAIN}", "TXT")


def test_dns007_null_mx_passes() -> None:
    dd = recorded(mx(DOMAIN, (0, "")), status(f"_mta-sts.{DOMAIN}", "TXT", DnsStatus.NXDOMAIN),
                  status(f"_smtp._tls.{DOMAIN}", "TXT", DnsStatus.NXDOMAIN))
    found = only(run(dns.mta_sts, dd))
    assert (found.status, found.resource) == (Status.PASS, RESOURCE)
    assert "null MX" in found.message


def test_dns007_failed_lookup_is_not_evaluated() -> None:
    dd = recorded(status(f"_mta-sts.{DOMAIN}", "TXT", DnsStatus.TIMEOUT))
    found = only(run(dns.mta_sts, dd))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, RESOURCE), found.message
    assert "timeout" in found.message


def test_the_domain_lists_shared_by_an_audit_s_checks_keep_outbound_only_domains_apart() -> None:
    """The checks of one audit share the domains they judge (listed once per audit): receiving
    checks still skip an outbound-only domain that sender checks judge, and another audit gets
    its own lists."""
    sender = "send.contoso.example"
    domains = [*accepted(DOMAIN), {**accepted(sender)[0], "Default": False, "OutboundOnly": True}]
    evidence = store({"Get-AcceptedDomain": domains}, (recorded(),))
    context = AuditContext(evidence, resolve_gateway(evidence, builtin_profiles()), AS_OF)
    receiving = run_check(dns.mx_usable, context)
    sending = run_check(dns.spf_valid, context)
    assert [f.resource for f in receiving] == [RESOURCE]
    assert [(f.resource, f.status) for f in sending] == [
        (RESOURCE, Status.PASS), (f"domain {sender}", Status.NOT_EVALUATED)]
    other = store({"Get-AcceptedDomain": accepted(DOMAIN)}, (recorded(),))
    alone = AuditContext(other, resolve_gateway(other, builtin_profiles()), AS_OF)
    assert [f.resource for f in run_check(dns.spf_valid, alone)] == [RESOURCE]
