"""What the resolver needs from a DNS reply, read either by dnspython or by a small wire decoder.

``dns.message.from_wire`` builds a full ``Message`` (Name, Rdata and RRset objects for every
record) and was about 40% of a bulk audit's collection time; the resolver only needs the rcode,
the answer's records as text, its TTL, the CNAME chain and whether the authority section holds
an SOA. ``summarize`` takes those from a dnspython ``Message`` (the reference); ``decode_reply``
reads them straight from the wire for replies it fully understands and returns ``None`` for
anything else, so that the caller falls back to dnspython. It is deliberately strict: it accepts
a reply only where dnspython would parse it without error and would also accept it as the answer
to the question, and builds exactly the strings dnspython's ``to_text()`` gives. Covered: one
question of type A, AAAA, MX, TXT, CNAME or PTR, class IN; answer records of those types;
authority SOA/NS; additional A/AAAA and a plain OPT (no options, version 0, no extended rcode);
rcode NOERROR, NXDOMAIN, SERVFAIL or REFUSED. Everything else (other types, DNSSEC records, EDNS
options, TC set, duplicate records, more than one CNAME per owner, chains dnspython rejects,
malformed names, trailing bytes) falls back.
"""

from __future__ import annotations

import re
import socket
import struct
from functools import lru_cache
from typing import NamedTuple

import dns.exception
import dns.ipv6
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, OPT = 1, 2, 5, 6, 12, 15, 16, 28, 41
CLASS_IN = 1
FAST_TYPES = frozenset({A, AAAA, MX, TXT, CNAME, PTR})
_RCODES = frozenset({0, 2, 3, 5})  # NOERROR, SERVFAIL, NXDOMAIN, REFUSED
_NOERROR = 0
MAX_CHAIN = dns.message.MAX_CHAIN  # CNAME hops resolve_chaining() follows before ChainTooLong
MAX_POINTERS = dns.name.MAX_COMPRESSION_POINTER_CHAIN
_RR = struct.Struct("!HHIH")
MAX_TTL = 0x7FFFFFFF  # record TTLs above this read as 0 (dnspython's from_wire)
_HEADER = struct.Struct("!HHHHHH")
_QR, _TC, _OPCODE_MASK = 0x8000, 0x0200, 0x7800
# dns.name._escapify (labels) and dns.rdata._escapify (TXT strings), as lookup tables.
_LABEL_TEXT = tuple("\\" + chr(c) if c in b'"().;\\@$' else chr(c) if 0x20 < c < 0x7F
                    else f"\\{c:03d}" for c in range(256))
_TXT_TEXT = tuple("\\" + chr(c) if c in b'"\\' else chr(c) if 0x20 <= c < 0x7F
                  else f"\\{c:03d}" for c in range(256))
# A name dns.name.from_text() reads label by label with no escape, IDNA or length question:
# 1 to 63 letters, digits, '-' or '_' per label, at most 253 characters without the final dot.
_PLAIN_NAME = re.compile(r"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?")
_PLAIN_LABEL = re.compile(rb"[A-Za-z0-9_-]*")
_PLAIN_STRING = re.compile(rb'[ !#-\[\]-~]*')  # TXT bytes to_text() writes as they are
_POINTER_TO_QUESTION = b"\xc0\x0c"  # a name compressed to the question's (at offset 12)


def name_labels(text: str) -> tuple[bytes, ...]:
    """``dns.name.from_text(text).labels`` (raising as it does), without building a Name for
    the plain names that nearly every query asks."""
    if len(text) <= 254 and _PLAIN_NAME.fullmatch(text) and len(text.rstrip(".")) <= 253:
        return (*text.rstrip(".").encode("ascii").split(b"."), b"")
    return dns.name.from_text(text).labels


class ReplySummary(NamedTuple):
    """The parts of a reply ``Resolver`` turns into a ``DnsAnswer`` (the same from either reader):
    a named tuple, made for every reply (cheaper to build than a frozen dataclass).

    ``records``/``ttl`` are those of the answer RRset (``None`` when there is none); ``cnames``
    are the CNAME owners followed and ``canonical`` the name the chain ends at (lower-case, no
    final dot), given only when there are aliases ("" otherwise: it is the question's name,
    which the caller has, and nearly every reply has no alias); ``chain_error`` is the text of
    dnspython's resolve_chaining() exception. The chain fields are only filled for NOERROR,
    the only rcode whose answer the resolver reads.
    """

    rcode: int
    records: tuple[str, ...] | None = None
    ttl: int | None = None
    cnames: tuple[str, ...] = ()
    canonical: str = ""
    has_soa: bool = False
    chain_error: str | None = None


