"""Adapters of ``bench.compare``: discovery, environments, and their processes.

An adapter is ``bench/peers/<lib>.py`` (any name not starting with ``_``) or
``bench/peers/bullmq_node/adapter.mjs``. jobq's runs on this interpreter;
every other Python adapter on its own virtualenv ``bench/.venvs/<lib>/``,
built from ``bench/peers/requirements/<lib>.txt`` and rebuilt when that file
changes (a SHA-256 stamp in the venv); the Node one after ``npm ci``. An
environment that cannot be built makes the adapter "unavailable", with the
reason, and the run goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
REQUIREMENTS = PEERS / "requirements"
VENVS = ROOT / "bench" / ".venvs"
NODE_DIR = PEERS / "bullmq_node"
_STAMP = ".bench-requirements.sha256"
_NODE_STAMP = ".bench-lock.sha256"
_BUILD_TIMEOUT = 900.0


class AdapterError(RuntimeError):
    """An adapter process failed, timed out or broke the protocol."""


@dataclass(slots=True)
class Adapter:
    """One library's adapter: how to run it, or why it cannot run."""

    name: str
    kind: str  # "project" (jobq), "python" (own venv) or "node"
    script: Path
    command: list[str] = field(default_factory=list)
    version: str | None = None
    unavailable: str | None = None

    @property
    def is_python_peer(self) -> bool:
        """A Python library other than jobq."""
        return self.kind == "python"


def discover() -> list[Adapter]:
    """Every adapter present, jobq first, then Python peers by name, then Node."""
    found: list[Adapter] = []
    for path in sorted(PEERS.glob("*.py")):
        name = path.stem
        if name.startswith("_"):
            continue
        kind = "project" if name == "jobq" else "python"
        found.append(Adapter(name, kind, path))
    node_script = NODE_DIR / "adapter.mjs"
    if node_script.exists():
        found.append(Adapter("bullmq_node", "node", node_script))
    found.sort(key=lambda a: (a.kind != "project", a.kind == "node", a.name))
    return found


def _sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def _tail(text: str | bytes, lines: int = 3) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    kept = [ln for ln in text.strip().splitlines() if ln.strip() and "is ignored" not in ln]
    return " | ".join(kept[-lines:])[-500:] or "no output"


def _pin(requirements: Path, dist: str) -> str | None:
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        head, sep, version = line.partition("==")
        if sep and head.split("[", 1)[0].strip().lower().replace("_", "-") == dist:
            return version.strip()
    return None


def _run_build(cmd: list[str], cwd: Path, log: Any) -> None:
    log(f"    $ {' '.join(cmd)}")
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, timeout=_BUILD_TIMEOUT, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise AdapterError(f"{Path(cmd[0]).name} failed: {_tail(proc.stderr or proc.stdout)}")


def _prepare_python(adapter: Adapter, log: Any) -> None:
    req = REQUIREMENTS / f"{adapter.name}.txt"
    if not req.exists():
        raise AdapterError(f"no requirements file bench/peers/requirements/{req.name}")
    adapter.version = _pin(req, adapter.name.replace("_py", "").replace("_", "-"))
    venv = VENVS / adapter.name
    python = venv / "bin" / "python"
    stamp = venv / _STAMP
    want = _sha256(req)
    have = stamp.read_text(encoding="ascii").strip() if stamp.exists() else None
    if python.exists() and have == want:
        adapter.command = [str(python), "-P", str(adapter.script)]
        return
    if (have is not None and have != want) or (venv.exists() and not python.exists()):
        log(f"  {adapter.name}: requirements changed, rebuilding {venv.relative_to(ROOT)}")
        shutil.rmtree(venv)
    if not python.exists():
        log(f"  {adapter.name}: creating {venv.relative_to(ROOT)}")
        VENVS.mkdir(parents=True, exist_ok=True)
        _run_build(["python3", "-m", "venv", str(venv)], ROOT, log)
    else:
        log(f"  {adapter.name}: adopting the existing {venv.relative_to(ROOT)}")
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run_build([*pip, "-r", str(req)], ROOT, log)
    stamp.write_text(want + "\n", encoding="ascii")
    adapter.command = [str(python), "-P", str(adapter.script)]


def _prepare_node(adapter: Adapter, log: Any) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise AdapterError("node/npm not found on PATH")
    lock = NODE_DIR / "package-lock.json"
    pkg = NODE_DIR / "package.json"
    if not lock.exists() or not pkg.exists():
        raise AdapterError("bench/peers/bullmq_node needs package.json and package-lock.json")
    with contextlib.suppress(OSError, ValueError, KeyError):
        deps = json.loads(pkg.read_text(encoding="utf-8")).get("dependencies", {})
        adapter.version = deps.get("bullmq")
    modules = NODE_DIR / "node_modules"
    stamp = modules / _NODE_STAMP
    want = _sha256(pkg, lock)
    have = stamp.read_text(encoding="ascii").strip() if stamp.exists() else None
    if have is None and (modules / ".package-lock.json").exists():
        # Installed by hand (npm ci/install): adopt it rather than wipe it.
        log("  bullmq_node: adopting the existing node_modules")
        stamp.write_text(want + "\n", encoding="ascii")
    elif have != want:
        log("  bullmq_node: npm ci")
        _run_build([npm, "ci", "--no-audit", "--no-fund"], NODE_DIR, log)
        stamp.write_text(want + "\n", encoding="ascii")
    adapter.command = [node, str(adapter.script)]


