"""Work directories of builds: made under a lease, removed whatever a build left in them.

A build's work directory holds what a stranger's code wrote: trees 1,200 levels deep, 300,000
files, directories without permissions. ``shutil.rmtree`` recurses in Python (RecursionError
on a deep tree, and paths past PATH_MAX fail), so removal is ``rm -rf --one-file-system``
(coreutils walks with directory fds, at any depth, and never crosses into another mount).

Each work directory ``build-XXXX`` has a lease, the file ``build-XXXX.lock`` beside it (not
inside: the build can write its work directory), on which the worker process running the
build holds an exclusive ``flock`` for as long as it runs. The kernel drops the lock when that
process dies, however it dies (kill -9 included), so a work directory whose lease can be
taken belongs to no one alive: ``sweep`` removes it at the next start of a worker or build.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.descriptors import DescriptorOwner
from builder.tools import SYSTEM_PATH

__all__ = ["TreeUsage", "WorkDirectory", "chown_tree", "remove_tree", "sweep", "tree_usage"]

logger = logging.getLogger(__name__)

_PREFIX = "build-"
_LEASE = ".lock"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Directories held open at once by a walk: one per ancestor that still has subdirectories to
# visit (a plain chain, however deep, needs one). No real build comes near it.
MAX_OPEN_DIRECTORIES = 512


@dataclass(frozen=True)
class TreeUsage:
    """What a tree uses: bytes allocated (du-style, hard links once) and inodes (files,
    directories and links, hard links once). ``complete`` is false when the tree was too
    bushy and deep to walk within ``MAX_OPEN_DIRECTORIES``: it is then at least this big."""

    bytes: int
    inodes: int
    complete: bool = True


def _walk(root: Path, visit: Callable[[int, os.DirEntry[str], os.stat_result], None]) -> bool:
    """Call ``visit(dir_fd, entry, stat)`` for everything under ``root`` (not ``root`` itself),
    symlinks not followed; whether the walk was complete.

    Iterative, and every directory is opened relative to its parent's fd: no recursion in
    Python, no path longer than a name, so depth does not matter. A parent's fd is closed as
    soon as its last subdirectory is entered, so a chain of any depth holds one.
    """
    try:
        top = os.open(root, _DIR_FLAGS)
    except OSError:
        return True
    stack: list[tuple[int, list[str]]] = [(top, _list(top, visit))]
    complete = True
    while stack:
        fd, pending = stack[-1]
        if not pending:
            os.close(fd)
            stack.pop()
            continue
        name = pending.pop()
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            continue  # gone meanwhile, or replaced by a non-directory
        if not pending:
            os.close(fd)
            stack.pop()
        if len(stack) >= MAX_OPEN_DIRECTORIES:
            os.close(child)
            complete = False
            continue
        stack.append((child, _list(child, visit)))
    return complete


def _list(fd: int, visit: Callable[[int, os.DirEntry[str], os.stat_result], None]) -> list[str]:
    """Visit a directory's entries; the names of its subdirectories."""
    subdirs: list[str] = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                visit(fd, entry, st)
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(entry.name)
    except OSError:
        pass
    return subdirs


def tree_usage(root: Path) -> TreeUsage:
    """Bytes and inodes under ``root`` (see :class:`TreeUsage`)."""
    seen: set[tuple[int, int]] = set()
    totals = [0, 0]

    def count(fd: int, entry: os.DirEntry[str], st: os.stat_result) -> None:
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                return
            seen.add(key)
        totals[0] += st.st_blocks * 512
        totals[1] += 1

    complete = _walk(root, count)
    return TreeUsage(totals[0], totals[1], complete)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything under it to ``uid``:``gid`` (links themselves, not their
    targets), at any depth."""
    try:
        os.lchown(root, uid, gid)
    except FileNotFoundError:
        return

    def give(fd: int, entry: os.DirEntry[str], st: os.stat_result) -> None:
        if st.st_uid != uid or st.st_gid != gid:
            with contextlib.suppress(OSError):
                os.chown(entry.name, uid, gid, dir_fd=fd, follow_symlinks=False)

    _walk(root, give)


def remove_tree(path: Path, timeout: float = 600) -> bool:
    """Remove ``path`` and everything under it, at any depth; whether it is gone.

    Never recurses in Python. Directories a build left without write or search permission
    (which stop a non-root remover) are opened up first, also by a coreutils tool.
    """
    if not os.path.lexists(path):
        return True
    rm = shutil.which("rm", path=SYSTEM_PATH) or "rm"
    chmod = shutil.which("chmod", path=SYSTEM_PATH) or "chmod"
    for attempt in ([rm, "-rf", "--one-file-system", "--", str(path)], None):
        if attempt is None:
            _run([chmod, "-R", "u+rwX", "--", str(path)], timeout)
            attempt = [rm, "-rf", "--one-file-system", "--", str(path)]
        _run(attempt, timeout)
        if not os.path.lexists(path):
            return True
    logger.warning("could not remove %s", path)
    return False


def _run(argv: list[str], timeout: float) -> None:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            env={"PATH": SYSTEM_PATH, "LANG": "C"},
        )


class WorkDirectory(DescriptorOwner):
    """A fresh work directory under ``root``, leased to this process (``_fd`` holds the lease's
    lock) until ``close()``."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # The lease is locked under a temporary name, then renamed: a sweep never sees an
        # unlocked lease of a live build.
        fd, temp = tempfile.mkstemp(prefix=".lease-", dir=root)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=root))
            self.lease = self.path.with_name(self.path.name + _LEASE)
            os.rename(temp, self.lease)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        self._fd = fd

    def _release(self) -> None:
        """Remove the directory, then give up the lease (closing ``_fd`` unlocks it)."""
        remove_tree(self.path)
        with contextlib.suppress(OSError):
            os.unlink(self.lease)


def sweep(root: Path) -> list[Path]:
    """Remove the work directories under ``root`` whose process is gone (their lease can be
    taken); return those removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for lease in sorted(root.glob(f"{_PREFIX}*{_LEASE}")):
        try:
            fd = os.open(lease, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live build holds it
            directory = lease.with_name(lease.name[: -len(_LEASE)])
            if remove_tree(directory):
                removed.append(directory)
                with contextlib.suppress(OSError):
                    os.unlink(lease)
        finally:
            os.close(fd)
    # Leases a process died holding before it could rename them.
    for temp in root.glob(".lease-*"):
        with contextlib.suppress(OSError):
            fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(temp)
            finally:
                os.close(fd)
    return removed
