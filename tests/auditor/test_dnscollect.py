"""The DNS collector against a real server (Knot) and the DNS double: every lookup an audit of a
domain's mail routing reads is recorded, shared lookups are asked once, the recording reads back
byte for byte, and the command line records, stores and reuses it offline."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor import spf
from auditor.cli import main
from auditor.dnscollect import collect, collect_each
from auditor.dnsevidence import NOT_RECORDED, DomainDns
from auditor.dnsmodel import DnsAnswer, DnsQuery, DnsStatus
from auditor.dnsresolve import Nameserver, Resolver
from tests.conftest import DEMO, REPO, connector, mimecast_us_ranges
from tests.dnsdouble import DnsDouble
from tests.dnsserver import KnotFactory, KnotServer

LIMIT = 10.0  # seconds: a generous bound on any collection, never a timing assertion
TIMEOUT = 2.0  # per query; Knot answers at once

CONTOSO = """\
@                    MX    10 mx1
@                    MX    20 mx.relay.test.
mx1                  A     192.0.2.25
mx1                  AAAA  2001:db8::25
@                    TXT   "v=spf1 include:_spf.contoso.test a:web.contoso.test mx:relay.test -all"
@                    TXT   "verification=contoso-1234"
_spf                 TXT   "v=spf1 include:spf.vendor.test ip4:192.0.2.0/24 -all"
web                  A     192.0.2.80
web                  AAAA  2001:db8::80
_dmarc               TXT   "v=DMARC1; p=reject; rua=mailto:dmarc@contoso.test"
_mta-sts             TXT   "v=STSv1; id=20260101T000000"
_smtp._tls           TXT   "v=TLSRPTv1; rua=mailto:tlsrpt@contoso.test"
selector1._domainkey CNAME selector1-contoso-test._domainkey.tenant.test.
selector2._domainkey CNAME selector2-contoso-test._domainkey.tenant.test.
mail                 MX    10 mx1
eu                   MX    10 mx1
_dmarc.eu            TXT   "v=DMARC1; p=quarantine"
"""
RELAY = """\
@   MX 10 mx
mx  A  198.51.100.25
"""
VENDOR = """\
spf    TXT "v=spf1 include:_deep.vendor.test -all"
_deep  TXT "v=spf1 ip4:203.0.113.0/24 -all"
"""
TENANT = """\
selector1-contoso-test._domainkey TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAone"
selector2-contoso-test._domainkey TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtwo"
"""
ZONES = {"contoso.test": CONTOSO, "relay.test": RELAY, "vendor.test": VENDOR, "tenant.test": TENANT}

DEMO_ZONES = {p.name.removesuffix(".zone"): p.read_text()
              for p in sorted((REPO / "tests" / "fixtures" / "demo-zones").glob("*.zone"))}
DEMO_DOMAINS = ("contoso.com", "northwindtraders.com")


def resolver_for(address: tuple[str, int], timeout: float = TIMEOUT) -> Resolver:
    return Resolver([Nameserver(*address)], timeout=timeout)


def collect_now(address: tuple[str, int], *domains: str,
                selectors: tuple[str, ...] = ()) -> list[DomainDns]:
    """Collect synchronously, bounded: a hang fails the test instead of stalling the run."""
    resolver = resolver_for(address)
    return asyncio.run(asyncio.wait_for(collect(domains, resolver, dkim_selectors=selectors), LIMIT))


@pytest.fixture(scope="module")
def contoso_server(knot_session_factory: KnotFactory) -> tuple[str, int]:
    return knot_session_factory(ZONES).address


@pytest.fixture(scope="module")
def contoso(contoso_server: tuple[str, int]) -> DomainDns:
    (found,) = collect_now(contoso_server, "contoso.test")
    return found


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def records(answer: DnsAnswer) -> set[str]:
    return set(answer.records)


# ---------------------------------------------------------------------------------------------
# What one domain's recording holds


def test_mx_is_recorded_with_its_records(contoso: DomainDns) -> None:
    mx = contoso.get("contoso.test", "MX")
    assert mx.status is DnsStatus.OK
    assert mx.mx() == [(10, "mx1.contoso.test"), (20, "mx.relay.test")]
    assert mx.server == contoso.resolvers[0]
    assert mx.server is not None and mx.server.startswith("127.0.0.1:")


@pytest.mark.parametrize(("host", "rdtype", "status", "expected"), [
    ("mx1.contoso.test", "A", DnsStatus.OK, {"192.0.2.25"}),
    ("mx1.contoso.test", "AAAA", DnsStatus.OK, {"2001:db8::25"}),
    ("mx.relay.test", "A", DnsStatus.OK, {"198.51.100.25"}),
    ("mx.relay.test", "AAAA", DnsStatus.NODATA, set()),
])
def test_every_exchanger_address_is_recorded(contoso: DomainDns, host: str, rdtype: str,
                                              status: DnsStatus, expected: set[str]) -> None:
    found = contoso.get(host, rdtype)
    assert (found.status, records(found)) == (status, expected)


def test_the_spf_record_is_recorded_beside_other_txt_records(contoso: DomainDns) -> None:
    found = contoso.get("contoso.test", "TXT")
    assert found.status is DnsStatus.OK
    assert sorted(found.txt()) == [
        b"v=spf1 include:_spf.contoso.test a:web.contoso.test mx:relay.test -all",
        b"verification=contoso-1234",
    ]


@pytest.mark.parametrize(("name", "record"), [
    ("_spf.contoso.test", b"v=spf1 include:spf.vendor.test ip4:192.0.2.0/24 -all"),
    ("spf.vendor.test", b"v=spf1 include:_deep.vendor.test -all"),
    ("_deep.vendor.test", b"v=spf1 ip4:203.0.113.0/24 -all"),
])
def test_every_nested_include_is_recorded(contoso: DomainDns, name: str, record: bytes) -> None:
    found = contoso.get(name, "TXT")
    assert (found.status, found.txt()) == (DnsStatus.OK, [record])


@pytest.mark.parametrize(("name", "rdtype", "status", "expected"), [
    ("web.contoso.test", "A", DnsStatus.OK, {"192.0.2.80"}),
    ("web.contoso.test", "AAAA", DnsStatus.OK, {"2001:db8::80"}),
    ("relay.test", "MX", DnsStatus.OK, {"10 mx.relay.test."}),
    ("mx.relay.test", "A", DnsStatus.OK, {"198.51.100.25"}),
])
def test_the_addresses_of_spf_a_and_mx_targets_are_recorded(
        contoso: DomainDns, name: str, rdtype: str, status: DnsStatus, expected: set[str]) -> None:
    found = contoso.get(name, rdtype)
    assert (found.status, records(found)) == (status, expected)


@pytest.mark.parametrize(("name", "text"), [
    ("_dmarc.contoso.test", b"v=DMARC1; p=reject; rua=mailto:dmarc@contoso.test"),
    ("_mta-sts.contoso.test", b"v=STSv1; id=20260101T000000"),
    ("_smtp._tls.contoso.test", b"v=TLSRPTv1; rua=mailto:tlsrpt@contoso.test"),
])
def test_dmarc_mta_sts_and_tls_rpt_are_recorded(contoso: DomainDns, name: str, text: bytes) -> None:
    found = contoso.get(name, "TXT")
    assert (found.status, found.txt()) == (DnsStatus.OK, [text])


@pytest.mark.parametrize("selector", ["selector1", "selector2"])
def test_a_dkim_selector_aliased_into_another_zone_is_followed(contoso: DomainDns, selector: str) -> None:
    name = f"{selector}._domainkey.contoso.test"
    found = contoso.get(name, "TXT")
    assert found.status is DnsStatus.OK
    assert found.query == DnsQuery.of(name, "TXT")  # filed under the name asked, not the target
    assert name in found.cname
    assert found.txt()[0].startswith(b"v=DKIM1; k=rsa; p=")
    assert found.txt()[0].endswith(b"one" if selector == "selector1" else b"two")


def test_the_gateways_own_dkim_selectors_are_asked_too(contoso_server: tuple[str, int]) -> None:
    (found,) = collect_now(contoso_server, "contoso.test", selectors=("gw2026",))
    assert found.get("gw2026._domainkey.contoso.test", "TXT").status is DnsStatus.NXDOMAIN


def test_a_subdomain_without_dmarc_walks_to_its_parent(contoso_server: tuple[str, int]) -> None:
    (found,) = collect_now(contoso_server, "mail.contoso.test")
    assert found.get("_dmarc.mail.contoso.test", "TXT").status is DnsStatus.NXDOMAIN
    parent = found.get("_dmarc.contoso.test", "TXT")
    assert parent.status is DnsStatus.OK and parent.txt()[0].startswith(b"v=DMARC1; p=reject")


def test_the_dmarc_walk_stops_at_the_first_record(contoso_server: tuple[str, int]) -> None:
    (found,) = collect_now(contoso_server, "eu.contoso.test")
    assert found.get("_dmarc.eu.contoso.test", "TXT").status is DnsStatus.OK
    assert found.get("_dmarc.contoso.test", "TXT").detail == NOT_RECORDED


def test_domain_names_are_normalised_and_collected_once(contoso_server: tuple[str, int]) -> None:
    found = collect_now(contoso_server, "Contoso.TEST.", "contoso.test", "  ")
    assert [d.domain for d in found] == ["contoso.test"]
    assert found[0].file == "dns/contoso.test.json"


def test_offline_spf_over_the_recording_gives_the_live_tree(contoso: DomainDns,
                                                            contoso_server: tuple[str, int]) -> None:
    live = asyncio.run(asyncio.wait_for(
        spf.resolve_async(spf.analyse("contoso.test"), resolver_for(contoso_server).query), LIMIT))
    missing: list[DnsQuery] = []

    def lookup(query: DnsQuery) -> DnsAnswer:
        found = contoso.lookup(query)
        if found.detail == NOT_RECORDED:
            missing.append(query)
        return found

    offline = spf.resolve(spf.analyse("contoso.test"), lookup)
    assert missing == []
    assert offline == live
    assert live.result == "ok" and len(live.records) == 4  # the tree was really walked


# ---------------------------------------------------------------------------------------------
# Shared lookups


SHARED_DOMAINS = tuple(f"client{i}.test" for i in range(6))


def share_one_include(double: DnsDouble) -> None:
    for domain in SHARED_DOMAINS:
        double.answer(domain, "TXT", '"v=spf1 include:spf.shared.test -all"')
    # Slow enough that every domain asks while the first query is still in flight.
    double.delay("spf.shared.test", "TXT", 0.2, '"v=spf1 ip4:192.0.2.0/24 -all"')


async def test_an_include_shared_by_many_domains_is_asked_once_per_run() -> None:
    async with DnsDouble() as double:
        share_one_include(double)
        resolver = resolver_for(double.address)
        await asyncio.wait_for(collect(SHARED_DOMAINS, resolver), LIMIT)
        assert double.count("spf.shared.test", "TXT") == 1


async def test_an_include_asked_earlier_in_the_run_is_not_asked_again() -> None:
    async with DnsDouble() as double:
        share_one_include(double)
        resolver = resolver_for(double.address)
        await asyncio.wait_for(collect(SHARED_DOMAINS[:1], resolver), LIMIT)
        sent = resolver.sent
        await asyncio.wait_for(collect(SHARED_DOMAINS[1:2], resolver), LIMIT)
        assert double.count("spf.shared.test", "TXT") == 1
        assert double.count(SHARED_DOMAINS[1], "TXT") == 1
        assert resolver.sent > sent  # the second domain's own lookups were sent


async def test_every_domain_sharing_an_include_records_it() -> None:
    async with DnsDouble() as double:
        share_one_include(double)
        found = await asyncio.wait_for(collect(SHARED_DOMAINS, resolver_for(double.address)), LIMIT)
    assert [d.domain for d in found] == list(SHARED_DOMAINS)
    for recording in found:
        include = recording.get("spf.shared.test", "TXT")
        assert include.status is DnsStatus.OK and include.txt() == [b"v=spf1 ip4:192.0.2.0/24 -all"]


async def test_domains_finding_their_mx_hosts_addresses_in_flight_join_those_lookups() -> None:
    """The MX hosts' A/AAAA are asked together (query_all); domains that find them in flight
    join them (Resolver.joined) and record the same answers, in the order of the questions."""
    async with DnsDouble() as double:
        for domain in SHARED_DOMAINS:
            double.answer(domain, "MX", "10 mx.shared.test.")
        double.delay("mx.shared.test", "A", 0.2, "192.0.2.25")
        double.delay("mx.shared.test", "AAAA", 0.25, "2001:db8::25")
        resolver = resolver_for(double.address)
        found = await asyncio.wait_for(collect(SHARED_DOMAINS, resolver), LIMIT)
        assert double.count("mx.shared.test", "A") == double.count("mx.shared.test", "AAAA") == 1
    first = found[0]
    for recording in found:
        order = [(a.query.name, a.query.rdtype) for a in recording.answers]
        assert order[:3] == [(recording.domain, "MX"), ("mx.shared.test", "A"),
                             ("mx.shared.test", "AAAA")]
        assert recording.get("mx.shared.test", "A") is first.get("mx.shared.test", "A")
        assert recording.get("mx.shared.test", "AAAA").addresses() == ["2001:db8::25"]


class _Watched(Resolver):
    """A resolver that notes the most domains ever under way (each asks its MX first)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = 0
        self.ended = 0
        self.most = 0

    def request(self, query: DnsQuery, callback: Any) -> DnsAnswer | None:
        if query.rdtype == "MX" and query.name in SHARED_DOMAINS + MANY:
            self.started += 1
            self.most = max(self.most, self.started - self.ended)
        return super().request(query, callback)


