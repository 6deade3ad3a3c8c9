"""Work directories (builder.workdir) on real trees and real processes: a 1,200-level deep tree
is measured and removed (``shutil.rmtree`` raises RecursionError on it), and the work directory
of a process killed with SIGKILL is swept while a live one's is kept."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from builder.workdir import WorkDirectory, remove_tree, sweep, tree_usage

DEPTH = 1200


def deep_tree(root: Path, depth: int = DEPTH) -> Path:
    """A chain of ``depth`` directories named ``dddd`` (its path is far past PATH_MAX), made
    with directory fds as a build's code could; a file at the bottom."""
    root.mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("dddd", dir_fd=fd)
        child = os.open("dddd", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    return root


def test_shutil_rmtree_fails_on_the_deep_tree(tmp_path: Path) -> None:
    """The premise: Python's own removal cannot do it (here: RecursionError or a too-long path)."""
    tree = deep_tree(tmp_path / "tree")
    with pytest.raises((RecursionError, OSError)):
        shutil.rmtree(tree)
    assert remove_tree(tree) and not tree.exists()


def test_a_1200_level_tree_is_measured_and_removed(tmp_path: Path) -> None:
    tree = deep_tree(tmp_path / "tree")
    usage = tree_usage(tree)
    assert usage.complete
    assert usage.inodes == DEPTH + 1
    assert remove_tree(tree)
    assert not tree.exists()


def test_directories_without_permissions_are_removed(tmp_path: Path) -> None:
    locked = tmp_path / "tree" / "locked"
    (locked / "inner").mkdir(parents=True)
    (locked / "inner" / "f").write_text("x")
    locked.chmod(0)
    assert remove_tree(tmp_path / "tree")
    assert not (tmp_path / "tree").exists()


HOLDER = """
import sys, time
from pathlib import Path
from builder.workdir import WorkDirectory
work = WorkDirectory(Path(sys.argv[1]))
(work.path / "partial.o").write_bytes(b"x" * 4096)
print(work.path, flush=True)
time.sleep(3600)
"""


def test_the_work_directory_of_a_killed_process_is_swept_and_a_live_one_kept(tmp_path: Path) -> None:
    root = tmp_path / "work"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent
    )
    assert holder.stdout is not None
    killed = Path(holder.stdout.readline().strip())
    with WorkDirectory(root) as live:
        assert sweep(root) == []  # both are held
        assert killed.is_dir()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert sweep(root) == [killed]
        assert not killed.exists() and not killed.with_name(killed.name + ".lock").exists()
        assert live.path.is_dir()
    assert not live.path.exists()
    assert sorted(p.name for p in root.iterdir()) == []
