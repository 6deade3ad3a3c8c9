"""Build requirements are data, never arguments.

A build names what it needs in ``build-system.requires`` and through its
``get_requires_for_build_wheel`` hook: a stranger's strings, which the worker hands to uv.
Each is parsed as a PEP 508 requirement by ``packaging`` first, and only its normalised form
goes on, through a requirements file, so none can be read as an option (``--config-file=...``,
``--target=...``, ``-e``), a path or a file. A direct URL requirement (``name @ https://...``)
makes the installer fetch whatever URL the build chose: it is refused unless the deployment
allows them (``allow_direct_url_requirements``), and then only over http(s).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement

from builder.errors import BuildRequirementRefused, DirectUrlRefused

__all__ = ["BuildRequirementRefused", "DirectUrlRefused", "install_command", "parse_build_requirements"]

_HINT = (
    "build requirements must be PEP 508 requirements such as 'setuptools>=61' or "
    "'cython; python_version < \"3.13\"': no options, paths or files"
)


def parse_build_requirements(entries: Iterable[object], *, source: str, allow_direct_urls: bool) -> list[str]:
    """The requirements of ``entries`` in normal form, sorted; ``source`` says where they came from."""
    out: set[str] = set()
    for entry in entries:
        if not isinstance(entry, str):
            raise BuildRequirementRefused(f"{source} lists {entry!r}, which is not a string", _HINT)
        try:
            requirement = Requirement(entry)
        except InvalidRequirement as exc:
            raise BuildRequirementRefused(
                f"{source} lists {entry!r}, which is not a PEP 508 requirement: {exc}", _HINT
            ) from None
        if requirement.url is not None:
            scheme = urlsplit(requirement.url).scheme.lower()
            if scheme not in ("http", "https"):
                raise BuildRequirementRefused(
                    f"{source} lists {entry!r}: a {scheme or 'local'} URL is never installed from", _HINT
                )
            if not allow_direct_urls:
                raise DirectUrlRefused(
                    f"{source} lists {entry!r}: a requirement with a URL, which this deployment does not allow",
                    "build requirements come from the upstream index; a deployment that trusts direct URLs "
                    "sets WHEELYARD_ALLOW_DIRECT_URL_REQUIREMENTS=true",
                )
        out.add(str(requirement))
    return sorted(out)


def install_command(
    uv: str,
    python: Path,
    requirements_file: Path,
    *,
    index_url: str,
    cache_dir: Path,
    find_links: Path | None = None,
    options: Sequence[str] = (),
) -> list[str]:
    """uv's command line installing ``requirements_file`` (one parsed requirement a line) into
    the environment of ``python``: wheels only, from ``index_url`` (and ``find_links``), with
    no configuration file of the host and no Python downloads; ``options`` are the worker's own
    (constraints, upload dates of a remedy or an override), never a build's."""
    links = ["--find-links", str(find_links)] if find_links is not None else []
    return [
        uv,
        "pip",
        "install",
        "--no-config",
        "--no-python-downloads",
        "--system-certs",
        "--no-progress",
        "--cache-dir",
        str(cache_dir),
        "--python",
        str(python),
        "--index-url",
        index_url,
        *links,
        *options,
        "--only-binary",
        ":all:",
        "--requirements",
        str(requirements_file),
    ]
