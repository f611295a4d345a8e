"""jobq against its peers, side by side, on one private server.

usage: python -m bench.compare [--quick] [--only jobq,rq,...] [--workloads W1,W2]
                               [--json PATH] [--tcp] [--server PATH] [--w7-all]

Every library runs through its adapter ``bench/peers/<lib>.py`` (or
``bench/peers/bullmq_node/adapter.mjs``), in its own processes and, for the
Python peers, its own pinned virtualenv ``bench/.venvs/<lib>/`` (built on
first use). The adapter protocol and payload are in ``bench/peers/_proto.py``.

Workloads (full / --quick sizes):

W1  enqueue 20,000 / 2,000 jobs one call at a time, and with the bulk API
W2  drain 20,000 / 5,000 pre-loaded no-op jobs by ONE worker process (C=50
    where the library's model allows; jobq also at C=1): jobs/s, worker and
    server CPU per job
W3  pickup latency: an idle worker, a producer at 200 jobs/s (2,000 / 600 jobs)
W4  2,000 / 500 jobs sleeping 10 ms at concurrency 10 and 100: % of ideal
W5  server used_memory per waiting job (100,000 / 20,000 jobs)
W6  N jobs drained by 1, 2, 4 worker processes sharing a counter; N is what
    one process drains in ~3 s / ~1 s at its W2 rate, within 5,000-20,000 /
    2,000-5,000
W7  us/job to drain 10,000 / 2,000 jobs behind 1,000, then 1,000,000 / 100,000 waiting,
    then as many delayed jobs (jobq and BullMQ Node; in full mode also BullMQ's
    Python port; every library with --w7-all)

The server (``jobq.server.RedisServerProcess``: the bundled valkey on a unix
socket, or ``--server``; ``--tcp`` for loopback TCP) is FLUSHALL-ed between
workloads. Ratios are "how many times better jobq is" (>1: jobq ahead).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from jobq.server import RedisServerProcess

from . import _compare_env as env
from ._compare_workloads import RUNNERS, WORKLOADS, Ctx, Sizes

_W7_DEFAULT = ("jobq", "bullmq_node")
_W7_FULL_EXTRA = ("bullmq_py",)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 600 else text[:600] + "..."


def _bench_url(server: RedisServerProcess) -> str:
    url = server.url
    return url + ("?db=0" if url.startswith("unix:") else "/0")


def _w7_wanted(name: str, args: argparse.Namespace) -> bool:
    if args.w7_all:
        return True
    return name in _W7_DEFAULT or (not args.quick and name in _W7_FULL_EXTRA)


def _machine(client: Any, server: RedisServerProcess) -> dict[str, Any]:
    info = client.info("server")
    flavor = "valkey" if "valkey_version" in info else "redis"
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "server": f"{flavor} {info.get('valkey_version', info.get('redis_version'))}",
        "transport": "loopback TCP" if server.port is not None else "unix socket",
        "loadavg_start": list(os.getloadavg()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare the adapters, start the server, run the workloads; the results dict."""
    sizes = Sizes.make(args.quick, args.tiny)
    wanted_w = [w.strip().upper() for w in args.workloads.split(",")] if args.workloads else []
    workloads = [w for w in WORKLOADS if not wanted_w or w in wanted_w]
    unknown = set(wanted_w) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
    adapters = env.discover()
    if args.only:
        only = [x.strip() for x in args.only.split(",") if x.strip()]
        missing = set(only) - {a.name for a in adapters}
        if missing:
            raise SystemExit(f"no adapter for: {', '.join(sorted(missing))}")
        adapters = [a for a in adapters if a.name in only]
    results: dict[str, Any] = {
        "mode": sizes.mode,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sizes": {k: getattr(sizes, k) for k in Sizes.__slots__},
        "workloads": workloads,
        "libraries": {},
    }
    _progress("... preparing environments")
    for a in adapters:
        env.prepare(a, _progress)
        if a.unavailable:
            _progress(f"  {a.name}: unavailable: {a.unavailable}")
    t0 = time.perf_counter()
    server = RedisServerProcess(args.server, tcp=args.tcp)
    server.start()
    client: Any = None
    scratch = tempfile.TemporaryDirectory(prefix="bench-compare-")
    try:
        url = _bench_url(server)
        # No 5 s read timeout (redis-py's default): a synchronous FLUSHALL of the
        # millions of keys W5 and W7 leave takes longer than that on a slow machine.
        client = redis.Redis.from_url(url, socket_timeout=600)
        results["machine"] = _machine(client, server)
        ctx = Ctx(url, client, env.child_env(Path(scratch.name)), sizes, _progress)
        for a in adapters:
            lib: dict[str, Any] = {"kind": a.kind, "version": a.version}
            results["libraries"][a.name] = lib
            if a.unavailable:
                lib["unavailable"] = a.unavailable
        # Workload by workload, every library in turn: the machine's speed drifts
        # over a run of half an hour, and a library measured all at once, early or
        # late, would carry that drift into its ratios.
        for w in workloads:
            for a in adapters:
                lib = results["libraries"][a.name]
                if a.unavailable:
                    continue
                ctx.done = lib
                if w == "W7" and not _w7_wanted(a.name, args):
                    lib[w] = {"skipped": "W7 runs for jobq and BullMQ (use --w7-all)"}
                    continue
                _progress(f"... {a.name} {w}")
                started = time.perf_counter()
                try:
                    lib[w] = RUNNERS[w](ctx, a)
                except Exception as exc:  # one library's failure must not stop the run
                    lib[w] = {"error": _short(exc)}
                    _progress(f"  {a.name} {w} FAILED: {_short(exc)}")
                lib[w + "_seconds"] = round(time.perf_counter() - started, 2)
        client.execute_command("FLUSHALL", "SYNC")
        results["machine"]["loadavg_end"] = list(os.getloadavg())
    finally:
        if client is not None:
            client.close()
        server.stop()
        scratch.cleanup()
    results["total_seconds"] = time.perf_counter() - t0
    results["ratios"] = ratios(results)
    return results


