"""What measuring a build's work directory costs: the sandbox's walk (bytes and inodes, with
directory fds, any depth) against the path-based walk it replaced (bytes only, recursion-free
but failing past PATH_MAX), on the same trees, alternating, in one run.

The monitor re-measures ``workdir`` at most every second and backs off to keep the walk under
a twentieth of the time, so this ratio is the ratio of the monitor's cost; it also prints the
cost per entry. Trees: a build-like one (``--files`` files in directories of 100), and a
1,200-level chain that the old walk could not see the bottom of.

    python bench/tree_walk.py [--files 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.workdir import remove_tree, tree_usage  # noqa: E402
from tests.test_workdir import deep_tree  # noqa: E402


def path_walk(root: Path) -> tuple[int, int]:
    """The former ``builder.sandbox._disk_usage`` (bytes under ``root``, by paths: the baseline),
    also counting the entries it reached."""
    total = count = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(root)]
    while stack:
        top = stack.pop()
        try:
            entries = os.scandir(top)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_blocks * 512
                count += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total, count


def wide_tree(root: Path, files: int) -> None:
    for i in range(files):
        d = root / f"d{i // 100}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        (d / f"f{i}").write_bytes(b"x" * (i % 7))


def median_seconds(action: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wheelyard-bench-walk-") as tmp:
        wide = Path(tmp) / "wide"
        wide_tree(wide, args.files)
        old: list[float] = []
        new: list[float] = []
        for _ in range(args.runs):  # alternating, so that the page cache favours neither
            old += median_seconds(lambda: path_walk(wide), 1)
            new += median_seconds(lambda: tree_usage(wide), 1)
        entries = tree_usage(wide).inodes
        old_m, new_m = statistics.median(old), statistics.median(new)
        print(f"wide tree, {entries} entries, {args.runs} runs each")
        print(f"  path walk (bytes; baseline): median {old_m * 1000:.1f} ms ({old_m / entries * 1e6:.2f} us/entry)")
        print(f"  fd walk (bytes + inodes):    median {new_m * 1000:.1f} ms ({new_m / entries * 1e6:.2f} us/entry)")
        print(f"  ratio fd/path: {new_m / old_m:.3f}")
        deep = Path(tmp) / "deep"
        deep_tree(deep, 1200)
        usage = tree_usage(deep)
        print(f"1,200-level chain: fd walk sees {usage.inodes} entries (complete: {usage.complete});", end=" ")
        print(f"path walk sees {path_walk(deep)[1]}")
        remove_tree(deep)
        remove_tree(wide)


if __name__ == "__main__":
    main()
