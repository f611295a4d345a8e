"""Benchmark of the jobq engine alone, against one private server.

usage: python -m bench.engine [--quick] [--json PATH] [--server PATH]

Workloads (full / --quick sizes):

W1a  sequential ``await queue.add``, one job at a time (20,000 / 2,000) -> jobs/s
W1b  ``queue.add_bulk`` in batches of 1,000 (same count) -> jobs/s
W2   drain of pre-loaded no-op jobs (20,000 / 5,000) by ONE worker process at
     concurrency 1 and 50: jobs/s from the first claim to the last completion,
     worker CPU and server CPU per job, worker peak RSS
W3   pickup latency: an idle worker process, a producer adding 200 jobs/s for
     10 s / 3 s; latency = processor start - producer's time_ns at add
MEM  server used_memory per waiting job (100,000 / 20,000 jobs via add_bulk)

Every payload is about 100 bytes of JSON. The server is a private
``jobq.server.RedisServerProcess`` (the bundled valkey on a unix socket unless
``--server`` names another binary), flushed between workloads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import jobq
from jobq import Queue
from jobq.server import RedisServerProcess

from ._common import (
    PAYLOAD_BYTES,
    loop_name,
    payload,
    percentile,
    proc_cpu_seconds,
    run,
)

_ROOT = Path(__file__).resolve().parent.parent
_BULK_BATCH = 1_000
_CHILD_READY_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Config:
    """Sizes of the workloads."""

    quick: bool
    enqueue_jobs: int
    drain_jobs: int
    concurrencies: tuple[int, ...]
    latency_rate: float
    latency_seconds: float
    latency_concurrencies: tuple[int, ...]
    idle_seconds: float
    memory_jobs: int

    @classmethod
    def make(cls, quick: bool) -> Config:
        """The full or the --quick sizes."""
        if quick:
            return cls(True, 2_000, 5_000, (1, 50), 200.0, 3.0, (1, 50), 1.0, 20_000)
        return cls(False, 20_000, 20_000, (1, 50), 200.0, 10.0, (1, 50), 2.0, 100_000)


# --- server-side readings ------------------------------------------------------------


async def _server_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def _used_memory(client: Any) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def _completed_total(client: Any, queue: Queue) -> int:
    """Jobs completed so far, from the per-minute metrics hash (not capped like the set)."""
    values = await client.hvals(queue.keys.metrics_completed)
    return sum(int(v) for v in values)


async def _last_completed_ms(client: Any, queue: Queue) -> int | None:
    """Server time (ms) of the newest 'completed' event, from its stream id."""
    entries = await client.xrevrange(queue.keys.events, "+", "-", count=200)
    for entry_id, fields in entries:
        if fields.get(b"e") == b"completed":
            return int(entry_id.split(b"-", 1)[0])
    return None


async def _reset_stats(client: Any) -> None:
    await client.config_resetstat()


async def _commands_per_job(client: Any, n: int) -> dict[str, dict[str, float]]:
    """Calls and server usec per job by command since the last CONFIG RESETSTAT.

    Commands a Lua script runs are counted too (on top of the EVALSHA itself).
    """
    stats = await client.info("commandstats")
    out: dict[str, dict[str, float]] = {}
    for key, value in stats.items():
        name = str(key).removeprefix("cmdstat_")
        out[name] = {
            "calls_per_job": int(value["calls"]) / n,
            "usec_per_job": int(value["usec"]) / n,
        }
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["calls_per_job"]))


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --- the worker child process ----------------------------------------------------------


class _Child:
    """A ``bench._drain_worker`` process; always killed by :meth:`finish` or :meth:`kill`."""

    def __init__(self, url: str, queue: str, concurrency: int, mode: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        env["BENCH_PARENT_PID"] = str(os.getpid())
        self.cpu_children_before = _children_cpu()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._drain_worker", url, queue, str(concurrency), mode],
            cwd=_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            _, err = self.proc.communicate()
            raise RuntimeError(
                f"worker process exited early with code {self.proc.returncode}:\n"
                + err.decode("utf-8", "replace")[-3000:]
            )

    def finish(self, timeout: float = 30.0) -> tuple[dict[str, Any], float]:
        """SIGTERM it, wait, and return (its JSON report, its total CPU seconds)."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        total_cpu = _children_cpu() - self.cpu_children_before
        lines = out.decode("utf-8", "replace").strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"worker process failed (code {self.proc.returncode}):\n"
                + err.decode("utf-8", "replace")[-3000:]
            )
        report: dict[str, Any] = json.loads(lines[-1])
        stderr = err.decode("utf-8", "replace").strip()
        if stderr:
            report["stderr"] = stderr[-2000:]
        return report, total_cpu

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.communicate(timeout=10)


