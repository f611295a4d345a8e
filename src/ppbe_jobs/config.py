"""Configuration from the environment, checked at start-up.

The spec's variables, plus what the application needs:

=============================  ==============================================  ==========
variable                       meaning                                         default
=============================  ==============================================  ==========
REDIS_URL                      redis://, rediss:// (TLS), unix://              (embedded)
REDIS_HOST / REDIS_PORT        used when REDIS_URL is unset                    localhost / 6379
REDIS_PASSWORD / REDIS_USERNAME  AUTH / ACL user
REDIS_QUEUE_DB                 database number                                 0
QUEUE_CONCURRENCY              concurrency of the standard tier                5
QUEUE_MAX_ATTEMPTS             attempts of the standard tier                   3
QUEUE_BACKOFF_DELAY            first exponential backoff wait, ms              2000
QUEUE_HEALTH_MAX_WAITING       health: most waiting jobs before unhealthy      1000
QUEUE_HEALTH_MAX_FAILURE_RATE  health: failed / finished over the last hour    0.1
DATABASE_URL                   SQLAlchemy URL (sqlite, postgresql+psycopg)     SQLite file
PPBE_DATA_DIR                  where the default database and outputs live     ./ppbe-data
PPBE_OUTPUT_DIR                where reports and exports are written           PPBE_DATA_DIR/output
=============================  ==============================================  ==========

With no Redis variable set, jobq starts its embedded Valkey server. A wrong
value stops start-up with a :class:`jobq.ConfigurationError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobq import ConfigurationError, ConnectionSettings

from .tiers import Tier, TierConfig

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """The application's settings (see the module docstring for the variables)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    queue_concurrency: int = Field(default=5, ge=1, le=1000)
    queue_max_attempts: int = Field(default=3, ge=1, le=100)
    queue_backoff_delay: int = Field(default=2000, ge=0)
    queue_health_max_waiting: int = Field(default=1000, ge=0)
    queue_health_max_failure_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    database_url: str | None = None
    ppbe_data_dir: Path = Path("ppbe-data")
    ppbe_output_dir: Path | None = None
    redis: ConnectionSettings | None = Field(default=None, exclude=True)

    @property
    def output_dir(self) -> Path:
        """Where reports and exports are written."""
        return self.ppbe_output_dir or self.ppbe_data_dir / "output"

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, or a SQLite file in the data folder."""
        return self.database_url or f"sqlite:///{self.ppbe_data_dir / 'ppbe.sqlite3'}"

    def tier_config(self) -> TierConfig:
        """The tiers, with the standard tier taking QUEUE_CONCURRENCY and QUEUE_MAX_ATTEMPTS."""
        base = TierConfig()
        return TierConfig(
            tiers=tuple(
                Tier(
                    name=t.name,
                    low=t.low,
                    high=t.high,
                    concurrency=self.queue_concurrency if t.name == "standard" else t.concurrency,
                    attempts=self.queue_max_attempts if t.name == "standard" else t.attempts,
                )
                for t in base
            )
        )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check the settings; errors name the variable at fault."""
    env = dict(os.environ if environ is None else environ)
    redis = ConnectionSettings.from_env(env)  # raises ConfigurationError naming the variable
    names = {name.upper(): name for name in Settings.model_fields if name != "redis"}
    values = {names[k.upper()]: v for k, v in env.items() if k.upper() in names and v != ""}
    try:
        return Settings.model_validate({**values, "redis": redis})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            given = env.get(field.upper(), "")
            problems.append(f"{field.upper()}={given!r}: {err['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from exc
