"""Flows: a parent job runs after all its children, on any queues, to any depth.

::

    async with FlowProducer(connection=url) as flows:
        node = await flows.add(
            FlowJob(name="annual-report", queue="reports", children=[
                FlowJob(name="navy-totals", queue="budget-calculations", data={"org": "N"}),
                FlowJob(name="army-totals", queue="budget-calculations", data={"org": "A"}),
            ])
        )

    async def annual_report(job):
        totals = await job.get_children_values()   # {child job key: return value}

How it works: the parent is stored in *waiting-children* with the set of its
children's job keys. A finishing child leaves an entry in its own queue's
outbox in the same atomic step that finishes it; a worker then delivers the
entry to the parent's queue (``child_done.lua``, idempotent), because the two
queues may live on different Redis Cluster slots. A worker's heartbeat
delivers anything left behind by a worker that died in between.

What a failed child does to its parent is chosen per child (``on_failure``):
``"fail"`` (default) fails the parent at once, with the child named in the
reason; ``"ignore"`` counts the child as done (its failure is readable with
:meth:`~jobq.Job.get_children_failures`); ``"continue"`` starts the parent at
once. A parent is never left waiting silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis

from .connection import ConnectionSettings, create_client, resolve
from .errors import ConfigurationError
from .job import Job
from .keys import QueueKeys
from .options import JobOptions
from .queue import ConnectionLike, Queue

__all__ = ["FlowJob", "FlowNode", "FlowProducer", "deliver_outbox"]

log = logging.getLogger("jobq.flows")

OnFailure = Literal["fail", "ignore", "continue"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FlowJob:
    """One job of a flow, with its children.

    ``on_failure`` says what this job's failure does to its parent: ``fail``
    the parent, ``ignore`` the failure, or ``continue`` the parent at once.
    """

    name: str
    queue: str
    data: Any = None
    options: JobOptions | None = None
    children: Sequence[FlowJob] = field(default_factory=tuple)
    on_failure: OnFailure = "fail"

    def __post_init__(self) -> None:
        if self.on_failure not in ("fail", "ignore", "continue"):
            raise ConfigurationError(
                f"on_failure must be 'fail', 'ignore' or 'continue', got {self.on_failure!r}"
            )


@dataclass(slots=True)
class FlowNode:
    """An added flow job and its children's nodes."""

    job: Job
    children: list[FlowNode]