def summarize(reply: dns.message.Message) -> ReplySummary:
    """The reference reading, through dnspython's ``resolve_chaining()``."""
    rcode = int(reply.rcode())
    has_soa = any(rrset.rdtype == dns.rdatatype.SOA for rrset in reply.authority)
    if rcode != _NOERROR:
        return ReplySummary(rcode, has_soa=has_soa)
    try:
        chain = reply.resolve_chaining()
    except dns.exception.DNSException as exc:
        return ReplySummary(rcode, has_soa=has_soa, chain_error=str(exc))
    cnames = tuple(rrset.name.to_text().rstrip(".").lower() for rrset in chain.cnames)
    canonical = chain.canonical_name.to_text().rstrip(".").lower() if cnames else ""
    if chain.answer is None:
        return ReplySummary(rcode, None, None, cnames, canonical, has_soa)
    return ReplySummary(rcode, tuple(rd.to_text() for rd in chain.answer), chain.answer.ttl,
                        cnames, canonical, has_soa)


class _Fallback(Exception):
    """Raised inside the decoder for anything it does not handle exactly as dnspython."""


def _name(wire: bytes, pos: int, limit: int) -> tuple[tuple[bytes, ...], int]:
    """A (possibly compressed) name as dnspython's ``from_wire_parser`` reads it: pointers only
    backwards, at most 16, each target ending before the segment that pointed to it."""
    labels: list[bytes] = []
    end = limit
    start = biggest = pos
    after = -1
    hops = 0
    length = 1
    while True:
        if pos >= end:
            raise _Fallback
        count = wire[pos]
        if count == 0:
            pos += 1
            break
        if count < 64:
            stop = pos + 1 + count
            if stop > end:
                raise _Fallback
            labels.append(wire[pos + 1:stop])
            length += count + 1
            pos = stop
        elif count >= 192:
            if pos + 2 > end:
                raise _Fallback
            target = ((count & 0x3F) << 8) | wire[pos + 1]
            if after < 0:
                after = pos + 2
            hops += 1
            if target >= biggest or hops > MAX_POINTERS:
                raise _Fallback
            end = start  # dnspython's restrict_end(start): the target ends before this segment
            biggest = start = pos = target
        else:
            raise _Fallback
    if length > 255:
        raise _Fallback
    return tuple(labels), after if after >= 0 else pos


def _name_text(labels: tuple[bytes, ...]) -> str:
    """``Name.to_text()`` of an absolute name."""
    if not labels:
        return "."
    return ".".join(map(_label_text, labels)) + "."


@lru_cache(maxsize=1 << 16)  # labels repeat: the zones' own names, and every shared host
def _label_text(label: bytes) -> str:
    if _PLAIN_LABEL.fullmatch(label):
        return label.decode("ascii")
    return "".join(map(_LABEL_TEXT.__getitem__, label))


