"""MTA-STS policy files (RFC 8461 section 3.2): parsing and MX matching. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("enforce", "testing", "none")
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3: senders may refuse larger policies


@dataclass(frozen=True, slots=True)
class MtaStsPolicy:
    """An MTA-STS policy file read (RFC 8461 3.2), with what is wrong with it."""

    version: str | None
    mode: str | None
    mx: tuple[str, ...]
    max_age: int | None
    problems: tuple[str, ...]


def parse_policy(text: str) -> MtaStsPolicy:
    """Parse ``key: value`` lines; ``mx`` may repeat; unknown keys are ignored (3.2)."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    problems: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            problems.append(f"line {line[:60]!r} is not key: value")
            continue
        key, value = key.strip(), value.strip()
        if key == "mx":
            mx.append(value.lower().rstrip("."))
        elif key in fields:
            problems.append(f"{key} appears twice")
        else:
            fields[key] = value
    if fields.get("version") != "STSv1":
        problems.append("version is not STSv1")
    mode = fields.get("mode")
    if mode not in MODES:
        problems.append(f"mode {mode!r} is not enforce, testing or none")
        mode = None
    max_age = fields.get("max_age")
    age = int(max_age) if max_age and max_age.isdigit() and int(max_age) <= 31557600 else None
    if age is None:
        problems.append(f"max_age {max_age!r} is not a number of seconds up to 31557600")
    if mode in ("enforce", "testing") and not mx:
        problems.append("no mx: lines")
    return MtaStsPolicy(fields.get("version"), mode, tuple(mx), age, tuple(problems))


def mx_matches(host: str, pattern: str) -> bool:
    """RFC 8461 4.1: ``*.example.com`` matches exactly one leftmost label."""
    name = host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return name == pattern
