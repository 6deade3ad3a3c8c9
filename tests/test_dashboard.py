"""The build dashboard (GET /), rendered by a real headless Chromium against a real stack.

A real index, API and worker; three real builds: one published, one that fails to compile
(and is diagnosed), one waiting for a worker no one runs. Chromium loads the page, whose
JavaScript polls the API, and the rendered DOM and a screenshot are checked.

With hundreds of records (written through the store, as workers write them), Chromium is
driven over the DevTools protocol: its counts, filters and pages cover every build, not the
newest page the browser loaded.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests

from builder.records import STATUSES, BuildRecord, BuildStore
from tests.conftest import Stack, die_with_parent, wait_until

CHROMIUM = os.environ.get("WHEELYARD_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PAGE = Path(__file__).parent.parent / "server" / "static" / "dashboard.html"


CHROMIUM_FLAGS = (
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
)


def chromium(*args: str, profile: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: the dashboard test needs a real browser "
            "(`apt-get install -y chromium`; `.ci/run` installs it)"
        )
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
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


class Browser:
    """A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    JSON messages, each ended by a NUL, on its file descriptors 3 and 4): the test clicks and types
    as a user does and waits for what the page shows, with nothing to install but the browser.

    The page's uncaught exceptions, ``console.error`` calls and the browser's own error entries (a
    resource that failed to load) are collected from the events that come with the replies: ``errors()``."""

    # The events kept (any other is dropped): what ``errors()`` reports, and the loads ``open`` waits for.
    EVENTS = ("Runtime.exceptionThrown", "Runtime.consoleAPICalled", "Log.entryAdded", "Page.loadEventFired")

    def __init__(self, profile: Path, log: Path, width: int = 1280, height: int = 900) -> None:
        if not Path(CHROMIUM).exists():
            chromium("--version", profile=profile)  # fails the test, saying how to install one
        commands, self._to_browser = os.pipe()
        self._from_browser, replies = os.pipe()

        def child() -> None:
            die_with_parent()
            # Chromium reads fd 3 and writes fd 4: moved out of each other's way first.
            read = fcntl.fcntl(commands, fcntl.F_DUPFD, 10)
            write = fcntl.fcntl(replies, fcntl.F_DUPFD, 10)
            os.dup2(read, 3)
            os.dup2(write, 4)

        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                close_fds=False,  # only fds 3 and 4 are inheritable (Python opens every other one without)
                preexec_fn=child,
            )
        os.close(commands)
        os.close(replies)
        self.log = log
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=True,
            )
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable", session=True)
        except BaseException:
            self.close()
            raise

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]
        deadline = time.monotonic() + 60
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self._next_id:  # anything else is an event
                assert "error" not in reply, (method, reply["error"])
                return dict(reply.get("result", {}))
            if reply.get("method") in self.EVENTS:
                self.events.append(reply)

    def _loads(self) -> int:
        return sum(e["method"] == "Page.loadEventFired" for e in self.events)

    def _wait_load(self, loads: int, what: str) -> None:
        """Reads the events until the page's ``load`` event beyond the first ``loads`` came."""
        deadline = time.monotonic() + 60
        while self._loads() <= loads:
            event = self._receive(deadline, what)
            if event.get("method") in self.EVENTS:
                self.events.append(event)

    def _receive(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._from_browser, 1 << 20) if ready else b""
            if not chunk:
                log = self.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"Chromium did not answer {method}:\n{log}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def open(self, url: str) -> None:
        """Goes to ``url``, returning once its page has loaded (its script ran; its polls go on)."""
        loads = self._loads()
        reply = self.call("Page.navigate", {"url": url}, session=True)
        assert "errorText" not in reply, (url, reply)
        self._wait_load(loads, f"the load of {url}")

    def reload(self) -> None:
        loads = self._loads()
        self.call("Page.reload", session=True)
        self._wait_load(loads, "the reload")

    def errors(self) -> list[str]:
        """What the page reported as errors so far: exceptions, console errors, failed loads."""
        self.evaluate("0")  # a round trip: the events sent before its reply are read
        found = []
        for event in self.events:
            params = event["params"]
            if event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(str(details.get("exception", {}).get("description") or details.get("text")))
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                if urlsplit(params["entry"].get("url", "")).path == "/favicon.ico":
                    continue  # the browser asks for one by itself; the page has none (it loads nothing)
                found.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")
        return found

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session=True
        )
        assert "exceptionDetails" not in result, (expression, result["exceptionDetails"])
        return result["result"].get("value")

    def wait(self, expression: str, what: str, timeout: float = 30) -> Any:
        """The value of ``expression`` in the page once it is truthy (the page's polls are real time)."""
        try:
            return wait_until(lambda: self.evaluate(expression), timeout, what)
        except AssertionError as timed_out:
            seen = self.evaluate(
                "JSON.stringify({rows: [...document.querySelectorAll('#rows tr.build')].map((r) => r.dataset.build),"
                " shown: document.getElementById('shown').textContent,"
                " problem: document.getElementById('problem').textContent,"
                " status: document.getElementById('f-status').value, name: document.getElementById('f-name').value,"
                " target: document.getElementById('f-target').value})"
            )
            raise AssertionError(f"{timed_out}; the page shows {seen[:3000]}") from None

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        assert box, f"nothing to click at {selector}"
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
                session=True,
            )

    def type(self, selector: str, text: str) -> None:
        """Empties a field (select all, delete) and types ``text`` into it, as keystrokes do."""
        self.click(selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).select()")
        for kind in ("rawKeyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8},
                session=True,
            )
        if text:
            self.call("Input.insertText", {"text": text}, session=True)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.proc.wait(timeout=30)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own group (die_with_parent): this browser alone
                self.proc.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)


