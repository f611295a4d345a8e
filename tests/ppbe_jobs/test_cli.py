"""The ppbe-jobs command: enqueue, metrics, health, seed-db, and clear errors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from ppbe_jobs.cli import main


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "PPBE_DATA_DIR": str(tmp_path)}


def test_enqueue_then_metrics_and_health(env: dict[str, str]) -> None:
    runner = CliRunner()
    queue = f"reports-{uuid.uuid4().hex[:8]}"
    r = runner.invoke(
        main,
        [
            "enqueue",
            queue,
            "generate-report",
            "--data",
            '{"reportId": "r-1"}',
            "--options",
            '{"priority": 3}',
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["queue"] == f"{queue}.critical"
    r = runner.invoke(main, ["metrics", queue], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["by_tier"]["critical"]["waiting"] == 1
    r = runner.invoke(main, ["health", queue], env={**env, "QUEUE_HEALTH_MAX_WAITING": "0"})
    assert r.exit_code == 1
    assert "UNHEALTHY" in r.output


def test_bad_input_is_one_line_not_a_traceback(env: dict[str, str]) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["enqueue", "reports", "x", "--options", '{"priority": 0}'], env=env)
    assert r.exit_code == 2
    assert "priority" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(main, ["metrics", "reports"], env={**env, "QUEUE_CONCURRENCY": "lots"})
    assert r.exit_code == 2
    assert "QUEUE_CONCURRENCY" in r.output


def test_seed_db_fills_the_database_once(env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["seed-db"], env=env)
    assert r.exit_code == 0, r.output
    assert "program_elements" in r.output
    assert (tmp_path / "ppbe.sqlite3").exists()
    again = runner.invoke(main, ["seed-db"], env=env)
    assert again.exit_code == 1
