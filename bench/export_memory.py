"""Peak memory of a data export at 100,000 and 1,000,000 rows: it must not grow with the rows.

usage: python -m bench.export_memory [--rows 100000,1000000] [--formats csv,jsonl,xlsx]
                                     [--workdir DIR]

For each row count, a temporary SQLite database gets the small sample data
(reference tables) and then that many budget lines, inserted with one
``executemany``. Each export (``line-items``, every format asked for) runs in
a fresh child process through :func:`ppbe_jobs.services.dataio.export_data`,
the function the ``export-data`` processor runs in its worker thread. The
child reports its resident set before the export (modules loaded, database
open) and its peak (``VmHWM``) after; the table shows both and the growth,
and the last lines compare the peaks of the two row counts. Memory that
stays flat from 100,000 to 1,000,000 rows is the point; the time is shown too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from ._common import proc_status_kb

_ROOT = Path(__file__).resolve().parent.parent
_EXTRA_PES = 300  # sample data has 60 program elements: too few distinct lines for 1M rows


def build_database(path: Path, rows: int) -> None:
    """Sample reference data, then ``rows`` distinct budget lines, inserted in bulk."""
    from ppbe_jobs.db import BudgetKind, Database, seed

    with Database(path) as db:
        seed(db, scale="small")
    con = sqlite3.connect(path)
    try:
        con.execute("DELETE FROM budget_lines")
        org = con.execute("SELECT id FROM organizations ORDER BY id LIMIT 1").fetchone()[0]
        taken = {r[0] for r in con.execute("SELECT code FROM program_elements")}
        codes = [c for c in (f"06{n:05d}N" for n in range(10_000, 10_000 + 2 * _EXTRA_PES))
                 if c not in taken][:_EXTRA_PES]  # fmt: skip
        con.executemany(
            "INSERT INTO program_elements (code, title, organization_id) VALUES (?, ?, ?)",
            [(c, f"Benchmark program {c}", org) for c in codes],
        )
        pes = [r[0] for r in con.execute("SELECT id FROM program_elements ORDER BY id")]
        accounts = [r[0] for r in con.execute("SELECT id FROM appropriation_accounts ORDER BY id")]
        years = [r[0] for r in con.execute("SELECT year FROM fiscal_years ORDER BY year")]
        kinds = [k.value for k in BudgetKind]
        rng = random.Random(2026)

        def lines() -> Any:
            made = 0
            for pe in pes:
                for account in accounts:
                    for budget_year in years:
                        for fiscal_year in years:
                            for kind in kinds:
                                if made == rows:
                                    return
                                milli = rng.randrange(1, 5_000_000_000)
                                amount = str(Decimal(milli).scaleb(-3))
                                yield (pe, account, fiscal_year, budget_year, kind, amount)
                                made += 1

        con.executemany(
            "INSERT INTO budget_lines (program_element_id, appropriation_id, fiscal_year, "
            "budget_year, kind, amount_k) VALUES (?, ?, ?, ?, ?, ?)",
            lines(),
        )
        con.commit()
        got = con.execute("SELECT count(*) FROM budget_lines").fetchone()[0]
        if got != rows:
            raise SystemExit(f"could only make {got} distinct budget lines, not {rows}")
    finally:
        con.close()


def child(database: str, output: str, fmt: str) -> None:
    """Run one export in this process and print what it cost, as JSON."""
    from sqlalchemy import text

    from ppbe_jobs.db import Database
    from ppbe_jobs.services.dataio import ExportRequest, export_data

    with Database(database) as db:
        with db.session() as session:  # connect, so the baseline includes the driver
            session.execute(text("SELECT 1"))
        baseline = proc_status_kb("self", "VmRSS")
        request = ExportRequest.from_data(
            {"exportId": f"bench-{fmt}", "dataset": "line-items", "format": fmt}
        )
        started = time.perf_counter()
        result = export_data(db, output, request)
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": result.rows,
                "bytes": result.bytes,
                "seconds": seconds,
                "baseline_kb": baseline,
                "peak_kb": proc_status_kb("self", "VmHWM"),
            }
        )
    )


def run_child(database: Path, output: Path, fmt: str) -> dict[str, Any]:
    """One export in a fresh interpreter, so its peak is the export's alone."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.export_memory", "--child", str(database), str(output), fmt],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(_ROOT / "src")},
    )
    if done.returncode != 0:
        raise SystemExit(f"export child failed ({done.returncode}):\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    """Build the databases, run the exports, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.export_memory", description=__doc__)
    parser.add_argument("--rows", default="100000,1000000", help="row counts, comma-separated")
    parser.add_argument("--formats", default="csv,jsonl,xlsx", help="formats, comma-separated")
    parser.add_argument("--workdir", help="folder for databases and files (default: temporary)")
    parser.add_argument("--child", nargs=3, metavar=("DB", "OUT", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    counts = [int(x.replace("_", "")) for x in args.rows.split(",")]
    formats = [f.strip() for f in args.formats.split(",")]
    with tempfile.TemporaryDirectory(prefix="ppbe-export-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        results: dict[tuple[int, str], dict[str, Any]] = {}
        print(f"{'rows':>9} {'format':6} {'seconds':>8} {'file MB':>8} {'before MB':>9} "
              f"{'peak MB':>8} {'growth MB':>9}")  # fmt: skip
        for n in counts:
            database = work / f"lines-{n}.sqlite3"
            started = time.perf_counter()
            build_database(database, n)
            print(f"# {n:,} budget lines seeded in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr)  # fmt: skip
            for fmt in formats:
                r = run_child(database, work / f"out-{n}", fmt)
                if r["rows"] != n:
                    raise SystemExit(f"{fmt}: exported {r['rows']} rows, expected {n}")
                results[n, fmt] = r
                print(
                    f"{n:>9,} {fmt:6} {r['seconds']:>8.1f} {r['bytes'] / 1e6:>8.1f} "
                    f"{r['baseline_kb'] / 1024:>9.1f} {r['peak_kb'] / 1024:>8.1f} "
                    f"{(r['peak_kb'] - r['baseline_kb']) / 1024:>9.1f}",
                    flush=True,
                )
                (work / f"out-{n}" / "exports" / f"bench-{fmt}.{fmt}").unlink()
            database.unlink()
        if len(counts) >= 2:
            low, high = min(counts), max(counts)
            for fmt in formats:
                a, b = results[low, fmt], results[high, fmt]
                print(
                    f"{fmt}: peak RSS (VmHWM) {a['peak_kb'] / 1024:.1f} MB at {low:,} rows, "
                    f"{b['peak_kb'] / 1024:.1f} MB at {high:,} rows "
                    f"({(b['peak_kb'] - a['peak_kb']) / 1024:+.1f} MB for {high // low}x the rows)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
