"""``fnmatch.fnmatchcase`` for the host and header patterns of gateway profiles, without regexes.

``fnmatchcase`` compiles each pattern into a regular expression the first time it sees it, and
``re`` compiles slowly: the shipped profiles' 162 patterns took 16 to 21 ms in every process that
matched them (each bulk worker), far longer than matching them ever does (0.2 ms here).
Patterns made of literal characters, ``*`` and ``?`` (all the shipped ones) are matched here by
their pieces; a pattern with a ``[`` character class goes to ``fnmatchcase`` as before.
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache


def glob_match(name: str, pattern: str) -> bool:
    """``fnmatch.fnmatchcase(name, pattern)``: case-sensitive; ``*`` matches any run of
    characters (dots included), ``?`` any one character."""
    pieces = _pieces(pattern)
    if pieces is None:
        return fnmatch.fnmatchcase(name, pattern)
    if len(pieces) == 1:  # no star: the name is the pattern, ``?`` matching any one character
        return len(name) == len(pattern) and _fits(name, 0, pattern)
    first, *middle, last = pieces
    end = len(name) - len(last)
    if end < len(first) or not _fits(name, 0, first) or not _fits(name, end, last):
        return False
    at = len(first)
    for piece in middle:  # each piece at its leftmost place after the one before: if any fits, that one does
        at = _find(name, piece, at, end)
        if at < 0:
            return False
        at += len(piece)
    return True


@lru_cache(maxsize=1 << 12)
def _pieces(pattern: str) -> tuple[str, ...] | None:
    """The pattern split at its stars (None when it has a character class)."""
    if "[" in pattern:
        return None
    return tuple(pattern.split("*"))


def _fits(name: str, at: int, piece: str) -> bool:
    """Whether ``piece`` (``?`` matching any character) matches ``name`` at ``at``."""
    if "?" not in piece:
        return name.startswith(piece, at)
    if at + len(piece) > len(name):
        return False
    return all(p == "?" or p == c for p, c in zip(piece, name[at:at + len(piece)], strict=True))


def _find(name: str, piece: str, start: int, end: int) -> int:
    """The first place at or after ``start`` where ``piece`` fits, ending by ``end``; -1 if none."""
    if "?" not in piece:
        return name.find(piece, start, end)
    for at in range(start, end - len(piece) + 1):
        if _fits(name, at, piece):
            return at
    return -1
