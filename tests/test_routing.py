"""Capability routing with two real Celery workers on this machine, one capability apart.

Both workers build the same targets; one has Debian's gfortran on its builds' PATH, the other a
PATH of symlinks to the same tools without any Fortran compiler. python-glmnet 2.6.1 (a real
sdist from PyPI: meson-python, one Fortran source) needs gfortran: it fails on the first worker
(diagnosed ``missing-fortran``, capability ``tool:fortran``) and is published by the second.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests

from builder.config import Settings
from builder.targets import BuildTarget
from builder.tasks import create_celery_app
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

RELEASE = "python-glmnet==2.6.1"
FIRST, SECOND = "cp312-manylinux_x86_64", "cp313-manylinux_x86_64"


def fortran_free_path(root: Path) -> str:
    """A directory of symlinks to every tool on the default PATH but the Fortran compilers."""
    bin_dir = root / "bin-without-fortran"
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in sorted(Path(directory).iterdir()):
            name = entry.name
            if "fortran" in name or name in ("f77", "f90", "f95") or (bin_dir / name).exists():
                continue
            (bin_dir / name).symlink_to(entry)
    return str(bin_dir)


def start_worker(stack: Any, name: str, build_path: str | None) -> str:
    """A worker of both targets whose builds (and tool probe) use ``build_path``; its node name."""
    env = dict(stack.env)
    if build_path is not None:
        stack.env["WHEELYARD_BUILD_PATH"] = build_path
    try:
        stack.start_worker(name, f"{FIRST},{SECOND}")
    finally:
        stack.env = env
    return f"{name}-{os.getpid()}@test"


def workers(stack: Any) -> dict[str, dict[str, Any]]:
    return dict(requests.get(f"{stack.api}/api/workers", timeout=10).json()["workers"])


def listed(stack: Any, **params: str) -> list[dict[str, Any]]:
    response = requests.get(f"{stack.api}/api/builds", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["builds"])


def request_build(stack: Any, target: str) -> str:
    response = stack.request(RELEASE, [target], from_source=True)
    assert response.status_code == 202, response.text
    return str(response.json()["builds"][0]["id"])


@pytest.mark.skipif(shutil.which("gfortran") is None, reason="needs Debian's gfortran (apt-get install -y gfortran)")
def test_a_build_waits_for_a_capability_and_is_routed_to_the_worker_that_has_it(
    make_stack: Any, tmp_path: Path
) -> None:
    stack = make_stack(db=1)
    stack.start_index_and_api()
    plain = start_worker(stack, "plain", fortran_free_path(tmp_path))
    registered = workers(stack)[plain]
    assert "tool:fortran" not in registered["capabilities"] and "tool:gcc" in registered["capabilities"]

    # 1. No live worker has gfortran: the build fails on the plain worker and waits for one.
    waiting_id = request_build(stack, FIRST)
    waiting = wait_until(
        lambda: (b := stack.build(waiting_id))["status"] in ("waiting-for-capability", "failed", "published") and b,
        900,
        "the build to fail for want of gfortran",
        interval=1,
    )
    assert waiting["status"] == "waiting-for-capability", waiting
    assert waiting["missing_capability"] == "tool:fortran"
    assert waiting["diagnosis"]["primary"]["category"] == "missing-fortran"
    assert [b["id"] for b in listed(stack, status="waiting-for-capability")] == [waiting_id]
    summary = requests.get(f"{stack.api}/api/builds/summary", timeout=10).json()
    assert summary["counts"]["waiting-for-capability"] == 1

    # 2. A worker with gfortran joins: its registration claims the build, and publishes it.
    fortran = start_worker(stack, "fortran", None)
    assert "tool:fortran" in workers(stack)[fortran]["capabilities"]
    done = stack.wait_done(waiting_id, timeout=900)
    assert done["status"] == "published", stack.log("fortran")
    assert done["worker"] == fortran and done["required_capabilities"] == ["tool:fortran"]
    assert done["missing_capability"] is None and "-cp312-cp312-manylinux" in done["wheel"]

    # 3. Both live: the fortran worker stops taking the second target's queue (a real Celery remote
    # control), so the plain worker takes the build, fails, and sends it to the fortran worker.
    app = create_celery_app(Settings(), stack.redis_url)
    replies = app.control.cancel_consumer(BuildTarget.parse(SECOND).queue, destination=[fortran], reply=True)
    assert replies and fortran in replies[0], replies
    routed_id = request_build(stack, SECOND)
    routed = stack.wait_done(routed_id, timeout=900)
    assert routed["status"] == "published", stack.log("fortran") + stack.log("plain")
    assert routed["worker"] == fortran and routed["required_capabilities"] == ["tool:fortran"]
    assert f"build {routed_id}: this worker lacks tool:fortran; sent to {fortran}" in stack.log("plain")
    assert listed(stack, status="waiting-for-capability") == []
    index = requests.get(f"{stack.simple}python-glmnet/", timeout=10).text
    assert "cp312-cp312-manylinux" in index and "cp313-cp313-manylinux" in index
