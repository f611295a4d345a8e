"""What happened to every job of a fault run: lost, duplicated, stuck, how fast recovered.

Two records feed it:

- the **producer** keeps the id of every add the server acknowledged
  (:class:`Producer`); an add that raised counts as not acknowledged;
- every **execution** is a line appended by the processor to a per-run file
  (:class:`ExecutionLog`): ``S <job id> <pid> <attempts made> <token> <t>`` when
  it starts and ``D ...`` when it returns (``t`` is ``time.monotonic()``, one
  clock for every process of the machine).

Why a file opened with ``O_APPEND`` and not a Redis list: the record must not
depend on the thing under test. Scenarios kill and restart Redis, cut and
black-hole its connections; a list on the same server would lose or delay the
very lines that tell what happened, and a second server would be one more
process to keep alive. Each line is one ``write(2)`` of less than ``PIPE_BUF``
bytes on a local file, so lines of concurrent processes never interleave and a
process killed at any point leaves whole lines only.

At the end :func:`analyse` reads the final state of every acknowledged job
from Redis and reports the figures every scenario asserts on; :func:`add_row`
puts one row in the summary table the conftest prints and writes.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobq import BulkJob, JobOptions, Queue
from jobq.keys import QueueKeys

#: Multiplies the job counts of the scenarios (``JOBQ_FAULTS_SCALE=5`` for a long run).
SCALE = float(os.environ.get("JOBQ_FAULTS_SCALE") or 1)


def scaled(n: int) -> int:
    """``n`` times the scale factor (at least 1)."""
    return max(1, int(n * SCALE))


# -- the execution record -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Execution:
    """One line of the execution log."""

    kind: str  # "S" started, "D" done (the processor returned)
    job_id: str
    pid: int
    attempts_made: int
    token: str
    at: float  # time.monotonic()


def write_execution(fd: int, kind: str, job_id: str, attempts_made: int, token: str) -> None:
    """Append one line (in the worker process; ``fd`` from :meth:`ExecutionLog.open_fd`)."""
    line = f"{kind} {job_id} {os.getpid()} {attempts_made} {token or '-'} {time.monotonic():.6f}\n"
    os.write(fd, line.encode())


class ExecutionLog:
    """The per-run execution file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    @staticmethod
    def open_fd(path: str) -> int:
        """Open for appending (in the writer process)."""
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def read(self) -> list[Execution]:
        """Every whole line written so far."""
        out: list[Execution] = []
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 6:
                continue  # cannot happen with single writes; be safe anyway
            kind, job_id, pid, attempts, token, at = parts
            out.append(Execution(kind, job_id, int(pid), int(attempts), token, float(at)))
        return out

    def starts(self) -> dict[str, list[Execution]]:
        """Job id -> its start lines, oldest first."""
        by_job: dict[str, list[Execution]] = defaultdict(list)
        for e in self.read():
            if e.kind == "S":
                by_job[e.job_id].append(e)
        return by_job

    def count(self, kind: str = "S") -> int:
        """How many lines of this kind."""
        return sum(1 for e in self.read() if e.kind == kind)


# -- the producer ----------------------------------------------------------------------


