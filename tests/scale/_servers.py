"""Private Redis Cluster and Sentinel deployments on loopback, for tests/scale.

Every process listens on a free 127.0.0.1 port, keeps its files in a
temporary directory, and is tied to the test process (``PR_SET_PDEATHSIG`` on
Linux, as :mod:`jobq.server` does); :meth:`close` kills whatever is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from jobq.errors import ConnectionSetupError
from jobq.server import RedisServerProcess, _make_preexec, find_server_binary

SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


def server_binary() -> str:
    """The server binary for the scale tests, or skip (fail with JOBQ_REQUIRE_SCALE=1)."""
    try:
        binary = find_server_binary(os.environ.get("JOBQ_TEST_SERVER") or None)
    except ConnectionSetupError as exc:
        _skip(f"no Valkey/Redis server binary for the Cluster/Sentinel tests: {exc}")
        raise AssertionError("unreachable") from exc
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    text = version.stdout
    major = 0
    for part in text.split():
        if part.startswith("v="):
            major = int(part[2:].split(".")[0] or 0)
    if major < 7:
        _skip(f"{binary} ({text.strip()}) is older than 7.0: no CLUSTER ADDSLOTSRANGE")
    return binary


def _skip(reason: str) -> None:
    if os.environ.get("JOBQ_REQUIRE_SCALE") == "1":
        pytest.fail(f"JOBQ_REQUIRE_SCALE=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` (a cheap state query) until it holds; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _sync(port: int | None) -> Any:
    assert port is not None, "the server has not been started"
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, decode_responses=True)


def _info(port: int | None, section: str) -> dict[str, object]:
    with contextlib.closing(_sync(port)) as c:
        try:
            return dict(c.info(section))
        except (redis.ConnectionError, redis.TimeoutError):
            return {}


# --- cluster -------------------------------------------------------------------------


class Cluster:
    """Three masters, no replicas, every node on its own port and cluster-bus port.

    Data is kept with ``appendonly yes`` and ``appendfsync always``, so a node
    killed with SIGKILL and restarted at the same address (:meth:`restart`)
    comes back with its ``nodes.conf`` (identity, slots) and every write it
    acknowledged.
    """

    def __init__(self, root: Path, *, replicas: bool = False) -> None:
        self.binary = server_binary()
        self.nodes: list[RedisServerProcess] = []  # the masters, in SLOT_RANGES order
        self.replicas: list[RedisServerProcess] = []  # one per master, if asked for
        self._with_replicas = replicas
        self._root = root

    def _new_node(self) -> RedisServerProcess:
        node = RedisServerProcess(
            self.binary,
            tcp=True,
            tmp_root=self._root,
            config={
                "cluster-enabled": "yes",
                "cluster-config-file": "nodes.conf",
                "cluster-port": free_port(),
                # Long enough that a restart within a few seconds is never
                # voted a failure (which would stop the whole cluster).
                "cluster-node-timeout": 15000,
                "appendonly": "yes",
                "appendfsync": "always",
            },
        )
        return node.start()

    def start(self) -> Cluster:
        try:
            for _ in SLOT_RANGES:
                self.nodes.append(self._new_node())
                if self._with_replicas:
                    self.replicas.append(self._new_node())
            self._form()
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def bus_port(node: RedisServerProcess) -> int:
        return int(node._config["cluster-port"])  # our own config

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes if n.port is not None]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL listing every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _form(self) -> None:
        first = self.ports[0]
        for port, (lo, hi) in zip(self.ports, SLOT_RANGES, strict=True):
            with contextlib.closing(_sync(port)) as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        with contextlib.closing(_sync(first)) as c:
            for node in [*self.nodes[1:], *self.replicas]:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, self.bus_port(node))
        if self.replicas:
            wait_until(self._all_known, 20, "every node to know every other")
            for master, replica in zip(self.nodes, self.replicas, strict=True):
                with contextlib.closing(_sync(master.port)) as c:
                    master_id = c.execute_command("CLUSTER", "MYID")
                with contextlib.closing(_sync(replica.port)) as c:
                    c.execute_command("CLUSTER", "REPLICATE", master_id)
            wait_until(self._replicas_synced, 20, "the replicas to sync")
        self.wait_ok()

    def _replicas_synced(self) -> bool:
        return all(
            _info(r.port, "replication").get("master_link_status") == "up" for r in self.replicas
        )

    def _all_known(self) -> bool:
        want = str(len(self.nodes) + len(self.replicas))
        return all(
            self._cluster_info(n.port).get("cluster_known_nodes") == want
            for n in [*self.nodes, *self.replicas]
        )

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every running node sees a healthy cluster, all slots covered."""
        want = str(len(self.nodes) + len(self.replicas))

        def ok() -> bool:
            for node in [*self.nodes, *self.replicas]:
                if not node.running:
                    continue
                info = self._cluster_info(node.port)
                if info.get("cluster_state") != "ok":
                    return False
                if info.get("cluster_known_nodes") != want:
                    return False
                if info.get("cluster_slots_ok") != "16384":
                    return False
            return True

        wait_until(ok, timeout, "the cluster to be ok on every node")

    def replica_of(self, master: RedisServerProcess) -> RedisServerProcess:
        return self.replicas[self.nodes.index(master)]

    def take_over(self, replica: RedisServerProcess) -> None:
        """Promote ``replica`` at once (its master is dead: no agreement is asked)."""
        with contextlib.closing(_sync(replica.port)) as c:
            c.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
        wait_until(
            lambda: _info(replica.port, "replication").get("role") == "master",
            10,
            "the replica to become a master",
        )
        self.wait_ok()

    @staticmethod
    def _cluster_info(port: int | None) -> dict[str, str]:
        with contextlib.closing(_sync(port)) as c:
            try:
                raw = c.execute_command("CLUSTER", "INFO")
            except (redis.ConnectionError, redis.TimeoutError):
                return {}
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def node_for(self, key: str) -> RedisServerProcess:
        """The node whose slot range holds ``key``."""
        slot = key_slot(key.encode())
        for node, (lo, hi) in zip(self.nodes, SLOT_RANGES, strict=True):
            if lo <= slot <= hi:
                return node
        raise AssertionError(f"slot {slot} of {key!r} is not covered")

    def restart(self, node: RedisServerProcess) -> None:
        """Start a killed node again at the same address with its data, and wait until
        the cluster is ok everywhere."""
        node.start()
        self.wait_ok()

    def close(self) -> None:
        for node in [*self.replicas, *self.nodes]:
            node.stop(timeout=5)
        self.nodes.clear()
        self.replicas.clear()


