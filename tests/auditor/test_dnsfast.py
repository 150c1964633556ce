"""The multiplexed transport (auditor/dnsfast.py) gives exactly the answers of dnspython's
one-socket-per-query path: on a real server (Knot) over a varied zone set, and on a double for
the failures Knot cannot make."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import dns.exception
import dns.flags
import dns.ipv6
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from auditor.dnsfast import DnspythonTransport, MultiplexTransport, Transport, is_answer_to, query_wire
from auditor.dnsmodel import DnsAnswer, DnsQuery, DnsStatus
from auditor.dnsresolve import Nameserver, Resolver
from auditor.dnswire import FAST_TYPES, ReplySummary, decode_reply, summarize
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


def test_a_lookup_left_in_flight_by_an_abandoned_run_is_answered_in_the_next() -> None:
    """A run cut short (here by a time limit) leaves its lookup in flight; the next event loop
    that asks the same query is answered instead of waiting for a loop that is gone."""
    with DnsDouble() as double:
        double.delay("slow.example.test", "A", 0.5, "192.0.2.1")
        resolver = _resolver(*double.address, MultiplexTransport(), timeout=2.0)
        query = DnsQuery.of("slow.example.test", "A")
        with pytest.raises(asyncio.TimeoutError):
            asyncio.run(asyncio.wait_for(resolver.query(query), 0.1))
        found = asyncio.run(asyncio.wait_for(resolver.query(query), 5))
    assert found.status is DnsStatus.OK and found.records == ("192.0.2.1",)
    assert resolver.sent == 2  # the first try failed with its loop: asked once more


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
        assert query_wire(message.id, name.labels, dns.rdatatype.TXT) == message.to_wire()


# --- The wire decoder (auditor/dnswire.py) against dnspython's parse of the same bytes ---------

def _reference(wire: bytes, name: dns.name.Name, rdtype: int) -> ReplySummary | None:
    """What the dnspython path makes of a reply: its summary, or None if it is rejected."""
    try:
        reply = dns.message.from_wire(wire, raise_on_truncation=True)
    except Exception:
        return None
    if not is_answer_to(reply, reply.id, name, dns.rdatatype.RdataType.make(rdtype)):
        return None
    return summarize(reply)


def _check(wire: bytes, qname: str, rdtype: int | str, fast: bool | None = None) -> ReplySummary | None:
    """The decoder either falls back (None) or says exactly what dnspython says."""
    name = dns.name.from_text(qname)
    rdtype = dns.rdatatype.RdataType.make(rdtype)
    decoded = decode_reply(wire, name.labels, rdtype)
    if decoded is not None:
        assert decoded == _reference(wire, name, rdtype), wire
    if fast is not None:
        assert (decoded is not None) is fast, (decoded, _reference(wire, name, rdtype))
    return decoded


def test_the_decoder_reads_every_reply_of_the_test_zones_as_dnspython(knot_factory: KnotFactory) -> None:
    import socket

    zones = _zones()
    host, port = knot_factory(zones).address
    decoded = fallback = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect((host, port))
        for number, query in enumerate(_queries(zones)):
            name = dns.name.from_text(query.name)
            rdtype = dns.rdatatype.from_text(query.rdtype)
            sock.send(query_wire(number, name.labels, rdtype))
            wire = sock.recv(65535)
            truncated = bool(int.from_bytes(wire[2:4], "big") & dns.flags.TC)  # dnspython: Truncated
            assert truncated or _reference(wire, name, rdtype) is not None  # a real answer
            # Every A/AAAA/MX/TXT/CNAME/PTR reply Knot sends is decoded; NS/SOA questions, TC, and
            # REFUSED (Knot adds an Extended DNS Error option to the OPT record) fall back.
            refused = wire[3] & 0xF == dns.rcode.REFUSED
            expected = rdtype in FAST_TYPES and not truncated and not refused
            if _check(wire, query.name, rdtype, fast=expected) is None:
                fallback += 1
            else:
                decoded += 1
    print(f"{decoded} replies decoded, {fallback} left to dnspython")
    assert decoded > 250 and fallback > 0


def _response(qname: str, rdtype: str, *records: str, rcode: int = dns.rcode.NOERROR,
              authority: tuple[str, ...] = (), origin: str = "example.test.") -> bytes:
    """A reply built by dnspython (compressed names) from zone-file lines."""
    query = dns.message.make_query(qname, rdtype, use_edns=0, payload=1232)
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.Rcode.make(rcode))
    for section, lines in ((reply.answer, records), (reply.authority, authority)):
        for line in lines:
            owner, ttl, rtype, rdata = line.split(None, 3)
            rrset = reply.find_rrset(section, dns.name.from_text(owner, dns.name.from_text(origin)),
                                     dns.rdataclass.IN, dns.rdatatype.from_text(rtype), create=True)
            rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rtype, rdata, dns.name.from_text(origin),
                                          relativize=False),
                      int(ttl))
    return reply.to_wire()


def _raw_name(name: str) -> bytes:
    return dns.name.from_text(name).to_wire()


def _raw(qname: str, rdtype: int, records: list[tuple[bytes, int, int, int, bytes]], *,
         flags: int = 0x8180, counts: tuple[int, int, int] | None = None, tail: bytes = b"",
         opt: bool = True) -> bytes:
    """A reply assembled byte by byte (no compression unless the caller writes pointers)."""
    body = b"".join(owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata
                    for owner, rtype, _, ttl, rdata in records)
    ancount, nscount, arcount = counts or (len(records), 0, 0)
    additional = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0) if opt else b""
    return (struct.pack("!HHHHHH", 0x1234, flags, 1, ancount, nscount, arcount + opt)
            + _raw_name(qname) + struct.pack("!HH", rdtype, 1) + body + additional + tail)


SOA = "example.test. 300 SOA ns.example.test. admin.example.test. 1 7200 3600 1209600 300"


def test_the_decoder_on_addresses_and_text() -> None:
    for address in ("::ffff:192.0.2.1", "::ffff:0:1", "::", "::1", "2001:db8::1", "2001:db8:0:0:1:0:0:1",
                    "2001:db8:1:2:3:4:5:6", "1::", "0:0:1::", "fe80::1:0:0:0", "::ffff:1.2.3.4",
                    "::1.2.3.4", "64:ff9b::192.0.2.33", "2001:0:0:1::1"):
        decoded = _check(_response("h.example.test.", "AAAA", f"h 60 AAAA {address}"),
                         "h.example.test", "AAAA", fast=True)
        assert decoded is not None and decoded.records == (dns.ipv6.inet_ntoa(dns.ipv6.inet_aton(address)),)
    _check(_response("h.example.test.", "A", "h 60 A 192.0.2.1", "h 30 A 0.0.0.0", "h 90 A 255.255.255.255"),
           "h.example.test", "A", fast=True)
    texts = ['"plain"', '"with \\"quotes\\" and \\\\backslash\\\\"', '"\\000nul \\127del \\255ff \\031"',
             '""', '"" "two" ""', '"tab\\009 and space" "semi;colon (paren) @$"', '"' + "x" * 255 + '"']
    for text in texts:
        decoded = _check(_response("t.example.test.", "TXT", f"t 60 TXT {text}"), "t.example.test", "TXT",
                         fast=True)
        assert decoded is not None and decoded.records == (dns.rdata.from_text("IN", "TXT", text).to_text(),)
    _check(_response("t.example.test.", "TXT", *(f"t {i} TXT {text}" for i, text in enumerate(texts, 5))),
           "t.example.test", "TXT", fast=True)
    _check(_response("m.example.test.", "MX", "m 60 MX 0 .", "m 60 MX 10 mx.example.test.",
                     "m 60 MX 65535 mx.other.test."), "m.example.test", "MX", fast=True)
    _check(_response("4.3.2.1.in-addr.arpa.", "PTR", "4.3.2.1.in-addr.arpa. 60 PTR host.example.test."),
           "4.3.2.1.in-addr.arpa", "PTR", fast=True)


def test_the_decoder_on_names_with_special_characters() -> None:
    for label in ('a\\.b', '\\"q\\"', "\\(x\\)", "semi\\;", "at\\@", "dollar\\$", "back\\\\slash",
                  "sp\\032ace", "nul\\000", "del\\127", "high\\255", "UPPER", "-_*"):
        owner = f"{label}.example.test."
        _check(_response(owner, "A", f"{owner} 60 A 192.0.2.1"), owner, "A", fast=True)
        _check(_response("m.example.test.", "MX", f"m 60 MX 5 {owner}"), "m.example.test", "MX", fast=True)
        decoded = _check(_response("c.example.test.", "A", f"c 60 CNAME {owner}", f"{owner} 60 A 192.0.2.1"),
                         "c.example.test", "A", fast=True)
        assert decoded is not None and decoded.records == ("192.0.2.1",)
        _check(_response("c.example.test.", "CNAME", f"c 60 CNAME {owner}"), "c.example.test", "CNAME",
               fast=True)
    _check(_response("Mixed.Example.TEST.", "A", "Mixed.Example.TEST. 60 A 192.0.2.1"), "mixed.example.test",
           "A", fast=True)


def test_the_decoder_on_alias_chains() -> None:
    for hops in range(1, 18):
        chain = [f"c{i} 60 CNAME c{i + 1}" for i in range(hops)] + [f"c{hops} 30 A 192.0.2.{hops}"]
        decoded = _check(_response("c0.example.test.", "A", *chain), "c0.example.test", "A",
                         fast=hops < 16)  # 16 hops: dnspython's ChainTooLong, left to it
        if hops < 16:
            assert decoded is not None and len(decoded.cnames) == hops
            assert decoded.canonical == f"c{hops}.example.test"
        unchased = _check(_response("c0.example.test.", "A", *chain[:-1]), "c0.example.test", "A",
                          fast=hops < 16)  # stopped at the alias: no SOA
        assert hops >= 16 or (unchased is not None and unchased.records is None and not unchased.has_soa)
        _check(_response("c0.example.test.", "A", *chain[:-1], authority=(SOA,)), "c0.example.test", "A",
               fast=hops < 16)
    _check(_response("a.example.test.", "A", "a 60 CNAME b", "b 60 CNAME a"), "a.example.test", "A",
           fast=False)  # a loop: ChainTooLong
    _check(_response("a.example.test.", "A", "a 60 CNAME a"), "a.example.test", "A", fast=False)
    _check(_response("a.example.test.", "CNAME", "a 60 CNAME b", "b 60 CNAME c"), "a.example.test", "CNAME",
           fast=True)


def test_the_decoder_on_negative_and_odd_answers() -> None:
    _check(_response("x.example.test.", "A", "other 60 A 192.0.2.1", "x 60 AAAA ::1"), "x.example.test",
           "A", fast=True)
    _check(_response("x.example.test.", "A", authority=(SOA,)), "x.example.test", "A", fast=True)
    _check(_response("x.example.test.", "A"), "x.example.test", "A", fast=True)
    for timers in ("7200 3600 1209600 2147483647", "7200 3600 1209600 2147483648", "4294967295 1 1 1"):
        soa = SOA.rsplit(" ", 4)[0] + " " + timers
        _check(_response("x.example.test.", "A", authority=(soa,)), "x.example.test", "A", fast=True)
    for rcode in (dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL, dns.rcode.REFUSED):
        _check(_response("x.example.test.", "A", authority=(SOA,), rcode=rcode), "x.example.test", "A",
               fast=True)
    _check(_response("x.example.test.", "A", "x 60 A 192.0.2.1", rcode=dns.rcode.NXDOMAIN),
           "x.example.test", "A", fast=True)  # the answer is not read for NXDOMAIN
    _check(_response("x.example.test.", "A", rcode=dns.rcode.NOTIMP), "x.example.test", "A", fast=False)
    _check(_response("x.example.test.", "A", "x 60 A 192.0.2.1"), "y.example.test", "A", fast=False)
    _check(_response("x.example.test.", "A", "x 60 A 192.0.2.1"), "x.example.test", "AAAA", fast=False)
    _check(_response("x.example.test.", "NS", "x 60 NS ns.example.test."), "x.example.test", "NS",
           fast=False)
    # TTLs: the RRset's is the smallest of its records'; above 2^31 - 1 reads as 0.
    owner = _raw_name("x.example.test.")
    for ttls in ((60, 30, 90), (0x80000000, 5, 7), (7, 0xFFFFFFFF, 9)):
        records = [(owner, 1, 1, ttl, bytes((192, 0, 2, i))) for i, ttl in enumerate(ttls)]
        decoded = _check(_raw("x.example.test", 1, records), "x.example.test", "A", fast=True)
        assert decoded is not None and decoded.ttl == min(0 if t > 0x7FFFFFFF else t for t in ttls)
    # Duplicates and two CNAMEs for one owner are left to dnspython's set semantics.
    duplicate = [(owner, 1, 1, 60, b"\xc0\x00\x02\x01")] * 2
    _check(_raw("x.example.test", 1, duplicate), "x.example.test", "A", fast=False)
    mx = [(owner, 15, 1, 60, b"\x00\x05" + _raw_name(n)) for n in ("MX.example.test.", "mx.example.test.")]
    _check(_raw("x.example.test", 15, mx), "x.example.test", "MX", fast=False)
    cnames = [(owner, 5, 1, 60, _raw_name(n)) for n in ("a.example.test.", "b.example.test.")]
    _check(_raw("x.example.test", 1, cnames), "x.example.test", "A", fast=False)
    # Empty TXT rdata, wrong address lengths, a name that overruns its rdata: dnspython rejects.
    _check(_raw("x.example.test", 16, [(owner, 16, 1, 60, b"")]), "x.example.test", "TXT", fast=False)
    _check(_raw("x.example.test", 16, [(owner, 16, 1, 60, b"\x00")]), "x.example.test", "TXT", fast=True)
    _check(_raw("x.example.test", 16, [(owner, 16, 1, 60, b"\x05ab")]), "x.example.test", "TXT", fast=False)
    _check(_raw("x.example.test", 1, [(owner, 1, 1, 60, b"\x01\x02\x03")]), "x.example.test", "A", fast=False)
    _check(_raw("x.example.test", 28, [(owner, 28, 1, 60, b"\x00" * 15)]), "x.example.test", "AAAA",
           fast=False)
    _check(_raw("x.example.test", 5, [(owner, 5, 1, 60, _raw_name("a.test.") + b"\x00")]), "x.example.test",
           "CNAME", fast=False)
    # Header trouble: truncated, no question, trailing bytes, an EDNS option, a DNSSEC record, no QR.
    a_record = [(owner, 1, 1, 60, b"\xc0\x00\x02\x01")]
    _check(_raw("x.example.test", 1, a_record), "x.example.test", "A", fast=True)
    _check(_raw("x.example.test", 1, a_record, flags=0x8380), "x.example.test", "A", fast=False)
    _check(_raw("x.example.test", 1, a_record, flags=0x0180), "x.example.test", "A", fast=False)
    _check(_raw("x.example.test", 1, a_record, tail=b"\x00"), "x.example.test", "A", fast=False)
    _check(_raw("x.example.test", 1, a_record, opt=False), "x.example.test", "A", fast=True)
    with_option = _raw("x.example.test", 1, a_record, opt=False, counts=(1, 0, 1),
                       tail=b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 4) + b"\x00\x03\x00\x00")
    _check(with_option, "x.example.test", "A", fast=False)
    rrsig = [*a_record, (owner, 46, 1, 60, b"\x00" * 18 + b"\x00" + b"\x01")]
    _check(_raw("x.example.test", 1, rrsig), "x.example.test", "A", fast=False)


def test_the_decoder_on_compression_pointers() -> None:
    question = _raw_name("x.example.test.")  # at offset 12
    header = struct.pack("!HHHHHH", 1, 0x8180, 1, 1, 0, 0)
    typeclass = struct.pack("!HH", 1, 1)

    def reply(owner: bytes, rtype: int = 1, rdata: bytes = b"\xc0\x00\x02\x01", qtype: int = 1) -> bytes:
        return (header + question + struct.pack("!HH", qtype, 1) + owner
                + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata)

    assert len(header + question + typeclass) == 12 + 16 + 4
    _check(reply(b"\xc0\x0c"), "x.example.test", "A", fast=True)  # to the question name
    _check(reply(b"\x01y\xc0\x0e"), "x.example.test", "A", fast=True)  # y. + example.test.
    _check(reply(b"\x01x\xc0\x10"), "x.example.test", "A", fast=False)  # into a label: 0x61 type
    _check(reply(b"\xc0\x20"), "x.example.test", "A", fast=False)  # forward / self pointer
    _check(reply(b"\xc0\x0c", 5, b"\x01z\xc0\x0e", 5), "x.example.test", "CNAME", fast=True)
    _check(reply(b"\xc0\x0c", 5, b"\xc0\x30", 5), "x.example.test", "CNAME", fast=False)  # into itself
    _check(reply(b"\xc0\x0c", 15, b"\x00\x0a\xc0\x0c", 15), "x.example.test", "MX", fast=True)
    # A pointer to a pointer to the question (two hops), and a loop of pointers.
    chained = (header + question + struct.pack("!HH", 5, 1) + b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, 2)
               + b"\xc0\x20")
    _check(chained, "x.example.test", "CNAME", fast=True)
    looped = header + b"\xc0\x0c" + typeclass
    _check(looped, "x.example.test", "A", fast=False)
    # Label types 0x40 and 0x80, and a name longer than 255 bytes.
    _check(reply(b"\x40"), "x.example.test", "A", fast=False)
    _check(reply(b"\x80"), "x.example.test", "A", fast=False)
    long = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\xc0\x0c"
    _check(reply(long), "x.example.test", "A", fast=False)


def test_the_decoder_on_mangled_replies() -> None:
    """Random truncations and byte changes of valid replies: falling back or agreeing, never differing."""
    import random

    randomness = random.Random(20240601)
    samples = [
        ("c0.example.test", "A", _response("c0.example.test.", "A", "c0 60 CNAME c1", "c1 60 CNAME c2",
                                           "c2 30 A 192.0.2.1", authority=(SOA,))),
        ("t.example.test", "TXT", _response("t.example.test.", "TXT", 't 60 TXT "a\\"b" "\\255"',
                                            't 60 TXT "second"')),
        ("m.example.test", "MX", _response("m.example.test.", "MX", "m 60 MX 10 mx.example.test.",
                                           "m 60 MX 20 m.example.test.")),
        ("h.example.test", "AAAA", _response("h.example.test.", "AAAA", "h 60 AAAA ::ffff:192.0.2.1")),
        ("x.example.test", "A", _response("x.example.test.", "A", authority=(SOA,),
                                          rcode=dns.rcode.NXDOMAIN)),
    ]
    agreed = 0
    for qname, rdtype, wire in samples:
        for _ in range(3000):
            mangled = bytearray(wire)
            for _ in range(randomness.randint(1, 3)):
                choice = randomness.random()
                if choice < 0.7 and mangled:
                    mangled[randomness.randrange(len(mangled))] = randomness.randrange(256)
                elif choice < 0.85 and mangled:
                    del mangled[randomness.randrange(len(mangled)):]
                else:
                    mangled.insert(randomness.randrange(len(mangled) + 1), randomness.randrange(256))
            agreed += _check(bytes(mangled), qname, rdtype) is not None
    assert agreed > 1000


def test_the_resolver_answers_the_same_with_and_without_the_decoder(knot_factory: KnotFactory) -> None:
    zones = _zones()
    host, port = knot_factory(zones).address
    queries = _queries(zones)
    reference = asyncio.run(_ask_all(_resolver(host, port, MultiplexTransport(fast_decode=False)), queries))
    fast = asyncio.run(_ask_all(_resolver(host, port, MultiplexTransport()), queries))
    assert [_fields(a) for a in fast] == [_fields(a) for a in reference]
    assert [a.rcode for a in fast] == [a.rcode for a in reference]


# --- Names and TXT text read without dnspython, against dnspython -----------------------------

NAME_TEXTS = ("example.test", "example.test.", "MiXeD.Example.TEST", "_dmarc.d00001.example",
              "selector1._domainkey.x-y.test", "a", "a.", "1.2.0.192.in-addr.arpa", "-.-_.test",
              ".", "", "a..b", ".a", "a\\.b.test", "a b.test", "*.test", "b\u00fccher.test",
              "xn--bcher-kva.test", "x" * 63 + ".test", "x" * 64 + ".test", "@",
              ".".join(["a" * 63] * 4), ".".join(["a" * 63] * 3 + ["a" * 61]),
              ".".join(["a" * 63] * 3 + ["a" * 61]) + ".", ".".join(["a" * 63] * 3 + ["a" * 62]))


def _labels_or_error(read: object, text: str) -> object:
    try:
        return read(text)  # type: ignore[operator]
    except Exception as exc:  # the same exception class as dnspython's
        return type(exc)


def test_query_names_are_read_as_dnspython_reads_them() -> None:
    from auditor.dnswire import name_labels

    zones = _zones()
    texts = [*NAME_TEXTS, *(q.name for q in _queries(zones))]
    for text in texts:
        assert _labels_or_error(name_labels, text) == _labels_or_error(
            lambda t: dns.name.from_text(t).labels, text), text


def _txt_texts(zones: dict[str, str]) -> list[str]:
    """Every TXT record of the zones, as dnspython writes it (what the resolver records); a
    line scan, as some demo records are deliberately invalid."""
    texts = []
    for origin, text in zones.items():
        for line in zone_text(origin, text).splitlines():
            _, found, rdata = line.partition(" TXT ")
            if found:
                try:
                    texts.append(dns.rdata.from_text("IN", "TXT", rdata).to_text())
                except dns.exception.DNSException:
                    continue
    return texts


def test_txt_records_are_read_as_dnspython_reads_them() -> None:
    from auditor.dnsmodel import txt_strings

    texts = _txt_texts(_zones())
    assert len(texts) > 50
    texts += ['"plain"', '""', '"" "two" ""', '"x" "y"', '"' + "x" * 255 + '"', '"' + "x" * 256 + '"',
              '"a"  "b"', '"a" "b" ', 'unquoted', '"semi;colon (paren) @$"', '"with \\"q\\""', '"\\065"',
              '"tab\tin"', '"caf\u00e9"', '"a" unquoted', '', '"', '"open', '"a""b"']
    for text in texts:
        assert _labels_or_error(txt_strings, text) == _labels_or_error(
            lambda t: dns.rdata.from_text("IN", "TXT", t).strings, text), text


def test_the_decoder_reads_the_question_as_sent_or_as_written() -> None:
    """The question as it was sent is matched byte for byte (in any case), and an owner that
    points to it is that name; a question spelled otherwise is read label by label, with
    dnspython's outcome either way."""
    address = bytes([192, 0, 2, 1])
    pointer = _raw("q.example.test", 1, [(b"\xc0\x0c", 1, 1, 60, address)])
    written = _raw("q.example.test", 1, [(_raw_name("Q.Example.test"), 1, 1, 60, address)])
    for wire, asked in ((pointer, "q.example.test"), (pointer, "Q.EXAMPLE.test"),
                        (written, "q.example.test")):
        decoded = _check(wire, asked, "A", fast=True)
        assert decoded is not None and decoded.records == ("192.0.2.1",)
        assert decoded.canonical == ""  # (no alias: the question's name)
    assert _check(pointer, "other.example.test", "A", fast=False) is None
    assert _check(pointer, "q.example.test.more", "A", fast=False) is None
    assert decode_reply(pointer, (b"q", b"example", b"test"), 1) is None  # not an absolute name
    # A question compressed against the header: not as sent, read (and judged) the long way.
    odd = pointer[:12] + b"\xc0\x00" + pointer[12 + len(_raw_name("q.example.test")):]
    _check(odd, "q.example.test", "A")


