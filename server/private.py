"""Which of the index's projects are private: the one rule that ensure, build requests and
building on a miss all use.

A project on the index is *private* when some file of it there is not wheelyard's: no build
record names that file as its wheel, and no build of that name and version is still under
way (a queued or running build may have uploaded already and not yet said so). People
uploaded such a file, so the name is theirs: it is never mirrored or built from upstream,
whatever a requirement or a client's miss asks (a public project of the same name is
dependency confusion). One file people uploaded is enough, even beside wheels wheelyard
made: a failed build, or a build of another version, claims nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from builder.records import DONE, PREFIX, BuildStore, name_index

# The finished states in which a build put its wheel on the index.
_PUBLISHED = ("mirrored", "published")


@dataclass
class Claim:
    """What wheelyard's builds of one name account for on the index."""

    wheels: set[str] = field(default_factory=set)  # files its finished builds published
    under_way: set[str] = field(default_factory=set)  # versions a build not yet done may publish

    def owns(self, filename: str) -> bool:
        return filename in self.wheels or _version_of(filename) in self.under_way


def private_projects(store: BuildStore, projects: Iterable[str], files: Callable[[str], Iterable[str]]) -> set[str]:
    """Of ``projects`` (names the index holds), the private ones; ``files(name)`` lists a project's
    files on the index and is called only for names wheelyard has builds of."""
    wanted: list[str] = sorted({canonicalize_name(n) for n in projects})
    claims = claims_of(store, wanted)
    private: set[str] = set()
    for name in wanted:
        listed = list(files(name)) if name in claims else None
        if listed is None or any(not claims[name].owns(f) for f in listed):
            private.add(name)
    return private


def is_private(store: BuildStore, project: str, files: Iterable[str] | None) -> bool:
    """Whether ``project``, holding ``files`` on the index (None or empty: it is not there), is private."""
    listed = list(files or ())
    return bool(listed) and bool(private_projects(store, [project], lambda _: listed))


def claims_of(store: BuildStore, names: list[str]) -> dict[str, Claim]:
    """The names of ``names`` wheelyard has a build record of, with what those builds account for."""
    if not names:
        return {}
    pipe = store.redis.pipeline(transaction=False)
    for name in names:
        pipe.zrange(name_index(name), 0, -1)
    ids = [i.decode() if isinstance(i, bytes) else str(i) for id_list in pipe.execute() for i in id_list]
    claims: dict[str, Claim] = {}
    for raw in store.redis.mget([f"{PREFIX}build:{i}" for i in ids]) if ids else []:
        if not raw:
            continue
        record = json.loads(raw)
        status = record.get("status")
        claim = claims.setdefault(canonicalize_name(record["name"]), Claim())
        if status in _PUBLISHED and record.get("wheel"):
            claim.wheels.add(record["wheel"])
        elif status not in DONE:
            claim.under_way.add(normal_version(str(record.get("version", ""))))
    return claims


def _version_of(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def normal_version(version: str) -> str:
    """``version`` as packaging prints it (as it is, when it is not a valid version)."""
    try:
        return str(Version(version))
    except InvalidVersion:
        return version
