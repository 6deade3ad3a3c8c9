"""Errors of the upstream index: a project, a file or the index itself not there as asked."""

from __future__ import annotations

from builder.errors.base import WheelyardError


class NotFoundUpstream(WheelyardError):
    """The upstream index has no project, version or file of that name."""

    reference = "not-found-upstream"
    status_code = 404
    form = "what the upstream index does not have"


class NoDistribution(NotFoundUpstream):
    """A release has neither an sdist nor a wheel for the target asked for, so nothing can give a wheel."""

    reference = "no-distribution"
    form = "{project} {version} has no sdist and no wheel for {target} upstream"
    hint = "choose a target upstream has a wheel for, or another version"

    def __init__(self, project: str, version: str, target: object) -> None:
        super().__init__(self.form.format(project=project, version=version, target=target))


class UpstreamUnavailable(WheelyardError):
    """The upstream index did not answer, or not as an index does; a build waiting on it is retried."""

    reference = "upstream-unavailable"
    status_code = 502
    form = "the upstream index did not answer: why"


class IntegrityError(WheelyardError):
    """A downloaded file does not match the hash the upstream index gave."""

    reference = "hash-mismatch"
    status_code = 502
    form = "the file downloaded does not have the hash the index lists"
