"""The nearest release that works: for a build that failed, the closest newer (and older) release
of the same project that has a wheel for the target upstream, or that wheelyard has built.

"Fitting" is what the build's own mirror step uses: ``Release.wheel_for`` (packaging's tags for
the build identifier, builder/targets.py, with the deployment's glibc bound, and the wheel's
``requires-python``). The versions with a fitting wheel upstream are read from the upstream
Simple API (PEP 691) and kept in Redis for ``nearest_release_ttl`` seconds per project and target;
the builds published here are read from the records each time (they change as builds finish).
A release wheelyard has built is named as ``built-here`` before one upstream has a wheel for: it is
on the index already. Pre-releases and yanked releases are never proposed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.records import PREFIX, BuildStore, name_index, status_index, target_index
from builder.targets import BuildTarget
from builder.upstream import DistFile, Release, SimpleIndex

logger = logging.getLogger(__name__)

UPSTREAM_WHEEL = "upstream-wheel"
BUILT_HERE = "built-here"


def fitting_versions(
    name: str, files: Iterable[DistFile], target: BuildTarget, glibc_max: tuple[int, int]
) -> list[Version]:
    """The final, not yanked releases among ``files`` that have a wheel for ``target``, ascending."""
    by_version: dict[Version, list[DistFile]] = {}
    for f in files:
        version = f.version()
        if version is not None and not version.is_prerelease and f.is_wheel and not f.yanked:
            by_version.setdefault(version, []).append(f)
    return sorted(
        v
        for v, fs in by_version.items()
        if Release(canonicalize_name(name), v, tuple(fs)).wheel_for(target, glibc_max=glibc_max) is not None
    )


def nearest(version: Version, upstream: Iterable[Version], built: Iterable[Version]) -> dict[str, Any] | None:
    """``{"newer": {"version", "source"} | None, "older": ...}`` around ``version``; None when neither exists."""
    sources = {v: UPSTREAM_WHEEL for v in upstream}
    sources.update({v: BUILT_HERE for v in built if not v.is_prerelease})
    newer = min((v for v in sources if v > version), default=None)
    older = max((v for v in sources if v < version), default=None)
    if newer is None and older is None:
        return None

    def said(v: Version | None) -> dict[str, str] | None:
        return None if v is None else {"version": str(v), "source": sources[v]}

    return {"newer": said(newer), "older": said(older)}


class NearestReleases:
    """Finds the nearest working releases of a failed build, with the upstream part cached in Redis."""

    def __init__(self, store: BuildStore, index: SimpleIndex, *, ttl: int, glibc_max: tuple[int, int]) -> None:
        self.store = store
        self.index = index
        self.ttl = ttl
        self.glibc_max = glibc_max

    def for_build(self, name: str, version: str, target: str) -> dict[str, Any] | None:
        parsed = BuildTarget.parse(target)
        return nearest(Version(version), self.upstream_versions(name, parsed), self.built_versions(name, target))

    def cache_key(self, name: str, target: BuildTarget) -> str:
        return f"{PREFIX}nearest:{canonicalize_name(name)}:{target.identifier}"

    def upstream_versions(self, name: str, target: BuildTarget) -> list[Version]:
        """The versions with a fitting wheel upstream: from the cache, or the Simple API (then cached)."""
        key = self.cache_key(name, target)
        cached = self.store.redis.get(key)
        if cached is not None:
            return [Version(v) for v in json.loads(cached)]
        versions = fitting_versions(name, self.index.project_files(name), target, self.glibc_max)
        self.store.redis.set(key, json.dumps([str(v) for v in versions]), ex=self.ttl)
        return versions

    def built_versions(self, name: str, target: str) -> list[Version]:
        """The versions of ``name`` published here for ``target``."""
        clauses = [[name_index(name)], [target_index(target)], [status_index("published")]]
        records, _ = self.store.find(clauses, limit=1000)
        out = []
        for record in records:
            try:
                out.append(Version(record.version))
            except InvalidVersion:
                continue
        return out


def describe(found: dict[str, Any] | None, target: str) -> str:
    """One line for a log or a terminal: ``newer 2.4.0 (upstream wheel), older 2.3.9 (built here)``."""
    if not found:
        return f"no other release has a wheel for {target} upstream or here"
    parts = [
        f"{side} {found[side]['version']} ({found[side]['source'].replace('-', ' ')})"
        for side in ("newer", "older")
        if found.get(side)
    ]
    return f"nearest releases that work for {target}: " + ", ".join(parts)
