"""The dashboard in a real headless Chromium, driven by Playwright.

Uses the system's Chromium (``/usr/bin/chromium``, Debian's package; or
``JOBQ_CHROMIUM``), never a downloaded browser. Skipped when no Chromium is
installed, unless ``JOBQ_REQUIRE_BROWSER=1`` (CI sets it) turns that into a
failure. Screenshots of every step go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobq import Job, JobOptions, Queue
from jobq.audit import AuditLog
from jobq.dashboard import User, create_app, hash_password

playwright_api = pytest.importorskip("playwright.async_api")
uvicorn = pytest.importorskip("uvicorn")

pytestmark = pytest.mark.timeout(120)

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
Factory = Callable[..., Any]


def _chromium() -> str:
    path = os.environ.get("JOBQ_CHROMIUM") or shutil.which("chromium") or ""
    if not path:
        if os.environ.get("JOBQ_REQUIRE_BROWSER") == "1":
            pytest.fail(
                "JOBQ_REQUIRE_BROWSER=1 but no chromium is installed (apt install chromium)"
            )
        pytest.skip(
            "no chromium installed (apt install chromium); set JOBQ_CHROMIUM to use another"
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dashboard_url(redis_url: str) -> Iterator[str]:
    """The dashboard served by uvicorn on a loopback port, in a thread of its own."""
    users = {"ops": User(hash_password("ops-pw"), "operator")}
    app = create_app(redis_url, users=users, secret_key="browser-tests", redact=["password"])
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(400):
        if server.started:
            started.set()
            break
        threading.Event().wait(0.025)
    assert started.is_set(), "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
async def page(dashboard_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    executable = _chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        context = await browser.new_context(
            base_url=dashboard_url, viewport={"width": 1400, "height": 900}
        )
        pg = await context.new_page()
        pg.set_default_timeout(15_000)
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on(
            "console",
            lambda msg: errors.append(msg.text) if msg.type == "error" else None,
        )
        try:
            yield pg
        finally:
            await pg.screenshot(path=str(SHOTS / f"{request.node.name}-last.png"), full_page=True)
            await browser.close()
        # No script error and no blocked asset (the CSP reports to the console).
        assert errors == []


async def shot(pg: Any, name: str) -> None:
    await pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in(pg: Any, path: str = "/") -> None:
    await pg.goto(path)
    await pg.fill("input[name=user]", "ops")
    await pg.fill("input[name=password]", "ops-pw")
    await shot(pg, "01-sign-in")
    await pg.click("form.login button[type=submit]")
    await pg.wait_for_selector("#who")


async def test_sign_in_live_counts_search_open_retry_and_audit(
    page: Any, queue: Queue, start_worker: Factory
) -> None:
    pw = playwright_api
    await sign_in(page)
    assert await page.text_content("#who") == "ops"
    assert await page.text_content("#role") == "operator"

    # Live: a job added after the page loaded shows up without a reload.
    first = await queue.add("build-report", {"report": "r-1"})
    await page.reload()
    row = page.locator(f'tr[data-q="{queue.name}"]')
    await pw.expect(row.locator('[data-f="waiting"]')).to_have_text("1")
    await page.evaluate("window.__kept = 'still here'")
    await queue.add("build-report", {"report": "r-2"})
    await pw.expect(row.locator('[data-f="waiting"]')).to_have_text("2")
    assert await page.evaluate("window.__kept") == "still here"  # the page was not reloaded
    await pw.expect(page.locator("#live")).to_contain_text("updated")
    await shot(page, "02-overview-live")

    # A failing job, for search and retry.
    async def work(job: Job) -> None:
        if job.data.get("report") == "r-2":
            raise ValueError("appropriation code 0400 missing")

    await start_worker(work, queue.name)
    await queue.wait_for_job(first.id, timeout=10)
    await pw.expect(row.locator('[data-f="failed"]')).to_have_text("1")
    await pw.expect(row.locator('[data-f="completed"]')).to_have_text("1")

    # Search: error text, through the htmx form (results swap in, URL updates).
    await page.click("header nav >> text=Search")
    await page.select_option("select[name=queue]", queue.name)
    await page.fill("input[name=error]", "appropriation 0400")
    await page.click("#search-form button[type=submit]")
    hit = page.locator("#hits tbody tr[data-hit]")
    await pw.expect(hit).to_have_count(1, timeout=20_000)
    assert "error=appropriation" in page.url
    await shot(page, "03-search")

    # Open the job: the error and its stack trace are there.
    await hit.locator("a").click()
    await pw.expect(page.locator("#job-state")).to_have_text("failed")
    await pw.expect(page.locator("h3.err")).to_contain_text("appropriation code 0400 missing")
    await shot(page, "04-job-failed")

    # Retry it: the job leaves 'failed' (and fails again: the processor is the same).
    await page.click("button:has-text('Retry')")
    await pw.expect(page.locator("#notice")).to_contain_text("retried job")
    await shot(page, "05-job-retried")

    # The audit log shows who did it.
    await page.click("header nav >> text=Audit log")
    entry = page.locator('#audit tr[data-action="retry"]').first
    await pw.expect(entry).to_contain_text("ops")
    await pw.expect(entry).to_contain_text(queue.name)
    await shot(page, "06-audit")
    [logged] = await AuditLog(queue.client, "jobq").entries(queue=queue.name, action="retry")
    assert logged.actor == "ops"


async def test_progress_bar_moves_and_polling_takes_over_without_event_source(
    page: Any, queue: Queue
) -> None:
    pw = playwright_api
    await page.add_init_script("delete window.EventSource;")  # an old browser or a proxy
    await sign_in(page)
    job = await queue.add("export", {"rows": 10}, JobOptions(attempts=1))
    await page.goto(f"/queues/{queue.name}/jobs/{job.id}")
    await pw.expect(page.locator("#live")).to_contain_text("polling")
    await job.update_progress(60)
    await pw.expect(page.locator("#job-progress-label")).to_have_text("60%", timeout=15_000)
    assert await page.eval_on_selector("#job-progress", "el => el.value") == 60
    await shot(page, "07-progress-polling")


async def test_redacted_field_never_reaches_the_browser(page: Any, queue: Queue) -> None:
    await sign_in(page)
    job = await queue.add("signup", {"user": "kim", "password": "hunter2"})
    await page.goto(f"/queues/{queue.name}/jobs/{job.id}")
    text = await page.text_content("#job-data")
    assert text is not None
    assert "[redacted]" in text
    assert "hunter2" not in await page.content()
    await asyncio.sleep(0)  # nothing else to wait for: the page is static here
