"""Mailbox evidence through Microsoft Graph, for tenants where EWS is blocked or switched off.

The same two items as auditor/mailbox.py (EWS), with the same rows, read with the same selection:

- ``Mailbox-InboxRules``: ``GET /v1.0/users/{id}/mailFolders/inbox/messageRules`` (all pages;
  application permission MailboxSettings.Read), each messageRule written with Get-InboxRule's
  property names; the folder a rule moves mail to is named with ``GET /users/{id}/mailFolders/
  {folder id}?$select=displayName`` (Mail.ReadBasic.All or Mail.Read).
- ``Mailbox-MessageHeaders``: the newest messages of the inbox, ``GET /v1.0/users/{id}/mailFolders/
  inbox/messages`` with ``$orderby=receivedDateTime desc``, ``$top`` the number asked for and
  ``$select`` of the message id, date, sender and ``internetMessageHeaders`` only (Mail.Read):
  no subject, no body.

Graph does not return hidden inbox rules (rules hidden from clients, for instance by clearing
PR_RULE_MSG_PROVIDER): checks say so when the rules came from here. Requests, retries, 429
Retry-After and the renewal of a refused token are GraphClient's (auditor/graph.py); a mailbox
Graph refuses (403: the permission is named) or cannot find (404) is listed with why, and the
others are still read (the item is then partial).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from .errors import AuthenticationError
from .evidence import State
from .exo_rest import CmdletResult, ItemStopped, RetryPolicy, paging_stops
from .graph import GRAPH_API, GraphClient
from .mailbox import (
    GRAPH,
    HEADERS_KEY,
    NO_ADDRESS,
    RULES_KEY,
    SWITCHED_OFF,
    MailboxFailure,
    MailboxOutcome,
    MailboxPolicy,
    header_row,
    not_collected,
    read_items,
    recipient_text,
    sample,
)
from .oauth import Credential

RULES_PERMISSION = "the Microsoft Graph application permission MailboxSettings.Read"
FOLDER_PERMISSION = ("the Microsoft Graph application permission Mail.ReadBasic.All or Mail.Read (to name "
                     "the folder a rule moves mail to)")
HEADERS_PERMISSION = ("the Microsoft Graph application permission Mail.Read (Microsoft lists "
                      "Mail.ReadBasic.All for reading messages too, but not whether it returns "
                      "internetMessageHeaders)")
OPERATIONS: Mapping[str, str] = {
    RULES_KEY: "Microsoft Graph GET /v1.0/users/{id}/mailFolders/inbox/messageRules",
    HEADERS_KEY: "Microsoft Graph GET /v1.0/users/{id}/mailFolders/inbox/messages (newest first, "
                 "internetMessageHeaders)",
}
SOURCE = "app-only OAuth (Microsoft Graph application permissions)"
MESSAGE_FIELDS = "internetMessageId,receivedDateTime,sender,from,internetMessageHeaders"
# messageRulePredicates / messageRuleActions -> the Get-InboxRule properties the EWS rows carry
WORD_CONDITIONS: Mapping[str, str] = {
    "subjectContains": "SubjectContainsWords", "bodyContains": "BodyContainsWords",
    "bodyOrSubjectContains": "SubjectOrBodyContainsWords", "senderContains": "FromAddressContainsWords",
    "headerContains": "HeaderContainsWords",
}
RECIPIENT_ACTIONS: Mapping[str, str] = {
    "forwardTo": "ForwardTo", "forwardAsAttachmentTo": "ForwardAsAttachmentTo", "redirectTo": "RedirectTo",
}
FLAG_ACTIONS: Mapping[str, str] = {
    "delete": "DeleteMessage", "permanentDelete": "SoftDeleteMessage", "markAsRead": "MarkAsRead",
    "stopProcessingRules": "StopProcessingRules",
}


class GraphMailboxCollector:
    """Reads inbox rules and message headers of many mailboxes through Microsoft Graph
    (implements auditor.mailbox.MailboxReader)."""

    api = GRAPH

    def __init__(self, credential: Credential, http: httpx.AsyncClient, *, base_url: str = GRAPH_API,
                 policy: MailboxPolicy | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.credential = credential
        self.http = http
        self.policy = policy = policy or MailboxPolicy()
        retry = RetryPolicy(attempts=policy.attempts, backoff=policy.backoff, max_backoff=policy.max_backoff,
                            max_retry_after=policy.max_server_backoff, timeout=policy.timeout,
                            max_pages=policy.max_pages)
        self.client = GraphClient(credential, http, base_url=base_url, policy=retry, sleep=sleep)

    def _url(self, address: str, path: str) -> str:
        return f"{self.client.base_url}/v1.0/users/{quote(address, safe='@')}/{path}"

    async def _objects(self, url: str, permission: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The objects of one collection, all pages (or the first ``limit``). A page that fails
        or a link that cannot be followed fails the mailbox: a cut list is never a short one."""
        values: list[dict[str, Any]] = []
        seen: set[str] = set()
        page = 0
        while True:
            page += 1
            try:
                document = await self.client.fetch(url, permission)
            except ItemStopped as refused:
                if page == 1:
                    raise
                raise MailboxFailure(refused.state, f"page {page} could not be read: {refused.reason}"
                                     ) from None
            values.extend(v for v in document.get("value") or [] if isinstance(v, dict))
            if limit is not None and len(values) >= limit:
                return values[:limit]
            link = document.get("@odata.nextLink")
            if not link:
                return values
            seen.add(url)
            stop = paging_stops(str(link), seen, page, self.client.policy.max_pages,
                                self.client.on_host(str(link)), "Microsoft Graph")
            if stop is not None:
                raise MailboxFailure(State.ERROR, stop)
            url = str(link)

    async def _folder_name(self, address: str, folder_id: str, cache: dict[str, str]) -> str:
        """The display name of the folder a rule moves mail to (one request per folder)."""
        if folder_id not in cache:
            folder = await self.client.fetch(
                self._url(address, f"mailFolders/{quote(folder_id, safe='')}?$select=displayName"),
                FOLDER_PERMISSION)
            cache[folder_id] = str(folder.get("displayName") or f"(folder id {folder_id})")
        return cache[folder_id]

    async def _read_rules(self, address: str) -> list[dict[str, Any]]:
        rules = await self._objects(self._url(address, "mailFolders/inbox/messageRules"), RULES_PERMISSION)
        folders: dict[str, str] = {}
        rows = []
        for rule in rules:
            target = (rule.get("actions") or {}).get("moveToFolder")
            folder = await self._folder_name(address, str(target), folders) if target else None
            rows.append(rule_row(address, rule, folder))
        return rows

    async def _read_headers(self, address: str) -> list[dict[str, Any]]:
        wanted = self.policy.messages_per_mailbox
        query = urlencode({"$select": MESSAGE_FIELDS, "$orderby": "receivedDateTime desc",
                           "$top": str(wanted)}, quote_via=quote, safe=",")
        messages = await self._objects(self._url(address, f"mailFolders/inbox/messages?{query}"),
                                       HEADERS_PERMISSION, wanted)
        return [message_row(address, message) for message in messages]

    async def _one(self, address: str, read: Callable[[str], Awaitable[list[dict[str, Any]]]],
                   what: str) -> MailboxOutcome:
        try:
            return MailboxOutcome(address, await read(address))
        except (ItemStopped, MailboxFailure) as failure:
            return MailboxOutcome(address, state=failure.state,
                                  reason=f"reading the {what} through Microsoft Graph: {failure.reason}")

    async def collect(self, addresses: Sequence[str]) -> list[CmdletResult]:
        """Both items for the sampled mailboxes; a switched-off item is marked missing."""
        policy = self.policy
        chosen = sample(addresses, policy.mailbox_sample)
        if not (policy.rules or policy.headers):
            return not_collected(OPERATIONS, State.MISSING, SWITCHED_OFF)
        if not chosen:
            return not_collected(OPERATIONS, State.MISSING, NO_ADDRESS)
        try:
            await self.credential.token(self.http)
        except AuthenticationError as exc:
            return not_collected(OPERATIONS, State.ERROR, f"no token for Microsoft Graph: {exc}")
        reads = [(RULES_KEY, policy.rules, self._read_rules, "inbox rules"),
                 (HEADERS_KEY, policy.headers, self._read_headers, "message headers")]
        return await read_items(reads, chosen, len(addresses), policy, self._one, OPERATIONS,
                                lambda operation: f"{operation}, {SOURCE}", GRAPH)