async def test_each_query_times_out_after_its_own_timeout() -> None:
    """Deadlines in the order they are set share one timer; one set out of order (a shorter
    timeout after a longer one) still comes on time."""
    async with DnsDouble() as double:
        for name in ("a", "b", "c"):
            double.drop(f"{name}.example.test", "A")
        host, port = double.address
        transport = MultiplexTransport(sockets_per_server=1)
        loop = asyncio.get_running_loop()

        async def waited(name: str, timeout: float) -> float:
            started = loop.time()
            ended: asyncio.Future[object] = loop.create_future()
            transport.submit(dns.name.from_text(f"{name}.example.test").labels, dns.rdatatype.A,
                             host, port, timeout, lambda result, tcp: ended.set_result(result))
            assert isinstance(await ended, dns.exception.Timeout)
            return loop.time() - started

        waits = await asyncio.gather(waited("a", 0.6), waited("b", 0.2), waited("c", 0.6))
    assert 0.59 <= waits[0] < 1.5 and 0.19 <= waits[1] < 0.5 and 0.59 <= waits[2] < 1.5
    assert transport.in_flight == 0


def test_query_ids_are_drawn_from_the_system_and_a_forked_child_draws_its_own() -> None:
    import os

    from auditor.dnsfast import _random_id

    ids = [_random_id() for _ in range(5000)]  # (more than one batch)
    assert all(0 <= i < 65536 for i in ids) and len(set(ids)) > 4500
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(writing, struct.pack("!8H", *(_random_id() for _ in range(8))))
        os._exit(0)
    os.waitpid(child, 0)
    from_child = list(struct.unpack("!8H", os.read(reading, 16)))
    os.close(reading)
    os.close(writing)
    assert from_child != [_random_id() for _ in range(8)]


