"""Scheduled prebuilds: Celery beat submits the prebuild file, like a person's request would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from builder.errors import WheelyardError
from server.watch.prebuild import read_prebuild_file
from tests.conftest import wait_until


def test_prebuild_file_lines_are_parsed_and_a_bad_line_is_named(tmp_path: Path) -> None:
    good = tmp_path / "prebuild.txt"
    good.write_text(
        "# team wheels\nsix==1.17.0 py3-none-any\nmarkupsafe==3.0.2 cp312-manylinux_x86_64,cp313-manylinux_x86_64\n"
    )
    lines = read_prebuild_file(good)
    assert [(x.number, x.requirement, x.targets) for x in lines] == [
        (2, "six==1.17.0", ("py3-none-any",)),
        (3, "markupsafe==3.0.2", ("cp312-manylinux_x86_64", "cp313-manylinux_x86_64")),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("six==1.17.0\n")
    with pytest.raises(WheelyardError, match=r"bad.txt:1: expected 'REQUIREMENT TARGET"):
        read_prebuild_file(bad)


@pytest.mark.slow
def test_beat_submits_the_prebuild_file_on_schedule(make_stack: Any, tmp_path: Path) -> None:
    prebuild = tmp_path / "prebuild.txt"
    prebuild.write_text("six==1.17.0 py3-none-any\nno-such-package-wheelyard-x9q==1.0 py3-none-any\n")
    s = make_stack(db=13, WHEELYARD_PREBUILD_FILE=str(prebuild), WHEELYARD_PREBUILD_INTERVAL="1")
    s.start_index_and_api()
    s.start("beat", "beat")

    def submitted() -> list[dict[str, Any]]:
        builds = requests.get(f"{s.api}/api/builds", params={"name": "six"}, timeout=10).json()["builds"]
        return list(builds)

    builds = wait_until(submitted, 60, "the scheduled prebuild to be submitted")
    assert builds[0]["target"] == "py3-none-any"
    # No worker runs in this stack: the mirror job waits for one, and repeated runs share it.
    assert builds[0]["status"] == "waiting-for-worker"
    wait_until(
        lambda: "prebuild: {'created': 0, 'existing': 1, 'refused': 1}" in s.log("beat"), 60, "a second scheduled run"
    )
    assert len(submitted()) == 1
