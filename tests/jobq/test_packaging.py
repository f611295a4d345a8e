"""What ships: the wheel carries every Lua script, the public API is curated, headers exist."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import jobq
from jobq.scripts import SCRIPT_NAMES

ROOT = Path(__file__).resolve().parents[2]
LUA_DIR = ROOT / "src" / "jobq" / "scripts" / "lua"
LUA_FILES = sorted(LUA_DIR.rglob("*.lua"))


def _build_wheel(tmp_path: Path) -> Path:
    """Build a wheel from a copy of the project, so parallel runs share no build dir."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", project / "pyproject.toml")
    for extra in ("README.md", "LICENSE"):
        if (ROOT / extra).exists():
            shutil.copy2(ROOT / extra, project / extra)
    shutil.copytree(
        ROOT / "src",
        project / "src",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc"),
    )
    out = tmp_path / "dist"
    base = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(project)]
    # Isolated first (needs the build requirements from an index); without
    # isolation when no index is reachable.
    attempts = [base, [*base, "--no-isolation"]]
    logs = []
    for cmd in attempts:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode == 0:
            [wheel] = out.glob("*.whl")
            return wheel
        logs.append(f"$ {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    raise AssertionError("building the wheel failed:\n" + "\n".join(logs))


def test_wheel_ships_every_lua_script_and_py_typed(tmp_path: Path) -> None:
    assert len(LUA_FILES) >= 15  # the scripts plus their includes
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in LUA_FILES:
            member = "jobq/" + path.relative_to(ROOT / "src" / "jobq").as_posix()
            assert member in names, f"{member} missing from {wheel.name}"
            assert zf.read(member) == path.read_bytes(), member
    assert "jobq/py.typed" in names
    assert "jobq/scripts/__init__.py" in names


# --- the public API ------------------------------------------------------------------


def _natural(name: str) -> list[tuple[int, int | str]]:
    """Natural-sort key: runs of digits compare as numbers (as ruff's RUF022 does)."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def _isort_key(name: str) -> tuple[int, list[tuple[int, int | str]]]:
    """RUF022's isort-style order: CONSTANTS, then Classes, then everything else."""
    if len(name) > 1 and name.upper() == name and name.lower() != name:
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    return group, _natural(name)


def test_all_is_sorted_isort_style() -> None:
    assert jobq.__all__ == sorted(jobq.__all__, key=_isort_key)
    assert len(set(jobq.__all__)) == len(jobq.__all__)


def test_all_is_exactly_the_public_names() -> None:
    for name in jobq.__all__:
        assert hasattr(jobq, name), f"jobq.__all__ names {name!r}, which jobq lacks"
    public = {
        name
        for name, value in vars(jobq).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    exported = {name for name in jobq.__all__ if not name.startswith("_")}
    assert public == exported
    assert "__version__" in jobq.__all__
    assert isinstance(jobq.__version__, str)


def test_every_exported_class_and_function_has_its_own_docstring() -> None:
    missing = []
    for name in jobq.__all__:
        obj = getattr(jobq, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants (MAX_PRIORITY, __version__) cannot carry docstrings
        doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
        # A dataclass without a docstring gets its signature as __doc__.
        if not doc or not doc.strip() or doc.startswith(f"{obj.__name__}("):
            missing.append(name)
    assert missing == []
    assert jobq.__doc__
    assert jobq.__doc__.strip()


# --- Lua headers ---------------------------------------------------------------------


def _header(path: Path) -> list[str]:
    """The comment block a script opens with (before its first line of code)."""
    lines = []
    for line in path.read_text("utf-8").splitlines():
        if not line.startswith("--") or line.startswith("--@include"):
            break
        lines.append(line)
    return lines


def test_every_lua_file_opens_with_a_documented_header() -> None:
    scripts = [p for p in LUA_FILES if p.parent == LUA_DIR]
    assert {p.stem for p in scripts} == set(SCRIPT_NAMES)
    for path in scripts:
        header = _header(path)
        text = "\n".join(header)
        assert header, f"{path.name} has no header comment"
        assert header[0].startswith(f"-- {path.stem}:"), f"{path.name} header does not name it"
        assert "KEYS" in text, f"{path.name} header does not document KEYS"
        assert "ARGV" in text, f"{path.name} header does not document ARGV"
        assert re.search(r"ARGV\[1\]|ARGV: none", text), f"{path.name}: ARGV not listed"
        assert "Returns" in text, f"{path.name} header does not document the return value"
        # Every ARGV index the code reads is documented in the header.
        body = path.read_text("utf-8")[len(text) :]
        used = set(re.findall(r"ARGV\[(\d+)\]", body))
        documented = set(re.findall(r"ARGV\[(\d+)\]", text))
        assert used <= documented, f"{path.name}: ARGV {sorted(used - documented)} undocumented"


def test_every_include_opens_with_a_header() -> None:
    includes = {p.stem: _header(p) for p in LUA_FILES if p.parent != LUA_DIR}
    assert set(includes) == {"claim", "common", "recover", "schedule"}
    common = "\n".join(includes.pop("common"))
    # common.lua documents the one key every script receives and the keys it derives.
    assert "KEYS[1]" in common
    for key in ["wait", "prio", "delayed", "active", "completed", "failed", "meta", "events"]:
        assert re.search(rf"--\s+base:{key}\b", common), key
    for name, header in includes.items():
        text = "\n".join(header)
        assert "Needs:" in text, f"includes/{name}.lua does not say what it needs"
        assert "Returns" in text, f"includes/{name}.lua does not document its return value"
