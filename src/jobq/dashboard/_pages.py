"""Read-only pages and machine endpoints of the dashboard."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast, get_args

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from jobq.errors import ConfigurationError
from jobq.health import HealthRules, problems
from jobq.job import Job
from jobq.metrics import MetricsSnapshot, QueueCollector, render_latest
from jobq.queue import ListState, Queue

from ._app import Dash

PAGE_SIZE = 50
EVENT_INTERVAL = 1.0
SERIES_MINUTES = 60
_REDISCOVER_EVERY = 10  # SSE ticks between SCANs for new queues
LIST_STATES: tuple[str, ...] = get_args(ListState)
_JOB_KEY = re.compile(r"^\{(?P<prefix>[^:{}]+):(?P<queue>[^{}]+)\}:j:(?P<id>.+)$")


def _snapshot_json(snap: MetricsSnapshot) -> dict[str, Any]:
    return {
        "taken_at": snap.taken_at,
        "queues": [
            {
                "queue": q.queue,
                "counts": dict(q.counts),
                "oldest_waiting_age_seconds": round(q.oldest_waiting_age_seconds, 1),
                "workers_alive": q.workers_alive,
                "failure_rate": q.failure_rate,
                "finished_last_minute": dict(q.finished_last_minute),
            }
            for q in snap.queues
        ],
    }


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def _tier_of(name: str) -> tuple[str, str]:
    """``reports.critical`` -> (``reports``, ``critical``): tiers group under their queue."""
    base, dot, tier = name.rpartition(".")
    return (base, tier) if dot and base else (name, "")


async def _series(q: Queue, minutes: int) -> dict[str, list[float | None]]:
    """Per-minute figures for the charts, oldest first."""
    points = await q.get_time_series(minutes)
    return {
        "throughput": [float(p.completed + p.failed) for p in points],
        "failure_rate": [p.failure_rate for p in points],
        "latency": [p.latency_avg_ms for p in points],
        "latency_p95": [p.latency_p95_ms for p in points],
        "utilization": [p.utilization for p in points],
        "depth": [None if p.depth is None else float(p.depth) for p in points],
    }


def _latest(values: list[float | None]) -> float | None:
    """The last full minute's value (the current minute is still filling up)."""
    known = [v for v in values[:-1] if v is not None]
    return known[-1] if known else None


def _job_link(job_key: str, prefix: str) -> dict[str, str] | None:
    m = _JOB_KEY.match(job_key)
    if not m or m.group("prefix") != prefix:
        return None
    return {"queue": m.group("queue"), "id": m.group("id")}


def _job_json(dash: Dash, job: Job, state: str) -> dict[str, Any]:
    return {
        "queue": job.queue_name,
        "id": job.id,
        "name": job.name,
        "state": state,
        "progress": job.progress,
        "attempts_made": job.attempts_made,
        "failed_reason": job.failed_reason,
        "data": dash.redact(job.data),
    }