def test_the_page_is_self_contained() -> None:
    html = PAGE.read_text()
    parser = _Resources()
    parser.feed(html)
    assert parser.urls == [], parser.urls
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", html), "the CSS loads something"
    assert '"/api/builds?"' in html and '"/api/builds/summary"' in html and '"/api/workers"' in html
    # Accessible markup: column headers, labelled filters.
    # the builds table, the misses table, the capability and the remedy tables
    assert html.count('<th scope="col">') == 8 + 6 + 3 + 3
    assert '<label for="f-name">' in html and '<label for="f-status">' in html and '<label for="f-target">' in html


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
    # PyAudio needs portaudio.h, which this machine does not have: a real compiler failure, and as no
    # worker has lib:portaudio the build waits for one.
    failed = ask("pyaudio==0.2.14", "cp312-manylinux_x86_64")
    waiting = ask("markupsafe==3.0.2", "cp310-manylinux_x86_64")
    assert waiting["status"] == "waiting-for-worker"
    done = _wait_status(stack, published["id"], "published", 600)
    broken = _wait_status(stack, failed["id"], "waiting-for-capability", 600)
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
    assert 'data-status="waiting-for-capability"' in failed_row and "pyaudio" in failed_row
    assert "needs a worker with lib:portaudio" in failed_row
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
    assert "1 published" in counts and "1 waiting for capability" in counts and "1 waiting for worker" in counts

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


# -- counts, filters and pages over every build ----------------------------------------------------

SERVED_QUEUE = "wheelyard.cp312-manylinux_x86_64"
UNSERVED_QUEUE = "wheelyard.cp311-musllinux_aarch64"
ROWS = "[...document.querySelectorAll('#rows tr.build')].map((r) => r.dataset.build)"


def _count(status: str) -> str:
    """The number on a count card of the page (status "all": every build), as a JS expression."""
    return f"Number(document.querySelector('#counts li[data-status={status}] .n').textContent)"


def _shows(rows: list[str]) -> str:
    """A JS expression true once the page shows exactly ``rows``, in this order, and is not loading."""
    return (
        f"JSON.stringify({ROWS}) === {json.dumps(json.dumps(rows, separators=(',', ':')))}"
        " && document.getElementById('builds').getAttribute('aria-busy') === 'false'"
    )


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    opened = Browser(tmp_path / "profile-cdp", tmp_path / "chromium.log")
    yield opened
    opened.close()


