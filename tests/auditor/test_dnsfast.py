"""The multiplexed transport (auditor/dnsfast.py) gives exactly the answers of dnspython's
one-socket-per-query path: on a real server (Knot) over a varied zone set, and on a double for
the failures Knot cannot make."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.name
import dns.rdatatype
import pytest

from auditor.dnsfast import DnspythonTransport, MultiplexTransport, Transport
from auditor.dnsmodel import DnsAnswer, DnsQuery, DnsStatus
from auditor.dnsresolve import Nameserver, Resolver
from tests.dnsdouble import DnsDouble
from tests.dnsserver import KnotFactory, zone_text

DEMO_ZONES = Path(__file__).resolve().parent.parent / "fixtures" / "demo-zones"
TYPES = ("A", "AAAA", "MX", "TXT", "CNAME", "NS", "SOA", "PTR")
LONG = "v=spf1 " + " ".join(f"ip4:198.51.100.{i}" for i in range(120)) + " -all"
EDGE_ZONE = "\n".join([
    "@ IN MX 0 .",
    "long IN TXT " + " ".join(f'"{LONG[i:i + 255]}"' for i in range(0, len(LONG), 255)),
    'split IN TXT "v=spf1 " "include:a.edge.test" " -all"',
    'quoted IN TXT "semi;colon \\"quote\\" back\\\\slash \\255 tab\\009end"',
    "alias IN CNAME long",
    "chain1 IN CNAME chain2",
    "chain2 IN CNAME host",
    "outside IN CNAME target.elsewhere.test.",
    "dangling IN CNAME nowhere",
    "host IN A 192.0.2.1",
    "host IN AAAA 2001:db8::1",
    "1.2.0.192.in-addr IN PTR host.edge.test.",
    "Mixed.Case IN A 192.0.2.2",
    "empty.nonterminal.below IN A 192.0.2.3",
    *(f"many IN A 10.0.{i // 250}.{i % 250}" for i in range(300)),  # > 1232 bytes: TCP
    *(f"many IN TXT \"record {i:03d} {'x' * 40}\"" for i in range(60)),
    *(f"mx IN MX {i} mx{i}.edge.test." for i in range(20)),
])
ELSEWHERE_ZONE = "target IN A 192.0.2.9\n"


def _zones() -> dict[str, str]:
    zones = {path.name.removesuffix(".zone"): path.read_text() for path in sorted(DEMO_ZONES.glob("*.zone"))}
    zones["edge.test"] = EDGE_ZONE
    zones["elsewhere.test"] = ELSEWHERE_ZONE
    return zones


def _queries(zones: dict[str, str]) -> list[DnsQuery]:
    names: set[str] = set()
    for origin, text in zones.items():
        for line in zone_text(origin, text).splitlines():  # owner names (a line scan: some
            if not line[:1].strip() or line[0] in "$;":  # demo records are deliberately invalid)
                continue
            owner = line.split()[0]
            names.add(origin if owner == "@" else owner.rstrip(".") if owner.endswith(".")
                      else f"{owner}.{origin}")
        names.add(f"missing-name.{origin}")
    names.add("below.nonterminal.edge.test")  # empty non-terminal: no data, not NXDOMAIN
    names.add("MIXED.case.EDGE.test")
    names.add("not-served.invalid")  # outside every zone: REFUSED
    return [DnsQuery.of(name, rdtype) for name in sorted(names) for rdtype in TYPES]


def _fields(found: DnsAnswer) -> tuple[object, ...]:
    return (found.query, found.status, found.records, found.ttl, found.cname, found.tcp, found.detail,
            found.server)


async def _ask_all(resolver: Resolver, queries: list[DnsQuery]) -> list[DnsAnswer]:
    return list(await asyncio.gather(*(resolver.query(q) for q in queries)))


def _resolver(host: str, port: int, transport: Transport, **options: float) -> Resolver:
    return Resolver([Nameserver(host, port)], transport=transport, **options)  # type: ignore[arg-type]


async def test_same_answers_as_dnspython_on_the_test_zones(knot_factory: KnotFactory) -> None:
    zones = _zones()
    host, port = knot_factory(zones).address
    queries = _queries(zones)
    reference = await _ask_all(_resolver(host, port, DnspythonTransport(), concurrency=32), queries)
    fast_resolver = _resolver(host, port, MultiplexTransport())
    fast = await _ask_all(fast_resolver, queries)
    assert [_fields(a) for a in fast] == [_fields(a) for a in reference]
    statuses = {a.status for a in fast}
    assert {DnsStatus.OK, DnsStatus.NODATA, DnsStatus.NXDOMAIN, DnsStatus.REFUSED} <= statuses
    assert any(a.tcp for a in fast) and any(a.cname for a in fast)
    assert any(a.cname == ("outside.edge.test",) and a.records == ("192.0.2.9",) for a in fast)


@pytest.mark.parametrize("mode", ["servfail", "refused", "nxdomain", "drop", "garbage", "truncate"])
async def test_same_failures_as_dnspython(mode: str) -> None:
    async with DnsDouble() as double:
        if mode == "truncate":
            double.truncate("bad.example.test", "TXT", '"v=spf1 -all"')
        else:
            getattr(double, mode)("bad.example.test", "TXT")
        answers = []
        for transport in (DnspythonTransport(), MultiplexTransport()):
            resolver = _resolver(*double.address, transport, timeout=0.3, tries=2)
            answers.append(await resolver.query(DnsQuery.of("bad.example.test", "TXT")))
    reference, fast = answers
    assert (fast.status, fast.records, fast.cname, fast.tcp, fast.detail) == (
        reference.status, reference.records, reference.cname, reference.tcp, reference.detail)
    if mode == "truncate":
        assert fast.tcp and fast.txt() == [b"v=spf1 -all"]


async def test_many_queries_in_flight_share_a_few_sockets(knot_factory: KnotFactory) -> None:
    zone = "\n".join(f"h{i} IN A 192.0.2.{i % 250}" for i in range(2000))
    host, port = knot_factory({"many.test": zone}).address
    transport = MultiplexTransport(sockets_per_server=2)
    resolver = _resolver(host, port, transport, concurrency=1000)
    answers = await _ask_all(resolver, [DnsQuery.of(f"h{i}.many.test", "A") for i in range(2000)])
    assert [a.records for a in answers] == [(f"192.0.2.{i % 250}",) for i in range(2000)]
    assert transport.in_flight == 0


async def test_a_late_reply_after_a_timeout_does_not_disturb_later_queries() -> None:
    async with DnsDouble() as double:
        double.delay("slow.example.test", "A", 0.4, "192.0.2.1")
        double.answer("fast.example.test", "A", "192.0.2.2")
        resolver = _resolver(*double.address, MultiplexTransport(sockets_per_server=1), timeout=0.2, tries=1)
        slow = await resolver.query(DnsQuery.of("slow.example.test", "A"))
        await asyncio.sleep(0.3)
        fast = await resolver.query(DnsQuery.of("fast.example.test", "A"))
    assert slow.status is DnsStatus.TIMEOUT
    assert fast.status is DnsStatus.OK and fast.records == ("192.0.2.2",)


def test_a_resolver_works_across_event_loops(knot_factory: KnotFactory) -> None:
    host, port = knot_factory({"loops.test": "a IN A 192.0.2.1\nb IN A 192.0.2.2"}).address
    resolver = _resolver(host, port, MultiplexTransport())
    first = asyncio.run(resolver.query(DnsQuery.of("a.loops.test", "A")))
    second = asyncio.run(resolver.query(DnsQuery.of("b.loops.test", "A")))
    assert (first.records, second.records) == (("192.0.2.1",), ("192.0.2.2",))


def test_names_go_on_the_wire_as_dnspython_writes_them() -> None:
    from auditor.dnsfast import make_query, query_wire

    for text in ("example.test", "MiXeD.example.test", "a\\.b.example.test", "xn--bcher-kva.test", "."):
        name = dns.name.from_text(text)
        message = make_query(name, dns.rdatatype.TXT)
        assert query_wire(message.id, name, dns.rdatatype.TXT) == message.to_wire()
