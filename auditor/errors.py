"""Every exception the tool raises on purpose, in one place.

AuditorError
 +-- InputError            bad input from the user: a path, an option, a file (exit code 3)
 |    +-- EvidenceError    one evidence file cannot be read or parsed
 |    +-- SnapshotError    a snapshot's layout or manifest is broken
 |    +-- ProfileError     a gateway profile file is invalid
 |    +-- AuthenticationError  the identity platform refused the credentials (no token)
 +-- CmdletNotAllowedError a cmdlet outside the read-only allowlist was asked for (refused
 |                         before any network I/O; a programming error, never the tenant's)
 +-- BulkIncompleteError   a bulk worker returned fewer domains than it was given (never
 |                         written as a shorter report)
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


class AuthenticationError(InputError):
    """No access token: the token endpoint refused the credentials, or could not be reached.

    The message names the identity platform's error code and description; it never holds a
    secret, a client assertion or a token.
    """


class CmdletNotAllowedError(AuditorError):
    """Live collection runs only read-only ``Get-*`` cmdlets from the evidence catalogue."""

    def __init__(self, cmdlet: str, reason: str) -> None:
        super().__init__(f"refusing to run {cmdlet!r}: {reason}")
        self.cmdlet = cmdlet


class BulkIncompleteError(AuditorError):
    """Some domains of a bulk audit came back from no worker: the report would silently omit them."""


class CheckDefinitionError(AuditorError):
    """A check's metadata is invalid (bad id, unknown evidence, missing text)."""


class UndeclaredEvidenceError(AuditorError):
    """A check asked for evidence it did not list in ``requires``."""