class Producer:
    """Adds jobs and keeps the ids the server acknowledged."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.acked: list[str] = []
        self.refused = 0  # adds that raised (not acknowledged; they may still exist)

    async def add_many(
        self,
        n: int,
        data: Any = None,
        *,
        name: str = "work",
        options: JobOptions | None = None,
        batch: int = 500,
    ) -> list[str]:
        """Add ``n`` jobs in batches (each batch all or nothing); the ids acknowledged."""
        ids: list[str] = []
        while len(ids) < n:
            size = min(batch, n - len(ids))
            jobs = await self.queue.add_bulk([BulkJob(name, data, options) for _ in range(size)])
            ids += [j.id for j in jobs]
        self.acked += ids
        return ids

    async def add_one(self, name: str = "work", data: Any = None) -> str | None:
        """Add one job; its id once acknowledged, None if the add raised."""
        try:
            job = await self.queue.add(name, data)
        except Exception:
            self.refused += 1
            return None
        self.acked.append(job.id)
        return job.id


# -- the analysis ----------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    """The figures of one run."""

    jobs: int
    completed: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # id -> failure reason
    dead_lettered: set[str] = field(default_factory=set)
    lost: list[str] = field(default_factory=list)
    wrong_state: dict[str, str] = field(default_factory=dict)  # id -> where it is
    duplicates: dict[str, int] = field(default_factory=dict)  # id -> extra executions
    explained: dict[str, int] = field(default_factory=dict)
    unexplained: dict[str, int] = field(default_factory=dict)
    recovery: dict[str, float] = field(default_factory=dict)  # orphan id -> seconds

    @property
    def duplicate_count(self) -> int:
        """Extra executions in all."""
        return sum(self.duplicates.values())

    @property
    def explained_count(self) -> int:
        """Extra executions of jobs that were running in a killed worker."""
        return sum(self.explained.values())

    @property
    def max_recovery(self) -> float:
        """The slowest orphan's kill-to-restart time, seconds (0 with no orphan)."""
        return max(self.recovery.values(), default=0.0)

    def describe(self) -> str:
        """A short text for assertion messages."""
        return (
            f"jobs={self.jobs} completed={len(self.completed)} failed={len(self.failed)} "
            f"dead-lettered={len(self.dead_lettered)} lost={self.lost[:10]} "
            f"wrong_state={dict(list(self.wrong_state.items())[:10])} "
            f"unexplained duplicates={dict(list(self.unexplained.items())[:10])} "
            f"max recovery={self.max_recovery:.2f}s"
        )


async def _final_states(queue: Queue, ids: Sequence[str]) -> dict[str, str]:
    """Where each job is now: completed, failed, active, delayed, waiting or gone."""
    client: Any = queue.client
    k = queue.keys
    waiting = {i.decode() for i in await client.lrange(k.wait, 0, -1)}
    waiting |= {i.decode() for i in await client.zrange(k.prio, 0, -1)}
    states: dict[str, str] = {}
    for start in range(0, len(ids), 2_000):
        chunk = ids[start : start + 2_000]
        async with client.pipeline(transaction=False) as pipe:
            for job_id in chunk:
                pipe.zscore(k.completed, job_id)
                pipe.zscore(k.failed, job_id)
                pipe.zscore(k.active, job_id)
                pipe.zscore(k.delayed, job_id)
                pipe.exists(k.job(job_id))
            replies = await pipe.execute()
        for i, job_id in enumerate(chunk):
            done, failed, active, delayed, exists = replies[i * 5 : i * 5 + 5]
            if done is not None:
                states[job_id] = "completed"
            elif failed is not None:
                states[job_id] = "failed"
            elif active is not None:
                states[job_id] = "active"
            elif delayed is not None:
                states[job_id] = "delayed"
            elif job_id in waiting:
                states[job_id] = "waiting"
            else:
                states[job_id] = "gone" if not exists else "nowhere"
    return states