def routes(dash: Dash) -> list[Route]:
    backend = dash.backend

    open_queue = dash.open_queue

    # -- overview ------------------------------------------------------------------
    async def overview(request: Request) -> Response:
        snap = await backend.snapshot()
        rows = []
        for s in snap.queues:
            q = await backend.queue(s.queue)
            series = await _series(q, SERIES_MINUTES)
            base, tier = _tier_of(s.queue)
            rows.append(
                {
                    "snap": s,
                    "base": base,
                    "tier": tier,
                    "series": series,
                    "throughput": _latest(series["throughput"]),
                    "latency": _latest(series["latency"]),
                    "latency_p95": _latest(series["latency_p95"]),
                    "utilization": _latest(series["utilization"]),
                }
            )
        return dash.render(request, "overview.html", rows=rows, taken_at=snap.taken_at)

    # -- jobs of one queue ---------------------------------------------------------
    async def queue_page(request: Request) -> Response:
        q = await open_queue(request)
        if isinstance(q, Response):
            return q
        state = request.query_params.get("state", "waiting")
        if state not in LIST_STATES:
            return dash.problem(request, 400, f"state must be one of {', '.join(LIST_STATES)}")
        try:
            page = max(0, int(request.query_params.get("page", "0")))
        except ValueError:
            return dash.problem(request, 400, "page must be a whole number")
        start = page * PAGE_SIZE
        jobs = await q.get_jobs(cast(ListState, state), start, start + PAGE_SIZE)
        counts = (await q.get_job_counts()).to_dict()
        return dash.render(
            request,
            "queue.html",
            queue=q.name,
            state=state,
            states=LIST_STATES,
            jobs=jobs[:PAGE_SIZE],
            page=page,
            has_next=len(jobs) > PAGE_SIZE,
            counts=counts,
            paused=await q.is_paused(),
            series=await _series(q, SERIES_MINUTES),
            redact=dash.redact,
        )

    # -- one job ------------------------------------------------------------------------
    async def job_page(request: Request) -> Response:
        q = await open_queue(request)
        if isinstance(q, Response):
            return q
        job_id = request.path_params["job_id"]
        job = await q.get_job(job_id)
        if job is None:
            return dash.problem(request, 404, f"queue {q.name!r}: no job {job_id!r}")
        parent = _job_link(job.parent_key, backend.prefix) if job.parent_key else None
        children: list[dict[str, Any]] = []
        for key in await job.get_pending_children():
            children.append({"key": key, "link": _job_link(key, backend.prefix), "st": "pending"})
        for key in await job.get_children_failures():
            children.append({"key": key, "link": _job_link(key, backend.prefix), "st": "failed"})
        try:
            done = await job.get_children_values()
        except Exception:  # a corrupt child value must not hide the page
            done = {}
        for key in done:
            children.append({"key": key, "link": _job_link(key, backend.prefix), "st": "done"})
        timeline: list[tuple[str, str]] = [("created", _iso(job.created_at))]
        for e in job.errors:
            at = _iso(datetime.fromtimestamp(e.at / 1000, UTC)) if e.at else ""
            timeline.append((f"attempt {e.attempt} failed: {e.type}", at))
        if job.processed_at:
            timeline.append(("latest attempt started", _iso(job.processed_at)))
        if job.finished_at:
            timeline.append(("finished", _iso(job.finished_at)))
        timeline.sort(key=lambda t: t[1])
        return dash.render(
            request,
            "job.html",
            queue=q.name,
            job=job,
            data=dash.redact(job.data),
            return_value=dash.redact(job.return_value),
            state=await job.get_state(),
            options=job.options.to_json(),
            logs=await job.get_logs(),
            parent=parent,
            children=children,
            timeline=timeline,
        )

    # -- search ----------------------------------------------------------------------
    async def search_page(request: Request) -> Response:
        from ._search import run_search  # imported late: it needs the optional index

        return await run_search(dash, request)

    # -- schedulers, dead letters, workers, audit -----------------------------------
    async def schedulers_page(request: Request) -> Response:
        rows = []
        for name in await backend.discover():
            q = await backend.queue(name)
            for info in await q.list_schedulers():
                rows.append({"queue": name, "s": info, "data": dash.redact(info.data)})
        rows.sort(
            key=lambda r: (
                r["s"].next_run is None,
                r["s"].next_run.timestamp() if r["s"].next_run else 0.0,
                r["queue"],
            )
        )
        return dash.render(request, "schedulers.html", rows=rows)

    async def dead_letters_page(request: Request) -> Response:
        names = await backend.dead_letter_queues()
        chosen = request.query_params.get("dlq") or (names[0] if names else "")
        filters = {k: request.query_params.get(k, "").strip() for k in ("queue", "name", "error")}
        entries: list[Any] = []
        total = 0
        if chosen:
            try:
                dl = await backend.dead_letters(chosen)
            except ConfigurationError as exc:
                return dash.problem(request, 400, str(exc))
            total = await dl.count()
            entries = await dl.list(
                queue=filters["queue"] or None,
                name=filters["name"] or None,
                error_contains=filters["error"] or None,
                end=PAGE_SIZE - 1,
            )
        return dash.render(
            request,
            "dead_letters.html",
            dlqs=names,
            dlq=chosen,
            entries=entries,
            total=total,
            filters=filters,
        )

    async def dead_letter_page(request: Request) -> Response:
        dlq, entry_id = request.path_params["dlq"], request.path_params["entry"]
        try:
            dl = await backend.dead_letters(dlq)
        except ConfigurationError as exc:
            return dash.problem(request, 400, str(exc))
        entry = await dl.get(entry_id)
        if entry is None:
            return dash.problem(request, 404, f"dead-letter queue {dlq!r}: no entry {entry_id!r}")
        data = dash.redact(entry.data)
        return dash.render(
            request,
            "dead_letter.html",
            dlq=dlq,
            e=entry,
            data=data,
            data_json=json.dumps(data, indent=2, default=str),
            editable=not dash.redact or data == entry.data,
        )

    async def workers_page(request: Request) -> Response:
        rows = []
        for name in await backend.discover():
            q = await backend.queue(name)
            rows.extend(await q.get_workers())
        return dash.render(request, "workers.html", workers=rows)

    async def audit_page(request: Request) -> Response:
        audit = await backend.audit()
        before = request.query_params.get("before") or None
        entries = await audit.entries(
            limit=PAGE_SIZE,
            before=before,
            queue=request.query_params.get("queue") or None,
            actor=request.query_params.get("actor") or None,
            action=request.query_params.get("action") or None,
        )
        return dash.render(
            request,
            "audit.html",
            entries=entries,
            next_before=entries[-1].id if len(entries) == PAGE_SIZE else "",
            filters={k: request.query_params.get(k, "") for k in ("queue", "actor", "action")},
        )

    # -- live data ---------------------------------------------------------------------
    async def live_payload(request: Request, names: list[str]) -> dict[str, Any]:
        payload = _snapshot_json(await backend.snapshot(names))
        want = request.query_params.get("job", "")
        queue_name, _, job_id = want.partition("/")
        if queue_name and job_id and queue_name in names:
            job = await (await backend.queue(queue_name)).get_job(job_id)
            if job is not None:
                payload["job"] = _job_json(dash, job, await job.get_state())
        return payload

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield f"retry: {int(EVENT_INTERVAL * 3000)}\n\n"
            names: list[str] = []
            tick = 0
            # Bounded: ends when the client goes; Starlette also cancels the
            # generator on disconnect while it sleeps.
            while not await request.is_disconnected():
                if tick % _REDISCOVER_EVERY == 0:
                    names = await backend.discover()
                payload = await live_payload(request, names)
                yield f"data: {json.dumps(payload, default=str)}\n\n"
                tick += 1
                await asyncio.sleep(EVENT_INTERVAL)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def snapshot_json(request: Request) -> Response:
        """The same data as one event of ``/events``: the polling fallback."""
        payload = await live_payload(request, await backend.discover())
        return JSONResponse(json.loads(json.dumps(payload, default=str)))

    async def metrics(request: Request) -> Response:
        registry = CollectorRegistry()
        names = await backend.discover()
        collector = QueueCollector([await backend.queue(n) for n in names], registry=registry)
        await collector.refresh()
        body, content_type = render_latest(registry)
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        """Redis answers; with rules (``?max_waiting=&max_failure_rate=&min_workers=``,
        ``&queue=`` repeated to pick queues) the queues also keep the spec's health rules."""
        p = request.query_params
        try:
            rules = HealthRules(
                max_waiting=int(p["max_waiting"]) if "max_waiting" in p else None,
                max_failure_rate=float(p["max_failure_rate"]) if "max_failure_rate" in p else None,
                min_workers=int(p.get("min_workers", "0")),
            )
        except (ValueError, ConfigurationError) as exc:
            return JSONResponse({"ok": False, "error": f"bad rule: {exc}"}, 400)
        try:
            client = await backend.client()
            async with asyncio.timeout(2.0):
                await client.ping()
                names = p.getlist("queue") or await backend.discover()
                found = problems((await backend.snapshot(names)).queues, rules)
        except Exception as exc:  # a probe reports, it does not raise
            return JSONResponse({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 503)
        if found:
            return JSONResponse({"ok": False, "problems": found}, 503)
        return JSONResponse({"ok": True})

    q_path = "/queues/{name}"
    page = dash.page
    return [
        Route("/", page(overview), name="overview"),
        Route(q_path, page(queue_page), name="queue"),
        Route(q_path + "/jobs/{job_id}", page(job_page), name="job"),
        Route("/search", page(search_page), name="search"),
        Route("/schedulers", page(schedulers_page), name="schedulers"),
        Route("/dead-letters", page(dead_letters_page), name="dead_letters"),
        Route("/dead-letters/{dlq}/entries/{entry}", page(dead_letter_page), name="dead_letter"),
        Route("/workers", page(workers_page), name="workers"),
        Route("/audit", page(audit_page), name="audit"),
        Route("/events", page(events), name="events"),
        Route("/api/snapshot", page(snapshot_json), name="snapshot"),
        Route("/metrics", page(metrics), name="metrics"),
        Route("/healthz", healthz, name="healthz"),
        Route("/readyz", readyz, name="readyz"),
    ]
