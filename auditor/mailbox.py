"""Mailbox evidence: inbox rules and delivered-message headers, over EWS (exchangelib) or
Microsoft Graph (auditor/graph_mailbox.py) behind one interface, :class:`MailboxReader`.

Two evidence items, both stored under ``mailbox/``, with the same shapes whichever API read them:

- ``Mailbox-InboxRules``: every sampled mailbox's inbox rules (EWS ``GetInboxRules``), written
  with the property names Get-InboxRule uses, so the InboxRule model (and MBX-002) reads them.
- ``Mailbox-MessageHeaders``: for the most recent messages of each sampled inbox (``FindItem``
  then ``GetItem``), only what proves how the message reached Exchange Online: message id,
  date received, sender, the Received chain, X-Forefront-Antispam-Report,
  Authentication-Results, the organisation's AuthAs and directionality stamps, and the names
  (not values) of all headers so that any gateway's stamps can be recognised later. No subject,
  no body, no recipients.

exchangelib is synchronous: each mailbox's calls run in a worker thread (``asyncio.to_thread``)
under a semaphore. exchangelib's own retrying is off (``FailFast``); this module retries with
bounds: ErrorServerBusy waits its BackOffMilliseconds (capped), 5xx, timeouts and unreadable
answers back off exponentially, and a refused token (401) is renewed once through
:mod:`auditor.oauth`. Nothing is dropped silently: a mailbox that could not be read is listed
in the file with its state (``denied``, ``missing``, ``error``) and the reason, and the item is
marked ``partial``.

Each file records the API that produced it: a top-level ``"api"`` (``"ews"`` or ``"graph"``)
beside ``"mailboxes"``, and ``"CollectedThrough"`` on every row (a mailbox where nothing was
found, or that could not be read, has a row saying so), so that checks can state what the API
could not see (Graph does not return hidden inbox rules). Files written before Graph support
carry neither and were read over EWS.

Which API: ``--mailbox-api auto`` (the default) uses EWS only where the tenant still allows it
(Get-OrganizationConfig EwsEnabled / EwsAllowedAppIDs, then one EWS request as a probe) and
otherwise Microsoft Graph; :func:`collect_mailbox_evidence` says which and why in one line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from .errors import AuthenticationError, EvidenceError
from .evidence import SPECS, State
from .exo_rest import CmdletResult
from .oauth import LOOPBACK, AccessToken, Credential
from .psjson import decode

log = logging.getLogger(__name__)

EWS_URL = "https://outlook.office365.com/EWS/Exchange.asmx"
EWS = "ews"
GRAPH = "graph"
API_NAMES: Mapping[str, str] = {EWS: "EWS", GRAPH: "Microsoft Graph"}
RULES_KEY = "Mailbox-InboxRules"
ORGANIZATION_CONFIG = "Get-OrganizationConfig.json"
HEADERS_KEY = "Mailbox-MessageHeaders"
DEFAULT_MESSAGES = 20
SWITCHED_OFF = "not collected: mailbox evidence was not asked for (collect --mailboxes)"
# The row that stands for a mailbox read without finding anything, so that every mailbox read
# has a row (and the API that read it is on record even then).
NOTHING_FOUND: Mapping[str, str] = {RULES_KEY: "the mailbox has no inbox rules",
                                    HEADERS_KEY: "the inbox holds no messages"}
NO_ADDRESS = ("not collected: no mailbox address to read (Get-Mailbox was not collected or listed no "
              "mailbox)")
OPERATIONS: Mapping[str, str] = {RULES_KEY: "EWS GetInboxRules",
                                 HEADERS_KEY: "EWS FindItem + GetItem (inbox, newest first)"}
EWS_SOURCE = "through exchangelib, app-only OAuth with impersonation"
# The headers kept, by the property name they are stored under. Received may repeat.
KEPT_HEADERS: Mapping[str, str] = {
    "received": "Received",
    "x-forefront-antispam-report": "AntispamReport",
    "authentication-results": "AuthenticationResults",
    "x-ms-exchange-organization-authas": "OrganizationAuthAs",
    "x-ms-exchange-organization-messagedirectionality": "MessageDirectionality",
}
EWS_RETIREMENT = (
    "if EWS is blocked for this tenant or app: Exchange Online blocks EWS from 1 October 2026 "
    "unless the organisation allows it (Set-OrganizationConfig -EwsEnabled $true and this app in "
    "EwsAllowedAppIDs) and switches EWS off on 1 April 2027; read mailboxes through Microsoft Graph "
    "instead (--mailbox-api graph, or auto)"
)
EWS_GRANTS = (
    "the application permission full_access_as_app (Office 365 Exchange Online) with admin "
    "consent, scoped with RBAC for Applications or an application access policy"
)
# ErrorAccessDenied (like HTTP 403) is how Exchange Online refuses EWS as a whole (EwsEnabled
# False, the app not in EwsAllowedAppIDs); the others refuse one mailbox.
BLOCKED_CODES = frozenset({"ErrorAccessDenied"})
DENIED_CODES = frozenset({
    "ErrorImpersonateUserDenied", "ErrorImpersonationDenied",
    "ErrorInvalidImpersonationHeader", "ErrorNoApplicableProxyCASServersAvailable",
    "ErrorProxyRequestNotAllowed",
})
MISSING_CODES = frozenset({"ErrorNonExistentMailbox", "ErrorMailboxStoreUnavailable",
                           "ErrorFolderNotFound", "ErrorInvalidSmtpAddress"})
RETRY_CODES = frozenset({"ErrorServerBusy", "ErrorInternalServerTransientError", "ErrorTimeoutExpired",
                         "ErrorTooManyObjectsOpened", "ErrorMailboxMoveInProgress"})
# Names Get-InboxRule shows for the distinguished folders a rule may move mail to.
DISTINGUISHED_FOLDERS: Mapping[str, str] = {
    "inbox": "Inbox", "deleteditems": "Deleted Items", "junkemail": "Junk Email",
    "archive": "Archive", "archivemsgfolderroot": "Archive", "conversationhistory": "Conversation History",
    "rssfeeds": "RSS Feeds", "drafts": "Drafts", "sentitems": "Sent Items", "outbox": "Outbox",
    "notes": "Notes", "recoverableitemsdeletions": "Recoverable Items",
}


@dataclass(frozen=True)
class MailboxPolicy:
    """How much to read and how patiently."""

    concurrency: int = 3  # mailboxes read at once
    mailbox_sample: int | None = None  # None: every mailbox
    messages_per_mailbox: int = DEFAULT_MESSAGES
    rules: bool = True
    headers: bool = True
    attempts: int = 4  # per mailbox operation, counting the first
    backoff: float = 2.0  # first wait after a transient failure; doubles
    max_backoff: float = 60.0
    max_server_backoff: float = 300.0  # an ErrorServerBusy BackOffMilliseconds is cut to this
    timeout: float = 60.0  # seconds for one request
    max_pages: int = 100  # Graph pages per mailbox and collection before the mailbox fails


class TruncatedAnswer(OSError):
    """An EWS answer that stops before the end of its SOAP envelope. exchangelib parses with
    lxml's recover mode, which would read a cut-off list as a shorter one: refuse it instead."""


