"""IP ranges as Exchange writes them, and set comparisons across notations (auditor.netutil)."""

from __future__ import annotations

import ipaddress

import pytest

from auditor.netutil import IpRange, IpSet

SLASH_21 = "10.20.8.0/21"
SPLITS = [f"10.20.{third}.0/24" for third in range(8, 16)]


def addr(text: str) -> int:
    return int(ipaddress.ip_address(text))


def test_cidr_block() -> None:
    rng = IpRange.parse("198.51.100.0/24")
    assert (rng.family, rng.first, rng.last, rng.size) == (
        4, addr("198.51.100.0"), addr("198.51.100.255"), 256)
    assert rng.prefix_len == 24


def test_cidr_with_host_bits_is_its_network() -> None:
    rng = IpRange.parse("198.51.100.77/24")
    assert (rng.first, rng.last) == (addr("198.51.100.0"), addr("198.51.100.255"))
    assert rng.text == "198.51.100.77/24"


def test_single_address() -> None:
    rng = IpRange.parse(" 192.0.2.7 ")
    assert rng.first == rng.last == addr("192.0.2.7")
    assert rng.size == 1
    assert rng.prefix_len == 32


def test_dash_range() -> None:
    rng = IpRange.parse("192.0.2.10-192.0.2.20")
    assert (rng.first, rng.last, rng.size) == (addr("192.0.2.10"), addr("192.0.2.20"), 11)


def test_prefix_len_of_a_range_is_the_smallest_block_holding_it() -> None:
    assert IpRange.parse("192.0.2.10-192.0.2.20").prefix_len == 28  # 11 addresses -> /28
    assert IpRange.parse("192.0.2.0-192.0.2.255").prefix_len == 24
    assert IpRange.parse("192.0.2.0-192.0.3.0").prefix_len == 23  # 257 addresses -> /23


def test_ipv6_cidr() -> None:
    rng = IpRange.parse("2001:db8::/32")
    assert rng.family == 6
    assert rng.size == 2**96
    assert rng.prefix_len == 32


def test_ipv6_range() -> None:
    rng = IpRange.parse("2001:db8::1-2001:db8::ff")
    assert (rng.family, rng.size) == (6, 255)


@pytest.mark.parametrize("text", ["", "gateway.example", "192.0.2.20-192.0.2.10",
                                  "192.0.2.1-2001:db8::1", "192.0.2.0/33"])
def test_text_that_is_not_a_range_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - messages come from ipaddress
        IpRange.parse(text)


def test_merged_splits_cover_the_whole_block() -> None:
    assert IpSet.from_strings(SPLITS).covers(IpRange.parse(SLASH_21))


def test_splits_with_a_gap_do_not_cover_the_block_but_overlap_it() -> None:
    gappy = IpSet.from_strings(s for s in SPLITS if s != "10.20.11.0/24")
    block = IpRange.parse(SLASH_21)
    assert not gappy.covers(block)
    assert gappy.overlaps(block)


def test_block_covers_each_of_its_splits() -> None:
    block = IpSet.from_strings([SLASH_21])
    assert all(block.covers(IpRange.parse(s)) for s in SPLITS)


def test_adjacent_ranges_in_other_notations_merge() -> None:
    mixed = IpSet.from_strings(["10.20.8.0-10.20.9.255", "10.20.10.0/23", "10.20.12.0/22"])
    assert mixed.covers(IpRange.parse(SLASH_21))


def test_range_straddling_the_edge_overlaps_but_is_not_covered() -> None:
    block = IpSet.from_strings([SLASH_21])
    straddle = IpRange.parse("10.20.7.250-10.20.8.5")
    assert not block.covers(straddle)
    assert block.overlaps(straddle)


def test_neighbouring_block_neither_covered_nor_overlapping() -> None:
    block = IpSet.from_strings([SLASH_21])
    neighbour = IpRange.parse("10.20.16.0/24")
    assert not block.covers(neighbour)
    assert not block.overlaps(neighbour)


def test_families_do_not_mix() -> None:
    v4 = IpSet.from_strings(["0.0.0.0/0"])
    v6 = IpRange.parse("::/128")
    assert not v4.covers(v6)
    assert not v4.overlaps(v6)


def test_ipv6_splits_cover_their_block() -> None:
    halves = IpSet.from_strings(["2001:db8::/33", "2001:db8:8000::/33"])
    assert halves.covers(IpRange.parse("2001:db8::/32"))


def test_empty_set_is_falsy_and_covers_nothing() -> None:
    empty = IpSet()
    assert not empty
    assert not empty.covers(IpRange.parse("192.0.2.1"))
    assert not empty.overlaps(IpRange.parse("192.0.2.1"))
