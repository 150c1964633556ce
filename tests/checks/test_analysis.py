"""The shared judgements of checks/_analysis.py that the transport-rule checks rest on."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest

from auditor.engine import Severity
from auditor.gateways import GatewayContext, builtin_profiles, parse_profile
from auditor.models import TransportRule, build
from auditor.netutil import IpSet
from auditor.psjson import RawObject
from checks._analysis import (
    analyse_exceptions,
    classify_range,
    lock_escapes,
    lock_shape,
    pre_empting_rules,
    rule_lock,
    stamp_owner,
    width_severity,
)

from ..conftest import DOC_GATEWAY

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
GATEWAY_RANGES = ["198.51.100.0/24", "203.0.113.0/25"]


def _gateway(*stamps: str) -> GatewayContext:
    """The documentation gateway as the active profile, with the message stamps given."""
    text = DOC_GATEWAY.replace("[[ip_ranges]]", f"header_stamps = {list(stamps)!r}\n[[ip_ranges]]")
    profile = parse_profile(tomllib.loads(text), "test", strict=False)
    return GatewayContext(mode="file", active=(profile,), clues=(),
                          known=(*builtin_profiles(), profile),
                          ranges=IpSet(r for g in profile.range_groups for r in g.ranges))


def _rule(index: int = 0, **props: Any) -> TransportRule:
    data = {"Name": f"rule {index}", "State": "Enabled", "Mode": "Enforce", "Priority": index,
            **props}
    built = build(TransportRule, RawObject(f"/{index}", data), "exo/Get-TransportRule.json")
    assert isinstance(built, TransportRule), built
    return built


def _lock(**props: Any) -> TransportRule:
    return _rule(1, FromScope="NotInOrganization", ExceptIfSenderIpRanges=GATEWAY_RANGES,
                 RejectMessageReasonText="Use the gateway", **props)


def test_a_sound_lock_is_a_rule_lock() -> None:
    lock = _lock()
    assert lock_shape(lock)
    assert rule_lock(lock, AS_OF) is not None


def test_a_lock_with_a_header_exception_is_no_lock() -> None:
    """Exceptions are ORed: a header any sender writes opens the lock for everyone."""
    lock = _lock(ExceptIfHeaderContainsMessageHeader="X-Relay", ExceptIfHeaderContainsWords=["1"])
    assert lock_shape(lock)
    assert lock_escapes(lock) == ["HeaderContains"]
    assert rule_lock(lock, AS_OF) is None


def test_an_exception_on_a_header_exchange_writes_is_no_escape() -> None:
    lock = _lock(ExceptIfHeaderContainsMessageHeader="X-MS-Exchange-Organization-AuthAs",
                 ExceptIfHeaderContainsWords=["Internal"])
    assert lock_escapes(lock) == []


def test_recipient_exceptions_leave_a_partial_lock() -> None:
    lock = _lock(ExceptIfSentTo=["postmaster@contoso.com"], ExceptIfFromScope="InOrganization")
    assert lock_escapes(lock) == []
    assert rule_lock(lock, AS_OF) is not None


def test_a_disabled_lock_keeps_its_shape_but_locks_nothing() -> None:
    lock = _lock(State="Disabled")
    assert lock_shape(lock)
    assert rule_lock(lock, AS_OF) is None


def test_a_rule_narrowed_by_a_subject_is_not_lock_shaped() -> None:
    assert not lock_shape(_lock(SubjectContainsWords=["invoice"]))


def test_exceptions_are_judged_like_conditions() -> None:
    lock = _lock(ExceptIfSenderDomainIs=["partner.example"])
    analysis = analyse_exceptions(lock, _gateway())
    by_name = {c.name: c.outsider for c in analysis.conditions}
    assert by_name == {"SenderIpRanges": False, "SenderDomainIs": True}


def test_only_earlier_stop_processing_rules_an_outsider_can_match_pre_empt() -> None:
    lock = _lock()
    spoofable = _rule(0, StopRuleProcessing=True, SenderDomainIs=["partner.example"])
    gated = _rule(0, StopRuleProcessing=True, SenderIpRanges=GATEWAY_RANGES)
    later = _rule(2, StopRuleProcessing=True, SenderDomainIs=["partner.example"])
    rejecting = _rule(0, StopRuleProcessing=True, DeleteMessage=True, SubjectContainsWords=["x"])
    rules = [spoofable, gated, later, rejecting, lock]
    assert pre_empting_rules(lock, rules, AS_OF, _gateway()) == [spoofable]


@pytest.mark.parametrize(("text", "kind", "extra"), [
    ("198.51.100.0/25", "gateway", 0),
    ("198.51.0.0/16", "wider", 65_280),
    ("203.0.113.0/24", "wider", 128),
    ("40.107.0.0/16", "exchange-online", 65_536),
    ("209.222.80.0/21", "other-gateway", 2_048),
    ("192.0.2.0/24", "unknown", 256),
    ("gateway", "unreadable", 0),
])
def test_ranges_are_classified_against_the_gateways(text: str, kind: str, extra: int) -> None:
    verdict = classify_range(text, _gateway())
    assert (verdict.kind, verdict.extra) == (kind, extra)


@pytest.mark.parametrize(("addresses", "severity"), [
    (256, Severity.MEDIUM), (65_280, Severity.HIGH), (2 ** 24, Severity.CRITICAL),
])
def test_width_severity(addresses: int, severity: Severity) -> None:
    assert width_severity(addresses) is severity


def test_stamps_of_the_active_gateway_win_over_other_vendors() -> None:
    assert stamp_owner("X-Mimecast-Spam-Score", _gateway()).vendor == "Mimecast"
    stamped = _gateway("X-Mimecast-*")
    assert stamp_owner("x-mimecast-spam-score", stamped) is stamped.active[0]
    assert stamp_owner("X-Unrelated", stamped) is None
