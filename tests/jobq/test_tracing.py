"""Tracing: the producer span of an add and the consumer span of the run share a trace.

Real OpenTelemetry SDK (its in-memory exporter), a real worker, a real server.
Tracing is switched on per test with its own tracer provider, never through the
global one, so other tests in the same run are not traced.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

from jobq import Job, JobFailedError, JobOptions, Queue, SyncQueue, WorkerOptions, tracing
from tests.conftest import WorkerFactory


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> TracerProvider:
    """A tracer provider of this test's own; tracing's state is restored afterwards."""
    for attr in ("enabled", "_decided", "_tracer"):
        monkeypatch.setattr(tracing, attr, getattr(tracing, attr))
    return TracerProvider()


@pytest.fixture
def exporter(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """Spans of this test, with tracing on."""
    exp = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    tracing.enable(provider)
    yield exp
    tracing.disable()


def _attr(span: ReadableSpan, key: str) -> str:
    return str((span.attributes or {})[key])


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def _stored_options(client: Redis, queue: Queue, job_id: str) -> dict[str, Any]:
    raw = await client.hget(queue.keys.job(job_id), "o")
    return json.loads(raw) if raw else {}


async def test_consumer_span_continues_the_trace_of_the_add(
    queue: Queue,
    start_worker: WorkerFactory,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    redis_client: Redis,
) -> None:
    seen: dict[str, Any] = {}

    async def process(job: Job) -> str:
        seen["span"] = trace.get_current_span().get_span_context()
        return "ok"

    with provider.get_tracer("test").start_as_current_span("request") as request:
        job = await queue.add("render", {"n": 1})
    stored = await _stored_options(redis_client, queue, job.id)
    await start_worker(process)
    assert await job.wait_until_finished(10) == "ok"

    spans = exporter.get_finished_spans()
    [publish] = _named(spans, f"{queue.name} publish")
    [consume] = _named(spans, f"{queue.name} process")
    req = request.get_span_context()
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None
    assert publish.parent.span_id == req.span_id
    assert publish.attributes is not None
    assert dict(publish.attributes) == {
        "messaging.system": "jobq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": queue.name,
        "messaging.message.id": job.id,
    }
    # The stored context is the publish span's, in W3C form.
    assert publish.context is not None
    assert stored["tc"]["traceparent"] == (
        f"00-{publish.context.trace_id:032x}-{publish.context.span_id:016x}"
        f"-{int(publish.context.trace_flags):02x}"
    )

    assert consume.kind is SpanKind.CONSUMER
    assert consume.context is not None
    assert consume.context.trace_id == req.trace_id
    assert consume.parent is not None
    assert consume.parent.span_id == publish.context.span_id
    assert [link.context.span_id for link in consume.links] == [publish.context.span_id]
    assert consume.attributes is not None
    attrs = dict(consume.attributes)
    assert attrs["messaging.system"] == "jobq"
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.destination.name"] == queue.name
    assert attrs["messaging.message.id"] == job.id
    assert attrs["jobq.job.name"] == "render"
    assert attrs["jobq.job.attempt"] == 1
    assert consume.status.status_code is StatusCode.UNSET
    # The processor ran inside the consumer span.
    assert seen["span"].span_id == consume.context.span_id


async def test_a_sync_producer_continues_the_callers_trace(
    redis_url: str,
    queue: Queue,
    start_worker: WorkerFactory,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    def add_from_sync_code() -> tuple[int, str]:
        tracer = provider.get_tracer("test")
        with (
            tracer.start_as_current_span("request") as request,
            SyncQueue(queue.name, connection=redis_url) as sq,
        ):
            job_id = sq.add("render").id
        return request.get_span_context().trace_id, job_id

    trace_id, job_id = await asyncio.to_thread(add_from_sync_code)
    await start_worker(lambda job: None)
    await queue.wait_for_job(job_id, 10)
    [consume] = _named(exporter.get_finished_spans(), f"{queue.name} process")
    assert consume.context is not None
    assert consume.context.trace_id == trace_id


async def test_failed_attempts_record_the_exception_and_an_error_status(
    queue: Queue, start_worker: WorkerFactory, exporter: InMemorySpanExporter
) -> None:
    async def process(job: Job) -> None:
        raise ValueError("cannot render")

    job = await queue.add("render", {"n": 1}, JobOptions(attempts=2))
    await start_worker(process)
    with pytest.raises(JobFailedError):
        await job.wait_until_finished(10)

    spans = _named(exporter.get_finished_spans(), f"{queue.name} process")
    assert sorted(_attr(s, "jobq.job.attempt") for s in spans) == ["1", "2"]
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        [event] = [e for e in span.events if e.name == "exception"]
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "cannot render"


async def test_bulk_add_is_one_span_and_every_job_continues_it(
    queue: Queue, start_worker: WorkerFactory, exporter: InMemorySpanExporter
) -> None:
    async def process(job: Job) -> int:
        return int(job.data)

    jobs = await queue.add_bulk([("n", 1), ("n", 2), ("n", 3)])
    await start_worker(process, concurrency=3)
    for job in jobs:
        await job.wait_until_finished(10)

    spans = exporter.get_finished_spans()
    [publish] = _named(spans, f"{queue.name} publish")
    assert publish.attributes is not None
    assert publish.attributes["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in publish.attributes
    consumed = _named(spans, f"{queue.name} process")
    assert sorted(_attr(s, "messaging.message.id") for s in consumed) == sorted(j.id for j in jobs)
    assert publish.context is not None
    for span in consumed:
        assert span.parent is not None
        assert span.parent.span_id == publish.context.span_id


async def test_def_processor_in_a_thread_runs_inside_the_consumer_span(
    queue: Queue, start_worker: WorkerFactory, exporter: InMemorySpanExporter
) -> None:
    main = threading.get_ident()
    seen: dict[str, Any] = {}

    def process(job: Job) -> None:
        assert threading.get_ident() != main
        seen["span"] = trace.get_current_span().get_span_context()

    job = await queue.add("render")
    await start_worker(process)
    await job.wait_until_finished(10)
    [consume] = _named(exporter.get_finished_spans(), f"{queue.name} process")
    assert consume.context is not None
    assert seen["span"].span_id == consume.context.span_id


async def test_a_batch_gets_one_span_linked_to_every_job(
    queue: Queue, start_worker: WorkerFactory, exporter: InMemorySpanExporter
) -> None:
    async def process(jobs: list[Job]) -> list[int]:
        return [1 for _ in jobs]

    jobs = await queue.add_bulk([("n", 1), ("n", 2)])
    await start_worker(process, options=WorkerOptions(batch_size=2, batch_wait=5_000))
    for job in jobs:
        await job.wait_until_finished(10)
    spans = exporter.get_finished_spans()
    [publish] = _named(spans, f"{queue.name} publish")
    [consume] = _named(spans, f"{queue.name} process")
    assert publish.context is not None
    assert consume.parent is None  # many origins: links, no parent
    assert [link.context.span_id for link in consume.links] == [publish.context.span_id] * 2
    assert consume.attributes is not None
    assert consume.attributes["messaging.batch.message_count"] == 2


async def test_off_means_no_spans_and_nothing_stored(
    queue: Queue,
    start_worker: WorkerFactory,
    provider: TracerProvider,
    redis_client: Redis,
) -> None:
    exp = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    tracing.disable()
    with provider.get_tracer("test").start_as_current_span("request"):
        job = await queue.add("render", {"n": 1}, JobOptions(attempts=2))
    assert "tc" not in await _stored_options(redis_client, queue, job.id)

    await start_worker(lambda job: None)
    await job.wait_until_finished(10)
    assert [s.name for s in exp.get_finished_spans()] == ["request"]


async def test_a_job_added_without_context_still_gets_a_consumer_span(
    queue: Queue,
    start_worker: WorkerFactory,
    provider: TracerProvider,
    redis_client: Redis,
) -> None:
    tracing.disable()
    job = await queue.add("render")  # added untraced: no context stored
    assert await _stored_options(redis_client, queue, job.id) == {}

    exp = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    tracing.enable(provider)
    await start_worker(lambda job: None)
    await job.wait_until_finished(10)
    [consume] = exp.get_finished_spans()
    assert consume.name == f"{queue.name} process"
    assert consume.parent is None
    assert list(consume.links) == []
    assert consume.attributes is not None
    assert consume.attributes["messaging.message.id"] == job.id


def test_trace_context_round_trips_through_the_stored_options() -> None:
    tc = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    stored = JobOptions(attempts=3, trace_context=tc).to_json()
    assert stored == {"attempts": 3, "tc": tc}
    back = JobOptions.from_json(stored, priority=None, delay=0)
    assert back.trace_context == tc
    assert "tc" not in JobOptions().to_json()
    # A damaged entry is dropped, not fatal to the job.
    assert JobOptions.from_json({"tc": "junk"}, priority=None, delay=0).trace_context is None


def _run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_without_opentelemetry_jobq_runs_and_enable_says_what_to_install() -> None:
    code = """
import sys
sys.modules["opentelemetry"] = None  # as if not installed
from jobq import ConfigurationError, tracing
tracing.detect()
print(tracing.enabled)
try:
    tracing.enable()
except ConfigurationError as exc:
    print(exc)
"""
    out = _run_python(code, JOBQ_TRACING="on").splitlines()
    assert out[0] == "False"
    assert "install the 'otel' extra" in out[1]


def test_detect_follows_the_global_provider_and_the_environment() -> None:
    code = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from jobq import tracing
tracing.detect()
first = tracing.enabled
tracing._decided = None
trace.set_tracer_provider(TracerProvider())
tracing.detect()
print(first, tracing.enabled)
"""
    assert _run_python(code, JOBQ_TRACING="auto") == "False True"
    assert _run_python(code, JOBQ_TRACING="off") == "False False"