def test_counts_filters_and_pages_cover_builds_beyond_the_newest_page(
    make_stack: Any, browser: Browser, tmp_path: Path
) -> None:
    stack = make_stack(db=31)  # a Redis database of its own
    stack.start_index_and_api()
    store = BuildStore(redis.Redis.from_url(stack.redis_url))
    save = _saver(store, prefix="d", age=100_000)

    # The oldest builds are those the page once missed: 650 newer ones come after them.
    failure = {"primary": {"category": "missing-library-header", "rule": "c-header-missing", "line": 3,
                           "text": "fatal error: portaudio.h: No such file or directory", "remedies": []}}  # fmt: skip
    old_failed = save(0, "Ancient_Lib", "failed", diagnosis=failure)
    old_published = save(1, "ancient-lib", "published", wheel="ancient_lib-1.1-py3-none-any.whl", target="py3-none-any")
    old_waiting = save(2, "ancient.lib", "queued", target="cp311-musllinux_aarch64", queue=UNSERVED_QUEUE)
    old_queued = save(3, "queued-lib", "queued")  # a live worker serves its queue: queued, not waiting
    fillers = [save(n, "filler-pkg", "mirrored" if n % 65 == 0 else "published") for n in range(4, 654)]
    store.register_worker("fake-worker@test", {"queues": [SERVED_QUEUE], "targets": ["cp312-manylinux_x86_64"]}, 3600)
    newest_first = fillers[::-1]
    total = 654

    browser.open(f"{stack.api}/")
    browser.wait(f"{_count('all')} === {total}", f"the page to count {total} builds")
    counts = browser.evaluate("[" + ", ".join(_count(s) for s in STATUSES) + "]")
    assert dict(zip(STATUSES, counts, strict=True)) == {
        "queued": 1,
        "waiting-for-worker": 1,
        "waiting-for-capability": 0,
        "building": 0,
        "published": 641,
        "mirrored": 10,
        "failed": 1,
    }
    # The first page: the newest 100, and a control for the next.
    browser.wait(_shows(newest_first[:100]), "the newest 100 builds")
    assert browser.evaluate("document.getElementById('shown').textContent") == f"100 of {total} builds shown"
    assert browser.evaluate("document.getElementById('more-bar').hidden") is False
    # The waiting build of long ago is listed by its target.
    waiting = browser.evaluate("document.getElementById('waiting').textContent")
    assert "cp311-musllinux_aarch64" in waiting and "ancient.lib 1.2" in waiting

    # "More", page after page (each from the previous page's cursor), past the 500 the API answers at once.
    for shown in range(200, 800, 100):
        browser.click("#more")
        browser.wait(f"{ROWS}.length === {min(shown, 650 + 4)}", f"{shown} rows")
    browser.wait(_shows(newest_first + [old_queued, old_waiting, old_published, old_failed]), "every build")
    assert browser.evaluate("document.getElementById('more-bar').hidden") is True
    # Refreshed live as they are (654 rows: two pages of the API), and a new build comes on top.
    arrived = save(700, "filler-pkg", "published")
    browser.wait(_shows([arrived, *newest_first, old_queued, old_waiting, old_published]), "the new build on top")
    browser.wait(f"{_count('all')} === {total + 1}", "the count of the new build")

    # A status filter (its count card, clicked) asks the API: the one failure, 650 builds down.
    browser.click('#counts li[data-status="failed"] button')
    browser.wait(_shows([old_failed]), "the old failure alone")
    assert browser.evaluate("document.getElementById('f-status').value") == "failed"
    assert browser.evaluate("document.getElementById('shown').textContent") == "1 of 1 build shown"
    diagnosis = browser.evaluate(f"document.querySelector('tr.diag[data-build=\"{old_failed}\"]').textContent")
    assert "missing-library-header" in diagnosis and "portaudio.h" in diagnosis
    browser.click('#counts li[data-status="queued"] button')
    browser.wait(_shows([old_queued]), "the queued build a worker serves")
    browser.click('#counts li[data-status="waiting-for-worker"] button')
    browser.wait(_shows([old_waiting]), "the build waiting for a worker")

    # The name filter, typed: a whole name in any spelling PEP 503 equates; with the status and a target.
    browser.click('#counts li[data-status="all"] button')
    browser.type("#f-name", "ANCIENT-lib")
    browser.wait(_shows([old_waiting, old_published, old_failed]), "the three builds of ancient-lib")
    assert browser.evaluate("document.getElementById('shown').textContent") == "3 builds shown"
    browser.type("#f-target", "py3-none-any")
    browser.wait(_shows([old_published]), "ancient-lib for py3-none-any")
    browser.type("#f-target", "")
    browser.type("#f-name", "ancient")  # not a whole name: no build, and the page says why
    browser.wait(_shows([]), "no build of a partial name")
    assert "whole project name" in browser.evaluate("document.getElementById('empty').textContent")
    assert browser.evaluate("document.getElementById('empty').hidden") is False

    # A filtered list is refreshed too: a new failure of ancient-lib shows up, and is counted.
    browser.type("#f-name", "ancient_lib")
    browser.wait(_shows([old_waiting, old_published, old_failed]), "ancient-lib again")
    browser.click('#counts li[data-status="failed"] button')
    browser.wait(_shows([old_failed]), "the old failure")
    again = save(701, "ancient-lib", "failed", diagnosis=failure)
    browser.wait(_shows([again, old_failed]), "the new failure of ancient-lib")
    browser.wait(f"{_count('failed')} === 2", "two failures counted")

    screenshot(browser, tmp_path / "dashboard-filtered.png", "WHEELYARD_DASHBOARD_FILTERED_SCREENSHOT")
    assert browser.errors() == []


