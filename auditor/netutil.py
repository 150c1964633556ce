"""IP address sets as Exchange writes them: single addresses, CIDR blocks and ``a-b`` ranges.

Comparisons are done on merged integer intervals so that a connector's /24 splits can be
compared with a vendor's /19, whatever the notation on either side.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import InputError

Family = Literal[4, 6]


def split_host_port(text: str, default_port: int, option: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address, as given to ``option``
    -> (host, port); the host is the caller's to check. A malformed port is an ``InputError``."""
    host, port = text.strip(), default_port
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise InputError(f"{option} {text!r}: expected [ADDRESS]:PORT")
            port = _port(rest[1:], text, option)
    elif host.count(":") == 1:
        host, port_text = host.split(":")
        port = _port(port_text, text, option)
    return host, port


def _port(text: str, given: str, option: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InputError(f"{option} {given!r}: {text!r} is not a port number")
    return int(text)


@dataclass(frozen=True, slots=True)
class IpRange:
    """An inclusive interval of addresses of one family, with the text it came from."""

    family: Family
    first: int
    last: int
    text: str

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    @property
    def prefix_len(self) -> int:
        """The prefix length of the smallest CIDR block at least as large as this range."""
        bits = 32 if self.family == 4 else 128
        return bits - (self.size - 1).bit_length()

    @staticmethod
    def from_int(value: int, family: Family = 4) -> str:
        """The text form of an address given as an integer."""
        return str(ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value))

    @classmethod
    def parse(cls, text: str) -> IpRange:
        """Parse ``192.0.2.1``, ``192.0.2.0/24`` or ``192.0.2.1-192.0.2.9`` (IPv4 or IPv6).

        Raises ValueError with a readable message when the text is none of these.
        """
        raw = text.strip()
        if not raw:
            raise ValueError("empty IP range")
        if "-" in raw and "/" not in raw:
            low_text, high_text = (part.strip() for part in raw.split("-", 1))
            low = ipaddress.ip_address(low_text)
            high = ipaddress.ip_address(high_text)
            if low.version != high.version or int(high) < int(low):
                raise ValueError(f"{text!r} is not an ascending address range")
            return cls(low.version, int(low), int(high), raw)  # type: ignore[arg-type]
        network = ipaddress.ip_network(raw, strict=False)
        return cls(
            network.version,  # type: ignore[arg-type]
            int(network.network_address),
            int(network.broadcast_address),
            raw,
        )


class IpSet:
    """A union of address ranges with fast containment and overlap queries."""

    def __init__(self, ranges: Iterable[IpRange] = ()) -> None:
        self._intervals: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for family, spans in _merge(ranges).items():
            self._intervals[family] = spans
        self._starts = {family: [s for s, _ in spans] for family, spans in self._intervals.items()}

    @classmethod
    def from_strings(cls, texts: Iterable[str]) -> IpSet:
        return cls(IpRange.parse(t) for t in texts)

    def __bool__(self) -> bool:
        return any(self._intervals.values())

    def covers(self, rng: IpRange) -> bool:
        """True when every address of ``rng`` is in this set."""
        spans = self._intervals[rng.family]
        index = bisect.bisect_right(self._starts[rng.family], rng.first) - 1
        return index >= 0 and spans[index][1] >= rng.last

    def overlaps(self, rng: IpRange) -> bool:
        """True when at least one address of ``rng`` is in this set."""
        spans = self._intervals[rng.family]
        index = bisect.bisect_right(self._starts[rng.family], rng.last) - 1
        return index >= 0 and spans[index][1] >= rng.first


def _merge(ranges: Iterable[IpRange]) -> dict[int, list[tuple[int, int]]]:
    by_family: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for rng in ranges:
        by_family[rng.family].append((rng.first, rng.last))
    merged: dict[int, list[tuple[int, int]]] = {}
    for family, spans in by_family.items():
        spans.sort()
        out: list[tuple[int, int]] = []
        for first, last in spans:
            if out and first <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], last))
            else:
                out.append((first, last))
        merged[family] = out
    return merged
