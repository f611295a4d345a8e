"""The ``jobq`` command line: run workers and operate queues.

Connection: ``--url``, else ``REDIS_URL`` (or ``REDIS_HOST``/``REDIS_PORT``/...);
with nothing configured the CLI refuses (it never starts the embedded server,
which would be empty). Exit codes: 0 done or healthy, 1 refused (no ``--yes``)
or unhealthy, 2 a user mistake or Redis unreachable.
"""

from __future__ import annotations

from . import _admin, _dashboard, _inspect, _worker  # noqa: F401 - they register the commands
from ._app import cli, log_options, main

__all__ = ["cli", "log_options", "main"]
