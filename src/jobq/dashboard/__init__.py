"""The jobq web dashboard: a Starlette app to see and steer queues.

::

    from jobq.dashboard import create_app

    app = create_app("redis://localhost:6379/0", token="s3cret")
    # run alone:    uvicorn --factory ... (or uvicorn.run(app))
    # or mount it:  Starlette(routes=[Mount("/jobs", app=app)])

Needs the ``dashboard`` extra (``pip install starlette jinja2``); importing
this package without them raises an ImportError that says so.

Pages: ``/`` (queues overview, live through server-sent events), ``/queues/{name}``
(jobs by state, ``?state=`` and ``?q=``), ``/queues/{name}/jobs/{id}`` (job detail).
Endpoints: ``/events`` (SSE), ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``.
Actions are POSTed forms guarded by a double-submit CSRF token.
"""

from __future__ import annotations

try:
    import jinja2 as _jinja2  # noqa: F401
    import starlette as _starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "jobq.dashboard needs starlette and jinja2: pip install starlette jinja2 "
        "(and uvicorn to run it alone)"
    ) from exc

from ._app import create_app

__all__ = ["create_app"]
