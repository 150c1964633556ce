"""The live DNS client against a real server (Knot) and a misbehaving double: every outcome
is recorded as what it was."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import dns.exception
import pytest

from auditor.dnsmodel import DnsQuery, DnsStatus
from auditor.dnsresolve import Nameserver, Resolver
from auditor.errors import InputError
from tests.dnsdouble import DnsDouble
from tests.dnsserver import KnotFactory

LONG_SPF = "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(60)) + " -all"
ZONE = f"""
@        300 IN MX  10 mx.example.test.
mx       300 IN A   192.0.2.25
alias    300 IN CNAME mx
@        300 IN TXT {" ".join(f'"{LONG_SPF[i:i + 200]}"' for i in range(0, len(LONG_SPF), 200))}
"""


def _resolver(host: str, port: int, **options: float) -> Resolver:
    return Resolver([Nameserver(host, port)], **options)  # type: ignore[arg-type]


@pytest.fixture
def knot(knot_factory: KnotFactory) -> Resolver:
    host, port = knot_factory({"example.test": ZONE}).address
    return _resolver(host, port)


async def test_answers_records_in_presentation_format(knot: Resolver) -> None:
    found = await knot.query(DnsQuery.of("example.test", "MX"))
    assert found.status is DnsStatus.OK and found.mx() == [(10, "mx.example.test")]
    assert found.server and found.server.startswith("127.0.0.1:")


async def test_a_long_txt_record_arrives_whole_over_udp_with_edns(knot: Resolver) -> None:
    found = await knot.query(DnsQuery.of("example.test", "TXT"))
    assert found.txt() == [LONG_SPF.encode()]
    assert found.tcp is False


async def test_nxdomain_and_nodata_are_told_apart(knot: Resolver) -> None:
    missing = await knot.query(DnsQuery.of("nope.example.test", "TXT"))
    empty = await knot.query(DnsQuery.of("mx.example.test", "TXT"))
    assert (missing.status, empty.status) == (DnsStatus.NXDOMAIN, DnsStatus.NODATA)
    assert missing.status.void and empty.status.void


async def test_aliases_are_followed_and_recorded(knot: Resolver) -> None:
    found = await knot.query(DnsQuery.of("alias.example.test", "A"))
    assert found.addresses() == ["192.0.2.25"]
    assert found.cname == ("alias.example.test",)


@pytest.mark.parametrize(("mode", "status"), [("servfail", DnsStatus.SERVFAIL),
                                              ("refused", DnsStatus.REFUSED),
                                              ("garbage", DnsStatus.ERROR),
                                              ("drop", DnsStatus.TIMEOUT)])
async def test_failures_are_recorded_as_such(mode: str, status: DnsStatus) -> None:
    async with DnsDouble() as double:
        getattr(double, mode)("bad.example.test", "TXT")
        resolver = _resolver(*double.address, timeout=0.3, tries=2)
        found = await resolver.query(DnsQuery.of("bad.example.test", "TXT"))
    assert found.status is status
    assert found.status.temporary
    assert found.detail


async def test_a_truncated_udp_answer_is_retried_over_tcp() -> None:
    async with DnsDouble() as double:
        double.truncate("big.example.test", "TXT", '"v=spf1 -all"')
        found = await _resolver(*double.address).query(DnsQuery.of("big.example.test", "TXT"))
        assert double.count("big.example.test", "TXT", "tcp") == 1
    assert found.status is DnsStatus.OK and found.tcp is True
    assert found.txt() == [b"v=spf1 -all"]


async def test_identical_lookups_in_flight_are_asked_once() -> None:
    async with DnsDouble() as double:
        double.delay("slow.example.test", "A", 0.2, "192.0.2.1")
        resolver = _resolver(*double.address)
        answers = await asyncio.gather(*(resolver.query(DnsQuery.of("slow.example.test", "A"))
                                         for _ in range(20)))
        assert double.count("slow.example.test", "A") == 1
    assert {a.addresses()[0] for a in answers} == {"192.0.2.1"}
    assert resolver.sent == 1


async def test_a_timeout_is_bounded() -> None:
    async with DnsDouble() as double:
        double.drop("hang.example.test", "MX")
        resolver = _resolver(*double.address, timeout=0.2, tries=2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        found = await resolver.query(DnsQuery.of("hang.example.test", "MX"))
        assert loop.time() - started < 5  # two tries of 0.2 s, never a hang
    assert found.status is DnsStatus.TIMEOUT


@pytest.mark.parametrize(("text", "server"), [("127.0.0.1", "127.0.0.1:53"),
                                              ("127.0.0.1:5353", "127.0.0.1:5353"),
                                              ("[::1]:5353", "[::1]:5353"), ("::1", "[::1]:53")])
def test_nameserver_option_forms(text: str, server: str) -> None:
    assert str(Nameserver.parse(text)) == server


@pytest.mark.parametrize("text", ["dns.example", "127.0.0.1:0", "127.0.0.1:http", "[::1]:99999", "[::1]x"])
def test_bad_nameserver_option_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError, match="--nameserver"):
        Nameserver.parse(text)


class _HeldTransport:
    """A transport that keeps every query until the test settles it (``submit``'s contract)."""

    def __init__(self) -> None:
        self.held: list[tuple[str, Callable[[object, bool], None]]] = []
        self.most = 0

    def submit(self, labels: tuple[bytes, ...], rdtype: object, host: str, port: int, timeout: float,
               callback: Callable[[object, bool], None]) -> None:
        self.held.append((b".".join(labels).decode().rstrip("."), callback))
        self.most = max(self.most, len(self.held))

    def settle_first(self) -> str:
        name, callback = self.held.pop(0)
        callback(dns.exception.Timeout(timeout=0.0), False)
        return name

    def close(self) -> None:
        pass


async def test_the_lookup_limit_admits_in_order_and_hands_each_freed_place_on() -> None:
    transport = _HeldTransport()
    resolver = Resolver([Nameserver("127.0.0.1", 53)], transport=transport,  # type: ignore[arg-type]
                        concurrency=2, tries=1)
    names = [f"n{i}.example.test" for i in range(6)]
    tasks = [asyncio.create_task(resolver.query(DnsQuery.of(n, "A"))) for n in names]
    await asyncio.sleep(0)
    tasks[3].cancel()  # a caller giving up does not withdraw its lookup (others may share it)
    order = []
    while transport.held:
        assert len(transport.held) <= 2
        order.append(transport.settle_first())
    assert transport.most == 2 and order == names
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    assert [o.status for i, o in enumerate(outcomes) if i != 3] == [DnsStatus.TIMEOUT] * 5  # type: ignore[union-attr]
    assert resolver.cached(DnsQuery.of(names[3], "A")) is not None and resolver.sent == 6


async def test_a_caller_that_gives_up_on_a_shared_lookup_leaves_it_to_the_others() -> None:
    """Callers of a lookup already in flight wait on futures of their own: one cancelled does
    not cancel the lookup for the others (asyncio.shield's contract)."""
    async with DnsDouble() as double:
        double.delay("slow.example.test", "A", 0.3, "192.0.2.1")
        resolver = _resolver(*double.address)
        query = DnsQuery.of("slow.example.test", "A")
        first = asyncio.create_task(resolver.query(query))
        await asyncio.sleep(0.05)
        quitter = asyncio.create_task(resolver.query(query))
        stayer = asyncio.create_task(resolver.query(query))
        await asyncio.sleep(0.05)
        quitter.cancel()
        answers = await asyncio.gather(first, stayer)
        with pytest.raises(asyncio.CancelledError):
            await quitter
    assert [a.records for a in answers] == [("192.0.2.1",), ("192.0.2.1",)]
    assert resolver.sent == 1 and resolver.cached(query) is answers[0]


async def test_a_lookup_in_flight_can_be_joined_without_a_coroutine() -> None:
    """``joined`` hands out what ``query`` would await for a lookup in flight: a future of its
    own, settled with the same answer, whose cancellation leaves the lookup to the others; and
    None for a query not asked yet or already answered."""
    async with DnsDouble() as double:
        double.delay("slow.example.test", "A", 0.3, "192.0.2.1")
        resolver = _resolver(*double.address)
        query = DnsQuery.of("slow.example.test", "A")
        assert resolver.joined(query) is None  # not asked yet
        first = asyncio.create_task(resolver.query(query))
        await asyncio.sleep(0.05)
        quitter, stayer = resolver.joined(query), resolver.joined(query)
        assert quitter is not None and stayer is not None and quitter is not stayer
        quitter.cancel()
        answers = await asyncio.gather(first, stayer)
        assert resolver.joined(query) is None  # answered: cached() has it
    assert answers[0] is answers[1] is resolver.cached(query)
    assert answers[0].records == ("192.0.2.1",) and resolver.sent == 1
    assert quitter.cancelled()


async def test_a_lookup_goes_on_for_the_others_when_the_caller_who_made_it_gives_up() -> None:
    """Nobody owns a lookup: the caller that started it being cancelled leaves the answer to
    those who joined it or wait for it, and to the run's record."""
    async with DnsDouble() as double:
        double.delay("slow.example.test", "A", 0.3, "192.0.2.1")
        resolver = _resolver(*double.address)
        query = DnsQuery.of("slow.example.test", "A")
        first = asyncio.create_task(resolver.query(query))
        await asyncio.sleep(0.05)
        joined = resolver.joined(query)
        waiter = asyncio.create_task(resolver.query(query))
        assert joined is not None
        await asyncio.sleep(0.05)
        first.cancel()
        outcomes = await asyncio.wait_for(asyncio.gather(first, joined, waiter, return_exceptions=True), 2)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1] is outcomes[2] is resolver.cached(query)
    assert outcomes[1].records == ("192.0.2.1",) and resolver.sent == 1  # type: ignore[union-attr]


