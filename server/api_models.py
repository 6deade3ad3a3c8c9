"""The API's request and answer bodies, as the OpenAPI spec shows them."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from builder.records import STATUSES
from builder.targets import known_identifiers


def _identifier_pattern() -> str:
    """The build identifiers ``BuildTarget.parse`` accepts (cibuildwheel's list), and cibuildwheel's
    selector patterns, as a regular expression for the spec (the service checks what a pattern matches)."""
    identifiers = "|".join(re.escape(i) for i in sorted(known_identifiers()))
    selector = r"[a-z0-9_*?\[\]{},!-]*[*?\[{][a-z0-9_*?\[\]{},!-]*"
    return rf"^\s*(py3-none-any|{identifiers}|{selector})\s*$"


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    requirement: str = Field(
        min_length=1,
        max_length=512,
        examples=["markupsafe==3.0.2"],
        description="a PEP 508 requirement naming one project on the upstream index, without a URL",
    )
    # The service checks identifiers (to refuse them as "invalid-build-identifier"); the spec shows the pattern.
    targets: list[
        Annotated[str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": _identifier_pattern()})]
    ] = Field(min_length=1, max_length=32, examples=[["cp312-manylinux_x86_64"]])
    from_source: bool | None = Field(default=None, description="build from the sdist even where upstream has a wheel")
    retry: bool = Field(default=False, description="build again a target whose last build failed")


class ErrorBody(BaseModel):
    error: str = Field(description="a stable reference for the kind of refusal")
    message: str = Field(description="what was wrong")
    hint: str | None = Field(description="how to fix it")


class BuildView(BaseModel):
    """A build as the API shows it (``server.service.present``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    version: str
    target: str
    requirement: str
    from_source: bool
    status: str = Field(description=f"one of: {', '.join(STATUSES)}", examples=["published"])
    step: str | None
    queue: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration: float | None = Field(description="seconds since the build started, or that it took")
    worker: str | None
    runs: int = Field(description="how many times a worker started the build (a lost worker's build runs again)")
    attempts: list[dict[str, Any]] = Field(
        description='each attempt: {"number", "remedy" (name or null), "status", "diagnosis" (primary category or '
        'null), "log" (its name), "log_url"}'
    )
    remedy: str | None = Field(description="the remedy that made the published wheel, or null")
    wheel: str | None
    sha256: str | None
    source: str | None = Field(description="the sdist built, or the upstream wheel mirrored")
    error: dict[str, Any] | None
    diagnosis: dict[str, Any] | None = Field(description="for a failed build: what broke (diagnosis.primary)")
    timings: dict[str, float]
    missing_capability: str | None = Field(
        default=None, description="waiting-for-capability: what no live worker has, e.g. tool:fortran"
    )
    required_capabilities: list[str] = Field(
        default_factory=list, description="the capabilities the build was routed for; its worker has them all"
    )
    nearest_release: dict[str, Any] | None = Field(
        default=None,
        description='a failed build: {"newer": {"version", "source": "upstream-wheel"|"built-here"}, "older": ...}',
    )
    log_url: str


class SubmittedBuild(BuildView):
    created: bool = Field(description="false when the request shares a build that existed already")


class Submitted(BaseModel):
    builds: list[SubmittedBuild]


class BuildList(BaseModel):
    builds: list[BuildView]
    total: int = Field(description="how many builds exist, whatever the filters")
    next: str | None = Field(
        default=None,
        description="pass as ``cursor`` for the page after this one; null when there is no more",
    )


class StatusCounts(BaseModel):
    """Builds by status, as the API shows each one's ``status``."""

    model_config = ConfigDict(populate_by_name=True)

    queued: int = Field(description="queued for a queue some live worker serves")
    waiting_for_worker: int = Field(
        alias="waiting-for-worker", description="queued for a queue no live worker serves (yet)"
    )
    waiting_for_capability: int = Field(
        alias="waiting-for-capability",
        description="failed for a capability (missing_capability) that no live worker has; runs when one joins",
    )
    building: int
    published: int
    mirrored: int
    failed: int


class BuildSummary(BaseModel):
    total: int = Field(description="how many builds exist: the sum of the counts")
    counts: StatusCounts


class WorkerList(BaseModel):
    workers: dict[str, dict[str, Any]] = Field(description="live workers by name: their queues, targets, capabilities")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    checks: dict[str, str]


# A listing's cursor (``Position.token``): created_at (a float as repr writes it) and a build id.
CURSOR_PATTERN = r"^-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?:[A-Za-z0-9_-]{1,64}$"


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}
