"""Time a full live collection against the local fake admin API: concurrency 1 against 3.

    python benchmarks/collect.py [--latency 0.05] [--mailboxes 100] [--page-size 100] [--repeat 3]

Starts ``tests/fakeexo.py`` (token endpoint and ``InvokeCommand`` on 127.0.0.1) serving the
demo tenant with ``--mailboxes`` mailboxes (each with its inbox rules, one Get-InboxRule call per
mailbox), adds ``--latency`` seconds to every admin API answer to stand in for the service's
response time, and runs ``ExoClient.collect`` over the whole catalogue (client secret sign-in
included) at concurrency 1 and 3. Prints the median wall time, requests and cmdlet calls per
second of each, and the speed-up. No network beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from auditor.evidence import State  # noqa: E402
from auditor.exo_rest import ExoClient, RetryPolicy  # noqa: E402
from auditor.oauth import ClientSecretCredential  # noqa: E402
from tests.fakeexo import CLIENT_ID, TENANT_ID, FakeExo, demo_data  # noqa: E402

SECRET = "benchmark-secret"  # noqa: S105 (the fake server's, not a real one)


def tenant_data(mailboxes: int) -> dict[str, object]:
    """The demo tenant, its mailboxes (and their inbox rules) repeated up to ``mailboxes``."""
    data = demo_data()
    data.setdefault("Get-TenantAllowBlockListSpoofItems", [])  # every cmdlet answers
    template = data["Get-Mailbox"]
    rules = data["Get-InboxRule"]
    boxes, by_owner = [], {}
    for index in range(mailboxes):
        mailbox = copy.deepcopy(template[index % len(template)])
        owner = f"{index:08d}-0000-4000-8000-000000000000"
        source = mailbox["ExternalDirectoryObjectId"]
        mailbox["ExternalDirectoryObjectId"] = owner
        boxes.append(mailbox)
        by_owner[owner] = [dict(rule, MailboxOwnerId=owner) for rule in rules.get(source, [])]
    data["Get-Mailbox"], data["Get-InboxRule"] = boxes, by_owner
    return data


async def one_run(fake: FakeExo, concurrency: int) -> tuple[float, int, int]:
    """(seconds, admin API requests, cmdlet calls) of one full collection."""
    credential = ClientSecretCredential(TENANT_ID, CLIENT_ID, SECRET, authority=fake.url)
    async with httpx.AsyncClient() as http:
        client = ExoClient(TENANT_ID, credential, http, base_url=fake.url, policy=RetryPolicy())
        start = time.perf_counter()
        results = await client.collect(concurrency=concurrency)
        elapsed = time.perf_counter() - start
    failed = [r.key for r in results if r.state is not State.OK]
    if failed:
        raise SystemExit(f"collection incomplete: {failed}")
    calls = len(results) - 1 + len(fake.data["Get-InboxRule"])  # Get-InboxRule: one per mailbox
    return elapsed, client.requests, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every answer")
    parser.add_argument("--mailboxes", type=int, default=100)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    medians: dict[int, float] = {}
    with FakeExo(secret=SECRET, data=tenant_data(args.mailboxes), page_size=args.page_size,
                 latency=args.latency) as fake:
        print(f"fake admin API at {fake.url}: {args.mailboxes} mailboxes, page size "
              f"{args.page_size}, {args.latency * 1000:.0f} ms per answer")
        for concurrency in (1, 3):
            runs = [asyncio.run(one_run(fake, concurrency)) for _ in range(args.repeat)]
            seconds = statistics.median(r[0] for r in runs)
            _, requests, calls = runs[0]
            medians[concurrency] = seconds
            print(f"concurrency {concurrency}: {seconds:6.2f} s  {requests} requests  "
                  f"{calls / seconds:7.1f} cmdlets/s  {requests / seconds:7.1f} requests/s  "
                  f"(most in flight: {fake.max_in_flight})")
            fake.max_in_flight = 0
    print(f"speed-up with 3 in flight: {medians[1] / medians[3]:.2f}x")


if __name__ == "__main__":
    main()
