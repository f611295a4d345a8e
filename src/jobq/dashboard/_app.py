"""The dashboard application: configuration, sign-in, guards, and the route table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobq.errors import ConfigurationError
from jobq.queue import ConnectionLike, Queue
from jobq.redaction import DEFAULT_REDACTED_FIELDS, Redactor

from . import _security as sec
from ._backend import Backend
from ._charts import sparkline

__all__ = ["Dash", "create_app"]

log = logging.getLogger("jobq.dashboard")

Endpoint = Callable[[Request], Awaitable[Response]]

_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    """Adds a strict Content-Security-Policy and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in _SECURITY_HEADERS if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jobq.dashboard", "templates"),
        autoescape=True,  # every template, whatever its file name
        undefined=jinja2.StrictUndefined,
    )
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, default=str, sort_keys=True)
    env.filters["pct"] = lambda v: "-" if v is None else f"{float(v):.1%}"
    env.filters["ms"] = lambda v: "-" if v is None else f"{float(v):,.0f} ms"
    env.filters["num"] = lambda v: "-" if v is None else f"{v:,}"
    env.globals["sparkline"] = sparkline
    return Jinja2Templates(env=env)


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site is a valid place to return to after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


class Dash:
    """What every page and action needs: backend, templates, sign-in, audit, redaction."""

    def __init__(
        self,
        backend: Backend,
        auth: sec.Authenticator,
        *,
        read_only: bool,
        redactor: Redactor,
        history: Any,
        title: str,
    ) -> None:
        self.backend = backend
        self.auth = auth
        self.read_only = read_only
        self.redact = redactor
        self.history = history
        self.title = title
        self.templates = _templates()

    # -- rendering -----------------------------------------------------------
    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        principal: sec.Principal | None = request.scope.get("jobq.principal")
        role = principal.role if principal else "viewer"
        ctx.update(
            title=self.title,
            read_only=self.read_only,
            csrf_token=sec.csrf_token(request),
            sec_field=sec.CSRF_FIELD,
            principal=principal,
            can_operate=not self.read_only and sec.allows(role, "operator"),
            can_admin=not self.read_only and sec.allows(role, "admin"),
            signed_in=principal is not None and principal.via != "open",
            notice=request.query_params.get("notice", "")[:300],
        )
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    def problem(self, request: Request, status: int, message: str) -> Response:
        return self.render(
            request, "error.html", status=status, status_code=status, message=message
        )

    async def open_queue(self, request: Request) -> Queue | Response:
        """The queue named by the path, or a 404 page when there is no such queue."""
        name = request.path_params["name"]
        if not await self.backend.exists(name):
            return self.problem(request, 404, f"no queue {name!r}")
        return await self.backend.queue(name)

    def back(
        self,
        request: Request,
        route: str,
        notice: str = "",
        query: Mapping[str, str] | None = None,
        **params: str,
    ) -> Response:
        """303 to a named route, with an optional notice shown on arrival."""
        extra = dict(query or {})
        if notice:
            extra["notice"] = notice
        url = request.url_for(route, **params).include_query_params(**extra)
        return RedirectResponse(str(url), status_code=303)

    # -- guards ----------------------------------------------------------------
    def _unauthenticated(self, request: Request) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "")
        if request.method == "GET" and wants_html:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            login = request.url_for("login").include_query_params(next=here)
            return RedirectResponse(str(login), status_code=303)
        return PlainTextResponse(
            "sign-in required: send 'Authorization: Bearer <token>' or sign in at /login",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    def page(self, endpoint: Endpoint) -> Endpoint:
        """A GET page or API: any signed-in role may read."""

        async def wrapper(request: Request) -> Response:
            principal = self.auth.principal(request)
            if principal is None:
                given = request.query_params.get("token")
                found = self.auth.token_principal(given) if given else None
                if found is not None and request.method == "GET":
                    target = request.url.remove_query_params("token")
                    resp: Response = RedirectResponse(str(target), status_code=303)
                    sec.set_session(request, resp, self.auth.session_cookie(found))
                    return resp
                return self._unauthenticated(request)
            request.scope["jobq.principal"] = principal
            if self.history is not None:
                await self.history.ensure()  # indexing starts with the first page seen
            response = await endpoint(request)
            sec.set_csrf_cookie(request, response)
            return response

        return wrapper

    def action(self, endpoint: Endpoint, role: sec.Role) -> Endpoint:
        """A POSTed action: signed in, role at least ``role``, not read-only, CSRF-checked."""

        async def wrapper(request: Request) -> Response:
            principal = self.auth.principal(request)
            if principal is None:
                return self._unauthenticated(request)
            request.scope["jobq.principal"] = principal
            if self.read_only:
                return self.problem(request, 403, "the dashboard is read-only")
            if not sec.allows(principal.role, role):
                return self.problem(
                    request, 403, f"this action needs the {role} role; you are {principal.role}"
                )
            form = await sec.read_form(request)
            if not sec.csrf_ok(request, form):
                return self.problem(request, 403, "missing or wrong CSRF token: reload the page")
            response = await endpoint(request)
            sec.set_csrf_cookie(request, response)
            return response

        return wrapper

    async def record(
        self,
        request: Request,
        action: str,
        *,
        queue: str = "",
        target: str = "",
        count: int | None = None,
        detail: str = "",
    ) -> None:
        """Append the action to the audit log (a failure to log is logged, not raised)."""
        principal: sec.Principal | None = request.scope.get("jobq.principal")
        client = request.client.host if request.client else ""
        try:
            audit = await self.backend.audit()
            await audit.record(
                principal.name if principal else "anonymous",
                action,
                queue=queue,
                target=target,
                count=count,
                detail=detail,
                role=principal.role if principal else "",
                source=f"dashboard {client}".strip(),
            )
        except Exception:  # the action happened; say so in the log at least
            log.exception("could not write the audit entry for %s on %r", action, queue)

    # -- sign-in pages ------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        resp = self.render(
            request,
            "login.html",
            next=_safe_next(request.query_params.get("next")) or "",
            error="",
            has_users=bool(self.auth.users),
            has_tokens=bool(self.auth.tokens),
        )
        sec.set_csrf_cookie(request, resp)
        return resp

    async def login(self, request: Request) -> Response:
        form = await sec.read_form(request)
        nxt = _safe_next(form.get("next")) or str(request.url_for("overview").path)
        if not sec.csrf_ok(request, form):
            return self.problem(request, 403, "missing or wrong CSRF token: reload the page")
        user, password, token = form.get("user", ""), form.get("password", ""), form.get("token")
        principal: sec.Principal | None = None
        if token:
            principal = self.auth.token_principal(token)
        elif user:
            principal = await asyncio.to_thread(self.auth.password_principal, user, password)
        if principal is None:
            request.scope["jobq.principal"] = None
            with contextlib.suppress(Exception):
                audit = await self.backend.audit()
                await audit.record(
                    user or "token",
                    "sign-in-failed",
                    source="dashboard " + (request.client.host if request.client else ""),
                )
            resp = self.render(
                request,
                "login.html",
                status=401,
                next=nxt,
                error="wrong user name, password or token",
                has_users=bool(self.auth.users),
                has_tokens=bool(self.auth.tokens),
            )
            sec.set_csrf_cookie(request, resp)
            return resp
        request.scope["jobq.principal"] = principal
        await self.record(request, "sign-in", detail=principal.via)
        root = str(request.scope.get("root_path") or "")
        target = nxt if nxt.startswith(root) else root + nxt
        resp = RedirectResponse(target, status_code=303)
        sec.set_session(request, resp, self.auth.session_cookie(principal))
        return resp

    async def logout(self, request: Request) -> Response:
        form = await sec.read_form(request)
        if not sec.csrf_ok(request, form):
            return self.problem(request, 403, "missing or wrong CSRF token: reload the page")
        resp = RedirectResponse(str(request.url_for("login")), status_code=303)
        sec.set_session(request, resp, None)
        return resp


