"""Bypass vector: mailboxes that send the mail they receive out of the organisation."""

from __future__ import annotations

CHECKS = ()
