"""``POST /api/ensure``: every wheel of what a team installs, for each target, on the index.

The body carries the sources as text (a requirements file, a pyproject.toml, a pylock.toml or a
uv.lock) or as requirement strings, and the targets. Without ``wait`` the answer comes once the
builds are asked for; with it, once they end or ``timeout`` passes. ``POST /api/ensure/builds``
tells where the builds of a report are, for a client that follows them itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from builder.config import Settings
from builder.errors import BuildNotFound, InvalidEnsureInput
from builder.records import BuildStore
from server.ensure.holdings import Holdings, read_auth
from server.ensure.inputs import (
    Sources,
    from_pylock,
    from_pyproject,
    from_requirements_text,
    from_strings,
    from_uv_lock,
)
from server.ensure.report import OUTCOMES
from server.ensure.resolve import Resolver
from server.ensure.run import Ensurer
from server.service import BuildService, shown_status

# A uv.lock with every file's hash runs to a few hundred KiB; the rest of the API keeps its 64 KiB.
# Each text is smaller than the body, so that a text too long is refused as such (422), not as a body.
ENSURE_MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TEXT_CHARS = 2 * 1024 * 1024
MAX_BUILDS_ASKED = 500  # ids of 64 characters at most: the body stays under the API's 64 KiB
MAX_WAIT_SECONDS = 3600.0

_Text = Annotated[str | None, Field(default=None, max_length=MAX_TEXT_CHARS)]
_Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=64)]


class EnsureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    targets: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1,
        max_length=32,
        examples=[["cp31{2,3}-manylinux_x86_64"]],
        description="build identifiers, or cibuildwheel-style patterns of them",
    )
    requirements: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=2000, examples=[["flask>=3", "numpy==2.2.6"]]
    )
    constraints: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=2000
    )
    requirements_txt: _Text = Field(default=None, description="the text of a requirements file (no -r/-c includes)")
    pyproject: _Text = Field(default=None, description="the text of a pyproject.toml")
    pylock: _Text = Field(default=None, description="the text of a PEP 751 pylock.toml")
    uv_lock: _Text = Field(default=None, description="the text of a uv.lock")
    extras: _Names = Field(default_factory=list, description="optional dependencies of the project or lock")
    groups: _Names | None = Field(default=None, description="dependency groups (PEP 735); default: the lock's")
    wait: bool = Field(default=False, description="answer when every build has ended (or timeout)")
    timeout: float = Field(default=600.0, ge=0, le=MAX_WAIT_SECONDS, description="seconds wait waits")
    retry: bool = Field(default=False, description="build again what failed before")


class BuildsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    builds: list[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]] = Field(
        max_length=MAX_BUILDS_ASKED
    )


class EnsureItem(BaseModel):
    """One wheel of the closures: a distribution for one wheel target."""

    name: str
    version: str
    target: str = Field(description="the wheel's target: a build identifier, or py3-none-any for a pure wheel")
    serves: list[str] = Field(description="the targets whose closure names this distribution")
    outcome: str = Field(description=f"one of: {', '.join(OUTCOMES)}")
    wheel: str | None
    build_id: str | None
    error: dict[str, Any] | None
    diagnosis: dict[str, Any] | None = Field(description="for a failed build: what broke and the fix")
    after: str | None = Field(description="built after this release's build for that target (its wheel may be pure)")


class EnsureReport(BaseModel):
    ok: bool = Field(description="every wheel of every target's closure is on the index")
    done: bool = Field(description="no build is still under way")
    targets: list[str]
    counts: dict[str, int] = Field(description=f"items by outcome: {', '.join(OUTCOMES)}")
    total: int
    private: list[str] = Field(description="private names the closures name, taken from the index")
    errors: list[dict[str, Any]] = Field(description="targets whose closure could not be found, with the error")
    closures: dict[str, list[str]] = Field(description="target -> the name==version of its closure")
    items: list[EnsureItem]
    elapsed: float


class BuildState(BaseModel):
    status: str
    wheel: str | None
    error: dict[str, Any] | None
    diagnosis: dict[str, Any] | None


class BuildStates(BaseModel):
    builds: dict[str, BuildState]


def sources_of(body: EnsureRequest) -> Sources:
    """Every source the body carries, merged."""
    sources = from_strings(body.requirements)
    if body.constraints:
        sources = sources.merged(Sources(constraints=tuple(from_strings(body.constraints).requirements)))
    if body.requirements_txt is not None:
        sources = sources.merged(from_requirements_text(body.requirements_txt))
    if body.pyproject is not None:
        sources = sources.merged(from_pyproject(body.pyproject, body.extras, body.groups or ()))
    if body.pylock is not None:
        sources = sources.merged(from_pylock(body.pylock, body.extras, body.groups or ()))
    if body.uv_lock is not None:
        sources = sources.merged(from_uv_lock(body.uv_lock, body.extras, body.groups))
    if body.extras and body.pyproject is None and body.pylock is None and body.uv_lock is None:
        raise InvalidEnsureInput("extras were named without a project or lock", "send pyproject, pylock or uv_lock too")
    return sources


def make_ensurer(settings: Settings, service: BuildService) -> Ensurer:
    """The ensure core as this deployment runs it: its upstream, its index, its build service."""
    auth = read_auth(settings)
    return Ensurer(
        service=service,
        resolver=Resolver(
            upstream_index=settings.upstream_index,
            cache_dir=settings.data_dir / "cache" / "uv",
            glibc_max=settings.manylinux_glibc_max,
            settings=settings,
        ),
        holdings=lambda: Holdings(settings.index_url, wheel_dir=settings.wheel_dir, auth=auth),
    )


def ensure_router(settings: Settings, service: BuildService) -> APIRouter:
    router = APIRouter()
    ensurer = make_ensurer(settings, service)
    store: BuildStore = service.store

    @router.post("/api/ensure", tags=["ensure"], response_model=EnsureReport)
    def ensure(body: EnsureRequest) -> dict[str, Any]:
        """Resolve each target's closure and ask for every wheel the index lacks."""
        report = ensurer.ensure(sources_of(body), body.targets, wait=body.wait, timeout=body.timeout, retry=body.retry)
        return report.to_dict()

    @router.post("/api/ensure/builds", tags=["ensure"], response_model=BuildStates)
    def builds(body: BuildsRequest) -> dict[str, Any]:
        """Where each build of a report is now: its status, wheel, error and diagnosis."""
        served = store.served_queues()
        out: dict[str, Any] = {}
        for build_id in body.builds:
            record = store.get(build_id)
            if record is None:
                raise BuildNotFound(build_id, "send the build_id of a report's items")
            out[build_id] = {
                "status": shown_status(record, served),
                "wheel": record.wheel,
                "error": record.error,
                "diagnosis": record.diagnosis,
            }
        return {"builds": out}

    return router
