"""Every exception the tool raises on purpose, in one place.

AuditorError
 +-- InputError            bad input from the user: a path, an option, a file (exit code 3)
 |    +-- EvidenceError    one evidence file cannot be read or parsed
 |    +-- SnapshotError    a snapshot's layout or manifest is broken
 |    +-- ProfileError     a gateway profile file is invalid
 +-- CheckDefinitionError  a check's metadata breaks the contract (reported, the run goes on)
 +-- UndeclaredEvidenceError  a check read evidence it did not declare in ``requires``
"""

from __future__ import annotations


class AuditorError(Exception):
    """Base of every error this package raises deliberately."""


class InputError(AuditorError):
    """The user's input cannot be used; the message says what to do about it."""


class EvidenceError(InputError):
    """An evidence file cannot be decoded or parsed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class SnapshotError(InputError):
    """A snapshot directory or archive is not usable."""


class ProfileError(InputError):
    """A gateway profile does not follow the profile schema."""


class CheckDefinitionError(AuditorError):
    """A check's metadata is invalid (bad id, unknown evidence, missing text)."""


class UndeclaredEvidenceError(AuditorError):
    """A check asked for evidence it did not list in ``requires``."""
