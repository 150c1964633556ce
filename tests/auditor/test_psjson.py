"""Reading the JSON that PowerShell and the Exchange Online admin API write (auditor.psjson)."""

from __future__ import annotations

import codecs
import json
from typing import Any

import pytest

from auditor.errors import EvidenceError
from auditor.psjson import Document, parse_document
from tests.conftest import SAMPLES

NAME = "Get-TransportRule.json"
RULES: list[dict[str, Any]] = [{"Name": "Zürich – Regel", "Priority": 0}, {"Name": "b", "Priority": 1}]
TEXT = json.dumps(RULES, ensure_ascii=False)


def parse(data: bytes | str, name: str = NAME) -> Document:
    return parse_document(data.encode() if isinstance(data, str) else data, name)


def names(document: Document) -> list[Any]:
    return [obj.data.get("Name") for obj in document.objects]


# --- encodings ---------------------------------------------------------------------------


def test_utf8_without_bom_is_read_as_utf8() -> None:
    document = parse(TEXT.encode("utf-8"))
    assert document.encoding == "utf-8"
    assert names(document) == ["Zürich – Regel", "b"]
    assert document.warnings == ()


def test_utf8_bom_is_recognised_and_not_part_of_the_data() -> None:
    document = parse(codecs.BOM_UTF8 + TEXT.encode("utf-8"))
    assert document.encoding == "utf-8 (BOM)"
    assert names(document) == ["Zürich – Regel", "b"]