# --- ratios --------------------------------------------------------------------------------

#: (label, path into a library's results, True if higher is better)
METRICS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("W1 enqueue single jobs/s", ("W1", "single", "jobs_per_s"), True),
    ("W1 enqueue bulk jobs/s", ("W1", "bulk", "jobs_per_s"), True),
    ("W2 drain jobs/s", ("W2", "main", "jobs_per_s"), True),
    ("W2 worker CPU us/job", ("W2", "main", "worker_cpu_us_per_job"), False),
    ("W2 server CPU us/job", ("W2", "main", "server_cpu_us_per_job"), False),
    ("W3 latency p50 ms", ("W3", "p50_ms"), False),
    ("W3 latency p99 ms", ("W3", "p99_ms"), False),
    ("W4 sleep C=10 jobs/s", ("W4", "c10", "jobs_per_s"), True),
    ("W4 sleep C=100 jobs/s", ("W4", "c100", "jobs_per_s"), True),
    ("W5 bytes/waiting job", ("W5", "bytes_per_job"), False),
    ("W6 4 processes jobs/s", ("W6", "p4", "jobs_per_s"), True),
    ("W7 us/job, 1,000 waiting", ("W7", "a", "us_per_job"), False),
)


def _get(lib: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = lib
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, (int, float)) and not isinstance(node, bool) and node == node and node > 0:
        return float(node)
    return None


def _ratio(jobq: float, other: float, higher_better: bool) -> float:
    return jobq / other if higher_better else other / jobq


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """jobq against each peer, the fastest Python peer and BullMQ Node, per metric."""
    libs = results["libraries"]
    if "jobq" not in libs:
        return {}
    jq = libs["jobq"]
    out: dict[str, Any] = {}
    for label, path, higher in METRICS:
        mine = _get(jq, path)
        if mine is None:
            continue
        row: dict[str, Any] = {"jobq": mine, "higher_is_better": higher, "vs": {}}
        best: tuple[str, float] | None = None
        for name, lib in libs.items():
            if name == "jobq":
                continue
            theirs = _get(lib, path)
            if theirs is None:
                continue
            row["vs"][name] = _ratio(mine, theirs, higher)
            if lib.get("kind") == "python":
                better = best is None or (theirs > best[1] if higher else theirs < best[1])
                if better:
                    best = (name, theirs)
        if best is not None:
            row["best_python_peer"] = {
                "name": best[0],
                "value": best[1],
                "ratio": _ratio(mine, best[1], higher),
            }
        if "bullmq_node" in row["vs"]:
            row["bullmq_node"] = row["vs"]["bullmq_node"]
        out[label] = row
    return out