# -- filters in the URL; rows updated in place -----------------------------------------------------

SEARCH = "Object.fromEntries(new URLSearchParams(location.search))"
REFRESHES = "Number(document.getElementById('live').dataset.refreshes || 0)"
FAILURE = {
    "primary": {
        "category": "missing-library-header",
        "rule": "c-header-missing",
        "line": 3,
        "text": "fatal error: portaudio.h: No such file or directory",
        "remedies": [],
    }
}


def screenshot(browser: Browser, shot: Path, keep_variable: str) -> None:
    """A screenshot of the page that is a real picture of it; copied where ``keep_variable`` says, if set."""
    data = browser.screenshot(shot)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, len(data)
    keep = os.environ.get(keep_variable)
    if keep:
        shutil.copyfile(shot, keep)


def _saver(store: BuildStore, *, prefix: str = "u", age: float = 1000) -> Any:
    """save(n, name, status, ...): a record written through the store as a worker writes it, created
    ``age`` s ago plus n (so a greater n is newer); its id."""
    now = time.time()

    def save(n: int, name: str, status: str, *, target: str = "cp312-manylinux_x86_64", **extra: Any) -> str:
        r = BuildRecord(
            id=f"{prefix}{n:05d}",
            name=name,
            version=f"1.{n}",
            target=target,
            requirement=f"{name}==1.{n}",
            queue=extra.pop("queue", SERVED_QUEUE),
            status=status,
            created_at=now - age + n,
            **extra,
        )
        store.save(r)
        return r.id

    return save


def _filters_shown(status: str, name: str, target: str) -> str:
    """A JS expression true once the filter controls show these values (and the count card the status)."""
    return (
        f"document.getElementById('f-status').value === {json.dumps(status)}"
        f" && document.getElementById('f-name').value === {json.dumps(name)}"
        f" && document.getElementById('f-target').value === {json.dumps(target)}"
        " && document.querySelector('#counts li[aria-current=true]')?.dataset.status"
        f" === {json.dumps(status or 'all')}"
    )


