"""How to reach the SMTP server, from arguments or the environment.

=================  ===================================================  =====================
variable           meaning                                              default
=================  ===================================================  =====================
SMTP_HOST          server name or address                               localhost
SMTP_PORT          port                                                 465 with SMTP_TLS,
                                                                        587 with SMTP_STARTTLS
                                                                        true, else 25
SMTP_USERNAME      login (with SMTP_PASSWORD); no login if unset
SMTP_PASSWORD      password
SMTP_STARTTLS      true: require STARTTLS; false: never; auto: use it   auto
                   when the server offers it
SMTP_TLS           true: TLS from the first byte (port 465 style)       false
SMTP_TIMEOUT       seconds for connecting and for each command          30
SMTP_FROM          sender address, e.g. ``PPBE <ppbe@example.mil>``     ppbe-jobs@localhost
=================  ===================================================  =====================

Booleans take true/false, yes/no, on/off or 1/0. A wrong value raises
:class:`jobq.ConfigurationError` naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr

from jobq import ConfigurationError

__all__ = ["SmtpSettings"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _env_bool(environ: Mapping[str, str], name: str, *, allow_auto: bool = False) -> bool | None:
    raw = _env(environ, name)
    if raw is None:
        return None
    word = raw.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    if allow_auto and word == "auto":
        return None
    accepted = "true/false, yes/no, on/off, 1/0" + (" or auto" if allow_auto else "")
    raise ConfigurationError(f"{name} must be {accepted}, got {raw!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpSettings:
    """SMTP server, security and sender (see the module docstring for the variables).

    Attributes:
        host: server name or address.
        port: server port.
        username: login name; ``None`` sends without logging in.
        password: login password (never shown in ``repr``).
        starttls: True requires STARTTLS, False never uses it, None uses it when
            the server offers it.
        use_tls: TLS from the first byte (implicit TLS, usually port 465).
        timeout: seconds allowed for connecting and for each SMTP command.
        sender: the From address.
    """

    host: str = "localhost"
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool | None = None
    use_tls: bool = False
    timeout: float = 30.0
    sender: str = "ppbe-jobs@localhost"

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigurationError("SMTP host must not be empty")
        if not 1 <= self.port <= 65535:
            raise ConfigurationError(f"SMTP port must be between 1 and 65535, got {self.port}")
        if self.use_tls and self.starttls:
            raise ConfigurationError(
                "SMTP use_tls (SMTP_TLS) and starttls (SMTP_STARTTLS) exclude each other: "
                "TLS from the start is already encrypted; set one of them"
            )
        if (self.username is None) != (self.password is None):
            raise ConfigurationError(
                "SMTP username (SMTP_USERNAME) and password (SMTP_PASSWORD) go together: "
                "set both to log in, or neither"
            )
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigurationError(f"SMTP timeout must be a positive number, got {self.timeout}")
        _, address = parseaddr(self.sender)
        if "@" not in address:
            raise ConfigurationError(
                f"SMTP sender (SMTP_FROM) must be an e-mail address, got {self.sender!r}"
            )

    @property
    def sender_domain(self) -> str:
        """The domain of the sender address (it names Message-IDs)."""
        _, address = parseaddr(self.sender)
        return address.rpartition("@")[2] or "localhost"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings:
        """Settings from the ``SMTP_*`` variables (``os.environ`` if ``environ`` is None)."""
        env = os.environ if environ is None else environ
        use_tls = _env_bool(env, "SMTP_TLS") or False
        starttls = _env_bool(env, "SMTP_STARTTLS", allow_auto=True)
        if use_tls and starttls:
            raise ConfigurationError(
                "SMTP_TLS and SMTP_STARTTLS are both true; set one of them "
                "(SMTP_TLS for implicit TLS on port 465, SMTP_STARTTLS for 587)"
            )
        port = 465 if use_tls else 587 if starttls else 25
        raw_port = _env(env, "SMTP_PORT")
        if raw_port is not None:
            try:
                port = int(raw_port, 10)
            except ValueError:
                port = 0
            if not 1 <= port <= 65535:
                raise ConfigurationError(
                    f"SMTP_PORT must be an integer between 1 and 65535, got {raw_port!r}"
                )
        timeout = 30.0
        raw_timeout = _env(env, "SMTP_TIMEOUT")
        if raw_timeout is not None:
            try:
                timeout = float(raw_timeout)
            except ValueError:
                timeout = math.nan
            if not (math.isfinite(timeout) and timeout > 0):
                raise ConfigurationError(
                    f"SMTP_TIMEOUT must be a positive number of seconds, got {raw_timeout!r}"
                )
        username = _env(env, "SMTP_USERNAME")
        # A password may legitimately start or end with spaces: take it as given.
        password = env.get("SMTP_PASSWORD") or None
        if (username is None) != (password is None):
            missing, given = (
                ("SMTP_PASSWORD", "SMTP_USERNAME")
                if password is None
                else ("SMTP_USERNAME", "SMTP_PASSWORD")
            )
            raise ConfigurationError(f"{given} is set but {missing} is not; set both or neither")
        sender = _env(env, "SMTP_FROM") or "ppbe-jobs@localhost"
        _, address = parseaddr(sender)
        if "@" not in address:
            raise ConfigurationError(f"SMTP_FROM must be an e-mail address, got {sender!r}")
        return cls(
            host=_env(env, "SMTP_HOST") or "localhost",
            port=port,
            username=username,
            password=password,
            starttls=starttls,
            use_tls=use_tls,
            timeout=timeout,
            sender=sender,
        )
