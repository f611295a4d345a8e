"""Fixtures of the scale-out suite: a private Redis Cluster and a Sentinel group.

Each module gets its own deployment on free loopback ports in a temporary
directory (never the machine's shared Redis); everything is killed at
teardown. Without a usable server binary the tests skip, unless
``JOBQ_REQUIRE_SCALE=1`` makes that a failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.scale._servers import Cluster, SentinelGroup


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", "scale: runs jobq against a private Redis Cluster or Sentinel deployment"
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three masters on loopback, all 16384 slots covered."""
    c = Cluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def cluster_with_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three masters with one replica each."""
    c = Cluster(tmp_path_factory.mktemp("cluster-r"), replicas=True).start()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A primary, a replica and three sentinels on loopback."""
    g = SentinelGroup(tmp_path_factory.mktemp("sentinel")).start()
    try:
        yield g
    finally:
        g.close()


def unique(tag: str = "q") -> str:
    """A queue name no other test uses."""
    return f"{tag}-{uuid.uuid4().hex[:10]}"
