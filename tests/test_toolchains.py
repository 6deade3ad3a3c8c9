"""Rust and C++ extensions build the same way as C ones, on real compilers.

No crates registry is reachable here, as in many air-gapped build farms: the worker takes
a configured cargo source replacement. The Rust sdist is made by this test and builds
against Debian's packaged pyo3 crates (``/usr/share/cargo/registry``, from librust-pyo3-dev).
It is served to the worker by a local upstream index, which redirects every other project
(maturin, the build backend) to PyPI, as a devpi or Artifactory in front of PyPI would.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import isolated_pip_env, make_sdist, pip_install_from_index

pytestmark = pytest.mark.slow

CRATES = Path("/usr/share/cargo/registry")

RUST_PROJECT = {
    "pyproject.toml": """
[build-system]
requires = ["maturin>=1.4,<2"]
build-backend = "maturin"

[project]
name = "wheelyard-rust-demo"
version = "0.1.0"
requires-python = ">=3.8"

[tool.maturin]
module-name = "wheelyard_rust_demo"
""",
    "Cargo.toml": """
[package]
name = "wheelyard-rust-demo"
version = "0.1.0"
edition = "2021"

[lib]
name = "wheelyard_rust_demo"
crate-type = ["cdylib"]

[dependencies]
pyo3 = { version = "0.17", features = ["extension-module"] }
""",
    "src/lib.rs": """
use pyo3::prelude::*;

#[pyfunction]
fn add(a: i64, b: i64) -> i64 { a + b }

#[pymodule]
fn wheelyard_rust_demo(_py: Python, m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(add, m)?)?;
    Ok(())
}
""",
}


needs_pyo3 = pytest.mark.skipif(not (CRATES / "pyo3-0.17.3").exists(), reason="needs Debian's librust-pyo3-dev")


def build_rust_demo(s: Any, packages: Path, tmp_path: Path, worker: str, home: Path | None = None) -> None:
    """The Rust sdist built by a worker (started with ``home`` as its HOME, if given), published,
    installed from the index by pip, and imported."""
    make_sdist(tmp_path, "wheelyard_rust_demo", "0.1.0", RUST_PROJECT, packages)
    s.start_index_and_api()
    if home is not None:
        s.env = {**s.env, "HOME": str(home)}
    s.start_worker(worker, "cp311-manylinux_x86_64")
    response = s.request("wheelyard-rust-demo==0.1.0", ["cp311-manylinux_x86_64"])
    assert response.status_code == 202, response.text
    done = s.wait_done(response.json()["builds"][0]["id"], timeout=900)
    assert done["status"] == "published", (done, s.log(worker))
    assert "-cp311-cp311-manylinux" in done["wheel"]

    python, urls = pip_install_from_index(s.simple, "3.11", tmp_path, "wheelyard-rust-demo==0.1.0")
    url = urls["wheelyard-rust-demo"]
    assert url.startswith(f"http://127.0.0.1:{s.index_port}/")
    out = subprocess.run(
        [str(python), "-c", "import wheelyard_rust_demo as m; print(m.add(2, 40))"],
        check=True,
        capture_output=True,
        text=True,
        env=isolated_pip_env(),
    )
    assert out.stdout.strip() == "42"


@needs_pyo3
def test_rust_extension_builds_against_a_cargo_source_replacement(
    make_stack: Any, local_upstream: tuple[Path, str], tmp_path: Path
) -> None:
    packages, upstream = local_upstream
    s = make_stack(
        db=11,
        WHEELYARD_UPSTREAM_INDEX=upstream,
        WHEELYARD_CARGO_VENDOR_DIR=str(CRATES),
        WHEELYARD_BUILD_TIMEOUT="900",
    )
    build_rust_demo(s, packages, tmp_path, "worker-rust")


@needs_pyo3
def test_rust_extension_builds_on_a_worker_whose_home_is_not_where_rustup_is(
    make_stack: Any, local_upstream: tuple[Path, str], tmp_path: Path
) -> None:
    """A worker run as a service with a HOME of its own (a fresh 0700 directory): rustup's proxies
    on its PATH cannot choose a toolchain there, so the worker must find the toolchain itself, and
    advertise the one the build then uses."""
    packages, upstream = local_upstream
    home = tmp_path / "service-home"
    home.mkdir(mode=0o700)
    s = make_stack(
        db=13,
        WHEELYARD_UPSTREAM_INDEX=upstream,
        WHEELYARD_CARGO_VENDOR_DIR=str(CRATES),
        WHEELYARD_BUILD_TIMEOUT="900",
    )
    build_rust_demo(s, packages, tmp_path, "worker-rust-home", home=home)
    workers = requests.get(f"{s.api}/api/workers", timeout=10).json()["workers"]
    (info,) = [w for name, w in workers.items() if name.startswith("worker-rust-home-")]
    tools = info["probe"]["tools"]
    assert tools["cargo"].startswith("cargo 1.") and tools["rustc"].startswith("rustc 1."), tools
    # What routing reads: the same toolchain, by name and version.
    assert any(c.startswith("tool:rustc==1.") for c in info["capabilities"]), info["capabilities"]
    assert "tool:cargo" in info["capabilities"] and "tool:rust" in info["capabilities"], info["capabilities"]


def test_cxx_extension_builds_from_source(make_stack: Any, tmp_path: Path) -> None:
    # murmurhash: a small C++ extension (Cython-generated C++, compiled by g++).
    s = make_stack(db=12)
    s.start_index_and_api()
    s.start_worker("worker-cxx", "cp312-manylinux_x86_64")
    response = s.request("murmurhash==1.0.13", ["cp312-manylinux_x86_64"], from_source=True)
    assert response.status_code == 202, response.text
    done = s.wait_done(response.json()["builds"][0]["id"], timeout=900)
    assert done["status"] == "published", (done, s.log("worker-cxx"))
    log = subprocess.run(["curl", "-s", done["log_url"]], capture_output=True, text=True).stdout
    assert "g++" in log or "c++" in log
    python, urls = pip_install_from_index(s.simple, "3.12", tmp_path, "--no-deps", "murmurhash==1.0.13")
    url = urls["murmurhash"]
    assert url.startswith(f"http://127.0.0.1:{s.index_port}/")
    subprocess.run(
        [str(python), "-c", "from murmurhash import mrmr; assert mrmr.hash('wheelyard') != 0"],
        check=True,
        env=isolated_pip_env(),
    )
