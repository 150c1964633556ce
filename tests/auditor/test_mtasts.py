"""MTA-STS policies: parsing, MX matching, and fetching over real HTTPS from a local server."""

from __future__ import annotations

import httpx
import pytest

from auditor.dnscollect import PolicyFetching, collect
from auditor.dnsevidence import DomainDns
from auditor.dnsresolve import Nameserver, Resolver
from auditor.mtasts import mx_matches, parse_policy
from tests.dnsserver import KnotFactory
from tests.httpsserver import HttpsServer, Reply

POLICY = (b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.mx.example.test\r\n"
          b"max_age: 86400\r\n")
ZONE = """
@        300 IN MX  10 mx1.example.test.
@        300 IN MX  20 b.mx.example.test.
mx1      300 IN A   192.0.2.1
b.mx     300 IN A   192.0.2.2
_mta-sts 300 IN TXT "v=STSv1; id=20261125"
mta-sts  300 IN A   127.0.0.1
"""
PATH = "/.well-known/mta-sts.txt"


def test_parse_policy_reads_every_field() -> None:
    policy = parse_policy(POLICY.decode())
    assert (policy.version, policy.mode, policy.max_age) == ("STSv1", "enforce", 86400)
    assert policy.mx == ("mx1.example.test", "*.mx.example.test") and policy.problems == ()


@pytest.mark.parametrize(("text", "problem"), [
    ("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", "version"),
    ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", "mode"),
    ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"),
    ("version: STSv1\nmode: enforce\nmx: a\nmax_age: forever\n", "max_age"),
])
def test_parse_policy_names_problems(text: str, problem: str) -> None:
    assert any(problem in p for p in parse_policy(text).problems)


@pytest.mark.parametrize(("host", "pattern", "matches"), [
    ("mx1.example.test", "mx1.example.test", True),
    ("b.mx.example.test", "*.mx.example.test", True),
    ("a.b.mx.example.test", "*.mx.example.test", False),
    ("mx.example.test", "*.mx.example.test", False),
    ("MX1.Example.Test.", "mx1.example.test", True),
])
def test_mx_patterns_match_one_label(host: str, pattern: str, matches: bool) -> None:
    assert mx_matches(host, pattern) is matches


async def _collect(knot_factory: KnotFactory, server: HttpsServer, zone: str = ZONE) -> DomainDns:
    host, port = knot_factory({"example.test": zone}).address
    resolver = Resolver([Nameserver(host, port)], timeout=1)
    async with httpx.AsyncClient(verify=server.client_context(), timeout=2) as client:
        found = await collect(["example.test"], resolver,
                              policies=PolicyFetching(client, port=server.port))
    return found[0]


async def test_the_policy_is_fetched_by_name_over_verified_tls(knot_factory: KnotFactory) -> None:
    async with HttpsServer(["mta-sts.example.test"]) as server:
        server.routes[PATH] = Reply(body=POLICY)
        dd = await _collect(knot_factory, server)
        assert server.requests == [(PATH, f"mta-sts.example.test:{server.port}", "mta-sts.example.test")]
    fetched = dd.mta_sts_policy
    assert fetched is not None and fetched.status == "ok" and fetched.body == POLICY.decode()
    assert fetched.address == "127.0.0.1"
    assert dd.get("mta-sts.example.test", "A").addresses() == ["127.0.0.1"]


async def test_a_certificate_for_another_name_is_an_error(knot_factory: KnotFactory) -> None:
    async with HttpsServer(["www.other.test"]) as server:
        server.routes[PATH] = Reply(body=POLICY)
        dd = await _collect(knot_factory, server)
    assert dd.mta_sts_policy is not None and dd.mta_sts_policy.status == "error"
    assert "certificate" in (dd.mta_sts_policy.detail or "").lower()


async def test_redirects_are_not_followed(knot_factory: KnotFactory) -> None:
    async with HttpsServer(["mta-sts.example.test"]) as server:
        server.routes[PATH] = Reply(301, b"", {"Location": "https://evil.test/policy"})
        dd = await _collect(knot_factory, server)
        assert len(server.requests) == 1
    assert dd.mta_sts_policy is not None
    assert (dd.mta_sts_policy.status, dd.mta_sts_policy.http_status) == ("error", 301)


