"""The live DNS client: every query answered with a DnsAnswer that says exactly what happened.

Built on a transport that sends single queries (``auditor.dnsfast``: dnspython's wire format
and, for what its fast decoder does not cover, dnspython's parser) rather than on a stub
resolver, so that each outcome (NXDOMAIN, NODATA, SERVFAIL, REFUSED, timeout, a truncated UDP
answer retried over TCP) is recorded as such. EDNS is on (1232-byte payload) so long SPF
records rarely need TCP. Identical lookups share one query for the whole run, in flight or done.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache, partial

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype

from .dnsfast import MultiplexTransport, Reply, Transport
from .dnsmodel import DnsAnswer, DnsQuery, DnsStatus
from .dnswire import ReplySummary, name_labels, summarize
from .errors import InputError
from .frozen import built_directly
from .netutil import split_host_port

DEFAULT_TIMEOUT = 3.0
DEFAULT_TRIES = 2
DEFAULT_CONCURRENCY = 64
MAX_ALIASES = 8  # CNAME hops followed when the server answers with an alias only


@dataclass(frozen=True, slots=True)
class Nameserver:
    """A DNS server to ask (an IP address and port: no name to resolve first)."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Nameserver:
        """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address."""
        import ipaddress

        host, port = split_host_port(text, 53, "--nameserver")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise InputError(f"--nameserver {text!r}: expected an IP address, optionally :PORT") from None
        return cls(host, port)


async def silent_nameservers(nameservers: Sequence[Nameserver],
                             timeout: float) -> list[tuple[Nameserver, str]]:
    """The servers that send no DNS reply (none in time, nothing listening, a reply that is not
    an answer to the question) to one query for the root's NS, with why; all asked at once. A
    recursive server answers it from its cache and any other refuses it at once: a slow or
    broken domain cannot make a working server look silent. Any reply counts, a refusal too."""
    transport = MultiplexTransport(sockets_per_server=1)
    loop = asyncio.get_running_loop()
    replies: list[asyncio.Future[Reply | BaseException]] = []
    for server in nameservers:
        reply: asyncio.Future[Reply | BaseException] = loop.create_future()
        transport.submit(dns.name.root.labels, dns.rdatatype.NS, server.host, server.port, timeout,
                         lambda result, tcp, reply=reply: reply.set_result(result))
        replies.append(reply)
    silent = []
    for server, result in zip(nameservers, await asyncio.gather(*replies), strict=True):
        if isinstance(result, dns.exception.Timeout):
            silent.append((server, f"no reply within {timeout:g} s"))
        elif isinstance(result, BaseException):
            silent.append((server, f"{type(result).__name__}: {result}"))
    transport.close()
    return silent


def system_nameservers() -> list[Nameserver]:
    """The machine's resolvers (read when asked, never at import)."""
    from dns import resolver  # (it imports all of dnspython's query machinery: only when asked)

    try:
        config = resolver.Resolver()
    except resolver.NoResolverConfiguration:
        return []
    return [Nameserver(str(ns)) for ns in config.nameservers]


_RETRIED = frozenset({DnsStatus.TIMEOUT, DnsStatus.SERVFAIL, DnsStatus.ERROR})
AnswerCallback = Callable[[DnsAnswer], None]


class _Lookup:
    """One lookup in flight: who waits for it, and where it stands (the try, the alias chain)."""

    __slots__ = ("abandoned", "aliases", "asking", "attempt", "callbacks", "labels", "query", "rdtype",
                 "seen", "started")

    def __init__(self, query: DnsQuery, callbacks: list[AnswerCallback]) -> None:
        self.query = query
        self.callbacks = callbacks
        self.asking = query  # the name asked now: the query's, or an alias target's
        self.labels: tuple[bytes, ...] = ()
        self.rdtype = dns.rdatatype.NONE
        self.attempt = 0
        self.started = 0.0
        self.seen: set[str] | None = None  # names followed, once an alias is being chased
        self.aliases: list[str] = []
        self.abandoned = False  # left in flight by an event loop that has gone (asked again)


