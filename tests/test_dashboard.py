"""The build dashboard (GET /), rendered by a real headless Chromium against a real stack.

A real index, API and worker; three real builds: one published, one that fails to compile
(and is diagnosed), one waiting for a worker no one runs. Chromium loads the page, whose
JavaScript polls the API, and the rendered DOM and a screenshot are checked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Stack, wait_until

CHROMIUM = os.environ.get("WHEELYARD_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PAGE = Path(__file__).parent.parent / "server" / "static" / "dashboard.html"


def chromium(*args: str, profile: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: the dashboard test needs a real browser "
            "(`apt-get install -y chromium`; `.ci/run` installs it)"
        )
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class _Resources(HTMLParser):
    """Every URL the page would load by itself (scripts, styles, images, fonts, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video") and a.get("src"):
            self.urls.append(str(a["src"]))
        if tag == "link" and a.get("href"):
            self.urls.append(str(a["href"]))


def test_the_page_is_self_contained() -> None:
    html = PAGE.read_text()
    parser = _Resources()
    parser.feed(html)
    assert parser.urls == [], parser.urls
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", html), "the CSS loads something"
    assert '"/api/builds?limit=500"' in html and '"/api/workers"' in html
    # Accessible markup: column headers, labelled filters.
    assert html.count('<th scope="col">') == 8
    assert '<label for="f-name">' in html and '<label for="f-status">' in html


@pytest.fixture
def stack(make_stack: Any) -> Stack:
    return make_stack(db=30)  # a Redis database of its own: empty queues and records


def _wait_status(stack: Stack, build_id: str, status: str, timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        b = stack.build(build_id)
        if b["status"] in ("published", "mirrored", "failed") and b["status"] != status:
            raise AssertionError((b, stack.log("worker-dash")))
        return b if b["status"] == status else None

    return dict(wait_until(reached, timeout, f"build {build_id} to be {status}", interval=0.5))


def _text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.slow
def test_dashboard_shows_builds_diagnosis_workers_and_waiting_targets(stack: Stack, tmp_path: Path) -> None:
    stack.start_index_and_api()
    stack.start_worker("worker-dash", "py3-none-any,cp312-manylinux_x86_64")

    page = requests.get(f"{stack.api}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == PAGE.read_text()

    def ask(requirement: str, target: str) -> dict[str, Any]:
        response = stack.request(requirement, [target], from_source=True)
        assert response.status_code == 202, response.text
        return dict(response.json()["builds"][0])

    published = ask("iniconfig==2.0.0", "py3-none-any")
    # PyAudio needs portaudio.h, which this machine does not have: a real compiler failure.
    failed = ask("pyaudio==0.2.14", "cp312-manylinux_x86_64")
    waiting = ask("markupsafe==3.0.2", "cp310-manylinux_x86_64")
    assert waiting["status"] == "waiting-for-worker"
    done = _wait_status(stack, published["id"], "published", 600)
    broken = _wait_status(stack, failed["id"], "failed", 600)
    primary = broken["diagnosis"]["primary"]
    assert primary["category"] == "missing-library-header"
    worker = next(iter(requests.get(f"{stack.api}/api/workers", timeout=10).json()["workers"]))

    result = chromium("--virtual-time-budget=5000", "--dump-dom", f"{stack.api}/", profile=tmp_path / "profile")
    dom = result.stdout
    assert result.returncode == 0 and "<tbody" in dom, (result.returncode, result.stderr[-3000:])

    def row(build_id: str) -> str:
        found = re.search(rf'<tr class="build" data-build="{build_id}"[^>]*>(.*?)</tr>', dom, re.S)
        assert found, f"no row for {build_id} in the rendered page:\n{dom[:5000]}"
        return found.group(0)

    published_row = row(done["id"])
    assert 'data-status="published"' in published_row and "iniconfig" in published_row
    assert done["wheel"] in published_row.replace("<wbr>", "") and "py3-none-any" in published_row
    assert worker in published_row
    failed_row = row(broken["id"])
    assert 'data-status="failed"' in failed_row and "pyaudio" in failed_row
    waiting_row = row(waiting["id"])
    assert 'data-status="waiting-for-worker"' in waiting_row and "cp310-manylinux_x86_64" in waiting_row

    diag = re.search(rf'<tr class="diag" data-build="{broken["id"]}">(.*?)</tr>', dom, re.S)
    assert diag, dom[:5000]
    diag_text = _text_of(diag.group(1))
    assert "missing-library-header" in diag_text and primary["rule"] in diag_text
    assert _text_of(primary["text"]).strip() in diag_text
    assert primary["remedies"][0]["text"].split()[0] in diag_text
    assert f'href="{broken["log_url"]}"' in diag.group(1)

    workers = re.search(r'<ul class="plain cards" id="workers">(.*?)</ul>\s*</section>', dom, re.S)
    assert workers and worker in workers.group(1)
    assert "py3-none-any" in workers.group(1) and "cp312-manylinux_x86_64" in workers.group(1)
    waiting_list = re.search(r'<ul class="plain waiting" id="waiting">(.*?)</ul>', dom, re.S)
    assert waiting_list and 'data-waiting-target="cp310-manylinux_x86_64"' in waiting_list.group(1)
    assert "markupsafe 3.0.2" in waiting_list.group(1)
    counts = _text_of(re.search(r'<ul class="counts" id="counts"[^>]*>(.*?)</ul>', dom, re.S).group(1))  # type: ignore[union-attr]
    assert "1 published" in counts and "1 failed" in counts and "1 waiting for worker" in counts

    shot = tmp_path / "dashboard.png"
    result = chromium(
        "--virtual-time-budget=5000",
        f"--screenshot={shot}",
        "--window-size=1280,900",
        f"{stack.api}/",
        profile=tmp_path / "profile-shot",
    )
    assert result.returncode == 0 and shot.exists(), result.stderr[-3000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000, f"the screenshot is only {len(data)} bytes: the page did not render"
    keep = os.environ.get("WHEELYARD_DASHBOARD_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
