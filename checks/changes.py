"""Placeholder module registered ahead of its checks (filled in before this lands)."""

from auditor.engine import Check

CHECKS: tuple[Check, ...] = ()
