"""All of wheelyard's configuration, declared once.

Each setting is one field below, made with ``setting()``: its name (the attribute, and
the key in a configuration file), its type (the annotation), its default, its
environment variable and its help. Everything else is derived from these fields: the
loader and its validation (``load_settings``), the environment handed to child processes
(``to_environ``), the settings part of ``wheelyard --help`` and the table in
docs/configuration.md (``python -m builder.config``; a test checks the file is current).

To add a setting, add a field with ``setting(...)`` to ``Settings`` (or ``Limits``, for a
limit of one build) and regenerate docs/configuration.md.

Layers are resolved once, in this order (later wins): built-in defaults, a TOML file
(``--config`` or ``$WHEELYARD_CONFIG``, table ``[wheelyard]``, limits in
``[wheelyard.limits]``), the environment (``WHEELYARD_*``), and command-line options.
Nothing reads the environment after that: every component receives a ``Settings``.

Secrets (index password, API token) come from the environment or from files named by
``*_FILE`` variables; they are never logged, and ``Settings.public()`` leaves them out.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from builder.buildlog import DEFAULT_HEAD_BYTES, DEFAULT_TAIL_BYTES
from builder.config_table import (
    Setting,
    SettingError,
    declared_settings,
    render_text,
    setting,
)
from builder.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_UPSTREAM = "https://pypi.org/simple/"


@dataclass(frozen=True)
class Limits:
    """Limits a single build runs under; a build that breaks one is killed with its process tree."""

    wall_seconds: int = setting(
        1800, env="WHEELYARD_BUILD_TIMEOUT", minimum=1, help="wall-clock seconds a build may take"
    )
    cpu_seconds: int = setting(3600, env="WHEELYARD_BUILD_CPU_SECONDS", minimum=1, help="CPU seconds a build may use")
    memory_bytes: int = setting(
        4 * 1024**3, env="WHEELYARD_BUILD_MEMORY", minimum=16 * 1024**2, help="bytes of memory a build may use"
    )
    processes: int = setting(512, env="WHEELYARD_BUILD_PROCESSES", minimum=1, help="processes a build may run at once")
    disk_bytes: int = setting(
        8 * 1024**3, env="WHEELYARD_BUILD_DISK", minimum=1024**2, help="bytes a build may write to its disk"
    )
    # Files, directories and links in the build's work directory (inodes: blocks alone let
    # 300,000 empty files through).
    files: int = setting(
        200_000,
        env="WHEELYARD_BUILD_FILES",
        minimum=1,
        help="files and directories a build may have in its work directory",
    )
    # A hard cap far above any real build (big numeric builds print tens of MiB of warnings): it
    # stops a build that prints without end. What the record keeps is log_head/tail_bytes.
    log_bytes: int = setting(
        1024**3,
        env="WHEELYARD_BUILD_LOG_BYTES",
        minimum=4096,
        help="bytes of output a build may print before it is killed as log-too-large",
    )


@dataclass(frozen=True)
class Settings:
    data_dir: Path = setting(
        factory=lambda: Path.home() / ".wheelyard",
        env="WHEELYARD_DATA_DIR",
        shown_default="~/.wheelyard",
        help="wheels, logs and the embedded Redis's files",
    )
    redis_url: str | None = setting(
        None, env="WHEELYARD_REDIS_URL", help="the Redis to use (unset: `wheelyard up` starts one in the data dir)"
    )
    upstream_index: str = setting(
        DEFAULT_UPSTREAM, env="WHEELYARD_UPSTREAM_INDEX", help="the simple index sdists and wheels come from"
    )
    # The private index (pypiserver): where wheels are uploaded and where pip reads them.
    index_host: str = setting("127.0.0.1", env="WHEELYARD_INDEX_HOST", help="address the index listens on")
    index_port: int = setting(8080, env="WHEELYARD_INDEX_PORT", minimum=1, maximum=65535, help="port of the index")
    index_url: str = setting(
        "http://127.0.0.1:8080",
        env="WHEELYARD_INDEX_URL",
        shown_default="http://INDEX_HOST:INDEX_PORT",
        help="where workers and clients reach the index",
    )
    index_user: str = setting("wheelyard", env="WHEELYARD_INDEX_USER", help="the index's upload user")
    index_password: str | None = setting(
        None, env="WHEELYARD_INDEX_PASSWORD", secret=True, help="the upload password (unset: generated in the data dir)"
    )
    index_read_password: str | None = setting(
        None, env="WHEELYARD_INDEX_READ_PASSWORD", secret=True, help="a password for reading the index (unset: open)"
    )
    # What serves the index's static pages, and pypiserver (the upload endpoint) behind it.
    index_server: str = setting(
        "auto",
        env="WHEELYARD_INDEX_SERVER",
        help="what serves the index's pages: nginx, embedded, auto (nginx if on PATH) or none (uploads only)",
    )
    index_upload_host: str = setting(
        "127.0.0.1", env="WHEELYARD_INDEX_UPLOAD_HOST", help="address pypiserver (the upload endpoint) listens on"
    )
    index_upload_port: int = setting(
        0, env="WHEELYARD_INDEX_UPLOAD_PORT", minimum=0, maximum=65535, help="its port (0: a free one, on loopback)"
    )
    index_demand_port: int = setting(
        0,
        env="WHEELYARD_INDEX_DEMAND_PORT",
        minimum=0,
        maximum=65535,
        help="UDP port, on the upload endpoint's address, taking nginx's project page requests to report as demand"
        " when nginx runs apart (WHEELYARD_INDEX_SERVER=none; 0: none taken)",
    )
    api_host: str = setting("127.0.0.1", env="WHEELYARD_API_HOST", help="address the API listens on")
    api_port: int = setting(8000, env="WHEELYARD_API_PORT", minimum=1, maximum=65535, help="port of the API")
    api_url: str = setting(
        "http://127.0.0.1:8000",
        env="WHEELYARD_API_URL",
        shown_default="http://API_HOST:API_PORT",
        help="where clients reach the API",
    )
    api_token: str | None = setting(
        None, env="WHEELYARD_API_TOKEN", secret=True, help="a token requests must carry (unset: none needed)"
    )
    # Teams that only run wheels built in-house make every request build from source.
    from_source_default: bool = setting(
        False, env="WHEELYARD_FROM_SOURCE", help="build every request from source, never mirror upstream wheels"
    )
    cargo_vendor_dir: Path | None = setting(
        None, env="WHEELYARD_CARGO_VENDOR_DIR", help="a directory registry of vendored crates for Rust builds"
    )
    # Unset: found as builder/rust_toolchain.py says (rustup's toolchains, then PATH).
    rust_toolchain: Path | None = setting(
        None,
        env="WHEELYARD_RUST_TOOLCHAIN",
        shown_default="found",
        help="the directory with the cargo and rustc Rust builds use (a toolchain's bin directory; "
        "unset: rustup's default toolchain, else cargo on PATH)",
    )
    sandbox: bool = setting(True, env="WHEELYARD_SANDBOX", help="run build hooks in the bubblewrap sandbox")
    # The worker advertises the tools and libraries found on this PATH, so it is the builds' PATH too.
    build_path: str | None = setting(
        None,
        env="WHEELYARD_BUILD_PATH",
        shown_default="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        help="the PATH builds run with; the worker advertises the tools it finds there",
    )
    nearest_release_ttl: int = setting(
        3600,
        env="WHEELYARD_NEAREST_RELEASE_TTL",
        minimum=1,
        help="seconds a project's nearest working releases, read from upstream, are kept in Redis",
    )
    allow_direct_url_requirements: bool = setting(
        False,
        env="WHEELYARD_ALLOW_DIRECT_URL_REQUIREMENTS",
        help="install build requirements of the form 'name @ URL' (a URL of the build's choosing)",
    )
    limits: Limits = field(default_factory=Limits)
    # The manylinux_2_28 images' default.
    manylinux_glibc_max: tuple[int, int] = setting(
        (2, 28), env="WHEELYARD_MANYLINUX_GLIBC_MAX", help="newest glibc (X.Y) a mirrored manylinux wheel may need"
    )
    # Unset: chosen with build_jobs from the host's cores and memory (builder/capabilities.py).
    worker_concurrency: int | None = setting(
        None,
        env="WHEELYARD_WORKER_CONCURRENCY",
        minimum=1,
        shown_default="auto",
        help="builds one worker runs at once (auto: what the cores and memory carry)",
    )
    build_jobs: int | None = setting(
        None,
        env="WHEELYARD_BUILD_JOBS",
        minimum=1,
        shown_default="auto",
        help="parallel jobs one build is told it may use: MAKEFLAGS, CMAKE_BUILD_PARALLEL_LEVEL, "
        "NPY_NUM_BUILD_JOBS, CARGO_BUILD_JOBS (auto: the cores shared among the concurrent builds)",
    )
    log_head_bytes: int = setting(
        DEFAULT_HEAD_BYTES,
        env="WHEELYARD_LOG_HEAD_BYTES",
        minimum=1024,
        help="bytes of a build log's head kept in its record",
    )
    log_tail_bytes: int = setting(
        DEFAULT_TAIL_BYTES,
        env="WHEELYARD_LOG_TAIL_BYTES",
        minimum=1024,
        help="bytes of a build log's tail kept in its record",
    )
    publish_hollow_as_pure: bool = setting(
        False,
        env="WHEELYARD_PUBLISH_HOLLOW_AS_PURE",
        help="publish a platform wheel without compiled code (its extension failed) as py3-none-any "
        "instead of refusing it as hollow-wheel",
    )
    # Remedies (builder/remedies.py, docs/remedies.md) and per-package overrides (docs/overrides.md).
    remedies: bool = setting(
        True, env="WHEELYARD_REMEDIES", help="build a failed build again with the remedy its diagnosis names"
    )
    remedies_skip: str = setting(
        "",
        env="WHEELYARD_REMEDIES_SKIP",
        help="packages (comma-separated names) whose failed builds are never retried with a remedy",
    )
    build_attempts: int = setting(
        3,
        env="WHEELYARD_BUILD_ATTEMPTS",
        minimum=1,
        maximum=6,
        help="attempts a build may take: the first, then one per remedy (1: no remedy is tried)",
    )
    overrides: Path | None = setting(
        None,
        env="WHEELYARD_OVERRIDES",
        help="per-package build overrides: a TOML file or a directory of them (docs/overrides.md)",
    )
    # Watch lists (server/watch, docs/watch.md): ensured every interval by `wheelyard beat`.
    watch_file: Path | None = setting(
        None, env="WHEELYARD_WATCH_FILE", help="a TOML file of watch lists (requirements, locks, projects; targets)"
    )
    watch_interval: int = setting(
        3600, env="WHEELYARD_WATCH_INTERVAL", minimum=1, help="seconds between runs of the watch lists"
    )
    watch_retries: int = setting(
        4, env="WHEELYARD_WATCH_RETRIES", minimum=0, help="times a watched build that failed is built again"
    )
    watch_backoff: int = setting(
        60, env="WHEELYARD_WATCH_BACKOFF", minimum=1, help="seconds before the first retry; doubled for each next"
    )
    prebuild_file: Path | None = setting(
        None,
        env="WHEELYARD_PREBUILD_FILE",
        help="the old prebuild file ('REQUIREMENT TARGET[,TARGET...]' lines): each line is ensured as a watch list",
    )
    prebuild_interval: int = setting(
        3600, env="WHEELYARD_PREBUILD_INTERVAL", minimum=1, help="seconds between runs of the prebuild file"
    )
    # Demand from clients (server/demand, docs/demand.md).
    miss_limit: int = setting(
        10_000, env="WHEELYARD_MISS_LIMIT", minimum=1, help="(project, client target) misses kept; the oldest go first"
    )
    build_on_miss: bool = setting(
        False, env="WHEELYARD_BUILD_ON_MISS", help="ask for the newest release of a project clients missed"
    )
    build_on_miss_cooldown: int = setting(
        3600, env="WHEELYARD_BUILD_ON_MISS_COOLDOWN", minimum=1, help="seconds before one miss is built on again"
    )
    build_on_miss_per_hour: int = setting(
        60, env="WHEELYARD_BUILD_ON_MISS_PER_HOUR", minimum=0, help="misses built on per hour, at most, in all"
    )
    # Operations (docs/operations.md): metrics and logs of every process.
    metrics_host: str = setting(
        "127.0.0.1", env="WHEELYARD_METRICS_HOST", help="address the /metrics of a worker and of the index listen on"
    )
    worker_metrics_port: int = setting(
        0,
        env="WHEELYARD_WORKER_METRICS_PORT",
        minimum=0,
        maximum=65535,
        help="port of a worker's /metrics (0: a free one, named in its registration and GET /api/metrics/targets)",
    )
    index_metrics_port: int = setting(
        0,
        env="WHEELYARD_INDEX_METRICS_PORT",
        minimum=0,
        maximum=65535,
        help="port of the index's /metrics (0: a free one, named in its log)",
    )
    log_format: str = setting(
        "auto",
        env="WHEELYARD_LOG_FORMAT",
        help="json (one object per line), text, or auto: text on a terminal, json otherwise",
    )
    extra_interpreters: tuple[Path, ...] = setting(
        (),
        env="WHEELYARD_INTERPRETERS",
        help="python executables a worker uses besides those it finds (separated by ':')",
    )

    @property
    def wheel_dir(self) -> Path:
        return self.data_dir / "wheels"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def simple_url(self) -> str:
        return self.index_url.rstrip("/") + "/simple/"

    def public(self) -> dict[str, Any]:
        """The settings as plain data, without secrets: safe to print or log."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "***" if value else None
            elif isinstance(value, Path):
                value = str(value)
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = [v if isinstance(v, int) else str(v) for v in value]
            out[f.name] = value
        return out

    def with_overrides(self, **overrides: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


SETTINGS: tuple[Setting, ...] = declared_settings(Settings, {"limits": Limits})
SECRET_FIELDS = frozenset(s.name for s in SETTINGS if s.secret)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}
# URLs that follow their host and port unless they are set themselves.
_DERIVED_URLS = {"index_url": ("index_host", "index_port"), "api_url": ("api_host", "api_port")}


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    **cli: Any,
) -> Settings:
    """Resolve defaults, file, environment and CLI options into one ``Settings``.

    ``cli`` holds options by setting name (``limits.wall_seconds`` style keys through
    ``**{...}``); strings are parsed as the environment's are, other values are checked.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or (Path(env["WHEELYARD_CONFIG"]) if env.get("WHEELYARD_CONFIG") else None)
    try:
        if path is not None:
            values.update(_from_file(path))
        values.update(_from_environ(env))
        values.update(_from_cli(cli))
    except SettingError as exc:
        raise ConfigurationError(exc.message, exc.hint) from None
    for url, (host, port) in _DERIVED_URLS.items():
        if url not in values:
            where = [values.get(key, SETTINGS_BY_KEY[key].default) for key in (host, port)]
            values[url] = "http://{}:{}".format(*where)
    top = {k: v for k, v in values.items() if "." not in k}
    limits = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("limits.")}
    return Settings(**top, limits=Limits(**limits))


def to_environ(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process load exactly ``settings`` (secrets included)."""
    env: dict[str, str] = {}
    for s in SETTINGS:
        value = s.get(settings)
        if value is None or value == ():
            continue
        env[s.env] = render_text(s, value)
    return env


