"""How a setting is declared, and how its values are read, checked and written.

``setting()`` makes a dataclass field that carries its declaration (environment
variable, help, range, whether it is a secret); ``declared_settings`` reads those fields
back, with each one's type from its annotation, as the table builder/config.py derives
everything from. Values come as text (the environment, command-line options) or as TOML
values (a configuration file, where a quoted ``"false"`` is a string, not a boolean).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingError(Exception):
    """A value that cannot be a setting's; builder/config.py turns it into a ConfigurationError."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Declaration:
    env: str
    help: str
    minimum: int | None = None
    maximum: int | None = None
    secret: bool = False
    shown_default: str | None = None


def setting(
    default: Any = dataclasses.MISSING,
    *,
    env: str,
    help: str,
    factory: Callable[[], Any] | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    secret: bool = False,
    shown_default: str | None = None,
) -> Any:
    """A field of ``Settings`` (or ``Limits``) with everything the loader, docs and help need."""
    metadata = {"setting": Declaration(env, help, minimum, maximum, secret, shown_default)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# The types a setting may have, by the name docs show for them.
_KINDS: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    str: "string",
    Path: "path",
    tuple[int, int]: "version X.Y",
    tuple[Path, ...]: "paths",
}


@dataclass(frozen=True)
class Setting:
    """One declared setting: ``key`` is its name in a file (``limits.wall_seconds`` for a limit)."""

    key: str
    group: str | None
    name: str
    kind: Any
    optional: bool
    default: Any
    declaration: Declaration

    @property
    def env(self) -> str:
        return self.declaration.env

    @property
    def help(self) -> str:
        return self.declaration.help

    @property
    def secret(self) -> bool:
        return self.declaration.secret

    @property
    def kind_name(self) -> str:
        return _KINDS[self.kind]

    @property
    def shown_default(self) -> str:
        if self.declaration.shown_default is not None:
            return self.declaration.shown_default
        if self.default is None or self.default == ():
            return "(unset)"
        return render_text(self, self.default)

    def get(self, settings: Any) -> Any:
        holder = getattr(settings, self.group) if self.group else settings
        return getattr(holder, self.name)

    def from_text(self, text: str, source: str) -> Any:
        """A value from the environment or the command line."""
        shown = f"{source}={text!r}"
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise SettingError(f"{shown} is not a boolean", "use true or false")
        if self.kind is int:
            try:
                return self._in_range(int(text.strip()), shown)
            except ValueError:
                raise SettingError(f"{shown} is not a whole number", "write digits only, e.g. 8080") from None
        if self.kind == tuple[int, int]:
            return _version(text, shown)
        if self.kind == tuple[Path, ...]:
            return tuple(Path(p) for p in text.split(os.pathsep) if p)
        if self.kind is Path:
            return Path(text).expanduser().resolve()
        return text

    def from_file(self, value: Any, source: str) -> Any:
        """A TOML value (or an already typed one from the command line): its type must fit."""
        shown = f"{source} = {value!r}"
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            raise SettingError(f"{shown} is not a boolean", "write true or false, without quotes")
        if self.kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return self._in_range(value, shown)
            raise SettingError(f"{shown} is not a whole number", "write the number without quotes, e.g. 8080")
        if self.kind == tuple[int, int]:
            if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
                return (value[0], value[1])
            if isinstance(value, str):
                return _version(value, shown, 'write it as "2.28" or [2, 28]')
            raise SettingError(f"{shown} is not a version X.Y", 'write it as "2.28"')
        if self.kind == tuple[Path, ...]:
            if isinstance(value, (list, tuple)) and all(isinstance(v, (str, Path)) for v in value):
                return tuple(Path(v) for v in value)
            raise SettingError(f"{shown} is not a list of paths", 'write it as ["/usr/bin/python3.12"]')
        if isinstance(value, Path) or (self.kind is Path and isinstance(value, str)):
            return Path(value).expanduser().resolve()
        if self.kind is str and isinstance(value, str):
            return value
        raise SettingError(f"{shown} is not a {self.kind_name}", 'write it in quotes, e.g. "..."')

    def _in_range(self, number: int, shown: str) -> int:
        low, high = self.declaration.minimum, self.declaration.maximum
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SettingError(f"{shown} is out of range", f"use a number {bounds}")
        return number


def render_text(s: Setting, value: Any) -> str:
    """``value`` as ``from_text`` reads it back (the environment of a child process)."""
    if s.kind is bool:
        return "true" if value else "false"
    if s.kind == tuple[int, int]:
        return f"{value[0]}.{value[1]}"
    if s.kind == tuple[Path, ...]:
        return os.pathsep.join(str(p) for p in value)
    return str(value)


def _version(text: str, shown: str, hint: str = "write it as 2.28") -> tuple[int, int]:
    major, dot, minor = text.strip().partition(".")
    if dot and major.isdigit() and minor.isdigit():
        return (int(major), int(minor))
    raise SettingError(f"{shown} is not a version X.Y", hint)


def declared_settings(cls: type, groups: Mapping[str, type]) -> tuple[Setting, ...]:
    """Every ``setting()`` field of ``cls``, and of each group class under its field name."""
    found: list[Setting] = []
    for group, holder in [(None, cls), *groups.items()]:
        hints = typing.get_type_hints(holder)
        for f in dataclasses.fields(holder):
            declaration = f.metadata.get("setting")
            if declaration is None:
                if group is None and f.name in groups:
                    continue
                raise TypeError(f"{holder.__name__}.{f.name} is not declared with setting()")
            kind, optional = _unwrap_optional(hints[f.name])
            if kind not in _KINDS:
                raise TypeError(f"{holder.__name__}.{f.name}: no reader for settings of type {kind}")
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            key = f"{group}.{f.name}" if group else f.name
            found.append(Setting(key, group, f.name, kind, optional, default, declaration))
    return tuple(found)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if (typing.get_origin(hint) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def unknown_key(key: str, allowed: Iterable[str], what: str = "key") -> tuple[str, str]:
    """What to say of an unknown key in a data file: the sentence (with the closest valid name)
    and the hint (every valid name)."""
    import difflib

    valid = sorted(allowed)
    close = difflib.get_close_matches(key, valid, n=1)
    said = f"unknown {what} {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    return said, f"valid: {', '.join(valid)}"