def _lower(labels: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return tuple(map(bytes.lower, labels))


class _RRset:
    __slots__ = ("keys", "owner", "targets", "texts", "ttl")

    def __init__(self, owner: tuple[bytes, ...], ttl: int) -> None:
        self.owner = owner
        self.ttl = ttl
        self.texts: list[str] = []
        self.keys: set[object] = set()
        self.targets: list[tuple[bytes, ...]] = []


def _rdata(wire: bytes, rtype: int, pos: int, end: int) -> tuple[str, object, tuple[bytes, ...]]:
    """(text, equality key as dnspython compares rdatas, target name) of one answer record."""
    if rtype == A:
        if end - pos != 4:
            raise _Fallback
        return socket.inet_ntoa(wire[pos:end]), wire[pos:end], ()
    if rtype == AAAA:
        if end - pos != 16:
            raise _Fallback
        raw = wire[pos:end]
        return dns.ipv6.inet_ntoa(raw), raw, ()
    if rtype == TXT:
        strings = []
        p = pos
        while p < end:
            stop = p + 1 + wire[p]
            if stop > end:
                raise _Fallback
            chunk = wire[p + 1:stop]
            if _PLAIN_STRING.fullmatch(chunk):
                strings.append('"' + chunk.decode("ascii") + '"')
            else:
                strings.append('"' + "".join(map(_TXT_TEXT.__getitem__, chunk)) + '"')
            p = stop
        if not strings:
            raise _Fallback
        return " ".join(strings), wire[pos:end], ()
    if rtype == MX:
        if end - pos < 3:
            raise _Fallback
        labels, p = _name(wire, pos + 2, end)
        if p != end:
            raise _Fallback
        preference = (wire[pos] << 8) | wire[pos + 1]
        return f"{preference} {_name_text(labels)}", (preference, _lower(labels)), labels
    # CNAME, PTR
    labels, p = _name(wire, pos, end)
    if p != end:
        raise _Fallback
    return _name_text(labels), _lower(labels), labels


def _skip_other(wire: bytes, rtype: int, pos: int, end: int) -> None:
    """Validate an authority/additional record dnspython would parse (SOA, NS, A, AAAA)."""
    if rtype == A:
        ok = end - pos == 4
    elif rtype == AAAA:
        ok = end - pos == 16
    elif rtype == NS:
        ok = _name(wire, pos, end)[1] == end
    else:  # SOA (its timers are TTLs to dnspython, but its MAX_TTL is 2^32 - 1: any uint32 will do)
        p = _name(wire, pos, end)[1]
        p = _name(wire, p, end)[1]
        ok = p + 20 == end
    if not ok:
        raise _Fallback


_LENGTH_BYTE = tuple(bytes((n,)) for n in range(256))


def name_wire(labels: tuple[bytes, ...]) -> bytes:
    """A name's uncompressed wire form, as a query carries it."""
    return b"".join([_LENGTH_BYTE[len(label)] + label for label in labels])


def _question(labels: tuple[bytes, ...], sent: bytes | None) -> bytes | None:
    """The question name's wire form as a reply repeats it uncompressed (``sent``:
    ``name_wire(labels)`` when the caller has it already); None when ``labels`` are not an
    absolute name's."""
    if not labels or labels[-1] or not all(labels[:-1]) or max(map(len, labels)) > 63:
        return None
    wire = name_wire(labels) if sent is None else sent
    return None if len(wire) > 255 else wire


def decode_reply(wire: bytes, labels: tuple[bytes, ...], rdtype: int,
                 sent: bytes | None = None) -> ReplySummary | None:
    """``summarize(from_wire(wire))`` for a reply that answers ``(name, rdtype, IN)`` (``labels``:
    the name's ``Name.labels``; ``sent``: its ``name_wire``, if known), or ``None`` when the reply
    is outside what this decoder covers (the caller then uses dnspython)."""
    if rdtype not in FAST_TYPES:
        return None
    try:
        return _decode(wire, labels, rdtype, sent)
    except (_Fallback, IndexError, struct.error):
        return None


def _decode(wire: bytes, labels: tuple[bytes, ...], rdtype: int, sent: bytes | None) -> ReplySummary | None:
    size = len(wire)
    if size < 12:
        return None
    _, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    rcode = flags & 0xF
    if (flags & _QR == 0 or flags & _OPCODE_MASK or flags & _TC or qdcount != 1
            or rcode not in _RCODES):
        return None
    asked = _question(labels, sent)
    if asked is not None and (wire.startswith(asked, 12)
                              or wire[12:12 + len(asked)].lower() == asked.lower()):
        # The question as sent (in any case): its labels need not be read again.
        qlabels = labels[:-1]
        pos = 12 + len(asked)
    else:
        asked = None
        qlabels, pos = _name(wire, 12, size)
        if (*_lower(qlabels), b"") != _lower(labels):
            return None
    if pos + 4 > size:
        return None
    qtype, qclass = struct.unpack_from("!HH", wire, pos)
    pos += 4
    if qtype != rdtype or qclass != CLASS_IN:
        return None
    direct = _direct(wire, pos, ancount, rdtype, size) if asked is not None else None
    rrsets: dict[tuple[tuple[bytes, ...], int], _RRset] = {}
    qkey = _lower(qlabels) if direct is None else qlabels  # (only the general reading needs it)
    if direct is not None:
        pos = direct[2]
    else:
        for _ in range(ancount):
            if asked is not None and wire[pos:pos + 2] == _POINTER_TO_QUESTION:
                owner, okey = qlabels, qkey  # (the question's name, read above, ends before here)
                pos += 2
            else:
                owner, pos = _name(wire, pos, size)
                okey = _lower(owner)
            rtype, rclass, ttl, rdlen = _RR.unpack_from(wire, pos)
            pos += 10
            end = pos + rdlen
            if end > size or rclass != CLASS_IN or rtype not in FAST_TYPES:
                return None
            text, key, target = _rdata(wire, rtype, pos, end)
            pos = end
            if ttl > MAX_TTL:
                ttl = 0  # as dnspython does
            rkey = (okey, rtype)
            rrset = rrsets.get(rkey)
            if rrset is None:
                rrset = rrsets[rkey] = _RRset(owner, ttl)
            elif key in rrset.keys or rtype == CNAME:
                return None  # duplicates and replaced CNAMEs: dnspython's set semantics
            elif ttl < rrset.ttl:
                rrset.ttl = ttl
            rrset.keys.add(key)
            rrset.texts.append(text)
            rrset.targets.append(target)
    has_soa = False
    for _ in range(nscount):
        _, pos = _name(wire, pos, size)
        rtype, rclass, ttl, rdlen = _RR.unpack_from(wire, pos)
        pos += 10
        end = pos + rdlen
        if end > size or rclass != CLASS_IN or rtype not in (SOA, NS):
            return None
        _skip_other(wire, rtype, pos, end)
        has_soa = has_soa or rtype == SOA
        pos = end
    seen_opt = False
    for _ in range(arcount):
        if wire[pos] == 0:  # the root, as an OPT record's owner is: no name to read
            owner, pos = (), pos + 1
        else:
            owner, pos = _name(wire, pos, size)
        rtype, rclass, ttl, rdlen = _RR.unpack_from(wire, pos)
        pos += 10
        end = pos + rdlen
        if end > size:
            return None
        if rtype == OPT:
            # A plain OPT: root owner, once, no options, version 0, no extended rcode bits.
            if seen_opt or owner or rdlen or ttl & 0xFFFF0000:
                return None
            seen_opt = True
        elif rclass != CLASS_IN or rtype not in (A, AAAA):
            return None
        else:
            _skip_other(wire, rtype, pos, end)
        pos = end
    if pos != size:
        return None  # trailing bytes: dnspython raises TrailingJunk
    if rcode != _NOERROR:
        return ReplySummary(rcode, has_soa=has_soa)
    if direct is not None:  # (what _chain finds for such an answer: it, and no alias)
        if not direct[0]:
            return ReplySummary(_NOERROR, None, None, (), "", has_soa)
        return ReplySummary(_NOERROR, tuple(direct[0]), direct[1], (), "", has_soa)
    return _chain(qlabels, qkey, rdtype, rrsets, has_soa)


def _direct(wire: bytes, pos: int, count: int, rdtype: int,
            size: int) -> tuple[list[str], int | None, int] | None:
    """Nearly every reply: an answer section (perhaps empty) whose records are all of the type
    asked and owned by the question's name, compressed to it as servers write it. Read without
    RRsets or a chain to follow: (texts, TTL, where the section ends); None for any other
    answer section (then read the general way). Repeated records are not for this path."""
    texts: list[str] = []
    keys: list[object] = []
    ttl: int | None = None
    for _ in range(count):
        if wire[pos:pos + 2] != _POINTER_TO_QUESTION:
            return None
        rtype, rclass, rttl, rdlen = _RR.unpack_from(wire, pos + 2)
        pos += 12
        end = pos + rdlen
        if rtype != rdtype or rclass != CLASS_IN or end > size:
            return None
        text, key, _ = _rdata(wire, rtype, pos, end)
        if rttl > MAX_TTL:
            rttl = 0  # as dnspython does
        if ttl is None:
            ttl = rttl
        elif key in keys or rtype == CNAME:
            return None  # a set dnspython would merge, or a CNAME it would replace
        elif rttl < ttl:
            ttl = rttl
        keys.append(key)
        texts.append(text)
        pos = end
    return texts, ttl, pos


def _chain(qlabels: tuple[bytes, ...], qkey: tuple[bytes, ...], rdtype: int,
           rrsets: dict[tuple[tuple[bytes, ...], int], _RRset], has_soa: bool) -> ReplySummary | None:
    """``resolve_chaining()``: follow CNAMEs from the question name (``qkey``: lower-case) to
    the answer RRset."""
    current = qlabels
    key = qkey
    answer = None
    cnames: list[str] = []
    count = 0
    while count < MAX_CHAIN:
        if count:
            key = _lower(current)
        answer = rrsets.get((key, rdtype))
        if answer is not None:
            break
        if rdtype == CNAME:
            break
        alias = rrsets.get((key, CNAME))
        if alias is None:
            break
        cnames.append(_name_text(alias.owner).rstrip(".").lower())
        current = alias.targets[0]
        count += 1
    if count >= MAX_CHAIN:
        return None  # dnspython raises ChainTooLong; let it say so
    canonical = _name_text(current).rstrip(".").lower() if cnames else ""
    if answer is None:
        return ReplySummary(_NOERROR, None, None, tuple(cnames), canonical, has_soa)
    return ReplySummary(_NOERROR, tuple(answer.texts), answer.ttl, tuple(cnames), canonical, has_soa)