# --- the report ----------------------------------------------------------------------------


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(lib: dict[str, Any], w: str, *path: str, digits: int = 0) -> str:
    node: Any = lib.get(w)
    if node is None:
        return ""
    if isinstance(node, dict) and "error" in node:
        return "ERROR"
    if isinstance(node, dict) and "skipped" in node:
        return "skip"
    for key in path:
        if not isinstance(node, dict):
            return "-"
        if "unsupported" in node:
            return "n/a"
        node = node.get(key)
    return _f(node, digits)


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [title]
    fmt = "  " + "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}"
                           for i, w in enumerate(widths))  # fmt: skip
    lines.append(fmt.format(*header))
    lines.extend(fmt.format(*r) for r in rows)
    lines.append("")
    return lines


def format_report(r: dict[str, Any]) -> str:
    """The plain-text tables, ratios and problems."""
    m = r.get("machine", {})
    libs: dict[str, Any] = r["libraries"]
    lines = [
        f"bench.compare ({r['mode']}), {r.get('total_seconds', 0):.0f} s, "
        f"{m.get('nproc')} CPUs ({m.get('cpu_model')}), load {m.get('loadavg_start')}",
        f"server {m.get('server')} over {m.get('transport')}; python {m.get('python')}; "
        "payload ~100 B JSON; shared machine: figures are noisy",
        "",
    ]
    ran = set(r["workloads"])
    gone = [
        f"{n}: unavailable: {lib['unavailable']}" for n, lib in libs.items() if "unavailable" in lib
    ]
    if gone:
        lines += [*gone, ""]
    ok = {n: lib for n, lib in libs.items() if "unavailable" not in lib}
    names = list(ok)

    def label(n: str) -> str:
        v = libs[n].get("version")
        return f"{n} {v}" if v else n

    s = r["sizes"]
    rows = []
    for n in names:
        lib = ok[n]
        w2c = _cell(lib, "W2", "main", "concurrency")
        rows.append([
            label(n),
            _cell(lib, "W1", "single", "jobs_per_s"),
            _cell(lib, "W1", "bulk", "jobs_per_s"),
            _cell(lib, "W2", "main", "jobs_per_s"),
            w2c,
            _cell(lib, "W2", "main", "worker_cpu_us_per_job", digits=1),
            _cell(lib, "W2", "main", "server_cpu_us_per_job", digits=1),
            _cell(lib, "W2", "main", "worker_peak_rss_kb"),
        ])  # fmt: skip
    for n, lib in libs.items():
        if "unavailable" in lib:
            rows.append([label(n), "unavailable", *[""] * 6])
    if ran & {"W1", "W2"}:
        lines += _table(
        f"W1 enqueue {s['enqueue']:,} jobs / W2 drain {s['drain']:,} jobs by one worker process",
        ["library", "W1 single/s", "W1 bulk/s", "W2 jobs/s", "C", "worker us/job",
         "server us/job", "peak RSS kB"],
        rows,
    )  # fmt: skip
    if "jobq" in ok and isinstance(ok["jobq"].get("W2"), dict) and "c1" in ok["jobq"]["W2"]:
        c1 = ok["jobq"]["W2"]["c1"]
        lines.insert(
            len(lines) - 1,
            f"  jobq at C=1: {_f(c1['jobs_per_s'])} jobs/s, worker "
            f"{_f(c1['worker_cpu_us_per_job'], 1)} us/job, server "
            f"{_f(c1['server_cpu_us_per_job'], 1)} us/job",
        )
    rows = []
    for n in names:
        lib = ok[n]
        rows.append([
            label(n),
            _cell(lib, "W3", "p50_ms", digits=1),
            _cell(lib, "W3", "p95_ms", digits=1),
            _cell(lib, "W3", "p99_ms", digits=1),
            _cell(lib, "W4", "c10", "jobs_per_s"),
            _cell(lib, "W4", "c10", "pct_of_ideal"),
            _cell(lib, "W4", "c100", "jobs_per_s"),
            _cell(lib, "W4", "c100", "pct_of_ideal"),
            _cell(lib, "W4", "c100", "concurrency"),
        ])  # fmt: skip
    if ran & {"W3", "W4"}:
        lines += _table(
        f"W3 pickup latency ({s['latency_jobs']:,} jobs at {s['latency_rate']:.0f}/s) / "
        f"W4 {s['sleep_jobs']:,} jobs sleeping {s['sleep_ms']:.0f} ms",
        ["library", "p50 ms", "p95 ms", "p99 ms", "C10 jobs/s", "% ideal",
         "C100 jobs/s", "% ideal", "C used"],
        rows,
    )  # fmt: skip
    rows = []
    for n in names:
        lib = ok[n]
        rows.append([
            label(n),
            _cell(lib, "W5", "bytes_per_job"),
            _cell(lib, "W6", "p1", "jobs"),
            *[_cell(lib, "W6", f"p{k}", "jobs_per_s") for k in s["scale_processes"]],
            *[_cell(lib, "W6", f"p{k}", "speedup", digits=2) for k in s["scale_processes"][1:]],
        ])  # fmt: skip
    if ran & {"W5", "W6"}:
        lines += _table(
        f"W5 memory per waiting job ({s['memory_jobs']:,} jobs) / W6 scaling over N jobs",
        ["library", "B/job", "W6 N", *[f"{k} proc jobs/s" for k in s["scale_processes"]],
         *[f"x{k} speedup" for k in s["scale_processes"][1:]]],
        rows,
    )  # fmt: skip
    rows = []
    for n in names:
        lib = ok[n]
        if not isinstance(lib.get("W7"), dict) or "skipped" in lib["W7"]:
            continue
        rows.append([
            label(n),
            _cell(lib, "W7", "a", "us_per_job", digits=1),
            _cell(lib, "W7", "b", "us_per_job", digits=1),
            _cell(lib, "W7", "c", "us_per_job", digits=1),
            _cell(lib, "W7", "ratio_b_a", digits=2),
            _cell(lib, "W7", "ratio_c_a", digits=2),
        ])  # fmt: skip
    if rows:
        lines += _table(
            f"W7 us/job to drain {s['w7_drain']:,} jobs: (a) {s['w7_small']:,} waiting, "
            f"(b) {s['w7_big']:,} waiting, (c) {s['w7_big']:,} delayed (flat: ratio <= 1.2)",
            ["library", "(a) us/job", "(b) us/job", "(c) us/job", "b/a", "c/a"],
            rows,
        )
    rat = r.get("ratios") or {}
    if rat:
        peers = [n for n in names if n != "jobq"]
        rows = []
        for metric, row in rat.items():
            best = row.get("best_python_peer")
            rows.append([
                metric,
                _f(row["jobq"], 1),
                *[_f(row["vs"].get(p), 2) for p in peers],
                f"{_f(best['ratio'], 2)} ({best['name']})" if best else "-",
            ])  # fmt: skip
        lines += _table(
            "jobq ratio (>1: jobq better; higher-is-better metrics jobq/peer, "
            "lower-is-better peer/jobq)",
            ["metric", "jobq", *peers, "vs best Python peer"],
            rows,
        )
    found = problems(r)
    if found:
        lines.append("PROBLEMS")
        lines.extend(f"  - {p}" for p in found)
    return "\n".join(lines)


