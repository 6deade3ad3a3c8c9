"""The user-facing error type and the precise failures the pipeline raises.

Every error a person can see has a stable ``reference`` (never renamed once shipped),
a sentence that says what happened, and a hint that says what to do. The CLI and the
API each render them in one place.
"""

from __future__ import annotations


class WheelyardError(Exception):
    """An error meant for a person: reference, what happened, and a hint."""

    reference = "wheelyard-error"
    status_code = 400

    def __init__(self, message: str, hint: str | None = None, *, reference: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if reference is not None:
            self.reference = reference

    def with_status(self, status_code: int) -> WheelyardError:
        self.status_code = status_code
        return self

    def to_dict(self) -> dict[str, str | None]:
        return {"error": self.reference, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class InvalidTarget(WheelyardError):
    reference = "invalid-build-identifier"
    status_code = 422


class InvalidRequirement(WheelyardError):
    reference = "invalid-requirement"
    status_code = 422


class NotFoundUpstream(WheelyardError):
    reference = "not-found-upstream"
    status_code = 404


class UpstreamUnavailable(WheelyardError):
    reference = "upstream-unavailable"
    status_code = 502


class IntegrityError(WheelyardError):
    """A downloaded file does not match the hash the upstream index gave."""

    reference = "hash-mismatch"
    status_code = 502


class WheelRejected(WheelyardError):
    """A wheel failed the checks that run before it may be published."""

    reference = "wheel-rejected"
    status_code = 422


class AlreadyPublished(WheelyardError):
    """The filename is on the index already; files there are never replaced."""

    reference = "already-published"
    status_code = 409


class BuildFailed(WheelyardError):
    """The sdist did not build; the log and its diagnosis say why."""

    reference = "build-failed"
    status_code = 500


class ConfigurationError(WheelyardError):
    reference = "invalid-configuration"
    status_code = 500
