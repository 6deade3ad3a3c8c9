"""Errors of a build: what stops one, from the sdist to the wheel proved; each ends in a build record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from builder.errors.base import WheelyardError


class BuildFailed(WheelyardError):
    """The sdist did not build; the log and its diagnosis say why."""

    reference = "build-failed"
    status_code = 500
    form = "the build failed: what the build front end said"
    hint = "the diagnosis below names the cause"


class StepFailed(WheelyardError):
    """A step of the pipeline failed for a reason the build log shows."""

    reference = "build-step-failed"
    form = "what the step could not do"


class ProofFailed(StepFailed):
    """The wheel installed but some of its modules failed to import; each is named in the record."""

    reference = "proof-failed"
    form = "the wheel installed but importing {modules} failed"
    hint = "the build log shows each import error after `==> prove`"

    def __init__(self, failures: Sequence[dict[str, str]]) -> None:
        names = "; ".join(f"{f['module']} ({f['error'][:300]})" for f in failures)
        super().__init__(self.form.format(modules=names or "its modules"))
        self.failures = list(failures)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "imports": self.failures}


class HollowWheel(StepFailed):
    """A wheel tagged for a platform holds no compiled module: its extension did not compile."""

    reference = "hollow-wheel"
    form = "{what}: the extension did not compile and the build fell back to pure Python"
    hint = (
        "the diagnosis names the compile error (often a missing library or header): fix that; or set "
        "WHEELYARD_PUBLISH_HOLLOW_AS_PURE=true to publish such wheels as py3-none-any"
    )

    def __init__(self, what: str) -> None:
        super().__init__(self.form.format(what=what))


class UnsafeSdist(WheelyardError):
    """The sdist archive is not one wheelyard unpacks: unsafe members, too big, or malformed."""

    reference = "unsafe-sdist"
    status_code = 422
    form = "{archive}: what is unsafe or over a limit in it"
    hint = (
        "an sdist holds plain files and directories under one project directory; rebuild it with "
        "`python -m build --sdist`"
    )
    # Set when the archive is over one of the build's limits: the limit's cause and value.
    cause: str | None = None
    limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.cause is not None:
            out.update(cause=self.cause, limit=str(self.limit))
        return out


class BuildRequirementRefused(WheelyardError):
    """A build requirement is not a PEP 508 requirement (an option, a path, a file)."""

    reference = "build-requirement-refused"
    status_code = 422
    form = "{source}: the requirement and why it is refused"


class DirectUrlRefused(WheelyardError):
    """A build requirement names a URL to install from, and this deployment allows none."""

    reference = "direct-url-requirement-refused"
    status_code = 422
    form = "{source}: the requirement names a URL"


class CibuildwheelFailed(WheelyardError):
    """cibuildwheel ran and did not leave the one wheel it was asked for."""

    reference = "cibuildwheel-failed"
    form = "what cibuildwheel did or left"


class WheelRejected(WheelyardError):
    """A wheel failed the checks that run before it may be published."""

    reference = "wheel-rejected"
    status_code = 422
    form = "what in the wheel is wrong"


class InvalidWheelName(WheelRejected):
    """The build backend returned a name that is not a wheel's."""

    reference = "invalid-wheel-filename"
    form = "the build backend returned {name!r}, which is not a wheel: {why}"
    hint = "build_wheel returns the basename of the .whl file it wrote"

    def __init__(self, name: str, why: object) -> None:
        super().__init__(self.form.format(name=name, why=why))


class InternalError(WheelyardError):
    """Something no step expected: a bug in wheelyard or a problem of the worker's host, never the package's."""

    reference = "internal-error"
    status_code = 500
    form = "what failed, and where (the traceback is in the build log or the service's log)"


class TaskTimeLimit(WheelyardError):
    """A build ran past the Celery task's time limit (the steps around the sandboxed build included)."""

    reference = "task-time-limit"
    status_code = 500
    form = "the build ran longer than the worker allows ({seconds} s)"
    hint = "raise WHEELYARD_BUILD_TIMEOUT; the steps around the build get half of it again"

    def __init__(self, seconds: int) -> None:
        super().__init__(self.form.format(seconds=seconds))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "cause": "timeout"}


class WorkerLost(WheelyardError):
    """The worker that ran a build is gone, and the build was ended rather than run again."""

    reference = "worker-lost"
    status_code = 500
    form = "the worker {worker} was lost while it built this"
    hint = "a retry builds it again; see the worker's host for why it stopped"

    def __init__(self, worker: str | None) -> None:
        super().__init__(self.form.format(worker=worker))


class RemedyNotApplicable(WheelyardError):
    """The remedy a failed build's diagnosis named finds nothing to change in the sdist (docs/remedies.md)."""

    reference = "remedy-not-applicable"
    status_code = 422
    form = "the NAME remedy found nothing it changes in the sdist, and what it looked for"


class PatchRefused(WheelyardError):
    """A source patch of the per-package overrides that wheelyard does not apply to an sdist (docs/overrides.md)."""

    reference = "patch-refused"
    status_code = 422
    form = "the file of the patch and why it is refused (outside the tree, through a symlink, not a plain file)"
    hint = (
        "a patch is a unified diff of regular files inside the sdist (paths a/FILE and b/FILE relative to its top "
        "directory); see docs/overrides.md"
    )
