"""The ``wheelyard`` command: ``main(argv)``, testable without a subprocess.

Errors are rendered in one place (``main``'s handler): a ``WheelyardError`` prints what
happened and a hint, never a traceback, and exits 1; usage errors exit 2.

A command in a module of its own (as ``server.client_commands``) gives an
``add_parsers(sub)`` and a ``COMMANDS`` mapping of name to handler
``(args, settings, out, err) -> exit code``; registering it here is one line in
``build_parser`` and one in ``COMMANDS``. Every command gets the global options
(``--config``, ``--data-dir``, ``--redis-url``) after its name too, and an option made
with ``server.options.setting_option`` reaches the handler through ``settings``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from builder.config import Settings, load_settings, settings_help
from builder.errors import ConfigurationError, SandboxUnavailable, TargetNotBuildable, WheelyardError
from server import client_commands
from server.ensure import command as ensure_command
from server.index import commands as index_commands
from server.options import GLOBAL_SETTING_OPTIONS, add_global_options, setting_option, setting_values

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # as a tool killed by SIGPIPE
logger = logging.getLogger("wheelyard")
# The log format of this process once a service command configured its logging (builder/logs.py).
_service_format: str | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wheelyard",
        description="Builds the wheels pip cannot find, diagnoses failed builds, publishes them to a private index.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, after_command=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    up = sub.add_parser("up", help="run the whole stack on this machine (embedded Redis unless WHEELYARD_REDIS_URL)")
    setting_option(up, "--api-port", "api_port")
    setting_option(up, "--index-port", "index_port")
    up.add_argument("--no-worker", action="store_true", help="run the API and index only")
    up.add_argument(
        "--targets",
        help="comma-separated build identifiers the local worker serves (default: all it can)",
    )

    api = sub.add_parser("api", help="run the HTTP API and dashboard")
    setting_option(api, "--host", "api_host")
    setting_option(api, "--port", "api_port")

    index = sub.add_parser("index", help="run the private package index (pypiserver)")
    setting_option(index, "--host", "index_host")
    setting_option(index, "--port", "index_port")

    worker = sub.add_parser("worker", help="run a build worker for the targets this host can build")
    worker.add_argument("--probe", action="store_true", help="print what this worker can build, and exit")
    worker.add_argument("--targets", help="comma-separated build identifiers to serve (default: all it can)")
    setting_option(worker, "--concurrency", "worker_concurrency")
    worker.add_argument("--name", help="worker name (default wheelyard-PID@HOST)")

    client_commands.add_parsers(sub)
    ensure_command.add_parser(sub)

    diagnose = sub.add_parser(
        "diagnose",
        help="say what broke in a failed build log (a file, or - for stdin)",
        add_help=False,
    )
    diagnose.add_argument("args", nargs=argparse.REMAINDER)

    sub.add_parser("beat", help="run the scheduler of watch lists (WHEELYARD_WATCH_FILE)")
    config = sub.add_parser("config", help="print the settings every command here would run with (no secrets)")
    config.add_argument("--json", action="store_true", help="as JSON")
    index_commands.add_parsers(sub)
    for name, command in sub.choices.items():
        if name != "diagnose":  # diagnose parses its own arguments
            add_global_options(command, after_command=True)
    return parser


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `diagnose` takes its own options (it is the same tool people run on their pip output).
    position = _command_position(args_list)
    if position is not None and args_list[position] == "diagnose":
        from builder.diagnosis.cli import main as diagnose_main

        return int(diagnose_main(args_list[position + 1 :], stdout=out, stderr=err, wheel_lookup=_upstream_wheels))
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        settings = load_settings(config_file=args.config, **setting_values(args))
        handler = COMMANDS[args.command]
        code = handler(args, settings, out, err)
        out.flush()  # a reader that left is found here, not by the interpreter's flush at exit
        return code
    except WheelyardError as exc:
        if _service_format == "json":
            from builder.logs import log_error

            log_error(logger, exc.message, exc.reference, exc.hint)
        else:
            _render(exc, err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader left early (`wheelyard config | head -1`): stop quietly, as other tools do.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for the closed pipe is not written again
    at exit (where the interpreter would print its own BrokenPipeError)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _command_position(args_list: list[str]) -> int | None:
    """Where the command is: after the global options (``--data-dir D``) and their values."""
    takes_value = {"--config", *(flag for flag, _ in GLOBAL_SETTING_OPTIONS)}
    position = 0
    while position < len(args_list):
        arg = args_list[position]
        if not arg.startswith("-"):
            return position
        position += 2 if arg in takes_value else 1
    return None


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
def start_service(service: str, settings: Settings, err: TextIO, metrics_dir: str | None = None) -> None:
    """Logging of a service process (JSON lines unless on a terminal), and its metrics directory
    (``metrics_dir`` under the data dir unless PROMETHEUS_MULTIPROC_DIR names one)."""
    global _service_format
    from builder.logs import configure_logging
    from builder.metrics import prepare_multiprocess_dir

    _service_format = configure_logging(service, settings.log_format, err)
    if metrics_dir is not None:
        prepare_multiprocess_dir(settings.data_dir, metrics_dir)


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

    start_service("api", settings, err, metrics_dir="api")
    from server.api import create_app

    app = create_app(settings, resolve_redis_url(settings))
    # log_config=None: uvicorn's records go to the root logger, in this process's format.
    uvicorn.run(
        app, host=settings.api_host, port=settings.api_port, log_level="info", access_log=False, log_config=None
    )
    return EXIT_OK


def cmd_index(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    start_service("index", settings, err, metrics_dir="index")
    from builder.metrics import serve_metrics
    from server.index.serve import serve

    logger.info("wheelyard index: metrics at %s", serve_metrics(settings.metrics_host, settings.index_metrics_port))
    return serve(settings)


def _worker_targets(settings: Settings, selected: str | None) -> tuple[Any, list[Any]]:
    """What this host can build, narrowed to ``--targets`` where given."""
    from builder.capabilities import checked_capabilities
    from builder.targets import is_pattern, parse_targets, split_target_list

    # Every interpreter found is run in the build sandbox as the build user; one that fails is not served.
    capabilities = checked_capabilities(settings)
    targets = capabilities.targets()
    why = "".join("\n" + u.line() for u in capabilities.unusable)
    if selected:
        items = split_target_list(selected)
        named = [i for i in items if not is_pattern(i)]
        wanted = parse_targets(named) if named else []
        missing = [t.identifier for t in wanted if t not in targets]
        if missing:
            raise TargetNotBuildable(f"this worker cannot build {', '.join(missing)}{why}")
        # A pattern narrows to what this host builds; a named identifier must be buildable.
        patterns = [i for i in items if is_pattern(i)]
        if patterns:
            wanted += [t for t in parse_targets(patterns) if t in targets and t not in wanted]
        if not wanted:
            raise TargetNotBuildable(f"no target this worker can build matches {selected!r}")
        targets = wanted
    return capabilities, targets


def _check_build_data(settings: Settings) -> None:
    """The remedies and the per-package overrides, validated before the worker takes a build."""
    from builder.overrides import load_overrides
    from builder.remedies import load_remedies

    load_remedies()
    load_overrides(settings.overrides)


def _probe(settings: Settings, capabilities: Any, queues: list[str], sandbox_ok: bool) -> dict[str, Any]:
    """What ``wheelyard worker --probe`` reports: what this host builds, and with what."""
    from builder.parallelism import resolve_parallelism
    from builder.sandbox import limit_mechanisms

    data: dict[str, Any] = capabilities.to_dict()
    data["queues"] = queues
    limits = limit_mechanisms(settings.limits)
    data["sandbox"] = {"enabled": settings.sandbox, "available": sandbox_ok, "limits": limits}
    data["parallelism"] = dataclasses.asdict(resolve_parallelism(settings))
    return data


def cmd_worker(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from builder.logs import celery_logs_to_root
    from builder.metrics import serve_metrics
    from builder.parallelism import resolve_parallelism
    from builder.records import BuildStore, connect
    from builder.sandbox import sandbox_available
    from builder.tasks import build_sender, create_celery_app, register_tasks
    from builder.workdir import sweep
    from builder.worker import default_worker_name, worker_queues

    if not args.probe:
        name = args.name or default_worker_name()
        start_service("worker", settings, err, metrics_dir=f"worker-{_file_name(name)}")
    capabilities, targets = _worker_targets(settings, args.targets)
    _check_build_data(settings)
    for unusable in capabilities.unusable:
        if args.probe:
            err.write(unusable.line() + "\n")
        else:
            logger.warning("%s", unusable.line())
    queues = worker_queues(targets)
    sandbox_ok = sandbox_available()
    if args.probe:
        out.write(json.dumps(_probe(settings, capabilities, queues, sandbox_ok), indent=2) + "\n")
        return EXIT_OK
    if settings.sandbox and not sandbox_ok:
        # Refuse to start rather than fail every build: strangers' code must not run unconfined by accident.
        raise SandboxUnavailable()
    redis_url = resolve_redis_url(settings)
    _pool_processes_die_with(os.getpid())
    celery_logs_to_root()
    parallelism = resolve_parallelism(settings)
    concurrency = parallelism.concurrency
    settings = settings.with_overrides(worker_concurrency=concurrency, build_jobs=parallelism.jobs)
    app = create_celery_app(settings, redis_url)
    register_tasks(app, settings, redis_url, capabilities, name, upload_password(settings))
    store = BuildStore(connect(redis_url))
    sweep(settings.data_dir / "work")  # what attempts killed with an earlier worker left
    metrics_url = serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    heartbeat = _start_heartbeat(store, build_sender(app), name, capabilities, targets, metrics_url)
    logger.info(
        "wheelyard worker %s: serving %s; %s; metrics at %s", name, ", ".join(queues), parallelism.line(), metrics_url
    )
    try:
        app.worker_main(_celery_worker_argv(queues, name, concurrency))
    finally:
        heartbeat.stop()
    return EXIT_OK


def _start_heartbeat(
    store: Any, send: Any, name: str, capabilities: Any, targets: list[Any], metrics_url: str | None
) -> Any:
    """The worker's registration, kept alive; each beat recovers lost builds and claims the builds
    waiting for a capability this worker has (at registration too: they run when it joins)."""
    from builder.routing import WaitingBuilds
    from builder.worker import Heartbeat, LostBuilds, worker_info

    lost = LostBuilds(store, send)
    waiting = WaitingBuilds(store, name, [t.identifier for t in targets], capabilities.advertised(), send)
    heartbeat = Heartbeat(
        store,
        name,
        worker_info(capabilities, targets, name, metrics_url),
        on_beat=lambda: (lost.check(), waiting.check()),
    )
    heartbeat.start()
    waiting.check()
    return heartbeat


def _celery_worker_argv(queues: list[str], name: str, concurrency: int) -> list[str]:
    # --quiet: no banner on stdout, every line of a worker is a log record.
    argv = ["--quiet", "worker", "-Q", ",".join(queues), "-n", name, "-c", str(concurrency), "-P", "prefork"]
    return [*argv, "--loglevel", "INFO", "--without-gossip", "--without-mingle"]


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100]


def _pool_processes_die_with(worker_pid: int) -> None:
    """Each pool process is killed when the worker's main process dies (kill -9, the OOM killer).

    Billiard's pool processes do not notice their parent's death: one would go on with its
    build unsupervised, while the job, never acknowledged, is handed out again.
    """
    from celery.signals import worker_process_init

    def arm(**_: object) -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != worker_pid:  # the worker died before prctl took effect
            os._exit(1)

    worker_process_init.connect(arm, weak=False)


def cmd_beat(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    start_service("beat", settings, err)
    from server.schedule import run_beat

    run_beat(settings, resolve_redis_url(settings))
    return EXIT_OK


def cmd_up(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    start_service("up", settings, err)
    from server.stack import run_stack

    return run_stack(settings, worker=not args.no_worker, targets=args.targets, out=out, err=err)


def cmd_config(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    public = settings.public()
    if args.json:
        out.write(json.dumps(public, indent=2) + "\n")
        return EXIT_OK
    for key, value in public.items():
        out.write(f"{key} = {json.dumps(value)}\n")
    return EXIT_OK


COMMANDS = {
    "up": cmd_up,
    "api": cmd_api,
    "index": cmd_index,
    "worker": cmd_worker,
    "beat": cmd_beat,
    **client_commands.COMMANDS,
    "ensure": ensure_command.cmd_ensure,
    "config": cmd_config,
    **index_commands.COMMANDS,
}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