async def _wait_for(
    what: str, check: Any, child: _Child, timeout: float, interval: float = 0.01
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        child.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


# --- workloads -----------------------------------------------------------------------------


async def bench_enqueue(url: str, client: Any, cfg: Config) -> dict[str, Any]:
    """W1a sequential add, W1b add_bulk."""
    n = cfg.enqueue_jobs
    out: dict[str, Any] = {}
    await client.execute_command("FLUSHALL", "SYNC")  # not freed in the background
    async with Queue("bench-add", connection=url) as queue:
        await queue.add("warmup", payload("i", -1))  # loads the script, opens the connection
        lat_ns: list[float] = []
        cpu0, scpu0 = time.process_time(), await _server_cpu(client)
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter_ns()
            await queue.add("noop", payload("i", i))
            lat_ns.append(time.perf_counter_ns() - s)
        wall = time.perf_counter() - t0
        cpu1, scpu1 = time.process_time(), await _server_cpu(client)
        lat_ns.sort()
        out["single"] = {
            "jobs": n,
            "seconds": wall,
            "jobs_per_s": n / wall,
            "add_p50_us": percentile(lat_ns, 50) / 1e3,
            "add_p99_us": percentile(lat_ns, 99) / 1e3,
            "client_cpu_us_per_job": (cpu1 - cpu0) / n * 1e6,
            "server_cpu_us_per_job": (scpu1 - scpu0) / n * 1e6,
        }
    await client.execute_command("FLUSHALL", "SYNC")  # not freed in the background
    async with Queue("bench-bulk", connection=url) as queue:
        await queue.add("warmup", payload("i", -1))
        batches = [
            [("noop", payload("i", i)) for i in range(s, min(n, s + _BULK_BATCH))]
            for s in range(0, n, _BULK_BATCH)
        ]
        cpu0, scpu0 = time.process_time(), await _server_cpu(client)
        t0 = time.perf_counter()
        for batch in batches:
            await queue.add_bulk(batch)
        wall = time.perf_counter() - t0
        cpu1, scpu1 = time.process_time(), await _server_cpu(client)
        counts = await queue.get_job_counts()
        out["bulk"] = {
            "jobs": n,
            "batch": _BULK_BATCH,
            "seconds": wall,
            "jobs_per_s": n / wall,
            "client_cpu_us_per_job": (cpu1 - cpu0) / n * 1e6,
            "server_cpu_us_per_job": (scpu1 - scpu0) / n * 1e6,
            "waiting_after": counts.waiting,
        }
    return out


async def bench_drain(url: str, client: Any, cfg: Config, concurrency: int) -> dict[str, Any]:
    """W2: one worker process drains pre-loaded no-op jobs."""
    n = cfg.drain_jobs
    await client.execute_command("FLUSHALL", "SYNC")  # not freed in the background
    name = f"bench-drain-c{concurrency}"
    async with Queue(name, connection=url) as queue:
        for s in range(0, n, _BULK_BATCH):
            await queue.add_bulk(
                [("noop", payload("i", i)) for i in range(s, min(n, s + _BULK_BATCH))]
            )
        before = await queue.get_job_counts()
        if before.waiting != n:
            raise RuntimeError(f"pre-load: {before.waiting} waiting, expected {n}")
        await _reset_stats(client)
        scpu0 = await _server_cpu(client)
        child = _Child(url, name, concurrency, "drain")
        try:

            async def drained() -> bool:
                return await _completed_total(client, queue) >= n

            await _wait_for("the drain", drained, child, timeout=60 + n / 200)
            detect_ns = time.time_ns()
            scpu1 = await _server_cpu(client)
            commands = await _commands_per_job(client, n)
            last_ms = await _last_completed_ms(client, queue)
            after = await queue.get_job_counts()
            completed = await _completed_total(client, queue)
            report, total_cpu = child.finish()
        finally:
            child.kill()
    first_ns = int(report["first_ns"])
    end_ns = last_ms * 1_000_000 if last_ms is not None else detect_ns
    seconds = (end_ns - first_ns) / 1e9
    return {
        "concurrency": concurrency,
        "jobs": n,
        "seconds": seconds,
        "jobs_per_s": n / seconds if seconds > 0 else float("nan"),
        "end_from": "last completed event" if last_ms is not None else "poll",
        "detect_lag_ms": (detect_ns - end_ns) / 1e6,
        "worker_cpu_us_per_job": report["cpu_run_s"] / n * 1e6,
        "worker_cpu_total_us_per_job": total_cpu / n * 1e6,
        "worker_cpu_total_s": total_cpu,
        "server_cpu_us_per_job": (scpu1 - scpu0) / n * 1e6,
        "worker_vmhwm_kb": report["vmhwm_kb"],
        "worker_vmrss_kb": report["vmrss_kb"],
        "processed_by_worker": report["processed"],
        "commands": commands,
        "completed_metric": completed,
        "after": after.to_dict(),
        "worker_error": report.get("error"),
        "worker_stderr": report.get("stderr"),
    }


async def bench_latency(url: str, client: Any, cfg: Config, concurrency: int) -> dict[str, Any]:
    """W3: pickup latency of an idle worker under a steady producer; also idle CPU."""
    total = round(cfg.latency_rate * cfg.latency_seconds)
    await client.execute_command("FLUSHALL", "SYNC")  # not freed in the background
    name = f"bench-latency-c{concurrency}"
    async with Queue(name, connection=url) as queue:
        child = _Child(url, name, concurrency, "latency")
        try:

            async def alive() -> bool:
                return await queue.workers_alive() >= 1

            await _wait_for("the worker to start", alive, child, _CHILD_READY_TIMEOUT)
            await asyncio.sleep(0.5)  # let it settle into its idle block
            # Idle: the worker should sleep in BZPOPMIN and cost nothing.
            wcpu0, scpu0 = proc_cpu_seconds(child.pid), await _server_cpu(client)
            await asyncio.sleep(cfg.idle_seconds)
            wcpu1, scpu1 = proc_cpu_seconds(child.pid), await _server_cpu(client)
            idle_worker = (
                None if wcpu0 is None or wcpu1 is None else (wcpu1 - wcpu0) / cfg.idle_seconds
            )
            idle_server = (scpu1 - scpu0) / cfg.idle_seconds

            await _reset_stats(client)
            interval = 1.0 / cfg.latency_rate
            late = 0
            t0 = time.perf_counter()
            for i in range(total):
                delay = t0 + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -interval:
                    late += 1
                await queue.add("ping", payload("t", time.time_ns()))
            produce_s = time.perf_counter() - t0

            async def done() -> bool:
                return await _completed_total(client, queue) >= total

            await _wait_for("the last pickups", done, child, timeout=30)
            commands = await _commands_per_job(client, total)
            after = await queue.get_job_counts()
            report, _ = child.finish()
        finally:
            child.kill()
    lat_ms = sorted(x / 1e6 for x in report["latencies_ns"])
    return {
        "concurrency": concurrency,
        "jobs": total,
        "rate_target": cfg.latency_rate,
        "rate_achieved": total / produce_s,
        "producer_late_adds": late,
        "picked_up": len(lat_ms),
        "p50_ms": percentile(lat_ms, 50),
        "p95_ms": percentile(lat_ms, 95),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": lat_ms[-1] if lat_ms else float("nan"),
        "min_ms": lat_ms[0] if lat_ms else float("nan"),
        "idle_worker_cpu_pct": None if idle_worker is None else idle_worker * 100,
        "idle_server_cpu_pct": idle_server * 100,
        "idle_seconds": cfg.idle_seconds,
        "commands": commands,
        "after": after.to_dict(),
        "worker_error": report.get("error"),
        "worker_stderr": report.get("stderr"),
    }


async def bench_memory(url: str, client: Any, cfg: Config) -> dict[str, Any]:
    """MEM: server bytes per waiting job."""
    n = cfg.memory_jobs
    await client.execute_command("FLUSHALL", "SYNC")  # not freed in the background
    async with Queue("bench-mem", connection=url) as queue:
        await client.ping()
        await asyncio.sleep(0.2)
        mem0 = await _used_memory(client)
        for s in range(0, n, _BULK_BATCH):
            await queue.add_bulk(
                [("noop", payload("i", i)) for i in range(s, min(n, s + _BULK_BATCH))]
            )
        await asyncio.sleep(0.2)
        mem1 = await _used_memory(client)
        counts = await queue.get_job_counts()
        job_hash = await client.memory_usage(queue.keys.job("1"), samples=0)
        wait_list = await client.memory_usage(queue.keys.wait, samples=0)
        events = await client.memory_usage(queue.keys.events, samples=0)
        events_len = await client.xlen(queue.keys.events)
    return {
        "jobs": n,
        "payload_bytes": PAYLOAD_BYTES,
        "used_memory_delta": mem1 - mem0,
        "bytes_per_job": (mem1 - mem0) / n,
        "job_hash_bytes": job_hash,
        "wait_list_bytes_per_job": (wait_list or 0) / n,
        "events_stream_bytes": events,
        "events_stream_len": events_len,
        "waiting": counts.waiting,
    }


# --- machine and report ----------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


async def _machine(client: Any, server: RedisServerProcess) -> dict[str, Any]:
    info = await client.info("server")
    flavor = "valkey" if "valkey_version" in info else str(info.get("server_name", "redis"))
    version = info.get("valkey_version", info.get("redis_version"))
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "event_loop": loop_name(),
        "server": f"{flavor} {version}",
        "server_binary": server.binary,
        "transport": "loopback TCP" if server.port is not None else "a unix socket",
        "jobq": jobq.__version__,
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
    }


