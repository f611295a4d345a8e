"""The workloads W1-W7 of ``bench.compare``, each run against one adapter.

Every workload starts from a FLUSHALL-ed private server, drives the adapter
through the roles of ``bench/peers/_proto.py`` and returns plain JSON-able
figures. Every process it starts is killed before it returns, error or not.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from ._common import percentile
from ._compare_env import Adapter, AdapterError, Proc, run_role

#: Workload ids in run order.
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")
_READY_TIMEOUT = 90.0  # imports + connections on a busy 2-core machine


@dataclass(frozen=True, slots=True)
class Sizes:
    """Job counts of every workload."""

    mode: str
    enqueue: int  # W1
    drain: int  # W2
    drain_concurrency: int  # W2, W3, W6, W7 (an adapter may use less and says so)
    latency_jobs: int  # W3
    latency_rate: float
    sleep_jobs: int  # W4
    sleep_ms: float
    sleep_concurrencies: tuple[int, ...]
    memory_jobs: int  # W5
    scale_processes: tuple[int, ...]  # W6
    scale_jobs: int  # the least N of W6
    scale_seconds: float  # W6 aims at this long for one process
    w7_drain: int
    w7_small: int
    w7_big: int

    @classmethod
    def make(cls, quick: bool, tiny: bool = False) -> Sizes:
        """Full, ``--quick`` or (tests only) ``--tiny`` sizes."""
        common: dict[str, Any] = {
            "drain_concurrency": 50,
            "latency_rate": 200.0,
            "sleep_ms": 10.0,
            "sleep_concurrencies": (10, 100),
            "scale_processes": (1, 2, 4),
            "w7_small": 1_000,
        }
        if tiny:
            common.update(scale_processes=(1, 2), w7_small=100)
            return cls(
                mode="tiny", enqueue=200, drain=300, latency_jobs=60, sleep_jobs=50,
                memory_jobs=1_000, scale_jobs=300, scale_seconds=0.1,
                w7_drain=200, w7_big=2_000, **common,
            )  # fmt: skip
        if quick:
            return cls(
                mode="quick", enqueue=2_000, drain=5_000, latency_jobs=600, sleep_jobs=500,
                memory_jobs=20_000, scale_jobs=2_000, scale_seconds=1.0,
                w7_drain=2_000, w7_big=100_000, **common,
            )  # fmt: skip
        return cls(
            mode="full", enqueue=20_000, drain=20_000, latency_jobs=2_000, sleep_jobs=2_000,
            memory_jobs=100_000, scale_jobs=5_000, scale_seconds=3.0,
            w7_drain=10_000, w7_big=1_000_000, **common,
        )  # fmt: skip


@dataclass(slots=True)
class Ctx:
    """What every workload needs: the server, the child environment, the sizes."""

    url: str
    client: Any  # a sync redis.Redis on the private server
    env: dict[str, str]
    sizes: Sizes
    log: Callable[[str], None]
    #: This library's results so far (W6 sizes itself from W2's rate).
    done: dict[str, Any] = field(default_factory=dict)

    def flush(self) -> None:
        """Empty the private server (FLUSHALL: it is ours alone). SYNC: the server
        defaults to freeing a flushed dataset in a background thread, which would
        take CPU from the next workload (a million jobs take seconds to free)."""
        self.client.execute_command("FLUSHALL", "SYNC")

    def server_cpu(self) -> float:
        """used_cpu_user + used_cpu_sys of the server, seconds."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def used_memory(self) -> int:
        """INFO memory used_memory, bytes."""
        return int(self.client.info("memory")["used_memory"])


def _enqueue_timeout(n: int) -> float:
    return 60.0 + n / 300.0


def _work_timeout(n: int) -> float:
    return 90.0 + n / 100.0


def fill(ctx: Ctx, a: Adapter, queue: str, n: int, delay_s: float = 0.0) -> dict[str, Any]:
    """Pre-load ``n`` jobs (``fill`` role)."""
    opts: dict[str, Any] = {"delay_s": delay_s} if delay_s else {}
    r = run_role(a, "fill", ctx.url, queue, n, ctx.env, _enqueue_timeout(n), **opts)
    if "unsupported" in r:
        raise AdapterError(f"{a.name} fill: unsupported: {r['unsupported']}")
    return r