class FlowProducer:
    """Adds flows: trees of jobs across queues, parents after children."""

    def __init__(self, *, connection: ConnectionLike = None, prefix: str | None = None) -> None:
        self._connection = connection
        self._prefix = prefix
        self._client: Redis | None = None
        self._owns = False
        self._queues: dict[str, Queue] = {}

    async def open(self) -> FlowProducer:
        """Connect."""
        if self._client is None:
            target = resolve(self._connection)
            if isinstance(target, ConnectionSettings):
                self._client, self._owns = create_client(target), True
                self._prefix = self._prefix or target.prefix
            else:
                self._client = target
        return self

    async def close(self) -> None:
        """Close the queues and the connection if opened here."""
        for q in self._queues.values():
            await q.close()
        self._queues.clear()
        client, self._client = self._client, None
        if client is not None and self._owns:
            await client.aclose()

    async def __aenter__(self) -> FlowProducer:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _queue(self, name: str) -> Queue:
        q = self._queues.get(name)
        if q is None:
            if self._client is None:
                raise RuntimeError("FlowProducer is not open: use 'async with FlowProducer(...)'")
            q = Queue(name, connection=self._client, prefix=self._prefix)
            await q.open()
            self._queues[name] = q
        return q

    async def add(self, flow: FlowJob) -> FlowNode:
        """Add a flow. Parents are written before their children, so a child can
        never finish before its parent is there to hear of it."""
        ids = await self._assign_ids(flow)
        return await self._add_node(flow, ids, None)

    async def add_chain(self, steps: Sequence[FlowJob]) -> FlowNode:
        """A then B then C: each step runs after the one before and can read its
        result with ``await job.get_previous_result()``. Returns the last step's node."""
        if not steps:
            raise ConfigurationError("a chain needs at least one step")
        tree: FlowJob | None = None
        for step in steps:
            if step.children:
                raise ConfigurationError(f"chain step {step.name!r} must not have children")
            tree = FlowJob(
                name=step.name,
                queue=step.queue,
                data=step.data,
                options=step.options,
                on_failure=step.on_failure,
                children=(tree,) if tree is not None else (),
            )
        assert tree is not None
        return await self.add(tree)

    async def _assign_ids(self, flow: FlowJob) -> dict[int, str]:
        """Ids for every node: its own job_id, or a block reserved per queue."""
        nodes: list[FlowJob] = []

        def walk(n: FlowJob) -> None:
            nodes.append(n)
            for c in n.children:
                walk(c)

        walk(flow)
        need: dict[str, list[FlowJob]] = {}
        ids: dict[int, str] = {}
        for n in nodes:
            if n.options is not None and n.options.job_id is not None:
                ids[id(n)] = n.options.job_id
            else:
                need.setdefault(n.queue, []).append(n)
        for qname, group in need.items():
            q = await self._queue(qname)
            top = int(await q.client.incrby(q.keys.id, len(group)))
            for i, n in enumerate(group):
                ids[id(n)] = str(top - len(group) + 1 + i)
        return ids

    async def _add_node(
        self, node: FlowJob, ids: dict[int, str], parent: tuple[Queue, str, OnFailure] | None
    ) -> FlowNode:
        q = await self._queue(node.queue)
        job_id = ids[id(node)]
        prepared = q._prepare(node.name, node.data, node.options)
        prepared = (job_id, *prepared[1:])
        child_keys = []
        for c in node.children:
            cq = QueueKeys(q.keys.prefix, c.queue)
            child_keys.append(cq.job(ids[id(c)]))
        extra = b""
        if parent is not None:
            pq, pid, policy = parent
            extra = json.dumps(
                {"parent": {"p": pq.keys.prefix, "q": pq.name, "id": pid}, "pol": policy},
                separators=(",", ":"),
            ).encode()
        created = await q.scripts.add_flow_node(q.events_max_len, prepared, extra, child_keys)
        if not created:
            # The job exists (a flow added again with the same ids): its children too.
            existing = await q.get_job(job_id)
            if existing is not None:
                return FlowNode(existing, [])
        opts = node.options if node.options is not None else q.default_options
        job = Job(q, job_id, node.name, node.data, opts)
        children = [await self._add_node(c, ids, (q, job_id, c.on_failure)) for c in node.children]
        return FlowNode(job, children)


async def deliver_outbox(queue: Queue, *, batch: int = 100) -> int:
    """Deliver finished children of ``queue`` to their parents; returns how many.

    Safe to run from any number of workers at once: each delivery is
    idempotent, and an entry leaves the outbox only after its parent has it.
    """
    client: Any = queue.client
    delivered = 0
    parents: dict[tuple[str, str], Queue] = {}
    try:
        while True:
            entries = await client.lrange(queue.keys.outbox, 0, batch - 1)
            if not entries:
                return delivered
            for raw in entries:
                try:
                    entry = json.loads(raw)
                    x = json.loads(entry["x"])
                    parent = x["parent"]
                    key = (parent["p"], parent["q"])
                    pq = parents.get(key)
                    if pq is None:
                        pq = Queue(parent["q"], connection=queue.client, prefix=parent["p"])
                        await pq.open()
                        parents[key] = pq
                    code = await pq.scripts.child_done(
                        str(parent["id"]),
                        queue.keys.job(str(entry["id"])),
                        str(entry["k"]),
                        str(entry["v"]),
                        str(x.get("pol", "fail")),
                        events_max_len=pq.events_max_len,
                    )
                    if code == 3:
                        # The parent failed: it may be a child itself.
                        await deliver_outbox(pq, batch=batch)
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("dropping a corrupt outbox entry of queue %r: %s", queue.name, exc)
                await client.lrem(queue.keys.outbox, 1, raw)
                delivered += 1
    finally:
        for pq in parents.values():
            await pq.close()