async def _run_all(server: RedisServerProcess, cfg: Config) -> dict[str, Any]:
    url = server.url
    results: dict[str, Any] = {"mode": "quick" if cfg.quick else "full"}
    t0 = time.perf_counter()
    async with Queue("bench-admin", connection=url) as admin:
        client: Any = admin.client
        results["machine"] = await _machine(client, server)
        _progress("W1 enqueue")
        results["enqueue"] = await bench_enqueue(url, client, cfg)
        results["drain"] = []
        for c in cfg.concurrencies:
            _progress(f"W2 drain, concurrency {c}")
            results["drain"].append(await bench_drain(url, client, cfg, c))
        results["latency"] = []
        for c in cfg.latency_concurrencies:
            _progress(f"W3 pickup latency, concurrency {c}")
            results["latency"].append(await bench_latency(url, client, cfg, c))
        _progress("MEM memory per waiting job")
        results["memory"] = await bench_memory(url, client, cfg)
        await client.execute_command("FLUSHALL", "SYNC")  # not freed in the background
    results["total_seconds"] = time.perf_counter() - t0
    return results


def _progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_report(r: dict[str, Any]) -> str:
    """The plain-text table."""
    m = r["machine"]
    lines = [
        f"jobq engine benchmark ({r['mode']}), {r['total_seconds']:.1f} s",
        f"machine: {m['nproc']} CPUs ({m['affinity']} usable), {m['cpu_model']}, "
        f"Linux {m['kernel']}",
        f"python {m['python']} ({m['event_loop']}), jobq {m['jobq']}, redis-py {m['redis_py']}, "
        f"hiredis {m['hiredis']}",
        f"server: {m['server']} over {m['transport']} ({m['server_binary']})",
        f"payload ~{PAYLOAD_BYTES} B JSON per job",
        "",
    ]

    def row(label: str, *cols: str) -> None:
        lines.append(f"  {label:<34}" + "".join(f"{c:>14}" for c in cols))

    e = r["enqueue"]
    lines.append("W1 enqueue")
    row("", "jobs", "jobs/s", "client us/job", "server us/job")
    s, b = e["single"], e["bulk"]
    row(
        "W1a add (sequential)",
        _f(s["jobs"]),
        _f(s["jobs_per_s"]),
        _f(s["client_cpu_us_per_job"], 1),
        _f(s["server_cpu_us_per_job"], 1),
    )
    row(
        f"W1b add_bulk (batches of {b['batch']:,})",
        _f(b["jobs"]),
        _f(b["jobs_per_s"]),
        _f(b["client_cpu_us_per_job"], 1),
        _f(b["server_cpu_us_per_job"], 1),
    )
    lines.append(f"  add() round trip: p50 {s['add_p50_us']:.0f} us, p99 {s['add_p99_us']:.0f} us")
    lines.append("")
    lines.append("W2 drain by one worker process (async no-op processor)")
    row("", "jobs", "jobs/s", "worker us/job", "server us/job", "worker VmHWM")
    for d in r["drain"]:
        row(
            f"concurrency {d['concurrency']}",
            _f(d["jobs"]),
            _f(d["jobs_per_s"]),
            _f(d["worker_cpu_us_per_job"], 1),
            _f(d["server_cpu_us_per_job"], 1),
            f"{_f(d['worker_vmhwm_kb'] / 1024, 1)} MiB" if d["worker_vmhwm_kb"] else "n/a",
        )
    for d in r["drain"]:
        lines.append(
            f"  c={d['concurrency']}: {d['seconds']:.2f} s first claim -> last completion; "
            f"worker CPU incl. interpreter start {d['worker_cpu_total_us_per_job']:.1f} us/job; "
            f"after: {_counts(d['after'])}"
        )
        lines.append(f"       {_round_trips(d['commands'])}")
    lines.append("")
    first = r["latency"][0]
    lines.append(
        f"W3 pickup latency (producer {first['rate_target']:.0f} jobs/s, "
        f"{first['jobs']:,} jobs, idle worker process)"
    )
    row("", "p50 ms", "p95 ms", "p99 ms", "max ms", "picked up")
    for w in r["latency"]:
        row(
            f"concurrency {w['concurrency']}",
            _f(w["p50_ms"], 2),
            _f(w["p95_ms"], 2),
            _f(w["p99_ms"], 2),
            _f(w["max_ms"], 2),
            f"{w['picked_up']:,}/{w['jobs']:,}",
        )
    for w in r["latency"]:
        lines.append(
            f"  c={w['concurrency']}: achieved {w['rate_achieved']:.1f} jobs/s "
            f"({w['producer_late_adds']} late adds); idle over {w['idle_seconds']:g} s: "
            f"worker {_f(w['idle_worker_cpu_pct'], 2)}% CPU, "
            f"server {w['idle_server_cpu_pct']:.2f}% CPU; after: {_counts(w['after'])}"
        )
        lines.append(f"       {_round_trips(w['commands'])}")
    lines.append("")
    mem = r["memory"]
    lines.append(f"MEM {mem['jobs']:,} waiting jobs added by add_bulk")
    lines.append(
        f"  used_memory delta {mem['used_memory_delta']:,} B = "
        f"{mem['bytes_per_job']:.0f} B per waiting job"
    )
    lines.append(
        f"  of which: job hash {_f(mem['job_hash_bytes'])} B (MEMORY USAGE of one), "
        f"wait list {mem['wait_list_bytes_per_job']:.1f} B/job, "
        f"events stream {_f(mem['events_stream_bytes'])} B for {_f(mem['events_stream_len'])} "
        "entries (capped)"
    )
    problems = _problems(r)
    if problems:
        lines.append("")
        lines.append("PROBLEMS")
        lines.extend(f"  - {p}" for p in problems)
    return "\n".join(lines)