# --- sentinel ------------------------------------------------------------------------


class _Sentinel:
    """One sentinel process (it needs a writable config file of its own)."""

    def __init__(self, binary: str, root: Path, port: int, primary_port: int, service: str) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="jobq-sentinel-", dir=root))
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"logfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor {service} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 10000\n"
            f"sentinel parallel-syncs {service} 1\n"
        )
        self._argv = [binary, str(self.conf), "--sentinel"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = (self.dir / "stdout.log").open("ab")
        with out:
            self.proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
                preexec_fn=_make_preexec(),
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.dir / "sentinel.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"sentinel on port {self.port} exited:\n{log}")
            try:
                with contextlib.closing(_sync(self.port)) as c:
                    return bool(c.ping())
            except (redis.ConnectionError, redis.TimeoutError):
                return False

        wait_until(up, 10, f"the sentinel on port {self.port}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """A primary, one replica and three sentinels (quorum 2, down after 1 s)."""

    service = "jobqmain"

    def __init__(self, root: Path) -> None:
        self.binary = server_binary()
        self._root = root
        self.primary: RedisServerProcess | None = None
        self.replica: RedisServerProcess | None = None
        self.sentinels: list[_Sentinel] = []

    def start(self) -> SentinelGroup:
        try:
            self.primary = RedisServerProcess(self.binary, tcp=True, tmp_root=self._root).start()
            self.replica = RedisServerProcess(self.binary, tcp=True, tmp_root=self._root).start()
            assert self.primary.port is not None
            assert self.replica.port is not None
            with contextlib.closing(_sync(self.replica.port)) as c:
                c.execute_command("REPLICAOF", "127.0.0.1", self.primary.port)
            wait_until(
                lambda: _info(self.replica_port, "replication").get("master_link_status") == "up",
                15,
                "the replica to sync",
            )
            for _ in range(3):
                s = _Sentinel(self.binary, self._root, free_port(), self.primary.port, self.service)
                self.sentinels.append(s)
                s.start()
            wait_until(self._sentinels_see_everyone, 20, "the sentinels to find each other")
        except BaseException:
            self.close()
            raise
        return self

    @property
    def primary_port(self) -> int:
        assert self.primary is not None
        assert self.primary.port is not None
        return self.primary.port

    @property
    def replica_port(self) -> int:
        assert self.replica is not None
        assert self.replica.port is not None
        return self.replica.port

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def _sentinels_see_everyone(self) -> bool:
        for s in self.sentinels:
            with contextlib.closing(_sync(s.port)) as c:
                try:
                    master = c.execute_command("SENTINEL", "MASTER", self.service)
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    return False
            if isinstance(master, dict):  # redis-py parses the reply (with int values)
                fields = {str(k): str(v) for k, v in master.items()}
            else:
                fields = dict(zip(master[::2], master[1::2], strict=True))
            if fields.get("num-other-sentinels") != "2" or fields.get("num-slaves") != "1":
                return False
        return True

    def master_address(self) -> tuple[str, int] | None:
        """Where the sentinels say the primary is (the first sentinel that answers)."""
        for s in self.sentinels:
            with contextlib.closing(_sync(s.port)) as c:
                try:
                    reply = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                except (redis.ConnectionError, redis.TimeoutError):
                    continue
            if reply:
                return str(reply[0]), int(reply[1])
        return None

    def close(self) -> None:
        for s in self.sentinels:
            s.stop()
        self.sentinels.clear()
        for server in (self.replica, self.primary):
            if server is not None:
                server.stop(timeout=5)
        self.primary = self.replica = None
