"""Flows: parents after children, across queues, with failure policies."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from jobq import FlowJob, FlowProducer, Job, JobFailedError, JobOptions, Queue, UnrecoverableError
from jobq.flows import deliver_outbox
from jobq.scripts import FinishItem
from tests.conftest import QueueFactory, WorkerFactory
from tests.jobq import scriptcalls


def other_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def flows(redis_url: str) -> Any:
    async with FlowProducer(connection=redis_url) as producer:
        yield producer


async def test_parent_runs_after_children_on_two_queues_and_reads_their_values(
    flows: FlowProducer, make_queue: QueueFactory, start_worker: WorkerFactory
) -> None:
    reports, calcs = await make_queue(), await make_queue(other_name())
    children_done_before_parent: list[bool] = []

    async def calc(job: Job) -> dict[str, int]:
        return {"org": job.data["org"], "total": job.data["n"] * 10}

    async def report(job: Job) -> list[int]:
        values = await job.get_children_values()
        children_done_before_parent.append(len(values) == 2)
        return sorted(v["total"] for v in values.values())

    node = await flows.add(
        FlowJob(
            name="annual-report",
            queue=reports.name,
            children=[
                FlowJob(name="calc", queue=calcs.name, data={"org": "N", "n": 1}),
                FlowJob(name="calc", queue=calcs.name, data={"org": "A", "n": 2}),
            ],
        )
    )
    assert await reports.get_job_state(node.job.id) == "waiting-children"
    assert (await reports.get_job_counts()).waiting_children == 1
    pending = await (await node.job.refresh()).get_pending_children()
    assert len(pending) == 2
    await start_worker(report, name=reports.name)
    await start_worker(calc, name=calcs.name)
    assert await node.job.wait_until_finished(10) == [10, 20]
    assert children_done_before_parent == [True]


async def test_three_levels_deep_across_two_queues(
    flows: FlowProducer, make_queue: QueueFactory, start_worker: WorkerFactory
) -> None:
    q1, q2 = await make_queue(), await make_queue(other_name())
    order: list[str] = []

    async def step(job: Job) -> int:
        order.append(job.name)
        values = await job.get_children_values()
        return int(job.data["v"]) + sum(int(v) for v in values.values())

    tree = FlowJob(
        name="root",
        queue=q1.name,
        data={"v": 1},
        children=[
            FlowJob(
                name="mid",
                queue=q2.name,
                data={"v": 10},
                children=[
                    FlowJob(name="leaf-a", queue=q1.name, data={"v": 100}),
                    FlowJob(name="leaf-b", queue=q2.name, data={"v": 1000}),
                ],
            )
        ],
    )
    node = await flows.add(tree)
    await start_worker(step, name=q1.name)
    await start_worker(step, name=q2.name)
    assert await node.job.wait_until_finished(15) == 1111
    assert (
        order.index("root") > order.index("mid") > max(order.index("leaf-a"), order.index("leaf-b"))
    )


async def test_chain_passes_each_result_to_the_next_step(
    flows: FlowProducer, queue: Queue, start_worker: WorkerFactory
) -> None:
    async def step(job: Job) -> str:
        prev = await job.get_previous_result()
        return (prev or "") + job.name

    last = await flows.add_chain([FlowJob(name=n, queue=queue.name) for n in ("A", "B", "C")])
    await start_worker(step)
    assert await last.job.wait_until_finished(10) == "ABC"


async def test_failed_child_fails_the_parent_visibly(
    flows: FlowProducer, queue: Queue, start_worker: WorkerFactory
) -> None:
    async def process(job: Job) -> str:
        if job.name == "bad":
            raise UnrecoverableError("ledger closed")
        return "ok"

    node = await flows.add(
        FlowJob(
            name="parent",
            queue=queue.name,
            children=[
                FlowJob(name="bad", queue=queue.name),
                FlowJob(name="good", queue=queue.name),
            ],
        )
    )
    await start_worker(process, concurrency=2)
    with pytest.raises(JobFailedError, match="ledger closed"):
        await node.job.wait_until_finished(10)
    parent = await node.job.refresh()
    assert await parent.get_state() == "failed"
    assert parent.failed_reason is not None
    assert node.children[0].job.id in parent.failed_reason


async def test_ignored_child_failure_lets_the_parent_run(
    flows: FlowProducer, queue: Queue, start_worker: WorkerFactory
) -> None:
    async def process(job: Job) -> Any:
        if job.name == "bad":
            raise UnrecoverableError("optional data missing")
        if job.name == "parent":
            return {
                "values": list((await job.get_children_values()).values()),
                "failures": list((await job.get_children_failures()).values()),
            }
        return "ok"

    node = await flows.add(
        FlowJob(
            name="parent",
            queue=queue.name,
            children=[
                FlowJob(name="bad", queue=queue.name, on_failure="ignore"),
                FlowJob(name="good", queue=queue.name),
            ],
        )
    )
    await start_worker(process)
    assert await node.job.wait_until_finished(10) == {
        "values": ["ok"],
        "failures": ["optional data missing"],
    }


async def test_continue_starts_the_parent_at_once(
    flows: FlowProducer, queue: Queue, start_worker: WorkerFactory
) -> None:
    release = asyncio.Event()

    async def process(job: Job) -> Any:
        if job.name == "bad":
            raise UnrecoverableError("no")
        if job.name == "slow":
            await release.wait()
            return "late"
        pending = await job.get_pending_children()
        release.set()
        return len(pending)

    node = await flows.add(
        FlowJob(
            name="parent",
            queue=queue.name,
            children=[
                FlowJob(name="slow", queue=queue.name),
                FlowJob(name="bad", queue=queue.name, on_failure="continue"),
            ],
        )
    )
    await start_worker(process, concurrency=3)
    # The parent ran while "slow" was still pending.
    assert await node.job.wait_until_finished(10) == 1


async def test_failure_climbs_to_the_grandparent(
    flows: FlowProducer, queue: Queue, start_worker: WorkerFactory
) -> None:
    async def process(job: Job) -> str:
        raise UnrecoverableError("deep failure")

    node = await flows.add(
        FlowJob(
            name="grandparent",
            queue=queue.name,
            children=[
                FlowJob(
                    name="parent",
                    queue=queue.name,
                    children=[FlowJob(name="child", queue=queue.name)],
                )
            ],
        )
    )
    await start_worker(process)
    with pytest.raises(JobFailedError, match="deep failure"):
        await node.job.wait_until_finished(10)


async def test_delivery_is_idempotent_and_survives_a_lost_worker(
    flows: FlowProducer, queue: Queue, redis_client: Redis
) -> None:
    node = await flows.add(
        FlowJob(name="parent", queue=queue.name, children=[FlowJob(name="c", queue=queue.name)])
    )
    # A worker completes the child and dies before delivering to the parent.
    reply = await scriptcalls.claim(queue.scripts, worker_id="w")
    [child] = reply.jobs
    codes = await scriptcalls.finish(
        queue.scripts, [FinishItem(child.id, child.token, "c", b'"v"')]
    )
    assert codes == [1]
    entry = (await redis_client.lrange(queue.keys.outbox, 0, -1))[0]
    await redis_client.rpush(queue.keys.outbox, entry)  # delivered twice
    assert await queue.get_job_state(node.job.id) == "waiting-children"
    assert await deliver_outbox(queue) == 2
    assert await redis_client.llen(queue.keys.outbox) == 0
    assert await queue.get_job_state(node.job.id) == "waiting"
    parent = await node.job.refresh()
    assert await parent.get_children_values() == {queue.keys.job(child.id): "v"}


async def test_existing_parent_id_is_not_duplicated(flows: FlowProducer, queue: Queue) -> None:
    tree = FlowJob(
        name="p",
        queue=queue.name,
        options=JobOptions(job_id="report-7"),
        children=[FlowJob(name="c", queue=queue.name)],
    )
    first = await flows.add(tree)
    again = await flows.add(tree)
    assert again.job.id == first.job.id == "report-7"
    assert again.children == []
    counts = await queue.get_job_counts()
    assert (counts.waiting_children, counts.waiting) == (1, 1)