def _work(
    ctx: Ctx, a: Adapter, queue: str, n: int, concurrency: int, **opts: Any
) -> tuple[dict[str, Any], float]:
    """One ``work`` process: READY, go, RESULT. Returns (result, server CPU s go->result)."""
    with Proc(a, "work", ctx.url, queue, n, ctx.env, concurrency=concurrency, **opts) as p:
        p.wait_ready(_READY_TIMEOUT)
        cpu0 = ctx.server_cpu()
        p.go()
        r = p.work_result(_work_timeout(n))
        cpu1 = ctx.server_cpu()
    _check_done(a, r, n)
    return r, cpu1 - cpu0


def _check_done(a: Adapter, r: dict[str, Any], n: int) -> None:
    if r.get("jobs_here", 0) < n and r.get("reached") is not True:
        raise AdapterError(f"{a.name} work: only {r.get('jobs_here')} of {n} jobs done")


def _rate(n: int, seconds: float) -> float | None:
    return n / seconds if seconds > 0 else None


#: A timed run shorter than this is run twice more and the median run kept:
#: on a shared machine one short run can land in a slow second (W1 and W2 of
#: the fast libraries last well under a second; the slow ones, tens of seconds).
SHORT_RUN_S = 5.0


def _median_run(run: Callable[[], dict[str, Any]], ctx: Ctx) -> dict[str, Any]:
    """``run()``'s result; for a short run (and not ``--tiny``), the run with the
    median ``jobs_per_s`` of three, with every rate in ``runs_jobs_per_s``."""
    first = run()
    if "unsupported" in first or first["seconds"] >= SHORT_RUN_S or ctx.sizes.mode == "tiny":
        return first
    runs = [first, run(), run()]
    runs.sort(key=lambda r: r["jobs_per_s"] or 0.0)
    median = dict(runs[1])
    median["runs_jobs_per_s"] = [r["jobs_per_s"] for r in runs]
    return median


# --- W1 ------------------------------------------------------------------------------------


def w1_enqueue(ctx: Ctx, a: Adapter) -> dict[str, Any]:
    """W1: enqueue N jobs one call at a time, and with the bulk API."""
    n = ctx.sizes.enqueue
    out: dict[str, Any] = {}
    for role, key in (("enqueue-single", "single"), ("enqueue-bulk", "bulk")):

        def once(role: str = role) -> dict[str, Any]:
            ctx.flush()
            cpu0 = ctx.server_cpu()
            r = run_role(a, role, ctx.url, "bench_w1", n, ctx.env, _enqueue_timeout(n))
            cpu1 = ctx.server_cpu()
            if "unsupported" in r:
                return {"unsupported": r["unsupported"]}
            return {
                "jobs": n,
                "seconds": r["seconds"],
                "jobs_per_s": _rate(n, r["seconds"]),
                "server_cpu_us_per_job": (cpu1 - cpu0) / n * 1e6,
                "waiting_keys": ctx.client.dbsize(),
            }

        out[key] = _median_run(once, ctx)
    return out


# --- W2 ------------------------------------------------------------------------------------


def drain(
    ctx: Ctx, a: Adapter, n: int, concurrency: int, queue: str = "bench_w2"
) -> dict[str, Any]:
    """Fill N no-op jobs, then one worker process drains them."""
    ctx.flush()
    fill(ctx, a, queue, n)
    r, server_cpu = _work(ctx, a, queue, n, concurrency)
    return {
        "jobs": n,
        "concurrency_asked": concurrency,
        "concurrency": r.get("concurrency", concurrency),
        "model": r.get("model"),
        "seconds": r["seconds"],
        "jobs_per_s": _rate(n, r["seconds"]),
        "worker_cpu_us_per_job": r["cpu_seconds"] / n * 1e6,
        "server_cpu_us_per_job": server_cpu / n * 1e6,
        "worker_peak_rss_kb": r.get("peak_rss_kb"),
        "left_keys": ctx.client.dbsize(),
    }


