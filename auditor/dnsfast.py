"""A fast DNS transport: many queries multiplexed over a few UDP sockets, TCP when truncated.

dnspython's ``dns.asyncquery.udp_with_fallback`` opens one socket per query and costs about a
millisecond of client CPU each; in bulk that, not the server, is the limit. This transport keeps
a few connected UDP sockets per nameserver open while queries are in flight, writes each query's
wire form directly (RD set, EDNS0 with a 1232-byte payload, as ``dns.message.make_query``
would), and matches replies to queries by socket and query ID. What it hands back is what
``udp_with_fallback`` would: a reply ``auditor.dnswire.decode_reply`` fully understands comes back
as the ``ReplySummary`` dnspython's parse would give (parsing with dnspython was 40% of a bulk
run); any other reply is parsed by dnspython (it stays the parser of record), a
reply that is not an answer to the question raises ``dns.query.BadResponse``, a truncated reply
is asked again over TCP through ``dns.asyncquery.tcp``, a reply that cannot be parsed raises
dnspython's exception, no reply raises ``dns.exception.Timeout``, and an ICMP error raises the
``OSError`` the socket reported.

A query still unanswered after a second (half its timeout, if that is shorter) is sent once more,
the same datagram with the same ID (RFC 1035 4.2.1's retransmission): a lost datagram then costs
that second, not the whole timeout. Either copy's reply settles the query; its ID stays reserved
until the other copy's reply or the query's deadline, so that reply cannot be taken for another
query's.

``Transport`` is the interface ``auditor.dnsresolve.Resolver`` asks through;
``DnspythonTransport`` is the reference one, ``MultiplexTransport`` this fast one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol, TypeAlias

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from .dnswire import ReplySummary, decode_reply, name_wire

Reply: TypeAlias = "dns.message.Message | ReplySummary"
EDNS_PAYLOAD = 1232
SOCKETS_PER_SERVER = 4
RECEIVE_BUFFER = 4 << 20  # bytes asked for each socket's receive buffer
MAX_ID_DRAWS = 64  # random query IDs tried before scanning for a free one
ID_BATCH = 2048  # random query IDs drawn from the system at once
MAX_REPLY = 65535  # bytes read per datagram
MAX_READS_PER_WAKEUP = 256  # replies read at once before other work gets a turn
RESEND_AFTER = 1.0  # seconds without a reply before a query is sent once more (at most half its timeout)
_HEADER = struct.Struct("!HHHHHH")
# OPT pseudo-record: root owner, type 41, class = payload, TTL 0 (ext. rcode, version 0, no DO), no data.
_OPT = b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, 0)
_QUERY_FLAGS = dns.flags.RD
_QUESTION_TAIL: dict[int, bytes] = {}  # by type: the question's type and class, then the OPT record
_LENIENT_RCODES = {dns.rcode.FORMERR, dns.rcode.SERVFAIL, dns.rcode.NOTIMP, dns.rcode.REFUSED}


ReplyCallback: TypeAlias = "Callable[[Reply | BaseException, bool], None]"
"""Told once how a query ended: ``(reply, over_tcp)``, or ``(exception, False)`` with what
``udp_with_fallback`` would have raised."""


class Transport(Protocol):
    """Sends one query and calls ``callback`` once with how it ended (``ReplyCallback``), never
    before ``submit`` returns.

    The name is given as its ``dns.name.Name.labels`` (a Name is built only where dnspython
    needs one)."""

    def submit(self, labels: tuple[bytes, ...], rdtype: dns.rdatatype.RdataType, host: str, port: int,
               timeout: float, callback: ReplyCallback) -> None: ...

    def close(self) -> None: ...


def make_query(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
    """The query both transports send (and the TCP fallback's): RD, EDNS0, 1232-byte payload."""
    return dns.message.make_query(name, rdtype, use_edns=0, payload=EDNS_PAYLOAD)


class DnspythonTransport:
    """One socket per query through dnspython's ``udp_with_fallback`` (the reference path), in
    a task of its own."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()  # (the loop keeps only weak references)

    def submit(self, labels: tuple[bytes, ...], rdtype: dns.rdatatype.RdataType, host: str, port: int,
               timeout: float, callback: ReplyCallback) -> None:
        async def exchange() -> None:
            try:
                reply, tcp = await self.exchange(labels, rdtype, host, port, timeout)
            except Exception as exc:
                callback(exc, False)
                return
            callback(reply, tcp)

        task = asyncio.ensure_future(exchange())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def exchange(self, labels: tuple[bytes, ...], rdtype: dns.rdatatype.RdataType, host: str,
                       port: int, timeout: float) -> tuple[dns.message.Message, bool]:
        from dns import asyncquery  # (dnspython's query modules: imported only when used)

        return await asyncquery.udp_with_fallback(make_query(dns.name.Name(labels), rdtype), host,
                                                      timeout=timeout, port=port)

    def close(self) -> None:
        pass


def query_wire(query_id: int, labels: tuple[bytes, ...], rdtype: int, qname: bytes | None = None) -> bytes:
    """The wire form of ``make_query(name, rdtype)`` with this ID, for the name whose
    ``Name.labels`` these are (names are sent as given; ``qname``: their ``name_wire``, if known)."""
    if qname is None:
        qname = name_wire(labels)
    tail = _QUESTION_TAIL.get(rdtype)
    if tail is None:
        tail = _QUESTION_TAIL[rdtype] = struct.pack("!HH", rdtype, dns.rdataclass.IN) + _OPT
    return _HEADER.pack(query_id, _QUERY_FLAGS, 1, 0, 0, 1) + qname + tail


def is_answer_to(reply: dns.message.Message, query_id: int, name: dns.name.Name,
                 rdtype: dns.rdatatype.RdataType) -> bool:
    """``make_query(name, rdtype).is_response(reply)`` for a query with this ID."""
    if reply.flags & dns.flags.QR == 0 or reply.id != query_id \
            or dns.opcode.from_flags(reply.flags) != dns.opcode.QUERY:
        return False
    if reply.rcode() in _LENIENT_RCODES and not reply.question:
        return True
    if len(reply.question) != 1:
        return False
    asked = reply.question[0]
    origin = reply.origin
    qname = asked.name if origin is None or asked.name.is_absolute() else asked.name.derelativize(origin)
    return (qname == name and asked.rdtype == rdtype and asked.rdclass == dns.rdataclass.IN
            and asked.covers == dns.rdatatype.NONE)


class _Pending:
    """One query sent and not yet settled: whom to tell, and how to read its reply."""

    __slots__ = ("callback", "deadline", "done", "labels", "qname", "query_id", "rdtype", "resent", "sock",
                 "tcp", "timeout", "wire")

    def __init__(self, callback: ReplyCallback, labels: tuple[bytes, ...],
                 rdtype: dns.rdatatype.RdataType, timeout: float) -> None:
        self.callback = callback
        self.labels = labels
        self.qname = name_wire(labels)  # (written into the query, and matched in the reply)
        self.rdtype = rdtype
        self.timeout = timeout
        self.sock: _Socket | None = None
        self.query_id = 0
        self.wire = b""  # the datagram sent, to send again
        self.deadline = 0.0  # (loop time)
        self.resent = False
        self.tcp = False  # asked again over TCP (a truncated reply): the UDP deadline no longer applies
        self.done = False


class _Socket:
    """One connected, non-blocking UDP socket and the queries waiting on it, by ID.

    Queries are written in batches, once per turn of the event loop, and every reply waiting is
    read at each wake-up: a server that has gone idle is woken once per batch, not per query
    (on a virtual machine each wake-up cost 50 to 100 microseconds of the sender's time).
    Errors are handled as asyncio's datagram transport does: an ``OSError`` from sending or
    receiving (an ICMP error on a connected socket) fails every query waiting on the socket.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 transport: MultiplexTransport, server: tuple[str, int]) -> None:
        self.loop = loop
        self.sock = sock
        self.server = server  # (host, port) as given: where a truncated reply is asked over TCP
        self.transport = transport
        self.fast_decode = transport.fast_decode
        self.pending: dict[int, _Pending] = {}
        self.closed = False
        self._outgoing: deque[bytes] = deque()
        self._flush_scheduled = False
        self._writer = False
        loop.add_reader(sock.fileno(), self._read)

    def send(self, wire: bytes) -> None:
        """Queue one query; the queue is written at the end of this turn of the loop."""
        self._outgoing.append(wire)
        if not self._flush_scheduled and not self._writer:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outgoing = self._outgoing
        while outgoing and not self.closed:
            try:
                self.sock.send(outgoing[0])
            except (BlockingIOError, InterruptedError):
                if not self._writer:  # the kernel's buffer is full: go on when it drains
                    self._writer = True
                    self.loop.add_writer(self.sock.fileno(), self._writable)
                return
            except OSError as exc:
                outgoing.clear()  # every query queued is among those failed
                self.error_received(exc)
                return
            outgoing.popleft()

    def _writable(self) -> None:
        self._writer = False
        self.loop.remove_writer(self.sock.fileno())
        self._flush()

    def _read(self) -> None:
        recv = self.sock.recv
        received = self.datagram_received
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                data = recv(MAX_REPLY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            received(data)

    def datagram_received(self, data: bytes) -> None:
        if len(data) < 2:
            return  # cannot name a query; udp() would have failed whichever query was waiting
        query_id = int.from_bytes(data[:2], "big")
        waiting = self.pending.pop(query_id, None)
        if waiting is None:
            return  # late (timed out) or unsolicited
        if waiting.resent:  # a query sent twice
            if waiting.done or waiting.tcp:
                return  # the other copy's reply: the ID is free now
            self.pending[query_id] = waiting  # (kept until the other copy's reply or the deadline)
        if self.fast_decode:
            summary = decode_reply(data, waiting.labels, waiting.rdtype, waiting.qname)
            if summary is not None:  # an answer to the question, read as dnspython would
                self.transport.settle(waiting, summary)
                return
        try:
            reply = dns.message.from_wire(data, raise_on_truncation=True)
        except dns.message.Truncated:
            self.transport.retry_over_tcp(waiting)
            return
        except Exception as exc:
            self.transport.settle(waiting, exc)
            return
        if not is_answer_to(reply, reply.id, dns.name.Name(waiting.labels), waiting.rdtype):
            from dns.query import BadResponse

            self.transport.settle(waiting, BadResponse())
            return
        self.transport.settle(waiting, reply)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error on a connected socket cannot be tied to one query: fail those waiting.
        pending, self.pending = self.pending, {}
        for waiting in pending.values():
            self.transport.settle(waiting, exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        if self._writer:
            self.loop.remove_writer(self.sock.fileno())
        self._outgoing.clear()
        self.sock.close()
        self.error_received(ConnectionResetError("socket closed"))

    def free_id(self) -> int:
        for _ in range(MAX_ID_DRAWS):
            candidate = _random_id()  # unpredictable, against spoofed replies
            if candidate not in self.pending:
                return candidate
        for candidate in range(65536):
            if candidate not in self.pending:
                return candidate
        raise dns.exception.DNSException("65,536 queries in flight on one socket")


_ids: Iterator[int] = iter(())


def _random_id() -> int:
    """A query ID from the operating system's CSPRNG (as ``secrets.randbits(16)``), drawn 2,048
    at a time rather than with one system call each."""
    global _ids
    for candidate in _ids:
        return candidate
    _ids = iter(memoryview(secrets.token_bytes(ID_BATCH * 2)).cast("H"))
    return next(_ids)


def _forget_ids() -> None:
    """A forked child draws its own IDs (it must not repeat its parent's)."""
    global _ids
    _ids = iter(())


os.register_at_fork(after_in_child=_forget_ids)


class MultiplexTransport:
    """A few UDP sockets per nameserver, shared by every query in flight (see module doc).

    ``submit`` sends a query and calls back when it ends, from the handler that read the reply
    (or the timer that saw its deadline pass): no task, coroutine or future per query, which
    in bulk (hundreds of thousands of queries) was most of the client's time."""

    def __init__(self, sockets_per_server: int = SOCKETS_PER_SERVER, fast_decode: bool = True,
                 resend_after: float = RESEND_AFTER) -> None:
        """``fast_decode=False`` has dnspython parse every reply (the reference, for tests);
        ``resend_after``: seconds without a reply before a query is sent again (at most half
        its timeout)."""
        self.sockets_per_server = sockets_per_server
        self.fast_decode = fast_decode
        self.resend_after = resend_after
        self.resent = 0  # queries sent a second time
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sockets: dict[tuple[str, int], list[_Socket]] = {}
        self._turn = 0
        self.in_flight = 0
        # Every query comes up once at its resend time (sent again unless answered), and those sent
        # again once more at their deadline (failed with a timeout unless answered).
        self._resends = _Timeline(self._resend, drop_answered=True)
        self._deadlines = _Timeline(self._expire, drop_answered=False)
        self._tcp_tasks: set[asyncio.Task[None]] = set()  # (the loop keeps only weak references)

    def submit(self, labels: tuple[bytes, ...], rdtype: dns.rdatatype.RdataType, host: str, port: int,
               timeout: float, callback: ReplyCallback) -> None:
        """Send one query to ``host``:``port``; ``callback`` is told how it ended, exactly once,
        never before this returns (a query that cannot be sent is failed on the next turn)."""
        loop = self._loop
        if loop is None or not loop.is_running():  # (else this call runs in it: see Resolver.request)
            loop = asyncio.get_running_loop()
            if loop is not self._loop:  # a new event loop (asyncio.run again): the old sockets are dead
                self._loop = loop
                self.close()  # (queries left in flight by the old loop fail now, and may be tried again)
        pending = _Pending(callback, labels, rdtype, timeout)
        self.in_flight += 1
        try:
            sockets = self._sockets.get((host, port)) or self._open(loop, host, port)
            self._turn = (self._turn + 1) % len(sockets)
            sock = sockets[self._turn]
            query_id = sock.free_id()
        except (OSError, dns.exception.DNSException) as exc:
            loop.call_soon(self.settle, pending, exc)
            return
        pending.sock, pending.query_id = sock, query_id
        sock.pending[query_id] = pending
        pending.wire = query_wire(query_id, labels, rdtype, pending.qname)
        sock.send(pending.wire)
        now = loop.time()
        pending.deadline = now + timeout
        self._resends.add(loop, now + min(self.resend_after, timeout / 2), pending)

    def settle(self, pending: _Pending, result: Reply | BaseException, tcp: bool = False) -> None:
        """End a query (once): forget it, and tell its caller."""
        if pending.done:
            return
        pending.done = True
        sock = pending.sock
        # (a query sent twice keeps its ID until the other reply or its deadline: see _expire)
        if sock is not None and not pending.resent and sock.pending.get(pending.query_id) is pending:
            del sock.pending[pending.query_id]
        self.in_flight -= 1
        if self.in_flight == 0 and self._loop is not None:
            self._loop.call_soon(self._close_if_idle)
        pending.callback(result, tcp)

    def retry_over_tcp(self, pending: _Pending) -> None:
        """A truncated reply: ask again over TCP as ``udp_with_fallback`` does (the TCP query
        gets the whole timeout again)."""
        sock = pending.sock
        assert sock is not None
        pending.tcp = True
        task = asyncio.ensure_future(self._over_tcp(pending, *sock.server))
        self._tcp_tasks.add(task)
        task.add_done_callback(self._tcp_tasks.discard)

    async def _over_tcp(self, pending: _Pending, host: str, port: int) -> None:
        from dns import asyncquery

        try:
            reply = await asyncquery.tcp(make_query(dns.name.Name(pending.labels), pending.rdtype), host,
                                         timeout=pending.timeout, port=port)
        except BaseException as exc:  # (whatever it is, the caller must hear of it)
            self.settle(pending, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.settle(pending, reply, True)

    def _resend(self, pending: _Pending) -> None:
        """Its resend time has come and it is unanswered: send it again, and fail it at its
        deadline unless answered by then."""
        sock = pending.sock
        if pending.done or pending.tcp or sock is None or sock.closed:  # (answered, over TCP, failed)
            return
        pending.resent = True
        self.resent += 1
        sock.send(pending.wire)
        loop = self._loop
        assert loop is not None
        self._deadlines.add(loop, pending.deadline, pending)

    def _expire(self, pending: _Pending) -> None:
        """Its deadline has come: fail it with a timeout unless answered, and free its ID."""
        sock = pending.sock
        if sock is None:
            return
        if not pending.done and not pending.tcp:  # (over TCP: its own timeout)
            self.settle(pending, dns.exception.Timeout(timeout=pending.timeout))
        if sock.pending.get(pending.query_id) is pending:
            del sock.pending[pending.query_id]  # (no copy's reply is awaited any longer)

    def _open(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[_Socket]:
        """Open this server's sockets. Nameservers are IP addresses (``Nameserver.parse``): no
        name to resolve, so no wait."""
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)
        opened = [_Socket(loop, _connected(addresses), self, (host, port))
                  for _ in range(self.sockets_per_server)]
        self._sockets[(host, port)] = opened
        return opened

    def _close_if_idle(self) -> None:
        if self.in_flight == 0:
            self.close()

    def close(self) -> None:
        """Close every socket (reopened on the next query)."""
        self._resends.clear()  # (their queries are answered, or failed as their sockets close)
        self._deadlines.clear()
        sockets, self._sockets = self._sockets, {}
        for group in sockets.values():
            for sock in group:
                sock.close()


class _Timeline:
    """Queries each handed to ``due`` at its time (loop time). Times that come in order (one
    timeout for every query, as a resolver asks) share one timer instead of a timer each; any
    other gets its own. ``drop_answered``: a query answered before its time is dropped instead."""

    def __init__(self, due: Callable[[_Pending], None], *, drop_answered: bool) -> None:
        self.due = due
        self.drop_answered = drop_answered
        self.entries: deque[tuple[float, _Pending]] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, loop: asyncio.AbstractEventLoop, when: float, pending: _Pending) -> None:
        entries = self.entries
        if entries and when < entries[-1][0]:
            loop.call_at(when, self._one, pending)
            return
        entries.append((when, pending))
        if self.timer is None:
            self.timer = loop.call_at(when, self._sweep, loop, when)

    def _one(self, pending: _Pending) -> None:
        if not (self.drop_answered and pending.done):
            self.due(pending)

    def _sweep(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        """Hand on the queries whose time has come (the one this timer was set for, and any
        earlier: the loop found it due), drop those answered if asked to, and set the timer
        again for the next time."""
        self.timer = None
        entries = self.entries
        drop = self.drop_answered
        while entries and (entries[0][0] <= now or (drop and entries[0][1].done)):
            pending = entries.popleft()[1]
            if not (drop and pending.done):
                self.due(pending)
        if entries:
            self.timer = loop.call_at(entries[0][0], self._sweep, loop, entries[0][0])

    def clear(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.entries.clear()


def _connected(addresses: list[tuple]) -> socket.socket:  # type: ignore[type-arg]
    """A non-blocking UDP socket connected to the first address that accepts (as
    ``create_datagram_endpoint(remote_addr=...)`` picks one)."""
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        with contextlib.suppress(OSError):  # room for a burst of replies (the kernel may cap it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        return sock
    raise error or OSError(f"no address to connect to: {addresses}")
