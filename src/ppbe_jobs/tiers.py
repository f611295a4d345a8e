"""Tiers: "separate queues by priority", so bulk work can never starve critical work.

A job's priority (1 = highest, 100 = lowest) picks its tier, and each tier of
each named queue is its own jobq queue (``reports.critical``,
``reports.standard``, ``reports.bulk``) with its own workers. Within a tier,
jobs are served by priority, first in first out within a priority.

=========  ==========  ===========  ========
tier       priorities  concurrency  attempts
=========  ==========  ===========  ========
critical   1-10        10           5
standard   11-50       5            3
bulk       51-100      2            1
=========  ==========  ===========  ========

Bands and settings are configurable (:class:`TierConfig`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from jobq import ConfigurationError

__all__ = [
    "DEFAULT_QUEUE_PRIORITIES",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "Tier",
    "TierConfig",
    "physical_queue",
]

MIN_PRIORITY = 1
MAX_PRIORITY = 100

#: The named queues of the spec and the priority a job gets when it names none.
DEFAULT_QUEUE_PRIORITIES: dict[str, int] = {
    "critical": 5,
    "notifications": 15,
    "reports": 20,
    "budget-calculations": 25,
    "reminders": 30,
    "exports": 60,
    "imports": 60,
    "maintenance": 80,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Tier:
    """One tier: a band of priorities and how its workers run."""

    name: str
    low: int
    high: int
    concurrency: int
    attempts: int

    def __post_init__(self) -> None:
        if not MIN_PRIORITY <= self.low <= self.high <= MAX_PRIORITY:
            raise ConfigurationError(
                f"tier {self.name!r}: band {self.low}-{self.high} must lie within "
                f"{MIN_PRIORITY}-{MAX_PRIORITY} with low <= high"
            )
        if self.concurrency < 1 or self.attempts < 1:
            raise ConfigurationError(f"tier {self.name!r}: concurrency and attempts must be >= 1")

    def holds(self, priority: int) -> bool:
        """Whether ``priority`` falls in this tier's band."""
        return self.low <= priority <= self.high


def _default_tiers() -> tuple[Tier, ...]:
    return (
        Tier(name="critical", low=1, high=10, concurrency=10, attempts=5),
        Tier(name="standard", low=11, high=50, concurrency=5, attempts=3),
        Tier(name="bulk", low=51, high=100, concurrency=2, attempts=1),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class TierConfig:
    """The tiers, which together must cover priorities 1-100 without overlap."""

    tiers: Sequence[Tier] = field(default_factory=_default_tiers)

    def __post_init__(self) -> None:
        covered: list[int] = []
        for t in self.tiers:
            covered.extend(range(t.low, t.high + 1))
        if sorted(covered) != list(range(MIN_PRIORITY, MAX_PRIORITY + 1)):
            raise ConfigurationError(
                "tiers must cover priorities 1-100 exactly once each; got bands "
                + ", ".join(f"{t.name} {t.low}-{t.high}" for t in self.tiers)
            )
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"tier names must be unique, got {names}")

    def __iter__(self) -> Iterator[Tier]:
        return iter(self.tiers)

    @property
    def names(self) -> list[str]:
        """Tier names, most urgent first."""
        return [t.name for t in sorted(self.tiers, key=lambda t: t.low)]

    def get(self, name: str) -> Tier:
        """The tier called ``name``."""
        for t in self.tiers:
            if t.name == name:
                return t
        raise ConfigurationError(f"no tier named {name!r}; tiers are {', '.join(self.names)}")

    def for_priority(self, priority: int) -> Tier:
        """The tier that serves ``priority``; a clear error outside 1-100."""
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError(f"priority must be an integer 1-100, got {priority!r}")
        for t in self.tiers:
            if t.holds(priority):
                return t
        raise ConfigurationError(
            f"priority must be from {MIN_PRIORITY} (highest) to {MAX_PRIORITY} (lowest), "
            f"got {priority}"
        )


def physical_queue(queue: str, tier: str) -> str:
    """The jobq queue that holds ``queue``'s jobs of ``tier``."""
    return f"{queue}.{tier}"