def _round_trips(commands: dict[str, dict[str, float]]) -> str:
    ev = commands.get("evalsha", {"calls_per_job": 0.0, "usec_per_job": 0.0})
    bz = commands.get("bzpopmin", {"calls_per_job": 0.0})
    inner = sum(
        v["calls_per_job"]
        for k, v in commands.items()
        if k not in ("evalsha", "bzpopmin", "info", "hvals", "xrevrange", "ping")
        and not k.startswith(("config", "client", "script"))
    )
    return (
        f"EVALSHA {ev['calls_per_job']:.3f}/job ({ev['usec_per_job']:.1f} us/job in scripts), "
        f"BZPOPMIN {bz['calls_per_job']:.3f}/job, ~{inner:.0f} commands/job inside scripts"
    )


def _counts(c: dict[str, int]) -> str:
    return " ".join(f"{k} {v}" for k, v in c.items() if v) or "all zero"


def _problems(r: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for d in r["drain"]:
        if d["after"]["waiting"] or d["after"]["active"]:
            out.append(f"drain c={d['concurrency']}: jobs left: {_counts(d['after'])}")
        if d["processed_by_worker"] != d["jobs"]:
            out.append(
                f"drain c={d['concurrency']}: processor ran {d['processed_by_worker']} times "
                f"for {d['jobs']} jobs"
            )
        if d["worker_error"]:
            out.append(f"drain c={d['concurrency']}: {d['worker_error']}")
    for w in r["latency"]:
        if w["picked_up"] != w["jobs"]:
            out.append(f"latency c={w['concurrency']}: {w['picked_up']} of {w['jobs']} picked up")
        if w["after"]["waiting"] or w["after"]["active"]:
            out.append(f"latency c={w['concurrency']}: jobs left: {_counts(w['after'])}")
        if w["idle_worker_cpu_pct"] is not None and w["idle_worker_cpu_pct"] > 5:
            out.append(
                f"latency c={w['concurrency']}: idle worker used "
                f"{w['idle_worker_cpu_pct']:.1f}% CPU (busy loop?)"
            )
        if w["worker_error"]:
            out.append(f"latency c={w['concurrency']}: {w['worker_error']}")
    if r["memory"]["waiting"] != r["memory"]["jobs"]:
        out.append(f"memory: {r['memory']['waiting']} waiting, expected {r['memory']['jobs']}")
    return out


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m bench.engine``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--server", metavar="PATH", help="valkey-server/redis-server binary (default: bundled)"
    )
    parser.add_argument("--tcp", action="store_true", help="loopback TCP instead of a unix socket")
    args = parser.parse_args(argv)
    cfg = Config.make(args.quick)
    # A SIGTERM unwinds like Ctrl-C, so the finally blocks kill the worker and the server.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    server = RedisServerProcess(args.server, tcp=args.tcp)
    server.start()
    try:
        results = run(_run_all(server, cfg))
    finally:
        server.stop()
    print(format_report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 1 if _problems(results) else 0


if __name__ == "__main__":
    sys.exit(main())
