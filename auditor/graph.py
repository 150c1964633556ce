"""Live, read-only collection of the app inventory from Microsoft Graph.

Which apps can reach Exchange Online without passing the gateway, and with what credentials:

- ``Graph-ResourceAppRoles``: the Exchange Online and Microsoft Graph resource service principals
  with their ``appRoles`` (how this tenant names each app role id);
- ``Graph-AppRoleAssignments``: ``appRoleAssignedTo`` of those two resources, i.e. every
  application permission granted on them (one list, each entry naming its resource);
- ``Graph-ServicePrincipals`` and ``Graph-Applications``: every service principal and app
  registration with its certificates and secrets (ids, names, types and dates only);
- ``Graph-DelegatedGrants``: delegated grants on the two resources that include
  ``EWS.AccessAsUser.All`` (kept for the inventory).

Each is written as a Graph REST body (``{"@odata.context", "value": [...]}``, pages merged) and
ends with a state like the admin API items: ``partial`` (a page link looping, the page bound, a
page that failed), ``denied`` (403 / a refused token: names the Graph permission missing),
``missing`` or ``error``. Retries, Retry-After and the renewal of a token refused mid-run follow
auditor/exo_rest.py, whose policy and helpers are reused. Secret values, hints and keys are
dropped before anything is written.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from . import __version__
from .errors import AuthenticationError, CmdletNotAllowedError
from .evidence import State
from .exo_rest import (
    CmdletCall,
    CmdletResult,
    ItemStopped,
    Progress,
    RetryPolicy,
    paging_stops,
    parse_json_body,
    retry_delay,
)
from .oauth import AccessToken, Credential, check_endpoint
from .psjson import error_text

T = TypeVar("T")
GRAPH_API = "https://graph.microsoft.com"
QUERIES_PATH = "/v1.0/security/auditLog/queries"  # the audit log queries: the one URL ever POSTed to
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXCHANGE_ONLINE = "00000002-0000-0ff1-ce00-000000000000"
MICROSOFT_GRAPH = "00000003-0000-0000-c000-000000000000"
RESOURCES = "Graph-ResourceAppRoles"
ASSIGNMENTS = "Graph-AppRoleAssignments"
SERVICE_PRINCIPALS = "Graph-ServicePrincipals"
APPLICATIONS = "Graph-Applications"
DELEGATED = "Graph-DelegatedGrants"
EWS_DELEGATED = "EWS.AccessAsUser.All"
APP_READ = "the Microsoft Graph application permission Application.Read.All (or Directory.Read.All)"
GRANT_READ = "the Microsoft Graph permission DelegatedPermissionGrant.Read.All (or Directory.Read.All)"
CREDENTIAL_FIELDS = ("keyId", "displayName", "type", "usage", "startDateTime", "endDateTime")
SP_SELECT = ("id,appId,displayName,appOwnerOrganizationId,servicePrincipalType,publisherName,"
             "accountEnabled,keyCredentials,passwordCredentials")
APP_SELECT = "id,appId,displayName,createdDateTime,signInAudience,keyCredentials,passwordCredentials"


def _strip_credentials(item: Any) -> Any:
    """An object with only the identifying fields of its credentials: never a secret's text,
    its hint or a certificate's key."""
    if not isinstance(item, dict):
        return item
    cleaned = dict(item)
    for name in ("keyCredentials", "passwordCredentials"):
        listed = cleaned.get(name)
        if isinstance(listed, list):
            keep = CREDENTIAL_FIELDS + (("customKeyIdentifier",) if name == "keyCredentials" else ())
            cleaned[name] = [{k: c.get(k) for k in keep if k in c} if isinstance(c, dict) else c
                             for c in listed]
    return cleaned


def _result(key: str, source: str, values: list[Any], context: Any, pages: int, requests: int,
            partial: str | None, unfollowed: str | None) -> CmdletResult:
    body: dict[str, Any] = {"@odata.context": context}
    if unfollowed is not None:
        body["@odata.nextLink"] = unfollowed
    body["value"] = values
    return CmdletResult(key, source, State.PARTIAL if partial else State.OK,
                        body=json.dumps(body, indent=2, ensure_ascii=False).encode(),
                        reason=partial, objects=len(values), pages=pages, requests=requests)


def ensure_post_allowed(base_url: str, url: str) -> None:
    """Raise CmdletNotAllowedError unless ``url`` is exactly the audit log query collection on
    the Graph host ``base_url``: creating a query is the one write-shaped request Graph is sent."""
    target, base = urlsplit(url), urlsplit(base_url)
    if ((target.scheme, target.netloc) != (base.scheme, base.netloc) or target.path != QUERIES_PATH
            or target.query or target.fragment):
        raise CmdletNotAllowedError(f"POST {url}", f"the only POST sent to Microsoft Graph is "
                                                   f"{QUERIES_PATH} (creating an audit log query)")


class Unreadable(Exception):
    """An answer ``GraphClient.retrying``'s reader could not use (truncated JSON): tried again."""


