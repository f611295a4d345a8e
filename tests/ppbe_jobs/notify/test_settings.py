"""SMTP settings from the environment: defaults, parsing and errors naming the variable."""

from __future__ import annotations

import pytest

from jobq import ConfigurationError
from ppbe_jobs.notify import SmtpSettings


def test_defaults_with_an_empty_environment() -> None:
    settings = SmtpSettings.from_env({})
    assert settings == SmtpSettings()
    assert (settings.host, settings.port, settings.starttls, settings.use_tls) == (
        "localhost",
        25,
        None,
        False,
    )
    assert settings.username is None
    assert settings.sender == "ppbe-jobs@localhost"


def test_every_variable() -> None:
    settings = SmtpSettings.from_env(
        {
            "SMTP_HOST": "smtp.example.mil",
            "SMTP_PORT": "2525",
            "SMTP_USERNAME": "ppbe",
            "SMTP_PASSWORD": " pass word ",
            "SMTP_STARTTLS": "yes",
            "SMTP_TLS": "0",
            "SMTP_TIMEOUT": "12.5",
            "SMTP_FROM": "PPBE Jobs <ppbe@example.mil>",
        }
    )
    assert settings == SmtpSettings(
        host="smtp.example.mil",
        port=2525,
        username="ppbe",
        password=" pass word ",
        starttls=True,
        use_tls=False,
        timeout=12.5,
        sender="PPBE Jobs <ppbe@example.mil>",
    )
    assert settings.sender_domain == "example.mil"
    assert "pass word" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "port", "starttls", "use_tls"),
    [
        ({"SMTP_TLS": "true"}, 465, None, True),
        ({"SMTP_STARTTLS": "on"}, 587, True, False),
        ({"SMTP_STARTTLS": "off"}, 25, False, False),
        ({"SMTP_STARTTLS": "AUTO"}, 25, None, False),
    ],
)
def test_default_port_follows_the_security_mode(
    env: dict[str, str], port: int, starttls: bool | None, use_tls: bool
) -> None:
    settings = SmtpSettings.from_env(env)
    assert (settings.port, settings.starttls, settings.use_tls) == (port, starttls, use_tls)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMTP_PORT": "smtp"}, r"SMTP_PORT must be an integer between 1 and 65535, got 'smtp'"),
        ({"SMTP_PORT": "70000"}, r"SMTP_PORT .* got '70000'"),
        ({"SMTP_STARTTLS": "maybe"}, r"SMTP_STARTTLS must be .* or auto, got 'maybe'"),
        ({"SMTP_TLS": "auto"}, r"SMTP_TLS must be true/false, yes/no, on/off, 1/0, got 'auto'"),
        ({"SMTP_TLS": "1", "SMTP_STARTTLS": "1"}, r"SMTP_TLS and SMTP_STARTTLS are both true"),
        ({"SMTP_USERNAME": "ppbe"}, r"SMTP_USERNAME is set but SMTP_PASSWORD is not"),
        ({"SMTP_PASSWORD": "x"}, r"SMTP_PASSWORD is set but SMTP_USERNAME is not"),
        ({"SMTP_TIMEOUT": "-1"}, r"SMTP_TIMEOUT must be a positive number of seconds, got '-1'"),
        ({"SMTP_TIMEOUT": "soon"}, r"SMTP_TIMEOUT .* got 'soon'"),
        ({"SMTP_FROM": "ppbe"}, r"SMTP_FROM must be an e-mail address, got 'ppbe'"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SmtpSettings.from_env(env)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigurationError, match="exclude each other"):
        SmtpSettings(use_tls=True, starttls=True)
    with pytest.raises(ConfigurationError, match="go together"):
        SmtpSettings(username="u")
    with pytest.raises(ConfigurationError, match="port must be between 1 and 65535, got 0"):
        SmtpSettings(port=0)


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_HOST", "mail.example.mil")
    monkeypatch.setenv("SMTP_PORT", "1025")
    settings = SmtpSettings.from_env()
    assert (settings.host, settings.port) == ("mail.example.mil", 1025)
