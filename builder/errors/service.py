"""Errors of running the service: its configuration, its parts starting, and reaching them."""

from __future__ import annotations

from typing import Any

from builder.errors.base import WheelyardError, catalogue


class ConfigurationError(WheelyardError):
    """A setting (file, variable or option) that is not valid, or a combination that cannot work."""

    reference = "invalid-configuration"
    status_code = 500
    form = "the setting, what is wrong with it, and where it was read"


class OverridesInvalid(ConfigurationError):
    """The per-package overrides (WHEELYARD_OVERRIDES) are not valid; the worker refuses to start."""

    reference = "invalid-overrides"
    form = "{file}#{entry}: the key and what is wrong with it (an unknown key with the closest valid one)"
    hint = "docs/overrides.md describes the format, with examples"


class RemedySetError(WheelyardError):
    """The remedies (builder/diagnosis/remedies.toml) are not valid, or a rule names one that does not exist."""

    reference = "invalid-remedies"
    status_code = 500
    form = "remedies.toml: the remedy, the field and what is wrong with it"
    hint = "docs/remedies.md describes every field"


class RedisUnavailable(WheelyardError):
    """Redis (the build queue and records) could not be reached, or the embedded one started."""

    reference = "redis-unavailable"
    status_code = 500
    form = "what could not reach or start Redis, and why"


class SandboxUnavailable(WheelyardError):
    """A worker that must sandbox builds is on a host where bubblewrap cannot run; it refuses to start."""

    reference = "sandbox-unavailable"
    status_code = 500
    form = "the build sandbox (bubblewrap) cannot run on this host"
    hint = (
        "install bubblewrap (apt-get install bubblewrap) and allow user namespaces, or set "
        "WHEELYARD_SANDBOX=false where the host itself is the sandbox"
    )

    def __init__(self) -> None:
        super().__init__(self.form)


class NoBuildableTarget(WheelyardError):
    """A worker that found no interpreter it can build with; it refuses to start."""

    reference = "no-buildable-target"
    status_code = 500
    form = "this worker has no target it can build{unusable}"
    hint = (
        "install CPython with its headers where the build user can run it (pyenv, /opt/python/*, "
        "python3.X-dev), or name it in WHEELYARD_INTERPRETERS; `wheelyard worker --probe` shows what was found"
    )

    def __init__(self, unusable: str) -> None:
        super().__init__(self.form.format(unusable=unusable))


class TargetNotBuildable(WheelyardError):
    """A worker told to build targets (``--targets``) it cannot build."""

    reference = "target-not-buildable"
    status_code = 500
    form = "this worker cannot build {targets} (or: no target this worker can build matches {selected!r})"
    hint = "run `wheelyard worker --probe` to see what it can build"


class StackStartFailed(WheelyardError):
    """A part of ``wheelyard up`` (API, worker, index) exited or did not answer while starting."""

    reference = "stack-start-failed"
    status_code = 500
    form = "the {part} exited with status {code} while starting (or: did not answer {url} within {seconds} s)"


class IndexStartFailed(WheelyardError):
    """The index's upload endpoint exited or did not answer while starting."""

    reference = "index-start-failed"
    status_code = 500
    form = "the upload endpoint exited with status {code} while starting (or: did not start within 60 s)"


class PortInUse(WheelyardError):
    """A server of wheelyard cannot listen on its address: another process holds it."""

    reference = "port-in-use"
    status_code = 500
    form = "{host}:{port} is in use by another process"
    hint = "stop the server already on that port, or choose another (WHEELYARD_INDEX_PORT, WHEELYARD_API_PORT)"


class ApiUnreachable(WheelyardError):
    """A client command found no wheelyard API answering at its URL."""

    reference = "api-unreachable"
    status_code = 502
    form = "the wheelyard API at {url} does not answer (or: was not ready within {seconds} s)"


class ApiRefused(WheelyardError):
    """The API refused a client command's request with an answer that is not one of this catalogue's
    errors (a proxy's, or a newer API's): the client shows the answer's reference, or ``http-STATUS``
    where it has none. The catalogue's own errors are shown as the API sent them (``answered``)."""

    reference = "api-refused"
    status_code = 502
    form = "the answer's message, or: the API answered {status}"

    def __init__(self, status: int, shown: str | None, message: str | None, hint: str | None) -> None:
        super().__init__(message or f"the API answered {status}", hint)
        self.reference = shown or f"http-{status}"


def answered(status: int, body: dict[str, Any]) -> WheelyardError:
    """The error an API answer with ``body`` (``WheelyardError.to_dict()``) stands for, on the client."""
    message = str(body["message"]) if body.get("message") else None
    hint = str(body["hint"]) if body.get("hint") else None
    shown = str(body["error"]) if body.get("error") else None
    known = catalogue().get(shown or "")
    if known is None or message is None:
        return ApiRefused(status, shown, message, hint)
    error = known.__new__(known)
    WheelyardError.__init__(error, message, hint)  # the API's words, not the class's template
    return error