MANY = tuple(f"d{i}.example" for i in range(40))


async def test_collect_each_keeps_at_most_at_once_domains_under_way_and_reports_each() -> None:
    async with DnsDouble() as double:
        resolver = _Watched([Nameserver(*double.address)], timeout=TIMEOUT)
        seen: list[str] = []

        def collected(name: str, recording: DomainDns) -> None:
            resolver.ended += 1
            assert recording.domain == name
            seen.append(name)

        await asyncio.wait_for(collect_each(iter(MANY), resolver, collected, at_once=3), LIMIT)
    assert sorted(seen) == sorted(MANY) and resolver.most == 3


async def test_domains_whose_answers_are_all_known_end_at_once_without_recursion() -> None:
    """A second pass over the same resolver finds every answer in its table: each domain ends
    inside the call that starts it, hundreds in a row, and none is lost or started twice."""
    names = [f"d{i}.example" for i in range(400)]
    async with DnsDouble() as double:
        resolver = resolver_for(double.address)
        await asyncio.wait_for(collect(names, resolver), LIMIT)
        sent = resolver.sent
        seen: list[str] = []
        await asyncio.wait_for(collect_each(names, resolver, lambda name, _: seen.append(name),
                                            at_once=10), LIMIT)
    assert seen == names and resolver.sent == sent


