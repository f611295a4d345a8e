#!/usr/bin/env python3
"""One entry point for a fresh checkout: ``python3 run.py demo`` or ``python3 run.py test``.

It needs only Python 3.11+ and pip. On first use it makes a virtual
environment in ``.venv`` and installs the project into it (again whenever
``pyproject.toml`` changes), then runs the demo or the whole test suite
(ruff, mypy --strict, pytest).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".installed"


def sh(*cmd: str | os.PathLike[str], check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=check).returncode


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py may meet an older python3
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if not PY.exists():
        try:
            sh(sys.executable, "-m", "venv", VENV)
        except subprocess.CalledProcessError:
            # Debian-like systems without python3-venv: virtualenv from pip does the same.
            sh(sys.executable, "-m", "pip", "install", "--user", "--quiet", "virtualenv")
            sh(sys.executable, "-m", "virtualenv", VENV)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text().strip() != want:
        sh(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        sh(PY, "-m", "pip", "install", "--quiet", "-e", ".[test]")
        STAMP.write_text(want)


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "help"
    if what == "demo":
        ensure_venv()
        return sh(VENV / "bin" / "ppbe-jobs", "demo", *argv[1:], check=False)
    if what == "test":
        ensure_venv()
        for step in (
            (PY, "-m", "ruff", "check", "."),
            (PY, "-m", "ruff", "format", "--check", "."),
            (PY, "-m", "mypy"),
        ):
            if sh(*step, check=False) != 0:
                return 1
        return sh(PY, "-m", "pytest", *argv[1:], check=False)
    print(__doc__)
    return 0 if what in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
