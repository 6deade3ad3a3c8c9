"""``wheelyard ensure``: make sure the index holds every wheel a team installs, then exit 0.

The command reads the files here (requirements files with their ``-r``/``-c`` includes, a
pyproject.toml, a pylock.toml or uv.lock), sends them to ``POST /api/ensure``, and with
``--wait`` follows the builds, counts updated in place on a terminal and as plain lines in a log.
Exit codes: 0 every wheel is on the index; 1 something failed; 3 builds still under way
(without --wait, or at --timeout).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, TextIO

from builder.config import Settings
from builder.errors import InvalidEnsureInput
from server.ensure.inputs import from_requirements_file
from server.ensure.report import ON_INDEX, OUTCOMES, PENDING, failure_text, progress_line
from server.options import setting_option

EXIT_OK, EXIT_FAILED, EXIT_PENDING = 0, 1, 3
POLL_SECONDS = 1.0
MAX_BUILDS_ASKED = 500  # server.ensure.api.MAX_BUILDS_ASKED (not imported: the command starts without FastAPI)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ensure",
        help="put every wheel of a requirements file, lock or project on the index, for each target",
        description="Resolve the closure of the inputs for each target and mirror or build every wheel the "
        "index lacks. Exit 0 only when every wheel of every target's closure is on the index.",
    )
    p.add_argument("requirements", nargs="*", metavar="PKG", help="requirements, e.g. flask==3.1.0 'numpy>=2'")
    p.add_argument("-r", "--requirement", action="append", default=[], type=Path, help="a requirements file")
    p.add_argument("-c", "--constraint", action="append", default=[], type=Path, help="a constraints file")
    p.add_argument("--lock", action="append", default=[], type=Path, help="a pylock.toml (PEP 751) or uv.lock")
    p.add_argument("--project", type=Path, help="a pyproject.toml: its dependencies (and --extra, --group)")
    p.add_argument("--extra", action="append", default=[], help="optional dependencies of the project or lock")
    p.add_argument("--group", action="append", default=None, help="a dependency group (PEP 735); repeat for more")
    p.add_argument(
        "-t",
        "--target",
        action="append",
        required=True,
        dest="targets",
        help="a build identifier or pattern, e.g. cp312-manylinux_x86_64 or 'cp31{2,3}-manylinux_x86_64'",
    )
    p.add_argument("--wait", action="store_true", help="follow the builds until they end; exit 0 only if all are on it")
    p.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)")
    p.add_argument("--retry", action="store_true", help="build again what failed before")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the report (every wheel, outcome, diagnosis)")
    setting_option(p, "--api-url", "api_url")


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The API body for the command's inputs: files read here, their includes followed."""
    body: dict[str, Any] = {
        "targets": list(args.targets),
        "requirements": list(args.requirements),
        "constraints": [],
        "extras": list(args.extra),
        "retry": bool(args.retry),
    }
    if args.group is not None:
        body["groups"] = list(args.group)
    for path in args.requirement:
        sources = from_requirements_file(path)
        body["requirements"] += list(sources.requirements)
        body["constraints"] += list(sources.constraints)
    for path in args.constraint:
        sources = from_requirements_file(path)
        body["constraints"] += list(sources.requirements) + list(sources.constraints)
    if args.project is not None:
        body["pyproject"] = _read(args.project)
    for path in args.lock:
        key = "uv_lock" if _is_uv_lock(path) else "pylock"
        if key in body:
            raise InvalidEnsureInput(
                f"more than one {key.replace('_', '.')} was given", "ensure one lock of each kind at a time"
            )
        body[key] = _read(path)
    if not (body["requirements"] or "pyproject" in body or "pylock" in body or "uv_lock" in body):
        raise InvalidEnsureInput(
            "nothing to ensure: no requirement, no file",
            "give PKG==V, -r requirements.txt, --lock pylock.toml|uv.lock or --project pyproject.toml",
        )
    return body


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise InvalidEnsureInput(f"cannot read {path}: {exc.strerror}", "check the path") from None


def _is_uv_lock(path: Path) -> bool:
    if path.name == "uv.lock":
        return True
    if path.name == "pylock.toml" or (path.name.startswith("pylock.") and path.name.endswith(".toml")):
        return False
    return "[[package]]" in _read(path)