def test_utf16_le_with_bom_is_decoded() -> None:
    document = parse(codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"))
    assert document.encoding == "utf-16-le (BOM)"
    assert names(document) == ["Zürich – Regel", "b"]


def test_utf16_be_with_bom_is_decoded() -> None:
    document = parse(codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"))
    assert document.encoding == "utf-16-be (BOM)"
    assert names(document) == ["Zürich – Regel", "b"]


def test_utf16_le_without_bom_is_recognised_by_its_nul_bytes() -> None:
    document = parse(TEXT.encode("utf-16-le"))
    assert document.encoding == "utf-16-le"
    assert names(document) == ["Zürich – Regel", "b"]


def test_utf16_be_without_bom_is_recognised_by_its_nul_bytes() -> None:
    document = parse(TEXT.encode("utf-16-be"))
    assert document.encoding == "utf-16-be"
    assert names(document) == ["Zürich – Regel", "b"]


def test_windows_1252_bytes_are_decoded_with_a_warning() -> None:
    text = json.dumps([{"Name": "Café € règle"}], ensure_ascii=False)
    document = parse(text.encode("cp1252"))
    assert document.encoding == "windows-1252"
    assert names(document) == ["Café € règle"]
    assert len(document.warnings) == 1
    assert "Windows-1252" in document.warnings[0]


def test_invalid_bytes_in_utf16_are_an_error_naming_the_encoding() -> None:
    # A lone high surrogate (0xD800) followed by an ordinary character.
    data = codecs.BOM_UTF16_LE + '[{"Name": "'.encode("utf-16-le") + b"\x00\xd8" + 'x"}]'.encode(
        "utf-16-le"
    )
    with pytest.raises(EvidenceError, match="invalid utf-16-le at byte") as info:
        parse(data)
    assert info.value.path == NAME


def test_bytes_that_are_neither_utf8_nor_windows_1252_are_an_error() -> None:
    with pytest.raises(EvidenceError, match="nor Windows-1252"):
        parse(b'[{"Name": "\x81"}]')


# --- document shapes ---------------------------------------------------------------------


def test_rest_body_annotation_keys_are_stripped() -> None:
    document = parse((SAMPLES / "Get-TransportRule.json").read_bytes())
    assert document.objects
    for obj in document.objects:
        assert not [key for key in obj.data if "@" in key]
    first = document.objects[0].data
    assert first["Priority"] == 0
    assert first["Conditions"] == [
        "Microsoft.Exchange.MessagingPolicies.Rules.Tasks.SenderIpRangesPredicate"
    ]


def test_rest_body_objects_are_pointed_at_under_value() -> None:
    raw = json.loads((SAMPLES / "Get-TransportRule.json").read_text(encoding="utf-8"))
    document = parse((SAMPLES / "Get-TransportRule.json").read_bytes())
    assert [obj.pointer for obj in document.objects] == [
        f"/value/{i}" for i in range(len(raw["value"]))
    ]
    assert document.incomplete is None


def test_plain_list_objects_are_pointed_at_by_index() -> None:
    document = parse((SAMPLES / "Get-TransportRule.ps51-ConvertTo-Json.json").read_bytes())
    assert [obj.pointer for obj in document.objects] == ["/0"]
    assert document.objects[0].data["Name"] == "Mimecast - Bypass spam filtering from gateway"


def test_lone_object_is_one_object_at_the_root_pointer() -> None:
    document = parse(json.dumps({"Name": "Contoso", "RejectDirectSend": False}))
    assert len(document.objects) == 1
    assert document.objects[0].pointer == ""
    assert document.objects[0].data == {"Name": "Contoso", "RejectDirectSend": False}


def test_value_holding_one_object_is_read_as_that_object() -> None:
    body = {"@odata.context": "x", "value": {"Name": "only", "Name@odata.type": "#String"}}
    document = parse(json.dumps(body))
    assert [(obj.pointer, dict(obj.data)) for obj in document.objects] == [
        ("/value", {"Name": "only"})
    ]


def test_empty_file_is_an_error() -> None:
    with pytest.raises(EvidenceError, match="empty"):
        parse(b"")


def test_whitespace_only_file_is_an_error() -> None:
    with pytest.raises(EvidenceError, match="empty"):
        parse(b"  \r\n\t \n")


def test_truncated_json_message_names_line_and_column() -> None:
    data = (SAMPLES / "Get-TransportRule.json").read_bytes()
    cut = data[: len(data) // 2]
    line = cut.decode("utf-8", errors="replace").count("\n") + 1
    with pytest.raises(EvidenceError) as info:
        parse(cut)
    assert str(info.value).startswith(f"{NAME}: not valid JSON at line {line} column ")


def test_truncated_json_between_values_is_flagged_as_ending_early() -> None:
    with pytest.raises(EvidenceError, match=r"line 2 column 16: .*the file ends early"):
        parse('[{"Name": "a"},\n {"Name": "b"},')


def test_truncated_json_inside_a_string_is_flagged_as_ending_early() -> None:
    # An export cut off by a full disk or an interrupted copy usually ends inside a string.
    with pytest.raises(EvidenceError, match=r"line 2 column \d+: .*the file ends early"):
        parse('[{"Name": "a"},\n {"Name": "Mimecast - Bypass spam')


# --- ConvertTo-Json -Depth truncation ------------------------------------------------------


@pytest.mark.parametrize(
    "placeholder",
    [
        "System.Collections.Hashtable",
        "System.Object[]",
        "@{Name=x; Value=y}",
        "Microsoft.Exchange.Data.MultiValuedProperty`1[System.String]",
    ],
)
def test_depth_placeholder_in_a_nested_property_names_pointer_and_cure(placeholder: str) -> None:
    body = {
        "value": [
            {"Name": "first", "Priority": 0},
            {"Name": "second", "Settings": {"Items": ["ok", placeholder]}},
        ]
    }
    with pytest.raises(EvidenceError) as info:
        parse(json.dumps(body))
    message = str(info.value)
    assert "/value/1/Settings/Items/1" in message
    assert "-Depth 10" in message
    assert repr(placeholder) in message


def test_depth_placeholder_instead_of_a_whole_object_is_detected() -> None:
    with pytest.raises(EvidenceError, match=r"/1 holds 'System.Collections.Hashtable'.*-Depth 10"):
        parse(json.dumps([{"Name": "a"}, "System.Collections.Hashtable"]))


def test_predicate_class_names_in_conditions_are_not_truncation() -> None:
    rule = {
        "Name": "gateway bypass",
        "Conditions": [
            "Microsoft.Exchange.MessagingPolicies.Rules.Tasks.SenderIpRangesPredicate",
            "Microsoft.Exchange.MessagingPolicies.Rules.Tasks.HeaderContainsPredicate",
        ],
        "Actions": ["Microsoft.Exchange.MessagingPolicies.Rules.Tasks.SetSclAction"],
    }
    document = parse(json.dumps([rule]))
    assert document.objects[0].data["Conditions"] == rule["Conditions"]


# --- error bodies and partial pages ------------------------------------------------------


def test_error_body_with_details_gives_the_real_message() -> None:
    with pytest.raises(EvidenceError) as info:
        parse((SAMPLES / "_error_cmdlet_not_found_object.json").read_bytes())
    message = str(info.value)
    assert "holds an error" in message
    assert (
        "The operation couldn't be performed because object 'nobody@contoso.com' couldn't be found"
        in message
    )
    assert "ManagementObjectNotFoundException" not in message


def test_error_body_with_inner_exception_gives_the_real_message() -> None:
    with pytest.raises(EvidenceError) as info:
        parse((SAMPLES / "_error_pagination_expired.json").read_bytes())
    assert "Expired or Invalid pagination request" in str(info.value)


def test_page_with_a_next_link_is_marked_incomplete() -> None:
    document = parse((SAMPLES / "_response_truncated_page.json").read_bytes())
    assert document.incomplete is not None
    assert "more results" in document.incomplete
    assert [obj.pointer for obj in document.objects] == ["/value/0"]


def test_admin_api_more_results_warning_alone_marks_incomplete() -> None:
    body = {
        "@adminapi.warnings": ["There are more results available than are currently displayed."],
        "value": [{"Name": "a"}],
    }
    document = parse(json.dumps(body))
    assert document.incomplete is not None
    assert "more results" in document.incomplete
