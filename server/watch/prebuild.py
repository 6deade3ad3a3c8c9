"""The old prebuild file, still read: ``REQUIREMENT TARGET[,TARGET...]`` per line, ``#`` comments.

Each line is submitted like a request (that release alone, not its closure), as before watch
lists existed; a bad line is reported and skipped. ``wheelyard beat`` says at start how to
convert the file to a watch file, which ensures the closures (docs/watch.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from builder.errors import InvalidPrebuildFile, WheelyardError
from server.service import BuildService

logger = logging.getLogger(__name__)

CONVERT_HINT = (
    "WHEELYARD_PREBUILD_FILE still works, but a watch file (WHEELYARD_WATCH_FILE) ensures whole closures: "
    'each line "REQ T1,T2" becomes [[watch]] projects = ["REQ"], targets = ["T1", "T2"] (docs/watch.md)'
)


@dataclass(frozen=True)
class PrebuildLine:
    number: int
    requirement: str
    targets: tuple[str, ...]


def read_prebuild_file(path: Path) -> list[PrebuildLine]:
    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2:
            raise InvalidPrebuildFile(path, number, raw.strip())
        lines.append(PrebuildLine(number, parts[0], tuple(t for t in parts[1].split(",") if t)))
    return lines


def submit_prebuilds(service: BuildService, path: Path) -> dict[str, int]:
    """Submit every line of the prebuild file; count what was created, already there, refused."""
    counts = {"created": 0, "existing": 0, "refused": 0}
    for line in read_prebuild_file(path):
        try:
            for submission in service.submit(line.requirement, line.targets):
                counts["created" if submission.created else "existing"] += 1
        except WheelyardError as exc:
            counts["refused"] += 1
            logger.warning("%s:%d: %s", path, line.number, exc.message)
    return counts
