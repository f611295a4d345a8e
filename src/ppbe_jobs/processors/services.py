"""What the job processors work with: the database, the output folder, SMTP, the queues."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ppbe_jobs.db import Database
from ppbe_jobs.notify import SmtpSettings

if TYPE_CHECKING:
    from ppbe_jobs.manager import QueueManager

__all__ = ["Services"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Services:
    """The dependencies of every processor, built once per worker process.

    database: the domain database.
    output_dir: where reports and exports are written (created on demand).
    smtp: how e-mail is sent; None means e-mail notifications fail for good
        with a clear reason (in-app notifications still work).
    manager: the queue manager, for follow-up jobs (a report's notification).
    """

    database: Database
    output_dir: Path
    smtp: SmtpSettings | None
    manager: QueueManager
