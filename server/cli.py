"""The ``wheelyard`` command: ``main(argv)``, testable without a subprocess.

Errors are rendered in one place (``main``'s handler): a ``WheelyardError`` prints what
happened and a hint, never a traceback, and exits 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import requests

from builder.config import Settings, load_settings
from builder.errors import ConfigurationError, WheelyardError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wheelyard",
        description="Builds the wheels pip cannot find, diagnoses failed builds, publishes them to a private index.",
    )
    parser.add_argument("--config", type=Path, help="a TOML file with a [wheelyard] table")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="wheels, logs and the embedded Redis's files (default ~/.wheelyard)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    up = sub.add_parser("up", help="run the whole stack on this machine (embedded Redis unless WHEELYARD_REDIS_URL)")
    up.add_argument("--api-port", type=int)
    up.add_argument("--index-port", type=int)
    up.add_argument("--no-worker", action="store_true", help="run the API and index only")
    up.add_argument(
        "--targets",
        help="comma-separated build identifiers the local worker serves (default: all it can)",
    )

    api = sub.add_parser("api", help="run the HTTP API and dashboard")
    api.add_argument("--host")
    api.add_argument("--port", type=int)

    index = sub.add_parser("index", help="run the private package index (pypiserver)")
    index.add_argument("--host")
    index.add_argument("--port", type=int)

    worker = sub.add_parser("worker", help="run a build worker for the targets this host can build")
    worker.add_argument("--probe", action="store_true", help="print what this worker can build, and exit")
    worker.add_argument("--targets", help="comma-separated build identifiers to serve (default: all it can)")
    worker.add_argument("--concurrency", type=int)
    worker.add_argument("--name", help="worker name (default wheelyard-PID@HOST)")

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
    request.add_argument("--api-url", help="default http://127.0.0.1:8000 (WHEELYARD_API_URL)")
    request.add_argument("--json", action="store_true", help="print the builds as JSON")

    status = sub.add_parser("status", help="show a build, or the latest builds")
    status.add_argument("build_id", nargs="?")
    status.add_argument("--api-url")
    status.add_argument("--json", action="store_true")

    diagnose = sub.add_parser(
        "diagnose",
        help="say what broke in a failed build log (a file, or - for stdin)",
        add_help=False,
    )
    diagnose.add_argument("args", nargs=argparse.REMAINDER)

    sub.add_parser("beat", help="run the scheduler of prebuild jobs")
    reindex = sub.add_parser(
        "reindex",
        help="index every build record again (after workers of a release without build-list indexes wrote some)",
    )
    reindex.add_argument(
        "--wait", type=float, default=60, help="seconds to wait for another process that is indexing (default 60)"
    )
    return parser


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `diagnose` takes its own options (it is the same tool people run on their pip output).
    if "diagnose" in args_list:
        position = args_list.index("diagnose")
        if all(a.startswith("-") for a in args_list[:position]):
            from builder.diagnosis.cli import main as diagnose_main

            return int(diagnose_main(args_list[position + 1 :], stdout=out, stderr=err, wheel_lookup=_upstream_wheels))
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        settings = load_settings(config_file=args.config, data_dir=args.data_dir)
        handler = COMMANDS[args.command]
        return handler(args, settings, out, err)
    except WheelyardError as exc:
        _render(exc, err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130


def _upstream_wheels(name: str, version: str) -> list[str]:
    """Wheel filenames the upstream index has for a release; nothing when it cannot be asked."""
    from builder.upstream import SimpleIndex

    try:
        settings = load_settings()
        release = SimpleIndex(settings.upstream_index, timeout=10).resolve(f"{name}=={version}")
    except WheelyardError:
        return []
    return [f.filename for f in release.wheels]


def _render(exc: WheelyardError, err: TextIO) -> None:
    err.write(f"error: {exc.message} [{exc.reference}]\n")
    if exc.hint:
        err.write(f"hint: {exc.hint}\n")


# -- service commands ---------------------------------------------------------------------------
def resolve_redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    from server.embedded_redis import EmbeddedRedis

    embedded = EmbeddedRedis(settings.data_dir)  # where `wheelyard up` runs its own; not started here
    if embedded.socket_path.exists():
        return embedded.url
    raise ConfigurationError(
        "no Redis to use: WHEELYARD_REDIS_URL is not set and no embedded Redis runs in " + str(settings.data_dir),
        "set WHEELYARD_REDIS_URL=redis://HOST:6379/0, or run `wheelyard up`, which starts its own",
    )


def upload_password(settings: Settings) -> str | None:
    if settings.index_password:
        return settings.index_password
    stored = settings.data_dir / "index-password"
    return stored.read_text().strip() if stored.exists() else None


def cmd_api(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    import uvicorn

    from server.api import create_app

    settings = settings.with_overrides(api_host=args.host, api_port=args.port)
    app = create_app(settings, resolve_redis_url(settings))
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="info", access_log=False)
    return EXIT_OK


def cmd_index(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from server.index import serve_index

    settings = settings.with_overrides(index_host=args.host, index_port=args.port)
    serve_index(settings)
    return EXIT_OK


def _worker_targets(settings: Settings, selected: str | None) -> tuple[Any, list[Any]]:
    """What this host can build, narrowed to ``--targets`` where given."""
    from builder.capabilities import probe
    from builder.targets import parse_targets

    capabilities = probe(settings.extra_interpreters)
    targets = capabilities.targets()
    if selected:
        wanted = parse_targets(t for t in selected.split(",") if t.strip())
        missing = [t.identifier for t in wanted if t not in targets]
        if missing:
            raise WheelyardError(
                f"this worker cannot build {', '.join(missing)}",
                "run `wheelyard worker --probe` to see what it can build",
                reference="target-not-buildable",
            )
        targets = wanted
    return capabilities, targets


def cmd_worker(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from builder.records import BuildStore, connect
    from builder.sandbox import limit_mechanisms, sandbox_available
    from builder.tasks import build_sender, create_celery_app, register_tasks
    from builder.workdir import sweep
    from builder.worker import Heartbeat, LostBuilds, default_worker_name, worker_info, worker_queues

    capabilities, targets = _worker_targets(settings, args.targets)
    queues = worker_queues(targets)
    sandbox_ok = sandbox_available()
    if args.probe:
        data = capabilities.to_dict()
        data["queues"] = queues
        data["sandbox"] = {
            "enabled": settings.sandbox,
            "available": sandbox_ok,
            "limits": limit_mechanisms(settings.limits),
        }
        out.write(json.dumps(data, indent=2) + "\n")
        return EXIT_OK
    if settings.sandbox and not sandbox_ok:
        # Refuse to start rather than fail every build: strangers' code must not run unconfined by accident.
        raise WheelyardError(
            "the build sandbox (bubblewrap) cannot run on this host",
            "install bubblewrap (apt-get install bubblewrap) and allow user namespaces, or set "
            "WHEELYARD_SANDBOX=false where the host itself is the sandbox",
            reference="sandbox-unavailable",
        )
    redis_url = resolve_redis_url(settings)
    name = args.name or default_worker_name()
    concurrency = args.concurrency or settings.worker_concurrency
    app = create_celery_app(settings, redis_url)
    register_tasks(app, settings, redis_url, capabilities, name, upload_password(settings))
    store = BuildStore(connect(redis_url))
    sweep(settings.data_dir / "work")  # what attempts killed with an earlier worker left
    lost = LostBuilds(store, build_sender(app))
    heartbeat = Heartbeat(store, name, worker_info(capabilities, targets), on_beat=lost.check)
    heartbeat.start()
    err.write(f"wheelyard worker {name}: serving {', '.join(queues)}\n")
    try:
        app.worker_main(
            [
                "worker",
                "-Q",
                ",".join(queues),
                "-n",
                name,
                "-c",
                str(concurrency),
                "-P",
                "prefork",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        heartbeat.stop()
    return EXIT_OK


def cmd_beat(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from server.schedule import run_beat

    run_beat(settings, resolve_redis_url(settings))
    return EXIT_OK


def cmd_up(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from server.stack import run_stack

    settings = settings.with_overrides(api_port=args.api_port, index_port=args.index_port)
    if args.api_port:
        settings = settings.with_overrides(api_url=f"http://{settings.api_host}:{args.api_port}")
    if args.index_port:
        settings = settings.with_overrides(index_url=f"http://{settings.index_host}:{args.index_port}")
    return run_stack(settings, worker=not args.no_worker, targets=args.targets, out=out, err=err)


# -- client commands ----------------------------------------------------------------------------
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
            raise WheelyardError(
                f"the wheelyard API at {self.base} does not answer",
                "start it with `wheelyard up`, or point --api-url / WHEELYARD_API_URL at it",
                reference="api-unreachable",
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise WheelyardError(
                str(body.get("message") or f"the API answered {response.status_code}"),
                body.get("hint"),
                reference=str(body.get("error") or f"http-{response.status_code}"),
            )
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
                raise WheelyardError(
                    f"the wheelyard API at {self.base} was not ready within {timeout:.0f} s",
                    "check `wheelyard up`'s output",
                    reference="api-unreachable",
                )
            if not said:
                err.write(f"waiting for the wheelyard API at {self.base} ...\n")
                said = True
            time.sleep(0.5)


def cmd_request(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    client = ApiClient(args.api_url or settings.api_url, settings.api_token)
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
        line += f"\n  log: {b.get('log_url')}"
    return line


def cmd_status(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    client = ApiClient(args.api_url or settings.api_url, settings.api_token)
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


def cmd_reindex(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    import redis

    from builder.records import BuildStore, connect

    store = BuildStore(connect(resolve_redis_url(settings)))
    try:
        count = store.rebuild_indexes(wait=args.wait)
    except redis.RedisError as exc:
        raise WheelyardError(
            f"Redis did not answer: {exc}",
            "check WHEELYARD_REDIS_URL and that Redis runs",
            reference="redis-unavailable",
        ) from None
    if count is None:
        raise WheelyardError(
            f"another process has been indexing the build records for {args.wait:g} s",
            "wait until it is done (a listing answers again), then run this again if old workers still ran",
            reference="indexing",
        )
    out.write(f"indexed {count} build records\n")
    return EXIT_OK


COMMANDS = {
    "up": cmd_up,
    "api": cmd_api,
    "index": cmd_index,
    "worker": cmd_worker,
    "beat": cmd_beat,
    "request": cmd_request,
    "status": cmd_status,
    "reindex": cmd_reindex,
}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
