"""What every writer shares: the result type, progress, and the atomic write.

A writer renders into a temporary file in the destination's own folder and
moves it over the destination with :func:`os.replace` only when it is complete
and flushed to disk. A rerun therefore replaces the file in one step, and a
crash (or an exception from the progress callback) leaves the previous file, or
no file, but never half of one.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Progress", "ProgressCallback", "RenderedFile", "ReportFormat", "write_atomically"]

ProgressCallback = Callable[[int], None]
"""Called with a whole percentage, 0 to 100, never decreasing, never repeated."""

_FILE_MODE = 0o644  # mkstemp makes 0600; a report is meant to be read by others


class ReportFormat(enum.StrEnum):
    """The file formats a report can be written as; the value is the file suffix."""

    PDF = "pdf"
    XLSX = "xlsx"
    CSV = "csv"


@dataclass(frozen=True, kw_only=True, slots=True)
class RenderedFile:
    """A report file in place: where, its SHA-256 (hex), its size and format."""

    path: Path
    sha256: str
    bytes: int
    format: ReportFormat


class Progress:
    """Turns "step i of n" into the whole percentages a :data:`ProgressCallback` wants.

    Each percentage is reported at most once, in increasing order. Rendering
    owns 0-95; the last 5 are finishing the file and moving it into place.
    """

    def __init__(self, callback: ProgressCallback | None, steps: int) -> None:
        self._callback = callback
        self._steps = max(steps, 1)
        self._last = -1

    def report(self, percent: int) -> None:
        """Report ``percent`` if it is higher than the last one reported."""
        percent = max(0, min(100, percent))
        if self._callback is not None and percent > self._last:
            self._last = percent
            self._callback(percent)

    def step(self, done: int) -> None:
        """``done`` of the rendering steps are finished."""
        self.report(done * 95 // self._steps)


def write_atomically(
    path: str | os.PathLike[str], fmt: ReportFormat, render: Callable[[Path], None]
) -> RenderedFile:
    """Run ``render(temporary_path)``, then move the finished file over ``path``.

    The temporary file sits beside ``path`` (same folder, so the move is one
    atomic rename) and is flushed to disk before the move. If ``render`` raises,
    the temporary file is removed and ``path`` is left as it was. The parent
    folder is created if missing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        render(tmp)
        digest = hashlib.sha256()
        size = 0
        with open(tmp, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)
    return RenderedFile(path=target, sha256=digest.hexdigest(), bytes=size, format=fmt)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