def _load_history(
    history: Any,
    connection: ConnectionLike,
    prefix: str | None,
    redactor: Redactor,
    backend: Backend,
) -> Any:
    """The job-history search index: built lazily (True or a file path), or none (False)."""
    if history is False or history is None:
        return None
    from ._search import History  # the index needs sqlite3 with FTS5; only load it when asked

    path = None if history is True else str(history)
    return History(connection, prefix, path, redactor.fields, backend.discover)


def create_app(
    connection: ConnectionLike = None,
    *,
    prefix: str | None = None,
    token: str | None = None,
    tokens: Mapping[str, sec.Role] | None = None,
    users: Mapping[str, sec.User] | None = None,
    secret_key: str | None = None,
    read_only: bool = False,
    redact: Iterable[str] = DEFAULT_REDACTED_FIELDS,
    history: Any = True,
    audit_max_entries: int = 10_000,
    title: str = "jobq",
) -> Starlette:
    """Build the dashboard as a Starlette app, to mount or to run alone (uvicorn).

    ``connection`` is what :class:`~jobq.Queue` takes (URL, settings, a
    ``redis.asyncio.Redis`` client, or None for the environment); ``prefix``
    the key prefix of the queues to show.

    Sign-in: ``token`` is an admin API token (shorthand for ``tokens={token:
    "admin"}``); ``tokens`` maps more tokens to roles; ``users`` maps user
    names to :class:`User` (a scrypt password hash and a role). With none of
    these the dashboard is open and everyone is admin (bind it to loopback).
    ``secret_key`` signs session cookies: set the same one on every process
    behind a load balancer. ``/healthz`` and ``/readyz`` stay open for probes.

    ``read_only`` refuses every action (403). ``redact`` names payload fields
    shown (and indexed) as ``[redacted]``. ``history``: True builds an
    in-memory search index of finished jobs, a path keeps it in a file, False
    turns search over history off (the live states are still searched).
    """
    all_tokens: dict[str, sec.Role] = dict(tokens or {})
    if token is not None:
        if not token:
            raise ConfigurationError("token must be a non-empty string, or None for no sign-in")
        all_tokens[token] = "admin"
    auth = sec.Authenticator(tokens=all_tokens, users=users or {}, secret_key=secret_key)
    backend = Backend(connection, prefix, audit_max_entries)
    redactor = Redactor(redact)
    dash = Dash(
        backend,
        auth,
        read_only=read_only,
        redactor=redactor,
        history=_load_history(history, connection, prefix, redactor, backend),
        title=title,
    )

    from . import _actions, _pages

    routes: list[Route | Mount] = [
        Route("/login", dash.login_form, name="login", methods=["GET"]),
        Route("/login", dash.login, name="login_post", methods=["POST"]),
        Route("/logout", dash.logout, name="logout", methods=["POST"]),
        Mount(
            "/static",
            app=StaticFiles(packages=[("jobq.dashboard", "static")]),
            name="static",
        ),
        *_pages.routes(dash),
        *_actions.routes(dash),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if dash.history is not None:
                await dash.history.aclose()
            await backend.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(_SecurityHeaders)
    app.state.jobq_backend = backend
    app.state.jobq_dashboard = dash
    return app