class Resolver:
    """Asks recursive nameservers, one query per distinct (name, type) for the whole run.

    Lookups are driven by callbacks (``request``): the transport's reply handler builds the
    answer, retries or follows an alias, and tells whoever waits, with no task or coroutine per
    query; ``query`` is the same as a coroutine. A lookup, once asked, runs to its end whoever
    stops waiting for it, and every outcome is an answer (failures included)."""

    def __init__(self, nameservers: Sequence[Nameserver], *, timeout: float = DEFAULT_TIMEOUT,
                 tries: int = DEFAULT_TRIES, concurrency: int = DEFAULT_CONCURRENCY,
                 transport: Transport | None = None) -> None:
        """``transport`` sends each query: by default ``MultiplexTransport`` (a few shared UDP
        sockets); ``DnspythonTransport`` is dnspython's one-socket-per-query reference path."""
        if not nameservers:
            raise InputError("no DNS server to ask: give --nameserver IP[:PORT] or --no-dns")
        self.nameservers = tuple(nameservers)
        self._servers = tuple((ns.host, ns.port, _server_text(ns)) for ns in self.nameservers)
        self.timeout = timeout
        self.tries = tries
        self.transport: Transport = MultiplexTransport() if transport is None else transport
        self.concurrency = concurrency
        self._free = concurrency  # queries that may be in flight at once
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[_Lookup] = deque()  # lookups waiting for a place, first come first served
        # Every lookup of the run: its answer once it has one, else the lookup in flight.
        self._table: dict[DnsQuery, DnsAnswer | _Lookup] = {}
        self._clock = _TurnClock()
        self.sent = 0

    def request(self, query: DnsQuery, callback: AnswerCallback) -> DnsAnswer | None:
        """The answer at once if this run has it; otherwise None, and ``callback(answer)`` later
        (never from within this call), the query asked unless it already is."""
        loop = self._loop
        # (A loop that is running is the one this call runs in: a resolver serves one thread.
        # Asking asyncio costs a system call, getpid, on every call.)
        if (loop is None or not loop.is_running()) and asyncio.get_running_loop() is not loop:
            self._abandon_lookups_in_flight()
        found = self._table.get(query)
        if found is None:
            self._table[query] = lookup = _Lookup(query, [callback])
            self._begin(lookup)
            return None
        if type(found) is DnsAnswer:
            return found
        found.callbacks.append(callback)  # type: ignore[union-attr]
        return None

    async def query(self, query: DnsQuery) -> DnsAnswer:
        found = self._table.get(query)
        if type(found) is DnsAnswer:
            return found
        return await self._future(query)

    def joined(self, query: DnsQuery) -> asyncio.Future[DnsAnswer] | None:
        """For a lookup in flight, a future of its own settled with its answer (cancelling it
        leaves the lookup alone); None when the query is not in flight."""
        if type(self._table.get(query)) is not _Lookup:
            return None
        return self._future(query)

    def _future(self, query: DnsQuery) -> asyncio.Future[DnsAnswer]:
        future: asyncio.Future[DnsAnswer] = asyncio.get_running_loop().create_future()

        def settled(found: DnsAnswer) -> None:
            if not future.done():  # (a waiter cancelled meanwhile has given up)
                future.set_result(found)

        found = self.request(query, settled)
        if found is not None:
            future.set_result(found)
        return future

    def cached(self, query: DnsQuery) -> DnsAnswer | None:
        """The answer already received for this query in this run, or None (not asked yet, or
        still in flight): what ``query`` would return at once, without awaiting."""
        found = self._table.get(query)
        return found if type(found) is DnsAnswer else None  # type: ignore[return-value]

    @property
    def answers(self) -> list[DnsAnswer]:
        return [a for a in self._table.values() if type(a) is DnsAnswer]  # type: ignore[misc]

    def _abandon_lookups_in_flight(self) -> None:
        """A new event loop (``asyncio.run`` again): lookups a loop that has gone left in flight
        (a run cut short) would never be answered in this one; they are asked again when next
        wanted, and whatever becomes of their tries is ignored."""
        self._loop = asyncio.get_running_loop()
        for query, found in list(self._table.items()):
            if type(found) is _Lookup:
                found.abandoned = True
                del self._table[query]
        self._queue.clear()
        self._free = self.concurrency

    # -- a lookup's course: admitted, sent (tried again), an alias followed, finished ----------

    def _begin(self, lookup: _Lookup) -> None:
        """Ask ``lookup.asking`` once a place is free."""
        try:
            lookup.labels = name_labels(lookup.asking.name)
            lookup.rdtype = _rdtype(lookup.asking.rdtype)
        except (dns.exception.DNSException, ValueError) as exc:
            invalid = DnsAnswer(lookup.asking, DnsStatus.ERROR, detail=f"not a valid DNS name or type: {exc}")
            asyncio.get_running_loop().call_soon(self._answered, lookup, invalid)
            return
        lookup.attempt = 0
        if self._free > 0 and not self._queue:
            self._free -= 1
            self._send(lookup)
        else:
            self._queue.append(lookup)

    def _send(self, lookup: _Lookup) -> None:
        host, port, _ = self._servers[lookup.attempt % len(self._servers)]
        lookup.started = time.perf_counter()
        self.sent += 1
        self.transport.submit(lookup.labels, lookup.rdtype, host, port, self.timeout,
                              partial(self._replied, lookup))

    def _replied(self, lookup: _Lookup, result: Reply | BaseException, tcp: bool) -> None:
        """One try ended: try again (same place) while it failed and tries are left; else give
        the place to the next lookup waiting, and go on with the answer."""
        if lookup.abandoned:
            return
        server_text = self._servers[lookup.attempt % len(self._servers)][2]
        at, now = self._clock.read(self._loop)
        found = _answer(lookup.asking, result, tcp, server_text, at,
                        max(0.0, round((now - lookup.started) * 1000, 3)), self.timeout)
        if found.status in _RETRIED and lookup.attempt + 1 < self.tries:
            lookup.attempt += 1
            self._send(lookup)
            return
        if self._queue:
            self._send(self._queue.popleft())  # the place goes straight to the next in line
        else:
            self._free += 1
        self._answered(lookup, found)

    def _answered(self, lookup: _Lookup, found: DnsAnswer) -> None:
        """Follow an alias the server did not chase (an authoritative server only chases within
        its own zones): bounded, loops reported as errors; else the lookup is done."""
        if lookup.abandoned:
            return
        alias = found.status is DnsStatus.NODATA and (found.detail or "").startswith("alias ")
        if lookup.seen is None:
            if not alias:
                self._finish(lookup, found)  # (already an answer to this query, with its own aliases)
                return
            lookup.seen = {lookup.query.name}
            lookup.aliases = list(found.cname)
        else:
            lookup.aliases.extend(found.cname)
            if not alias:
                self._finish(lookup, replace(found, query=lookup.query, cname=tuple(lookup.aliases)))
                return
        target = (found.detail or "").removeprefix("alias ")
        if target in lookup.seen or len(lookup.seen) > MAX_ALIASES:
            self._finish(lookup, replace(found, query=lookup.query, status=DnsStatus.ERROR,
                                         cname=tuple(lookup.aliases),
                                         detail=f"alias loop or chain longer than {MAX_ALIASES}: {target}"))
            return
        lookup.seen.add(target)
        lookup.asking = DnsQuery(target, lookup.query.rdtype)
        self._begin(lookup)

    def _finish(self, lookup: _Lookup, found: DnsAnswer) -> None:
        self._table[lookup.query] = found
        for callback in lookup.callbacks:
            callback(found)


