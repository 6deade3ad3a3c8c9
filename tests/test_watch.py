"""Watch lists: the file is checked when read; a real beat process ensures each list on schedule,
against an upstream the test controls (a local pypiserver with sdists the test makes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from builder.errors import InvalidWatchFile
from server.ensure.targets import expand_targets
from server.watch.lists import WatchList, read_watch_file
from tests.conftest import Stack, make_sdist, wait_until
from tests.test_demand import DEMO_PROJECT

GOOD = """
[[watch]]
name = "web"
requirements = ["requirements.txt"]
targets = ["cp312-manylinux_x86_64", "cp313-manylinux_x86_64"]

[[watch]]
projects = ["ruff", "lxml>=5"]
lock = "uv.lock"
targets = ["cp31{2,3}-manylinux_x86_64"]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    (tmp_path / "uv.lock").write_text("version = 1\n")
    path = tmp_path / "watch.toml"
    path.write_text(text)
    return path


def test_a_watch_file_is_read_with_its_paths_relative_to_it(tmp_path: Path) -> None:
    lists = read_watch_file(write(tmp_path, GOOD), check_targets=expand_targets)
    assert lists == [
        WatchList("web", ("cp312-manylinux_x86_64", "cp313-manylinux_x86_64"), (str(tmp_path / "requirements.txt"),)),
        WatchList(
            "list-2", ("cp31{2,3}-manylinux_x86_64",), lock=(str(tmp_path / "uv.lock"),), projects=("ruff", "lxml>=5")
        ),
    ]
    # What a Celery task carries is the list itself.
    assert WatchList.from_dict(json.loads(json.dumps(lists[1].to_dict()))) == lists[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[watch]\n", "is not valid TOML"),
        (
            'interval = 5\n[[watch]]\nprojects = ["six"]\ntargets = ["py3-none-any"]',
            "unknown top-level key(s) 'interval'",
        ),
        ("", "has no [[watch]] table"),
        ('[[watch]]\nname = "a"\nproject = ["six"]\ntargets = ["cp312-manylinux_x86_64"]', "unknown key(s) 'project'"),
        ('[[watch]]\nprojects = ["six"]', "list 1 has no targets"),
        ('[[watch]]\ntargets = ["cp312-manylinux_x86_64"]', "names nothing to watch"),
        ('[[watch]]\nprojects = ["six"]\ntargets = ["cp312-linux"]', "names an unknown platform"),
        ('[[watch]]\nprojects = ["six"]\ntargets = ["cp9{8,9}-manylinux_x86_64"]', "matches no build identifier"),
        ('[[watch]]\nprojects = ["six>>1"]\ntargets = ["cp312-manylinux_x86_64"]', "projects: 'six>>1' is not"),
        ('[[watch]]\nprojects = [3]\ntargets = ["cp312-manylinux_x86_64"]', "'projects' must be a list of strings"),
        ('[[watch]]\nrequirements = ["nope.txt"]\ntargets = ["cp312-manylinux_x86_64"]', "requirements: no file"),
        (
            '[[watch]]\nname = "x"\nprojects = ["six"]\ntargets = ["cp312-manylinux_x86_64"]\n'
            '[[watch]]\nname = "x"\nprojects = ["attrs"]\ntargets = ["cp312-manylinux_x86_64"]',
            "more than one list is named x",
        ),
    ],
)
def test_a_bad_watch_file_is_refused_saying_what_and_where(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidWatchFile) as refused:
        read_watch_file(write(tmp_path, text), check_targets=expand_targets)
    assert message in refused.value.message
    assert refused.value.hint
    if "'project'" in message:
        assert refused.value.hint.startswith("did you mean 'projects'?")


# -- on schedule, on real parts ---------------------------------------------------------------

WATCHED = "wheelyard-watch-demo"
NO_HEADER = "wheelyard-watch-noheader"
BROKEN = "wheelyard-watch-broken"


def c_project(name: str, version: str, source: str) -> dict[str, str]:
    module = name.replace("-", "_")
    files = {
        "pyproject.toml": DEMO_PROJECT["pyproject.toml"]
        .replace("wheelyard-miss-demo", name)
        .replace('version = "0.2.0"', f'version = "{version}"'),
        "setup.py": DEMO_PROJECT["setup.py"].replace("wheelyard_miss_demo", module),
        "demo.c": DEMO_PROJECT["demo.c"].replace("wheelyard_miss_demo", module),
    }
    files["demo.c"] = source + files["demo.c"]
    return files