async def test_a_server_port_with_nothing_listening_fails_each_lookup_with_the_refusal() -> None:
    """The ICMP error on a connected socket fails the queries waiting on it; each lookup is
    tried again, then recorded as an error that names the refusal, without waiting out a timeout."""
    import socket

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # (nothing listens there now)
    resolver = _resolver("127.0.0.1", port, MultiplexTransport(), timeout=60.0, tries=2)
    # (a bound far below the timeout: the refusal, not a timeout, must end each try)
    answers = await asyncio.wait_for(_ask_all(resolver, [DnsQuery.of(f"h{i}.example.test", "A")
                                                          for i in range(20)]), 10)
    assert {a.status for a in answers} == {DnsStatus.ERROR}
    assert all("ConnectionRefusedError" in (a.detail or "") for a in answers)
    assert resolver.sent == 40


async def test_a_lost_datagram_is_sent_again_within_the_try() -> None:
    """The query is sent once more, same ID, after ``resend_after``: the lookup is answered by
    its first try instead of timing out and being tried again."""
    async with DnsDouble() as double:
        double.lose_first("lost.example.test", "A", "192.0.2.7")
        transport = MultiplexTransport(resend_after=0.05)
        resolver = _resolver(*double.address, transport, timeout=5.0, tries=2)
        found = await resolver.query(DnsQuery.of("lost.example.test", "A"))
    assert found.status is DnsStatus.OK and found.records == ("192.0.2.7",)
    assert resolver.sent == 1 and transport.resent == 1
    ids = [i for name, _, _, i in double.ids if name == "lost.example.test."]
    assert len(ids) == 2 and ids[0] == ids[1]