_new_answer = built_directly(DnsAnswer)  # (an answer per query: a bulk run makes 60,000)


def _answer(query: DnsQuery, result: Reply | BaseException, tcp: bool, server_text: str,
            at: str, elapsed: float, timeout: float) -> DnsAnswer:
    """What one try says: the reply read as an answer, or the failure named; ``at``/``elapsed``:
    when it came, and how long after the query was sent (ms). (Every field is passed by
    position: query, status, records, ttl, server, at, elapsed_ms, tcp, detail, cname, rcode.)"""
    if isinstance(result, BaseException):
        if isinstance(result, dns.exception.Timeout):
            return _new_answer(query, DnsStatus.TIMEOUT, (), None, server_text, at, elapsed, False,
                               f"no answer within {timeout:g} s", (), None)
        return _new_answer(query, DnsStatus.ERROR, (), None, server_text, at, elapsed, False,
                           f"{type(result).__name__}: {result}", (), None)
    # The transport may already have read the reply (dnswire's fast decoder): same summary.
    reply = result if type(result) is ReplySummary else summarize(result)  # type: ignore[arg-type]
    rcode = reply.rcode
    rcode_text = _rcode_text(rcode)
    if rcode == dns.rcode.NOERROR:
        if reply.chain_error is not None:
            return _new_answer(query, DnsStatus.ERROR, (), None, server_text, at, elapsed, tcp,
                               f"alias chain: {reply.chain_error}", (), rcode_text)
        cnames = reply.cnames
        if reply.records is None:
            # No SOA in the authority section: the server stopped at the alias rather than
            # saying that its target has no data (a chasing server proves no-data with the
            # target's SOA). (resolve_chaining()'s minimum_ttl, once tested here, is never None.)
            unchased = bool(cnames) and reply.canonical != query.name and not reply.has_soa
            return _new_answer(query, DnsStatus.NODATA, (), None, server_text, at, elapsed, tcp,
                               f"alias {reply.canonical}" if unchased else None, cnames, rcode_text)
        return _new_answer(query, DnsStatus.OK, reply.records, reply.ttl, server_text, at, elapsed,
                           tcp, None, cnames, rcode_text)
    if rcode == dns.rcode.NXDOMAIN:
        return _new_answer(query, DnsStatus.NXDOMAIN, (), None, server_text, at, elapsed, tcp, None,
                           (), rcode_text)
    if rcode == dns.rcode.SERVFAIL:
        return _new_answer(query, DnsStatus.SERVFAIL, (), None, server_text, at, elapsed, tcp,
                           "the server failed (SERVFAIL)", (), rcode_text)
    if rcode == dns.rcode.REFUSED:
        return _new_answer(query, DnsStatus.REFUSED, (), None, server_text, at, elapsed, tcp,
                           "the server refused (REFUSED)", (), rcode_text)
    return _new_answer(query, DnsStatus.ERROR, (), None, server_text, at, elapsed, tcp,
                       f"rcode {dns.rcode.to_text(rcode)}", (), rcode_text)


