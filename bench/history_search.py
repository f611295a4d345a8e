"""Benchmark of the job history index (jobq.history) at a million finished jobs.

usage: python -m bench.history_search [--jobs N | --quick] [--json PATH] [--server PATH]

1. Loads N finished jobs (default 1,000,000; ``--quick`` 100,000) into a
   private server, written directly in the engine's layout with pipelined
   HSET/ZADD: two queues, 20 job names, about 150 bytes of data each, a
   group on one job in five, one job in ten failed with a reason and an
   error list, finished times spread over 30 days.
2. Builds the index from nothing into a file database: time, jobs/s, size,
   peak RSS of this process.
3. Adds 1,000 more finished jobs and times the incremental refresh.
4. Times ``search()`` (SQLite query, count, live walk of the empty unfinished
   states, and the verify round trip to Redis) for each kind of query:
   p50/p99 over ``--repeat`` queries with varied values.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobq.connection import ConnectionSettings, create_client
from jobq.history import JobHistoryIndex, SearchQuery
from jobq.keys import QueueKeys
from jobq.server import RedisServerProcess

from ._common import percentile, run

QUEUES = ("orders", "mail")
NAMES = tuple(f"task-{i:02d}" for i in range(20))
WORDS = (
    "express", "standard", "refund", "invoice", "reminder", "welcome", "export", "import",
    "report", "payroll", "budget", "forecast", "ledger", "audit", "archive", "sync", "backup",
    "digest", "summary", "monthly",
)  # fmt: skip
CUSTOMERS = 50_000
GROUPS = 100
SPAN_MS = 30 * 86_400_000
START_MS = 1_780_000_000_000
_LOAD_BATCH = 5_000


def _job(i: int, finished: int) -> tuple[dict[str, Any], bool]:
    """Hash fields of job ``i`` (plus whether it failed), deterministic in ``i``."""
    rnd = random.Random(i)
    failed = i % 10 == 7
    data = {
        "customer": f"cust-{rnd.randrange(CUSTOMERS)}",
        "order": i,
        "kind": rnd.choice(WORDS),
        "note": " ".join(rnd.choice(WORDS) for _ in range(4)),
        "amount": {"$decimal": f"{rnd.randrange(100_000) / 100:.2f}"},
    }
    fields: dict[str, Any] = {
        "n": NAMES[i % len(NAMES)],
        "d": json.dumps(data, separators=(",", ":")),
        "t": finished - 1_500,
        "pt": finished - 500,
        "ft": finished,
        "a": 1,
    }
    if i % 5 == 0:
        group = f"tenant-{rnd.randrange(GROUPS)}"
        fields["g"] = group
        fields["o"] = json.dumps({"group": group})
    if failed:
        reason = f"card declined for {data['customer']} (code {rnd.randrange(1000)})"
        fields["fr"] = reason
        fields["er"] = json.dumps(
            [
                {
                    "attempt": 1,
                    "reason": reason,
                    "type": "PaymentError",
                    "stack": "Traceback...",
                    "at": 0,
                }
            ]
        )
    else:
        fields["rv"] = '"ok"'
    return fields, failed


async def load(client: Any, first: int, count: int, total: int) -> float:
    """Write jobs first..first+count-1 as finished; returns seconds taken."""
    t0 = time.perf_counter()
    for lo in range(first, first + count, _LOAD_BATCH):
        hi = min(first + count, lo + _LOAD_BATCH)
        zsets: dict[str, dict[str, int]] = {}
        async with client.pipeline(transaction=False) as pipe:
            for i in range(lo, hi):
                finished = START_MS + i * SPAN_MS // total
                fields, failed = _job(i, finished)
                keys = QueueKeys("jobq", QUEUES[i % len(QUEUES)])
                job_id = str(i)
                pipe.hset(keys.job(job_id), mapping=fields)
                zkey = keys.failed if failed else keys.completed
                zsets.setdefault(zkey, {})[job_id] = finished
            for zkey, members in zsets.items():
                pipe.zadd(zkey, members)
            await pipe.execute()
    return time.perf_counter() - t0


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 2**20


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _timed(index: JobHistoryIndex, queries: list[SearchQuery]) -> dict[str, Any]:
    times: list[float] = []
    hits = 0
    for q in queries:
        t0 = time.perf_counter()
        result = await index.search(q)
        times.append((time.perf_counter() - t0) * 1000)
        hits += len(result.hits)
    times.sort()
    return {
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "mean_hits": hits / len(queries),
    }


def _query_kinds(n: int, rnd: random.Random) -> dict[str, Callable[[], SearchQuery]]:
    def window() -> SearchQuery:
        since = START_MS + rnd.randrange(SPAN_MS - 3_600_000)
        return SearchQuery(since=since, until=since + 3_600_000)

    def combined() -> SearchQuery:
        since = START_MS + rnd.randrange(SPAN_MS // 2)
        return SearchQuery(
            queues=[rnd.choice(QUEUES)],
            name=rnd.choice(NAMES),
            text=rnd.choice(WORDS),
            error="declined",
            states=["failed"],
            since=since,
        )

    return {
        "id (exact)": lambda: SearchQuery(id=str(rnd.randrange(n))),
        "id (prefix)": lambda: SearchQuery(id=f"{rnd.randrange(1, 1000)}*"),
        "name": lambda: SearchQuery(name=rnd.choice(NAMES)),
        "text, rare (customer)": lambda: SearchQuery(text=f"cust-{rnd.randrange(CUSTOMERS)}"),
        "text, common word": lambda: SearchQuery(text=rnd.choice(WORDS)),
        "text, prefix": lambda: SearchQuery(text=rnd.choice(WORDS)[:3] + "*"),
        "error text, common": lambda: SearchQuery(error="declined"),
        "error text, rare": lambda: SearchQuery(error=f"declined code {rnd.randrange(1000)}"),
        "group": lambda: SearchQuery(group=f"tenant-{rnd.randrange(GROUPS)}"),
        "time range (1 h)": window,
        "combined": combined,
        "no filter, page 1": lambda: SearchQuery(),
    }


async def bench(url: str, n: int, repeat: int, db_dir: Path) -> dict[str, Any]:
    """Run every measurement; returns the figures."""
    client: Any = create_client(ConnectionSettings.from_url(url))
    out: dict[str, Any] = {"jobs": n, "repeat": repeat}
    try:
        out["load_s"] = await load(client, 0, n, n)
        out["server_used_memory_mb"] = int((await client.info("memory"))["used_memory"]) / 2**20
        db = db_dir / "history.db"
        async with JobHistoryIndex(list(QUEUES), connection=client, path=db) as index:
            rss0 = _rss_mb()
            t0 = time.perf_counter()
            built = await index.refresh()
            out["build_s"] = time.perf_counter() - t0
            out["build_jobs"] = built
            out["build_rate"] = built / out["build_s"]
            out["rss_peak_mb_before_build"] = rss0
            out["rss_peak_mb"] = _rss_mb()
            out["db_mb"] = await asyncio.to_thread(_size_mb, db_dir)

            t0 = time.perf_counter()
            await index.refresh()
            out["empty_refresh_ms"] = (time.perf_counter() - t0) * 1000
            await load(client, n, 1_000, n)  # later finished times: after the cursor
            t0 = time.perf_counter()
            out["incremental_jobs"] = await index.refresh()
            out["incremental_ms"] = (time.perf_counter() - t0) * 1000

            rnd = random.Random(42)
            queries: dict[str, Any] = {}
            for kind, make in _query_kinds(n, rnd).items():
                await index.search(make())  # warm
                queries[kind] = await _timed(index, [make() for _ in range(repeat)])
            out["queries"] = queries
            stats = await index.stats()
            out["indexed_total"] = stats.total
    finally:
        await client.aclose()
    return out


def format_report(r: dict[str, Any]) -> str:
    """The figures as a plain table."""
    lines = [
        f"jobq.history benchmark: {r['jobs']:,} finished jobs in {len(QUEUES)} queues",
        f"  load into server        {r['load_s']:8.1f} s   "
        f"(server used_memory {r['server_used_memory_mb']:,.0f} MB)",
        f"  full index build        {r['build_s']:8.1f} s   {r['build_rate']:,.0f} jobs/s, "
        f"{r['build_jobs']:,} jobs, db {r['db_mb']:,.0f} MB, "
        f"peak RSS {r['rss_peak_mb']:,.0f} MB (before build {r['rss_peak_mb_before_build']:,.0f})",
        f"  refresh, nothing new    {r['empty_refresh_ms']:8.1f} ms",
        f"  refresh, 1,000 new      {r['incremental_ms']:8.1f} ms   "
        f"({r['incremental_jobs']:,} indexed)",
        "",
        f"  search() latency over {r['repeat']} queries each (ms)",
        f"  {'query':<24}{'p50':>9}{'p99':>9}{'hits/query':>12}",
    ]
    for kind, q in r["queries"].items():
        lines.append(f"  {kind:<24}{q['p50_ms']:9.2f}{q['p99_ms']:9.2f}{q['mean_hits']:12.1f}")
    return "\n".join(lines)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m bench.history_search``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.history_search", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=None, help="finished jobs (1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 jobs")
    parser.add_argument("--repeat", type=int, default=200, help="queries per kind (200)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--server", metavar="PATH", help="valkey-server/redis-server binary")
    args = parser.parse_args(argv)
    n = args.jobs or (100_000 if args.quick else 1_000_000)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    server = RedisServerProcess(args.server)
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="jobq-history-bench-") as tmp:
            results = run(bench(server.url, n, args.repeat, Path(tmp)))
    finally:
        server.stop()
    results["cpu_count"] = os.cpu_count()
    print(format_report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
