"""Source patches of per-package overrides: unified diffs checked before they touch the sdist.

A patch is the operator's, but the tree it is applied to is a stranger's: the sdist's author may
have planted a symlink where the patch writes (``setup.py -> ~/.ssh/authorized_keys``), or a name
that climbs out of the tree. Before anything is applied every file the patch names is checked:
a relative path (``a/``/``b/`` prefixes, as ``diff -ru`` and ``git diff`` write them), no ``..``,
no absolute path, no NUL or backslash; every existing component inside the tree a real directory
and the file a regular one, never a symlink. A patch that renames, copies, changes modes or is
binary is refused: a source fix needs none of that. GNU patch then applies it in the build
sandbox, first as a dry run (a hunk that does not apply fails the build before it starts).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder.errors import PatchRefused

__all__ = ["PatchRefused", "PatchedFile", "check_patch", "patch_command", "patched_files"]

_REFUSED_HEADERS = (
    "rename from",
    "rename to",
    "copy from",
    "copy to",
    "old mode",
    "new mode",
    "deleted file mode 12",
    "new file mode 12",
    "similarity index",
    "GIT binary patch",
    "Binary files",
)
_HINT = (
    "a patch is a unified diff of regular files inside the sdist (paths a/FILE and b/FILE relative to its top "
    "directory); see docs/overrides.md"
)


@dataclass(frozen=True)
class PatchedFile:
    path: str  # relative to the sdist's top directory
    created: bool  # the patch creates it (its old side is /dev/null)


def _header_path(line: str) -> str | None:
    """The path of a ``---``/``+++`` line, without its ``a/``/``b/`` prefix; None for /dev/null."""
    name = line[4:].split("\t", 1)[0].strip()
    if name.startswith('"') or "\\" in name or "\0" in name:
        raise PatchRefused(f"the patch names {name!r}: quoted or escaped file names are refused", _HINT)
    if name == "/dev/null":
        return None
    parts = PurePosixPath(name).parts
    if len(parts) < 2 or name.startswith("/"):
        raise PatchRefused(f"the patch names {name!r}, not a/PATH or b/PATH", _HINT)
    rest = PurePosixPath(*parts[1:])
    if any(p in ("..", ".", "") for p in rest.parts):
        raise PatchRefused(f"the patch names {name!r}, a path with '..' or '.'", _HINT)
    return str(rest)


def patched_files(text: str) -> list[PatchedFile]:
    """The files a unified diff changes; PatchRefused for what no source fix needs."""
    files: list[PatchedFile] = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith(_REFUSED_HEADERS):
            raise PatchRefused(f"line {number + 1} of the patch: {line.strip()!r} is refused", _HINT)
        if not line.startswith("--- ") or number + 1 >= len(lines) or not lines[number + 1].startswith("+++ "):
            continue
        old, new = _header_path(line), _header_path(lines[number + 1])
        if new is None:
            raise PatchRefused(f"line {number + 2} of the patch deletes {old!r}: a patch may not delete files", _HINT)
        if old is not None and old != new:
            raise PatchRefused(f"line {number + 1} of the patch moves {old!r} to {new!r}", _HINT)
        files.append(PatchedFile(new, created=old is None))
    if not files:
        raise PatchRefused("the patch changes no file: it is not a unified diff", _HINT)
    return files


def check_patch(text: str, srcdir: Path) -> list[PatchedFile]:
    """The files of the patch, checked against the unpacked sdist: no symlink on the way, a
    regular file to change, no file where one is to be created."""
    files = patched_files(text)
    for patched in files:
        where = srcdir
        parts = PurePosixPath(patched.path).parts
        for index, part in enumerate(parts):
            where = where / part
            try:
                mode = os.lstat(where).st_mode
            except FileNotFoundError:
                if not patched.created:
                    raise PatchRefused(
                        f"the patch changes {patched.path!r}, which the sdist does not have", _HINT
                    ) from None
                break
            last = index == len(parts) - 1
            if stat.S_ISLNK(mode):
                link = "/".join(parts[: index + 1])
                raise PatchRefused(
                    f"the patch writes {patched.path!r} through the symlink {link!r} of the sdist",
                    "a patch never follows a link the sdist planted; change the file it points at instead",
                )
            if last and patched.created:
                raise PatchRefused(f"the patch creates {patched.path!r}, which the sdist has already", _HINT)
            if (last and not stat.S_ISREG(mode)) or (not last and not stat.S_ISDIR(mode)):
                raise PatchRefused(f"the patch changes {patched.path!r}, which is not a regular file", _HINT)
    return files


def patch_command(patch_file: Path, srcdir: Path, *, dry_run: bool) -> list[str]:
    """GNU patch applying ``patch_file`` to ``srcdir``: -p1, no backups or reject files, never
    interactive, refusing a patch that was applied already."""
    cmd = ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "--reject-file=-"]
    cmd += ["--directory", str(srcdir), "--input", str(patch_file)]
    return [*cmd, "--dry-run"] if dry_run else cmd
