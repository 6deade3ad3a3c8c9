"""Hostile sdists through the whole service: each is contained by the sandbox, its build record
says why it failed (the error's cause and the diagnosis), and the worker goes on to the next build.

The sandbox's own tests (tests/test_sandbox.py) cover every hostile case at the builder level;
these cover the path from a request to the record on a real worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_sdist

pytestmark = pytest.mark.slow

TARGET = "cp312-manylinux_x86_64"


def setup_py_project(name: str, body: str) -> dict[str, str]:
    """A setuptools project whose setup.py runs ``body`` first: in the first build hook, in the sandbox."""
    return {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n',
        "setup.py": f"{body}\nfrom setuptools import setup\nsetup(name={name!r}, version='0.1.0')\n",
    }


SLEEPS_FOREVER = setup_py_project("wheelyard-sleeper", "import time\nwhile True:\n    time.sleep(3600)")
ALLOCATES_8_GIB = setup_py_project(
    "wheelyard-hog",
    "blocks = []\nfor _ in range(8 * 1024):\n    blocks.append(bytearray(1024 * 1024))",
)


def test_hostile_builds_are_recorded_with_their_cause_and_the_worker_goes_on(
    make_stack: Any, local_upstream: tuple[Path, str], tmp_path: Path
) -> None:
    packages, upstream = local_upstream
    make_sdist(tmp_path / "src", "wheelyard-sleeper", "0.1.0", SLEEPS_FOREVER, packages)
    make_sdist(tmp_path / "src", "wheelyard-hog", "0.1.0", ALLOCATES_8_GIB, packages)
    s = make_stack(
        db=1,
        WHEELYARD_UPSTREAM_INDEX=upstream,
        WHEELYARD_BUILD_TIMEOUT="15",
        WHEELYARD_BUILD_MEMORY=str(1024**3),
    )
    s.start_index_and_api()
    s.start_worker("worker-hostile", TARGET)

    expected = {
        "wheelyard-sleeper": ("timeout", "timeout"),
        "wheelyard-hog": ("out-of-memory", "out-of-memory"),
    }
    for name, (cause, category) in expected.items():
        response = s.request(f"{name}==0.1.0", [TARGET])
        assert response.status_code == 202, response.text
        done = s.wait_done(response.json()["builds"][0]["id"], timeout=120)
        assert done["status"] == "failed", done
        assert done["error"]["cause"] == cause, done["error"]
        assert done["diagnosis"]["primary"]["category"] == category, done["diagnosis"]["primary"]
        assert done["diagnosis"]["primary"]["rule"].startswith("sandbox-")

    # The same worker builds the next, ordinary request.
    response = s.request("markupsafe==3.0.2", [TARGET], from_source=True)
    done = s.wait_done(response.json()["builds"][0]["id"], timeout=120)
    assert done["status"] == "published", (done, s.log("worker-hostile"))
    assert done["worker"].startswith("worker-hostile-")