def _from_file(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingError(f"cannot read the config file {path}: {exc}", "fix the file; it is TOML") from None
    stray = sorted(set(document) - {"wheelyard"})
    if stray:
        raise SettingError(
            f"{path} has {', '.join(map(repr, stray))} outside the [wheelyard] table",
            "put every setting under [wheelyard] (limits under [wheelyard.limits])",
        )
    table = document.get("wheelyard", {})
    if not isinstance(table, dict):
        raise SettingError(f"wheelyard in {path} is not a table", "write the settings under a [wheelyard] line")
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key == "limits" and isinstance(value, dict):
            flat.update({f"limits.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    values: dict[str, Any] = {}
    for key, value in flat.items():
        s = SETTINGS_BY_KEY.get(key)
        if s is None:
            raise SettingError(f"unknown setting {key!r} in {path}", _closest(key))
        values[key] = s.from_file(value, f"{key} in {path}")
    return values


def _from_environ(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for s in SETTINGS:
        text = env.get(s.env)
        source = s.env
        if not text and s.secret and env.get(s.env + "_FILE"):
            source = s.env + "_FILE"
            text = _read_secret_file(source, env[source])
        if text:  # an empty variable is an unset one
            values[s.key] = s.from_text(text, source)
    return values


def _from_cli(cli: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in cli.items():
        if value is None:
            continue
        s = SETTINGS_BY_KEY.get(key)
        if s is None:
            raise SettingError(f"unknown setting {key!r}", _closest(key))
        values[key] = s.from_text(value, key) if isinstance(value, str) else s.from_file(value, key)
    return values


def _read_secret_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SettingError(
            f"cannot read {name}={path}: {exc.strerror}",
            f"point {name} at a readable file, or set {name.removesuffix('_FILE')} instead",
        ) from None


def _closest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(SETTINGS_BY_KEY), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}? (every setting: docs/configuration.md, or `wheelyard --help`)"
    return "every setting is listed in docs/configuration.md and in `wheelyard --help`"


def settings_help() -> str:
    """The settings part of ``wheelyard --help``: each environment variable, file key and default."""
    lines = ["settings (environment variable, [wheelyard] key in --config, default):"]
    for s in SETTINGS:
        lines.append(f"  {s.env:<34} {s.key:<22} {s.shown_default}")
        lines.append(f"      {s.help}")
    return "\n".join(lines)


def markdown_table() -> str:
    """The table of docs/configuration.md."""
    rows = ["| file key | environment variable | type | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        env = f"`{s.env}`" + (f" (or `{s.env}_FILE`)" if s.secret else "")
        rows.append(f"| `{s.key}` | {env} | {s.kind_name} | `{s.shown_default}` | {s.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
