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

Independent calls (the top-level cmdlets, and Get-InboxRule once per mailbox) go ``BATCH_SIZE``
at a time through the admin API's ``$batch`` endpoint (OData JSON batching, one POST answered
with one status and body per call), about 3 POSTs in flight. Each call's answer inside a batch
is judged exactly as a single call's (a throttled call alone is asked again after its
Retry-After); a call whose answer has more pages continues with single calls; when the endpoint
itself refuses ``$batch``, the client notes it (``batch_refused``) and goes on with single calls.
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
                                   "Get-InboxRule", "Get-MailboxAuditBypassAssociation"})
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
REDIRECTS = (301, 302, 307, 308)
MAX_REDIRECTS = 3
# Cmdlet calls per $batch POST. KelvinTegelaar/CIPP-API (New-ExoBulkRequest.ps1, the public client
# that batches InvokeCommand through .../adminapi/beta/{tenant}/$batch) splits its cmdlets "into
# batches of 10" and sends Prefer: odata.continue-on-error; Microsoft Graph's JSON batching, the
# same OData format, caps a batch at 20 requests.
BATCH_SIZE = 10
MAX_BATCH_SIZE = 20
PAGE_PREFER = "odata.maxpagesize=1000"
BATCH_PREFER = f"{PAGE_PREFER}, odata.continue-on-error"

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


class ItemStopped(Exception):
    """A request chain that ends an item without results, with its state and why (shared by
    the admin API, Graph, audit-log and Graph mailbox clients)."""

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


def retry_delay(value: str | None, bound: float) -> float | None:
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


def parse_json_body(data: bytes) -> Any:
    """Parse a body; NUL padding (seen on 403s) is ignored. Raises ValueError if not JSON."""
    text = data.decode("utf-8-sig").strip("\x00 \r\n\t")
    return json.loads(text) if text else None


_INVALID: Any = object()  # a body that is not JSON (a truncated answer)


def _parsed(data: bytes) -> Any:
    """A body's JSON, or _INVALID."""
    try:
        return parse_json_body(data)
    except (ValueError, UnicodeDecodeError):
        return _INVALID


def _message(document: Any) -> str:
    """The text of an admin-API error body, or ''."""
    return error_text(document) if isinstance(document, dict) and "error" in document else ""


def _command(cmdlet: str, parameters: Mapping[str, JsonValue]) -> dict[str, Any]:
    return {"CmdletInput": {"CmdletName": cmdlet, "Parameters": dict(parameters)}}


@dataclass
class _Tally:
    """HTTP requests made for one item (a $batch POST counts for each item in it)."""

    requests: int = 0


@dataclass(frozen=True)
class _Retry:
    """An answer worth asking again: why, and the wait the service asked for (429); ``renew``:
    a 401, asked again at once with a new token."""

    reason: str
    wait: float | None = None
    renew: bool = False


@dataclass
class _Item:
    """One call's place in a $batch: its attempts, and its first page (or end) once known."""

    call: CmdletCall
    body: dict[str, Any]
    tally: _Tally = field(default_factory=_Tally)
    attempt: int = 0
    renewed: bool = False
    single: bool = False  # to be run as a single call
    first: dict[str, Any] | ItemStopped | None = None


def paging_stops(link: str, seen: set[str], page: int, max_pages: int, allowed: bool,
                 service: str) -> str | None:
    """Why the next page (``link``, after ``page`` pages) must not be fetched, or None: a link
    seen before (a loop), the page bound, or a link to another host (never sent the token)."""
    if link in seen:
        return (f"{service} sent page link {page + 1} again (a paging loop); results after page "
                f"{page} are missing")
    if page >= max_pages:
        return f"stopped at the bound of {max_pages} pages; later results are missing"
    if not allowed:
        return (f"the next-page link points to {urlsplit(link).netloc}, not {service}; not followed, "
                "later results are missing")
    return None


