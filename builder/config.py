"""All of wheelyard's configuration, in one typed place.

Layers are resolved once, in this order (later wins): built-in defaults, a TOML file
(``--config`` or ``$WHEELYARD_CONFIG``, table ``[wheelyard]``), the environment
(``WHEELYARD_*``), and command-line options. Nothing reads the environment after that:
every component receives a ``Settings``.

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

from builder.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_UPSTREAM = "https://pypi.org/simple/"
SECRET_FIELDS = frozenset({"index_password", "api_token", "index_read_password"})


@dataclass(frozen=True)
class Limits:
    """Limits a single build runs under; a build that breaks one is killed with its process tree."""

    wall_seconds: int = 1800
    cpu_seconds: int = 3600
    memory_bytes: int = 4 * 1024**3
    processes: int = 512
    disk_bytes: int = 8 * 1024**3
    # Files, directories and links in the build's work directory (inodes: blocks alone let
    # 300,000 empty files through).
    files: int = 200_000
    log_bytes: int = 16 * 1024**2


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path.home() / ".wheelyard")
    # None: start an embedded Redis in data_dir.
    redis_url: str | None = None
    upstream_index: str = DEFAULT_UPSTREAM
    # The private index (pypiserver): where wheels are uploaded and where pip reads them.
    index_host: str = "127.0.0.1"
    index_port: int = 8080
    index_url: str = "http://127.0.0.1:8080"
    index_user: str = "wheelyard"
    index_password: str | None = None
    # Reading the index is open unless a read password is set.
    index_read_password: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_url: str = "http://127.0.0.1:8000"
    api_token: str | None = None
    # Teams that only run wheels built in-house make every request build from source.
    from_source_default: bool = False
    # A cargo source replacement for Rust builds: a directory registry of vendored crates.
    cargo_vendor_dir: Path | None = None
    sandbox: bool = True
    limits: Limits = field(default_factory=Limits)
    # Newest manylinux glibc a mirrored wheel may need (the manylinux_2_28 images' default).
    manylinux_glibc_max: tuple[int, int] = (2, 28)
    worker_concurrency: int = 1
    # Scheduled prebuilds: a file of "REQUIREMENT TARGET[,TARGET...]" lines, submitted every interval.
    prebuild_file: Path | None = None
    prebuild_interval: int = 3600
    # Interpreters a worker may use besides those it discovers (paths to python executables).
    extra_interpreters: tuple[Path, ...] = ()

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
                value = [str(v) for v in value]
            out[f.name] = value
        return out

    def with_overrides(self, **overrides: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _read_secret(env: Mapping[str, str], name: str) -> str | None:
    if name in env:
        return env[name]
    path = env.get(name + "_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read {name}_FILE={path}: {exc.strerror}",
                f"point {name}_FILE at a readable file, or set {name} instead",
            ) from exc
    return None


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigurationError(f"{name}={value!r} is not a boolean", "use true or false")


def _int(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={value!r} is not a whole number", None) from None


_LIMIT_ENV = {
    "WHEELYARD_BUILD_TIMEOUT": "wall_seconds",
    "WHEELYARD_BUILD_CPU_SECONDS": "cpu_seconds",
    "WHEELYARD_BUILD_MEMORY": "memory_bytes",
    "WHEELYARD_BUILD_PROCESSES": "processes",
    "WHEELYARD_BUILD_DISK": "disk_bytes",
    "WHEELYARD_BUILD_FILES": "files",
    "WHEELYARD_BUILD_LOG_BYTES": "log_bytes",
}


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    **cli: Any,
) -> Settings:
    """Resolve defaults, file, environment and CLI options into one ``Settings``."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    limits: dict[str, Any] = {}

    path = config_file or (Path(env["WHEELYARD_CONFIG"]) if env.get("WHEELYARD_CONFIG") else None)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text()).get("wheelyard", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read the config file {path}: {exc}", None) from exc
        known = {f.name for f in fields(Settings)}
        for key, value in data.items():
            if key == "limits" and isinstance(value, dict):
                limits.update(value)
            elif key in known:
                values[key] = value
            else:
                raise ConfigurationError(
                    f"unknown setting {key!r} in {path}",
                    f"known settings: {', '.join(sorted(known))}",
                )

    def env_str(name: str, key: str) -> None:
        if env.get(name):
            values[key] = env[name]

    env_str("WHEELYARD_DATA_DIR", "data_dir")
    env_str("WHEELYARD_REDIS_URL", "redis_url")
    env_str("WHEELYARD_UPSTREAM_INDEX", "upstream_index")
    env_str("WHEELYARD_INDEX_URL", "index_url")
    env_str("WHEELYARD_INDEX_HOST", "index_host")
    env_str("WHEELYARD_INDEX_USER", "index_user")
    env_str("WHEELYARD_API_URL", "api_url")
    env_str("WHEELYARD_API_HOST", "api_host")
    env_str("WHEELYARD_CARGO_VENDOR_DIR", "cargo_vendor_dir")
    env_str("WHEELYARD_PREBUILD_FILE", "prebuild_file")
    if env.get("WHEELYARD_PREBUILD_INTERVAL"):
        values["prebuild_interval"] = _int("WHEELYARD_PREBUILD_INTERVAL", env["WHEELYARD_PREBUILD_INTERVAL"])
    if env.get("WHEELYARD_INDEX_PORT"):
        values["index_port"] = _int("WHEELYARD_INDEX_PORT", env["WHEELYARD_INDEX_PORT"])
    if env.get("WHEELYARD_API_PORT"):
        values["api_port"] = _int("WHEELYARD_API_PORT", env["WHEELYARD_API_PORT"])
    if env.get("WHEELYARD_WORKER_CONCURRENCY"):
        values["worker_concurrency"] = _int("WHEELYARD_WORKER_CONCURRENCY", env["WHEELYARD_WORKER_CONCURRENCY"])
    if "WHEELYARD_FROM_SOURCE" in env:
        values["from_source_default"] = _bool("WHEELYARD_FROM_SOURCE", env["WHEELYARD_FROM_SOURCE"])
    if "WHEELYARD_SANDBOX" in env:
        values["sandbox"] = _bool("WHEELYARD_SANDBOX", env["WHEELYARD_SANDBOX"])
    if env.get("WHEELYARD_INTERPRETERS"):
        values["extra_interpreters"] = tuple(Path(p) for p in env["WHEELYARD_INTERPRETERS"].split(os.pathsep) if p)
    for name, key in _LIMIT_ENV.items():
        if env.get(name):
            limits[key] = _int(name, env[name])
    for name, key in (
        ("WHEELYARD_INDEX_PASSWORD", "index_password"),
        ("WHEELYARD_INDEX_READ_PASSWORD", "index_read_password"),
        ("WHEELYARD_API_TOKEN", "api_token"),
    ):
        secret = _read_secret(env, name)
        if secret:
            values[key] = secret

    values.update({k: v for k, v in cli.items() if v is not None and k != "limits"})
    if isinstance(cli.get("limits"), dict):
        limits.update(cli["limits"])

    for key in ("data_dir", "cargo_vendor_dir", "prebuild_file"):
        if values.get(key) is not None:
            values[key] = Path(values[key]).expanduser().resolve()
    if "manylinux_glibc_max" in values:
        values["manylinux_glibc_max"] = tuple(values["manylinux_glibc_max"])
    known_limits = {f.name for f in fields(Limits)}
    unknown = set(limits) - known_limits
    if unknown:
        raise ConfigurationError(
            f"unknown limit(s): {', '.join(sorted(unknown))}",
            f"known: {', '.join(sorted(known_limits))}",
        )
    values["limits"] = Limits(**{k: _int(k, v) for k, v in limits.items()})
    # Derived URLs follow the host/port unless they were set on their own.
    if "index_url" not in values:
        values["index_url"] = f"http://{values.get('index_host', '127.0.0.1')}:{values.get('index_port', 8080)}"
    if "api_url" not in values:
        values["api_url"] = f"http://{values.get('api_host', '127.0.0.1')}:{values.get('api_port', 8000)}"
    try:
        return Settings(**values)
    except TypeError as exc:
        raise ConfigurationError(f"invalid settings: {exc}", None) from exc