def test_a_query_keeps_its_value_semantics() -> None:
    """DnsQuery (a named tuple, for speed) compares, hashes, copies and pickles as a plain value
    (a pickled table of queries is read in another process, whose string hashes differ)."""
    import copy
    import pickle
    import subprocess
    import sys

    query = DnsQuery.of("Example.COM.", "mx")
    assert query == DnsQuery("example.com", "MX") and hash(query) == hash(("example.com", "MX"))
    assert repr(query) == "DnsQuery(name='example.com', rdtype='MX')"
    assert copy.deepcopy(query) == query and hash(query._replace(rdtype="A")) == hash(("example.com", "A"))
    with pytest.raises(AttributeError):
        query.name = "other.example"  # type: ignore[misc]
    table = pickle.dumps({query: "found"})
    read = subprocess.run([sys.executable, "-c", "import pickle, sys\nfrom auditor.dnsmodel import DnsQuery\n"
                           "print(pickle.loads(sys.stdin.buffer.read())[DnsQuery('example.com', 'MX')])"],
                          input=table, capture_output=True, check=True, env={"PYTHONHASHSEED": "7"})
    assert read.stdout.strip() == b"found"


def test_answer_times_are_written_as_datetime_writes_them() -> None:
    """``at`` is made from the clock without a datetime per answer: the same text as
    ``datetime.now(UTC).isoformat()`` (no fraction on a whole second, ``Z`` for UTC)."""
    import random
    from datetime import UTC, datetime, timedelta

    from auditor.dnsresolve import iso_time

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    randomness = random.Random(3)
    instants = [0, 999, 1_000, 10**9, 1_764_115_200 * 10**9, 1_764_115_200 * 10**9 + 999_999_999,
                *(randomness.randrange(4 * 10**18) for _ in range(20_000))]
    for ns in [*instants, *(ns - ns % 10**9 for ns in instants)]:
        expected = (epoch + timedelta(microseconds=ns // 1000)).isoformat().replace("+00:00", "Z")
        assert iso_time(ns) == expected, ns


@pytest.mark.parametrize("name", ["Example.COM.", "a..b", "x" * 70 + ".com", "", ".", "bücher.de",
                                  "_dmarc.example", "xn--bcher-kva.de", "ÄÖ.example", "café.x" * 50,
                                  " Tab.com\t"])
def test_ascii_name_is_what_the_idna_codec_gives(name: str) -> None:
    """ASCII names skip the (slow, pure-Python) codec: the same result, failures included."""
    from auditor.dnsmodel import ascii_name, normalise_name

    try:
        expected = normalise_name(name).encode("idna").decode("ascii")
    except UnicodeError:
        expected = normalise_name(name)
    assert ascii_name(name) == expected


@pytest.mark.parametrize("name", ["", "a", "a..b", "x" * 64, "x" * 63 + ".com", "bücher.de", "a." + "y" * 64,
                                  "_dmarc.x", "ÄÖ.example", "b" * 63 + "." + "c" * 63])
def test_dns_path_reads_names_as_the_idna_codec_does(name: str) -> None:
    from auditor.dnsevidence import _SAFE_NAME, DNS_DIR, dns_path

    try:
        expected: str | None = name.encode("idna").decode("ascii")
    except UnicodeError:
        expected = None
    if expected is not None and (len(expected) > 253 or not _SAFE_NAME.match(expected)):
        expected = None
    assert dns_path(name) == (None if expected is None else f"{DNS_DIR}/{expected}.json")


async def test_answers_handled_in_one_turn_share_one_reading_of_the_clock() -> None:
    from auditor.dnsresolve import _TurnClock

    clock, loop = _TurnClock(), asyncio.get_running_loop()
    first = clock.read(loop)
    assert clock.read(loop) == first and first[0].endswith("Z")
    await asyncio.sleep(0.002)  # (later turns: read again)
    later = clock.read(loop)
    assert later[1] > first[1] and later[0] >= first[0]


def test_a_new_event_loop_never_gets_the_last_loops_reading() -> None:
    import time

    from auditor.dnsresolve import _TurnClock

    clock = _TurnClock()

    async def read() -> tuple[str, float]:
        return clock.read(asyncio.get_running_loop())

    first = asyncio.run(read())  # (its loop ends before the reading is forgotten)
    time.sleep(0.002)
    assert asyncio.run(read())[1] > first[1]