async def analyse(
    queue: Queue,
    acked: Iterable[str],
    log: ExecutionLog,
    *,
    killed: Mapping[int, float] | None = None,
    dead_letter_queue: str | None = None,
) -> Report:
    """Compare the acknowledged adds and the execution log with the final state.

    ``killed`` maps the pid of every worker that died (killed, or killed
    itself) to the ``time.monotonic()`` of its death. A job is *completed* if
    it is in ``completed``, or is gone from Redis (retention removed it) after
    a ``D`` line; *dead-lettered* if the dead-letter queue holds its entry.
    """
    ids = list(dict.fromkeys(acked))
    killed = dict(killed or {})
    report = Report(jobs=len(ids))
    states = await _final_states(queue, ids)
    executions = log.read()
    done_ids = {e.job_id for e in executions if e.kind == "D"}
    failed_ids = [i for i, s in states.items() if s == "failed"]
    client: Any = queue.client
    if failed_ids:
        async with client.pipeline(transaction=False) as pipe:
            for job_id in failed_ids:
                pipe.hget(queue.keys.job(job_id), "fr")
            reasons = await pipe.execute()
        report.failed = {
            i: (r.decode("utf-8", "replace") if r else "")
            for i, r in zip(failed_ids, reasons, strict=True)
        }
    if dead_letter_queue is not None:
        dlq = QueueKeys(queue.keys.prefix, dead_letter_queue)
        entries = await client.zrange(dlq.dead_letters, 0, -1)
        origin = f"{queue.name}:"
        report.dead_lettered = {
            e.decode()[len(origin) :] for e in entries if e.decode().startswith(origin)
        }
    for job_id in ids:
        state = states[job_id]
        if state == "completed" or (state == "gone" and job_id in done_ids):
            if job_id not in report.dead_lettered:
                report.completed.add(job_id)
        elif state == "failed" or job_id in report.dead_lettered:
            pass
        else:
            report.lost.append(job_id)
            report.wrong_state[job_id] = state

    starts: dict[str, list[Execution]] = defaultdict(list)
    for e in executions:
        if e.kind == "S":
            starts[e.job_id].append(e)
    for job_id, runs in starts.items():
        if len(runs) < 2:
            continue
        extra = len(runs) - 1
        report.duplicates[job_id] = extra
        # Every run but the last must have been in a worker that then died.
        if all(r.pid in killed and killed[r.pid] >= r.at for r in runs[:-1]):
            report.explained[job_id] = extra
        else:
            report.unexplained[job_id] = extra
        for earlier, later in itertools.pairwise(runs):
            died = killed.get(earlier.pid)
            if died is not None and later.pid != earlier.pid and later.at >= died:
                report.recovery[job_id] = max(report.recovery.get(job_id, 0.0), later.at - died)
    return report


# -- the summary table -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the summary table."""

    scenario: str
    jobs: int
    workers: int
    faults: str
    lost: int
    duplicates: int
    explained: int
    max_recovery_s: float | None
    wall_s: float


HEADER = (
    "| scenario | jobs | workers | faults injected | lost | duplicates | "
    "explained duplicates | max recovery s | wall s |"
)
RULE = "|---|---:|---:|---|---:|---:|---:|---:|---:|"

#: The rows of this test session, in the order the scenarios ran.
SUMMARY: list[Row] = []


def format_row(row: Row) -> str:
    """The row as a Markdown table line."""
    recovery = "-" if row.max_recovery_s is None else f"{row.max_recovery_s:.2f}"
    return (
        f"| {row.scenario} | {row.jobs} | {row.workers} | {row.faults} | {row.lost} | "
        f"{row.duplicates} | {row.explained} | {recovery} | {row.wall_s:.1f} |"
    )


def add_row(
    scenario: str,
    *,
    jobs: int,
    workers: int,
    faults: str,
    started: float,
    report: Report | None = None,
    explained: int | None = None,
    max_recovery_s: float | None = None,
) -> Row:
    """Record (and print) the row of a scenario; ``started`` is its ``time.monotonic()``.

    ``explained`` overrides the report's count where a scenario's duplicates have
    a cause other than a killed worker (a hand-back at shutdown, a lost lease).
    """
    lost = duplicates = 0
    if report is not None:
        lost = len(report.lost)
        duplicates = report.duplicate_count
        if explained is None:
            explained = report.explained_count
        if max_recovery_s is None and report.recovery:
            max_recovery_s = report.max_recovery
    row = Row(
        scenario,
        jobs,
        workers,
        faults,
        lost,
        duplicates,
        explained or 0,
        max_recovery_s,
        time.monotonic() - started,
    )
    SUMMARY.append(row)
    print(f"\n{HEADER}\n{format_row(row)}")
    return row


def summary_markdown(rows: Sequence[Row]) -> str:
    """The whole table, in scenario order."""

    def number(row: Row) -> int:
        digits = re.match(r"\d+", row.scenario)
        return int(digits[0]) if digits else 0

    ordered = sorted(rows, key=lambda r: (number(r), r.scenario))
    return "\n".join([HEADER, RULE, *(format_row(r) for r in ordered)]) + "\n"
