"""Health rules over queue snapshots, shared by ``jobq check`` and the dashboard.

The specification's rules: a queue is unhealthy when more than
``max_waiting`` jobs wait, when its failure rate over the last hour is above
``max_failure_rate``, or when fewer than ``min_workers`` workers have a
current heartbeat. Each problem is one sentence naming the queue and the
figure, ready for a probe's output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ConfigurationError
from .metrics import QueueSnapshot

__all__ = ["HealthRules", "problems"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthRules:
    """Thresholds; None (or 0 workers) turns a rule off."""

    max_waiting: int | None = None
    max_failure_rate: float | None = None
    min_workers: int = 0

    def __post_init__(self) -> None:
        if self.max_waiting is not None and self.max_waiting < 0:
            raise ConfigurationError(f"max_waiting must be >= 0, got {self.max_waiting}")
        rate = self.max_failure_rate
        if rate is not None and not 0 <= rate <= 1:
            raise ConfigurationError(f"max_failure_rate must be within 0..1, got {rate}")
        if self.min_workers < 0:
            raise ConfigurationError(f"min_workers must be >= 0, got {self.min_workers}")


def problems(snapshots: Iterable[QueueSnapshot], rules: HealthRules) -> list[str]:
    """What breaks ``rules``, one line per problem; empty when every queue is healthy."""
    out: list[str] = []
    for s in snapshots:
        c = s.counts
        waiting = c.get("waiting", 0) + c.get("prioritized", 0) + c.get("paused", 0)
        if rules.max_waiting is not None and waiting > rules.max_waiting:
            out.append(f"{s.queue}: {waiting} waiting jobs > {rules.max_waiting}")
        limit = rules.max_failure_rate
        if limit is not None and s.failure_rate > limit:
            out.append(f"{s.queue}: failure rate {s.failure_rate:.1%} > {limit:.1%}")
        if s.workers_alive < rules.min_workers:
            out.append(f"{s.queue}: {s.workers_alive} workers alive < {rules.min_workers}")
    return out
