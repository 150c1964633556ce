"""A fake Exchange Online EWS endpoint (SOAP over HTTP/1.1) on 127.0.0.1.

It answers the operations exchangelib sends for the mailbox collector, shaped like Exchange
Online's answers (namespaces, ServerVersionInfo header, ResponseMessages, SOAP faults):

- ``GetInboxRules``: the rules of the impersonated mailbox;
- ``GetFolder``: the distinguished ``root`` and ``inbox`` folders, and folders by id (the
  target of a rule's MoveToFolder);
- ``FindItem``: item ids of the inbox, newest first, honouring ``MaxEntriesReturned``;
- ``GetItem``: message id, date received, sender and InternetMessageHeaders.

The bearer token is checked with ``accept`` and the impersonated mailbox must exist
(``ErrorNonExistentMailbox``) and may be refused (``denied``: ErrorImpersonateUserDenied).
Faults are queued per operation and consumed one per request: ``busy`` (ErrorServerBusy with
BackOffMilliseconds), ``status`` (a bare HTTP status), ``sleep`` (answer late: a timeout),
``truncate`` (XML cut in the middle), ``expire`` (every token accepted so far stops working).

``blocked`` answers every authenticated request as Exchange Online does once EWS is off for the
tenant or the app (EwsEnabled False, the app not in EwsAllowedAppIDs, or after EWS's switch-off):
``"forbidden"`` an HTTP 403 without a SOAP body (a policy block), ``"access-denied"`` the SOAP
fault ErrorAccessDenied.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from tests.loopback import LoopbackServer

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
MNS = "http://schemas.microsoft.com/exchange/services/2006/messages"
TNS = "http://schemas.microsoft.com/exchange/services/2006/types"
ENS = "http://schemas.microsoft.com/exchange/services/2006/errors"
HEADER = (f'<s:Header><h:ServerVersionInfo MajorVersion="15" MinorVersion="20" MajorBuildNumber="8000" '
          f'MinorBuildNumber="10" Version="V2018_01_08" xmlns:h="{TNS}" xmlns="{TNS}" '
          'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
          'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/></s:Header>')


@dataclass(frozen=True)
class Message:
    """One message in a fake inbox: what GetItem returns for it."""

    item_id: str
    internet_message_id: str
    received: str  # ISO, UTC
    sender: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Rule:
    """One inbox rule as GetInboxRules returns it (XML of Conditions and Actions)."""

    rule_id: str
    name: str
    priority: int
    enabled: bool = True
    conditions: str = ""
    actions: str = ""


@dataclass
class MailboxData:
    rules: list[Rule] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)  # folder id -> display name


@dataclass(frozen=True)
class Fault:
    kind: str  # busy | status | sleep | truncate | expire | forbidden
    status: int = 500
    seconds: float = 0.0
    back_off_ms: int = 10


@dataclass(frozen=True)
class Recorded:
    operation: str
    mailbox: str
    token: str
    body: bytes


def address(name: str, email: str) -> str:
    return (f"<t:Address><t:Name>{escape(name)}</t:Name><t:EmailAddress>{escape(email)}</t:EmailAddress>"
            "<t:RoutingType>SMTP</t:RoutingType><t:MailboxType>OneOff</t:MailboxType></t:Address>")


def strings(tag: str, values: list[str]) -> str:
    return f"<t:{tag}>" + "".join(f"<t:String>{escape(v)}</t:String>" for v in values) + f"</t:{tag}>"


class FakeEws(LoopbackServer):
    """``with FakeEws(mailboxes, accept=...) as ews:`` then point the collector at ``ews.url``."""

    def __init__(self, mailboxes: dict[str, MailboxData], *,
                 accept: Callable[[str], bool] | None = None) -> None:
        self.mailboxes = mailboxes
        self.accept = accept or (lambda token: token.startswith("ews-token"))
        self.denied: set[str] = set()  # mailboxes whose impersonation is refused
        self.blocked: str | None = None  # EWS off for the tenant or app: forbidden | access-denied
        self.faults: dict[str, list[Fault]] = {}  # per operation, or "operation:mailbox"
        self.requests: list[Recorded] = []
        self.revoked: set[str] = set()
        self._lock = threading.Lock()
        self._serve(self._handler())

    @property
    def url(self) -> str:
        return f"{self.base_url}/EWS/Exchange.asmx"

    def operations(self, name: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if name is None or r.operation == name]

    # --- answers -------------------------------------------------------------------------

    @staticmethod
    def envelope(body: str) -> str:
        return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}">{HEADER}'
                f'<s:Body>{body}</s:Body></s:Envelope>')

    def fault(self, code: str, text: str, extra: str = "") -> str:
        return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}"><s:Body><s:Fault>'
                f'<faultcode xmlns:a="{TNS}">a:{code}</faultcode>'
                f'<faultstring xml:lang="en-US">{escape(text)}</faultstring><detail>'
                f'<e:ResponseCode xmlns:e="{ENS}">{code}</e:ResponseCode>'
                f'<e:Message xmlns:e="{ENS}">{escape(text)}</e:Message>{extra}'
                '</detail></s:Fault></s:Body></s:Envelope>')

    def busy(self, back_off_ms: int) -> str:
        return self.fault("ErrorServerBusy",
                          "The server cannot service this request right now. Try again later.",
                          f'<t:MessageXml xmlns:t="{TNS}"><t:Value Name="BackOffMilliseconds">{back_off_ms}'
                          '</t:Value></t:MessageXml>')

    def _response(self, operation: str, inner: str, container: str | None) -> str:
        body = (f'<m:{operation}Response xmlns:m="{MNS}" xmlns:t="{TNS}"><m:ResponseMessages>'
                f'<m:{operation}ResponseMessage ResponseClass="Success">'
                "<m:ResponseCode>NoError</m:ResponseCode>"
                + (f"<m:{container}>{inner}</m:{container}>" if container else inner)
                + f"</m:{operation}ResponseMessage></m:ResponseMessages></m:{operation}Response>")
        return self.envelope(body)

    def get_inbox_rules(self, data: MailboxData) -> str:
        rules = "".join(
            f"<t:Rule><t:RuleId>{escape(r.rule_id)}</t:RuleId><t:DisplayName>{escape(r.name)}</t:DisplayName>"
            f"<t:Priority>{r.priority}</t:Priority><t:IsEnabled>{str(r.enabled).lower()}</t:IsEnabled>"
            f"<t:IsNotSupported>false</t:IsNotSupported><t:IsInError>false</t:IsInError>"
            f"<t:Conditions>{r.conditions}</t:Conditions><t:Exceptions/><t:Actions>{r.actions}</t:Actions>"
            "</t:Rule>" for r in data.rules)
        body = (f'<m:GetInboxRulesResponse ResponseClass="Success" xmlns:m="{MNS}" xmlns:t="{TNS}">'
                "<m:ResponseCode>NoError</m:ResponseCode><m:OutlookRuleBlobExists>true</m:OutlookRuleBlobExists>"
                + (f"<m:InboxRules>{rules}</m:InboxRules>" if rules else "")
                + "</m:GetInboxRulesResponse>")
        return self.envelope(body)

    @staticmethod
    def _folder(folder_id: str, name: str, total: int = 0) -> str:
        return (f'<t:Folder><t:FolderId Id={quoteattr(folder_id)} ChangeKey="AQAAABYAAAA="/>'
                '<t:ParentFolderId Id="root-id" ChangeKey="AQAAAA=="/>'
                "<t:FolderClass>IPF.Note</t:FolderClass>"
                f"<t:DisplayName>{escape(name)}</t:DisplayName><t:TotalCount>{total}</t:TotalCount>"
                "<t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>0</t:UnreadCount></t:Folder>")

    def get_folder(self, request: str, data: MailboxData) -> str:
        distinguished = re.search(r'DistinguishedFolderId Id="(\w+)"', request)
        if distinguished:
            name = distinguished.group(1)
            shown = {"root": "Top of Information Store", "msgfolderroot": "Top of Information Store",
                     "inbox": "Inbox"}.get(name, name)
            folder = self._folder(f"{name}-id", shown, len(data.messages) if name == "inbox" else 0)
            return self._response("GetFolder", folder, "Folders")
        wanted = re.search(r'<t:FolderId Id="([^"]+)"', request)
        folder_id = wanted.group(1) if wanted else ""
        if folder_id not in data.folders:
            return self.envelope(
                f'<m:GetFolderResponse xmlns:m="{MNS}" xmlns:t="{TNS}"><m:ResponseMessages>'
                '<m:GetFolderResponseMessage ResponseClass="Error"><m:MessageText>The specified folder '
                "could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound"
                "</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:Folders/>"
                "</m:GetFolderResponseMessage></m:ResponseMessages></m:GetFolderResponse>")
        return self._response("GetFolder", self._folder(folder_id, data.folders[folder_id]), "Folders")

    def find_item(self, request: str, data: MailboxData) -> str:
        limit = re.search(r'MaxEntriesReturned="(\d+)"', request)
        offset = re.search(r'Offset="(\d+)"', request)
        start = int(offset.group(1)) if offset else 0
        ordered = sorted(data.messages, key=lambda m: m.received, reverse=True)
        page = ordered[start: start + int(limit.group(1))] if limit else ordered[start:]
        items = "".join(f'<t:Message><t:ItemId Id={quoteattr(m.item_id)} ChangeKey="CQAAABYAAAA="/>'
                        "</t:Message>" for m in page)
        last = str(start + len(page) >= len(ordered)).lower()
        root = (f'<m:RootFolder IndexedPagingOffset="{start + len(page)}" TotalItemsInView="{len(ordered)}" '
                f'IncludesLastItemInRange="{last}"><t:Items>{items}</t:Items></m:RootFolder>')
        return self._response("FindItem", root, None)

    def get_item(self, request: str, data: MailboxData) -> str:
        by_id = {m.item_id: m for m in data.messages}
        parts = []
        for item_id in re.findall(r'<t:ItemId Id="([^"]+)"', request):
            m = by_id[item_id]
            headers = "".join(f"<t:InternetMessageHeader HeaderName={quoteattr(n)}>{escape(v)}"
                              "</t:InternetMessageHeader>" for n, v in m.headers)
            parts.append(
                f'<m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
                f'<m:Items><t:Message><t:ItemId Id={quoteattr(m.item_id)} ChangeKey="CQAAABYAAAA="/>'
                f"<t:DateTimeReceived>{m.received}</t:DateTimeReceived>"
                f"<t:InternetMessageHeaders>{headers}</t:InternetMessageHeaders>"
                f"<t:Sender><t:Mailbox><t:Name>{escape(m.sender)}</t:Name><t:EmailAddress>{escape(m.sender)}"
                "</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>OneOff</t:MailboxType>"
                "</t:Mailbox></t:Sender>"
                f"<t:InternetMessageId>{escape(m.internet_message_id)}</t:InternetMessageId>"
                "</t:Message></m:Items></m:GetItemResponseMessage>")
        return self.envelope(f'<m:GetItemResponse xmlns:m="{MNS}" xmlns:t="{TNS}"><m:ResponseMessages>'
                             + "".join(parts) + "</m:ResponseMessages></m:GetItemResponse>")

    # --- dispatch ------------------------------------------------------------------------

    def _next_fault(self, operation: str, mailbox: str) -> Fault | None:
        with self._lock:
            for key in (f"{operation}:{mailbox}", operation):
                queue = self.faults.get(key)
                if queue:
                    return queue.pop(0)
        return None

    def answer(self, request: bytes, token: str) -> tuple[int, str, dict[str, str]]:
        text = request.decode("utf-8")
        operation = re.search(r"<s:Body><m:(\w+)", text)
        impersonated = re.search(r"<t:PrimarySmtpAddress>([^<]+)</t:PrimarySmtpAddress>", text)
        name = operation.group(1) if operation else "?"
        mailbox = impersonated.group(1).lower() if impersonated else ""
        with self._lock:
            self.requests.append(Recorded(name, mailbox, token, request))
        fault = self._next_fault(name, mailbox)
        if fault is not None:
            if fault.kind == "expire":
                with self._lock:
                    self.revoked.add(token)
            elif fault.kind == "busy":
                return 500, self.busy(fault.back_off_ms), {}
            elif fault.kind == "status":
                return fault.status, "<html><body>Service Unavailable</body></html>", {}
            elif fault.kind == "forbidden":
                return 403, "", {}
            elif fault.kind == "sleep":
                time.sleep(fault.seconds)
        if token in self.revoked or not self.accept(token):
            return 401, "", {"WWW-Authenticate": 'Bearer error="invalid_token", error_description='
                                                  '"The access token has expired."'}
        if self.blocked == "forbidden":
            return 403, "", {}
        if self.blocked == "access-denied":
            return 500, self.fault("ErrorAccessDenied",
                                   "Access is denied. Check credentials and try again."), {}
        if mailbox not in self.mailboxes:
            return 500, self.fault("ErrorNonExistentMailbox",
                                   f"The SMTP address has no mailbox associated with it: {mailbox}"), {}
        if mailbox in self.denied:
            return 500, self.fault("ErrorImpersonateUserDenied", "The account does not have "
                                   "permission to impersonate the requested user."), {}
        data = self.mailboxes[mailbox]
        handlers: dict[str, Callable[[], str]] = {
            "GetInboxRules": lambda: self.get_inbox_rules(data),
            "GetFolder": lambda: self.get_folder(text, data),
            "FindItem": lambda: self.find_item(text, data),
            "GetItem": lambda: self.get_item(text, data),
        }
        if name not in handlers:
            return 500, self.fault("ErrorInvalidOperation", f"{name} is not served by this fake"), {}
        answer = handlers[name]()
        if fault is not None and fault.kind == "truncate":
            answer = answer[: len(answer) // 2]
        return 200, answer, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = self.rfile.read(length)
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                try:
                    status, body, headers = fake.answer(request, token)
                except Exception as exc:  # a defect in the fake: make it visible
                    status, body, headers = 599, f"fake EWS crashed: {exc!r}", {}
                data = body.encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml; charset=utf-8")
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
