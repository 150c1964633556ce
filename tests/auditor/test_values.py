"""PowerShell values to Python values (auditor.values) and typed models (auditor.models)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditor.models import (
    ExoObject,
    InboundConnector,
    Rejected,
    TransportRule,
    build,
)
from auditor.psjson import RawObject, parse_document
from auditor.values import sender_domain_entry, smtp_address, to_bool, to_datetime, to_strings
from tests.conftest import SAMPLES

RULE_FILE = "exo/Get-TransportRule.json"
CONNECTOR_FILE = "exo/Get-InboundConnector.json"
MOMENT = datetime(2024, 3, 11, 14, 2, 37, tzinfo=UTC)  # 1710165757000 ms


def rule_from(data: dict[str, Any], pointer: str = "/value/0") -> TransportRule | Rejected:
    return build(TransportRule, RawObject(pointer, data), RULE_FILE)


def built_rule(**props: Any) -> TransportRule:
    built = rule_from({"Name": "r", **props})
    assert isinstance(built, TransportRule), built
    return built


def rejected_rule(**props: Any) -> Rejected:
    built = rule_from({"Name": "r", **props})
    assert isinstance(built, Rejected), built
    return built


# --- dates -------------------------------------------------------------------------------


def test_ms_date_is_utc_milliseconds() -> None:
    assert to_datetime("/Date(1710165757000)/") == MOMENT


def test_escaped_ms_date_as_written_in_the_file_is_read() -> None:
    assert to_datetime("\\/Date(1710165757000)\\/") == MOMENT


def test_ms_date_with_offset_keeps_the_instant_and_the_offset() -> None:
    parsed = to_datetime("/Date(1710165757000+0100)/")
    assert parsed == MOMENT
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(hours=1)


def test_iso_date_with_seven_fractional_digits_is_read() -> None:
    parsed = to_datetime("2024-03-11T14:02:37.1234567+00:00")
    assert parsed == MOMENT.replace(microsecond=123456)


def test_naive_iso_date_is_taken_as_utc() -> None:
    parsed = to_datetime("2024-03-11T14:02:37")
    assert parsed == MOMENT
    assert parsed is not None
    assert parsed.tzinfo is not None


def test_windows_powershell_date_object_is_read_from_its_value() -> None:
    value = {"value": "/Date(1710165757000)/", "DisplayHint": 2,
             "DateTime": "Monday, March 11, 2024 2:02:37 PM"}
    assert to_datetime(value) == MOMENT


def test_windows_powershell_date_object_in_a_model() -> None:
    rule = built_rule(WhenChanged={"value": "/Date(1710165757000)/", "DisplayHint": 2,
                                   "DateTime": "Monday, March 11, 2024 2:02:37 PM"})
    assert rule.WhenChanged == MOMENT


def test_windows_powershell_51_sample_reads_its_date() -> None:
    document = parse_document(
        (SAMPLES / "Get-TransportRule.ps51-ConvertTo-Json.json").read_bytes(),
        "Get-TransportRule.json",
    )
    rule = build(TransportRule, document.objects[0], RULE_FILE)
    assert isinstance(rule, TransportRule)
    assert rule.WhenChanged == MOMENT
    assert rule.SetSCL == -1


def test_out_of_range_ms_date_with_offset_is_not_a_crash() -> None:
    # DateTime.MaxValue written with an offset lies after year 9999 in local time. Converters
    # must fail with ValueError (a Rejected object) or return the instant, never raise else.
    built = rule_from({"Name": "r", "ExpiryDate": "/Date(253402300799999+0100)/"})
    if isinstance(built, Rejected):
        assert built.reason.startswith("ExpiryDate at /value/0/ExpiryDate: ")
    else:
        assert built.ExpiryDate is not None


def test_unreadable_date_is_rejected_with_its_pointer() -> None:
    rejected = rejected_rule(WhenChanged="last Tuesday")
    assert "WhenChanged at /value/0/WhenChanged" in rejected.reason


# --- booleans and numbers ----------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("false", False), (True, True),
                                               (" FALSE ", False), (None, None)])
def test_booleans_written_as_text(raw: Any, expected: bool | None) -> None:
    assert to_bool(raw) is expected


def test_boolean_text_in_a_model() -> None:
    rule = built_rule(StopRuleProcessing="True", DeleteMessage="false")
    assert rule.StopRuleProcessing is True
    assert rule.DeleteMessage is False


def test_set_scl_as_text_is_a_number() -> None:
    assert built_rule(SetSCL="-1").SetSCL == -1


def test_set_scl_as_number_is_a_number() -> None:
    assert built_rule(SetSCL=-1).SetSCL == -1


def test_set_scl_that_is_not_a_number_is_rejected_with_its_pointer() -> None:
    built = rule_from({"Name": "bad scl", "SetSCL": "abc"}, pointer="/value/3")
    assert isinstance(built, Rejected)
    assert built.name == "bad scl"
    assert built.source.file == RULE_FILE
    assert built.source.pointer == "/value/3"
    assert built.reason.startswith("SetSCL at /value/3/SetSCL: ")
    assert "'abc'" in built.reason


# --- enums written as integers -----------------------------------------------------------


def test_transport_rule_state_integer_is_its_name() -> None:
    assert built_rule(State=1).State == "Disabled"


def test_inbound_connector_type_integer_is_its_name() -> None:
    built = build(InboundConnector, RawObject("/0", {"Name": "c", "ConnectorType": 2}),
                  CONNECTOR_FILE)
    assert isinstance(built, InboundConnector)
    assert built.ConnectorType == "Partner"


def test_unknown_enum_integer_is_rejected_naming_enums_as_strings() -> None:
    rejected = rejected_rule(State=7)
    assert rejected.reason.startswith("State at /value/0/State: ")
    assert "-EnumsAsStrings" in rejected.reason


def test_enum_without_a_known_numbering_is_rejected_for_any_integer() -> None:
    # RuleMode starts at Audit = 1, so 0 has no name.
    assert "-EnumsAsStrings" in rejected_rule(Mode=0).reason


def test_enum_written_as_text_is_kept() -> None:
    assert built_rule(State="Enabled").State == "Enabled"


# --- multi-valued properties -------------------------------------------------------------


def test_multi_valued_list_is_a_tuple() -> None:
    rule = built_rule(SenderIpRanges=["198.51.100.0/24", "203.0.113.0/25"])
    assert rule.SenderIpRanges == ("198.51.100.0/24", "203.0.113.0/25")


def test_multi_valued_lone_string_is_one_value() -> None:
    assert built_rule(SenderIpRanges="198.51.100.0/24").SenderIpRanges == ("198.51.100.0/24",)


def test_space_separated_ip_ranges_are_split() -> None:
    rule = built_rule(SenderIpRanges="198.51.100.0/24 203.0.113.0/25  192.0.2.1-192.0.2.9")
    assert rule.SenderIpRanges == ("198.51.100.0/24", "203.0.113.0/25", "192.0.2.1-192.0.2.9")


def test_space_separated_words_are_not_split() -> None:
    rule = built_rule(SubjectContainsWords="free money now")
    assert rule.SubjectContainsWords == ("free money now",)


def test_multi_valued_null_is_empty() -> None:
    assert built_rule(SenderIpRanges=None).SenderIpRanges == ()


def test_multi_valued_list_holding_an_object_is_rejected() -> None:
    rejected = rejected_rule(SenderIpRanges=["198.51.100.0/24", {"Address": "x"}])
    assert rejected.reason.startswith("SenderIpRanges at /value/0/SenderIpRanges: item 1")


def test_space_separated_sender_domains_keep_their_cost() -> None:
    # A lone "smtp:*;1" stays whole, so a spaced list of such entries must not be cut at ";".
    built = build(InboundConnector,
                  RawObject("/0", {"Name": "c", "SenderDomains": "smtp:*;1 smtp:contoso.com;1"}),
                  CONNECTOR_FILE)
    assert isinstance(built, InboundConnector)
    assert built.SenderDomains == ("smtp:*;1", "smtp:contoso.com;1")


def test_comma_separated_domains_are_split() -> None:
    assert to_strings("contoso.com,fabrikam.com", split=True) == ("contoso.com", "fabrikam.com")


# --- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtp:a@B.com", "a@b.com"),
        ('"Name" [SMTP:a@b.com]', "a@b.com"),
        ("Alex@Contoso.COM", "Alex@contoso.com"),
        ("Alex Wilber", None),
        ("Finance Archive", None),
    ],
)
def test_smtp_address(text: str, expected: str | None) -> None:
    assert smtp_address(text) == expected


def test_sender_domain_entry_with_type_and_cost() -> None:
    assert sender_domain_entry("smtp:*;1") == ("*", 1)


def test_sender_domain_entry_bare_domain_has_no_cost() -> None:
    assert sender_domain_entry("Contoso.COM") == ("contoso.com", None)


# --- provenance --------------------------------------------------------------------------


def rule_at(pointer: str, data: dict[str, Any]) -> ExoObject:
    built = rule_from(data, pointer=pointer)
    assert isinstance(built, TransportRule)
    return built


def test_ref_points_at_the_property_with_its_raw_value() -> None:
    rule = rule_at("/value/2", {"Name": "r", "SetSCL": "-1"})
    ref = rule.ref("SetSCL")
    assert (ref.file, ref.pointer, ref.observed, ref.property) == (
        RULE_FILE, "/value/2/SetSCL", "-1", "SetSCL")


def test_ref_uses_the_key_as_spelled_in_the_export() -> None:
    rule = rule_at("/1", {"Name": "r", "setscl": -1})
    assert rule.ref("SetSCL").pointer == "/1/setscl"
    assert rule.ref("SetSCL").observed == -1


def test_ref_item_points_at_the_list_index() -> None:
    rule = rule_at("/value/0", {"Name": "r", "SenderIpRanges": ["198.51.100.0/24", "192.0.2.9"]})
    ref = rule.ref_item("SenderIpRanges", "192.0.2.9")
    assert (ref.pointer, ref.observed) == ("/value/0/SenderIpRanges/1", "192.0.2.9")


def test_ref_item_of_a_lone_string_points_at_the_property() -> None:
    rule = rule_at("/value/0", {"Name": "r", "SenderIpRanges": "198.51.100.0/24 192.0.2.9"})
    ref = rule.ref_item("SenderIpRanges", "192.0.2.9")
    assert (ref.pointer, ref.observed) == ("/value/0/SenderIpRanges", "198.51.100.0/24 192.0.2.9")


def test_ref_escapes_the_pointer_token() -> None:
    rule = rule_at("", {"Name": "r", "a/b~c": 1})
    assert rule.ref("a/b~c").pointer == "/a~1b~0c"
