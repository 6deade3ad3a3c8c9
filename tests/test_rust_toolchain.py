"""The worker finds its Rust toolchain whatever its HOME, and builds and capabilities use the same one.

The layouts are made in temporary directories from this machine's real rustup installation (its
proxy binary and a real toolchain, linked in), as rustup lays them out; every cargo run is real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.capabilities import Capabilities, check_in_sandbox, probe_rust
from builder.config import Settings
from builder.errors import WheelyardError
from builder.rust_toolchain import TOOLS, find_rust_toolchain, rust_for_build
from builder.sandbox import sandbox_available

REAL = find_rust_toolchain()
needs_rust = pytest.mark.skipif(REAL is None, reason="no Rust toolchain on this machine")
CRATES = Path("/usr/share/cargo/registry")
TRIPLE = "x86_64-unknown-linux-gnu"


def rustup_binary() -> Path | None:
    proxy = shutil.which("cargo")
    if proxy is None or Path(os.path.realpath(proxy)).name != "rustup":
        return None
    return Path(os.path.realpath(proxy))


def fresh_home(tmp_path: Path) -> Path:
    """A new user's home: mode 0700, nothing of Rust in it."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return home


def rustup_install(root: Path, proxy: Path) -> Path:
    """``root/.cargo/bin`` with rustup's proxies and ``root/.rustup`` with one toolchain, as rustup
    installs them; returns the proxies' directory."""
    assert REAL is not None
    bin_dir = root / ".cargo" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("cargo", "rustc"):
        (bin_dir / name).symlink_to(proxy)
    toolchains = root / ".rustup" / "toolchains"
    toolchains.mkdir(parents=True)
    (toolchains / f"stable-{TRIPLE}").symlink_to(REAL.bin_dir.parent)
    (root / ".rustup" / "settings.toml").write_text(f'default_toolchain = "stable-{TRIPLE}"\n')
    return bin_dir


