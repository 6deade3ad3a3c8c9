"""How much slower a real build is in the sandbox than outside it.

Builds the sdist of markupsafe (a C extension) N times with ``builder.sandbox.Sandbox`` as
the runner and N times with a plain subprocess runner, alternating, in one run, and prints
the times and the ratio of the medians (target: under 1.05).

It also prints what moving a process into a cgroup costs on this host after an idle pause,
as before each hook: a kernel that does not favour dynamic cgroup changes (``favordynmods``)
waits for an RCU grace period there, several ms per hook (see docs/sandbox.md).

The sdist is downloaded once into a cache directory, and the build requirements are
installed once into an environment there, outside the timing: both variants build with
that environment's python and no isolation, so the figure measures the sandbox, not pip.
Each build gets a fresh copy of the unpacked sdist in a fresh work directory.

    python bench/sandbox_overhead.py [--runs 5] [--cache /tmp/wheelyard-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from build import ProjectBuilder

from builder.buildlog import FileBuildLog
from builder.config import Limits
from builder.sandbox import Sandbox, build_environment, sandbox_available
from builder.sandbox.cgroups import Cgroup

PROJECT = "markupsafe"
VERSION = "3.0.2"
BUILD_REQUIRES = ["setuptools>=70.1"]

Runner = Callable[[Sequence[str], "str | None", "Mapping[str, str] | None"], None]


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def prepare(cache: Path) -> tuple[Path, Path]:
    """The unpacked sdist and the build environment's python, made once."""
    cache.mkdir(parents=True, exist_ok=True)
    sdists = list(cache.glob(f"{PROJECT}-{VERSION}.tar.gz"))
    if not sdists:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
                str(cache),
                f"{PROJECT}=={VERSION}",
            ],
            check=True,
            env=pip_env(),
            stdout=subprocess.DEVNULL,
        )
        sdists = list(cache.glob(f"{PROJECT}-{VERSION}.tar.gz"))
    src = cache / f"{PROJECT}-{VERSION}"
    if not src.is_dir():
        with tarfile.open(sdists[0]) as tar:
            tar.extractall(cache, filter="data")
    env_dir = cache / "env"
    python = env_dir / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *BUILD_REQUIRES], check=True, env=pip_env())
    return src, python


def plain_runner(log_path: Path, env: Mapping[str, str]) -> Runner:
    """The baseline: the same clean environment and log file, no sandbox."""

    def run(cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None) -> None:
        with open(log_path, "ab") as log:
            subprocess.run(
                list(cmd),
                cwd=cwd,
                env={**env, **(extra_environ or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )

    return run


def one_build(src: Path, python: Path, sandboxed: bool, enabled: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="wheelyard-bench-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        srcdir = workdir / "src"
        shutil.copytree(src, srcdir)
        log_path = Path(tmp) / "build.log"
        env = build_environment()
        start = time.perf_counter()
        if sandboxed:
            with FileBuildLog(log_path) as log:
                sandbox = Sandbox(Limits(), workdir, log, enabled=enabled, env=env)
                ProjectBuilder(str(srcdir), python_executable=str(python), runner=sandbox.run).build(
                    "wheel", str(workdir / "dist")
                )
        else:
            ProjectBuilder(str(srcdir), python_executable=str(python), runner=plain_runner(log_path, env)).build(
                "wheel", str(workdir / "dist")
            )
        elapsed = time.perf_counter() - start
        wheels = list((workdir / "dist").glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one wheel, got {wheels}; log:\n{log_path.read_text()}")
        return elapsed


def cgroup_move_ms(samples: int = 5) -> float | None:
    """Median time to move a process into a fresh cgroup after an idle pause, in ms."""
    group = Cgroup.create(Limits())
    if group is None:
        return None
    times = []
    try:
        for _ in range(samples):
            proc = subprocess.Popen(["sleep", "30"])
            # A pause like the one between two hooks: back-to-back moves are cheap either way.
            time.sleep(0.3)
            start = time.perf_counter()
            group.add(proc.pid)
            times.append(time.perf_counter() - start)
            proc.kill()
            proc.wait()
    finally:
        group.remove()
    return statistics.median(times) * 1000


def favordynmods() -> bool:
    """Whether a cgroup2 mount here has ``favordynmods`` (the kernel's mode for cheap moves)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = right.split()
        if fields and fields[0] == "cgroup2" and "favordynmods" in fields[-1].split(","):
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    default_cache = Path(tempfile.gettempdir()) / "wheelyard-bench"
    parser.add_argument("--cache", type=Path, default=default_cache)
    args = parser.parse_args(argv)
    # build forwards the backend's warnings; they are in the build log already.
    warnings.simplefilter("ignore")
    enabled = sandbox_available()
    src, python = prepare(args.cache)
    one_build(src, python, sandboxed=True, enabled=enabled)  # warm the page cache
    one_build(src, python, sandboxed=False, enabled=enabled)
    plain: list[float] = []
    boxed: list[float] = []
    for i in range(args.runs):
        # Alternate, and alternate which goes first, so drift hits both alike.
        order = (False, True) if i % 2 == 0 else (True, False)
        for sandboxed in order:
            t = one_build(src, python, sandboxed=sandboxed, enabled=enabled)
            (boxed if sandboxed else plain).append(t)
    mode = "bubblewrap" if enabled else "no bubblewrap (limits only)"
    print(f"{PROJECT}=={VERSION}, {args.runs} runs each, sandbox: {mode}")
    print("plain    " + " ".join(f"{t:6.3f}" for t in plain))
    print("sandbox  " + " ".join(f"{t:6.3f}" for t in boxed))
    mid_plain, mid_boxed = statistics.median(plain), statistics.median(boxed)
    ratio = mid_boxed / mid_plain
    print(f"median plain {mid_plain:.3f} s, sandbox {mid_boxed:.3f} s, ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")
    move = cgroup_move_ms()
    if move is None:
        print("cgroups: none the worker can make here (the rlimit fallbacks apply)")
    else:
        flag = "set" if favordynmods() else "not set"
        print(f"cgroup move after an idle pause: {move:.2f} ms per hook (favordynmods on a cgroup2 mount: {flag})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