@lru_cache(maxsize=64)
def _server_text(server: Nameserver) -> str:
    return str(server)


@lru_cache(maxsize=64)
def _rcode_text(rcode: int) -> str:
    return dns.rcode.to_text(rcode)  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def _rdtype(text: str) -> dns.rdatatype.RdataType:
    return dns.rdatatype.from_text(text)


class _TurnClock:
    """The time answers are stamped with, read once per turn of the event loop rather than once
    per answer (in bulk, formatting 60,000 times was a fortieth of the run): the replies handled
    in one turn were read at one wake-up, and the first of them reads the clock. (It is forgotten
    at the start of the next turn, and never carried to another loop.)"""

    __slots__ = ("loop", "now", "text")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.text: str | None = None
        self.now = 0.0  # (time.perf_counter)

    def read(self, loop: asyncio.AbstractEventLoop | None) -> tuple[str, float]:
        """(``datetime.now(UTC)`` in ISO form with ``Z``, ``time.perf_counter()``) of this turn
        of ``loop`` (the running loop)."""
        if loop is None:  # (no loop known: read it now)
            return iso_time(time.time_ns()), time.perf_counter()
        if self.text is None or loop is not self.loop:
            self.text, self.now, self.loop = iso_time(time.time_ns()), time.perf_counter(), loop
            loop.call_soon(self._forget)
        return self.text, self.now

    def _forget(self) -> None:
        self.text = None


_second_text: tuple[int, str] = (-1, "")


def iso_time(ns: int) -> str:
    """``datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")`` for ``t`` ns since
    the epoch, truncated to the microsecond (as ``datetime.now`` reads the clock), with the
    text of the second made once per second rather than once per answer."""
    global _second_text
    second, micro = divmod(ns // 1000, 1_000_000)
    if _second_text[0] != second:
        _second_text = (second, datetime.fromtimestamp(second, UTC).isoformat()[:19])
    text = _second_text[1]
    return f"{text}.{micro:06d}Z" if micro else f"{text}Z"
