"""Errors of the private index: publishing to it, and what it refuses to take or to give."""

from __future__ import annotations

from builder.errors.base import WheelyardError


class AlreadyPublished(WheelyardError):
    """The filename is on the index already; files there are never replaced."""

    reference = "already-published"
    status_code = 409
    form = "the file is on the index already"


class IndexAuthenticationFailed(WheelyardError):
    """The index refused the credentials (or none were given)."""

    reference = "index-authentication-failed"
    status_code = 502
    form = "the index refused the upload's credentials"


class PublishFailed(WheelyardError):
    """The index did not take the upload, for a reason other than credentials or a duplicate."""

    reference = "publish-failed"
    status_code = 502
    form = "the index did not take the upload: its answer"


class WheelChanged(PublishFailed):
    """The file to upload no longer has the hash it was verified with; nothing is uploaded."""

    reference = "wheel-changed"
    form = "{filename} changed after it was verified (sha256 {now}, verified {verified})"
    hint = "nothing was uploaded; build it again"

    def __init__(self, filename: str, now: str, verified: str) -> None:
        super().__init__(self.form.format(filename=filename, now=now, verified=verified))


class IndexHashMismatch(PublishFailed):
    """The index took an upload but lists another hash for it than the verified file's."""

    reference = "index-hash-mismatch"
    form = "{index} took {filename} but lists it with sha256 {listed}, not {sha256}"
    hint = "the index does not hold the verified file: check it before anyone installs from it"

    def __init__(self, index: str, filename: str, listed: str | None, sha256: str) -> None:
        super().__init__(self.form.format(index=index, filename=filename, listed=listed, sha256=sha256))


class IndexUnavailable(WheelyardError):
    """The index could not be reached or did not answer as an index does."""

    reference = "index-unavailable"
    status_code = 502
    form = "the index did not answer: why"


class NotOnIndex(WheelyardError):
    """A project or version the index does not hold."""

    reference = "not-on-index"
    status_code = 404
    form = "the project or version the index does not hold"


class InvalidUpload(WheelyardError):
    """The upload's filename is not one the index accepts."""

    reference = "invalid-upload"
    status_code = 400
    form = "what is wrong with the upload"


class RemovalRefused(WheelyardError):
    """Files on the index are never removed."""

    reference = "removal-refused"
    status_code = 405
    form = "files on the index are never removed"


class SdistRejected(WheelyardError):
    """An upload named as an sdist is not a valid sdist of that name and version."""

    reference = "sdist-rejected"
    status_code = 400
    form = "what is wrong with the sdist"