def w2_drain(ctx: Ctx, a: Adapter) -> dict[str, Any]:
    """W2: drain at the adapter's concurrency (jobq: also at 1)."""
    s = ctx.sizes
    out = {"main": _median_run(lambda: drain(ctx, a, s.drain, s.drain_concurrency), ctx)}
    if a.kind == "project":
        out["c1"] = drain(ctx, a, s.drain, 1)
    return out


# --- W3 ------------------------------------------------------------------------------------


def w3_latency(ctx: Ctx, a: Adapter) -> dict[str, Any]:
    """W3: an idle worker, a producer at R jobs/s; pickup latency percentiles."""
    s = ctx.sizes
    n, queue = s.latency_jobs, "bench_w3"
    ctx.flush()
    with Proc(
        a, "work", ctx.url, queue, n, ctx.env, concurrency=s.drain_concurrency, record_latency=True
    ) as p:
        p.wait_ready(_READY_TIMEOUT)
        p.go()
        time.sleep(0.5)  # let the worker settle into its idle wait
        prod = run_role(
            a,
            "produce",
            ctx.url,
            queue,
            n,
            ctx.env,
            60 + n / s.latency_rate * 2,
            rate=s.latency_rate,
        )
        r = p.work_result(_work_timeout(n))
    _check_done(a, r, n)
    lat = sorted(float(x) for x in r.get("latencies_ms", []))
    return {
        "jobs": n,
        "rate_target": s.latency_rate,
        "rate_achieved": _rate(n, prod["seconds"]),
        "concurrency": r.get("concurrency", s.drain_concurrency),
        "picked_up": len(lat),
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else None,
    }


# --- W4 ------------------------------------------------------------------------------------


def w4_sleep(ctx: Ctx, a: Adapter) -> dict[str, Any]:
    """W4: jobs sleeping 10 ms at concurrency 10 and 100: jobs/s and % of ideal."""
    s = ctx.sizes
    n, queue = s.sleep_jobs, "bench_w4"
    out: dict[str, Any] = {}
    for c in s.sleep_concurrencies:
        ctx.flush()
        fill(ctx, a, queue, n)
        r, _ = _work(ctx, a, queue, n, c, sleep_ms=s.sleep_ms)
        ideal_s = math.ceil(n / c) * s.sleep_ms / 1000.0
        rate = _rate(n, r["seconds"])
        out[f"c{c}"] = {
            "jobs": n,
            "concurrency_asked": c,
            "concurrency": r.get("concurrency", c),
            "seconds": r["seconds"],
            "jobs_per_s": rate,
            "ideal_jobs_per_s": n / ideal_s,
            "pct_of_ideal": None if rate is None else rate / (n / ideal_s) * 100,
        }
    return out


# --- W5 ------------------------------------------------------------------------------------


def w5_memory(ctx: Ctx, a: Adapter) -> dict[str, Any]:
    """W5: server used_memory per waiting job."""
    n = ctx.sizes.memory_jobs
    ctx.flush()
    time.sleep(0.1)
    mem0 = ctx.used_memory()
    r = fill(ctx, a, "bench_w5", n)
    time.sleep(0.1)
    mem1 = ctx.used_memory()
    return {
        "jobs": n,
        "fill_seconds": r["seconds"],
        "used_memory_delta": mem1 - mem0,
        "bytes_per_job": (mem1 - mem0) / n,
        "keys": ctx.client.dbsize(),
    }


# --- W6 ------------------------------------------------------------------------------------