def prepare(adapter: Adapter, log: Any) -> None:
    """Build (or check) the adapter's environment; sets ``command`` or ``unavailable``."""
    try:
        if adapter.kind == "project":
            import jobq

            adapter.version = jobq.__version__
            adapter.command = [sys.executable, "-P", str(adapter.script)]
        elif adapter.kind == "python":
            _prepare_python(adapter, log)
        else:
            _prepare_node(adapter, log)
    except (AdapterError, OSError, subprocess.SubprocessError) as exc:
        adapter.unavailable = str(exc) or type(exc).__name__


def child_env(scratch: Path) -> dict[str, str]:
    """Environment of every adapter process (see ``bench/peers/_proto.py`` on imports).

    ``scratch``: a private directory of this run; it gets a copy of
    ``_proto.py`` so that ``import _proto`` works without putting
    ``bench/peers`` (whose ``rq.py`` would shadow ``rq``) on the path.
    """
    (scratch / "_proto.py").write_bytes((PEERS / "_proto.py").read_bytes())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(scratch)])
    env["BENCH_PARENT_PID"] = str(os.getpid())
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONSTARTUP", None)
    return env


# --- adapter processes ----------------------------------------------------------------------


def _args(role: str, url: str, queue: str, n: int, opts: dict[str, Any] | None = None) -> list[str]:
    out = [role, "--url", url, "--queue", queue, "--n", str(n)]
    for key, value in (opts or {}).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not None and value is not False:
            out += [flag, str(value)]
    return out


def _parse_result(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            parsed: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return parsed
    return None


class Proc:
    """One adapter process; :meth:`kill` (also used by ``with``) never leaves it behind."""

    def __init__(
        self,
        adapter: Adapter,
        role: str,
        url: str,
        queue: str,
        n: int,
        env: dict[str, str],
        **opts: Any,
    ) -> None:
        self.adapter = adapter
        self.role = role
        # Files, not pipes, so a chatty adapter never blocks; kill() closes them.
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*adapter.command, *_args(role, url, queue, n, opts)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE if role == "work" else subprocess.DEVNULL,
            stdout=subprocess.PIPE if role == "work" else self._out,
            stderr=self._err,
            start_new_session=True,  # so kill() can take the adapter's own children too
        )

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def stderr_tail(self, lines: int = 6) -> str:
        self._err.seek(0)
        return _tail(self._err.read(), lines)

    def _fail(self, what: str) -> AdapterError:
        tail = self.stderr_tail()
        return AdapterError(f"{self.adapter.name} {self.role}: {what}; stderr: {tail}")

    # -- one-shot roles

    def wait_result(self, timeout: float) -> dict[str, Any]:
        """Wait for a non-``work`` role to exit and return its RESULT."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"timed out after {timeout:.0f} s") from None
        self._out.seek(0)
        result = _parse_result(self._out.read().decode("utf-8", "replace"))
        if self.proc.returncode != 0 or result is None:
            raise self._fail(f"exit code {self.proc.returncode}, no RESULT line")
        return result

    # -- the work role

    def wait_ready(self, timeout: float) -> None:
        """Block until the worker prints READY."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._fail(f"no READY within {timeout:.0f} s")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise self._fail(f"exited (code {self.proc.returncode}) before READY")
                buf += chunk
                if b"READY\n" in buf:
                    self._early = buf.split(b"READY\n", 1)[1]
                    return

    _early = b""
    _done: threading.Event
    _chunks: list[bytes]

    def go(self) -> None:
        """Send the go line, and keep draining stdout from now on.

        A thread reads the worker's stdout while it works, so a library that
        prints there can never fill the pipe and stall the worker mid-run.
        """
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self._done = threading.Event()
        self._chunks = [self._early]
        reader = threading.Thread(
            target=self._drain, args=(self.proc.stdout.fileno(),), daemon=True
        )
        reader.start()
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def _drain(self, fd: int) -> None:
        tail = self._early
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self._chunks.append(chunk)
            tail = (tail + chunk)[-65536:]
            # The RESULT line is the adapter's last: done once it is complete.
            last = tail.rsplit(b"RESULT ", 1)
            if len(last) == 2 and last[1].endswith(b"\n"):
                break
        self._done.set()

    def work_result(self, timeout: float) -> dict[str, Any]:
        """Wait for the worker's RESULT (it exits after it)."""
        if not self._done.wait(timeout):
            raise self._fail(f"no RESULT within {timeout:.0f} s")
        result = _parse_result(b"".join(self._chunks).decode("utf-8", "replace"))
        if result is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            raise self._fail(f"exit code {self.proc.returncode}, no RESULT line")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        return result

    def kill(self) -> None:
        """SIGKILL the process group while the adapter still runs; close the pipes.

        Once the adapter has exited (and been reaped) its group id is not
        signalled: that number could belong to someone else by then.
        """
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._err.close()
        self._out.close()


def run_role(
    adapter: Adapter,
    role: str,
    url: str,
    queue: str,
    n: int,
    env: dict[str, str],
    timeout: float,
    **opts: Any,
) -> dict[str, Any]:
    """Run a one-shot role to completion and return its RESULT."""
    with Proc(adapter, role, url, queue, n, env, **opts) as p:
        return p.wait_result(timeout)
