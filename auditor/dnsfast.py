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

``Transport`` is the interface ``auditor.dnsresolve.Resolver`` asks through;
``DnspythonTransport`` is the reference one, ``MultiplexTransport`` this fast one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
from typing import Protocol, TypeAlias

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from .dnswire import ReplySummary, decode_reply

Reply: TypeAlias = "dns.message.Message | ReplySummary"
EDNS_PAYLOAD = 1232
SOCKETS_PER_SERVER = 4
RECEIVE_BUFFER = 4 << 20  # bytes asked for each socket's receive buffer
MAX_ID_DRAWS = 64  # random query IDs tried before scanning for a free one
_HEADER = struct.Struct("!HHHHHH")
# OPT pseudo-record: root owner, type 41, class = payload, TTL 0 (ext. rcode, version 0, no DO), no data.
_OPT = b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, 0)
_QUERY_FLAGS = dns.flags.RD
_LENIENT_RCODES = {dns.rcode.FORMERR, dns.rcode.SERVFAIL, dns.rcode.NOTIMP, dns.rcode.REFUSED}


class Transport(Protocol):
    """Sends one query and returns ``(reply, over_tcp)``, raising as ``udp_with_fallback`` does."""

    async def exchange(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, host: str,
                       port: int, timeout: float) -> tuple[Reply, bool]: ...

    def close(self) -> None: ...


def make_query(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
    """The query both transports send (and the TCP fallback's): RD, EDNS0, 1232-byte payload."""
    return dns.message.make_query(name, rdtype, use_edns=0, payload=EDNS_PAYLOAD)


class DnspythonTransport:
    """One socket per query through dnspython's ``udp_with_fallback`` (the reference path)."""

    async def exchange(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, host: str,
                       port: int, timeout: float) -> tuple[dns.message.Message, bool]:
        return await dns.asyncquery.udp_with_fallback(make_query(name, rdtype), host,
                                                      timeout=timeout, port=port)

    def close(self) -> None:
        pass


def query_wire(query_id: int, name: dns.name.Name, rdtype: int) -> bytes:
    """The wire form of ``make_query(name, rdtype)`` with this ID (names are sent as given)."""
    qname = b"".join(bytes((len(label),)) + label for label in name.labels)
    return (_HEADER.pack(query_id, _QUERY_FLAGS, 1, 0, 0, 1) + qname
            + struct.pack("!HH", rdtype, dns.rdataclass.IN) + _OPT)


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
    __slots__ = ("future", "name", "rdtype")

    def __init__(self, future: asyncio.Future[Reply], name: dns.name.Name,
                 rdtype: dns.rdatatype.RdataType) -> None:
        self.future = future
        self.name = name
        self.rdtype = rdtype


class _Socket(asyncio.DatagramProtocol):
    """One connected UDP socket and the queries waiting on it, by ID."""

    def __init__(self, fast_decode: bool = True) -> None:
        self.fast_decode = fast_decode
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, _Pending] = {}
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 2:
            return  # cannot name a query; udp() would have failed whichever query was waiting
        waiting = self.pending.pop(int.from_bytes(data[:2], "big"), None)
        if waiting is None or waiting.future.done():
            return  # late (timed out) or unsolicited
        if self.fast_decode:
            summary = decode_reply(data, waiting.name, waiting.rdtype)
            if summary is not None:  # an answer to the question, read as dnspython would
                waiting.future.set_result(summary)
                return
        try:
            reply = dns.message.from_wire(data, raise_on_truncation=True)
        except dns.message.Truncated as exc:
            waiting.future.set_exception(exc)
            return
        except Exception as exc:
            waiting.future.set_exception(exc)
            return
        if not is_answer_to(reply, reply.id, waiting.name, waiting.rdtype):
            waiting.future.set_exception(dns.query.BadResponse())
            return
        waiting.future.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error on a connected socket cannot be tied to one query: fail those waiting.
        pending, self.pending = self.pending, {}
        for waiting in pending.values():
            if not waiting.future.done():
                waiting.future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error_received(exc or ConnectionResetError("socket closed"))

    def free_id(self) -> int:
        for _ in range(MAX_ID_DRAWS):
            candidate = secrets.randbits(16)  # unpredictable, against spoofed replies
            if candidate not in self.pending:
                return candidate
        for candidate in range(65536):
            if candidate not in self.pending:
                return candidate
        raise dns.exception.DNSException("65,536 queries in flight on one socket")


def _expire(future: asyncio.Future[Reply], timeout: float) -> None:
    if not future.done():
        future.set_exception(dns.exception.Timeout(timeout=timeout))


class MultiplexTransport:
    """A few UDP sockets per nameserver, shared by every query in flight (see module doc)."""

    def __init__(self, sockets_per_server: int = SOCKETS_PER_SERVER, fast_decode: bool = True) -> None:
        """``fast_decode=False`` has dnspython parse every reply (the reference, for tests)."""
        self.sockets_per_server = sockets_per_server
        self.fast_decode = fast_decode
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sockets: dict[tuple[str, int], list[_Socket]] = {}
        self._opening: dict[tuple[str, int], asyncio.Future[list[_Socket]]] = {}
        self._turn = 0
        self.in_flight = 0

    async def _sockets_for(self, host: str, port: int) -> list[_Socket]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (asyncio.run again): the old sockets are dead
            self.close()
            self._loop = loop
        key = (host, port)
        found = self._sockets.get(key)
        if found and not any(s.closed for s in found):
            return found
        opening = self._opening.get(key)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[list[_Socket]] = loop.create_future()
        self._opening[key] = future
        try:
            opened = []
            for _ in range(self.sockets_per_server):
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: _Socket(self.fast_decode), remote_addr=key)
                raw = transport.get_extra_info("socket")
                if raw is not None:  # room for a burst of replies (the kernel may cap it)
                    with contextlib.suppress(OSError):
                        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
                opened.append(protocol)
            self._sockets[key] = opened
            future.set_result(opened)
            return opened
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it through shield
            raise
        finally:
            del self._opening[key]

    async def exchange(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, host: str,
                       port: int, timeout: float) -> tuple[Reply, bool]:
        loop = asyncio.get_running_loop()
        expiration = loop.time() + timeout
        self.in_flight += 1
        try:
            sockets = await self._sockets_for(host, port)
            self._turn = (self._turn + 1) % len(sockets)
            sock = sockets[self._turn]
            query_id = sock.free_id()
            future: asyncio.Future[Reply] = loop.create_future()
            sock.pending[query_id] = _Pending(future, name, rdtype)
            assert sock.transport is not None
            try:
                sock.transport.sendto(query_wire(query_id, name, rdtype))
                timer = loop.call_at(expiration, _expire, future, timeout)
                try:
                    return await future, False
                finally:
                    timer.cancel()
            except dns.message.Truncated:
                # As udp_with_fallback: the TCP query gets the whole timeout again.
                reply = await dns.asyncquery.tcp(make_query(name, rdtype), host, timeout=timeout,
                                                 port=port)
                return reply, True
            finally:
                if sock.pending.get(query_id) is not None and sock.pending[query_id].future is future:
                    del sock.pending[query_id]
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                loop.call_soon(self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self.in_flight == 0:
            self.close()

    def close(self) -> None:
        """Close every socket (reopened on the next query)."""
        sockets, self._sockets = self._sockets, {}
        for group in sockets.values():
            for sock in group:
                if sock.transport is not None:
                    sock.transport.close()