class ExoClient:
    """Calls ``InvokeCommand`` for one tenant with tokens from ``credential``.

    ``http`` is the caller's client (its transport, TLS settings and proxies); ``base_url`` is
    the admin API host, and ``sleep`` the wait used between retries (tests make it instant).
    ``batch_refused`` says why ``$batch`` was given up for single calls, once that happened.
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
        self.batch_refused: str | None = None

    # --- one request --------------------------------------------------------------------

    def _tenant_path(self, token: AccessToken) -> str:
        """The tenant id in the URL: the token's ``tid`` (a GUID) when it has one."""
        return str(token.claims.get("tid") or self.tenant)

    def _api(self, token: AccessToken) -> str:
        return f"{self.base_url}/adminapi/beta/{self._tenant_path(token)}"

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

    async def _send(self, url: str, body: Mapping[str, Any], token: AccessToken,
                    tally: _Tally | None, *, cmdlet: str | None) -> httpx.Response:
        """POST once, following a regional redirect with the Authorization header re-sent.

        ``cmdlet`` None: a ``$batch`` POST (each item names its own cmdlet).
        """
        headers = {
            "Authorization": f"Bearer {token.value}",
            "Accept": "application/json",
            "X-AnchorMailbox": self._anchor(token),
            "Prefer": BATCH_PREFER if cmdlet is None else PAGE_PREFER,
            "X-ResponseFormat": "json",
            "X-ClientApplication": f"mailflow-auditor/{__version__}",
            "connection-id": self.connection_id,
        }
        if cmdlet is not None:
            headers["X-CmdletName"] = cmdlet
        for _ in range(MAX_REDIRECTS + 1):
            self.requests += 1
            if tally is not None:
                tally.requests += 1
            response = await self.http.post(
                url, json=body, timeout=self.policy.timeout, follow_redirects=False,
                headers={**headers, "client-request-id": str(uuid.uuid4())})
            location = response.headers.get("location")
            if response.status_code not in REDIRECTS or not location:
                return response
            url = str(response.url.join(location))
            if not self._allowed_link(url):
                raise ItemStopped(State.ERROR, f"the admin API redirected to {urlsplit(url).netloc}, "
                                            "which is not a Microsoft host; not followed")
        raise ItemStopped(State.ERROR, f"more than {MAX_REDIRECTS} redirects")

    def _assess(self, cmdlet: str, status: int, document: Any, retry_after: str | None,
                page: int, renewed: bool) -> dict[str, Any] | _Retry:
        """What one answer means for its request: the page, a reason to ask again, or (raised as
        ItemStopped) the end of the item. A whole response and one item of a ``$batch`` answer
        go through here alike, so both are handled exactly the same way."""
        if status == 200:
            if document is _INVALID:
                return _Retry("the answer was not valid JSON (truncated?)")
            if isinstance(document, dict) and isinstance(document.get("value", []), list):
                return document
            raise ItemStopped(State.ERROR, "the answer has no 'value' list")
        if status == 401:
            if renewed:
                raise ItemStopped(State.DENIED, self._denied(cmdlet, 401, document))
            return _Retry("401 Unauthorized", renew=True)
        if status == 403:
            raise ItemStopped(State.DENIED, self._denied(cmdlet, 403, document))
        if status == 429:
            return _Retry("throttled (429)", retry_delay(retry_after, self.policy.max_retry_after))
        if status >= 500 or status == 408:
            return _Retry(f"HTTP {status}")
        raise ItemStopped(*self._refusal(cmdlet, status, document, page))

    def _wait(self, verdict: _Retry, attempt: int) -> float:
        """Retry-After when the service gave one, else the doubling backoff."""
        if verdict.wait is not None:
            return verdict.wait
        return min(self.policy.backoff * 2 ** (attempt - 1), self.policy.max_backoff)

    async def _page(self, url: str, body: Mapping[str, Any], cmdlet: str, page: int,
                    tally: _Tally) -> dict[str, Any]:
        """One page, with retries; raises ItemStopped when the item must end without it."""
        policy = self.policy
        token = await self._token()
        renewed = False
        attempt = 0
        while True:
            verdict: dict[str, Any] | _Retry
            try:
                response = await self._send(url, body, token, tally, cmdlet=cmdlet)
            except httpx.TimeoutException:
                verdict = _Retry(f"timed out after {policy.timeout:g} s")
            except httpx.TransportError as exc:
                verdict = _Retry(f"connection failed ({type(exc).__name__})")
            else:
                verdict = self._assess(cmdlet, response.status_code, _parsed(response.content),
                                       response.headers.get("retry-after"), page, renewed)
            if isinstance(verdict, dict):
                return verdict
            if verdict.renew:
                token = await self._token(renew=True, stale=token)
                renewed = True
                continue  # a renewed token is not a failed attempt
            attempt += 1
            if attempt >= policy.attempts:
                raise ItemStopped(State.ERROR, f"gave up after {policy.attempts} attempts: {verdict.reason}")
            await self.sleep(self._wait(verdict, attempt))

    async def _token(self, *, renew: bool = False, stale: AccessToken | None = None) -> AccessToken:
        """A token, or the item ends in error when signing in again fails mid-run."""
        try:
            return await self.credential.token(self.http, renew=renew, stale=stale)
        except AuthenticationError as exc:
            raise ItemStopped(State.ERROR, f"signing in again failed: {exc}") from None

    def _denied(self, cmdlet: str, status: int, document: Any) -> str:
        text = _message(document)
        what = "401 Unauthorized (the token was refused twice)" if status == 401 else "403 Forbidden"
        hint = ROLE_HINTS.get(cmdlet, f"it needs {REQUIRED_GRANTS}")
        return f"{what}{': ' + text if text else ''}; the identity may not run {cmdlet}: {hint}"

    def _refusal(self, cmdlet: str, status: int, document: Any, page: int) -> tuple[State, str]:
        """How a 4xx other than 401/403/429 ends the item."""
        text = _message(document) or f"HTTP {status}"
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
        body = _command(cmdlet, parameters or {})
        key = key or cmdlet
        tally = _Tally()
        try:
            url = f"{self._api(await self._token())}/InvokeCommand"
            document = await self._page(url, body, cmdlet, 1, tally)
        except ItemStopped as outcome:
            return CmdletResult(key, cmdlet, outcome.state, reason=outcome.reason,
                                requests=tally.requests)
        return await self._rest(key, cmdlet, body, url, document, tally)

    async def _rest(self, key: str, cmdlet: str, body: Mapping[str, Any], url: str,
                    document: dict[str, Any], tally: _Tally) -> CmdletResult:
        """Page 1 is in: follow ``@odata.nextLink`` with single calls and merge every page."""
        values: list[Any] = []
        warnings: list[str] = []
        context: Any = None
        seen: set[str] = set()
        page = 1
        partial: str | None = None
        unfollowed: str | None = None
        while True:
            context = context if context is not None else document.get("@odata.context")
            values.extend(document.get("value") or [])
            warnings.extend(str(w) for w in document.get("@adminapi.warnings") or []
                            if MORE_RESULTS not in str(w).lower())
            link = document.get("@odata.nextLink")
            if not link:
                break
            seen.add(url)
            link = str(link)
            partial = paging_stops(link, seen, page, self.policy.max_pages,
                                   self._allowed_link(link), "the admin API")
            if partial:
                unfollowed = link
                break
            url = link
            try:
                document = await self._page(url, body, cmdlet, page + 1, tally)
            except ItemStopped as outcome:
                # What earlier pages returned is real: keep it, marked incomplete.
                partial = outcome.reason if outcome.state is State.PARTIAL else (
                    f"page {page + 1} could not be fetched ({outcome.reason}); results after page "
                    f"{page} are missing")
                unfollowed = url
                break
            page += 1
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
            requests=tally.requests, warnings=tuple(warnings))

    # --- many cmdlets in one $batch POST -------------------------------------------------

    async def _batch(self, calls: Sequence[CmdletCall]) -> list[CmdletResult | None]:
        """The first page of every call through ``$batch`` POSTs, later pages with single calls.

        An item's answer is judged by ``_assess`` like a single call's, and only the items that
        must be asked again go into the next POST (after Retry-After or the backoff). None for
        a call means: run it as a single call (the endpoint refused ``$batch``, or redirected
        the item).
        """
        for call in calls:  # every item, before any network I/O
            ensure_allowed(call.cmdlet)
        items = [_Item(call, _command(call.cmdlet, call.parameters)) for call in calls]
        try:
            token = await self._token()
        except ItemStopped as outcome:
            return [CmdletResult(c.key, c.cmdlet, outcome.state, reason=outcome.reason) for c in calls]
        url = f"{self._api(token)}/InvokeCommand"
        pending = items
        while pending:
            if self.batch_refused is not None:
                break  # refused meanwhile (by another POST): the rest go as single calls
            for item in pending:
                item.tally.requests += 1
            try:
                answers = await self._post_batch(url, pending, token)
            except ItemStopped as outcome:  # a redirect off Microsoft's hosts
                for item in pending:
                    item.first = outcome
                break
            if answers is None:
                break
            waits: list[float] = []
            renewing: list[_Item] = []
            for item, verdict in zip(pending, answers, strict=True):
                if verdict is None:
                    item.single = True
                elif not isinstance(verdict, _Retry):
                    item.first = verdict
                elif verdict.renew:  # a renewed token is not a failed attempt
                    item.renewed = True
                    renewing.append(item)
                else:
                    item.attempt += 1
                    if item.attempt >= self.policy.attempts:
                        item.first = ItemStopped(State.ERROR, f"gave up after {self.policy.attempts} "
                                                           f"attempts: {verdict.reason}")
                    else:
                        waits.append(self._wait(verdict, item.attempt))
            if renewing:
                try:
                    token = await self._token(renew=True, stale=token)
                except ItemStopped as outcome:
                    for item in renewing:
                        item.first = outcome
            pending = [i for i in pending if i.first is None and not i.single]
            if pending and waits:
                await self.sleep(max(waits))
        results: list[CmdletResult | None] = []
        for item in items:
            call, first = item.call, item.first
            if first is None:  # to be run singly
                results.append(None)
            elif isinstance(first, ItemStopped):
                results.append(CmdletResult(call.key, call.cmdlet, first.state, reason=first.reason,
                                            requests=item.tally.requests))
            else:
                results.append(await self._rest(call.key, call.cmdlet, item.body, url, first, item.tally))
        return results

    async def _post_batch(self, url: str, items: Sequence[_Item],
                          token: AccessToken) -> list[dict[str, Any] | _Retry | ItemStopped | None] | None:
        """One ``$batch`` POST: each item's verdict (None: redirected, run it singly), or None
        when the endpoint refused the batch itself (``batch_refused`` says why)."""
        accept = {"Accept": "application/json; odata.metadata=minimal", "Prefer": PAGE_PREFER,
                  "X-AnchorMailbox": self._anchor(token)}
        payload = {"requests": [{"id": str(n), "method": "POST", "url": url,
                                 "headers": {**accept, "X-CmdletName": item.call.cmdlet},
                                 "body": item.body} for n, item in enumerate(items, 1)]}
        whole: _Retry | None = None
        try:
            response = await self._send(url.removesuffix("InvokeCommand") + "$batch", payload, token,
                                        None, cmdlet=None)
        except httpx.TimeoutException:
            whole = _Retry(f"timed out after {self.policy.timeout:g} s")
        except httpx.TransportError as exc:
            whole = _Retry(f"connection failed ({type(exc).__name__})")
        else:
            status, document = response.status_code, _parsed(response.content)
            if status in (401, 408, 429) or status >= 500:
                # The whole POST failed: each item is answered so, as a single call would be.
                retry_after = response.headers.get("retry-after")
                return [self._verdict(i, status, document, retry_after) for i in items]
            if status == 200 and document is _INVALID:
                whole = _Retry("the answer was not valid JSON (truncated?)")
            elif status != 200 or not isinstance(document, dict) or not isinstance(
                    document.get("responses"), list):
                text = (_message(document) or f"HTTP {status}") if status != 200 else \
                    "the answer has no 'responses' list"
                self.batch_refused = (f"the admin API refused $batch ({text}); the cmdlets were "
                                      "sent one request each instead")
                return None
            else:
                return self._item_verdicts(items, document["responses"])
        return [whole] * len(items)

    def _item_verdicts(self, items: Sequence[_Item],
                       responses: list[Any]) -> list[dict[str, Any] | _Retry | ItemStopped | None]:
        """Each item's answer in a ``$batch`` answer, judged like a single call's."""
        by_id = {str(r.get("id")): r for r in responses if isinstance(r, dict)}
        verdicts: list[dict[str, Any] | _Retry | ItemStopped | None] = []
        for n, item in enumerate(items, 1):
            answer = by_id.get(str(n))
            status = answer.get("status") if answer else None
            if not isinstance(status, int):
                # Not answered (a service that stops at the first failure does that).
                verdicts.append(_Retry("the $batch answer left this request out"))
                continue
            if status in REDIRECTS:
                verdicts.append(None)
                continue
            headers = answer.get("headers") if answer else None
            retry_after = None
            if isinstance(headers, dict):
                retry_after = next((str(v) for k, v in headers.items() if str(k).lower() == "retry-after"),
                                   None)
            body = answer.get("body") if answer else None
            document = _parsed(body.encode()) if isinstance(body, str) else body
            verdicts.append(self._verdict(item, status, document, retry_after))
        return verdicts

    def _verdict(self, item: _Item, status: int, document: Any,
                 retry_after: str | None) -> dict[str, Any] | _Retry | ItemStopped:
        try:
            return self._assess(item.call.cmdlet, status, document, retry_after, 1, item.renewed)
        except ItemStopped as outcome:
            return outcome

    # --- the whole catalogue ------------------------------------------------------------

    async def invoke_many(self, calls: Sequence[CmdletCall], *, concurrency: int = 3,
                          batch_size: int = BATCH_SIZE, progress: Progress | None = None,
                          stop_when_denied: bool = False) -> list[CmdletResult]:
        """Run independent calls, ``batch_size`` per ``$batch`` POST (1: single calls) with
        ``concurrency`` HTTP requests in flight; results in ``calls`` order.

        With ``stop_when_denied`` the first refusal stands for the calls not yet sent.
        """
        for call in calls:
            ensure_allowed(call.cmdlet)
        progress = progress or Progress()
        size = max(1, batch_size)
        queue: asyncio.Queue[list[int]] = asyncio.Queue()
        for start in range(0, len(calls), size):
            queue.put_nowait(list(range(start, min(start + size, len(calls)))))
        results: list[CmdletResult | None] = [None] * len(calls)
        denied: list[str] = []
        started: set[int] = set()
        failures: list[Exception] = []

        def begin(index: int) -> None:
            if index not in started:
                started.add(index)
                progress.started(calls[index])

        def skipped(index: int) -> bool:
            if stop_when_denied and denied:
                call = calls[index]
                results[index] = CmdletResult(call.key, call.cmdlet, State.DENIED, reason=denied[0])
                return True
            return False

        def record(index: int, result: CmdletResult) -> None:
            results[index] = result
            if result.state is State.DENIED:
                denied.append(result.reason or "denied")
            progress.finished(result)

        async def run(chunk: list[int]) -> None:
            todo = [i for i in chunk if not skipped(i)]
            if len(todo) == 1 or (todo and self.batch_refused is not None):
                call = calls[todo[0]]
                if len(todo) == 1:
                    begin(todo[0])
                    record(todo[0], await self.invoke(call.cmdlet, call.parameters, key=call.key))
                else:  # $batch was refused: single calls, spread over every worker
                    for index in todo:
                        queue.put_nowait([index])
                return
            for index in todo:
                begin(index)
            if todo:
                for index, result in zip(todo, await self._batch([calls[i] for i in todo]), strict=True):
                    if result is None:  # refused meanwhile, or redirected: asked again singly
                        queue.put_nowait([index])
                    else:
                        record(index, result)

        async def worker() -> None:
            while True:
                chunk = await queue.get()
                try:
                    await run(chunk)
                except Exception as exc:  # a bug, not an API answer: raised after the others end
                    failures.append(exc)
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
        try:
            await queue.join()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        if failures:
            raise failures[0]
        return [r for r in results if r is not None]

    async def collect(self, calls: Sequence[CmdletCall] = PLAN, *, concurrency: int = 3,
                      batch_size: int = BATCH_SIZE, progress: Progress | None = None,
                      inbox_rules: bool = True) -> list[CmdletResult]:
        """Collect every item, ``concurrency`` requests in flight; results in ``calls`` order.

        Get-InboxRule runs per mailbox once Get-Mailbox is in; with ``inbox_rules`` off it is
        marked missing with that reason.
        """
        for call in calls:
            ensure_allowed(call.cmdlet)
        progress = progress or Progress()
        plain = [c for c in calls if c.cmdlet != INBOX_RULES]
        results = {r.key: r for r in await self.invoke_many(
            plain, concurrency=concurrency, batch_size=batch_size, progress=progress)}
        for call in calls:
            if call.cmdlet != INBOX_RULES:
                continue
            if not inbox_rules:
                result = CmdletResult(call.key, call.cmdlet, State.MISSING,
                                      reason="not collected (inbox rules were switched off)")
            else:
                result = await self._inbox_rules(call, results.get(MAILBOXES), progress,
                                                 concurrency=concurrency, batch_size=batch_size)
            progress.finished(result)
            results[call.key] = result
        return [results[call.key] for call in calls]

    async def _inbox_rules(self, call: CmdletCall, mailboxes: CmdletResult | None, progress: Progress,
                           *, concurrency: int, batch_size: int) -> CmdletResult:
        """Get-InboxRule -Mailbox X for every mailbox Get-Mailbox listed, merged into one item."""
        if mailboxes is None or mailboxes.body is None:
            why = mailboxes.reason if mailboxes else "Get-Mailbox was not collected"
            return CmdletResult(call.key, call.cmdlet, State.MISSING,
                                reason=f"needs the mailbox list, which is unavailable: {why}")
        progress.started(call)
        owners = [_mailbox_id(m) for m in json.loads(mailboxes.body)["value"]]
        owners = [o for o in owners if o]
        # The first refusal stands for all: do not hammer the API.
        parts = await self.invoke_many(
            [CmdletCall(call.key, call.cmdlet, {**call.parameters, "Mailbox": o}) for o in owners],
            concurrency=concurrency, batch_size=batch_size, stop_when_denied=True)
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