def builds_of(stack: Stack, name: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{stack.api}/api/builds", params={"name": name}, timeout=10).json()["builds"])


def published(stack: Stack, name: str) -> set[tuple[str, str]]:
    return {(b["version"], b["target"]) for b in builds_of(stack, name) if b["status"] == "published"}


def watch_status(stack: Stack) -> dict[str, Any]:
    return dict(requests.get(f"{stack.api}/api/watch", timeout=10).json()["lists"])


@pytest.mark.slow
def test_beat_ensures_new_releases_added_targets_and_retries_failures(
    make_stack: Any, local_upstream: tuple[Path, str], tmp_path: Path
) -> None:
    packages, upstream = local_upstream
    src = tmp_path / "src"
    make_sdist(src, WATCHED, "0.1.0", c_project(WATCHED, "0.1.0", ""), packages)
    make_sdist(src, NO_HEADER, "1.0", c_project(NO_HEADER, "1.0", "#include <wheelyard_absent.h>\n"), packages)
    make_sdist(src, BROKEN, "1.0", c_project(BROKEN, "1.0", "this is not C;\n"), packages)
    (tmp_path / "requirements.txt").write_text(f"{NO_HEADER}==1.0\n{BROKEN}==1.0\n")
    watch = tmp_path / "watch.toml"
    lists = (
        '[[watch]]\nname = "demo"\nprojects = ["{0}"]\ntargets = [{1}]\n\n'
        '[[watch]]\nname = "broken"\nrequirements = ["requirements.txt"]\ntargets = ["cp312-manylinux_x86_64"]\n'
    )
    watch.write_text(lists.format(WATCHED, '"cp312-manylinux_x86_64"'))
    s = make_stack(
        db=1,
        WHEELYARD_UPSTREAM_INDEX=upstream,
        WHEELYARD_WATCH_FILE=str(watch),
        WHEELYARD_WATCH_INTERVAL="2",
        WHEELYARD_WATCH_RETRIES="2",
        WHEELYARD_WATCH_BACKOFF="1",
    )
    s.start_index_and_api()
    s.start_worker("worker-watch", "cp312-manylinux_x86_64,cp313-manylinux_x86_64")
    s.start("beat", "beat")

    wait_until(lambda: published(s, WATCHED) == {("0.1.0", "cp312-manylinux_x86_64")}, 300, "0.1.0 to be published")
    # A target added to the list is backfilled; a new release upstream is built for every watched target.
    watch.write_text(lists.format(WATCHED, '"cp312-manylinux_x86_64", "cp313-manylinux_x86_64"'))
    wait_until(lambda: ("0.1.0", "cp313-manylinux_x86_64") in published(s, WATCHED), 300, "the backfill for cp313")
    make_sdist(src, WATCHED, "0.2.0", c_project(WATCHED, "0.2.0", ""), packages)
    wait_until(
        lambda: {("0.2.0", "cp312-manylinux_x86_64"), ("0.2.0", "cp313-manylinux_x86_64")} <= published(s, WATCHED),
        300,
        "0.2.0 to be published for both targets" + s.log("beat")[-3000:],
    )

    # The missing header needs a capability no worker has: reported as such, and not built again.
    # The compile error is built again twice (WHEELYARD_WATCH_RETRIES), then given up on.
    def settled() -> dict[str, Any] | None:
        status = watch_status(s).get("broken")
        return status if status and status["given_up"] and status["needs_capability"] else None

    status = wait_until(settled, 300, "the broken list's failures to settle")
    needs = status["needs_capability"][0]
    assert (needs["name"], needs["capability"]) == (NO_HEADER, "header:wheelyard_absent.h"), status
    assert [e["name"] for e in status["given_up"]] == [BROKEN] and status["retry"] == []
    assert len(builds_of(s, NO_HEADER)) == 1
    assert len(builds_of(s, BROKEN)) == 3  # the first build and two retries
    beat = s.log("beat")
    assert f"{NO_HEADER} 1.0 (cp312-manylinux_x86_64) needs header:wheelyard_absent.h, which no worker has" in beat
    # Celery's retry, its countdown doubling (WHEELYARD_WATCH_BACKOFF=1), one pending retry per list.
    assert "'broken': trying again in 1 s" in beat and "'broken': trying again in 2 s" in beat, beat[-5000:]
    assert beat.count("'broken': trying again in 2 s") == 1
    assert "'broken': trying again in 4 s" not in beat