def run(exe: Path, *args: str, home: Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(home), "RUSTUP_AUTO_INSTALL": "0", **env}
    return subprocess.run(
        [str(exe), *args], env=environ, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@needs_rust
def test_a_worker_with_another_home_finds_the_toolchain_behind_the_proxies_on_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = rustup_binary()
    if proxy is None:
        pytest.skip("cargo on PATH is not a rustup proxy here")
    home = fresh_home(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    for name in ("CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"):
        monkeypatch.delenv(name, raising=False)
    proxies = rustup_install(tmp_path / "admin", proxy)
    # The proxy itself cannot choose a toolchain with this HOME: what a build was given before.
    assert run(proxies / "cargo", "--version", home=home).returncode != 0
    environ = {"HOME": str(home), "PATH": f"{proxies}:/usr/bin:/bin"}
    found = find_rust_toolchain(environ=environ)
    assert found is not None
    assert found.bin_dir == tmp_path / "admin" / ".rustup" / "toolchains" / f"stable-{TRIPLE}" / "bin"
    assert run(found.executable("cargo"), "--version", home=home).stdout.startswith("cargo 1.")
    # The capability the worker advertises is this toolchain's, by its real version line.
    tools = probe_rust(path=environ["PATH"])
    assert tools["rustc"] == run(found.executable("rustc"), "--version", home=home).stdout.strip()
    assert tools["rustc"].startswith("rustc 1.") and tools["cargo"].startswith("cargo 1.")


@needs_rust
def test_rustup_home_and_toolchain_variables_are_followed(tmp_path: Path) -> None:
    assert REAL is not None
    rustup_home = tmp_path / "rustup"
    (rustup_home / "toolchains").mkdir(parents=True)
    (rustup_home / "toolchains" / f"pinned-{TRIPLE}").symlink_to(REAL.bin_dir.parent)
    environ = {"HOME": str(fresh_home(tmp_path)), "PATH": "/usr/bin:/bin", "RUSTUP_HOME": str(rustup_home)}
    # Neither the default nor "stable" exists under this RUSTUP_HOME: only the toolchain it names.
    assert find_rust_toolchain(environ={**environ, "RUSTUP_TOOLCHAIN": "pinned"}) == find_rust_toolchain(
        environ={**environ, "RUSTUP_TOOLCHAIN": f"pinned-{TRIPLE}"}
    )
    found = find_rust_toolchain(environ={**environ, "RUSTUP_TOOLCHAIN": "pinned"})
    assert found is not None and found.bin_dir == rustup_home / "toolchains" / f"pinned-{TRIPLE}" / "bin"


@needs_rust
def test_a_distribution_cargo_on_path_is_used_and_a_proxy_is_not(tmp_path: Path) -> None:
    assert REAL is not None
    packaged = tmp_path / "usr" / "bin"
    packaged.mkdir(parents=True)
    for name in ("cargo", "rustc"):
        (packaged / name).symlink_to(REAL.executable(name))
    # RUSTUP_TOOLCHAIN names none of rustup's toolchains, so only PATH is left to search.
    environ = {"HOME": str(fresh_home(tmp_path)), "PATH": f"{packaged}:/usr/bin", "RUSTUP_TOOLCHAIN": "none"}
    found = find_rust_toolchain(environ=environ)
    assert found is not None and found.bin_dir == packaged
    proxy = rustup_binary()
    if proxy is not None:
        only_proxies = tmp_path / "proxies"
        only_proxies.mkdir()
        for name in ("cargo", "rustc"):
            (only_proxies / name).symlink_to(proxy)
        assert find_rust_toolchain(environ={**environ, "PATH": str(only_proxies)}) is None


@needs_rust
def test_the_configured_toolchain_is_the_only_one_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    assert REAL is not None
    assert find_rust_toolchain(REAL.bin_dir, environ={"PATH": ""}) == REAL
    with pytest.raises(WheelyardError) as info:
        find_rust_toolchain(tmp_path)
    assert info.value.reference == "invalid-configuration"
    assert str(tmp_path) in info.value.message and "bin directory" in (info.value.hint or "")


@needs_rust
@pytest.mark.skipif(not (CRATES / "adler-1.0.2").exists(), reason="needs Debian's vendored crates (librust-adler-dev)")
def test_the_vendored_crates_reach_cargo_through_its_config_file(tmp_path: Path) -> None:
    """The one vendoring mechanism a build gets; the CARGO_SOURCE_* variables cargo ignores are not it."""
    assert REAL is not None
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text(
        '[package]\nname = "p"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nadler = "1"\n'
    )
    (project / "src" / "lib.rs").write_text("")
    home = fresh_home(tmp_path)
    rust = rust_for_build(Settings(cargo_vendor_dir=CRATES), tmp_path / "cargo-home")
    assert CRATES in rust.read_only and set(REAL.paths()) <= set(rust.read_only)
    assert rust.environment["PATH"].split(os.pathsep)[0] == str(REAL.bin_dir)
    cargo = Path(rust.environment["PATH"].split(os.pathsep)[0]) / "cargo"
    done = run(cargo, "generate-lockfile", home=home, cwd=project, CARGO_HOME=rust.environment["CARGO_HOME"])
    assert done.returncode == 0, done.stderr
    assert 'name = "adler"' in (project / "Cargo.lock").read_text()
    (project / "Cargo.lock").unlink()
    variables = {
        "CARGO_HOME": str(tmp_path / "empty-cargo-home"),
        "CARGO_NET_OFFLINE": "true",
        "CARGO_SOURCE_CRATES_IO_REPLACE_WITH": "vendored-sources",
        "CARGO_SOURCE_VENDORED_SOURCES_DIRECTORY": str(CRATES),
    }
    assert run(cargo, "generate-lockfile", home=home, cwd=project, **variables).returncode != 0


@needs_rust
@pytest.mark.skipif(
    os.geteuid() != 0 or not sandbox_available(), reason="the build user differs from the worker's only as root"
)
def test_only_a_toolchain_that_compiles_in_the_sandbox_as_the_build_user_is_advertised(tmp_path: Path) -> None:
    assert REAL is not None
    found = Capabilities("linux", "x86_64", "glibc", "2.36", (), {"gcc": "gcc", "cargo": "cargo 1", "rustc": "rustc 1"})
    # This machine's toolchain (under root's 0700 home here) is bound back into the sandbox.
    assert check_in_sandbox(found, Settings(data_dir=tmp_path / "data")).tools == found.tools
    # A toolchain whose binaries the build user cannot reach: it runs for the worker, not for a build.
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    for name in TOOLS:
        (closed / name).symlink_to(REAL.executable(name))
        (wrappers / name).write_text(f'#!/bin/sh\nexec {closed / name} "$@"\n')
        (wrappers / name).chmod(0o755)
    assert probe_rust(wrappers)["rustc"] == run(REAL.executable("rustc"), "--version", home=tmp_path).stdout.strip()
    settings = Settings(data_dir=tmp_path / "data", rust_toolchain=wrappers)
    assert check_in_sandbox(found, settings).tools == {"gcc": "gcc"}


def test_a_worker_given_a_directory_without_a_toolchain_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from server.cli import main

    monkeypatch.setenv("WHEELYARD_RUST_TOOLCHAIN", str(tmp_path / "no-rust-here"))
    out, err = io.StringIO(), io.StringIO()
    assert main(["--data-dir", str(tmp_path / "data"), "worker", "--probe"], stdout=out, stderr=err) != 0
    said = err.getvalue()
    assert "invalid-configuration" in said and "no-rust-here" in said and "Traceback" not in said, said


def test_the_vendored_crates_directory_reaches_cargo_as_it_is(tmp_path: Path) -> None:
    import tomllib

    odd = tmp_path / 'crates "vendored" \\ here\tand ü'
    rust_for_build(Settings(cargo_vendor_dir=odd), tmp_path / "cargo-home")
    config = tomllib.loads((tmp_path / "cargo-home" / "config.toml").read_text())
    assert config["source"]["vendored-sources"]["directory"] == str(odd)
    assert config["source"]["crates-io"]["replace-with"] == "vendored-sources"
