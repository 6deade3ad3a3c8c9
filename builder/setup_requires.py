"""The ``setup_requires`` an sdist declares, read statically: setup.py is parsed, never run.

PEP 517 front ends ignore ``setup_requires``: an old setup.py that imports cffi (or declares
``cffi_modules``) fails, or silently skips its extension, unless cffi is in the build
environment. The setup-requires remedy adds what is declared here to the build requirements,
which then go through builder/build_requirements.py like any other.

Only literals are read: ``setup_requires=[...]`` in a ``setup(...)`` call (or a module-level
name assigned a literal list), and ``[options] setup_requires`` of setup.cfg. The worker never
executes the sdist's code to find them.
"""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

__all__ = ["declared_setup_requires"]

# Reading a setup.py larger than this is refused (a real one is a few KiB).
MAX_SOURCE_BYTES = 1024**2


def declared_setup_requires(srcdir: Path) -> list[str]:
    """The requirement strings setup.cfg and setup.py declare in ``setup_requires`` (and
    ``cffi`` where setup.py has ``cffi_modules``), in order, without repeats."""
    found = [*_from_setup_cfg(srcdir / "setup.cfg"), *_from_setup_py(srcdir / "setup.py")]
    return list(dict.fromkeys(r.strip() for r in found if r.strip()))


def _regular_text(path: Path) -> str | None:
    """The text of a regular file of the sdist (never one a symlink points at), or None."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_SOURCE_BYTES:
        return None
    return path.read_text(encoding="utf-8", errors="replace")


def _from_setup_cfg(path: Path) -> list[str]:
    text = _regular_text(path)
    if text is None:
        return []
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
        value = parser.get("options", "setup_requires", fallback="")
    except configparser.Error:
        return []
    # setuptools' list parsing: one per line when there are several lines, else ';'-separated.
    return value.splitlines() if "\n" in value.strip() else value.split(";")


def _from_setup_py(path: Path) -> list[str]:
    text = _regular_text(path)
    if text is None:
        return []
    try:
        tree = ast.parse(text, filename=str(path))
    except (SyntaxError, ValueError):
        return []
    assigned = _module_literals(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _is_setup(node.func)):
            continue
        for keyword in node.keywords:
            if keyword.arg == "setup_requires":
                found += _strings(keyword.value, assigned)
            elif keyword.arg == "cffi_modules":
                found.append("cffi")
    return found


def _is_setup(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id == "setup") or (
        isinstance(func, ast.Attribute) and func.attr == "setup"
    )


def _module_literals(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``NAME = <expression>`` assignments (the last one of each name)."""
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = node.value
    return out


def _strings(value: ast.expr, assigned: dict[str, ast.expr]) -> list[str]:
    if isinstance(value, ast.Name) and value.id in assigned:
        value = assigned[value.id]
    try:
        literal = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return []
    if isinstance(literal, str):
        return [literal]
    if isinstance(literal, (list, tuple)):
        return [x for x in literal if isinstance(x, str)]
    return []
