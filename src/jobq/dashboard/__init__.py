"""The jobq web dashboard: a Starlette app to see and steer queues.

::

    from jobq.dashboard import User, create_app, hash_password

    app = create_app(
        "redis://localhost:6379/0",
        users={"ana": User(hash_password("s3cret"), role="operator")},
        secret_key="same-on-every-process",
    )
    # run alone:    uvicorn (or ``jobq dashboard``)
    # or mount it:  Starlette(routes=[Mount("/jobs", app=app)])

Needs the ``dashboard`` extra (starlette, jinja2; uvicorn to run it alone);
importing this package without them raises an ImportError that says so.

Pages: queues overview (counts, throughput, latency, failure rate, depth and
worker utilization with charts over the last hour, live through server-sent
events with a polling fallback), jobs of a queue by state, job detail, search
over job history, schedulers, dead letters (replay, optionally with edited
data), workers and the audit log. Actions are POSTed forms, checked for role
(viewer, operator, admin) and CSRF token, and recorded in the audit log.
Endpoints: ``/events`` (SSE), ``/api/snapshot`` (polling), ``/metrics``
(Prometheus), ``/healthz``, ``/readyz``. Every asset is served from the
package (htmx is vendored); pages carry a strict Content-Security-Policy.
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
from ._security import ROLES, Role, User, hash_password, verify_password

__all__ = ["ROLES", "Role", "User", "create_app", "hash_password", "verify_password"]