def w6_scaling(ctx: Ctx, a: Adapter) -> dict[str, Any]:
    """W6: N jobs drained by 1, 2, 4 worker processes sharing one counter file.

    N: what one process drains in ~``scale_seconds`` at its W2 rate, between
    ``scale_jobs`` and W2's N, so that fast libraries are not timed over a
    few milliseconds and the slow ones (a millisecond a job) do not take
    minutes.
    """
    s = ctx.sizes
    n, queue, c = _scale_jobs(ctx), "bench_w6", s.drain_concurrency
    out: dict[str, Any] = {}
    base: float | None = None
    for k in s.scale_processes:
        ctx.flush()
        fill(ctx, a, queue, n)
        fd, counter = tempfile.mkstemp(prefix="bench-w6-", suffix=".count")
        os.close(fd)
        try:
            with ExitStack() as stack:
                procs = [
                    stack.enter_context(
                        Proc(a, "work", ctx.url, queue, n, ctx.env, concurrency=c, counter=counter)
                    )
                    for _ in range(k)
                ]
                for p in procs:
                    p.wait_ready(_READY_TIMEOUT)
                cpu0 = ctx.server_cpu()
                t_go = time.time()
                for p in procs:
                    p.go()
                results = [p.work_result(_work_timeout(n)) for p in procs]
                cpu1 = ctx.server_cpu()
            done = os.path.getsize(counter)
        finally:
            os.unlink(counter)
        if done < n:
            raise AdapterError(f"{a.name} W6 x{k}: counter at {done} of {n}")
        end = max(float(r.get("t_last_wall") or 0.0) for r in results)
        seconds = end - t_go
        rate = _rate(n, seconds)
        if k == 1:
            base = rate
        out[f"p{k}"] = {
            "processes": k,
            "concurrency_each": results[0].get("concurrency", c),
            "jobs": n,
            "seconds": seconds,
            "jobs_per_s": rate,
            "speedup": None if rate is None or not base else rate / base,
            "jobs_per_process": [r.get("jobs_here") for r in results],
            "worker_cpu_us_per_job": sum(float(r["cpu_seconds"]) for r in results) / n * 1e6,
            "server_cpu_us_per_job": (cpu1 - cpu0) / n * 1e6,
        }
    return out


def _scale_jobs(ctx: Ctx) -> int:
    s = ctx.sizes
    w2 = ctx.done.get("W2")
    rate = w2.get("main", {}).get("jobs_per_s") if isinstance(w2, dict) else None
    if not rate:
        return s.scale_jobs
    return max(s.scale_jobs, min(s.drain, int(round(float(rate) * s.scale_seconds, -2))))


# --- W7 ------------------------------------------------------------------------------------


def w7_growth(ctx: Ctx, a: Adapter) -> dict[str, Any]:
    """W7: us per job to drain 10,000 / 2,000 jobs with a small, a big and a big delayed backlog."""
    s = ctx.sizes
    n, queue, c = s.w7_drain, "bench_w7", s.drain_concurrency
    out: dict[str, Any] = {}
    cases = (
        ("a", f"{s.w7_small:,} waiting", s.w7_small, 0.0),
        ("b", f"{s.w7_big:,} waiting", s.w7_big, 0.0),
        ("c", f"{s.w7_big:,} delayed 1 h", s.w7_big, 3600.0),
    )
    for key, label, backlog, delay in cases:
        ctx.flush()
        if delay:
            fill(ctx, a, queue, backlog, delay_s=delay)
            fill(ctx, a, queue, n)
        else:
            fill(ctx, a, queue, backlog + n)
        r, server_cpu = _work(ctx, a, queue, n, c)
        out[key] = {
            "backlog": label,
            "jobs": n,
            "seconds": r["seconds"],
            "us_per_job": r["seconds"] / n * 1e6,
            "server_cpu_us_per_job": server_cpu / n * 1e6,
        }
    for key in ("b", "c"):
        out[f"ratio_{key}_a"] = out[key]["us_per_job"] / out["a"]["us_per_job"]
    return out


RUNNERS: dict[str, Callable[[Ctx, Adapter], dict[str, Any]]] = {
    "W1": w1_enqueue,
    "W2": w2_drain,
    "W3": w3_latency,
    "W4": w4_sleep,
    "W5": w5_memory,
    "W6": w6_scaling,
    "W7": w7_growth,
}
