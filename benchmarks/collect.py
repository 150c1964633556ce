"""Time a full live collection against the local fake admin API: ours against one call at a time.

    python benchmarks/collect.py [--latency 0.1] [--rules 300] [--connectors 50]
                                 [--mailboxes 2000] [--inbox-rules 20000] [--item-latency 0]

The issue's tenant by default: 300 transport rules, 50 connectors, 2,000 mailboxes with 20,000
inbox rules between them, 100 ms added to every HTTP request to the admin API. The fake
(``tests/fakeexo.py``: token endpoint, ``InvokeCommand`` and ``$batch`` on 127.0.0.1) runs in a
child process, so the memory measured is the collector's alone. Two runs of the whole catalogue
(client secret sign-in included):

- ours: ``ExoClient.collect()`` with its defaults (3 HTTP requests in flight, ``$batch`` of
  ``BATCH_SIZE`` cmdlet calls; Get-InboxRule runs once per mailbox);
- sequential: the same cmdlet calls one after another, one request each, no batching (what a
  PowerShell session does).

Prints both wall times, the ratio, and the peak resident memory of the process after our run
(``ru_maxrss``, taken before the sequential run). ``--item-latency`` adds time per item of a
batch, for a service that runs a batch's cmdlets one by one. No network beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import multiprocessing
import resource
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from auditor.evidence import State  # noqa: E402
from auditor.exo_rest import BATCH_SIZE, ExoClient, RetryPolicy  # noqa: E402
from auditor.oauth import ClientSecretCredential  # noqa: E402
from tests.fakeexo import CLIENT_ID, TENANT_ID, FakeExo, demo_data  # noqa: E402

SECRET = "benchmark-secret"  # noqa: S105 (the fake server's, not a real one)
GOAL = 8.0  # times faster than sequential
MEMORY_GOAL_MB = 500


def _copies(template: list[dict[str, Any]], count: int, rename: str) -> list[dict[str, Any]]:
    """``count`` objects cycling through ``template``, each with its own Name, Identity and Guid."""
    objects = []
    for index in range(count):
        item = copy.deepcopy(template[index % len(template)])
        name = f"{item.get('Name', rename)} {index:05d}"
        item.update({"Name": name, "Identity": name, "Guid": f"{index:08d}-1111-4000-8000-000000000000"})
        objects.append(item)
    return objects


def tenant_data(rules: int, connectors: int, mailboxes: int, inbox_rules: int) -> dict[str, Any]:
    """The demo tenant grown to the given size: transport rules, connectors (half inbound, half
    outbound), mailboxes, and inbox rules spread evenly over the mailboxes."""
    data = demo_data()
    data.setdefault("Get-TenantAllowBlockListSpoofItems", [])  # every cmdlet answers
    data["Get-TransportRule"] = _copies(data["Get-TransportRule"], rules, "Rule")
    data["Get-InboundConnector"] = _copies(data["Get-InboundConnector"], connectors - connectors // 2,
                                           "Inbound")
    data["Get-OutboundConnector"] = _copies(data["Get-OutboundConnector"], connectors // 2, "Outbound")
    templates = [rule for owner in data["Get-InboxRule"].values() for rule in owner]
    boxes, by_owner = [], {}
    for index in range(mailboxes):
        mailbox = copy.deepcopy(data["Get-Mailbox"][index % len(data["Get-Mailbox"])])
        owner = f"{index:08d}-0000-4000-8000-000000000000"
        mailbox.update({"ExternalDirectoryObjectId": owner,
                        "UserPrincipalName": f"user{index:05d}@contoso.com",
                        "PrimarySmtpAddress": f"user{index:05d}@contoso.com"})
        boxes.append(mailbox)
        by_owner[owner] = []
    owners = list(by_owner)
    for index in range(inbox_rules if owners else 0):
        owner = owners[index % len(owners)]
        rule = dict(templates[index % len(templates)], MailboxOwnerId=owner)
        rule["Name"] = f"{rule['Name']} {index:05d}"
        rule["Identity"] = f"{owner}\\{index}"
        by_owner[owner].append(rule)
    data["Get-Mailbox"], data["Get-InboxRule"] = boxes, by_owner
    return data


def serve(channel: Connection, args: argparse.Namespace) -> None:
    """The child process: build the tenant, serve it until told to stop."""
    data = tenant_data(args.rules, args.connectors, args.mailboxes, args.inbox_rules)
    with FakeExo(secret=SECRET, data=data, latency=args.latency, item_latency=args.item_latency,
                 page_size=args.page_size) as fake:
        channel.send(fake.url)
        channel.recv()
        channel.send(fake.max_in_flight)


async def one_run(url: str, *, concurrency: int, batch_size: int) -> tuple[float, int, int]:
    """(seconds, HTTP requests to the admin API, inbox rules read) of one full collection."""
    credential = ClientSecretCredential(TENANT_ID, CLIENT_ID, SECRET, authority=url)
    async with httpx.AsyncClient() as http:
        client = ExoClient(TENANT_ID, credential, http, base_url=url, policy=RetryPolicy())
        start = time.perf_counter()
        results = await client.collect(concurrency=concurrency, batch_size=batch_size)
        elapsed = time.perf_counter() - start
    failed = [(r.key, r.reason) for r in results if r.state is not State.OK]
    if failed or client.batch_refused:
        raise SystemExit(f"collection incomplete: {failed or client.batch_refused}")
    inbox = next(r for r in results if r.key == "Get-InboxRule")
    return elapsed, client.requests, inbox.objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every HTTP request")
    parser.add_argument("--item-latency", type=float, default=0.0,
                        help="seconds added to every item of a $batch")
    parser.add_argument("--rules", type=int, default=300, help="transport rules")
    parser.add_argument("--connectors", type=int, default=50, help="inbound + outbound connectors")
    parser.add_argument("--mailboxes", type=int, default=2000)
    parser.add_argument("--inbox-rules", type=int, default=20000)
    parser.add_argument("--page-size", type=int, default=1000, help="objects per page (the service's)")
    args = parser.parse_args()
    ours, child = multiprocessing.get_context("fork").Pipe()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(child, args), daemon=True)
    server.start()
    try:
        url = ours.recv()
        print(f"fake admin API at {url}: {args.rules} transport rules, {args.connectors} connectors, "
              f"{args.mailboxes} mailboxes, {args.inbox_rules} inbox rules; "
              f"{args.latency * 1000:.0f} ms per request, page size {args.page_size}")
        fast, fast_requests, read = asyncio.run(one_run(url, concurrency=3, batch_size=BATCH_SIZE))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"ours (3 in flight, $batch of {BATCH_SIZE}): {fast:7.2f} s  {fast_requests} HTTP requests  "
              f"{read} inbox rules  peak memory {peak_mb:.0f} MB")
        slow, slow_requests, _ = asyncio.run(one_run(url, concurrency=1, batch_size=1))
        print(f"sequential (one call at a time):     {slow:7.2f} s  {slow_requests} HTTP requests")
        ours.send("stop")
        print(f"most requests in flight at the fake: {ours.recv()}")
    finally:
        server.join(timeout=5)
        if server.is_alive():
            server.terminate()
    ratio = slow / fast
    print(f"ours is {ratio:.1f}x faster than sequential (goal: {GOAL:g}x) "
          f"{'ok' if ratio >= GOAL else 'NOT MET'}; peak memory {peak_mb:.0f} MB "
          f"(goal: under {MEMORY_GOAL_MB} MB) {'ok' if peak_mb < MEMORY_GOAL_MB else 'NOT MET'}")


if __name__ == "__main__":
    main()
