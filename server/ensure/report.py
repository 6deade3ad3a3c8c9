"""The outcome of an ensure: one item per (distribution, wheel target), counts, and what failed.

Outcomes: ``present`` (on the index before this run), ``private`` (a private upload serves it),
the statuses of wheelyard's builds (``queued``, ``waiting-for-worker``, ``waiting-for-capability``, ``building``,
``mirrored``, ``published``) and ``failed``. A pure-Python distribution is one item for
``py3-none-any`` that serves every target whose closure names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ON_INDEX = ("present", "private", "mirrored", "published")
# A build waiting for a capability runs when a worker that has it joins (builder/routing.py).
PENDING = ("queued", "waiting-for-worker", "waiting-for-capability", "building")
OUTCOMES = (
    "present",
    "private",
    "mirrored",
    "published",
    "building",
    "queued",
    "waiting-for-worker",
    "waiting-for-capability",
    "failed",
)


@dataclass
class Item:
    name: str
    version: str
    target: str  # the wheel's target: a build identifier, or py3-none-any for a pure wheel
    serves: list[str]  # the ensure targets whose closure names this distribution
    outcome: str
    wheel: str | None = None
    build_id: str | None = None
    error: dict[str, Any] | None = None
    diagnosis: dict[str, Any] | None = None
    # Built from its sdist after the build of this same release for ``after``: if that build's
    # wheel is pure Python it serves this target too, and nothing is built twice.
    after: str | None = None
    missing_capability: str | None = None  # waiting-for-capability: what no live worker has

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.target)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "target": self.target,
            "serves": self.serves,
            "outcome": self.outcome,
            "wheel": self.wheel,
            "build_id": self.build_id,
            "error": self.error,
            "diagnosis": self.diagnosis,
            "after": self.after,
            "missing_capability": self.missing_capability,
        }


@dataclass
class Report:
    targets: list[str]
    items: list[Item] = field(default_factory=list)
    # A target whose closure could not be found: {target, error, message, hint}.
    errors: list[dict[str, Any]] = field(default_factory=list)
    private: list[str] = field(default_factory=list)  # private names the closures name
    closures: dict[str, list[str]] = field(default_factory=dict)  # target -> name==version
    elapsed: float = 0.0

    @property
    def done(self) -> bool:
        return not any(i.outcome in PENDING for i in self.items)

    @property
    def ok(self) -> bool:
        return not self.errors and all(i.outcome in ON_INDEX for i in self.items)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for item in self.items:
            counts[item.outcome] = counts.get(item.outcome, 0) + 1
        return counts

    def failures(self) -> list[Item]:
        return [i for i in self.items if i.outcome == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "done": self.done,
            "targets": self.targets,
            "counts": self.counts(),
            "total": len(self.items),
            "private": self.private,
            "errors": self.errors,
            "closures": self.closures,
            "items": [i.to_dict() for i in self.items],
            "elapsed": round(self.elapsed, 3),
        }


def progress_line(report: dict[str, Any]) -> str:
    """One line of counts, as a terminal and a CI log show it."""
    counts = report["counts"]
    parts = [
        f"{counts['present'] + counts['private']} present",
        f"{counts['mirrored']} mirrored",
        f"{counts['published']} built",
        f"{counts['building']} building",
        f"{counts['queued']} queued",
        f"{counts['waiting-for-worker']} waiting for a worker",
        f"{counts['waiting-for-capability']} waiting for a capability",
        f"{counts['failed']} failed",
    ]
    return f"{report['total']} wheels: " + ", ".join(parts)


def failure_text(item: dict[str, Any]) -> str:
    """What failed, its diagnosis and what would fix it, for a person."""
    error = item.get("error") or {}
    lines = [f"FAILED {item['name']}=={item['version']} for {item['target']}"]
    lines.append(f"  error: {error.get('message') or 'the build failed'} [{error.get('error') or 'build-failed'}]")
    primary = (item.get("diagnosis") or {}).get("primary") or {}
    if primary:
        lines.append(f"  cause: {primary.get('category')} ({primary.get('rule')}): {primary.get('explanation') or ''}")
        if primary.get("text"):
            lines.append(f"  line {primary.get('line')}: {str(primary['text']).strip()}")
        for remedy in primary.get("remedies") or []:
            lines.append(f"  fix ({remedy.get('platform')}): {remedy.get('text')}")
    if error.get("hint"):
        lines.append(f"  hint: {error['hint']}")
    if item.get("build_id"):
        lines.append(f"  build: {item['build_id']}")
    return "\n".join(lines)
