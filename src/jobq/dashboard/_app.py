"""The dashboard's Starlette application: pages, actions, SSE, metrics, probes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast, get_args

import jinja2
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from jobq.connection import ConnectionSettings, create_client, resolve
from jobq.errors import ConfigurationError, InvalidJobStateError, JobNotFoundError
from jobq.metrics import MetricsSnapshot, QueueCollector, render_latest, snapshot
from jobq.queue import ConnectionLike, ListState, Queue

from . import _security as sec

__all__ = ["create_app"]

#: ``?q=`` filters only the first jobs of a state: an indexed search is future work.
SEARCH_WINDOW = 500
PAGE_SIZE = 50
EVENT_INTERVAL = 1.0
_REDISCOVER_EVERY = 10  # SSE ticks between SCANs for new queues
LIST_STATES: tuple[str, ...] = get_args(ListState)

Endpoint = Callable[[Request], Awaitable[Response]]


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class _Backend:
    """The Redis client and open queues, bound to the event loop that made them.

    A ``redis.asyncio`` client belongs to one event loop; a server normally has
    one, but a test client may run each request on a new one, so the client is
    rebuilt when the loop changes.
    """

    def __init__(self, connection: ConnectionLike, prefix: str | None) -> None:
        self._connection = connection
        self._prefix_arg = prefix
        self._client: Redis | None = None
        self._owns = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, Queue] = {}
        self.prefix = prefix or "jobq"

    async def client(self) -> Redis:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is not loop:
            # The old loop may be gone; its connections cannot be closed from here.
            self._client, self._queues = None, {}
        if self._client is None:
            target = resolve(self._connection)
            if isinstance(target, ConnectionSettings):
                self._client, self._owns = create_client(target), True
                self.prefix = self._prefix_arg or target.prefix
            else:
                self._client, self._owns = target, False
                self.prefix = self._prefix_arg or "jobq"
            self._loop = loop
        return self._client

    async def queue(self, name: str) -> Queue:
        client = await self.client()
        q = self._queues.get(name)
        if q is None:
            q = await Queue(name, connection=client, prefix=self.prefix).open()
            self._queues[name] = q
        return q

    async def exists(self, name: str) -> bool:
        """Whether ``name`` is a known queue (it has a ``meta`` or ``id`` key)."""
        try:
            q = await self.queue(name)
        except ConfigurationError:
            return False
        c: Any = q.client
        return bool(await c.exists(q.keys.meta, q.keys.id))

    async def discover(self) -> list[str]:
        """Queue names under the prefix (SCAN, as ``jobq info`` does, on our client)."""
        c: Any = await self.client()
        pattern = re.compile(r"^\{" + re.escape(self.prefix) + r":([^{}]+)\}:(?:meta|id)$")
        found: set[str] = set()
        for suffix in ("meta", "id"):
            match = "{" + _glob_escape(self.prefix) + ":*}:" + suffix
            async for raw in c.scan_iter(match=match, count=1000):
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                m = pattern.match(key)
                if m:
                    found.add(m.group(1))
        return sorted(found)

    async def snapshot(self, names: list[str] | None = None) -> MetricsSnapshot:
        names = await self.discover() if names is None else names
        return await snapshot([await self.queue(n) for n in names])

    async def aclose(self) -> None:
        client, self._client, self._queues = self._client, None, {}
        if client is not None and self._owns and self._loop is asyncio.get_running_loop():
            await client.aclose()


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
            }
            for q in snap.queues
        ],
    }


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jobq.dashboard", "templates"),
        autoescape=True,  # every template, whatever its file name
        undefined=jinja2.StrictUndefined,
    )
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, default=str, sort_keys=True)
    env.filters["pct"] = lambda v: f"{float(v):.1%}"
    return Jinja2Templates(env=env)


def create_app(
    connection: ConnectionLike = None,
    *,
    prefix: str | None = None,
    token: str | None = None,
    read_only: bool = False,
) -> Starlette:
    """Build the dashboard as a Starlette app, to mount or to run alone (uvicorn).

    ``connection`` is what :class:`~jobq.Queue` takes (URL, settings, a
    ``redis.asyncio.Redis`` client, or None for the environment); ``prefix``
    the key prefix of the queues to show. With ``token``, every page, action,
    ``/events`` and ``/metrics`` needs ``Authorization: Bearer <token>`` or a
    sign-in by ``?token=`` (which sets a session cookie); ``/healthz`` and
    ``/readyz`` stay open for probes. ``read_only`` refuses every action (403).
    """
    if token is not None and not token:
        raise ConfigurationError("token must be a non-empty string, or None for no sign-in")
    backend = _Backend(connection, prefix)
    templates = _templates()

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        ctx.update(
            read_only=read_only, csrf_token=sec.csrf_token(request), sec_field=sec.CSRF_FIELD
        )
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def problem(request: Request, status: int, message: str) -> Response:
        return render(request, "error.html", status=status, status_code=status, message=message)

    def guarded(endpoint: Endpoint, *, action: bool = False) -> Endpoint:
        async def wrapper(request: Request) -> Response:
            if token is not None and not sec.authenticated(request, token):
                if request.method == "GET" and sec.query_token_ok(request, token):
                    target = request.url.remove_query_params("token")
                    resp: Response = RedirectResponse(str(target), status_code=303)
                    resp.set_cookie(
                        sec.SESSION_COOKIE,
                        sec.session_value(token),
                        path=sec.cookie_path(request),
                        httponly=True,
                        samesite="strict",
                        secure=request.url.scheme == "https",
                    )
                    return resp
                return PlainTextResponse(
                    "sign-in required: send 'Authorization: Bearer <token>' or open ?token=<token>",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if action:
                if read_only:
                    return problem(request, 403, "the dashboard is read-only")
                form = await sec.read_form(request)
                if not sec.csrf_ok(request, form):
                    return problem(request, 403, "missing or wrong CSRF token: reload the page")
            response = await endpoint(request)
            sec.set_csrf_cookie(request, response)
            return response

        return wrapper

    # -- pages ---------------------------------------------------------------
    async def overview(request: Request) -> Response:
        snap = await backend.snapshot()
        return render(request, "overview.html", snap=snap)

    async def queue_page(request: Request) -> Response:
        name = request.path_params["name"]
        if not await backend.exists(name):
            return problem(request, 404, f"no queue {name!r}")
        state = request.query_params.get("state", "waiting")
        if state not in LIST_STATES:
            return problem(request, 400, f"state must be one of {', '.join(LIST_STATES)}")
        query = request.query_params.get("q", "").strip()
        q = await backend.queue(name)
        window = SEARCH_WINDOW if query else PAGE_SIZE
        jobs = await q.get_jobs(cast(ListState, state), 0, window - 1)
        if query:
            needle = query.lower()
            jobs = [j for j in jobs if needle in j.id.lower() or needle in j.name.lower()]
        return render(
            request,
            "queue.html",
            queue=name,
            state=state,
            states=LIST_STATES,
            query=query,
            jobs=jobs[:PAGE_SIZE],
            matched=len(jobs),
            window=window,
            counts=(await q.get_job_counts()).to_dict(),
            paused=await q.is_paused(),
        )

    async def job_page(request: Request) -> Response:
        name, job_id = request.path_params["name"], request.path_params["job_id"]
        if not await backend.exists(name):
            return problem(request, 404, f"no queue {name!r}")
        q = await backend.queue(name)
        job = await q.get_job(job_id)
        if job is None:
            return problem(request, 404, f"queue {name!r}: no job {job_id!r}")
        return render(
            request,
            "job.html",
            queue=name,
            job=job,
            state=await job.get_state(),
            options=job.options.to_json(),
            logs=await job.get_logs(),
        )

    # -- actions -------------------------------------------------------------
    def job_action(verb: str) -> Endpoint:
        async def act(request: Request) -> Response:
            name, job_id = request.path_params["name"], request.path_params["job_id"]
            if not await backend.exists(name):
                return problem(request, 404, f"no queue {name!r}")
            q = await backend.queue(name)
            try:
                await getattr(q, verb)(job_id)
            except JobNotFoundError:
                return problem(request, 404, f"queue {name!r}: no job {job_id!r}")
            except InvalidJobStateError as exc:
                return problem(request, 409, f"cannot {verb} job {job_id!r}: {exc}")
            target = (
                request.url_for("queue", name=name)
                if verb == "remove"
                else request.url_for("job", name=name, job_id=job_id)
            )
            return RedirectResponse(str(target), status_code=303)

        return act

    def queue_action(verb: str) -> Endpoint:
        async def act(request: Request) -> Response:
            name = request.path_params["name"]
            if not await backend.exists(name):
                return problem(request, 404, f"no queue {name!r}")
            q = await backend.queue(name)
            await (q.pause() if verb == "pause" else q.resume())
            return RedirectResponse(str(request.url_for("queue", name=name)), status_code=303)

        return act

    # -- machine endpoints -----------------------------------------------------
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
                snap = await backend.snapshot(names)
                yield f"data: {json.dumps(_snapshot_json(snap))}\n\n"
                tick += 1
                await asyncio.sleep(EVENT_INTERVAL)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def snapshot_json(request: Request) -> Response:
        return JSONResponse(_snapshot_json(await backend.snapshot()))

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
        try:
            client = await backend.client()
            async with asyncio.timeout(1.0):
                await client.ping()
        except Exception as exc:  # a probe reports, it does not raise
            return JSONResponse({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 503)
        return JSONResponse({"ok": True})

    q_path = "/queues/{name}"
    j_path = q_path + "/jobs/{job_id}"
    routes = [
        Route("/", guarded(overview), name="overview"),
        Route(q_path, guarded(queue_page), name="queue"),
        Route(j_path, guarded(job_page), name="job"),
        Route("/events", guarded(events), name="events"),
        Route("/api/snapshot", guarded(snapshot_json), name="snapshot"),
        Route("/metrics", guarded(metrics), name="metrics"),
        Route("/healthz", healthz, name="healthz"),
        Route("/readyz", readyz, name="readyz"),
    ]
    for verb in ("pause", "resume"):
        routes.append(
            Route(
                f"{q_path}/{verb}",
                guarded(queue_action(verb), action=True),
                methods=["POST"],
                name=verb,
            )
        )
    for verb in ("retry", "promote", "remove"):
        routes.append(
            Route(
                f"{j_path}/{verb}",
                guarded(job_action(verb), action=True),
                methods=["POST"],
                name=verb,
            )
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jobq_backend = backend
    return app
