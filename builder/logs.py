"""The logs of every wheelyard process: one JSON object per line, or human lines on a terminal.

A log pipeline (Loki, Elasticsearch, journald) reads a line as one record: each carries its
time, level, logger, the process's service (``api``, ``worker``, ``index``, ``up``, ``beat``)
and, while a build runs, the build's id, target and step. These come from a context
variable the worker sets around a build (``build_context``) and moves from step to step
(``set_step``), so every line logged in that context carries them without the code that
logs knowing; Celery's own lines about a build task (received, succeeded, retried) carry
its build id too, read from the task's arguments in the record.

``WHEELYARD_LOG_FORMAT`` chooses: ``json``, ``text``, or ``auto`` (text on a terminal, JSON
otherwise, so that `wheelyard up` in a shell reads as before and under systemd or in a
container gives records).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from builder.errors import ConfigurationError

FORMATS = ("auto", "json", "text")
BUILD_TASK = "wheelyard.build"  # builder.tasks.BUILD_TASK, without importing Celery here
_CONTEXT_FIELDS = ("build_id", "target", "step")

_build: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar("wheelyard_build", default=None)


@contextlib.contextmanager
def build_context(build_id: str, target: str | None = None, step: str | None = None) -> Iterator[None]:
    """Every line logged inside carries this build's id, target and step."""
    token = _build.set({"build_id": build_id, "target": target, "step": step})
    try:
        yield
    finally:
        _build.reset(token)


def set_step(step: str | None) -> None:
    """The step of the build of the current context (no build: nothing)."""
    current = _build.get()
    if current is not None:
        _build.set({**current, "step": step})


def set_target(target: str) -> None:
    """The target of the build of the current context (no build: nothing)."""
    current = _build.get()
    if current is not None:
        _build.set({**current, "target": target})


def current_build() -> Mapping[str, str | None]:
    return _build.get() or {}


class BuildContextFilter(logging.Filter):
    """Puts the build of the context on each record (``build_id``, ``target``, ``step``); for
    Celery's records about a build task, the build id from the task's arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _build.get()
        for name in _CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, context.get(name) if context else None)
        if getattr(record, "build_id", None) is None:
            record.build_id = _celery_build_id(record)
        return True


def _celery_build_id(record: logging.LogRecord) -> str | None:
    """Celery logs a task's events with a mapping of its name and argument reprs."""
    args = record.args
    if not isinstance(args, Mapping) or args.get("name") != BUILD_TASK:
        return None
    shown = str(args.get("args") or "")
    # argsrepr of [build_id] or (build_id,): a build id is [0-9a-f]{16}, quoted.
    for quote in ("'", '"'):
        start = shown.find(quote)
        end = shown.find(quote, start + 1)
        if start != -1 and end > start:
            return shown[start + 1 : end]
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message or traceback are escaped)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": self.service,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        for name in ("reference", "hint"):
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A line for a person: time, level, logger, the build in brackets, the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        build = getattr(record, "build_id", None)
        if build is None:
            return line
        where = " ".join(str(getattr(record, n)) for n in _CONTEXT_FIELDS if getattr(record, n, None) is not None)
        return line.replace(": ", f": [{where}] ", 1)


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def chosen_format(log_format: str, stream: TextIO) -> str:
    """``json`` or ``text`` for ``log_format`` (auto: text on a terminal)."""
    if log_format not in FORMATS:
        raise ConfigurationError(
            f"WHEELYARD_LOG_FORMAT={log_format!r} is not a log format", f"use one of {', '.join(FORMATS)}"
        )
    if log_format != "auto":
        return log_format
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure_logging(service: str, log_format: str = "auto", stream: TextIO | None = None) -> str:
    """The root logger of this process writes ``service``'s records to ``stream`` (stderr) in the
    chosen format, replacing any handler set before; Python's warnings become records too.
    Returns the format chosen (a child writing to the same stream chooses the same)."""
    out = stream or sys.stderr
    chosen = chosen_format(log_format, out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(service) if chosen == "json" else TextFormatter())
    handler.addFilter(BuildContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return chosen


def log_error(logger: logging.Logger, message: str, reference: str, hint: str | None) -> None:
    """A user-facing error of a service process, as a record with its reference and hint."""
    logger.error("error: %s [%s]", message, reference, extra={"reference": reference, "hint": hint})


def celery_logs_to_root() -> None:
    """Celery configures no logging of its own (a ``setup_logging`` receiver; its worker would
    otherwise hijack the root logger): its records, and those of the pool processes it forks,
    go to the root logger ``configure_logging`` set up."""
    from celery.signals import setup_logging

    def keep(**_: object) -> None:
        return None

    setup_logging.connect(keep, weak=False)