def problems(r: dict[str, Any]) -> list[str]:
    """Unavailable libraries, failed workloads, jobs not picked up."""
    out = []
    for n, lib in r["libraries"].items():
        if "unavailable" in lib:
            out.append(f"{n}: unavailable: {lib['unavailable']}")
            continue
        for w in WORKLOADS:
            node = lib.get(w)
            if isinstance(node, dict) and "error" in node:
                out.append(f"{n} {w}: {node['error']}")
        w3 = lib.get("W3")
        if isinstance(w3, dict) and "picked_up" in w3 and w3["picked_up"] < w3["jobs"]:
            out.append(f"{n} W3: latency recorded for {w3['picked_up']} of {w3['jobs']} jobs")
    return out


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m bench.compare``."""
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    p.add_argument("--only", metavar="LIBS", help="comma-separated adapters, e.g. jobq,rq")
    p.add_argument("--workloads", metavar="W", help="comma-separated workloads, e.g. W1,W2")
    p.add_argument("--json", metavar="PATH", help="results file (default bench/results/...)")
    p.add_argument("--tcp", action="store_true", help="loopback TCP instead of a unix socket")
    p.add_argument("--server", metavar="PATH", help="valkey-server/redis-server binary")
    p.add_argument("--w7-all", action="store_true", help="run W7 for every library")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # unwind: kill workers and server
    results = run(args)
    print(format_report(results))
    path = Path(args.json) if args.json else (
        env.ROOT / "bench" / "results" / f"compare-{dt.date.today().isoformat()}.json"
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    _progress(f"... results written to {path}")
    # Exit 1 only when jobq itself failed: an unavailable or failing peer is reported.
    return 1 if any(p.startswith(("jobq ", "jobq:")) for p in problems(results)) else 0


if __name__ == "__main__":
    sys.exit(main())