async def test_a_query_answered_in_time_is_not_sent_again() -> None:
    async with DnsDouble() as double:
        double.answer("quick.example.test", "A", "192.0.2.8")
        double.drop("held.example.test", "A")  # (in flight throughout: the transport stays open)
        host, port = double.address
        transport = MultiplexTransport(resend_after=0.05)
        quick: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        transport.submit(dns.name.from_text("held.example.test").labels, dns.rdatatype.A, host, port,
                         5.0, lambda result, tcp: None)
        transport.submit(dns.name.from_text("quick.example.test").labels, dns.rdatatype.A, host, port,
                         5.0, lambda result, tcp: quick.set_result(result))
        assert isinstance(await quick, ReplySummary)
        await asyncio.sleep(0.2)  # (past the moment each would be sent again)
        transport.close()
    assert double.count("quick.example.test", "A") == 1
    assert double.count("held.example.test", "A") == 2 and transport.resent == 1


async def test_a_server_that_never_answers_gets_each_try_twice_and_the_timeout_stands() -> None:
    async with DnsDouble() as double:
        double.drop("silent.example.test", "A")
        transport = MultiplexTransport(resend_after=0.05)
        resolver = _resolver(*double.address, transport, timeout=0.3, tries=2)
        found = await resolver.query(DnsQuery.of("silent.example.test", "A"))
    assert found.status is DnsStatus.TIMEOUT and found.detail == "no answer within 0.3 s"
    assert double.count("silent.example.test", "A") == 4 and transport.resent == 2


