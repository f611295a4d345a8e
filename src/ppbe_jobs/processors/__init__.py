"""The job processors, and one place that registers them on a QueueManager.

=====================  ===============================  ==================================
named queue            job names                        module
=====================  ===============================  ==================================
reports                generate-report                  :mod:`.reports`
notifications          send-notification                :mod:`.notifications`
critical               send-notification (urgent)       :mod:`.notifications`
budget-calculations    calculate                        :mod:`.calculations`
exports                export-data                      :mod:`.exports`
imports                import-data                      :mod:`.imports`
reminders              send-reminder                    :mod:`.reminders`
maintenance            cleanup-old-data                 :mod:`.maintenance`
=====================  ===============================  ==================================

Every processor is ``async def process(job, services)``; :func:`register_all`
binds the :class:`~ppbe_jobs.processors.services.Services` and sends jobs whose
name the processor does not know to the dead-letter queue with a clear reason.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from jobq import Job, UnrecoverableError
from ppbe_jobs.config import Settings
from ppbe_jobs.db import Database
from ppbe_jobs.manager import QueueManager
from ppbe_jobs.notify import SmtpSettings
from ppbe_jobs.processors import (
    calculations,
    exports,
    imports,
    maintenance,
    notifications,
    reminders,
    reports,
)
from ppbe_jobs.processors.services import Services

__all__ = ["PROCESSORS", "Services", "build_services", "register_all"]

#: Named queue -> processor module (the critical tier's own queue sends urgent notifications).
PROCESSORS: dict[str, ModuleType] = {
    "reports": reports,
    "notifications": notifications,
    "critical": notifications,
    "budget-calculations": calculations,
    "exports": exports,
    "imports": imports,
    "reminders": reminders,
    "maintenance": maintenance,
}


def build_services(
    manager: QueueManager, settings: Settings, *, database: Database | None = None
) -> Services:
    """Services from the settings: the database, output folder and SMTP (if configured)."""
    import os

    smtp = SmtpSettings.from_env() if os.environ.get("SMTP_HOST") else None
    return Services(
        database=database or Database(settings.resolved_database_url),
        output_dir=Path(settings.output_dir),
        smtp=smtp,
        manager=manager,
    )


def _bind(module: ModuleType, services: Services) -> Callable[[Job], Awaitable[Any]]:
    names: tuple[str, ...] = module.JOB_NAMES
    process = functools.partial(module.process, services=services)

    async def run(job: Job) -> Any:
        if job.name not in names:
            raise UnrecoverableError(
                f"queue {job.queue_name!r} has no processor for job name {job.name!r}; "
                f"it handles {', '.join(names)}"
            )
        return await process(job)

    run.__name__ = f"{module.__name__}.process"
    return run


def register_all(
    manager: QueueManager,
    services: Services | None = None,
    *,
    only: Sequence[str] | None = None,
) -> Services:
    """Register every processor (or those of ``only``) on ``manager``; returns the services."""
    services = services or build_services(manager, manager.settings)
    for queue, module in PROCESSORS.items():
        if only is None or queue in only:
            manager.register_processor(queue, _bind(module, services))
    return services