def _refuse_truncated(response: Any, *args: Any, **kwargs: Any) -> Any:
    """A requests response hook: a 200 answer must end with its SOAP envelope."""
    if response.status_code == 200 and not response.content.rstrip().endswith(b"Envelope>"):
        raise TruncatedAnswer(f"the EWS answer ends before its SOAP envelope does "
                              f"({len(response.content)} bytes): truncated")
    return response


class MailboxReader(Protocol):
    """One way of reading mailbox evidence (EWS or Microsoft Graph). Both write the same two
    items with the same row shapes, so that checks need not know which API read them."""

    api: str  # EWS or GRAPH, recorded in the evidence files

    async def collect(self, addresses: Sequence[str]) -> list[CmdletResult]:
        """Both items for a sample of ``addresses``; never raises for what the service answers."""
        ...


class MailboxFailure(Exception):
    """Why one mailbox's evidence could not be read: a state and a reason."""

    def __init__(self, state: State, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


@dataclass
class MailboxOutcome:
    """What was read from one mailbox for one item, or why not (either API)."""

    mailbox: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    state: State = State.OK
    reason: str | None = None
    blocked: bool = False  # EWS refused the app as a whole (EWS off, or the app not allowed)


def mailbox_addresses(get_mailbox_body: bytes | None) -> list[str]:
    """The primary SMTP addresses Get-Mailbox listed (EWS impersonates by address)."""
    if not get_mailbox_body:
        return []
    try:
        document = json.loads(get_mailbox_body.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return []
    values = document.get("value", document) if isinstance(document, dict) else document
    found: list[str] = []
    for mailbox in values if isinstance(values, list) else [values]:
        if not isinstance(mailbox, dict):
            continue
        address = mailbox.get("PrimarySmtpAddress") or mailbox.get("UserPrincipalName")
        if isinstance(address, str) and "@" in address and address.lower() not in found:
            found.append(address.lower())
    return found


def sample(addresses: Sequence[str], size: int | None) -> list[str]:
    """``size`` mailboxes spread over the list, the same ones on every run (ordered by a hash of
    the address, so a sample is neither the first page of the directory nor random)."""
    if size is None or size >= len(addresses):
        return sorted(addresses)
    ranked = sorted(addresses, key=lambda a: hashlib.sha256(a.encode()).hexdigest())
    return sorted(ranked[:size])


def _allow_loopback_http(url: str) -> None:
    """oauthlib refuses bearer tokens over plain HTTP; the EWS URL was already limited to TLS
    or a loopback test server (auditor.oauth.check_endpoint), so allow the latter only."""
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")


def _token_dict(token: AccessToken) -> dict[str, str]:
    # No expiry fields: oauthlib would raise TokenExpiredError client-side and exchangelib would
    # retry without end. A refused token comes back as 401 and is renewed here.
    return {"access_token": token.value, "token_type": "Bearer"}


class MailboxCollector:
    """Reads inbox rules and message headers of many mailboxes through one EWS endpoint."""

    api = EWS

    def __init__(self, credential: Credential, http: httpx.AsyncClient, *, ews_url: str = EWS_URL,
                 policy: MailboxPolicy | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.credential = credential
        self.http = http
        self.ews_url = ews_url
        self.policy = policy or MailboxPolicy()
        self.sleep = sleep
        self._ews_credentials: Any = None
        self._config: Any = None
        self._token: AccessToken | None = None
        self._protocol_instance: Any = None

    # --- exchangelib plumbing (runs in worker threads) ---------------------------------------

    def _configure(self, token: AccessToken) -> None:
        from exchangelib import Build, Configuration, FailFast, OAuth2AuthorizationCodeCredentials, Version

        _allow_loopback_http(self.ews_url)
        # Authorization-code credentials holding only a token: exchangelib then never asks the
        # identity platform itself; a refused token is renewed by this class (see _renew).
        self._ews_credentials = OAuth2AuthorizationCodeCredentials(access_token=_token_dict(token))
        self._config = Configuration(service_endpoint=self.ews_url, credentials=self._ews_credentials,
                                     auth_type="OAuth 2.0", version=Version(build=Build(15, 20)),
                                     retry_policy=FailFast(), max_connections=self.policy.concurrency)
        self._token = token
        from exchangelib.protocol import Protocol

        # One protocol (session pool) for every mailbox, held here: exchangelib's own cache
        # misses once the credentials object has grown its cached OAuth client.
        protocol = self._protocol_instance = Protocol(config=self._config)
        create = protocol.create_session

        def checked_session() -> Any:
            session = create()
            session.hooks["response"].append(_refuse_truncated)
            return session

        protocol.create_session = checked_session
        protocol.TIMEOUT = self.policy.timeout

    def _protocol(self) -> Any:
        """The one exchangelib protocol (session pool) shared by every mailbox's account."""
        return self._protocol_instance

    def _account(self, address: str) -> Any:
        from exchangelib import IMPERSONATION, UTC, Account

        account = Account(address, access_type=IMPERSONATION, config=self._config, autodiscover=False,
                          locale="en_US", default_timezone=UTC)
        account.protocol = self._protocol_instance
        return account

    def _read_rules(self, address: str) -> list[dict[str, Any]]:
        account = self._account(address)
        rows = []
        folder_names: dict[str, str] = {}
        for rule in account.rules:
            if isinstance(rule, Exception):
                raise rule
            if rule is not None:
                rows.append(_rule_row(account, address, rule, folder_names))
        return rows

    def _read_headers(self, address: str) -> list[dict[str, Any]]:
        account = self._account(address)
        wanted = ("message_id", "datetime_received", "sender", "author", "headers")
        query = account.inbox.all().order_by("-datetime_received").only(*wanted)
        rows = []
        for message in query[: self.policy.messages_per_mailbox]:
            if isinstance(message, Exception):
                raise message
            rows.append(_message_row(address, message))
        return rows

    # --- one mailbox, with bounded retries ----------------------------------------------------

    async def _renew(self, stale: AccessToken) -> None:
        try:
            token = await self.credential.token(self.http, renew=True, stale=stale)
        except AuthenticationError as exc:
            raise MailboxFailure(State.ERROR, f"signing in again failed: {exc}") from None
        self._token = token
        with self._ews_credentials.lock:
            self._ews_credentials.access_token = _token_dict(token)
        # Sessions carry the old token in their headers: start new ones.
        self._protocol().close()

    async def _one(self, address: str, read: Callable[[str], list[dict[str, Any]]],
                   what: str) -> MailboxOutcome:
        policy = self.policy
        renewed = False
        attempt = 0
        while True:
            token = self._token
            assert token is not None
            try:
                return MailboxOutcome(address, await asyncio.to_thread(read, address))
            except Exception as exc:  # every exchangelib failure is classified, none escapes
                kind, wait, reason = _classify(exc, policy)
                log.debug("EWS %s of %s: %s (%s)", what, address, kind, reason)
            if kind == "unauthorized":
                if renewed:
                    return MailboxOutcome(address, state=State.DENIED, blocked=True, reason=(
                        f"401 Unauthorized twice (the renewed token was refused too) reading the "
                        f"{what}; the app needs {EWS_GRANTS}; {EWS_RETIREMENT}"))
                try:
                    await self._renew(token)
                except MailboxFailure as failure:
                    return MailboxOutcome(address, state=failure.state, reason=failure.reason)
                renewed = True
                continue
            if kind in ("denied", "blocked"):
                return MailboxOutcome(address, state=State.DENIED, blocked=kind == "blocked", reason=(
                    f"reading the {what} was refused: {reason}; the app needs {EWS_GRANTS}; "
                    f"{EWS_RETIREMENT}"))
            if kind == "missing":
                return MailboxOutcome(address, state=State.MISSING, reason=f"{what}: {reason}")
            if kind == "fatal":
                return MailboxOutcome(address, state=State.ERROR,
                                      reason=f"reading the {what} failed: {reason}")
            attempt += 1
            if attempt >= policy.attempts:
                return MailboxOutcome(address, state=State.ERROR, reason=(
                    f"gave up reading the {what} after {policy.attempts} attempts: {reason}"))
            await self.sleep(wait if wait is not None else
                             min(policy.backoff * 2 ** (attempt - 1), policy.max_backoff))

    # --- the whole sample ---------------------------------------------------------------------

    async def probe(self, address: str) -> MailboxOutcome:
        """One GetInboxRules for ``address``: whether EWS serves this app in this tenant."""
        try:
            token = await self.credential.token(self.http)
        except AuthenticationError as exc:
            return MailboxOutcome(address, state=State.ERROR, reason=f"no token for EWS: {exc}")
        self._configure(token)
        try:
            return await self._one(address, self._read_rules, "inbox rules")
        finally:
            self._protocol().close()

    async def collect(self, addresses: Sequence[str]) -> list[CmdletResult]:
        """Both items for the sampled mailboxes; a switched-off item is marked missing."""
        policy = self.policy
        chosen = sample(addresses, policy.mailbox_sample)
        reads = [(RULES_KEY, policy.rules, self._read_rules, "inbox rules"),
                 (HEADERS_KEY, policy.headers, self._read_headers, "message headers")]
        if not any(on for _, on, _, _ in reads):
            return not_collected(OPERATIONS, State.MISSING, SWITCHED_OFF)
        if not chosen:
            return not_collected(OPERATIONS, State.MISSING, NO_ADDRESS)
        try:
            token = await self.credential.token(self.http)
        except AuthenticationError as exc:
            return not_collected(OPERATIONS, State.ERROR, f"no token for EWS: {exc}")
        self._configure(token)
        try:
            return await read_items(reads, chosen, len(addresses), policy, self._one, OPERATIONS,
                                    lambda operation: f"{operation} {EWS_SOURCE}", EWS)
        finally:
            self._protocol().close()


# --- which API ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MailboxApiChoice:
    """The API chosen for mailbox evidence and why: the one line ``collect`` prints."""

    api: str
    why: str

    @property
    def line(self) -> str:
        return f"mailbox evidence through {API_NAMES[self.api]}: {self.why}"


def _organization_config(body: bytes | None) -> dict[str, Any] | None:
    """The object of a Get-OrganizationConfig REST body (or export file), if readable."""
    if not body:
        return None
    try:
        document = json.loads(decode(body, ORGANIZATION_CONFIG)[0].lstrip("\ufeff"))
    except (ValueError, EvidenceError):
        return None
    values = document.get("value", document) if isinstance(document, dict) else document
    first = values[0] if isinstance(values, list) and values else values
    return first if isinstance(first, dict) else None


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def ews_closed(org_config: bytes | None, client_id: str) -> str | None:
    """Why Get-OrganizationConfig says EWS refuses this app, or None when it does not say so
    (EwsEnabled not set is allowed before Exchange Online's block reaches the tenant: probe)."""
    config = _organization_config(org_config)
    if config is None:
        return None
    enabled = _flag(config.get("EwsEnabled"))
    if enabled is False:
        return "Get-OrganizationConfig has EwsEnabled False, so EWS is blocked for the organisation"
    listed = config.get("EwsAllowedAppIDs")
    allowed = ({str(a).strip().lower() for a in listed} if isinstance(listed, list)
               else {a.lower() for a in str(listed or "").replace(",", " ").split()})
    if enabled is True and allowed and client_id.lower() not in allowed:
        return (f"this app ({client_id}) is not in Get-OrganizationConfig's EwsAllowedAppIDs, so EWS "
                "refuses it")
    return None


async def choose_mailbox_api(requested: str, ews: MailboxCollector, address: str,
                             org_config: bytes | None, client_id: str) -> MailboxApiChoice:
    """``requested`` (EWS, GRAPH or ``"auto"``) made definite. Auto uses EWS only where the
    tenant allows it and one EWS request for ``address`` succeeds; otherwise Graph."""
    if requested in (EWS, GRAPH):
        return MailboxApiChoice(requested, f"--mailbox-api {requested}")
    closed = ews_closed(org_config, client_id)
    if closed is not None:
        return MailboxApiChoice(GRAPH, f"auto: {closed}")
    probe = await ews.probe(address)
    if probe.state is State.OK or (probe.state in (State.MISSING, State.DENIED) and not probe.blocked):
        # A missing or refused mailbox is that mailbox's trouble: EWS itself answered.
        return MailboxApiChoice(EWS, f"auto: EWS answered the first request (inbox rules of {address})")
    reason = (probe.reason or probe.state.value).split("; the app needs")[0]
    return MailboxApiChoice(GRAPH, f"auto: EWS did not serve the first request (inbox rules of "
                                   f"{address}: {reason})")


async def collect_mailbox_evidence(requested: str, ews: MailboxCollector, graph: MailboxReader | None,
                                   addresses: Sequence[str], org_config: bytes | None,
                                   client_id: str) -> tuple[MailboxApiChoice | None, list[CmdletResult]]:
    """Both mailbox items through the API ``requested`` or chosen (None when mailbox evidence
    was not asked for or no mailbox is listed: the items are then marked missing). ``graph``
    is None when there is no Graph sign-in (``--mailbox-api ews``)."""
    policy = ews.policy
    chosen = sample(addresses, policy.mailbox_sample)
    if not (policy.rules or policy.headers) or not chosen:
        return None, await ews.collect(addresses)
    choice = await choose_mailbox_api(requested, ews, chosen[0], org_config, client_id)
    if choice.api == EWS:
        return choice, await ews.collect(addresses)
    if graph is None:
        return choice, not_collected(OPERATIONS, State.ERROR, "not collected: no Microsoft Graph sign-in")
    return choice, await graph.collect(addresses)


def _classify(exc: BaseException, policy: MailboxPolicy) -> tuple[str, float | None, str]:
    """(kind, wait, reason): how one exchangelib failure ends or delays a mailbox's read."""
    from exchangelib.errors import (
        ErrorServerBusy,
        EWSError,
        MalformedResponseError,
        RateLimitError,
        ResponseMessageError,
        SOAPError,
        TransportError,
        UnauthorizedError,
    )

    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else name
    if isinstance(exc, UnauthorizedError):
        return "unauthorized", None, "401"
    if isinstance(exc, ErrorServerBusy) and str(exc).startswith("Reraised from"):
        # exchangelib's own wrapping of a 5xx or timeout, with its default wait: not the server's
        return "retry", None, text.removeprefix("Reraised from ")
    if isinstance(exc, ErrorServerBusy):
        back_off = exc.back_off
        wait = min(float(back_off), policy.max_server_backoff) if back_off else None
        return "retry", wait, f"ErrorServerBusy (the server asked to wait {back_off or '?'} s)"
    if name in BLOCKED_CODES:
        return "blocked", None, f"{name}: {text}"
    if name in DENIED_CODES:
        return "denied", None, f"{name}: {text}"
    if name in MISSING_CODES:
        return "missing", None, f"{name}: {text}"
    if name in RETRY_CODES or isinstance(exc, RateLimitError):
        return "retry", None, f"{name}: {text}"
    if isinstance(exc, MalformedResponseError | TransportError) and "Code: 403" in str(exc):
        return "blocked", None, "HTTP 403 Forbidden from EWS"
    if isinstance(exc, MalformedResponseError) and "Code: 5" in str(exc):
        return "retry", None, "an HTTP 5xx answer without a SOAP body"
    if isinstance(exc, SOAPError | MalformedResponseError | TransportError):
        return "retry", None, f"{name}: unreadable or failed answer ({text[:120]})"
    if isinstance(exc, ResponseMessageError | EWSError):
        return "fatal", None, f"{name}: {text}"
    if isinstance(exc, OSError):
        return "retry", None, f"{name}: {text}"
    return "fatal", None, f"{name}: {text}"


ReadOne = Callable[[str], Awaitable[list[dict[str, Any]]]]
ReadItem = tuple[str, bool, ReadOne, str]  # evidence key, switched on, reader, what it reads


async def read_items(reads: Sequence[ReadItem], chosen: Sequence[str], listed: int,
                     policy: MailboxPolicy,
                     one: Callable[[str, ReadOne, str], Awaitable[MailboxOutcome]],
                     operations: Mapping[str, str], source: Callable[[str], str],
                     api: str) -> list[CmdletResult]:
    """Each switched-on item read for every chosen mailbox, ``policy.concurrency`` at a time
    (a switched-off item is marked missing): the same for EWS and Graph."""
    gate = asyncio.Semaphore(max(1, policy.concurrency))
    items: list[CmdletResult] = []
    for key, on, read, what in reads:
        if not on:
            items.append(CmdletResult(key, operations[key], State.MISSING, reason=SWITCHED_OFF))
            continue

        async def run(address: str, read: ReadOne = read, what: str = what) -> MailboxOutcome:
            async with gate:
                return await one(address, read, what)

        outcomes = await asyncio.gather(*(run(a) for a in chosen))
        items.append(evidence_item(key, operations[key], source(operations[key]), api, outcomes,
                                   listed, policy))
    return items


def not_collected(operations: Mapping[str, str], state: State, reason: str) -> list[CmdletResult]:
    """Both items, unread for one reason (switched off, no address, no token)."""
    return [CmdletResult(key, operations[key], state, reason=reason) for key in (RULES_KEY, HEADERS_KEY)]


def evidence_item(key: str, operation: str, source: str, api: str, outcomes: Sequence[MailboxOutcome],
                  listed: int, policy: MailboxPolicy) -> CmdletResult:
    """One evidence file from every mailbox's outcome: failed mailboxes listed with why, and
    mailboxes where nothing was found with a row saying so; the API that read it recorded on
    the file (``api``) and on every row (``CollectedThrough``)."""
    values: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    failed = [o for o in outcomes if o.state is not State.OK]
    for outcome in outcomes:
        if outcome.state is State.OK:
            nothing = {"Mailbox": outcome.mailbox, "CollectionState": "empty",
                       "CollectionError": NOTHING_FOUND[key]}
            values.extend({**row, "CollectedThrough": api} for row in outcome.rows or [nothing])
            summary.append({"Mailbox": outcome.mailbox, "State": "ok", "Objects": len(outcome.rows)})
        else:
            summary.append({"Mailbox": outcome.mailbox, "State": outcome.state.value,
                            "Reason": outcome.reason})
            values.append({"Mailbox": outcome.mailbox, "CollectionState": outcome.state.value,
                           "CollectionError": outcome.reason, "CollectedThrough": api})
    body = {
        "source": source,
        "api": api,
        "folder": SPECS[key].folder,
        "sample": {"mailboxes_listed": listed, "mailboxes_read": len(outcomes),
                   "messages_per_mailbox": policy.messages_per_mailbox if key == HEADERS_KEY else None},
        "mailboxes": summary,
        "value": values,
    }
    data = json.dumps(body, indent=2, ensure_ascii=False, default=str).encode()
    objects = sum(1 for v in values if "CollectionState" not in v)
    if failed and len(failed) == len(outcomes):
        states = {o.state for o in failed}
        state = State.DENIED if states == {State.DENIED} else State.ERROR
        return CmdletResult(key, operation, state, body=data, objects=objects,
                            reason=(f"no mailbox could be read; first: {failed[0].mailbox}: "
                                    f"{failed[0].reason}"))
    reasons = []
    if failed:
        reasons.append(f"{len(failed)} of {len(outcomes)} mailboxes could not be read (first: "
                       f"{failed[0].mailbox}: {failed[0].reason})")
    if len(outcomes) < listed:
        reasons.append(f"a sample of {len(outcomes)} of {listed} mailboxes was read (--mailbox-sample)")
    # A sample is the user's choice, not a failure: only unread mailboxes make the item partial.
    return CmdletResult(key, operation, State.PARTIAL if failed else State.OK, body=data,
                        objects=objects, reason="; ".join(reasons) or None,
                        warnings=tuple(r for r in reasons if r.startswith("a sample")))


# --- turning exchangelib objects into rows ------------------------------------------------------

def recipient_text(name: str | None, email: str | None) -> str | None:
    """One recipient the way Get-InboxRule shows it: ``"Name" [SMTP:user@x]``."""
    if email:
        return f'"{name or email}" [SMTP:{email}]'
    return str(name) if name else None


def _recipients(addresses: Iterable[Any] | None) -> list[str]:
    shown = (recipient_text(getattr(a, "name", None), getattr(a, "email_address", None))
             for a in addresses or ())
    return [text for text in shown if text]


def _folder_name(account: Any, action: Any, cache: dict[str, str]) -> str | None:
    """The display name of the folder a rule moves mail to (one GetFolder per folder id)."""
    from exchangelib.fields import FieldPath
    from exchangelib.folders import Folder
    from exchangelib.services import GetFolder

    if action is None:
        return None
    distinguished = getattr(action, "distinguished_folder_id", None)
    if distinguished is not None and distinguished.id:
        return DISTINGUISHED_FOLDERS.get(distinguished.id.lower(), distinguished.id)
    folder_id = getattr(action, "folder_id", None)
    if folder_id is None or not folder_id.id:
        return None
    if folder_id.id not in cache:
        target = Folder(root=account.root, id=folder_id.id, changekey=folder_id.changekey)
        name_field = FieldPath(field=Folder.get_field_by_fieldname("name"))
        found = list(GetFolder(account=account).call(folders=[target], additional_fields=[name_field],
                                                     shape="IdOnly"))
        if found and isinstance(found[0], Exception):
            raise found[0]
        cache[folder_id.id] = (found[0].name if found else None) or f"(folder id {folder_id.id})"
    return cache[folder_id.id]


def _rule_row(account: Any, address: str, rule: Any, folder_names: dict[str, str]) -> dict[str, Any]:
    """An EWS rule with Get-InboxRule's property names (what the InboxRule model reads)."""
    conditions, actions = rule.conditions, rule.actions
    row: dict[str, Any] = {
        "Name": rule.display_name,
        "Identity": f"{address}\\{rule.id}",
        "MailboxOwnerId": address,
        "Priority": rule.priority,
        "Enabled": rule.is_enabled,
        "InError": rule.is_in_error,
        "SupportedByTask": not rule.is_not_supported if rule.is_not_supported is not None else None,
    }
    if conditions is not None:
        row.update({
            "SubjectContainsWords": list(conditions.contains_subject_strings or []),
            "BodyContainsWords": list(conditions.contains_body_strings or []),
            "SubjectOrBodyContainsWords": list(conditions.contains_subject_or_body_strings or []),
            "FromAddressContainsWords": list(conditions.contains_sender_strings or []),
            "HeaderContainsWords": list(conditions.contains_header_strings or []),
            "From": _recipients(conditions.from_addresses),
        })
    if actions is not None:
        row.update({
            "ForwardTo": _recipients(actions.forward_to_recipients),
            "ForwardAsAttachmentTo": _recipients(actions.forward_as_attachment_to_recipients),
            "RedirectTo": _recipients(actions.redirect_to_recipients),
            "DeleteMessage": bool(actions.delete),
            "SoftDeleteMessage": bool(actions.permanent_delete),
            "MoveToFolder": _folder_name(account, actions.move_to_folder, folder_names),
            "MarkAsRead": bool(actions.mark_as_read),
            "StopProcessingRules": bool(actions.stop_processing_rules),
        })
    return row


def _message_row(address: str, message: Any) -> dict[str, Any]:
    received = getattr(message, "datetime_received", None)
    sender = getattr(message, "sender", None) or getattr(message, "author", None)
    return header_row(address, getattr(message, "message_id", None),
                      received.isoformat() if isinstance(received, datetime) else received,
                      getattr(sender, "email_address", None),
                      ((str(getattr(h, "name", "") or ""), str(getattr(h, "value", "") or ""))
                       for h in getattr(message, "headers", None) or ()))


def header_row(address: str, message_id: str | None, received: str | None, sender: str | None,
               headers: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The proof-relevant part of one message, whichever API read it: nothing about its content."""
    row: dict[str, Any] = {"Mailbox": address, "InternetMessageId": message_id,
                           "DateTimeReceived": received, "Sender": sender}
    names: list[str] = []
    kept: dict[str, list[str]] = {}
    for name, value in headers:
        if not name:
            continue
        names.append(name)
        target = KEPT_HEADERS.get(name.lower())
        if target:
            kept.setdefault(target, []).append(value)
    row["Received"] = kept.get("Received", [])
    for target in ("AntispamReport", "AuthenticationResults", "OrganizationAuthAs", "MessageDirectionality"):
        values = kept.get(target)
        row[target] = values[0] if values else None
    row["HeaderNames"] = names
    return row
