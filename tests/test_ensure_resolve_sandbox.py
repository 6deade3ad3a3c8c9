"""Resolving runs a stranger's build backend only in the build sandbox.

A release with no wheel uv can use makes the resolver read its metadata from its sdist; an sdist
without static metadata is prepared by its own build backend (its setup.py). That code must not
run with the API's privileges: the test's sdist tries to leave a mark beside the data directory,
read the data directory's secret and the service's environment, and still resolves.
Real parts: a real uv, a real local upstream index (pypiserver) with a real sdist, the real sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.config import load_settings
from builder.targets import BuildTarget
from server.ensure.inputs import Sources
from server.ensure.resolve import Resolver
from tests.conftest import make_sdist

SETUP_PY = """
import os, pathlib
from setuptools import setup

found = []
for path in ({secret!r}, {marker!r}):
    try:
        found.append(pathlib.Path(path).read_text())
    except OSError as exc:
        found.append(type(exc).__name__)
try:
    pathlib.Path({marker!r}).write_text("the build backend wrote outside its sandbox")
except OSError:
    pass
print("SEEN", found, sorted(k for k in os.environ if "TOKEN" in k or "PASSWORD" in k), flush=True)
setup(name="dynmeta", version="1.0", install_requires=["six"])
"""


@pytest.mark.slow
def test_an_sdists_build_backend_runs_for_metadata_only_in_the_sandbox(
    tmp_path: Path, local_upstream: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    packages, upstream = local_upstream
    data = tmp_path / "data"
    data.mkdir()
    secret = data / "index-password"
    secret.write_text("s3cret-value")
    marker = tmp_path / "outside" / "marker"
    marker.parent.mkdir()
    os.chmod(marker.parent, 0o777)  # writable by anyone on the host: only the sandbox can keep it clean
    make_sdist(
        tmp_path / "src",
        "dynmeta",
        "1.0",
        {"setup.py": SETUP_PY.format(secret=str(secret), marker=str(marker))},
        packages,
    )
    monkeypatch.setenv("WHEELYARD_API_TOKEN", "api-token-value")
    settings = load_settings({"WHEELYARD_DATA_DIR": str(data), "WHEELYARD_UPSTREAM_INDEX": upstream})
    resolver = Resolver(upstream_index=upstream, cache_dir=tmp_path / "cache", settings=settings)

    pins = resolver.closure(Sources(requirements=("dynmeta==1.0",)), BuildTarget.parse("cp312-manylinux_x86_64"), {})

    assert {(p.name, p.version) for p in pins} >= {("dynmeta", "1.0")}
    assert "six" in {p.name for p in pins}
    assert not marker.exists()
    assert secret.read_text() == "s3cret-value"


def test_without_settings_the_resolver_never_runs_a_build_backend(
    tmp_path: Path, local_upstream: tuple[Path, str]
) -> None:
    packages, upstream = local_upstream
    marker = tmp_path / "marker"
    make_sdist(
        tmp_path / "src",
        "dynmeta",
        "1.0",
        {"setup.py": SETUP_PY.format(secret=str(marker), marker=str(marker))},
        packages,
    )
    resolver = Resolver(upstream_index=upstream, cache_dir=tmp_path / "cache")
    with pytest.raises(Exception) as info:
        resolver.closure(Sources(requirements=("dynmeta==1.0",)), BuildTarget.parse("cp312-manylinux_x86_64"), {})
    assert "dynmeta" in str(info.value)
    assert not marker.exists()
