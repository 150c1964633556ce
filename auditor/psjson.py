"""Read the JSON that PowerShell and the Exchange Online admin API really write.

Pure functions over bytes: no file system access here. The quirks handled are listed in
ARCHITECTURE.md (encodings, a lone object instead of a list, the REST body with annotation
keys, ``-Depth`` truncation, error bodies).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import EvidenceError

DEPTH_CURE = "re-export it with `ConvertTo-Json -Depth 10`"

# What ConvertTo-Json writes instead of a value nested deeper than -Depth allows.
_TRUNCATED = re.compile(
    r"""^(?:
        System\.Object\[\]
      | System\.Collections\.(?:Hashtable|ArrayList|Generic\.[\w`\[\],. =]+)
      | System\.Management\.Automation\.PS(?:CustomObject|Object)
      | Microsoft\.Exchange\.Data\.MultiValuedProperty`1\[[^\]]*\]?\]?
      | Deserialized\.[\w.`\[\],]+
      | @\{[^=}]+=.*\}
    )$""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class RawObject:
    """One object of an evidence document and where it sits in that document."""

    pointer: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Document:
    """An evidence file decoded and split into objects."""

    objects: tuple[RawObject, ...]
    encoding: str
    warnings: tuple[str, ...] = field(default=())
    incomplete: str | None = None


def pointer_escape(token: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def decode(data: bytes, name: str) -> tuple[str, str, list[str]]:
    """Decode evidence bytes; return (text, encoding, warnings).

    Byte order marks decide first (UTF-8, UTF-16 LE/BE, UTF-32); UTF-16 without a BOM is
    recognised by its NUL bytes; otherwise strict UTF-8, then Windows-1252 (what Windows
    PowerShell 5.1's ``Set-Content`` writes) with a warning.
    """
    warnings: list[str] = []
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return _strict(data[len(bom) :], encoding, name), encoding + " (BOM)", warnings
    if len(data) >= 4 and data[1] == 0 and data[0] != 0 and data[3] == 0:
        return _strict(data, "utf-16-le", name), "utf-16-le", warnings
    if len(data) >= 4 and data[0] == 0 and data[1] != 0 and data[2] == 0:
        return _strict(data, "utf-16-be", name), "utf-16-be", warnings
    try:
        return data.decode("utf-8"), "utf-8", warnings
    except UnicodeDecodeError as exc:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise EvidenceError(
                name,
                f"not valid UTF-8 (byte {exc.start}) nor Windows-1252; "
                "re-export it with `Out-File -Encoding utf8`",
            ) from None
        warnings.append(
            f"not valid UTF-8 (byte {exc.start}); decoded as Windows-1252, "
            "check non-ASCII names against the tenant"
        )
        return text, "windows-1252", warnings


def _strict(data: bytes, encoding: str, name: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise EvidenceError(name, f"invalid {encoding} at byte {exc.start}") from None


def parse_document(data: bytes, name: str) -> Document:
    """Decode and parse one evidence file into its objects.

    Raises EvidenceError when the file is not JSON, is an error body, or was truncated by
    ``-Depth``.
    """
    text, encoding, warnings = decode(data, name)
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise EvidenceError(name, "the file is empty; the export command printed nothing")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (the file ends early: truncated?)" if _ends_early(text, exc) else ""
        raise EvidenceError(
            name, f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}"
        ) from None
    except RecursionError:
        raise EvidenceError(name, "JSON nested too deeply to read") from None
    objects = tuple(_split(document, name))
    for obj in objects:
        found = find_truncation(obj.data, obj.pointer)
        if found is not None:
            where, value = found
            raise EvidenceError(
                name,
                f"the export was truncated by ConvertTo-Json's -Depth limit: {where} holds "
                f"{value!r} instead of its value; {DEPTH_CURE}",
            )
    return Document(
        objects=objects,
        encoding=encoding,
        warnings=tuple(warnings),
        incomplete=_incomplete(document),
    )


def _incomplete(document: Any) -> str | None:
    """Why a REST page holds only part of the results, if it does."""
    if not isinstance(document, dict):
        return None
    if document.get("@odata.nextLink"):
        return "the admin API returned a link to more results that was not followed"
    warnings = document.get("@adminapi.warnings")
    if isinstance(warnings, list):
        for warning in warnings:
            if "more results" in str(warning).lower():
                return f"the admin API warned: {warning}"
    return None


def _ends_early(text: str, exc: json.JSONDecodeError) -> bool:
    """Whether a parse error is the end of a cut-off file rather than bad content."""
    if exc.pos >= len(text.rstrip()) - 1:
        return True
    return exc.msg.startswith("Unterminated string") and '"' not in text[exc.pos + 1 :]


def _split(document: Any, name: str) -> Iterator[RawObject]:
    if isinstance(document, dict) and "error" in document and "value" not in document:
        raise EvidenceError(name, f"the file holds an error, not results: {error_text(document)}")
    if isinstance(document, dict) and "value" in document:
        values = document["value"]
        base = "/value"
        if isinstance(values, dict):
            values, base = [values], "/value"
            yield _object(values[0], base, name)
            return
        if not isinstance(values, list):
            raise EvidenceError(name, "'value' is neither a list nor an object")
    elif isinstance(document, list):
        values, base = document, ""
    elif isinstance(document, dict):
        yield _object(document, "", name)
        return
    elif document is None:
        return
    else:
        raise EvidenceError(name, f"expected an object or a list, found {type(document).__name__}")
    for index, item in enumerate(values):
        yield _object(item, f"{base}/{index}", name)


def _object(item: Any, pointer: str, name: str) -> RawObject:
    if isinstance(item, str):
        match = _TRUNCATED.match(item)
        if match:
            raise EvidenceError(
                name,
                f"the export was truncated by ConvertTo-Json's -Depth limit: {pointer or '/'} "
                f"holds {item!r}; {DEPTH_CURE}",
            )
    if not isinstance(item, dict):
        raise EvidenceError(
            name, f"{pointer or '/'} is a {type(item).__name__}, expected an object"
        )
    return RawObject(pointer=pointer, data=strip_annotations(item))


def strip_annotations(item: Mapping[str, Any]) -> dict[str, Any]:
    """Drop OData / admin-API annotation keys (``X@odata.type``, ``@odata.context``...)."""
    return {key: value for key, value in item.items() if "@" not in key}


def find_truncation(value: Any, pointer: str) -> tuple[str, str] | None:
    """Return (pointer, text) of the first value that is a -Depth placeholder, if any."""
    stack: list[tuple[Any, str]] = [(value, pointer)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, str):
            if _TRUNCATED.match(current):
                return where or "/", current
        elif isinstance(current, dict):
            stack.extend((v, f"{where}/{pointer_escape(str(k))}") for k, v in current.items())
        elif isinstance(current, list):
            stack.extend((v, f"{where}/{i}") for i, v in enumerate(current))
    return None


def error_text(body: Mapping[str, Any]) -> str:
    """The useful message of an admin-API error body.

    The real text sits in ``details[0].message`` after the second ``|``; otherwise in the
    inner exception or the top-level message.
    """
    error = body.get("error")
    if not isinstance(error, dict):
        return str(error)
    details = error.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        message = str(details[0].get("message", ""))
        parts = message.split("|", 2)
        return parts[2] if len(parts) == 3 else message
    inner = error.get("innererror")
    if isinstance(inner, dict):
        internal = inner.get("internalexception")
        if isinstance(internal, dict) and internal.get("message"):
            return str(internal["message"])
    return str(error.get("message") or error.get("code") or "unknown error")
