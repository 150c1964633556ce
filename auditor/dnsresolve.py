"""The live DNS client: every query answered with a DnsAnswer that says exactly what happened.

Built on dnspython's asyncio query functions rather than its stub resolver so that each
outcome (NXDOMAIN, NODATA, SERVFAIL, REFUSED, timeout, a truncated UDP answer retried over
TCP) is recorded as such. EDNS is on (1232-byte payload) so long SPF records rarely need TCP.
Identical lookups share one query for the whole run, in flight or done.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache

import dns.exception
import dns.rcode
import dns.rdatatype

from .dnsfast import MultiplexTransport, Transport
from .dnsmodel import DnsAnswer, DnsQuery, DnsStatus
from .dnswire import ReplySummary, name_labels, summarize
from .errors import InputError

DEFAULT_TIMEOUT = 3.0
DEFAULT_TRIES = 2
DEFAULT_CONCURRENCY = 64
MAX_ALIASES = 8  # CNAME hops followed when the server answers with an alias only


@dataclass(frozen=True, slots=True)
class Nameserver:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Nameserver:
        """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address."""
        import ipaddress

        value = text.strip()
        host, port = value, 53
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            if rest.startswith(":"):
                port = _port(rest[1:], text)
        elif value.count(":") == 1:
            host, port_text = value.split(":")
            port = _port(port_text, text)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise InputError(f"--nameserver {text!r}: expected an IP address, optionally :PORT") from None
        return cls(host, port)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InputError(f"--nameserver {whole!r}: {text!r} is not a port number")
    return int(text)


def system_nameservers() -> list[Nameserver]:
    """The machine's resolvers (read when asked, never at import)."""
    from dns import resolver  # (it imports all of dnspython's query machinery: only when asked)

    try:
        config = resolver.Resolver()
    except resolver.NoResolverConfiguration:
        return []
    return [Nameserver(str(ns)) for ns in config.nameservers]


_RETRIED = frozenset({DnsStatus.TIMEOUT, DnsStatus.SERVFAIL, DnsStatus.ERROR})


