"""DNS queries and answers as plain data: what collectors record and what checks read.

An answer keeps every rdata in presentation format (as a zone file writes it), so a snapshot
can be re-read exactly, offline, months later. Statuses tell apart the outcomes that matter
to an audit: a name that does not exist, one with no record of the type, a server failure,
and no answer at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT


class DnsStatus(StrEnum):
    OK = "ok"  # NOERROR with records of the type asked
    NODATA = "nodata"  # NOERROR, the name exists but has no record of that type
    NXDOMAIN = "nxdomain"  # the name does not exist
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"  # no answer within the time allowed
    ERROR = "error"  # anything else (malformed answer, network error, bad name)

    @property
    def void(self) -> bool:
        """No record, but a definite answer (RFC 7208 4.6.4 "void lookup")."""
        return self in _VOID

    @property
    def temporary(self) -> bool:
        """A failure that says nothing about the zone (RFC 7208 temperror)."""
        return self in _TEMPORARY


# (Tuples made once: every answer's status is asked whether it is temporary, several times.)
_VOID = (DnsStatus.NODATA, DnsStatus.NXDOMAIN)
_TEMPORARY = (DnsStatus.SERVFAIL, DnsStatus.REFUSED, DnsStatus.TIMEOUT, DnsStatus.ERROR)


PARSE_CACHE_SIZE = 1 << 16  # distinct record sets kept parsed (rdata are immutable)
QUERY_CACHE_SIZE = 1 << 18  # distinct queries kept made (a bulk worker asks tens of thousands)
# One TXT record as the resolver writes it (dnspython's to_text()) when every byte is printable
# ASCII other than '"' and '\\': quoted strings of at most 255 bytes, one space apart. Read
# exactly so, its strings are the quoted texts; anything else is read by dnspython.
_PLAIN_TXT = re.compile(r'"[ !#-\[\]-~]{0,255}"(?: "[ !#-\[\]-~]{0,255}")*')


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_rdata(rdtype_text: str, records: tuple[str, ...]) -> tuple[Any, ...]:
    """The rdata of presentation-format records, parsed once per distinct record set: checks
    read the same answers (and domains share includes) many times over."""
    rdtype = dns.rdatatype.from_text(rdtype_text)
    return tuple(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text) for text in records)


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def txt_strings(presentation: str) -> tuple[bytes, ...]:
    """The character-strings of one TXT record in presentation format, as dnspython's
    ``from_text(...).strings`` gives them (and raising as it does for a malformed record)."""
    if _PLAIN_TXT.fullmatch(presentation):
        return tuple(s.encode("ascii") for s in presentation[1:-1].split('" "'))
    return tuple(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, presentation).strings)


@lru_cache(maxsize=PARSE_CACHE_SIZE)  # (the checks and the collection read a domain's TXT answers again)
def _joined_txt(records: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(b"".join(txt_strings(r)) for r in records)


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _mx(rdtype_text: str, records: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    return tuple(sorted((rd.preference, normalise_name(rd.exchange.to_text()))
                        for rd in _parse_rdata(rdtype_text, records)))


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _addresses(rdtype_text: str, records: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(rd.address for rd in _parse_rdata(rdtype_text, records))


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _names(rdtype_text: str, records: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(normalise_name(rd.target.to_text()) for rd in _parse_rdata(rdtype_text, records))


def normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def ascii_name(name: str) -> str:
    """The A-label (``xn--``) form SPF evaluation needs (RFC 7208 4.3); unchanged if not IDNA."""
    normal = normalise_name(name)
    if normal.isascii():
        return normal  # (what the idna codec gives an ASCII name, or fails on: no work to do)
    try:
        return normal.encode("idna").decode("ascii")
    except UnicodeError:
        return normal


@lru_cache(maxsize=QUERY_CACHE_SIZE)  # shared names are asked for by every domain
def _query(name: str, rdtype: str) -> DnsQuery:
    return DnsQuery(normalise_name(name), rdtype.upper())


class DnsQuery(NamedTuple):
    """A question: a name (lower-case, no final dot, as ``of`` makes it) and a type.

    A named tuple: queries key every table of a run (a hundred lookups per domain in bulk),
    and a tuple hashes and compares in C, from its strings' cached hashes; it is immutable,
    pickles by value and reads back in another process."""

    name: str
    rdtype: str  # "A", "AAAA", "MX", "TXT", "PTR", "CNAME"

    # The query for a name as written and a type: ``DnsQuery.of(name, rdtype)`` (memoised, and
    # called directly: a bulk run makes hundreds of thousands).
    of = staticmethod(_query)


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One DNS lookup as it ended (answered or not), recorded so an offline re-audit reads the
    same."""

    query: DnsQuery
    status: DnsStatus
    records: tuple[str, ...] = ()  # rdata in presentation format
    ttl: int | None = None
    server: str | None = None
    at: str | None = None  # ISO time the answer arrived
    elapsed_ms: float | None = None
    tcp: bool = False  # the answer came over TCP (after a truncated UDP answer)
    detail: str | None = None  # why, for failures
    cname: tuple[str, ...] = field(default=())  # aliases followed to reach the answer
    rcode: str | None = None  # the response code as the server sent it (None: no response)

    def _rdata(self) -> list[Any]:
        return list(_parse_rdata(self.query.rdtype, self.records))

    def txt(self) -> list[bytes]:
        """Each TXT record with its character-strings joined (RFC 7208 3.3)."""
        if self.query.rdtype == "TXT":
            return list(_joined_txt(self.records))
        return [b"".join(rd.strings) for rd in self._rdata()]

    def mx(self) -> list[tuple[int, str]]:
        return list(_mx(self.query.rdtype, self.records))

    def addresses(self) -> list[str]:
        return list(_addresses(self.query.rdtype, self.records))

    def names(self) -> list[str]:
        """Targets of PTR or CNAME records."""
        return list(_names(self.query.rdtype, self.records))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.query.name,
            "type": self.query.rdtype,
            "status": self.status.value,
            "records": list(self.records),
            "ttl": self.ttl,
            "server": self.server,
            "at": self.at,
            "elapsed_ms": self.elapsed_ms,
            "tcp": self.tcp,
            "detail": self.detail,
            "cname": list(self.cname),
            "rcode": self.rcode,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DnsAnswer:
        return cls(
            query=DnsQuery.of(str(data["name"]), str(data["type"])),
            status=DnsStatus(data["status"]),
            records=tuple(str(r) for r in data.get("records") or ()),
            ttl=data.get("ttl"),
            server=data.get("server"),
            at=data.get("at"),
            elapsed_ms=data.get("elapsed_ms"),
            tcp=bool(data.get("tcp", False)),
            detail=data.get("detail"),
            cname=tuple(data.get("cname") or ()),
            rcode=data.get("rcode"),
        )


def txt_record(*strings: bytes | str) -> str:
    """Presentation format of one TXT record made of the given character-strings."""
    parts = [s.encode() if isinstance(s, str) else s for s in strings]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, parts).to_text()


def answer(name: str, rdtype: str, status: DnsStatus = DnsStatus.OK, *records: str,
           **extra: Any) -> DnsAnswer:
    """Build an answer by hand (tests, the RFC 7208 suite driver)."""
    return DnsAnswer(DnsQuery.of(name, rdtype), status, tuple(records), **extra)