def _texts(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _recipients(value: Any) -> list[str]:
    """Graph recipients (``{"emailAddress": {"name", "address"}}``) as Get-InboxRule shows them."""
    shown = []
    for recipient in value if isinstance(value, list) else []:
        email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
        if not isinstance(email, dict):
            continue
        text = recipient_text(email.get("name"), email.get("address"))
        if text:
            shown.append(text)
    return shown


def rule_row(address: str, rule: Mapping[str, Any], folder: str | None) -> dict[str, Any]:
    """A Graph messageRule with Get-InboxRule's property names, as the EWS rows have them."""
    conditions = rule.get("conditions") or {}
    actions = rule.get("actions") or {}
    row: dict[str, Any] = {
        "Name": rule.get("displayName"),
        "Identity": f"{address}\\{rule.get('id')}",
        "MailboxOwnerId": address,
        "Priority": rule.get("sequence"),
        "Enabled": rule.get("isEnabled"),
        "InError": rule.get("hasError"),
    }
    row.update({name: _texts(conditions.get(graph)) for graph, name in WORD_CONDITIONS.items()})
    row["From"] = _recipients(conditions.get("fromAddresses"))
    row.update({name: _recipients(actions.get(graph)) for graph, name in RECIPIENT_ACTIONS.items()})
    row.update({name: bool(actions.get(graph)) for graph, name in FLAG_ACTIONS.items()})
    row["MoveToFolder"] = folder
    return row


def message_row(address: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """The proof-relevant part of one Graph message (the same row as EWS writes)."""
    sender = message.get("sender") or message.get("from") or {}
    received = message.get("receivedDateTime")
    with suppress(ValueError):  # unreadable: kept as Graph wrote it, and the model reports it
        received = datetime.fromisoformat(str(received)).isoformat() if received else None
    headers = message.get("internetMessageHeaders")
    return header_row(address, message.get("internetMessageId"), received,
                      (sender.get("emailAddress") or {}).get("address") if isinstance(sender, dict) else None,
                      ((str(h.get("name") or ""), str(h.get("value") or ""))
                       for h in headers if isinstance(h, dict)) if isinstance(headers, list) else ())