@pytest.mark.parametrize("where", ["names", "collected"])
async def test_an_error_handing_out_names_or_taking_a_recording_ends_the_collection(where: str) -> None:
    def names() -> Any:
        yield from MANY[:5]
        if where == "names":
            raise RuntimeError("no more names")

    def collected(name: str, _: DomainDns) -> None:
        if where == "collected" and name == MANY[2]:
            raise RuntimeError("cannot take it")

    async with DnsDouble() as double:
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(collect_each(names(), resolver_for(double.address), collected,
                                                at_once=2), LIMIT)


async def test_a_name_that_cannot_be_a_file_is_refused() -> None:
    async with DnsDouble() as double:
        with pytest.raises(ValueError, match="can be a file"):
            await asyncio.wait_for(collect_each(["ok.example", "a/b"], resolver_for(double.address),
                                                lambda *_: None), LIMIT)


# ---------------------------------------------------------------------------------------------
# The recording as bytes


def test_a_recording_reads_back_as_it_was_written(contoso: DomainDns) -> None:
    again = DomainDns.from_bytes(contoso.to_bytes(), contoso.file)
    assert again == contoso
    assert again.answers == contoso.answers
    assert again.to_bytes() == contoso.to_bytes()


def test_answers_keep_their_json_pointer_order(contoso: DomainDns) -> None:
    body = json.loads(contoso.to_bytes())
    again = DomainDns.from_bytes(contoso.to_bytes(), contoso.file)
    assert len(body["answers"]) == len(contoso.answers) > 10
    for index, answer in enumerate(contoso.answers):
        assert (body["answers"][index]["name"], body["answers"][index]["type"]) == (
            answer.query.name, answer.query.rdtype)
        assert contoso.ref(answer.query).pointer == f"/answers/{index}"
        assert again.ref(answer.query).pointer == f"/answers/{index}"


