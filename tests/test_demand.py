"""Demand from clients: the index's reports of project page requests, the client's target from
the User-Agent the real pip and uv send, misses counted in the real Redis, building on a miss."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from builder.targets import BuildTarget
from server.misses.misses import COUNTS, REASONS
from server.misses.routes import project_from_path
from server.misses.useragent import client_target
from tests.conftest import Stack, interpreter, isolated_pip_env, make_sdist, make_venv, wait_until
from tests.demand_clients import pip_user_agent, uv_user_agent
from tests.test_verify import make_wheel


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """User-Agents of the real clients: pip of CPython 3.12 and 3.13, uv resolving for 3.13."""
    tmp = tmp_path_factory.mktemp("agents")
    return {
        "pip312": pip_user_agent("3.12", tmp),
        "pip313": pip_user_agent("3.13", tmp),
        "uv313": uv_user_agent("3.13", tmp),
    }


def test_the_real_clients_user_agents_name_their_targets(agents: dict[str, str]) -> None:
    assert agents["pip312"].startswith("pip/") and agents["uv313"].startswith("uv/")
    assert client_target(agents["pip312"]) == BuildTarget.parse("cp312-manylinux_x86_64")
    assert client_target(agents["pip313"]) == BuildTarget.parse("cp313-manylinux_x86_64")
    assert client_target(agents["uv313"]) == BuildTarget.parse("cp313-manylinux_x86_64")


def _edited(agent: str, change: Any) -> str:
    """The real client's header with its JSON changed as another machine's pip would send it."""
    client, _, text = agent.partition(" ")
    data = json.loads(text)
    change(data)
    return f"{client} {json.dumps(data)}"


def test_libc_cpu_and_system_pick_the_platform(agents: dict[str, str]) -> None:
    # No musl, macOS or Windows machine exists here: their headers are this machine's, edited as
    # pip's linehaul code writes them there (pip leaves libc out where it finds no glibc).
    pip = agents["pip312"]
    uv = agents["uv313"]

    def musl_pip(d: dict[str, Any]) -> None:
        d["distro"] = {"name": "Alpine Linux", "id": "alpine", "version": "3.20"}

    def musl_uv(d: dict[str, Any]) -> None:
        d["distro"]["libc"] = {"lib": "musl", "version": "1.2"}

    def mac_arm(d: dict[str, Any]) -> None:
        d.update(system={"name": "Darwin", "release": "24.0"}, cpu="arm64", distro={"name": "macOS"})

    def windows(d: dict[str, Any]) -> None:
        d.update(system={"name": "Windows", "release": "11"}, cpu="AMD64", distro=None)

    def aarch64(d: dict[str, Any]) -> None:
        d["cpu"] = "aarch64"

    assert client_target(_edited(pip, musl_pip)) == BuildTarget.parse("cp312-musllinux_x86_64")
    assert client_target(_edited(uv, musl_uv)) == BuildTarget.parse("cp313-musllinux_x86_64")
    assert client_target(_edited(pip, mac_arm)) == BuildTarget.parse("cp312-macosx_arm64")
    assert client_target(_edited(pip, windows)) == BuildTarget.parse("cp312-win_amd64")
    assert client_target(_edited(pip, aarch64)) == BuildTarget.parse("cp312-manylinux_aarch64")


@pytest.mark.parametrize(
    "agent",
    [
        None,
        "",
        "curl/8.5.0",
        "pip/26.3",
        "pip/26.3 {",
        "pip/26.3 []",
        'pip/26.3 {"implementation": "CPython"}',
        'pip/26.3 {"implementation": {"name": "PyPy", "version": "7.3"}, "python": "3.10.14",'
        ' "system": {"name": "Linux"}, "cpu": "x86_64"}',
        'pip/26.3 {"implementation": {"name": "CPython"}, "python": "3.99.0", "system": {"name": "Linux"},'
        ' "cpu": "x86_64", "distro": {"libc": {"lib": "glibc"}}}',
        'pip/26.3 {"implementation": {"name": "CPython"}, "python": "3.12.1", "system": {"name": "Plan9"},'
        ' "cpu": "mips"}',
        'pip/26.3 {"implementation": {"name": "CPython"}, "python": 312, "system": "Linux", "cpu": ["x86_64"]}',
        "pip/26.3 " + "[" * 100_000,
        'uv/0.1 {"python": "\u0663.\u0661\u0662"}',
    ],
)
def test_bad_or_foreign_user_agents_name_no_target(agent: str | None) -> None:
    assert client_target(agent) is None


def test_project_pages_are_told_from_other_paths() -> None:
    assert project_from_path("/simple/Foo.Bar_baz/") == "foo-bar-baz"
    assert project_from_path("/simple/markupsafe") == "markupsafe"
    assert project_from_path("%2Fsimple%2Fsix%2F") == "six"
    assert project_from_path("/simple/six/?format=json") == "six"
    for path in ("", "/simple/", "/packages/six-1.0.tar.gz", "/simple/../etc/", "/simple/-x-/", "/simple/a b/"):
        assert project_from_path(path) is None, path
    assert project_from_path("/simple/" + "a" * 5000 + "/") is None


@pytest.fixture
def demand_stack(make_stack: Any) -> Stack:
    s: Stack = make_stack(db=1, WHEELYARD_MISS_LIMIT="5")
    s.start_index_and_api()
    return s


def report(stack: Stack, path: str, agent: str | None) -> dict[str, Any]:
    """What the index sends for a project page request."""
    headers = {"User-Agent": agent} if agent is not None else {}
    response = requests.get(f"{stack.api}/api/index-requests", params={"path": path}, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def misses(stack: Stack) -> dict[str, Any]:
    response = requests.get(f"{stack.api}/api/misses", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def publish(stack: Stack, tmp_path: Path, name: str, tag: str) -> str:
    """Upload a wheel to the index as a person would (twine's protocol, the upload credentials)."""
    wheel = make_wheel(tmp_path, name, "1.0", tag)
    response = requests.post(
        f"http://127.0.0.1:{stack.index_port}/",
        data={":action": "file_upload", "protocol_version": "1", "filetype": "bdist_wheel"},
        files={"content": (wheel.name, wheel.read_bytes(), "application/octet-stream")},
        auth=("wheelyard", stack.password),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return wheel.name


def test_misses_are_counted_per_project_and_target_and_a_hit_forgets_one(
    demand_stack: Stack, agents: dict[str, str], tmp_path: Path
) -> None:
    s = demand_stack
    assert report(s, "/simple/Demand-Missing/", agents["pip312"]) | {"target": "x"} == {
        "outcome": "miss",
        "project": "demand-missing",
        "target": "x",
        "reason": "no-project",
        "build": None,
    }
    report(s, "/simple/demand_missing/", agents["pip312"])
    report(s, "/simple/demand-missing/", agents["uv313"])
    listed = {(m["project"], m["target"]): m for m in misses(s)["misses"]}
    assert listed[("demand-missing", "cp312-manylinux_x86_64")]["count"] == 2
    assert listed[("demand-missing", "cp313-manylinux_x86_64")]["count"] == 1
    assert misses(s)["build_on_miss"] is False

    # A project with a wheel for cp313 only: a miss for 3.12's pip, a hit for 3.13's.
    publish(s, tmp_path, "demand-only313", "cp313-cp313-manylinux_2_17_x86_64")
    assert report(s, "/simple/demand-only313/", agents["pip312"])["reason"] == "no-wheel-for-target"
    assert report(s, "/simple/demand-only313/", agents["pip313"])["outcome"] == "hit"
    # Once the index holds a wheel that fits, the miss is forgotten.
    publish(s, tmp_path, "demand-missing", "py3-none-any")
    assert report(s, "/simple/demand-missing/", agents["pip312"])["outcome"] == "hit"
    listed = {(m["project"], m["target"]) for m in misses(s)["misses"]}
    assert ("demand-missing", "cp312-manylinux_x86_64") not in listed
    assert ("demand-only313", "cp312-manylinux_x86_64") in listed


def test_the_index_reports_a_real_pips_requests(demand_stack: Stack, tmp_path: Path) -> None:
    s = demand_stack
    python = make_venv(interpreter("3.13"), tmp_path / "venv")
    result = subprocess.run(
        [str(python), "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d", str(tmp_path / "dl")]
        + ["--index-url", s.simple, "Demand_Through.The-Index"],
        env=isolated_pip_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "No matching distribution" in result.stderr, result.stderr
    listed = wait_until(lambda: misses(s)["misses"], 30, "the index's report of pip's request")
    assert [(m["project"], m["target"], m["reason"], m["count"]) for m in listed] == [
        ("demand-through-the-index", "cp313-manylinux_x86_64", "no-project", 1)
    ]


def test_bad_reports_are_ignored_and_misses_stay_bounded(demand_stack: Stack, agents: dict[str, str]) -> None:
    s = demand_stack
    for path, agent in [
        ("/simple/demand-x/", None),
        ("/simple/demand-x/", "Mozilla/5.0"),
        ("/simple/demand-x/", "pip/1 {" + "x" * 10_000),
        ("/packages/demand-x-1.0.tar.gz", agents["pip312"]),
        ("/simple/%00/", agents["pip312"]),
    ]:
        assert report(s, path, agent)["outcome"] == "ignored"
    no_path = requests.get(f"{s.api}/api/index-requests", headers={"User-Agent": agents["pip312"]}, timeout=10)
    assert no_path.status_code == 200 and no_path.json()["outcome"] == "ignored"
    assert misses(s)["total"] == 0
    # WHEELYARD_MISS_LIMIT=5: the five most recently seen are kept.
    for n in range(8):
        report(s, f"/simple/demand-made-up-{n}/", agents["pip312"])
    listed = misses(s)
    assert listed["total"] == 5
    assert [m["project"] for m in listed["misses"]] == [f"demand-made-up-{n}" for n in (7, 6, 5, 4, 3)]
    # Their counts and reasons go with them: memory stays bounded however many names are made up.
    client = redis.Redis.from_url(s.redis_url)
    assert client.hlen(COUNTS) == 5 and client.hlen(REASONS) == 5


def test_the_dashboard_shows_the_misses(demand_stack: Stack, agents: dict[str, str], tmp_path: Path) -> None:
    from tests.test_dashboard import Browser, screenshot

    s = demand_stack
    for _ in range(3):
        report(s, "/simple/demand-wanted/", agents["pip312"])
    report(s, "/simple/demand-wanted/", agents["uv313"])
    browser = Browser(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open(f"{s.api}/")
        rows = browser.wait(
            "[...document.querySelectorAll('#miss-rows tr.miss')].map((r) => r.innerText.split('\\t'))",
            "the misses to be shown",
        )
        by_target = {row[1]: row for row in rows}
        assert by_target["cp312-manylinux_x86_64"][:4] == [
            "demand-wanted",
            "cp312-manylinux_x86_64",
            "not on the index",
            "3",
        ]
        assert by_target["cp313-manylinux_x86_64"][3] == "1"
        assert browser.evaluate("document.getElementById('miss-count').textContent") == "2"
        assert "off" in browser.evaluate("document.getElementById('miss-mode').textContent")
        screenshot(browser, tmp_path / "misses.png", "WHEELYARD_MISSES_SCREENSHOT")
        assert browser.errors() == []
    finally:
        browser.close()


# -- building on a miss ------------------------------------------------------------------------

DEMO = "wheelyard-miss-demo"
DEMO_PROJECT = {
    "pyproject.toml": """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "wheelyard-miss-demo"
version = "0.2.0"
""",
    "setup.py": """
from setuptools import Extension, setup

setup(ext_modules=[Extension("wheelyard_miss_demo", ["demo.c"])])
""",
    "demo.c": """
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }

static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, "42"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "wheelyard_miss_demo", NULL, -1, methods};

PyMODINIT_FUNC PyInit_wheelyard_miss_demo(void) { return PyModule_Create(&module); }
""",
}


@pytest.fixture
def demo_upstream(local_upstream: tuple[Path, str], tmp_path: Path) -> str:
    """An upstream with two releases of a small C extension: building on a miss takes the newest."""
    packages, url = local_upstream
    older = {**DEMO_PROJECT, "pyproject.toml": DEMO_PROJECT["pyproject.toml"].replace("0.2.0", "0.1.0")}
    make_sdist(tmp_path / "src", DEMO, "0.1.0", older, packages)
    # The newest needs a project of its own from upstream (PyPI's, through the local upstream): its closure.
    newest = {**DEMO_PROJECT, "pyproject.toml": DEMO_PROJECT["pyproject.toml"] + 'dependencies = ["six"]\n'}
    make_sdist(tmp_path / "src", DEMO, "0.2.0", newest, packages)
    return url


def builds_of(stack: Stack, name: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{stack.api}/api/builds", params={"name": name}, timeout=10).json()["builds"])


def test_build_on_miss_asks_once_and_never_for_a_private_name(
    make_stack: Any, demo_upstream: str, agents: dict[str, str], tmp_path: Path
) -> None:
    s = make_stack(db=1, WHEELYARD_BUILD_ON_MISS="true", WHEELYARD_UPSTREAM_INDEX=demo_upstream)
    s.start_index_and_api()
    seen = report(s, f"/simple/{DEMO}/", agents["pip312"])
    assert seen["outcome"] == "miss" and seen["build"] == "build requested"
    build = wait_until(lambda: builds_of(s, DEMO), 30, "the build asked for on the miss")[0]
    # The newest release, for the client's target; no worker serves it here, so it waits for one.
    assert (build["version"], build["target"], build["status"]) == (
        "0.2.0",
        "cp312-manylinux_x86_64",
        "waiting-for-worker",
    )
    note = wait_until(
        lambda: next((m["build"] for m in misses(s)["misses"] if m["build"] != "build requested"), None),
        30,
        "the outcome noted on the miss",
    )
    assert note.startswith(f"{DEMO}==0.2.0 and its closure (2 distributions): "), note
    # The closure: six, from upstream, asked for too (mirrored: its one wheel serves every target).
    assert [b["target"] for b in builds_of(s, "six")] == ["py3-none-any"]
    # The same miss again within the cooldown asks for nothing more.
    assert report(s, f"/simple/{DEMO}/", agents["pip312"])["build"] == "rate-limited"
    assert len(builds_of(s, DEMO)) == 1

    # A project people uploaded is theirs: no build from upstream under its name, whatever is missing.
    publish(s, tmp_path, "demand-private", "cp313-cp313-manylinux_2_17_x86_64")
    seen = report(s, "/simple/demand-private/", agents["pip312"])
    assert seen["reason"] == "no-wheel-for-target"
    assert seen["build"] == "not built: a private project (uploaded to the index by people)"
    assert builds_of(s, "demand-private") == []
    assert misses(s)["build_on_miss"] is True


@pytest.mark.slow
def test_a_real_pip_miss_is_built_and_the_next_install_succeeds(
    make_stack: Any, demo_upstream: str, tmp_path: Path
) -> None:
    s = make_stack(db=1, WHEELYARD_BUILD_ON_MISS="true", WHEELYARD_UPSTREAM_INDEX=demo_upstream)
    s.start_index_and_api()
    s.start_worker("worker-miss", "cp312-manylinux_x86_64")
    python = make_venv(interpreter("3.12"), tmp_path / "venv")

    def pip_install(index: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--no-cache-dir",
                "--only-binary",
                ":all:",
                "--index-url",
                index,
                DEMO,
            ],
            env=isolated_pip_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    # The index itself reports the page request, with the client's User-Agent.
    first = pip_install(s.simple)
    assert first.returncode != 0 and "No matching distribution" in first.stderr, first.stderr
    wait_until(lambda: misses(s)["misses"], 30, "the index's report of the miss")
    listed = misses(s)["misses"]
    assert [(m["project"], m["target"], m["reason"]) for m in listed] == [
        (DEMO, "cp312-manylinux_x86_64", "no-project")
    ]

    build = wait_until(lambda: builds_of(s, DEMO), 30, "the build asked for on the miss")[0]
    done = s.wait_done(build["id"])
    assert done["status"] == "published", (done, s.log("worker-miss"))
    six = wait_until(lambda: builds_of(s, "six"), 30, "the closure's six to be asked for")[0]
    assert s.wait_done(six["id"])["status"] == "mirrored"
    assert done["version"] == "0.2.0" and "-cp312-cp312-manylinux" in done["wheel"]

    # From the index alone now, with no compiler needed.
    second = pip_install(s.simple)
    assert second.returncode == 0, second.stdout + second.stderr
    out = subprocess.run(
        [str(python), "-c", "import wheelyard_miss_demo as d; print(d.answer(), d.__file__)"],
        check=True, capture_output=True, text=True, env=isolated_pip_env(),
    )  # fmt: skip
    assert out.stdout.startswith("42 ") and ".so" in out.stdout
    assert "Successfully installed six-" in second.stdout, second.stdout
