"""``python -m bench.compare`` end to end, jobq only, tiny sizes (no virtualenv is built),
and the harness's rule for short runs.

The harness starts its own private server; this checks the protocol between
the harness and the jobq adapter (READY/go/RESULT, fill, enqueue roles) and
that the JSON carries real, positive figures. Speed itself is never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._compare_workloads import SHORT_RUN_S, Ctx, Sizes, _median_run

ROOT = Path(__file__).resolve().parent.parent


def test_compare_quick_jobq_w1_w2(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.compare",
            "--quick",
            "--tiny",
            "--only",
            "jobq",
            "--workloads",
            "W1,W2",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["workloads"] == ["W1", "W2"]
    assert list(results["libraries"]) == ["jobq"]
    jobq = results["libraries"]["jobq"]
    assert "unavailable" not in jobq
    n_enqueue = results["sizes"]["enqueue"]
    for key in ("single", "bulk"):
        w1 = jobq["W1"][key]
        assert w1["jobs"] == n_enqueue
        assert w1["jobs_per_s"] > 0
        assert w1["server_cpu_us_per_job"] > 0
    # remove_on_complete is not involved in W1: every job is still there.
    assert jobq["W1"]["bulk"]["waiting_keys"] >= n_enqueue
    n_drain = results["sizes"]["drain"]
    for key, concurrency in (("main", 50), ("c1", 1)):
        w2 = jobq["W2"][key]
        assert w2["jobs"] == n_drain
        assert w2["concurrency"] == concurrency
        assert w2["jobs_per_s"] > 0
        assert w2["worker_cpu_us_per_job"] > 0
        assert w2["server_cpu_us_per_job"] > 0
        assert w2["worker_peak_rss_kb"] > 0
        # The adapter removes jobs on completion: the drained queue holds no job hashes.
        assert w2["left_keys"] < n_drain
    assert "W3" not in jobq
    # The table made it to stdout, with no problem section.
    assert "W2 drain" in proc.stdout
    assert "PROBLEMS" not in proc.stdout


def _ctx(mode: str) -> Ctx:
    quick = mode == "quick"
    return Ctx(url="", client=None, env={}, sizes=Sizes.make(quick, tiny=mode == "tiny"), log=print)


def test_a_short_run_is_run_three_times_and_the_median_kept() -> None:
    rates = iter([300.0, 100.0, 200.0])
    calls = 0

    def run() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        rate = next(rates)
        return {"seconds": 1.0, "jobs_per_s": rate, "tag": rate}

    got = _median_run(run, _ctx("full"))
    assert calls == 3
    assert (got["tag"], got["runs_jobs_per_s"]) == (200.0, [100.0, 200.0, 300.0])


@pytest.mark.parametrize(
    ("result", "mode"),
    [
        ({"seconds": SHORT_RUN_S, "jobs_per_s": 1.0}, "full"),  # long enough
        ({"unsupported": "no bulk API"}, "full"),
        ({"seconds": 0.1, "jobs_per_s": 1.0}, "tiny"),  # the tests' own sizes
    ],
)
def test_a_long_or_unsupported_run_is_run_once(result: dict[str, Any], mode: str) -> None:
    calls = 0

    def run() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return dict(result)

    assert _median_run(run, _ctx(mode)) == result
    assert calls == 1