def test_a_recording_keeps_the_order_the_lookups_were_made(contoso: DomainDns) -> None:
    order = [(a.query.name, a.query.rdtype) for a in contoso.answers]
    assert order[0] == ("contoso.test", "MX")
    assert order.index(("contoso.test", "TXT")) < order.index(("_spf.contoso.test", "TXT")) < (
        order.index(("spf.vendor.test", "TXT"))) < order.index(("_dmarc.contoso.test", "TXT"))
    assert len(order) == len(set(order))  # each lookup once, however often the audit read it


# ---------------------------------------------------------------------------------------------
# End to end: the command line


# For the command line, which also fetches MTA-STS policy files over HTTPS: without an address
# for mta-sts.contoso.com (a documentation address in the demo) nothing is contacted at all.
CLI_ZONES = {origin: "\n".join(line for line in text.splitlines() if not line.startswith("mta-sts "))
             for origin, text in DEMO_ZONES.items()}


@pytest.fixture
def demo_server(knot_factory: KnotFactory) -> KnotServer:
    return knot_factory(DEMO_ZONES)


@pytest.fixture
def cli_server(knot_factory: KnotFactory) -> KnotServer:
    return knot_factory(CLI_ZONES)


@pytest.fixture
def export_folder(tmp_path: Path) -> Path:
    """The demo tenant's accepted domains and a Mimecast-locked inbound connector, no DNS."""
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copyfile(DEMO / "Get-AcceptedDomain.json", folder / "Get-AcceptedDomain.json")
    inbound = [connector(Name="Mimecast inbound", SenderIPAddresses=mimecast_us_ranges())]
    (folder / "Get-InboundConnector.json").write_text(json.dumps(inbound))
    return folder


