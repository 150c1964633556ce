"""Live, read-only collection from the Exchange Online admin API (``InvokeCommand``).

This is the REST endpoint the ExchangeOnlineManagement v3 module itself calls: one POST per
cmdlet, ``{"CmdletInput": {"CmdletName": ..., "Parameters": {...}}}``, answered with an OData
collection that pages through ``@odata.nextLink`` (the same body re-POSTed to the link).

Safety first: only ``Get-*`` cmdlets of the evidence catalogue may run, checked before any
network I/O (``ensure_allowed``). Every evidence item ends with a state and the reason it is not
``ok``: ``partial`` (a page not fetched: a link loop, the page bound, an expired continuation),
``denied`` (401/403: names the permission and role that are missing), ``missing`` (the object or
cmdlet does not exist) or ``error`` (retries exhausted, invalid answers). Throttling (429 with
``Retry-After``), 5xx answers and timeouts are retried with a bounded backoff; a token refused
mid-run (401) is renewed once and the request retried.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from . import __version__
from .errors import AuthenticationError, CmdletNotAllowedError
from .evidence import EXO_SPECS, State
from .oauth import AccessToken, Credential, check_endpoint
from .psjson import error_text

ADMIN_API = "https://outlook.office365.com"
SYSTEM_MAILBOX = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}"
TABL_CMDLET = "Get-TenantAllowBlockListItems"
INBOX_RULES = "Get-InboxRule"
MAILBOXES = "Get-Mailbox"
# Cmdlets documented with -ResultSize: without it they stop at their default (1000 for mailboxes).
RESULT_SIZE_UNLIMITED = frozenset({"Get-TransportRule", "Get-OutboundConnector", "Get-Mailbox",
                                   "Get-InboxRule"})
REQUIRED_GRANTS = ("the application permission Exchange.ManageAsApp (with admin consent) and a "
                   "directory role on the app's service principal: Global Reader, or Security "
                   "Reader for the protection cmdlets")
ROLE_HINTS: Mapping[str, str] = {
    INBOX_RULES: "Get-InboxRule does not run for Global Reader or View-Only Organization "
                 "Management: the identity needs an Exchange role that grants Get-InboxRule",
}
PAGE_EXPIRED = "expired or invalid pagination request"
MORE_RESULTS = "more results"
REDIRECT_HOSTS = (".outlook.com", ".office365.com")
MAX_REDIRECTS = 3

JsonValue = str | bool | int


@dataclass(frozen=True, slots=True)
class CmdletCall:
    """One evidence item to collect: its key (the export file's stem), cmdlet and parameters."""

    key: str
    cmdlet: str
    parameters: Mapping[str, JsonValue] = field(default_factory=dict)


def _call_for(key: str) -> CmdletCall:
    if key.startswith(f"{TABL_CMDLET}-"):
        return CmdletCall(key, TABL_CMDLET, {"ListType": key.removeprefix(f"{TABL_CMDLET}-")})
    parameters: dict[str, JsonValue] = {"ResultSize": "Unlimited"} if key in RESULT_SIZE_UNLIMITED else {}
    return CmdletCall(key, key, parameters)


# The admin API serves the exo/ evidence only; Graph and mailbox evidence have their own clients.
PLAN: tuple[CmdletCall, ...] = tuple(_call_for(spec.key) for spec in EXO_SPECS)
ALLOWED_CMDLETS: frozenset[str] = frozenset(call.cmdlet.lower() for call in PLAN)


def ensure_allowed(cmdlet: str) -> None:
    """Raise CmdletNotAllowedError unless ``cmdlet`` is a Get-* cmdlet of the catalogue."""
    if not isinstance(cmdlet, str) or not cmdlet.lower().startswith("get-"):
        raise CmdletNotAllowedError(str(cmdlet), "live collection runs read-only Get-* cmdlets only")
    if cmdlet.lower() not in ALLOWED_CMDLETS:
        raise CmdletNotAllowedError(cmdlet, "not in the evidence catalogue's allowlist ("
                                    + ", ".join(sorted({c.cmdlet for c in PLAN})) + ")")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on waiting: attempts per request, backoff, Retry-After, timeout, pages."""

    attempts: int = 5  # per request (page), counting the first
    backoff: float = 2.0  # first wait after a 5xx / timeout; doubles each time
    max_backoff: float = 60.0
    max_retry_after: float = 120.0  # a longer Retry-After is cut to this
    timeout: float = 120.0  # seconds for one request
    max_pages: int = 1000


@dataclass(frozen=True)
class CmdletResult:
    """What one evidence item's collection produced."""

    key: str
    cmdlet: str
    state: State
    body: bytes | None = None  # the REST body (pages merged) when something was collected
    reason: str | None = None
    objects: int = 0
    pages: int = 0
    requests: int = 0
    warnings: tuple[str, ...] = ()

    def status(self) -> dict[str, Any]:
        """This item's entry in export.json."""
        return {"status": self.state.value, "error": self.reason, "objects": self.objects,
                "cmdlet": self.cmdlet, "pages": self.pages, "warnings": list(self.warnings)}


class _Outcome(Exception):
    """A request chain that ends an item without results (used internally)."""

    def __init__(self, state: State, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class Progress:
    """Told about each item as it starts and ends (the CLI draws it); does nothing by default."""

    def started(self, call: CmdletCall) -> None:
        """An item's first request is about to be sent."""

    def finished(self, result: CmdletResult) -> None:
        """An item ended, with its state."""


def _retry_after(value: str | None, bound: float) -> float | None:
    """Seconds from a Retry-After header (seconds, possibly fractional, or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), bound)


def _json(data: bytes) -> Any:
    """Parse a body; NUL padding (seen on 403s) is ignored. Raises ValueError if not JSON."""
    text = data.decode("utf-8-sig").strip("\x00 \r\n\t")
    return json.loads(text) if text else None


class ExoClient:
    """Calls ``InvokeCommand`` for one tenant with tokens from ``credential``.

    ``http`` is the caller's client (its transport, TLS settings and proxies); ``base_url`` is
    the admin API host, and ``sleep`` the wait used between retries (tests make it instant).
    """

    def __init__(self, tenant: str, credential: Credential, http: httpx.AsyncClient, *,
                 base_url: str = ADMIN_API, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.tenant = tenant
        self.credential = credential
        self.http = http
        self.base_url = check_endpoint(base_url, "the admin API URL")
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.connection_id = str(uuid.uuid4())
        self.requests = 0

    # --- one request --------------------------------------------------------------------

    def _tenant_path(self, token: AccessToken) -> str:
        """The tenant id in the URL: the token's ``tid`` (a GUID) when it has one."""
        return str(token.claims.get("tid") or self.tenant)

    def _anchor(self, token: AccessToken) -> str:
        claims = token.claims
        user = claims.get("upn") or claims.get("preferred_username")
        if self.credential.delegated and user:
            return f"UPN:{user}"
        return f"APP:{SYSTEM_MAILBOX}@{self._tenant_path(token)}"

    def _allowed_link(self, url: str) -> bool:
        """Tokens go only to the admin API host, or to Microsoft's hosts on a redirect."""
        target, base = urlsplit(url), urlsplit(self.base_url)
        if (target.scheme, target.netloc) == (base.scheme, base.netloc):
            return True
        return target.scheme == "https" and bool(target.hostname) and any(
            str(target.hostname).endswith(suffix) for suffix in REDIRECT_HOSTS)

    async def _send(self, url: str, body: Mapping[str, Any], cmdlet: str,
                    token: AccessToken) -> httpx.Response:
        """POST once, following a regional redirect with the Authorization header re-sent."""
        for _ in range(MAX_REDIRECTS + 1):
            self.requests += 1
            response = await self.http.post(url, json=body, timeout=self.policy.timeout, headers={
                "Authorization": f"Bearer {token.value}",
                "Accept": "application/json",
                "X-AnchorMailbox": self._anchor(token),
                "Prefer": "odata.maxpagesize=1000",
                "X-ResponseFormat": "json",
                "X-CmdletName": cmdlet,
                "X-ClientApplication": f"mailflow-auditor/{__version__}",
                "connection-id": self.connection_id,
                "client-request-id": str(uuid.uuid4()),
            }, follow_redirects=False)
            location = response.headers.get("location")
            if response.status_code not in (301, 302, 307, 308) or not location:
                return response
            url = str(response.url.join(location))
            if not self._allowed_link(url):
                raise _Outcome(State.ERROR, f"the admin API redirected to {urlsplit(url).netloc}, "
                                            "which is not a Microsoft host; not followed")
        raise _Outcome(State.ERROR, f"more than {MAX_REDIRECTS} redirects")

    async def _page(self, url: str, body: Mapping[str, Any], cmdlet: str, page: int) -> dict[str, Any]:
        """One page, with retries; raises _Outcome when the item must end without it."""
        policy = self.policy
        token = await self._token()
        renewed = False
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = await self._send(url, body, cmdlet, token)
            except httpx.TimeoutException:
                last = f"timed out after {policy.timeout:g} s"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        document = _json(response.content)
                    except ValueError:
                        last = "the answer was not valid JSON (truncated?)"
                    else:
                        if isinstance(document, dict) and isinstance(document.get("value", []), list):
                            return document
                        raise _Outcome(State.ERROR, "the answer has no 'value' list")
                elif status == 401:
                    if renewed:
                        raise _Outcome(State.DENIED, self._denied(cmdlet, 401, response))
                    token = await self._token(renew=True, stale=token)
                    renewed = True
                    continue  # a renewed token is not a failed attempt
                elif status == 403:
                    raise _Outcome(State.DENIED, self._denied(cmdlet, 403, response))
                elif status == 429:
                    wait = _retry_after(response.headers.get("retry-after"), policy.max_retry_after)
                    last = "throttled (429)"
                elif status >= 500 or status == 408:
                    last = f"HTTP {status}"
                else:
                    raise _Outcome(*self._refusal(cmdlet, status, response, page))
            attempt += 1
            if attempt >= policy.attempts:
                raise _Outcome(State.ERROR, f"gave up after {policy.attempts} attempts: {last}")
            await self.sleep(wait if wait is not None else
                             min(policy.backoff * 2 ** (attempt - 1), policy.max_backoff))

    async def _token(self, *, renew: bool = False, stale: AccessToken | None = None) -> AccessToken:
        """A token, or the item ends in error when signing in again fails mid-run."""
        try:
            return await self.credential.token(self.http, renew=renew, stale=stale)
        except AuthenticationError as exc:
            raise _Outcome(State.ERROR, f"signing in again failed: {exc}") from None

    def _message(self, response: httpx.Response) -> str:
        try:
            document = _json(response.content)
        except (ValueError, UnicodeDecodeError):
            return ""
        return error_text(document) if isinstance(document, dict) and "error" in document else ""

    def _denied(self, cmdlet: str, status: int, response: httpx.Response) -> str:
        text = self._message(response)
        what = "401 Unauthorized (the token was refused twice)" if status == 401 else "403 Forbidden"
        hint = ROLE_HINTS.get(cmdlet, f"it needs {REQUIRED_GRANTS}")
        return f"{what}{': ' + text if text else ''}; the identity may not run {cmdlet}: {hint}"

    def _refusal(self, cmdlet: str, status: int, response: httpx.Response,
                 page: int) -> tuple[State, str]:
        """How a 4xx other than 401/403/429 ends the item."""
        text = self._message(response) or f"HTTP {status}"
        lowered = text.lower()
        if page > 1 and (PAGE_EXPIRED in lowered or status == 400):
            return State.PARTIAL, (f"page {page} could not be fetched ({text}); results after "
                                   f"page {page - 1} are missing")
        if "is not recognized as" in lowered or "commandnotfound" in lowered:
            return State.DENIED, (f"{cmdlet} is not available to this identity ({text}); "
                                  f"{ROLE_HINTS.get(cmdlet, 'it needs ' + REQUIRED_GRANTS)}")
        if status == 404 or "couldn't be found" in lowered or "notfound" in lowered:
            return State.MISSING, text
        return State.ERROR, f"HTTP {status}: {text}"

    # --- one cmdlet, every page ---------------------------------------------------------

    async def invoke(self, cmdlet: str, parameters: Mapping[str, JsonValue] | None = None,
                     *, key: str | None = None) -> CmdletResult:
        """Run one allowed cmdlet and follow its pages; never raises for what the API says."""
        ensure_allowed(cmdlet)
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": dict(parameters or {})}}
        key = key or cmdlet
        start_requests = self.requests
        try:
            token = await self._token()
        except _Outcome as outcome:
            return CmdletResult(key, cmdlet, outcome.state, reason=outcome.reason)
        url = f"{self.base_url}/adminapi/beta/{self._tenant_path(token)}/InvokeCommand"
        values: list[Any] = []
        warnings: list[str] = []
        context: Any = None
        seen: set[str] = set()
        page = 0
        partial: str | None = None
        unfollowed: str | None = None
        while True:
            page += 1
            try:
                document = await self._page(url, body, cmdlet, page)
            except _Outcome as outcome:
                if page == 1:
                    return CmdletResult(key, cmdlet, outcome.state, reason=outcome.reason,
                                        requests=self.requests - start_requests)
                # What earlier pages returned is real: keep it, marked incomplete.
                partial = outcome.reason if outcome.state is State.PARTIAL else (
                    f"page {page} could not be fetched ({outcome.reason}); results after page "
                    f"{page - 1} are missing")
                unfollowed = url
                page -= 1
                break
            context = context if context is not None else document.get("@odata.context")
            values.extend(document.get("value") or [])
            warnings.extend(str(w) for w in document.get("@adminapi.warnings") or []
                            if MORE_RESULTS not in str(w).lower())
            link = document.get("@odata.nextLink")
            if not link:
                break
            seen.add(url)
            link = str(link)
            if link in seen:
                partial, unfollowed = (f"the admin API sent page link {page + 1} again (a paging "
                                       f"loop); results after page {page} are missing"), link
                break
            if page >= self.policy.max_pages:
                partial, unfollowed = (f"stopped at the bound of {self.policy.max_pages} pages; "
                                       "later results are missing"), link
                break
            if not self._allowed_link(link):
                partial, unfollowed = (f"the next-page link points to {urlsplit(link).netloc}, not "
                                       "the admin API; not followed, later results are missing"), link
                break
            url = link
        merged: dict[str, Any] = {"@odata.context": context,
                                  "adminapi.warnings@odata.type": "#Collection(String)",
                                  "@adminapi.warnings": warnings}
        if unfollowed is not None:
            merged["@odata.nextLink"] = unfollowed
        merged["value"] = values
        return CmdletResult(
            key, cmdlet, State.PARTIAL if partial else State.OK,
            body=json.dumps(merged, indent=2, ensure_ascii=False).encode(),
            reason=partial, objects=len(values), pages=page,
            requests=self.requests - start_requests, warnings=tuple(warnings))

    # --- the whole catalogue ------------------------------------------------------------

    async def collect(self, calls: Sequence[CmdletCall] = PLAN, *, concurrency: int = 3,
                      progress: Progress | None = None, inbox_rules: bool = True) -> list[CmdletResult]:
        """Collect every item, ``concurrency`` requests in flight; results in ``calls`` order.

        Get-InboxRule runs per mailbox once Get-Mailbox is in; with ``inbox_rules`` off it is
        marked missing with that reason.
        """
        for call in calls:
            ensure_allowed(call.cmdlet)
        progress = progress or Progress()
        gate = asyncio.Semaphore(max(1, concurrency))

        async def run(call: CmdletCall) -> CmdletResult:
            async with gate:
                progress.started(call)
                result = await self.invoke(call.cmdlet, call.parameters, key=call.key)
            progress.finished(result)
            return result

        plain = [c for c in calls if c.cmdlet != INBOX_RULES]
        tasks = {call.key: asyncio.create_task(run(call)) for call in plain}
        results = {key: await task for key, task in tasks.items()}
        for call in calls:
            if call.cmdlet != INBOX_RULES:
                continue
            if not inbox_rules:
                result = CmdletResult(call.key, call.cmdlet, State.MISSING,
                                      reason="not collected (inbox rules were switched off)")
            else:
                mailboxes = results.get(MAILBOXES)
                result = await self._inbox_rules(call, mailboxes, gate, progress)
            progress.finished(result)
            results[call.key] = result
        return [results[call.key] for call in calls]

    async def _inbox_rules(self, call: CmdletCall, mailboxes: CmdletResult | None,
                           gate: asyncio.Semaphore, progress: Progress) -> CmdletResult:
        """Get-InboxRule -Mailbox X for every mailbox Get-Mailbox listed, merged into one item."""
        if mailboxes is None or mailboxes.body is None:
            why = mailboxes.reason if mailboxes else "Get-Mailbox was not collected"
            return CmdletResult(call.key, call.cmdlet, State.MISSING,
                                reason=f"needs the mailbox list, which is unavailable: {why}")
        progress.started(call)
        owners = [_mailbox_id(m) for m in json.loads(mailboxes.body)["value"]]
        owners = [o for o in owners if o]
        denied: list[str] = []

        async def one(owner: str) -> CmdletResult:
            async with gate:
                if denied:  # the first refusal stands for all: do not hammer the API
                    return CmdletResult(call.key, call.cmdlet, State.DENIED, reason=denied[0])
                result = await self.invoke(call.cmdlet, {**call.parameters, "Mailbox": owner},
                                           key=call.key)
            if result.state is State.DENIED:
                denied.append(result.reason or "denied")
            return result

        parts = await asyncio.gather(*(one(o) for o in owners))
        return _merge_inbox_rules(call, owners, parts, mailboxes)


def _mailbox_id(mailbox: Any) -> str | None:
    if not isinstance(mailbox, dict):
        return None
    for name in ("ExternalDirectoryObjectId", "UserPrincipalName", "PrimarySmtpAddress"):
        value = mailbox.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _merge_inbox_rules(call: CmdletCall, owners: Sequence[str], parts: Iterable[CmdletResult],
                       mailboxes: CmdletResult) -> CmdletResult:
    values: list[Any] = []
    warnings: list[str] = []
    failed: list[str] = []
    pages = requests = 0
    for owner, part in zip(owners, parts, strict=True):
        pages += part.pages
        requests += part.requests
        if part.state is State.DENIED:
            return CmdletResult(call.key, call.cmdlet, State.DENIED, reason=part.reason,
                                pages=pages, requests=requests)
        if part.state is State.MISSING:
            warnings.append(f"mailbox {owner} disappeared before its rules were read: {part.reason}")
            continue
        if part.body is not None:
            values.extend(json.loads(part.body)["value"])
        if part.state is not State.OK:
            failed.append(f"{owner}: {part.reason}")
    if failed and len(failed) == len(owners):
        return CmdletResult(call.key, call.cmdlet, State.ERROR, pages=pages, requests=requests,
                            reason=f"no mailbox's rules could be read; first: {failed[0]}")
    reasons = []
    if failed:
        reasons.append(f"the rules of {len(failed)} of {len(owners)} mailboxes are incomplete "
                       f"(first: {failed[0]})")
    if mailboxes.state is State.PARTIAL:
        reasons.append(f"only the mailboxes Get-Mailbox returned were read ({mailboxes.reason})")
    body = {"@odata.context": None, "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": warnings, "value": values}
    return CmdletResult(call.key, call.cmdlet, State.PARTIAL if reasons else State.OK,
                        body=json.dumps(body, indent=2, ensure_ascii=False).encode(),
                        reason="; ".join(reasons) or None, objects=len(values), pages=pages,
                        requests=requests, warnings=tuple(warnings))