async def test_the_other_copys_late_reply_is_not_taken_for_a_later_query(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A query sent twice keeps its ID after it is answered, until the other copy's reply: a
    query asked meanwhile gets another ID (here every ID drawn is 7, so it would get the same)
    and is not failed by that reply (a reply to another question)."""
    import auditor.dnsfast as dnsfast

    monkeypatch.setattr(dnsfast, "_ids", iter([7] * (2 + dnsfast.MAX_ID_DRAWS)))
    async with DnsDouble() as double:
        double.late_first("first.example.test", "A", 0.3, "192.0.2.1")  # the first copy's reply: late
        double.delay("second.example.test", "A", 0.5, "192.0.2.2")  # after that late reply
        host, port = double.address
        transport = MultiplexTransport(sockets_per_server=1, resend_after=0.05)
        replies: dict[str, object] = {}
        done = asyncio.Event()

        def second(result: object, tcp: bool) -> None:
            replies["second"] = result
            done.set()

        def first(result: object, tcp: bool) -> None:
            replies["first"] = result  # (asked here, before the idle sockets would be closed)
            transport.submit(dns.name.from_text("second.example.test").labels, dns.rdatatype.A,
                             host, port, 2.0, second)

        transport.submit(dns.name.from_text("first.example.test").labels, dns.rdatatype.A,
                         host, port, 2.0, first)
        await asyncio.wait_for(done.wait(), 5)
        transport.close()
    assert isinstance(replies["first"], ReplySummary) and replies["first"].records == ("192.0.2.1",)
    assert isinstance(replies["second"], ReplySummary), replies["second"]
    assert replies["second"].records == ("192.0.2.2",)
    ids = {(name, i) for name, _, _, i in double.ids}
    assert ("first.example.test.", 7) in ids and ("second.example.test.", 7) not in ids