def dns_findings(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return sorted((f["check_id"], f["status"], f["resource"], f["message"])
                  for f in report["findings"] if f["check_id"].startswith("DNS-"))


def all_findings(report: dict[str, Any]) -> list[str]:
    return sorted(json.dumps({k: f[k] for k in ("check_id", "status", "resource", "message",
                                                 "evidence")}, sort_keys=True)
                  for f in report["findings"])


def audit_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = run_cli(["audit", *argv, "--format", "json"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_auditing_an_export_folder_live_gives_dns_findings(
        cli_server: KnotServer, export_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host, port = cli_server.address
    report = audit_json([str(export_folder), "--nameserver", f"{host}:{port}"], capsys)
    found = {(c, s, r) for c, s, r, _ in dns_findings(report)}
    assert {("DNS-001", "pass", "domain contoso.com"), ("DNS-002", "pass", "domain contoso.com"),
            ("DNS-003", "pass", "domain contoso.com"), ("DNS-004", "pass", "domain contoso.com"),
            ("DNS-006", "pass", "domain contoso.com"),
            ("DNS-006", "fail", "domain northwindtraders.com")} <= found
    judged = ("DNS-001", "DNS-002", "DNS-003", "DNS-004", "DNS-006")
    assert not [f for f in found if f[0] in judged and f[1] in ("not_evaluated", "error")]


@pytest.fixture
def imported(cli_server: KnotServer, export_folder: Path, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> Path:
    host, port = cli_server.address
    snap = tmp_path / "snap"
    code, _, err = run_cli(["import", str(export_folder), "--out", str(snap),
                            "--nameserver", f"{host}:{port}"], capsys)
    assert code == 0, err
    return snap


@pytest.mark.parametrize("domain", DEMO_DOMAINS)
def test_import_writes_each_domains_dns_file_listed_with_its_hash(imported: Path, domain: str) -> None:
    manifest = json.loads((imported / "manifest.json").read_text())
    entry = next(e for e in manifest["evidence"] if e["key"] == f"dns:{domain}")
    data = (imported / "dns" / f"{domain}.json").read_bytes()
    assert entry["path"] == f"dns/{domain}.json"
    assert entry["state"] == "ok"
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.loads(data)["domain"] == domain


def test_an_imported_snapshot_with_dns_verifies(imported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["verify", str(imported)], capsys)
    assert code == 0
    assert out.startswith("ok: ")


def test_the_initial_onmicrosoft_domain_is_not_collected(imported: Path) -> None:
    assert sorted(p.name for p in (imported / "dns").iterdir()) == [f"{d}.json" for d in DEMO_DOMAINS]


def test_an_imported_snapshot_is_audited_offline_from_its_recording(
        cli_server: KnotServer, export_folder: Path, imported: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    host, port = cli_server.address
    live = audit_json([str(export_folder), "--nameserver", f"{host}:{port}"], capsys)
    cli_server.stop()  # nothing answers any more: a query would time out or fail
    offline = audit_json([str(imported), "--no-dns"], capsys)
    assert all_findings(offline) == all_findings(live)
    assert [f for f in dns_findings(offline) if f[0] == "DNS-001"]


def test_an_export_folders_recorded_dns_is_reused_without_asking(
        cli_server: KnotServer, export_folder: Path, imported: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    before = audit_json([str(imported), "--no-dns"], capsys)
    cli_server.stop()
    shutil.copytree(imported / "dns", export_folder / "dns")
    # No DNS option at all: the conftest guard fails the test if the system resolver is asked.
    after = audit_json([str(export_folder)], capsys)
    assert dns_findings(after) == dns_findings(before)


# ---------------------------------------------------------------------------------------------
# The demo's recorded DNS is what the collector records today


def key(answer: dict[str, Any]) -> tuple[str, str]:
    return answer["name"], answer["type"]


def comparable(answer: dict[str, Any]) -> tuple[str, str, str, list[str], list[str]]:
    """What the zones decide; time, server and elapsed_ms are the run's own."""
    return answer["name"], answer["type"], answer["status"], answer["records"], answer["cname"]


@pytest.fixture
def loopback_https_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's MTA-STS host is a documentation address: fail any HTTPS beyond loopback."""
    send = httpx.AsyncClient.send

    async def guarded(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if request.url.host not in ("127.0.0.1", "::1"):
            raise httpx.ConnectError(f"this test reaches loopback only, not {request.url.host}",
                                     request=request)
        return await send(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", guarded)


@pytest.fixture
def demo_recorded_today(loopback_https_only: None, demo_server: KnotServer, export_folder: Path,
                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """`import --nameserver` from the demo zones, as examples/contoso/README.md says the demo's
    dns/ was made: the snapshot's dns/ folder."""
    host, port = demo_server.address
    snap = tmp_path / "today"
    code, _, err = run_cli(["import", str(export_folder), "--out", str(snap),
                            "--nameserver", f"{host}:{port}"], capsys)
    assert code == 0, err
    return snap / "dns"


@pytest.mark.parametrize("domain", DEMO_DOMAINS)
def test_the_demo_recording_asks_what_the_collector_asks_today(
        demo_recorded_today: Path, domain: str) -> None:
    stored = json.loads((DEMO / "dns" / f"{domain}.json").read_text())
    today = json.loads((demo_recorded_today / f"{domain}.json").read_text())
    assert today["domain"] == stored["domain"] == domain
    assert [key(a) for a in today["answers"]] == [key(a) for a in stored["answers"]]


@pytest.mark.parametrize("domain", DEMO_DOMAINS)
def test_the_demo_recording_holds_the_answers_the_demo_zones_give_today(
        demo_recorded_today: Path, domain: str) -> None:
    stored = json.loads((DEMO / "dns" / f"{domain}.json").read_text())
    today = json.loads((demo_recorded_today / f"{domain}.json").read_text())
    was = {key(a): comparable(a) for a in stored["answers"]}
    now = {key(a): comparable(a) for a in today["answers"]}
    assert now == was


# ---------------------------------------------------------------------------------------------
# A tenant's own domains: where Microsoft's selectors point (DKIM-001)


def collect_tenant(address: tuple[str, int], *domains: str) -> list[DomainDns]:
    resolver = resolver_for(address)
    return asyncio.run(asyncio.wait_for(collect(domains, resolver, signing_cnames=True), LIMIT))


@pytest.mark.parametrize("selector", ["selector1", "selector2"])
def test_a_tenants_selector_cname_and_its_target_are_recorded(contoso_server: tuple[str, int],
                                                              selector: str) -> None:
    """The TXT lookup follows the alias and keeps only the name asked; the CNAME lookup keeps
    where it points, which is what Get-DkimSigningConfig's Selector1CNAME is compared with."""
    (found,) = collect_tenant(contoso_server, "contoso.test")
    name = f"{selector}._domainkey.contoso.test"
    alias = found.get(name, "CNAME")
    assert alias.status is DnsStatus.OK
    assert alias.records == (f"{selector}-contoso-test._domainkey.tenant.test.",)
    assert alias.names() == [f"{selector}-contoso-test._domainkey.tenant.test"]
    assert found.get(name, "TXT").txt()[0].startswith(b"v=DKIM1")  # the key is still recorded
    again = DomainDns.from_bytes(found.to_bytes(), found.file)
    assert again.get(name, "CNAME") == alias


def test_a_selector_that_does_not_exist_is_recorded_as_nxdomain(contoso_server: tuple[str, int]) -> None:
    (found,) = collect_tenant(contoso_server, "mail.contoso.test")
    assert found.get("selector1._domainkey.mail.contoso.test", "CNAME").status is DnsStatus.NXDOMAIN


def test_a_bulk_collection_does_not_ask_the_selector_cnames(contoso: DomainDns) -> None:
    """Bulk domains have no signing config to compare with: no lookups spent on it."""
    assert contoso.get("selector1._domainkey.contoso.test", "CNAME").detail == NOT_RECORDED
    assert not [a for a in contoso.answers if a.query.rdtype == "CNAME"]


async def test_a_bug_while_reading_one_domain_fails_the_collection_instead_of_hanging(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Lookups are driven from the resolver's reply handler: an exception there must reach the
    caller (as asyncio.gather would pass it on), never leave the collection waiting forever."""
    real = spf.analyse

    def analyse(domain: str) -> spf.Resolution[spf.SpfTree]:
        if domain == SHARED_DOMAINS[1]:
            raise RuntimeError("a bug in the SPF walk")
        return real(domain)

    monkeypatch.setattr(spf, "analyse", analyse)
    async with DnsDouble() as double:
        share_one_include(double)
        with pytest.raises(RuntimeError, match="a bug in the SPF walk"):
            await asyncio.wait_for(collect(SHARED_DOMAINS, resolver_for(double.address)), LIMIT)