def test_filters_live_in_the_url(make_stack: Any, browser: Browser, tmp_path: Path) -> None:
    stack = make_stack(db=32)  # a Redis database of its own
    stack.start_index_and_api()
    save = _saver(BuildStore(redis.Redis.from_url(stack.redis_url)))
    old_failure = save(0, "numpy", "failed", diagnosis=FAILURE)
    other_target = save(1, "numpy", "failed", target="cp311-manylinux_x86_64", diagnosis=FAILURE)
    published = save(2, "numpy", "published", wheel="numpy-1.2-cp312-cp312-manylinux_2_17_x86_64.whl")
    save(3, "scipy", "failed", diagnosis=FAILURE)
    new_failure = save(4, "NumPy", "failed", diagnosis=FAILURE)

    # A link to a filtered view opens that view: the controls show its filters, the rows are its builds.
    browser.open(f"{stack.api}/?status=failed&name=numpy")
    browser.wait(_shows([new_failure, other_target, old_failure]), "the failed builds of numpy")
    browser.wait(_filters_shown("failed", "numpy", ""), "the filters of the URL in the controls")
    assert browser.evaluate(SEARCH) == {"status": "failed", "name": "numpy"}
    assert browser.evaluate("document.getElementById('shown').textContent") == "3 builds shown"
    screenshot(browser, tmp_path / "dashboard-linked.png", "WHEELYARD_DASHBOARD_LINKED_SCREENSHOT")

    # Each change of a filter is in the URL at once.
    browser.type("#f-target", "cp312-manylinux_x86_64")
    browser.wait(_shows([new_failure, old_failure]), "the failed builds of numpy for cp312")
    expected = {"status": "failed", "name": "numpy", "target": "cp312-manylinux_x86_64"}
    assert browser.evaluate(SEARCH) == expected
    browser.click('#counts li[data-status="all"] button')
    browser.wait(_shows([new_failure, published, old_failure]), "every build of numpy for cp312")
    assert browser.evaluate(SEARCH) == {"name": "numpy", "target": "cp312-manylinux_x86_64"}

    # Back and forward go through the views; the controls follow.
    browser.evaluate("history.back()")
    browser.wait(_shows([new_failure, old_failure]), "the failed builds for cp312 again (back)")
    browser.wait(_filters_shown("failed", "numpy", "cp312-manylinux_x86_64"), "the filters of the previous view")
    assert browser.evaluate(SEARCH) == expected
    browser.evaluate("history.back()")
    browser.wait(_shows([new_failure, other_target, old_failure]), "the view of the link again (back)")
    browser.wait(_filters_shown("failed", "numpy", ""), "the filters of the link")
    browser.evaluate("history.forward()")
    browser.wait(_shows([new_failure, old_failure]), "the failed builds for cp312 (forward)")
    browser.wait(_filters_shown("failed", "numpy", "cp312-manylinux_x86_64"), "the filters, forward")

    # A reload keeps the view (a new page: the old one is marked, and gone).
    browser.evaluate("window.oldPage = true")
    browser.reload()
    browser.wait(f"!window.oldPage && {REFRESHES} >= 1", "the reloaded page to refresh")
    browser.wait(_shows([new_failure, old_failure]), "the same view after a reload")
    browser.wait(_filters_shown("failed", "numpy", "cp312-manylinux_x86_64"), "the filters after a reload")
    assert browser.evaluate(SEARCH) == expected
    assert browser.errors() == []


def test_bad_filters_in_the_url_are_ignored(make_stack: Any, browser: Browser) -> None:
    stack = make_stack(db=33)  # a Redis database of its own
    stack.start_index_and_api()
    save = _saver(BuildStore(redis.Redis.from_url(stack.redis_url)))
    failed = save(0, "numpy", "failed", diagnosis=FAILURE)
    published = save(1, "scipy", "published")

    # An unknown status is ignored: every build shows, and the URL no longer says it.
    browser.open(f"{stack.api}/?status=nonsense")
    browser.wait(_shows([published, failed]), "every build")
    browser.wait(_filters_shown("", "", ""), "no filter")
    assert browser.evaluate("location.search") == ""
    assert browser.evaluate("document.getElementById('problem').classList.contains('shown')") is False
    assert browser.errors() == []

    # A status in another case is that status; another parameter stays in the URL.
    browser.open(f"{stack.api}/?status=%20Failed%20&view=mine")
    browser.wait(_shows([failed]), "the failed build")
    assert browser.evaluate(SEARCH) == {"status": "failed", "view": "mine"}

    # Values no build has (longer than the fields take, undecodable): the page's own "no builds".
    for query in (f"status=failed&name={'x' * 300}&target={'y' * 100}", "name=%ZZ%E0%A4&target=%00"):
        browser.open(f"{stack.api}/?{query}")
        browser.wait(_shows([]), f"no build for ?{query[:40]}")
        browser.wait("document.getElementById('empty').hidden === false", "the 'no builds' message")
        assert "No builds match" in browser.evaluate("document.getElementById('empty').textContent")
        assert browser.evaluate("document.getElementById('problem').classList.contains('shown')") is False
        assert len(browser.evaluate("document.getElementById('f-name').value")) <= 200
    assert browser.errors() == []


