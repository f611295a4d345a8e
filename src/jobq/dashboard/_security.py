"""Sign-in by token and CSRF protection for the dashboard.

Auth: with a token configured, a request passes with ``Authorization: Bearer
<token>``, or with the session cookie that ``?token=<token>`` sets (the cookie
holds an HMAC of the token, never the token itself). Comparisons use
:func:`hmac.compare_digest`.

CSRF: double-submit. Every page sets a random token in a ``SameSite=Strict``
cookie; each form carries it in a hidden field (or an ``X-CSRF-Token`` header)
and a POST passes only when both are present and equal. No server-side session
is needed, so several dashboard processes behind a load balancer agree.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

CSRF_COOKIE = "jobq_csrf"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "jobq_session"
_MAX_FORM_BYTES = 64 * 1024


def cookie_path(request: Request) -> str:
    """Cookies are scoped to where the dashboard is mounted."""
    root = str(request.scope.get("root_path") or "")
    return root or "/"


def session_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token, so the cookie is no token."""
    return hmac.new(token.encode(), b"jobq-dashboard-session", hashlib.sha256).hexdigest()


def authenticated(request: Request, token: str) -> bool:
    """True when the request carries the token (header) or a valid session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(SESSION_COOKIE)
    return cookie is not None and hmac.compare_digest(
        cookie.encode(), session_value(token).encode()
    )


def query_token_ok(request: Request, token: str) -> bool:
    """True when ``?token=`` matches (the caller then sets the session cookie)."""
    given = request.query_params.get("token")
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def csrf_token(request: Request) -> str:
    """The request's CSRF token: the cookie's, or a fresh one (set on the response)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) >= 32:
        return existing
    fresh: str = request.scope.setdefault("jobq.csrf_new", secrets.token_urlsafe(32))
    return fresh


def set_csrf_cookie(request: Request, response: Response) -> None:
    """Set the cookie when :func:`csrf_token` minted a new token for this request."""
    fresh = request.scope.get("jobq.csrf_new")
    if fresh:
        response.set_cookie(
            CSRF_COOKIE,
            fresh,
            path=cookie_path(request),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form body (first value of each field); multipart is not needed."""
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def csrf_ok(request: Request, form: dict[str, str]) -> bool:
    """Double-submit check: the cookie and the form field (or header) match."""
    cookie = request.cookies.get(CSRF_COOKIE)
    given = form.get(CSRF_FIELD) or request.headers.get("x-csrf-token")
    if not cookie or not given:
        return False
    return hmac.compare_digest(cookie.encode(), given.encode())