def cmd_ensure(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from server.client_commands import ApiClient

    body = request_body(args)
    client = ApiClient(settings.api_url, settings.api_token)
    if args.wait:
        client.wait_ready(min(args.timeout, 300), err)
    deadline = time.monotonic() + args.timeout
    show = Progress(err)
    report = client.call("POST", "/api/ensure", json=body)
    show(report)
    body["retry"] = False  # what this run asks again is asked once
    while args.wait and not report["done"] and time.monotonic() < deadline:
        followed = follow(client, report, deadline, show)
        # The index's word, not the builds': a re-run finds every finished wheel present, and asks
        # for what was waiting on another build of its release.
        report = this_run(client.call("POST", "/api/ensure", json=body), followed)
        show(report)
    show.finish(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    write_summary(report, out)
    if report["ok"]:
        return EXIT_OK
    if report["errors"] or any(i["outcome"] == "failed" for i in report["items"]):
        return EXIT_FAILED
    return EXIT_PENDING


def follow(client: Any, report: dict[str, Any], deadline: float, show: Progress) -> dict[str, Any]:
    """Poll the pending builds until none is left or the deadline passes."""
    while time.monotonic() < deadline:
        pending = [i for i in report["items"] if i["outcome"] in PENDING and i.get("build_id")]
        if not pending:
            break
        time.sleep(POLL_SECONDS)
        states: dict[str, Any] = {}
        for start in range(0, len(pending), MAX_BUILDS_ASKED):
            ids = [i["build_id"] for i in pending[start : start + MAX_BUILDS_ASKED]]
            states.update(client.call("POST", "/api/ensure/builds", json={"builds": ids})["builds"])
        for item in pending:
            state = states[item["build_id"]]
            item["outcome"] = state["status"]
            item["wheel"] = state["wheel"]
            item["error"] = state["error"]
            item["diagnosis"] = state["diagnosis"]
        recount(report)
        show(report)
    return report


def this_run(final: dict[str, Any], followed: dict[str, Any]) -> dict[str, Any]:
    """The index's newer report, each wheel this run mirrored or built still said to be so."""
    done = {
        (i["name"], i["version"], i["target"]): i
        for i in followed["items"]
        if i["outcome"] in ("mirrored", "published")
    }
    for item in final["items"]:
        earlier = done.get((item["name"], item["version"], item["target"]))
        if item["outcome"] == "present" and earlier is not None:
            item["outcome"], item["build_id"] = earlier["outcome"], earlier["build_id"]
    recount(final)
    return final


def recount(report: dict[str, Any]) -> None:
    counts = dict.fromkeys(OUTCOMES, 0)
    for item in report["items"]:
        counts[item["outcome"]] = counts.get(item["outcome"], 0) + 1
    report["counts"] = counts
    report["done"] = not any(i["outcome"] in PENDING for i in report["items"])
    report["ok"] = report["done"] and not report["errors"] and all(i["outcome"] in ON_INDEX for i in report["items"])


class Progress:
    """Counts on one line rewritten in place on a terminal; a new plain line on each change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last = ""
        self.started = time.monotonic()

    def __call__(self, report: dict[str, Any]) -> None:
        line = progress_line(report)
        if line == self.last:
            return
        self.last = line
        stamp = f"[{time.monotonic() - self.started:6.1f}s] "
        if self.tty:
            self.stream.write("\r\x1b[2K" + stamp + line)
        else:
            self.stream.write(stamp + line + "\n")
        self.stream.flush()

    def finish(self, report: dict[str, Any]) -> None:
        self(report)
        if self.tty:
            self.stream.write("\n")


def write_summary(report: dict[str, Any], out: TextIO) -> None:
    for name in report["private"]:
        out.write(
            f"private: {name} is taken from the index as people uploaded it; it is never mirrored from upstream\n"
        )
    for error in report["errors"]:
        out.write(f"FAILED {error['target']}: {error['message']} [{error['error']}]\n")
        if error.get("hint"):
            out.write(f"  hint: {error['hint']}\n")
    for item in report["items"]:
        if item["outcome"] == "failed":
            out.write(failure_text(item) + "\n")
    pending = [i for i in report["items"] if i["outcome"] in PENDING]
    for item in pending:
        waits_for = f" ({item['missing_capability']})" if item.get("missing_capability") else ""
        out.write(f"PENDING {item['name']}=={item['version']} for {item['target']}: {item['outcome']}{waits_for}\n")
    if report["ok"]:
        out.write(f"ok: all {report['total']} wheels of {', '.join(report['targets'])} are on the index\n")
    else:
        failed = len([i for i in report["items"] if i["outcome"] == "failed"]) + len(report["errors"])
        out.write(f"not ok: {failed} failed, {len(pending)} not finished, of {report['total']} wheels\n")