class _Limit:
    """At most ``size`` holders at once, first come first served: ``asyncio.Semaphore``'s
    contract, without its bookkeeping on every acquire and release (a bulk run makes hundreds of
    thousands, with thousands of lookups queued)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a place just as it was cancelled: pass it on
            raise

    def release(self) -> None:
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the place goes straight to the next in line
                return
        self.free += 1


class Resolver:
    """Asks recursive nameservers, one query per distinct (name, type) for the whole run."""

    def __init__(self, nameservers: Sequence[Nameserver], *, timeout: float = DEFAULT_TIMEOUT,
                 tries: int = DEFAULT_TRIES, concurrency: int = DEFAULT_CONCURRENCY,
                 transport: Transport | None = None) -> None:
        """``transport`` sends each query: by default ``MultiplexTransport`` (a few shared UDP
        sockets); ``DnspythonTransport`` is dnspython's one-socket-per-query reference path."""
        if not nameservers:
            raise InputError("no DNS server to ask: give --nameserver IP[:PORT] or --no-dns")
        self.nameservers = tuple(nameservers)
        self.timeout = timeout
        self.tries = tries
        self.transport: Transport = MultiplexTransport() if transport is None else transport
        self._limit = _Limit(concurrency)
        self._pending: dict[DnsQuery, asyncio.Future[DnsAnswer]] = {}
        # Those awaiting a lookup another caller is making, each with a future of its own (as
        # asyncio.shield would give it: its cancellation leaves the lookup alone), settled
        # directly when the lookup ends (in bulk, thousands of domains wait for one include).
        self._waiters: dict[DnsQuery, list[asyncio.Future[DnsAnswer]]] = {}
        self.sent = 0

    async def query(self, query: DnsQuery) -> DnsAnswer:
        future = self._pending.get(query)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pending[query] = future
            try:
                found = await self._ask(query)
            except BaseException as exc:  # keep waiters from hanging on a cancelled lookup
                future.set_exception(exc)
                waiters = self._waiters.pop(query, ())
                if waiters:
                    future.exception()  # (passed on to them: retrieved)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                raise
            future.set_result(found)
            for waiter in self._waiters.pop(query, ()):
                if not waiter.done():  # (a waiter cancelled meanwhile has given up)
                    waiter.set_result(found)
            return found
        if future.done():
            return future.result()
        waiter = future.get_loop().create_future()
        self._waiters.setdefault(query, []).append(waiter)
        return await waiter

    def joined(self, query: DnsQuery) -> asyncio.Future[DnsAnswer] | None:
        """For a lookup in flight, the future of its own that ``query`` would await for it (the
        answer, or the lookup's exception; cancelling it leaves the lookup alone), with no
        coroutine or task to await it through; None when the query is not in flight."""
        future = self._pending.get(query)
        if future is None or future.done():
            return None
        waiter = future.get_loop().create_future()
        self._waiters.setdefault(query, []).append(waiter)
        return waiter

    def cached(self, query: DnsQuery) -> DnsAnswer | None:
        """The answer already received for this query in this run, or None (not asked yet,
        still in flight, or failed): what ``query`` would return at once, without awaiting."""
        future = self._pending.get(query)
        if future is None or not future.done() or future.cancelled() or future.exception() is not None:
            return None
        return future.result()

    @property
    def answers(self) -> list[DnsAnswer]:
        return [f.result() for f in self._pending.values() if f.done() and not f.exception()]

    async def _ask(self, query: DnsQuery) -> DnsAnswer:
        """Ask, and follow an alias the server did not chase (an authoritative server only
        chases within its own zones): bounded, loops reported as errors."""
        found = await self._ask_once(query)
        if found.status is not DnsStatus.NODATA or not (found.detail or "").startswith("alias "):
            return found  # (already an answer to this query, with its own aliases)
        seen = {query.name}
        aliases = list(found.cname)
        while found.status is DnsStatus.NODATA and found.detail and found.detail.startswith("alias "):
            target = found.detail.removeprefix("alias ")
            if target in seen or len(seen) > MAX_ALIASES:
                return replace(found, query=query, status=DnsStatus.ERROR, cname=tuple(aliases),
                               detail=f"alias loop or chain longer than {MAX_ALIASES}: {target}")
            seen.add(target)
            found = await self._ask_once(DnsQuery(target, query.rdtype))
            aliases.extend(found.cname)
        return replace(found, query=query, cname=tuple(aliases))

    async def _ask_once(self, query: DnsQuery) -> DnsAnswer:
        try:
            labels = name_labels(query.name)
            rdtype = _rdtype(query.rdtype)
        except (dns.exception.DNSException, ValueError) as exc:
            return DnsAnswer(query, DnsStatus.ERROR, detail=f"not a valid DNS name or type: {exc}")
        last: DnsAnswer | None = None
        limit = self._limit
        if limit.free > 0 and not limit.waiting:  # (acquire()'s own first step, without a coroutine)
            limit.free -= 1
        else:
            await limit.acquire()
        try:
            for attempt in range(self.tries):
                server = self.nameservers[attempt % len(self.nameservers)]
                last = await self._once(query, labels, rdtype, server)
                if last.status not in _RETRIED:
                    return last
        finally:
            self._limit.release()
        assert last is not None
        return last

    async def _once(self, query: DnsQuery, labels: tuple[bytes, ...], rdtype: dns.rdatatype.RdataType,
                    server: Nameserver) -> DnsAnswer:
        started = time.perf_counter()
        self.sent += 1
        common = {"server": _server_text(server)}
        try:
            response, tcp = await self.transport.exchange(labels, rdtype, server.host, server.port,
                                                          self.timeout)
        except dns.exception.Timeout:
            return DnsAnswer(query, DnsStatus.TIMEOUT, detail=f"no answer within {self.timeout:g} s",
                             at=_now(), elapsed_ms=_ms(started), **common)
        except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
            return DnsAnswer(query, DnsStatus.ERROR, detail=f"{type(exc).__name__}: {exc}",
                             at=_now(), elapsed_ms=_ms(started), **common)
        # The transport may already have read the reply (dnswire's fast decoder): same summary.
        reply = response if isinstance(response, ReplySummary) else summarize(response)
        rcode = reply.rcode
        # (the fields every answer to a reply has, passed by position: query, status, records,
        # ttl, server, at, elapsed_ms, tcp; then detail and cname by name, rcode)
        at, elapsed, server_text, rcode_text = _now(), _ms(started), common["server"], _rcode_text(rcode)
        if rcode == dns.rcode.NOERROR:
            if reply.chain_error is not None:
                return DnsAnswer(query, DnsStatus.ERROR, (), None, server_text, at, elapsed, tcp,
                                 f"alias chain: {reply.chain_error}", rcode=rcode_text)
            cnames = reply.cnames
            if reply.records is None:
                # No SOA in the authority section: the server stopped at the alias rather than
                # saying that its target has no data (a chasing server proves no-data with the
                # target's SOA). (resolve_chaining()'s minimum_ttl, once tested here, is never None.)
                unchased = bool(cnames) and reply.canonical != query.name and not reply.has_soa
                return DnsAnswer(query, DnsStatus.NODATA, (), None, server_text, at, elapsed, tcp,
                                 f"alias {reply.canonical}" if unchased else None, cnames,
                                 rcode_text)
            return DnsAnswer(query, DnsStatus.OK, reply.records, reply.ttl, server_text, at,
                             elapsed, tcp, None, cnames, rcode_text)
        if rcode == dns.rcode.NXDOMAIN:
            return DnsAnswer(query, DnsStatus.NXDOMAIN, (), None, server_text, at, elapsed, tcp,
                             rcode=rcode_text)
        if rcode == dns.rcode.SERVFAIL:
            return DnsAnswer(query, DnsStatus.SERVFAIL, (), None, server_text, at, elapsed, tcp,
                             "the server failed (SERVFAIL)", rcode=rcode_text)
        if rcode == dns.rcode.REFUSED:
            return DnsAnswer(query, DnsStatus.REFUSED, (), None, server_text, at, elapsed, tcp,
                             "the server refused (REFUSED)", rcode=rcode_text)
        return DnsAnswer(query, DnsStatus.ERROR, (), None, server_text, at, elapsed, tcp,
                         f"rcode {dns.rcode.to_text(rcode)}", rcode=rcode_text)


@lru_cache(maxsize=64)
def _server_text(server: Nameserver) -> str:
    return str(server)


@lru_cache(maxsize=64)
def _rcode_text(rcode: int) -> str:
    return dns.rcode.to_text(rcode)  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def _rdtype(text: str) -> dns.rdatatype.RdataType:
    return dns.rdatatype.from_text(text)


def _now() -> str:
    """``datetime.now(UTC).isoformat()`` with ``Z`` for ``+00:00``: when an answer arrived."""
    return iso_time(time.time_ns())


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


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