class GraphClient:
    """GETs Graph collections for one tenant with tokens from ``credential`` (scoped to
    ``GRAPH_SCOPE``); ``http``, ``base_url``, ``policy`` and ``sleep`` as in ExoClient."""

    def __init__(self, credential: Credential, http: httpx.AsyncClient, *, base_url: str = GRAPH_API,
                 policy: RetryPolicy | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.credential = credential
        self.http = http
        self.base_url = check_endpoint(base_url, "the Graph URL")
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.requests = 0

    async def _token(self, *, renew: bool = False, stale: AccessToken | None = None) -> AccessToken:
        try:
            return await self.credential.token(self.http, renew=renew, stale=stale)
        except AuthenticationError as exc:
            raise ItemStopped(State.ERROR, f"signing in to Microsoft Graph failed: {exc}") from None

    def _same_host(self, url: str) -> bool:
        target, base = urlsplit(url), urlsplit(self.base_url)
        return (target.scheme, target.netloc) == (base.scheme, base.netloc)

    def _refused(self, status: int, response: httpx.Response, permission: str) -> str:
        try:
            document = parse_json_body(response.content)
        except (ValueError, UnicodeDecodeError):
            document = None
        text = error_text(document) if isinstance(document, dict) and "error" in document else ""
        what = "401 Unauthorized (the token was refused twice)" if status == 401 else f"HTTP {status}"
        needs = f"; the app needs {permission}" if status in (401, 403) else ""
        return f"{what}{': ' + text if text else ''}{needs}"

    async def _page(self, url: str, permission: str) -> dict[str, Any]:
        """One GET with retries (429 Retry-After, 5xx, timeouts, truncated JSON)."""

        def read(response: httpx.Response) -> dict[str, Any]:
            try:
                document = parse_json_body(response.content)
            except ValueError:
                raise Unreadable("the answer was not valid JSON (truncated?)") from None
            if isinstance(document, dict) and isinstance(document.get("value", []), list):
                return document
            raise ItemStopped(State.ERROR, "the answer has no 'value' list")

        def refused(status: int, response: httpx.Response) -> ItemStopped:
            state = State.DENIED if status in (401, 403) else State.MISSING if status == 404 else State.ERROR
            return ItemStopped(state, self._refused(status, response, permission))

        return await self.retrying("GET", url, ok=(200,), read=read, refused=refused)

    async def retrying(self, method: str, url: str, *, ok: tuple[int, ...],
                       read: Callable[[httpx.Response], T],
                       refused: Callable[[int, httpx.Response], ItemStopped],
                       json: Any = None, gave_up: str = "") -> T:
        """One request to Graph with the retries every call gets: a 401 renews the token once, 429
        waits its Retry-After (bounded), 5xx, 408, timeouts, connection failures and an answer
        ``read`` finds ``Unreadable`` are tried again with backoff; any other status raises what
        ``refused`` makes of it. ``read`` turns an ``ok`` answer into the result."""
        if method == "POST":  # read-only: a query of the audit log is the one thing ever created
            ensure_post_allowed(self.base_url, url)
        elif method != "GET":
            raise CmdletNotAllowedError(f"{method} {url}", "Microsoft Graph is only read (GET), but for "
                                                           f"creating an audit log query ({QUERIES_PATH})")
        policy = self.policy
        token = await self._token()
        renewed = False
        attempt = 0
        while True:
            wait: float | None = None
            self.requests += 1
            try:
                response = await self.http.request(
                    method, url, json=json, timeout=policy.timeout, follow_redirects=False, headers={
                        "Authorization": f"Bearer {token.value}", "Accept": "application/json",
                        "User-Agent": f"mailflow-auditor/{__version__}"})
            except httpx.TimeoutException:
                last = f"timed out after {policy.timeout:g} s"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
            else:
                status = response.status_code
                if status in ok:
                    try:
                        return read(response)
                    except Unreadable as exc:
                        last = str(exc)
                elif status == 401 and not renewed:
                    token = await self._token(renew=True, stale=token)
                    renewed = True
                    continue  # a renewed token is not a failed attempt
                elif status == 429:
                    wait = retry_delay(response.headers.get("retry-after"), policy.max_retry_after)
                    last = "throttled (429)"
                elif status >= 500 or status == 408:
                    last = f"HTTP {status}"
                else:
                    raise refused(status, response)
            attempt += 1
            if attempt >= policy.attempts:
                raise ItemStopped(State.ERROR, f"{gave_up}gave up after {policy.attempts} attempts: {last}")
            await self.sleep(wait if wait is not None else
                             min(policy.backoff * 2 ** (attempt - 1), policy.max_backoff))

    async def fetch(self, url: str, permission: str) -> dict[str, Any]:
        """One Graph document (an object, or one page of a collection) with the retries above;
        raises exo_rest's outcome (state and reason, naming ``permission`` on 401/403) when
        Graph refuses or keeps failing. ``url`` must be on this Graph host (see on_host)."""
        if not self._same_host(url):
            raise ItemStopped(State.ERROR, f"{urlsplit(url).netloc} is not Microsoft Graph; not requested")
        return await self._page(url, permission)

    def on_host(self, url: str) -> bool:
        """Whether a link points to this Graph host (the only one a token is sent to)."""
        return self._same_host(url)

    async def list(self, key: str, path: str, *, permission: str = APP_READ) -> CmdletResult:
        """Every page of one collection (``path`` relative to /v1.0), merged; never raises for
        what Graph answers. Pages already read are kept when a later one fails (partial)."""
        source = f"Microsoft Graph GET /v1.0/{path}"
        url = f"{self.base_url}/v1.0/{path}"
        start = self.requests
        values: list[Any] = []
        context: Any = None
        seen: set[str] = set()
        page = 0
        partial = unfollowed = None
        while True:
            page += 1
            try:
                document = await self._page(url, permission)
            except ItemStopped as outcome:
                if page == 1:
                    return CmdletResult(key, source, outcome.state, reason=outcome.reason,
                                        requests=self.requests - start)
                partial = (f"page {page} could not be fetched ({outcome.reason}); results after "
                           f"page {page - 1} are missing")
                unfollowed, page = url, page - 1
                break
            context = context if context is not None else document.get("@odata.context")
            values.extend(_strip_credentials(v) for v in document.get("value") or [])
            link = document.get("@odata.nextLink")
            if not link:
                break
            seen.add(url)
            link = str(link)
            partial = paging_stops(link, seen, page, self.policy.max_pages, self._same_host(link),
                                   "Microsoft Graph")
            if partial:
                unfollowed = link
                break
            url = link
        return _result(key, source, values, context, page, self.requests - start, partial, unfollowed)

    async def per_resource(self, key: str, resources: CmdletResult, path: str, *,
                           permission: str = APP_READ,
                           keep: Callable[[Any], bool] = lambda _: True) -> CmdletResult:
        """One collection per resource service principal (``path`` holds ``{id}``), merged."""
        if resources.body is None:
            return CmdletResult(key, f"Microsoft Graph GET /v1.0/{path}", State.MISSING,
                                reason=f"needs the resource service principals, which are "
                                       f"unavailable: {resources.reason}")
        ids = [sp["id"] for sp in json.loads(resources.body)["value"]
               if isinstance(sp, dict) and isinstance(sp.get("id"), str)]
        parts = [await self.list(key, path.format(id=quote(i)), permission=permission) for i in ids]
        source = f"Microsoft Graph GET /v1.0/{path} for each resource"
        failed = next((p for p in parts if not p.state.usable), None)
        if failed is not None:
            return CmdletResult(key, source, failed.state, reason=failed.reason,
                                requests=sum(p.requests for p in parts))
        values = [v for p in parts for v in json.loads(p.body or b"{}").get("value", []) if keep(v)]
        reasons = [p.reason for p in parts if p.state is State.PARTIAL and p.reason]
        if resources.state is State.PARTIAL:
            reasons.append(f"only the resources found were read ({resources.reason})")
        return _result(key, source, values, None, sum(p.pages for p in parts),
                       sum(p.requests for p in parts), "; ".join(reasons) or None, None)

    async def collect(self, *, progress: Progress | None = None) -> list[CmdletResult]:
        """Every Graph evidence item, in catalogue order."""
        progress = progress or Progress()

        async def step(key: str, job: Any) -> CmdletResult:
            progress.started(CmdletCall(key, "Microsoft Graph"))
            found: CmdletResult = await job
            progress.finished(found)
            return found

        ids = f"'{EXCHANGE_ONLINE}','{MICROSOFT_GRAPH}'"
        resources = await step(RESOURCES, self.list(
            RESOURCES, f"servicePrincipals?$filter=appId in ({ids})&$select=id,appId,displayName,appRoles"))
        found = {RESOURCES: resources}
        found[SERVICE_PRINCIPALS], found[APPLICATIONS], found[ASSIGNMENTS], found[DELEGATED] = (
            await asyncio.gather(
                step(SERVICE_PRINCIPALS, self.list(SERVICE_PRINCIPALS,
                                                   f"servicePrincipals?$select={SP_SELECT}&$top=999")),
                step(APPLICATIONS, self.list(APPLICATIONS, f"applications?$select={APP_SELECT}&$top=999")),
                step(ASSIGNMENTS, self.per_resource(ASSIGNMENTS, resources,
                                                    "servicePrincipals/{id}/appRoleAssignedTo?$top=999")),
                step(DELEGATED, self.per_resource(
                    DELEGATED, resources, "oauth2PermissionGrants?$filter=resourceId eq '{id}'",
                    permission=GRANT_READ, keep=_ews_delegated)),
            ))
        return [found[key] for key in (SERVICE_PRINCIPALS, APPLICATIONS, RESOURCES, ASSIGNMENTS, DELEGATED)]


def _ews_delegated(grant: Any) -> bool:
    scope = grant.get("scope") if isinstance(grant, Mapping) else None
    return isinstance(scope, str) and EWS_DELEGATED.lower() in scope.lower().split()


def graph_plan() -> Sequence[str]:
    """The evidence keys Graph collection writes (catalogue order)."""
    return (SERVICE_PRINCIPALS, APPLICATIONS, RESOURCES, ASSIGNMENTS, DELEGATED)
