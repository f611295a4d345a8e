"""Helpers shared by the benchmark driver and its worker child process."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

T = TypeVar("T")

#: Target size in bytes of the encoded job payload.
PAYLOAD_BYTES = 100


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop if it is installed, else on the stock asyncio loop."""
    try:
        uvloop: Any = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(coro)
    return cast(T, uvloop.run(coro))


def loop_name() -> str:
    """The event loop implementation :func:`run` uses."""
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return "asyncio"
    return "uvloop"


def payload(key: str, value: int) -> dict[str, Any]:
    """A job payload ``{key: value, "pad": "xxx..."}`` of about PAYLOAD_BYTES as compact JSON."""
    base = len(json.dumps({key: value, "pad": ""}, separators=(",", ":")))
    return {key: value, "pad": "x" * max(0, PAYLOAD_BYTES - base)}


def proc_status_kb(pid: int | str, field: str) -> int | None:
    """A ``kB`` field (VmHWM, VmRSS ...) of /proc/<pid>/status, or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """user + system CPU time of a live process from /proc/<pid>/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil(n * pct / 100)
    return sorted_values[min(len(sorted_values), int(rank)) - 1]
