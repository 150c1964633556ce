"""Turn the values PowerShell writes into Python values, or say exactly why not.

Each converter takes the raw JSON value and raises ValueError with a message meant for the
user; the model layer adds the file and JSON pointer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .exo_enums import enum_name

_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_RECIPIENT = re.compile(r'^(?:"?(?P<name>[^"\[]*)"?\s*)?\[(?:smtp|SMTP):(?P<addr>[^\]]+)\]$')


def to_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"expected text, found {_kind(value)}")


def to_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"expected true or false, found {value!r}")


def to_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, found {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ValueError(f"expected a whole number, found {value!r}")


def to_datetime(value: Any) -> datetime | None:
    """ISO 8601, ``/Date(ms[+hhmm])/`` or Windows PowerShell's ``{"value": ..., "DateTime": ...}``.

    A time without a zone is taken as UTC (what the admin API means by it).
    """
    if value is None or value == "":
        return None
    if isinstance(value, dict) and "value" in value:
        return to_datetime(value["value"])
    if not isinstance(value, str):
        raise ValueError(f"expected a date, found {_kind(value)}")
    text = value.strip()
    match = _MS_DATE.match(text.replace("\\/", "/"))
    if match:
        try:
            moment = datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
            if match.group(2):
                sign = 1 if match.group(2)[0] == "+" else -1
                hours, minutes = int(match.group(2)[1:3]), int(match.group(2)[3:5])
                moment = moment.astimezone(timezone(sign * timedelta(hours=hours, minutes=minutes)))
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"date {value!r} is out of range") from None
        return moment
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 or /Date()/ date, found {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def enum_converter(cmdlet: str, prop: str) -> Callable[[Any], str | None]:
    def convert(value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            name = enum_name(cmdlet, prop, value)
            if name is None:
                raise ValueError(
                    f"enum written as the number {value}, whose name is not known; re-export "
                    "with `ConvertTo-Json -EnumsAsStrings` (PowerShell 7) or select the "
                    "property as text"
                )
            return name
        raise ValueError(f"expected a name, found {_kind(value)}")

    return convert


def to_strings(value: Any, *, split: bool) -> tuple[str, ...]:
    """A multi-valued property: a list, a lone value, or (remote sessions) one spaced string.

    ``split`` says whether a lone string may be split on white space and commas, which is
    only safe for values that cannot contain spaces (addresses, IP ranges, domains).
    """
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        out: list[str] = []
        for index, item in enumerate(value):
            if item is None:
                continue
            if isinstance(item, dict):
                raise ValueError(f"item {index} is an object, expected text")
            text = to_str(item)
            if text is not None:
                out.append(text)
        return tuple(out)
    text = to_str(value)
    if text is None:
        return ()
    if split:
        return tuple(part for part in re.split(r"[\s,]+", text.strip()) if part) if (
            " " in text.strip() or "," in text
        ) else (text.strip(),)
    return (text,)


def smtp_address(text: str) -> str | None:
    """The SMTP address inside ``smtp:a@b``, ``"Name" [SMTP:a@b]`` or ``a@b``; None for a name."""
    value = text.strip()
    match = _RECIPIENT.match(value)
    if match:
        value = match.group("addr")
    elif value.lower().startswith("smtp:"):
        value = value[5:]
    value = value.strip().strip("<>")
    if value.count("@") == 1 and " " not in value:
        local, domain = value.split("@")
        if local and domain:
            return f"{local}@{domain.lower()}"
    return None


def address_domain(address: str) -> str:
    return address.rsplit("@", 1)[1].lower().rstrip(".")


def sender_domain_entry(text: str) -> tuple[str, int | None]:
    """``smtp:*;1`` (address space type, domain, cost) to ("*", 1); a bare domain to (domain, None)."""
    value = text.strip()
    if ":" in value:
        value = value.split(":", 1)[1]
    cost: int | None = None
    if ";" in value:
        value, cost_text = value.split(";", 1)
        cost = int(cost_text) if cost_text.strip().isdigit() else None
    return value.strip().lower(), cost


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)
