"""docs/errors.md, written from the classes: every reference, when it happens, its message and hint."""

from __future__ import annotations

import importlib

from builder.errors.base import WheelyardError, catalogue

# Packages that define error classes of their own outside this one: the sandbox's limit error
# is made of its limit markers and hints.
OUTSIDE = {"builder.sandbox": "The build sandbox's limits"}

AREAS = {
    "builder.errors.client": "What a request or an input is refused for",
    "builder.errors.upstream": "The upstream index",
    "builder.errors.build": "Builds",
    "builder.errors.index": "The private index",
    "builder.errors.service": "Running the service",
}

HEADER = """\
# Errors

Every error wheelyard shows a person (the CLI's `error: MESSAGE [REFERENCE]`, the API's
`{"error": REFERENCE, "message": ..., "hint": ...}`, a failed build's `error` in its record)
has a stable reference: a reference is never renamed once shipped, so scripts and alerts may
match on it. Each is one class in `builder/errors/` (by area), checked when it is defined
(lowercase kebab-case, unique). This page is written from those classes by
`python -m builder.errors`; `tests/test_errors.py` fails when it is stale.

In a message form, `{name}` is filled in where the error is raised; a form in words says what
the message tells. A hint in the table is the one the error gives unless the place that raises
it says more; "-" where each place gives its own.
"""


TABLE_HEAD = "| reference | HTTP | when it happens | message | hint |\n|---|---|---|---|---|\n"


def defined_in(cls: type, module: str) -> bool:
    """Whether ``cls`` comes from ``module`` or a module of that package."""
    return cls.__module__ == module or cls.__module__.startswith(module + ".")


def all_errors() -> list[type[WheelyardError]]:
    """Every error class, the package's and those defined outside it (``OUTSIDE``), by reference."""
    for module in OUTSIDE:
        importlib.import_module(module)
    return [cls for _, cls in sorted(catalogue().items())]


def _cell(text: str | None) -> str:
    return (text or "-").replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The whole of docs/errors.md."""
    errors = all_errors()
    parts = [HEADER]
    for module, title in {**AREAS, **OUTSIDE}.items():
        rows = [cls for cls in errors if defined_in(cls, module)]
        if not rows:
            continue
        parts.append(f"\n## {title}\n\n{TABLE_HEAD}")
        for cls in rows:
            when = " ".join((cls.__doc__ or "").split())
            parts.append(
                f"| `{cls.reference}` | {cls.status_code} | {_cell(when)} | {_cell(cls.form)} | {_cell(cls.hint)} |\n"
            )
    return "".join(parts)
