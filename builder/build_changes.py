"""What a build does differently from the plain one: a remedy's changes and a package's overrides.

Both kinds of data (builder/remedies.py, builder/overrides.py) come down to one ``BuildChanges``,
which the director (builder/pipeline.py) applies at fixed points: patches after the sdist is
unpacked; extra requirements, constraints and upload-date limits where the build requirements
are installed; the environment in the build sandbox (with the compatibility headers forced into
every compile); Cython regeneration before the backend's
hooks run; and the proof's modules to skip or import. ``notes`` are the build log's lines that
say which remedy and which overrides applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class BuildChanges:
    environment: Mapping[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    patches: tuple[Path, ...] = ()
    proof_skip: tuple[str, ...] = ()
    proof_import: tuple[str, ...] = ()
    # as-of-upload: build requirements resolved as of the sdist's upload time, but for these names.
    as_of_upload: bool = False
    keep_current: tuple[str, ...] = ()
    # regenerate-cython: the Cython requirement to regenerate with (None: no regeneration).
    regenerate_cython: str | None = None
    setup_requires: bool = False
    # compat-header: headers of builder/diagnosis/compat forced into every C/C++ compile (-include).
    headers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __add__(self, other: BuildChanges) -> BuildChanges:
        """Both sets of changes; where both set a variable, ``other``'s value wins, but for the
        compiler and linker flags, which take both (``other``'s last)."""
        return BuildChanges(
            environment=combined_environment(self.environment, other.environment),
            constraints=(*self.constraints, *other.constraints),
            requirements=(*self.requirements, *other.requirements),
            patches=(*self.patches, *other.patches),
            proof_skip=(*self.proof_skip, *other.proof_skip),
            proof_import=(*self.proof_import, *other.proof_import),
            as_of_upload=self.as_of_upload or other.as_of_upload,
            keep_current=(*self.keep_current, *other.keep_current),
            regenerate_cython=other.regenerate_cython or self.regenerate_cython,
            setup_requires=self.setup_requires or other.setup_requires,
            headers=(*self.headers, *(h for h in other.headers if h not in self.headers)),
            notes=(*self.notes, *other.notes),
        )

    @property
    def empty(self) -> bool:
        return self == BuildChanges(notes=self.notes)


# Flags that add up: an override's -O1 and a remedy's -fcommon both apply (the later flag wins
# where two of them contradict each other, as in a compiler's command line).
FLAG_VARIABLES = frozenset({"CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS"})


def combined_environment(first: Mapping[str, str], then: Mapping[str, str]) -> dict[str, str]:
    """Both environments: ``then``'s variables replace ``first``'s, but flags are appended."""
    combined = {**first, **then}
    for name in FLAG_VARIABLES.intersection(first, then):
        combined[name] = " ".join(v for v in (first[name], then[name]) if v)
    return combined


def skipped(module: str, skip: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``skip`` or below one of them."""
    return any(module == s or module.startswith(s + ".") for s in skip)
