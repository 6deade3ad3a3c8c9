"""What a diagnosis says: causes with their remedies, and the diagnosis of a whole log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Remedy:
    """How to fix a cause on one platform (``rust`` and ``any`` apply everywhere)."""

    platform: str
    text: str


@dataclass(frozen=True)
class Cause:
    """One recognised failure in the log."""

    category: str
    rule: str
    line: int  # 1-based line number in the input; 0 when there is no such line
    text: str  # the line itself
    detail: str
    explanation: str
    excerpt: str  # a few lines around ``line``, as they were
    excerpt_start: int  # line number of the excerpt's first line
    remedies: tuple[Remedy, ...]  # the diagnosis platform's remedy first
    capability: str
    priority: int
    groups: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "rule": self.rule,
            "line": self.line,
            "text": self.text,
            "detail": self.detail,
            "explanation": self.explanation,
            "excerpt": self.excerpt,
            "excerpt_start": self.excerpt_start,
            "remedies": [{"platform": r.platform, "text": r.text} for r in self.remedies],
            "capability": self.capability,
            "priority": self.priority,
            "groups": dict(self.groups),
        }


@dataclass(frozen=True)
class Diagnosis:
    """What broke: the primary cause, all causes in order, and context from the log."""

    primary: Cause
    causes: tuple[Cause, ...]
    package: str | None
    version: str | None
    platform: str  # debian | fedora | alpine | macos | windows
    platform_source: str  # log | host | option
    os: str  # linux | macos | windows | unknown
    python: str | None  # "3.12", when the log shows it
    advice: tuple[str, ...]
    lines: int
    ruleset_version: str
    failed: bool = True  # False: the log ends in a successful build or install
    notes: tuple[Cause, ...] = ()  # failures that did not stop it (a skipped optional extension)

    @property
    def diagnosed(self) -> bool:
        """A cause was found (or the log shows that nothing failed)."""
        return self.primary.category != "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "ruleset_version": self.ruleset_version,
            "diagnosed": self.diagnosed,
            "primary": self.primary.to_dict(),
            "causes": [c.to_dict() for c in self.causes],
            "package": self.package,
            "version": self.version,
            "platform": self.platform,
            "platform_source": self.platform_source,
            "os": self.os,
            "python": self.python,
            "advice": list(self.advice),
            "lines": self.lines,
            "failed": self.failed,
            "notes": [c.to_dict() for c in self.notes],
        }
