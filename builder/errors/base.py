"""The user-facing error type, and the one check every reference passes.

Every error a person can see is a class of its own (one class per reference, as pip's
diagnostic errors are) with a stable ``reference`` (never renamed once shipped), a sentence
that says what happened, and a hint that says what to do. A reference is checked once, when
its class is defined: lowercase words joined by single hyphens, and used by no other class.
The CLI and the API each render errors in one place; ``docs/errors.md`` lists them all
(``python -m builder.errors`` writes it).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

# lowercase kebab-case: words of letters and digits, joined by single hyphens
REFERENCE_FORM = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")

# reference -> its class; filled as the classes are defined
_CATALOGUE: dict[str, type[WheelyardError]] = {}


class WheelyardError(Exception):
    """An error meant for a person: reference, what happened, and a hint."""

    reference = "wheelyard-error"
    status_code: ClassVar[int] = 400
    # The message's form, for the catalogue: the template the class fills in, or what the
    # message says where each raise writes its own.
    form: ClassVar[str] = ""
    # What to do about it, where the class knows (a raise may give its own instead).
    hint: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        reference = cls.__dict__.get("reference")
        if not isinstance(reference, str):
            raise TypeError(f"{cls.__qualname__} declares no reference: every error class has one of its own")
        if REFERENCE_FORM.fullmatch(reference) is None:
            raise TypeError(f"{cls.__qualname__}: reference {reference!r} is not lowercase kebab-case")
        taken = _CATALOGUE.get(reference)
        if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"{cls.__qualname__}: reference {reference!r} is {taken.__qualname__}'s already")
        if not cls.__dict__.get("form"):
            raise TypeError(f"{cls.__qualname__} declares no form: the catalogue shows what its message says")
        _CATALOGUE[reference] = cls

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.reference, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


def catalogue() -> dict[str, type[WheelyardError]]:
    """Every error class defined so far, by reference."""
    return dict(_CATALOGUE)
