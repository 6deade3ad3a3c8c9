"""The client commands, ``wheelyard request`` and ``wheelyard status``: calls to the API."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, TextIO

import requests

from builder.config import Settings
from builder.errors import ApiUnreachable, answered
from server.options import setting_option

EXIT_OK, EXIT_FAILED = 0, 1


def add_parsers(sub: Any) -> None:
    request = sub.add_parser("request", help="ask for the wheels of a requirement")
    request.add_argument("requirement", help="e.g. markupsafe==3.0.2")
    request.add_argument(
        "-t",
        "--target",
        action="append",
        required=True,
        dest="targets",
        help="a build identifier, e.g. cp312-manylinux_x86_64 (repeat for more)",
    )
    request.add_argument(
        "--from-source",
        action="store_true",
        default=None,
        help="build even where upstream has a wheel",
    )
    request.add_argument("--retry", action="store_true", help="build again a target whose last build failed")
    request.add_argument(
        "--wait",
        action="store_true",
        help="follow the builds; exit 0 only if every target is on the index",
    )
    request.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)")
    setting_option(request, "--api-url", "api_url")
    request.add_argument("--json", action="store_true", help="print the builds as JSON")

    status = sub.add_parser("status", help="show a build, or the latest builds")
    status.add_argument("build_id", nargs="?")
    setting_option(status, "--api-url", "api_url")
    status.add_argument("--json", action="store_true")


class ApiClient:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, self.base + path, timeout=60, **kwargs)
        except requests.ConnectionError:
            raise ApiUnreachable(
                f"the wheelyard API at {self.base} does not answer",
                "start it with `wheelyard up`, or point --api-url / WHEELYARD_API_URL at it",
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise answered(response.status_code, body if isinstance(body, dict) else {})
        return response.json() if "json" in response.headers.get("Content-Type", "") else response.text

    def wait_ready(self, timeout: float, err: TextIO) -> None:
        deadline = time.monotonic() + timeout
        said = False
        while True:
            try:
                if self.session.get(self.base + "/api/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise ApiUnreachable(
                    f"the wheelyard API at {self.base} was not ready within {timeout:.0f} s",
                    "check `wheelyard up`'s output",
                )
            if not said:
                err.write(f"waiting for the wheelyard API at {self.base} ...\n")
                said = True
            time.sleep(0.5)


def cmd_request(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    client = ApiClient(settings.api_url, settings.api_token)
    if args.wait:
        client.wait_ready(min(args.timeout, 300), err)
    body: dict[str, Any] = {
        "requirement": args.requirement,
        "targets": args.targets,
        "retry": args.retry,
    }
    if args.from_source:
        body["from_source"] = True
    builds = client.call("POST", "/api/builds", json=body)["builds"]
    for b in builds:
        err.write(f"{b['target']}: {b['name']} {b['version']} build {b['id']} {b['status']}\n")
    if args.wait:
        builds = _follow(client, builds, args.timeout, err)
    if args.json:
        out.write(json.dumps(builds, indent=2) + "\n")
    else:
        for b in builds:
            out.write(_summary(b) + "\n")
    if not args.wait:
        return EXIT_OK
    return EXIT_OK if all(b["status"] in ("published", "mirrored") for b in builds) else EXIT_FAILED


def _follow(client: ApiClient, builds: list[dict[str, Any]], timeout: float, err: TextIO) -> list[dict[str, Any]]:
    """Poll until every build is finished, printing each change of status and step."""
    deadline = time.monotonic() + timeout
    current = {b["id"]: b for b in builds}
    seen = {b["id"]: (b["status"], b.get("step")) for b in builds}
    started = time.monotonic()
    while any(b["status"] not in ("published", "mirrored", "failed") for b in current.values()):
        if time.monotonic() > deadline:
            err.write(f"still not finished after {timeout:.0f} s\n")
            break
        time.sleep(0.5)
        for build_id in list(current):
            if current[build_id]["status"] in ("published", "mirrored", "failed"):
                continue
            b = client.call("GET", f"/api/builds/{build_id}")
            current[build_id] = b
            state = (b["status"], b.get("step"))
            if state != seen[build_id]:
                seen[build_id] = state
                step = f" ({b['step']})" if b.get("step") else ""
                err.write(f"[{time.monotonic() - started:6.1f}s] {b['target']}: {b['status']}{step}\n")
    return list(current.values())


def _summary(b: dict[str, Any]) -> str:
    line = f"{b['target']}: {b['status']}"
    if b.get("wheel"):
        line += f" {b['wheel']} sha256={b.get('sha256')}"
    if b["status"] == "failed":
        primary = (b.get("diagnosis") or {}).get("primary") or {}
        error = b.get("error") or {}
        line += f"\n  error: {error.get('message', 'the build failed')}"
        if primary:
            line += f"\n  cause: {primary.get('category')} ({primary.get('rule')}): {primary.get('explanation') or ''}"
            text = primary.get("text") or ""
            if text:
                line += f"\n  line {primary.get('line')}: {text.strip()}"
        line += f"\n  {_nearest_line(b)}"
        line += f"\n  log: {b.get('log_url')}"
    if b["status"] == "waiting-for-capability":
        line += f"\n  waits for a worker with {b.get('missing_capability')}: none of the live workers has it"
    return line


def _nearest_line(b: dict[str, Any]) -> str:
    """``works instead: 2.4.0 (newer, upstream wheel), 2.3.9 (older, built here)``."""
    found = b.get("nearest_release") or {}
    parts = [
        f"{found[side]['version']} ({side}, {str(found[side]['source']).replace('-', ' ')})"
        for side in ("newer", "older")
        if found.get(side)
    ]
    if not parts:
        return f"works instead: no other release has a wheel for {b['target']} upstream or here"
    return "works instead: " + ", ".join(parts)


def cmd_status(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    client = ApiClient(settings.api_url, settings.api_token)
    if args.build_id:
        builds = [client.call("GET", f"/api/builds/{args.build_id}")]
    else:
        builds = client.call("GET", "/api/builds", params={"limit": 20})["builds"]
    if args.json:
        out.write(json.dumps(builds, indent=2) + "\n")
    else:
        for b in builds:
            out.write(f"{b['id']} {b['name']}=={b['version']} " + _summary(b) + "\n")
    return EXIT_OK


COMMANDS = {"request": cmd_request, "status": cmd_status}