async def test_no_policy_is_fetched_without_an_mta_sts_record(knot_factory: KnotFactory) -> None:
    async with HttpsServer(["mta-sts.example.test"]) as server:
        host, port = knot_factory({"example.test": "@ 300 IN MX 10 mx1.example.test.\n"}).address
        async with httpx.AsyncClient(verify=server.client_context()) as client:
            found = await collect(["example.test"], Resolver([Nameserver(host, port)]),
                                  policies=PolicyFetching(client, port=server.port))
        assert server.requests == []
    assert found[0].mta_sts_policy is None


def _dns007(dd: DomainDns) -> tuple[str, str]:
    from datetime import UTC, datetime

    from auditor.context import AuditContext
    from auditor.engine import run_check
    from auditor.evidence import EvidenceStore
    from auditor.gateways import builtin_profiles, resolve_gateway
    from checks.dns import mta_sts

    store = EvidenceStore({}, dns={dd.domain: dd})
    context = AuditContext(store, resolve_gateway(store, builtin_profiles()), datetime.now(UTC))
    (finding,) = run_check(mta_sts, context)
    return finding.status.value, finding.message


@pytest.mark.parametrize(("policy", "status", "says"), [
    (POLICY, "warn", "no TLS-RPT record"),
    (POLICY.replace(b"*.mx.example.test", b"other.example.test"), "warn", "b.mx.example.test match no mx"),
    (POLICY.replace(b"enforce", b"none"), "warn", "mode is none"),
])
async def test_dns007_judges_the_fetched_policy_against_the_mx_set(
        knot_factory: KnotFactory, policy: bytes, status: str, says: str) -> None:
    async with HttpsServer(["mta-sts.example.test"]) as server:
        server.routes[PATH] = Reply(body=policy)
        dd = await _collect(knot_factory, server)
    found_status, message = _dns007(dd)
    assert found_status == status and says in message


async def test_dns007_passes_a_matching_policy_with_tls_reporting(knot_factory: KnotFactory) -> None:
    zone = ZONE + '_smtp._tls 300 IN TXT "v=TLSRPTv1; rua=mailto:tls@example.test"\n'
    async with HttpsServer(["mta-sts.example.test"]) as server:
        server.routes[PATH] = Reply(body=POLICY)
        dd = await _collect(knot_factory, server, zone)
    status, message = _dns007(dd)
    assert status == "pass" and "mode enforce" in message


async def test_dns007_warns_when_the_policy_file_is_missing(knot_factory: KnotFactory) -> None:
    async with HttpsServer(["mta-sts.example.test"]) as server:
        dd = await _collect(knot_factory, server)
    status, message = _dns007(dd)
    assert status == "warn" and "HTTP 404" in message


@pytest.mark.parametrize(("zone_line", "asked", "detail"), [
    ("", ["A"], "mta-sts.example.test has no address (nxdomain)"),
    ("mta-sts 300 IN TXT \"not an address\"", ["A", "AAAA"],
     "mta-sts.example.test has no address (nodata, nodata)"),
])
async def test_a_policy_host_that_does_not_exist_is_not_asked_for_aaaa(
        knot_factory: KnotFactory, zone_line: str, asked: list[str], detail: str) -> None:
    """NXDOMAIN for the A lookup says the name has no record of any type (RFC 8020): its AAAA
    is not asked; a name that exists without an A record still is."""
    kept = [line for line in ZONE.splitlines() if not line.startswith("mta-sts")]
    zone = "\n".join([*kept, zone_line, ""])
    async with HttpsServer(["mta-sts.example.test"]) as server:
        dd = await _collect(knot_factory, server, zone)
        assert server.requests == []
    assert [a.query.rdtype for a in dd.answers if a.query.name == "mta-sts.example.test"] == asked
    assert dd.mta_sts_policy is not None and dd.mta_sts_policy.status == "error"
    assert dd.mta_sts_policy.detail == detail
