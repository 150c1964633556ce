"""The DNS test infrastructure itself: Knot serves what production servers serve, the double misbehaves
on demand, both as a dnspython client sees them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.dnsdouble import DnsDouble
from tests.dnsserver import (  # noqa: F401  (fixtures used by name)
    KNOTD_MISSING,
    KnotError,
    KnotFactory,
    KnotServer,
    apex_types,
    knot_factory,
    knot_session_factory,
    require_knot,
)

TIMEOUT = 2.0  # per query, for answers that should come back at once

# A long SPF record: more than 255 bytes, so several strings, and more than 512 in a reply.
SPF = "v=spf1 " + " ".join(f"ip4:198.51.100.{i}/32" for i in range(1, 30)) + " -all"
SPF_STRINGS = [SPF[i:i + 250] for i in range(0, len(SPF), 250)]
CONTOSO = f"""\
@        MX    10 mx1
@        MX    20 mx2.contoso.test.
@        TXT   {" ".join(f'"{s}"' for s in SPF_STRINGS)}
mx1      A     192.0.2.25
mx2      A     192.0.2.26
www      CNAME web
web      A     192.0.2.80
"""
FABRIKAM = """\
$TTL 60
@  IN SOA ns1.fabrikam.test. dns.fabrikam.test. 2024010101 3600 600 86400 30
@  IN NS  ns1
ns1 IN A  192.0.2.53
@  IN MX  0 .
"""


def query(name: str, rdtype: str, *, edns: bool = False) -> dns.message.QueryMessage:
    message = dns.message.make_query(name, rdtype)
    if edns:
        message.use_edns(0, 0, 1232)
    return message


def texts(response: dns.message.Message, rdtype: str) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer
                  if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset)


@pytest.fixture(scope="session")
def knot(knot_session_factory: KnotFactory) -> KnotServer:  # noqa: F811
    return knot_session_factory({"contoso.test": CONTOSO, "fabrikam.test": FABRIKAM})


# -- Knot --------------------------------------------------------------------------------------


async def test_knot_answers_a_and_mx(knot: KnotServer) -> None:
    host, port = knot.address
    a = await dns.asyncquery.udp(query("mx1.contoso.test", "A"), host, port=port, timeout=TIMEOUT)
    assert texts(a, "A") == ["192.0.2.25"]
    assert a.flags & dns.flags.AA
    mx = await dns.asyncquery.udp(query("contoso.test", "MX"), host, port=port, timeout=TIMEOUT)
    assert texts(mx, "MX") == ["10 mx1.contoso.test.", "20 mx2.contoso.test."]
    null_mx = await dns.asyncquery.udp(query("fabrikam.test", "MX"), host, port=port, timeout=TIMEOUT)
    assert texts(null_mx, "MX") == ["0 ."]


async def test_knot_long_txt_with_edns_fits_udp(knot: KnotServer) -> None:
    host, port = knot.address
    response = await dns.asyncquery.udp(query("contoso.test", "TXT", edns=True), host, port=port,
                                        timeout=TIMEOUT)
    assert not response.flags & dns.flags.TC
    (rdata,) = response.answer[0]
    assert len(rdata.strings) == len(SPF_STRINGS) == 3
    assert b"".join(rdata.strings).decode() == SPF
    assert len(SPF) > 600


async def test_knot_long_txt_without_edns_truncates_then_tcp(knot: KnotServer) -> None:
    host, port = knot.address
    truncated = await dns.asyncquery.udp(query("contoso.test", "TXT"), host, port=port, timeout=TIMEOUT)
    assert truncated.flags & dns.flags.TC
    response, used_tcp = await dns.asyncquery.udp_with_fallback(query("contoso.test", "TXT"), host,
                                                                 port=port, timeout=TIMEOUT)
    assert used_tcp
    (rdata,) = response.answer[0]
    assert b"".join(rdata.strings).decode() == SPF


async def test_knot_nxdomain_differs_from_nodata(knot: KnotServer) -> None:
    host, port = knot.address
    missing = await dns.asyncquery.udp(query("missing.contoso.test", "A"), host, port=port, timeout=TIMEOUT)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    nodata = await dns.asyncquery.udp(query("mx1.contoso.test", "TXT"), host, port=port, timeout=TIMEOUT)
    assert nodata.rcode() == dns.rcode.NOERROR
    assert nodata.answer == []
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA  # negative-caching SOA


async def test_knot_chases_cname_inside_zone(knot: KnotServer) -> None:
    host, port = knot.address
    response = await dns.asyncquery.udp(query("www.contoso.test", "A"), host, port=port, timeout=TIMEOUT)
    assert texts(response, "CNAME") == ["web.contoso.test."]
    assert texts(response, "A") == ["192.0.2.80"]


async def test_knot_adds_default_soa_and_ns_only_when_absent(knot: KnotServer) -> None:
    host, port = knot.address
    ns = await dns.asyncquery.udp(query("contoso.test", "NS"), host, port=port, timeout=TIMEOUT)
    assert texts(ns, "NS") == ["ns.knot-test.invalid."]
    own = await dns.asyncquery.udp(query("fabrikam.test", "SOA"), host, port=port, timeout=TIMEOUT)
    assert texts(own, "SOA") == ["ns1.fabrikam.test. dns.fabrikam.test. 2024010101 3600 600 86400 30"]


def test_knot_factory_starts_and_stops(knot_factory: KnotFactory) -> None:  # noqa: F811
    server = knot_factory({"northwind.test": "@ A 192.0.2.1"})
    assert server.address[0] == "127.0.0.1"
    assert server.startup_seconds is not None and server.startup_seconds < 5
    process = server.process
    assert process is not None
    server.stop()
    assert process.returncode == 0  # SIGTERM is a clean shutdown for knotd
    with pytest.raises(KnotError, match="not running"):
        _ = server.address


def test_knot_context_manager() -> None:
    require_knot()
    with KnotServer({"tailspin.test": "mail A 192.0.2.9"}) as server:
        host, port = server.address
        response = dns.query.udp(query("mail.tailspin.test", "A"), host, port=port, timeout=TIMEOUT)
        assert texts(response, "A") == ["192.0.2.9"]
        directory = server.directory
    assert server.process is None
    assert directory is not None and not directory.exists()


def test_knot_bad_zone_fails_fast_with_knotd_message(knot_factory: KnotFactory) -> None:  # noqa: F811
    started = time.monotonic()
    with pytest.raises(KnotError, match=r"(?s)could not load broken\.test.*invalid IPv4 address"):
        knot_factory({"broken.test": "www A 999.0.2.1"})
    assert time.monotonic() - started < 2  # found in knotd's log, not by waiting out the timeout


def test_require_knot_skips_without_knotd(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KNOTD", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="knotd not found"):
        require_knot()


def test_require_knot_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KNOTD", raising=False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failure:
        require_knot()
    assert KNOTD_MISSING in str(failure.value)


# -- the double --------------------------------------------------------------------------------


@pytest.fixture
async def double() -> AsyncIterator[DnsDouble]:
    async with DnsDouble() as server:
        yield server
    assert server.errors == []


async def ask(double: DnsDouble, name: str, rdtype: str, *, timeout: float = TIMEOUT,
              tcp: bool = False, edns: bool = False) -> dns.message.Message:
    host, port = double.address
    send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    return await send(query(name, rdtype, edns=edns), host, port=port, timeout=timeout)


async def test_double_answers_over_udp_and_tcp(double: DnsDouble) -> None:
    double.answer("mx.contoso.test", "A", "192.0.2.25", "192.0.2.26")
    double.answer("alias.contoso.test", "A", "mx.contoso.test.", rrtype="CNAME")
    double.answer("empty.contoso.test", "TXT")
    assert texts(await ask(double, "MX.Contoso.Test", "A"), "A") == ["192.0.2.25", "192.0.2.26"]
    assert texts(await ask(double, "mx.contoso.test", "A", tcp=True), "A") == ["192.0.2.25", "192.0.2.26"]
    assert texts(await ask(double, "alias.contoso.test", "A"), "CNAME") == ["mx.contoso.test."]
    nodata = await ask(double, "empty.contoso.test", "TXT")
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
    assert double.count("mx.contoso.test", "A") == 2
    assert double.count("mx.contoso.test.", "A", "udp") == 1
    assert double.count("mx.contoso.test", "A", "tcp") == 1
    assert double.counts[("mx.contoso.test.", "A", "udp")] == 1


@pytest.mark.parametrize(("mode", "rcode"), [("servfail", dns.rcode.SERVFAIL), ("refused", dns.rcode.REFUSED),
                                             ("nxdomain", dns.rcode.NXDOMAIN)])
async def test_double_error_rcodes(double: DnsDouble, mode: str, rcode: dns.rcode.Rcode) -> None:
    getattr(double, mode)("bad.contoso.test", "TXT")
    assert (await ask(double, "bad.contoso.test", "TXT")).rcode() == rcode
    assert (await ask(double, "bad.contoso.test", "TXT", tcp=True)).rcode() == rcode


async def test_double_refuses_unconfigured_names(double: DnsDouble) -> None:
    double.answer("known.contoso.test", "A", "192.0.2.1")
    assert (await ask(double, "other.contoso.test", "A")).rcode() == dns.rcode.REFUSED
    assert (await ask(double, "known.contoso.test", "AAAA")).rcode() == dns.rcode.REFUSED
    assert double.count("other.contoso.test", "A", "udp") == 1


async def test_double_drop_times_out(double: DnsDouble) -> None:
    double.drop("silent.contoso.test", "MX")
    with pytest.raises(dns.exception.Timeout):
        await ask(double, "silent.contoso.test", "MX", timeout=0.2)
    with pytest.raises(dns.exception.Timeout):
        await ask(double, "silent.contoso.test", "MX", timeout=0.2, tcp=True)
    assert double.count("silent.contoso.test", "MX", "udp") == 1
    assert double.count("silent.contoso.test", "MX", "tcp") == 1


async def test_double_truncate_leads_to_tcp(double: DnsDouble) -> None:
    double.truncate("big.contoso.test", "TXT", '"v=spf1 -all"')
    udp = await ask(double, "big.contoso.test", "TXT", edns=True)  # even with room to spare
    assert udp.flags & dns.flags.TC
    assert udp.answer == []
    host, port = double.address
    response, used_tcp = await dns.asyncquery.udp_with_fallback(query("big.contoso.test", "TXT"), host,
                                                                 port=port, timeout=TIMEOUT)
    assert used_tcp
    assert texts(response, "TXT") == ['"v=spf1 -all"']
    assert double.count("big.contoso.test", "TXT", "udp") == 2
    assert double.count("big.contoso.test", "TXT", "tcp") == 1


async def test_double_truncates_oversized_udp_answers_like_a_server(double: DnsDouble) -> None:
    double.answer("contoso.test", "TXT", " ".join(f'"{s}"' for s in SPF_STRINGS))
    assert (await ask(double, "contoso.test", "TXT")).flags & dns.flags.TC
    full = await ask(double, "contoso.test", "TXT", edns=True)
    assert b"".join(full.answer[0][0].strings).decode() == SPF


async def test_double_delay(double: DnsDouble) -> None:
    double.delay("slow.contoso.test", "A", 0.3, "192.0.2.7")
    with pytest.raises(dns.exception.Timeout):
        await ask(double, "slow.contoso.test", "A", timeout=0.1)
    started = time.monotonic()
    response = await ask(double, "slow.contoso.test", "A")
    assert time.monotonic() - started >= 0.3
    assert texts(response, "A") == ["192.0.2.7"]
    with pytest.raises(ValueError, match="delay"):
        double.delay("slower.contoso.test", "A", 3600)


async def test_double_garbage_raises_dnspython_error(double: DnsDouble) -> None:
    double.garbage("junk.contoso.test", "TXT")
    # FormError (ShortHeader), not Timeout, which is a DNSException too.
    with pytest.raises(dns.exception.FormError):
        await ask(double, "junk.contoso.test", "TXT")
    with pytest.raises(dns.exception.FormError):
        await ask(double, "junk.contoso.test", "TXT", tcp=True)


async def test_double_stop_cancels_pending_answers() -> None:
    async with DnsDouble() as server:
        server.delay("slow.contoso.test", "A", 20, "192.0.2.7")
        with pytest.raises(dns.exception.Timeout):
            await ask(server, "slow.contoso.test", "A", timeout=0.05)
        started = time.monotonic()
    assert time.monotonic() - started < 1
    assert server.port is None


def test_double_thread_backed_for_sync_tests() -> None:
    with DnsDouble() as server:
        server.answer("mx.contoso.test", "MX", "10 mx.contoso.test.")
        server.servfail("broken.contoso.test", "MX")
        host, port = server.address
        ok = dns.query.udp(query("mx.contoso.test", "MX"), host, port=port, timeout=TIMEOUT)
        assert texts(ok, "MX") == ["10 mx.contoso.test."]
        failed = dns.query.tcp(query("broken.contoso.test", "MX"), host, port=port, timeout=TIMEOUT)
        assert failed.rcode() == dns.rcode.SERVFAIL
    assert server.count("mx.contoso.test", "MX") == 1
    assert server.errors == []


@pytest.mark.parametrize(("text", "expected"), [
    ("www A 192.0.2.1", set()),
    ("@ IN SOA ns h 1 2 3 4 5\n@ NS ns", {"SOA", "NS"}),
    ("contoso.test. 300 IN SOA ( ns h\n  1 2 3 4 5 )\n    NS ns.example.", {"SOA", "NS"}),
    ('sub NS ns.sub\nx TXT "SOA NS" ; NS', set()),  # delegation, quoted text, comment
    ("$ORIGIN sub.contoso.test.\n@ NS ns\n$ORIGIN contoso.test.\n@ 60 IN NS ns", {"NS"}),
    ("www A 192.0.2.1\n    NS ns", set()),  # blank owner repeats www
])
def test_apex_types(text: str, expected: set[str]) -> None:
    assert apex_types(dns.name.from_text("contoso.test"), text) == expected