def test_rows_are_updated_in_place(make_stack: Any, browser: Browser) -> None:
    stack = make_stack(db=34)  # a Redis database of its own
    stack.start_index_and_api()
    store = BuildStore(redis.Redis.from_url(stack.redis_url))
    save = _saver(store)
    now = time.time()
    steady = save(0, "steady-lib", "published", wheel="steady_lib-1.0-py3-none-any.whl", target="py3-none-any")
    gone = save(1, "gone-lib", "queued")
    changing = save(2, "changing-lib", "building", step="compiling", started_at=now - 30, worker="w1@test")

    browser.open(f"{stack.api}/")
    browser.wait(_shows([changing, gone, steady]), "the three builds")

    def row(build_id: str) -> str:
        return f"document.querySelector('#rows tr.build[data-build=\"{build_id}\"]')"

    # Marks on the nodes (a property of the DOM objects, not of the markup), and text selected in the table.
    browser.evaluate(
        f"{row(steady)}.mark = 'steady'; {row(steady)}.querySelector('a').mark = 'steady link';"
        f" {row(changing)}.mark = 'changing';"
        f" getSelection().selectAllChildren({row(steady)}.querySelector('td.target'))"
    )
    assert browser.evaluate("getSelection().toString()") == "py3-none-any"
    seen = browser.evaluate(REFRESHES)
    browser.wait(f"{REFRESHES} >= {seen + 2}", "two refreshes more")
    # The building build's duration changed meanwhile: its cell alone is redone, not the row.
    assert browser.evaluate(f"{row(steady)}.mark") == "steady"
    assert browser.evaluate(f"{row(steady)}.querySelector('a').mark") == "steady link"
    assert browser.evaluate(f"{row(changing)}.mark") == "changing"
    assert browser.evaluate("getSelection().toString()") == "py3-none-any"

    # A status changed in Redis shows in the same row node, with the diagnosis row after it.
    store.update(changing, status="failed", step=None, finished_at=time.time(), diagnosis=FAILURE)
    browser.wait(
        f"{row(changing)}.mark === 'changing' && {row(changing)}.dataset.status === 'failed'"
        f" && {row(changing)}.querySelector('.badge').textContent === 'failed'"
        f" && {row(changing)}.nextElementSibling.matches('tr.diag[data-build=\"{changing}\"]')",
        "the failure in the same row",
    )
    assert "missing-library-header" in browser.evaluate(f"{row(changing)}.nextElementSibling.textContent")

    # A new build is inserted, a gone one removed; the others keep their nodes.
    record = store.get(gone)
    assert record is not None
    store.discard(record)
    arrived = save(3, "new-lib", "published")
    browser.wait(_shows([arrived, changing, steady]), "the new build on top, the gone one removed")
    assert browser.evaluate(f"{row(steady)}.mark") == "steady"
    assert browser.evaluate(f"{row(steady)}.querySelector('a').mark") == "steady link"
    assert browser.evaluate(f"{row(changing)}.mark") == "changing"
    assert browser.evaluate("getSelection().toString()") == "py3-none-any"
    assert browser.errors() == []


# -- builds waiting for a capability; the nearest release that works --------------------------------

CELL = "document.querySelector('#rows tr.build[data-build={id}] td:nth-child(5)')?.textContent"


def test_a_build_waiting_for_a_capability_and_the_nearest_release_are_shown(
    make_stack: Any, browser: Browser, tmp_path: Path
) -> None:
    stack = make_stack(db=35)  # a Redis database of its own
    stack.start_index_and_api()
    save = _saver(BuildStore(redis.Redis.from_url(stack.redis_url)), prefix="c")
    waiting = save(
        1, "glmnet", "waiting-for-capability", diagnosis=FAILURE, missing_capability="tool:fortran",
        required_capabilities=["tool:fortran"],
    )  # fmt: skip
    near = {
        "newer": {"version": "2.1.0", "source": "upstream-wheel"},
        "older": {"version": "1.9", "source": "built-here"},
    }
    failed = save(2, "numpy", "failed", diagnosis=FAILURE, nearest_release=near)
    browser.open(f"{stack.api}/")
    browser.wait(_shows([failed, waiting]), "both builds")
    assert browser.evaluate(CELL.format(id=waiting)) == "needs a worker with tool:fortran"
    assert browser.evaluate(CELL.format(id=failed)) == "works: newer: 2.1.0 (upstream-wheel), older: 1.9 (built-here)"
    # The waiting build is counted and filtered by its status, with its diagnosis below it.
    browser.wait(f"{_count('waiting-for-capability')} === 1", "the waiting build counted")
    browser.click('#counts li[data-status="waiting-for-capability"] button')
    browser.wait(_shows([waiting]), "only the waiting build")
    assert browser.evaluate(f"!!document.querySelector('#rows tr.diag[data-build={waiting}]')") is True
    assert browser.errors() == []
