"""What the build director is given (a ``BuildJob``) and what it returns (a ``BuildOutcome``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import WheelyardError
from builder.targets import BuildTarget


@dataclass(frozen=True)
class BuildJob:
    build_id: str
    name: str
    version: str
    target: BuildTarget
    from_source: bool = False
    remedy: str | None = None  # the remedy this attempt builds with (builder/remedies.py)


def _unchanged(text: str) -> str:
    return text


@dataclass
class BuildOutcome:
    status: str  # published, mirrored, failed
    wheel: str | None = None
    sha256: str | None = None
    source: str | None = None
    # The exception that ended a failed build, as raised: retries are decided on its class, and
    # it becomes the record's ``error`` only when the record is written (``error_fields``).
    error: WheelyardError | None = None
    timings: dict[str, float] = field(default_factory=dict)
    log_path: Path | None = None
    # How the worker's secrets are written in the record (the build log's redactor).
    redact: Callable[[str], str] = field(default=_unchanged, repr=False)

    def error_fields(self) -> dict[str, Any] | None:
        """The record's ``error``: the exception's fields, the worker's secrets redacted."""
        if self.error is None:
            return None
        return {k: self.redact(v) if isinstance(v, str) else v for k, v in self.error.to_dict().items()}
