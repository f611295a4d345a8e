"""Sign-in, roles, sessions and CSRF protection for the dashboard.

Roles, each including the one before: ``viewer`` (read everything but
redacted fields), ``operator`` (retry, promote, retry all failed, pause and
resume, replay dead letters, run a scheduler now), ``admin`` (remove jobs,
clean, drain, discard dead letters, remove schedulers).

Sign-in: by API token (``Authorization: Bearer <token>``, or ``?token=`` once,
which sets a session cookie) or by user name and password on ``/login``.
Passwords are stored as scrypt hashes (:func:`hash_password`, also
``jobq dashboard hash-password``); tokens are compared in constant time.

Sessions: a cookie holding ``user|role|expiry`` signed with HMAC-SHA256 under
the dashboard's secret key; no server-side state, so several dashboard
processes sharing one secret agree. Without a configured secret a random one is
drawn at start (sessions then end when the process restarts).

CSRF: double-submit. Every page sets a random token in a ``SameSite=Strict``
cookie; each form carries it in a hidden field (or an ``X-CSRF-Token`` header)
and a POST passes only when both are present and equal.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from jobq.errors import ConfigurationError

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

CSRF_COOKIE = "jobq_csrf"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "jobq_session"
SESSION_SECONDS = 12 * 3600
_MAX_FORM_BYTES = 256 * 1024
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def check_role(value: str, field: str) -> Role:
    if value not in ROLES:
        raise ConfigurationError(f"{field} must be one of {', '.join(ROLES)}, got {value!r}")
    return value


def allows(role: Role, needed: Role) -> bool:
    """Whether ``role`` may do what ``needed`` may."""
    return ROLES.index(role) >= ROLES.index(needed)


# -- passwords ---------------------------------------------------------------
def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash``: what a user entry stores instead of the password."""
    if not password:
        raise ConfigurationError("password must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not an scrypt$N$r$p$salt$hash string")
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    if n < 2**10 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        raise ValueError("scrypt parameters out of range")
    return n, r, p, _unb64(parts[4]), _unb64(parts[5])


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        n, r, p, salt, expected = _parse_hash(stored)
    except (ValueError, TypeError):
        return False
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**27
    )
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard account: a password hash (never the password) and a role."""

    password_hash: str
    role: Role = "viewer"

    def __post_init__(self) -> None:
        check_role(self.role, "user role")
        try:
            _parse_hash(self.password_hash)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "password_hash must come from hash_password() or "
                f"'jobq dashboard hash-password' ({exc})"
            ) from exc


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request."""

    name: str
    role: Role
    via: str  # "token", "password", "open" (no sign-in configured)


class Authenticator:
    """Tokens and users from configuration; signs and checks session cookies."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, Role],
        users: Mapping[str, User],
        secret_key: str | None,
    ) -> None:
        for tok, role in tokens.items():
            if not tok:
                raise ConfigurationError("a dashboard token must be a non-empty string")
            check_role(role, "token role")
        for name in users:
            if not name or "|" in name:
                raise ConfigurationError(f"user name {name!r} must be non-empty, without '|'")
        self.tokens = dict(tokens)
        self.users = dict(users)
        self.open = not tokens and not users
        self.key = (secret_key or secrets.token_urlsafe(32)).encode()

    # -- tokens ------------------------------------------------------------
    def token_principal(self, given: str) -> Principal | None:
        found: Principal | None = None
        for tok, role in self.tokens.items():
            # Compare against every token so timing does not tell which matched.
            if hmac.compare_digest(given.encode(), tok.encode()):
                found = Principal(f"token:{_token_label(tok)}", role, "token")
        return found

    # -- passwords ---------------------------------------------------------
    def password_principal(self, name: str, password: str) -> Principal | None:
        user = self.users.get(name)
        if user is None:
            # Spend the same time as a real check, so a name cannot be probed.
            verify_password(password, _dummy_hash())
            return None
        if not verify_password(password, user.password_hash):
            return None
        return Principal(name, user.role, "password")

    # -- sessions ----------------------------------------------------------
    def _sign(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, principal: Principal, now: float | None = None) -> str:
        expires = int((now or time.time()) + SESSION_SECONDS)
        body = f"{principal.name}|{principal.role}|{principal.via}|{expires}"
        return _b64(body.encode()) + "." + self._sign(body)

    def session_principal(self, cookie: str, now: float | None = None) -> Principal | None:
        encoded, _, mac = cookie.partition(".")
        try:
            body = _unb64(encoded).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(mac.encode(), self._sign(body).encode()):
            return None
        try:
            name, role, via, expires = body.split("|")
            if int(expires) < (now or time.time()):
                return None
        except ValueError:
            return None
        # A user removed or demoted since sign-in loses the old role at once.
        if via == "password":
            user = self.users.get(name)
            if user is None:
                return None
            role = user.role
        elif via == "token" and not any(f"token:{_token_label(t)}" == name for t in self.tokens):
            return None
        if role not in ROLES:
            return None
        return Principal(name, check_role(role, "role"), via)

    def principal(self, request: Request) -> Principal | None:
        """The signed-in principal of ``request``, or None."""
        if self.open:
            return Principal("anonymous", "admin", "open")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            return self.token_principal(given.strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        return self.session_principal(cookie) if cookie else None


def _token_label(token: str) -> str:
    """A stable, non-secret name for a token in the audit log."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


@functools.cache
def _dummy_hash() -> str:
    return hash_password("jobq-dummy-password")


# -- cookies and CSRF ----------------------------------------------------------
def cookie_path(request: Request) -> str:
    """Cookies are scoped to where the dashboard is mounted."""
    root = str(request.scope.get("root_path") or "")
    return root or "/"


def set_session(request: Request, response: Response, value: str | None) -> None:
    """Set (or with None, clear) the session cookie."""
    if value is None:
        response.delete_cookie(SESSION_COOKIE, path=cookie_path(request))
        return
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path=cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


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
    cached = request.scope.get("jobq.form")
    if isinstance(cached, dict):
        return cached
    body = await request.body()
    form: dict[str, str] = {}
    if len(body) <= _MAX_FORM_BYTES:
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        form = {k: v[0] for k, v in parsed.items()}
    request.scope["jobq.form"] = form
    return form


def csrf_ok(request: Request, form: dict[str, str]) -> bool:
    """Double-submit check: the cookie and the form field (or header) match."""
    cookie = request.cookies.get(CSRF_COOKIE)
    given = form.get(CSRF_FIELD) or request.headers.get("x-csrf-token")
    if not cookie or not given:
        return False
    return hmac.compare_digest(cookie.encode(), given.encode())
