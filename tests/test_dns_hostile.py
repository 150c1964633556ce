"""Hostile zones and servers: each gives a clear finding or `not_evaluated` through the audit of
what was recorded, never a hang or a crash.

Real record shapes (loops, long records, non-ASCII, aliases) come from Knot; what a real server
cannot be made to do for one name (silence, SERVFAIL, truncation, garbage) from the DNS double.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.audit import Report, run_audit
from auditor.cli import main
from auditor.dnscollect import collect
from auditor.dnsevidence import NOT_RECORDED, DomainDns
from auditor.dnsmodel import DnsStatus
from auditor.dnsresolve import Nameserver, Resolver
from auditor.engine import Finding, Status, discover
from auditor.snapshot import import_export_folder, with_dns
from tests.conftest import accepted, connector, mimecast_us_ranges
from tests.dnsdouble import DnsDouble
from tests.dnsserver import KnotFactory

LIMIT = 10.0  # seconds: a generous bound on every test, never a tight timing assertion
TIMEOUT = 2.0  # per query to Knot, which answers at once
DEAD_TIMEOUT = 0.3  # --dns-timeout for the server that never answers

MakeExport = Callable[..., Path]

# An SPF record of exactly 4,000 bytes, published as 16 strings of 250 bytes (a string holds 255
# at most). Terms straddle string boundaries on purpose: RFC 7208 3.3 joins strings as they are.
BIG_TERMS = 227
_big = "v=spf1" + "".join(f" ip4:10.{i // 256}.{i % 256}.0/24" for i in range(BIG_TERMS))
BIG_SPF = _big + " " * (4000 - len(_big) - len(" -all")) + " -all"  # a few spaces of padding
BIG_STRINGS = [BIG_SPF[i:i + 250] for i in range(0, len(BIG_SPF), 250)]
assert len(BIG_SPF) == 4000 and len(BIG_STRINGS) == 16

CHAIN_DEPTH = 50
CHAIN = "\n".join(f'chain{i} TXT "v=spf1 include:chain{i + 1}.hostile.test -all"'
                  for i in range(CHAIN_DEPTH)) + f'\nchain{CHAIN_DEPTH} TXT "v=spf1 ip4:192.0.2.9 -all"'

HOSTILE = f"""\
loop                 TXT   "v=spf1 include:loop-b.hostile.test -all"
loop-b               TXT   "v=spf1 include:loop.hostile.test -all"
deep                 TXT   "v=spf1 include:chain0.hostile.test -all"
{CHAIN}
big                  TXT   {" ".join(f'"{s}"' for s in BIG_STRINGS)}
twice                TXT   "v=spf1 ip4:192.0.2.1 -all"
twice                TXT   "v=spf1 ip4:192.0.2.2 -all"
accent               TXT   "v=spf1 ip4:192.0.2.1 include:b\\195\\188cher.test -all"
cname-mx             MX    10 mx-a.hostile.test.
mx-a                 CNAME mx-b
mx-b                 CNAME mx-a
cname-dkim           TXT   "v=spf1 ip4:192.0.2.1 -all"
selector1._domainkey.cname-dkim CNAME dkim-b.elsewhere.test.
cname-spf            TXT   "v=spf1 include:spf-a.hostile.test -all"
spf-a                CNAME spf-b.elsewhere.test.
"""
# The other half of the cross-zone loops: Knot does not chase an alias out of its zone, so the
# resolver follows it (and must stop).
ELSEWHERE = """\
dkim-b  CNAME selector1._domainkey.cname-dkim.hostile.test.
spf-b   CNAME spf-a.hostile.test.
"""
# bücher.test in its A-label form, as it lives in DNS.
IDN = """\
@       MX   10 mx
mx      A    192.0.2.5
@       TXT  "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc  TXT  "v=DMARC1; p=reject"
"""
IDN_DOMAIN = "bücher.test"
IDN_A_LABEL = "xn--bcher-kva.test"


@pytest.fixture(autouse=True)
def _finishes_quickly() -> Iterator[None]:
    started = time.monotonic()
    yield
    assert time.monotonic() - started < LIMIT, "the test took longer than it ever should"


@pytest.fixture(scope="module")
def hostile_server(knot_session_factory: KnotFactory) -> tuple[str, int]:
    return knot_session_factory({"hostile.test": HOSTILE, "elsewhere.test": ELSEWHERE,
                                 IDN_A_LABEL: IDN}).address


def resolver_for(address: tuple[str, int], timeout: float = TIMEOUT) -> Resolver:
    return Resolver([Nameserver(*address)], timeout=timeout)


async def collect_from(address: tuple[str, int], domain: str, timeout: float = TIMEOUT) -> DomainDns:
    (found,) = await asyncio.wait_for(collect([domain], resolver_for(address, timeout)), LIMIT)
    return found


def collect_now(address: tuple[str, int], domain: str) -> DomainDns:
    return asyncio.run(collect_from(address, domain))


def audit_recorded(make_export: MakeExport, recorded: DomainDns, domain: str | None = None) -> Report:
    """Audit the recording for a tenant that accepts the domain, behind a locked-down Mimecast."""
    folder = make_export({
        "Get-AcceptedDomain": accepted(domain or recorded.domain),
        "Get-InboundConnector": [connector(Name="Mimecast inbound",
                                           SenderIPAddresses=mimecast_us_ranges())],
    })
    report = run_audit(with_dns(import_export_folder(folder), [recorded]), discover())
    crashed = [f"{f.check_id}: {f.message}" for f in report.findings if f.status is Status.ERROR]
    assert crashed == []
    return report


def finding(report: Report, check_id: str, domain: str) -> Finding:
    (found,) = [f for f in report.findings
                if f.check_id == check_id and f.resource == f"domain {domain}"]
    return found


# ---------------------------------------------------------------------------------------------
# Hostile zones (Knot)


def test_an_spf_include_loop_is_a_permerror(hostile_server: tuple[str, int],
                                           make_export: MakeExport) -> None:
    report = audit_recorded(make_export, collect_now(hostile_server, "loop.hostile.test"))
    found = finding(report, "DNS-003", "loop.hostile.test")
    assert found.status is Status.FAIL
    assert "include loop: loop.hostile.test -> loop-b.hostile.test -> loop.hostile.test" in found.message


def test_a_50_deep_include_chain_is_a_permerror(hostile_server: tuple[str, int],
                                                make_export: MakeExport) -> None:
    report = audit_recorded(make_export, collect_now(hostile_server, "deep.hostile.test"))
    found = finding(report, "DNS-003", "deep.hostile.test")
    assert found.status is Status.FAIL
    assert "SPF permerror" in found.message and "deeper than 10" in found.message


def test_a_50_deep_include_chain_is_not_followed_to_its_end(hostile_server: tuple[str, int]) -> None:
    recorded = collect_now(hostile_server, "deep.hostile.test")
    asked = [a.query.name for a in recorded.answers if a.query.name.startswith("chain")]
    assert 0 < len(asked) <= 12
    assert recorded.get(f"chain{CHAIN_DEPTH}.hostile.test", "TXT").detail == NOT_RECORDED


def test_a_4000_byte_txt_record_in_16_strings_is_recorded_whole(hostile_server: tuple[str, int]) -> None:
    found = collect_now(hostile_server, "big.hostile.test").get("big.hostile.test", "TXT")
    assert found.status is DnsStatus.OK
    assert found.txt() == [BIG_SPF.encode()]
    assert found.records[0].count('" "') == 15  # 16 strings, as published
    assert found.tcp is True  # larger than the EDNS payload: truncated over UDP, then TCP


def test_a_4000_byte_spf_record_is_still_parsed(hostile_server: tuple[str, int],
                                                make_export: MakeExport) -> None:
    report = audit_recorded(make_export, collect_now(hostile_server, "big.hostile.test"))
    found = finding(report, "DNS-003", "big.hostile.test")
    assert found.status is Status.WARN
    assert "the record is 4000 bytes" in found.message
    assert finding(report, "DNS-004", "big.hostile.test").status is Status.PASS  # every /24 was read


def test_two_spf_records_are_a_permerror(hostile_server: tuple[str, int], make_export: MakeExport) -> None:
    report = audit_recorded(make_export, collect_now(hostile_server, "twice.hostile.test"))
    found = finding(report, "DNS-003", "twice.hostile.test")
    assert found.status is Status.FAIL
    assert "publishes 2 SPF records" in found.message


def test_non_ascii_in_an_spf_record_is_a_permerror(hostile_server: tuple[str, int],
                                                   make_export: MakeExport) -> None:
    report = audit_recorded(make_export, collect_now(hostile_server, "accent.hostile.test"))
    found = finding(report, "DNS-003", "accent.hostile.test")
    assert found.status is Status.FAIL
    assert "non-ASCII" in found.message


def test_an_idna_domain_is_recorded_under_its_a_label(hostile_server: tuple[str, int]) -> None:
    recorded = collect_now(hostile_server, IDN_DOMAIN)
    assert recorded.file == f"dns/{IDN_A_LABEL}.json"
    assert recorded.get(IDN_DOMAIN, "MX").mx() == [(10, f"mx.{IDN_A_LABEL}")]
    assert DomainDns.from_bytes(recorded.to_bytes(), recorded.file) == recorded


def test_an_idna_domains_spf_record_is_collected_and_evaluated(hostile_server: tuple[str, int],
                                                               make_export: MakeExport) -> None:
    # The domain publishes a valid SPF record (at its A-label, where DNS keeps it). RFC 7208 4.3
    # asks for A-labels: the record must be read and judged, not reported as missing.
    report = audit_recorded(make_export, collect_now(hostile_server, IDN_DOMAIN))
    spf = [f for f in report.findings if f.check_id == "DNS-003"
           and f.resource in (f"domain {IDN_DOMAIN}", f"domain {IDN_A_LABEL}")]
    assert spf, "no DNS-003 result for the IDNA domain"
    assert [(f.status, f.message) for f in spf if f.status is not Status.PASS] == []


def test_an_mx_host_in_a_cname_loop_is_not_evaluated(hostile_server: tuple[str, int],
                                                     make_export: MakeExport) -> None:
    recorded = collect_now(hostile_server, "cname-mx.hostile.test")
    assert recorded.get("mx-a.hostile.test", "A").status is DnsStatus.ERROR
    found = finding(audit_recorded(make_export, recorded), "DNS-002", "cname-mx.hostile.test")
    assert found.status is Status.NOT_EVALUATED
    assert "mx-a.hostile.test" in found.message


def test_a_dkim_selector_in_a_cname_loop_is_recorded_as_an_error(hostile_server: tuple[str, int]) -> None:
    # selector1._domainkey.cname-dkim.hostile.test -> dkim-b.elsewhere.test -> back again.
    recorded = collect_now(hostile_server, "cname-dkim.hostile.test")
    name = "selector1._domainkey.cname-dkim.hostile.test"
    found = recorded.get(name, "TXT")
    filed = [a.query.name for a in recorded.answers if "dkim" in a.query.name]
    assert found.detail != NOT_RECORDED, f"the loop's answer was filed under {filed}"
    assert found.status is DnsStatus.ERROR
    assert found.detail is not None and "loop" in found.detail


def test_a_dkim_selector_in_a_cname_loop_breaks_no_check(hostile_server: tuple[str, int],
                                                         make_export: MakeExport) -> None:
    report = audit_recorded(make_export, collect_now(hostile_server, "cname-dkim.hostile.test"))
    assert finding(report, "DNS-003", "cname-dkim.hostile.test").status is Status.PASS


def test_an_spf_include_in_a_cname_loop_is_an_spf_finding(hostile_server: tuple[str, int],
                                                               make_export: MakeExport) -> None:
    # include:spf-a.hostile.test, an alias into another zone that aliases straight back.
    report = audit_recorded(make_export, collect_now(hostile_server, "cname-spf.hostile.test"))
    found = finding(report, "DNS-003", "cname-spf.hostile.test")
    assert found.status in (Status.WARN, Status.FAIL), found.message  # temperror, or permerror
    assert "spf-a.hostile.test" in found.message


# ---------------------------------------------------------------------------------------------
# Hostile servers (the DNS double)


DEAD = "dead.test"
DEAD_LOOKUPS = [(DEAD, "MX"), (DEAD, "TXT"), (f"_dmarc.{DEAD}", "TXT"), (f"_mta-sts.{DEAD}", "TXT"),
                (f"_smtp._tls.{DEAD}", "TXT"), (f"selector1._domainkey.{DEAD}", "TXT"),
                (f"selector2._domainkey.{DEAD}", "TXT")]


@pytest.fixture(scope="module")
def dead_server_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], float]:
    """`audit --dns-timeout 0.3` against a server that drops every query: the report, and how
    long the whole audit took."""
    folder = tmp_path_factory.mktemp("dead") / "export"
    folder.mkdir()
    (folder / "Get-AcceptedDomain.json").write_text(json.dumps(accepted(DEAD)))
    inbound = [connector(Name="Mimecast inbound", SenderIPAddresses=mimecast_us_ranges())]
    (folder / "Get-InboundConnector.json").write_text(json.dumps(inbound))
    out = io.StringIO()
    with DnsDouble() as double:
        for name, rdtype in DEAD_LOOKUPS:
            double.drop(name, rdtype)
        host, port = double.address
        started = time.monotonic()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            main(["audit", str(folder), "--nameserver", f"{host}:{port}",
                  "--dns-timeout", str(DEAD_TIMEOUT), "--format", "json"])
        elapsed = time.monotonic() - started
        assert double.count(DEAD, "MX") >= 1  # the queries did reach the silent server
    return json.loads(out.getvalue()), elapsed


def test_a_server_that_never_answers_costs_bounded_time(
        dead_server_audit: tuple[dict[str, Any], float]) -> None:
    _, elapsed = dead_server_audit
    assert elapsed < LIMIT


@pytest.mark.parametrize("check_id", ["DNS-001", "DNS-002", "DNS-003", "DNS-004"])
def test_a_server_that_never_answers_leaves_mx_and_spf_checks_not_evaluated(
        dead_server_audit: tuple[dict[str, Any], float], check_id: str) -> None:
    report, _ = dead_server_audit
    (found,) = [f for f in report["findings"]
                if f["check_id"] == check_id and f["resource"] == f"domain {DEAD}"]
    assert found["status"] == "not_evaluated", found["message"]
    assert "timeout" in found["message"], found["message"]


async def test_a_truncated_udp_answer_is_retried_over_tcp_and_recorded_so() -> None:
    async with DnsDouble() as double:
        double.truncate("tc.test", "TXT", '"v=spf1 ip4:192.0.2.0/24 -all"')
        recorded = await collect_from(double.address, "tc.test")
        assert double.count("tc.test", "TXT", "tcp") == 1
    stored = next(a for a in json.loads(recorded.to_bytes())["answers"]
                  if (a["name"], a["type"]) == ("tc.test", "TXT"))
    assert (stored["status"], stored["tcp"]) == ("ok", True)
    assert stored["records"] == ['"v=spf1 ip4:192.0.2.0/24 -all"']


async def test_an_spf_record_that_came_over_tcp_is_evaluated(make_export: MakeExport) -> None:
    async with DnsDouble() as double:
        double.truncate("tc.test", "TXT", '"v=spf1 ip4:192.0.2.0/24 -all"')
        recorded = await collect_from(double.address, "tc.test")
    found = finding(audit_recorded(make_export, recorded), "DNS-003", "tc.test")
    assert found.status is Status.PASS


async def test_servfail_for_one_include_is_a_temperror_warning(make_export: MakeExport) -> None:
    async with DnsDouble() as double:
        double.answer("sf.test", "TXT", '"v=spf1 ip4:192.0.2.0/24 include:spf.broken.test -all"')
        double.servfail("spf.broken.test", "TXT")
        recorded = await collect_from(double.address, "sf.test")
    assert recorded.get("spf.broken.test", "TXT").status is DnsStatus.SERVFAIL
    found = finding(audit_recorded(make_export, recorded), "DNS-003", "sf.test")
    assert found.status is Status.WARN
    assert "temperror" in found.message and "spf.broken.test" in found.message


async def test_garbage_answers_are_recorded_as_errors() -> None:
    async with DnsDouble() as double:
        double.garbage("junk.test", "MX")
        recorded = await collect_from(double.address, "junk.test", timeout=DEAD_TIMEOUT)
    found = recorded.get("junk.test", "MX")
    assert found.status is DnsStatus.ERROR
    assert found.detail


async def test_garbage_answers_leave_the_mx_checks_not_evaluated(make_export: MakeExport) -> None:
    async with DnsDouble() as double:
        double.garbage("junk.test", "MX")
        recorded = await collect_from(double.address, "junk.test", timeout=DEAD_TIMEOUT)
    found = finding(audit_recorded(make_export, recorded), "DNS-002", "junk.test")
    assert found.status is Status.NOT_EVALUATED
    assert "MX lookup failed (error" in found.message
