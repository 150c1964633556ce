"""An in-process DNS server double for what a real server cannot be made to do per name.

Timeouts, SERVFAIL, REFUSED, slow answers, a lost or late first datagram, forced truncation and
garbage replies are configured per
(name, type); everything else (record formats, CNAME chasing, NXDOMAIN vs no-data) belongs on the
real server in ``tests/dnsserver.py``. Unconfigured names get REFUSED, so a test only passes for
the lookups it configured. It listens on 127.0.0.1 (UDP and TCP, one free port) and counts the
queries it receives per (name, type, transport).

    async with DnsDouble() as double:          # or: with DnsDouble() as double: (own thread)
        double.answer("mx.contoso.test", "A", "192.0.2.25")
        double.drop("slow.contoso.test", "TXT")
        host, port = double.address
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

HOST = "127.0.0.1"
MAX_DELAY = 30.0  # seconds; a longer one would outlast any sane client timeout
MAX_IN_FLIGHT = 1000  # queries being answered at once; more are dropped (counted in `overload`)
TCP_IDLE_TIMEOUT = 10.0  # a connection that sends nothing for this long is closed
TCP_MAX_MESSAGES = 1000  # per connection
START_STOP_TIMEOUT = 5.0  # for the thread-backed mode
PORT_ATTEMPTS = 20
UDP_LIMIT = 512  # without EDNS (RFC 1035)
# Too short for a DNS header (12 bytes): dnspython raises dns.message.ShortHeader. The query's ID
# comes first so a client matching IDs before parsing still takes it for the reply.
GARBAGE_TAIL = b"garbage!"


class Mode(enum.StrEnum):
    """What the double does with a query for a configured (name, type)."""

    ANSWER = "answer"  # NOERROR with the given records (none: no-data)
    SERVFAIL = "servfail"
    REFUSED = "refused"
    NXDOMAIN = "nxdomain"
    DROP = "drop"  # never answers: the client times out
    TRUNCATE = "truncate"  # UDP: TC set and no records; TCP: the records in full
    GARBAGE = "garbage"  # bytes that are not a DNS message
    LOSE_FIRST = "lose-first"  # UDP: the first query is not answered, later ones are (as ANSWER)
    LATE_FIRST = "late-first"  # UDP: the first query is answered after the delay, later ones at once


@dataclass(frozen=True)
class Rule:
    mode: Mode
    rrset: dns.rrset.RRset | None = None
    delay: float = 0.0


class DnsDouble:
    """UDP+TCP DNS server on 127.0.0.1 answering from per-(name, type) rules; see module doc."""

    def __init__(self) -> None:
        self.rules: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], Rule] = {}
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (name., TYPE, udp|tcp) -> queries
        self.ids: list[tuple[str, str, str, int]] = []  # (name., TYPE, udp|tcp, query ID) as received
        self.malformed = 0  # datagrams or TCP messages that were not DNS queries
        self.overload = 0  # queries dropped because MAX_IN_FLIGHT were being answered
        self.errors: list[BaseException] = []  # unexpected failures inside the double
        self.port: int | None = None
        self._lock = threading.Lock()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- configuration (callable from any thread, before or while serving) --

    def set(self, name: str, rdtype: str | int, mode: Mode | str, *rdata: str, ttl: int = 300,
            delay: float = 0.0, rrtype: str | int | None = None) -> None:
        """Configure (name, rdtype); rdata (presentation text) of type rrtype (default rdtype)."""
        mode = Mode(mode)
        if not 0 <= delay <= MAX_DELAY:
            raise ValueError(f"delay must be between 0 and {MAX_DELAY} s, not {delay}")
        qname, qtype = dns.name.from_text(name), dns.rdatatype.RdataType.make(rdtype)
        rrset = None
        if rdata:
            if mode not in (Mode.ANSWER, Mode.TRUNCATE, Mode.LOSE_FIRST, Mode.LATE_FIRST):
                raise ValueError(f"{mode} takes no records")
            rtype = qtype if rrtype is None else dns.rdatatype.RdataType.make(rrtype)
            rrset = dns.rrset.from_text_list(qname, ttl, dns.rdataclass.IN, rtype, list(rdata))
        self.rules[(qname, qtype)] = Rule(mode, rrset, delay)

    def answer(self, name: str, rdtype: str | int, *rdata: str, ttl: int = 300, delay: float = 0.0,
               rrtype: str | int | None = None) -> None:
        """NOERROR with these records; none gives no-data (NOERROR, empty answer)."""
        self.set(name, rdtype, Mode.ANSWER, *rdata, ttl=ttl, delay=delay, rrtype=rrtype)

    def delay(self, name: str, rdtype: str | int, seconds: float, *rdata: str, ttl: int = 300) -> None:
        """Answer like ``answer`` but only after ``seconds``."""
        self.set(name, rdtype, Mode.ANSWER, *rdata, ttl=ttl, delay=seconds)

    def lose_first(self, name: str, rdtype: str | int, *rdata: str, ttl: int = 300) -> None:
        """Over UDP, the first query is lost (never answered); later ones get these records."""
        self.set(name, rdtype, Mode.LOSE_FIRST, *rdata, ttl=ttl)

    def late_first(self, name: str, rdtype: str | int, seconds: float, *rdata: str, ttl: int = 300) -> None:
        """Over UDP, the first query is answered after ``seconds``; later ones at once."""
        self.set(name, rdtype, Mode.LATE_FIRST, *rdata, ttl=ttl, delay=seconds)

    def truncate(self, name: str, rdtype: str | int, *rdata: str, ttl: int = 300) -> None:
        """Over UDP: TC set and no records, whatever the size; over TCP: these records."""
        self.set(name, rdtype, Mode.TRUNCATE, *rdata, ttl=ttl)

    def servfail(self, name: str, rdtype: str | int, *, delay: float = 0.0) -> None:
        self.set(name, rdtype, Mode.SERVFAIL, delay=delay)

    def refused(self, name: str, rdtype: str | int, *, delay: float = 0.0) -> None:
        self.set(name, rdtype, Mode.REFUSED, delay=delay)

    def nxdomain(self, name: str, rdtype: str | int, *, delay: float = 0.0) -> None:
        self.set(name, rdtype, Mode.NXDOMAIN, delay=delay)

    def drop(self, name: str, rdtype: str | int) -> None:
        self.set(name, rdtype, Mode.DROP)

    def garbage(self, name: str, rdtype: str | int, *, delay: float = 0.0) -> None:
        self.set(name, rdtype, Mode.GARBAGE, delay=delay)

    def count(self, name: str, rdtype: str | int, transport: str | None = None) -> int:
        """Queries received for (name, type), over one transport ("udp"/"tcp") or both."""
        key = (_name_key(dns.name.from_text(name)),
               dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype)))
        with self._lock:
            return sum(n for (qname, qtype, via), n in self.counts.items()
                       if (qname, qtype) == key and transport in (None, via))

    @property
    def address(self) -> tuple[str, int]:
        if self.port is None:
            raise RuntimeError("DnsDouble is not running")
        return (HOST, self.port)

    # -- serving --

    async def start(self) -> None:
        """Bind UDP and TCP to one free port on 127.0.0.1 (retrying when UDP's is taken)."""
        loop = asyncio.get_running_loop()
        for _ in range(PORT_ATTEMPTS):
            tcp = await asyncio.start_server(self._serve_tcp, HOST, 0, family=socket.AF_INET)
            port = tcp.sockets[0].getsockname()[1]
            try:
                udp, _protocol = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(HOST, port), family=socket.AF_INET)
            except OSError:
                tcp.close()
                await tcp.wait_closed()
                continue
            self._tcp, self._udp, self.port = tcp, udp, port
            return
        raise RuntimeError(f"no port free for both UDP and TCP on {HOST} after {PORT_ATTEMPTS} tries")

    async def stop(self) -> None:
        """Close the sockets and cancel queries still waiting (delayed or being read)."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=START_STOP_TIMEOUT)
        if self._tcp is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tcp.wait_closed(), START_STOP_TIMEOUT)
            self._tcp = None
        self.port = None

    async def __aenter__(self) -> DnsDouble:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def __enter__(self) -> DnsDouble:
        """Serve from an event loop in a daemon thread (for synchronous tests)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="dns-double", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(START_STOP_TIMEOUT)
        except BaseException:
            self._close_thread()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._loop is not None:
                asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(2 * START_STOP_TIMEOUT)
        finally:
            self._close_thread()

    def _close_thread(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_STOP_TIMEOUT)
        if not thread.is_alive():
            loop.close()

    # -- answering --

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> bool:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self.overload += 1
            coro.close()
            return False
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _parse(self, wire: bytes, transport: str) -> dns.message.Message | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # anything that is not a DNS message is counted and ignored
            self.malformed += 1
            return None
        if query.flags & dns.flags.QR or len(query.question) != 1:
            self.malformed += 1
            return None
        question = query.question[0]
        key = (_name_key(question.name), dns.rdatatype.to_text(question.rdtype), transport)
        with self._lock:
            self.counts[key] += 1
            self.ids.append((*key, query.id))
        return query

    async def _reply(self, query: dns.message.Message, transport: str) -> bytes | None:
        """The bytes to send for this query (after any delay), or None to stay silent."""
        question = query.question[0]
        rule = self.rules.get((question.name, question.rdtype), Rule(Mode.REFUSED))
        if rule.mode is Mode.DROP:
            return None
        first = transport == "udp" and self.count(question.name.to_text(), question.rdtype, "udp") == 1
        if rule.mode is Mode.LOSE_FIRST and first:
            return None
        if rule.delay and (rule.mode is not Mode.LATE_FIRST or first):
            await asyncio.sleep(rule.delay)
        if rule.mode is Mode.GARBAGE:
            return struct.pack("!H", query.id) + GARBAGE_TAIL
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.set_rcode({Mode.SERVFAIL: dns.rcode.SERVFAIL, Mode.REFUSED: dns.rcode.REFUSED,
                            Mode.NXDOMAIN: dns.rcode.NXDOMAIN}.get(rule.mode, dns.rcode.NOERROR))
        if rule.mode is Mode.TRUNCATE and transport == "udp":
            response.flags |= dns.flags.TC
            return response.to_wire()
        if rule.rrset is not None:
            response.answer.append(rule.rrset)
        if transport == "tcp":
            return response.to_wire()
        limit = max(UDP_LIMIT, query.payload) if query.edns >= 0 else UDP_LIMIT
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:  # what a real server does: TC, and the client retries on TCP
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    async def _answer_udp(self, query: dns.message.Message, peer: tuple[str, int]) -> None:
        try:
            wire = await self._reply(query, "udp")
            if wire is not None and self._udp is not None:
                self._udp.sendto(wire, peer)
        except Exception as error:
            self.errors.append(error)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            for _ in range(TCP_MAX_MESSAGES):
                try:
                    prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    (size,) = struct.unpack("!H", prefix)
                    wire = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_TIMEOUT)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                query = self._parse(wire, "tcp")
                if query is None:
                    return
                reply = await self._reply(query, "tcp")
                if reply is not None:  # a dropped query leaves the connection open and silent
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await asyncio.wait_for(writer.drain(), TCP_IDLE_TIMEOUT)
        except Exception as error:
            self.errors.append(error)
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, double: DnsDouble) -> None:
        self.double = double

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = self.double._parse(data, "udp")
        if query is not None:
            self.double._spawn(self.double._answer_udp(query, addr))


def _name_key(name: dns.name.Name) -> str:
    return name.to_text().lower()
