"""Actions of the dashboard: each is a POSTed form, role-checked, CSRF-checked, audited.

Bulk actions (retry all failed, clean) first show a page with how many jobs
they will touch; the POST then reports how many it did touch.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobq.errors import (
    ConfigurationError,
    InvalidJobStateError,
    JobNotFoundError,
    PayloadError,
)
from jobq.redaction import REDACTED

from . import _security as sec
from ._app import Dash

CleanableState = Literal["completed", "failed"]
_CLEANABLE: tuple[CleanableState, ...] = ("completed", "failed")
_CLEAN_BATCH = 1_000


def _grace_seconds(raw: str) -> int:
    try:
        value = int(raw or "0")
    except ValueError:
        raise ConfigurationError(f"grace must be whole seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"grace must be >= 0 seconds, got {value}")
    return value


def _contains_redacted(value: Any) -> bool:
    if value == REDACTED:
        return True
    if isinstance(value, dict):
        return any(_contains_redacted(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_redacted(v) for v in value)
    return False


def routes(dash: Dash) -> list[Route]:
    backend = dash.backend

    open_queue = dash.open_queue

    # -- one job -----------------------------------------------------------------------
    def job_action(verb: Literal["retry", "promote", "remove"]) -> Any:
        async def act(request: Request) -> Response:
            q = await open_queue(request)
            if isinstance(q, Response):
                return q
            job_id = request.path_params["job_id"]
            try:
                await getattr(q, verb)(job_id)
            except JobNotFoundError:
                return dash.problem(request, 404, f"queue {q.name!r}: no job {job_id!r}")
            except InvalidJobStateError as exc:
                return dash.problem(request, 409, f"cannot {verb} job {job_id!r}: {exc}")
            await dash.record(request, verb, queue=q.name, target=job_id, count=1)
            if verb == "remove":
                return dash.back(request, "queue", f"removed job {job_id}", name=q.name)
            done = {"retry": "retried", "promote": "promoted"}[verb]
            return dash.back(request, "job", f"{done} job {job_id}", name=q.name, job_id=job_id)

        return act

    # -- one queue ---------------------------------------------------------------------
    def pause_action(verb: Literal["pause", "resume"]) -> Any:
        async def act(request: Request) -> Response:
            q = await open_queue(request)
            if isinstance(q, Response):
                return q
            await (q.pause() if verb == "pause" else q.resume())
            await dash.record(request, verb, queue=q.name)
            return dash.back(request, "queue", f"queue {verb}d", name=q.name)

        return act

    async def retry_all_confirm(request: Request) -> Response:
        q = await open_queue(request)
        if isinstance(q, Response):
            return q
        count = (await q.get_job_counts()).failed
        return dash.render(request, "confirm.html", queue=q.name, kind="retry-all", count=count)

    async def retry_all(request: Request) -> Response:
        q = await open_queue(request)
        if isinstance(q, Response):
            return q
        form = await sec.read_form(request)
        done = await q.retry_all_failed()
        shown = form.get("expected", "")
        detail = f"confirmed {shown}" if shown else ""
        await dash.record(request, "retry-all", queue=q.name, count=done, detail=detail)
        return dash.back(request, "queue", f"retried {done} failed job(s)", name=q.name)

    async def clean_confirm(request: Request) -> Response:
        q = await open_queue(request)
        if isinstance(q, Response):
            return q
        state = request.query_params.get("state", "completed")
        if state not in _CLEANABLE:
            return dash.problem(request, 400, "clean takes state completed or failed")
        try:
            grace = _grace_seconds(request.query_params.get("grace", "0"))
        except ConfigurationError as exc:
            return dash.problem(request, 400, str(exc))
        count = await q.clean_count(state, grace * 1000)
        return dash.render(
            request,
            "confirm.html",
            queue=q.name,
            kind="clean",
            count=count,
            state=state,
            grace=grace,
        )

    async def clean(request: Request) -> Response:
        q = await open_queue(request)
        if isinstance(q, Response):
            return q
        form = await sec.read_form(request)
        state = form.get("state", "")
        if state not in _CLEANABLE:
            return dash.problem(request, 400, "clean takes state completed or failed")
        try:
            grace = _grace_seconds(form.get("grace", "0"))
        except ConfigurationError as exc:
            return dash.problem(request, 400, str(exc))
        total = 0
        while True:
            ids = await q.clean(state, grace * 1000, _CLEAN_BATCH)
            total += len(ids)
            if len(ids) < _CLEAN_BATCH:
                break
        await dash.record(
            request, "clean", queue=q.name, count=total, detail=f"state={state} grace={grace}s"
        )
        return dash.back(request, "queue", f"cleaned {total} {state} job(s)", name=q.name)

    # -- schedulers --------------------------------------------------------------------
    def scheduler_action(verb: Literal["run-now", "remove"]) -> Any:
        async def act(request: Request) -> Response:
            form = await sec.read_form(request)
            name, sid = form.get("queue", ""), form.get("id", "")
            if not name or not sid or not await backend.exists(name):
                return dash.problem(request, 404, f"no scheduler {sid!r} in queue {name!r}")
            q = await backend.queue(name)
            try:
                if verb == "run-now":
                    job = await q.run_scheduler_now(sid)
                    note = f"scheduler {sid} ran now: job {job.id}"
                elif await q.remove_scheduler(sid):
                    note = f"removed scheduler {sid}"
                else:
                    return dash.problem(request, 404, f"no scheduler {sid!r} in queue {name!r}")
            except JobNotFoundError as exc:
                return dash.problem(request, 404, str(exc))
            await dash.record(request, f"scheduler-{verb}", queue=name, target=sid, count=1)
            return dash.back(request, "schedulers", note)

        return act

    # -- dead letters ------------------------------------------------------------------
    async def replay(request: Request) -> Response:
        dlq = request.path_params["dlq"]
        form = await sec.read_form(request)
        entry_id = form.get("entry", "")
        dl = await backend.dead_letters(dlq)
        entry = await dl.get(entry_id)
        if entry is None:
            return dash.problem(request, 404, f"dead-letter queue {dlq!r}: no entry {entry_id!r}")
        by = request.scope["jobq.principal"].name
        raw = form.get("data", "").strip()
        edited = bool(raw) and form.get("edit") == "1"
        try:
            if edited:
                data = json.loads(raw)
                if _contains_redacted(data):
                    return dash.problem(
                        request,
                        400,
                        f"the edited data still holds {REDACTED!r} placeholders: replaying "
                        "them would lose the real values; replay unedited instead",
                    )
                job = await dl.replay(entry_id, data=data, by=by)
            else:
                job = await dl.replay(entry_id, by=by)
        except json.JSONDecodeError as exc:
            return dash.problem(request, 400, f"edited data is not valid JSON: {exc}")
        except (PayloadError, ConfigurationError) as exc:
            return dash.problem(request, 400, f"cannot replay {entry_id!r}: {exc}")
        except JobNotFoundError as exc:
            return dash.problem(request, 404, str(exc))
        await dash.record(
            request,
            "dlq-replay",
            queue=entry.queue,
            target=entry_id,
            count=1,
            detail=f"dlq={dlq} job={job.id}" + (" data edited" if edited else ""),
        )
        return dash.back(
            request, "job", f"replayed as job {job.id}", name=job.queue_name, job_id=job.id
        )

    async def discard(request: Request) -> Response:
        dlq = request.path_params["dlq"]
        form = await sec.read_form(request)
        entry_id = form.get("entry", "")
        dl = await backend.dead_letters(dlq)
        if not await dl.discard(entry_id):
            return dash.problem(request, 404, f"dead-letter queue {dlq!r}: no entry {entry_id!r}")
        await dash.record(request, "dlq-discard", queue=dlq, target=entry_id, count=1)
        return dash.back(request, "dead_letters", f"discarded {entry_id}", query={"dlq": dlq})

    q_path = "/queues/{name}"
    j_path = q_path + "/jobs/{job_id}"
    act, page = dash.action, dash.page
    return [
        Route(
            j_path + "/retry", act(job_action("retry"), "operator"), methods=["POST"], name="retry"
        ),
        Route(
            j_path + "/promote",
            act(job_action("promote"), "operator"),
            methods=["POST"],
            name="promote",
        ),
        Route(
            j_path + "/remove", act(job_action("remove"), "admin"), methods=["POST"], name="remove"
        ),
        Route(
            q_path + "/pause",
            act(pause_action("pause"), "operator"),
            methods=["POST"],
            name="pause",
        ),
        Route(
            q_path + "/resume",
            act(pause_action("resume"), "operator"),
            methods=["POST"],
            name="resume",
        ),
        Route(
            q_path + "/retry-all",
            page(retry_all_confirm),
            methods=["GET"],
            name="retry_all_confirm",
        ),
        Route(
            q_path + "/retry-all", act(retry_all, "operator"), methods=["POST"], name="retry_all"
        ),
        Route(q_path + "/clean", page(clean_confirm), methods=["GET"], name="clean_confirm"),
        Route(q_path + "/clean", act(clean, "admin"), methods=["POST"], name="clean"),
        Route(
            "/schedulers/run-now",
            act(scheduler_action("run-now"), "operator"),
            methods=["POST"],
            name="scheduler_run_now",
        ),
        Route(
            "/schedulers/remove",
            act(scheduler_action("remove"), "admin"),
            methods=["POST"],
            name="scheduler_remove",
        ),
        Route(
            "/dead-letters/{dlq}/replay",
            act(replay, "operator"),
            methods=["POST"],
            name="dlq_replay",
        ),
        Route(
            "/dead-letters/{dlq}/discard",
            act(discard, "admin"),
            methods=["POST"],
            name="dlq_discard",
        ),
    ]
