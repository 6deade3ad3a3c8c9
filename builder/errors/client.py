"""Errors of what a person or client sends: requests to the API, requirements, targets, input files."""

from __future__ import annotations

from builder.errors.base import WheelyardError


class InvalidTarget(WheelyardError):
    """A build identifier or selector that names no target cibuildwheel knows."""

    reference = "invalid-build-identifier"
    status_code = 422
    form = "the identifier and what is wrong with it"


class InvalidRequirement(WheelyardError):
    """A requirement that is not one PEP 508 requirement of a project on the upstream index."""

    reference = "invalid-requirement"
    status_code = 422
    form = "the requirement and what is wrong with it"


class InvalidRequest(WheelyardError):
    """A request the API could not read, or whose fields are not valid."""

    reference = "invalid-request"
    status_code = 422
    form = "each field that is wrong and why (or: the body is not valid JSON)"


class RequestTooLarge(WheelyardError):
    """A request body larger than the API reads."""

    reference = "request-too-large"
    status_code = 413
    form = "the request body is larger than {limit} bytes"
    hint = 'send one requirement and its targets, e.g. {"requirement": "markupsafe==3.0.2", "targets": [...]}'

    def __init__(self, limit: int) -> None:
        super().__init__(self.form.format(limit=limit))


class NotFound(WheelyardError):
    """A path the API does not have."""

    reference = "not-found"
    status_code = 404
    form = "Not Found"


class MethodNotAllowed(WheelyardError):
    """A path the API has, asked with a method it does not answer."""

    reference = "method-not-allowed"
    status_code = 405
    form = "Method Not Allowed"


class HttpError(WheelyardError):
    """Any other HTTP refusal (its status is the answer's)."""

    reference = "http-error"
    form = "the HTTP status's phrase"


class Unauthorized(WheelyardError):
    """A request that needs the API's token came without it, or with another."""

    reference = "unauthorized"
    status_code = 401
    form = "this API needs a token to accept build requests"
    hint = "send 'Authorization: Bearer <token>' (wheelyard request reads WHEELYARD_API_TOKEN)"

    def __init__(self, message: str = form) -> None:
        super().__init__(message)


class InvalidFilter(WheelyardError):
    """A listing asked for with a filter value it does not know."""

    reference = "invalid-filter"
    form = "unknown status {status!r}"
    hint = "one of: {known}"

    def __init__(self, status: str, known: tuple[str, ...]) -> None:
        super().__init__(self.form.format(status=status), self.hint.format(known=", ".join(known)))


class InvalidCursor(WheelyardError):
    """A listing's cursor that is not one the listing gave."""

    reference = "invalid-cursor"
    form = "{cursor!r} is not a cursor of this listing"
    hint = "pass the 'next' of the previous page as it was, or leave cursor out for the newest builds"

    def __init__(self, cursor: str) -> None:
        super().__init__(self.form.format(cursor=cursor))


class AttemptNotFound(WheelyardError):
    """A build's log asked for by an attempt number the build does not have."""

    reference = "attempt-not-found"
    status_code = 404
    form = "build {build_id} has {count} attempts; there is no attempt {number}"
    hint = "the build's record lists its attempts, each with its log_url"

    def __init__(self, build_id: str, count: int, number: int) -> None:
        super().__init__(self.form.format(build_id=build_id, count=count, number=number))


class BuildNotFound(WheelyardError):
    """A build id that names no build."""

    reference = "build-not-found"
    status_code = 404
    form = "there is no build {build_id!r}"
    hint = "list builds with GET /api/builds"

    def __init__(self, build_id: str, hint: str | None = None) -> None:
        super().__init__(self.form.format(build_id=build_id), hint)


class PrivateName(WheelyardError):
    """A build asked for a project people uploaded to the index: a private name is never taken from upstream."""

    reference = "private-name"
    status_code = 409
    form = (
        "{project} is a private project: people uploaded it to the index, and a private name is never mirrored "
        "or built from upstream (a public project of that name is not yours)"
    )
    hint = "install it from the index as it is, or upload its wheels for the targets you need"

    def __init__(self, project: str) -> None:
        super().__init__(self.form.format(project=project))


class PrivateProjectWithoutWheel(WheelyardError):
    """A closure pins a private project at a version, or for a target, the index has no wheel of."""

    reference = "private-project-without-wheel"
    status_code = 409
    form = (
        "{project} is a private project on the index, which has no wheel of {version} for {target}; "
        "it is never mirrored or built from upstream under that name"
    )
    hint = "upload a wheel of {project} {version} for {target} to the index, or pin a version it has"

    def __init__(self, project: str, version: str, target: str) -> None:
        names = {"project": project, "version": version, "target": target}
        super().__init__(self.form.format(**names), self.hint.format(**names))


class InvalidEnsureInput(WheelyardError):
    """A requirements file, lock or pyproject.toml that cannot be read as one."""

    reference = "invalid-ensure-input"
    status_code = 422
    form = "{file}: what cannot be read, and where"


class ResolutionFailed(WheelyardError):
    """The resolver found no set of releases that satisfies the requirements on a target."""

    reference = "resolution-failed"
    status_code = 422
    form = "the target and what the resolver said"


class InvalidWatchFile(WheelyardError):
    """A watch list file that cannot be read as one (docs/watch.md)."""

    reference = "invalid-watch-file"
    status_code = 422
    form = "{file}: what is wrong, and where"


class WatchFileUnreadable(WheelyardError):
    """A watch list file that could not be read at all when a watch ran."""

    reference = "watch-file-unreadable"
    form = "why the file could not be read"


class InvalidPrebuildFile(WheelyardError):
    """A line of the prebuild file that is not a requirement and its targets."""

    reference = "invalid-prebuild-file"
    form = "{file}:{line}: expected 'REQUIREMENT TARGET[,TARGET...]', got {text!r}"
    hint = "for example: markupsafe==3.0.2 cp312-manylinux_x86_64,cp313-manylinux_x86_64"

    def __init__(self, file: object, line: int, text: str) -> None:
        super().__init__(self.form.format(file=file, line=line, text=text))
