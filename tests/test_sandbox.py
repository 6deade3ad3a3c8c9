"""The build sandbox, on real processes: hostile in-tree PEP 517 backends, one per failure mode.

Each project's ``build-backend`` is a module inside the project (``backend-path``), so
``build.ProjectBuilder(..., runner=sandbox.run)`` needs neither pip nor the network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from build import BuildBackendException, ProjectBuilder

from builder import sandbox as sandbox_mod
from builder import tools
from builder.buildlog import FileBuildLog
from builder.config import Limits, Settings
from builder.sandbox import (
    LimitExceeded,
    Sandbox,
    bubblewrap,
    build_environment,
    cgroups,
    marker_line,
    process_tree,
    sandbox_available,
)
from builder.sandbox.bubblewrap import Bubblewrap
from builder.secrets import is_secret_variable
from tests.conftest import wait_until

HAVE_BWRAP = sandbox_available()
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap does not work on this host")

SMALL = Limits(
    wall_seconds=60,
    cpu_seconds=60,
    memory_bytes=1024**3,
    processes=64,
    disk_bytes=256 * 1024**2,
    log_bytes=1024**2,
)

# The body of build_wheel runs first; then a valid wheel is written. ``extra`` files
# named in EXTRA are put into the wheel (how a hostile build would smuggle data out).
BACKEND = """\
import os, sys, zipfile
EXTRA = {{}}

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
{body}
    name = "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        z.writestr("demo-1.0.dist-info/METADATA",
                   "Metadata-Version: 2.1\\nName: demo\\nVersion: 1.0\\n")
        z.writestr("demo-1.0.dist-info/WHEEL",
                   "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\n"
                   "Tag: py3-none-any\\n")
        for arcname, data in EXTRA.items():
            z.writestr("demo/" + arcname, data)
        z.writestr("demo-1.0.dist-info/RECORD", "")
    return name
"""

PYPROJECT = """\
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]
"""


def write_project(workdir: Path, body: str) -> Path:
    src = workdir / "src"
    src.mkdir(parents=True)
    (src / "pyproject.toml").write_text(PYPROJECT)
    body = textwrap.indent(textwrap.dedent(body), "    ")
    (src / "backend.py").write_text(BACKEND.format(body=body))
    return src


def build(sb: Sandbox, src: Path) -> Path:
    """Build a wheel as the pipeline does; a broken limit comes out as LimitExceeded."""
    builder = ProjectBuilder(str(src), python_executable=sys.executable, runner=sb.run)
    try:
        return Path(builder.build("wheel", str(sb.workdir / "dist")))
    except BuildBackendException as exc:
        # build wraps whatever the runner raises; the sandbox keeps the limit it enforced.
        if isinstance(exc.exception, LimitExceeded):
            assert sb.exceeded is exc.exception
            raise exc.exception from None
        raise


Project = Callable[[Path], Path]


def project(body: str) -> Project:
    return lambda workdir: write_project(workdir, body)


def leftover_cgroups() -> set[Path]:
    """This test process's build cgroups (named for its pid: test sessions side by side make their own)."""
    bases = {base for base, _ in cgroups.own_hierarchies().values()}
    return {child for base in bases for child in base.glob(f"wheelyard-{os.getpid()}-*")}


@pytest.fixture(autouse=True)
def no_cgroup_left_behind() -> Iterator[None]:
    before = leftover_cgroups()
    yield
    assert leftover_cgroups() - before == set()


def processes_under(root: Path) -> list[int]:
    """Processes whose working directory is inside ``root`` (what a build leaves running)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == str(root) or cwd.startswith(str(root) + "/"):
            found.append(int(entry))
    return found


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A directory outside /tmp: the sandbox shows it (read-only) unless it is hidden."""
    path = Path(tempfile.mkdtemp(prefix="wheelyard-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    logs: list[FileBuildLog] = []

    def make(name: str = "build", *, limits: Limits = SMALL, **kw: object) -> Sandbox:
        workdir = tmp_path / name
        workdir.mkdir()
        log = FileBuildLog(tmp_path / f"{name}.log")
        logs.append(log)
        kw.setdefault("enabled", HAVE_BWRAP)
        return Sandbox(limits=limits, workdir=workdir, log=log, **kw)  # type: ignore[arg-type]

    yield make
    for log in logs:
        log.close()


def assert_normal_build_works(make_sandbox: Callable[..., Sandbox], normal_project: Project, **kw: object) -> None:
    sb = make_sandbox(f"normal-{uuid.uuid4().hex[:6]}", **kw)
    wheel = build(sb, normal_project(sb.workdir))
    assert wheel.parent == sb.workdir / "dist" and wheel.is_file()


def read_log(sb: Sandbox) -> str:
    assert isinstance(sb.log, FileBuildLog)
    return sb.log.path.read_text(errors="replace")


# --- one fixture per failure mode ----------------------------------------------------------


@pytest.fixture
def normal_project() -> Project:
    return project('print("building demo")')


@pytest.fixture
def sleeps_forever() -> Project:
    return project("import time\ntime.sleep(10**6)")


@pytest.fixture
def fork_bomb() -> Project:
    return project(
        """
        import time
        for _ in range(100000):
            try:
                os.fork()
            except OSError:
                pass
        time.sleep(10**6)
        """
    )


@pytest.fixture
def memory_hog() -> Project:
    # 8 GiB, touched (b"x" * n writes every page), against a 1 GiB limit.
    return project('hog = b"x" * (8 * 1024**3)\nprint(len(hog))')


@pytest.fixture
def secret_reader() -> Callable[[Path, Path], Project]:
    def make(secret_file: Path, data_dir: Path) -> Project:
        return project(
            f"""
            import glob
            EXTRA["environ"] = repr(dict(os.environ))
            found = glob.glob({str(data_dir)!r} + "/**", recursive=True)
            for path in [{str(secret_file)!r}, *found, "/proc/1/environ", "/proc/self/environ"]:
                try:
                    with open(path, "rb") as f:
                        EXTRA[path.strip("/").replace("/", "_")] = f.read()
                except OSError as exc:
                    print("cannot read", path, exc)
            """
        )

    return make


@pytest.fixture
def network_client() -> Project:
    return project(
        """
        import socket
        try:
            socket.create_connection(("127.0.0.1", 6379), timeout=5).close()
            EXTRA["net"] = "connected"
        except OSError as exc:
            EXTRA["net"] = "failed: " + repr(exc)
        """
    )


@pytest.fixture
def escape_writer() -> Callable[[list[str]], Project]:
    def make(targets: list[str]) -> Project:
        return project(
            f"""
            results = []
            for path in {targets!r}:
                try:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "w") as f:
                        f.write("pwned")
                    results.append("wrote " + path)
                except OSError as exc:
                    results.append("failed " + path + " " + repr(exc))
            EXTRA["writes"] = "\\n".join(results)
            """
        )

    return make


@pytest.fixture
def log_flood() -> Project:
    # 1 GB of output.
    return project(
        """
        line = "x" * 1023 + "\\n"
        for _ in range(1024 * 1024):
            sys.stdout.write(line)
        """
    )


@pytest.fixture
def tree_spawner() -> Project:
    # Children in the same process group, a grandchild, then the hook hangs.
    return project(
        """
        import subprocess, time
        for _ in range(3):
            subprocess.Popen(["sleep", "1000"])
        subprocess.Popen(["sh", "-c", "sleep 1000 & sleep 1000"])
        time.sleep(10**6)
        """
    )


# --- tests ---------------------------------------------------------------------------------


def test_normal_build_lands_in_workdir(make_sandbox: Callable[..., Sandbox], normal_project: Project) -> None:
    sb = make_sandbox()
    wheel = build(sb, normal_project(sb.workdir))
    assert wheel == sb.workdir / "dist" / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        assert "demo-1.0.dist-info/METADATA" in z.namelist()
    assert "building demo" in read_log(sb)
    assert processes_under(sb.workdir) == []


def test_sleeps_forever_times_out(
    make_sandbox: Callable[..., Sandbox], sleeps_forever: Project, normal_project: Project
) -> None:
    sb = make_sandbox(limits=Limits(**{**SMALL.__dict__, "wall_seconds": 3}))
    start = time.monotonic()
    with pytest.raises(LimitExceeded) as info:
        build(sb, sleeps_forever(sb.workdir))
    elapsed = time.monotonic() - start
    assert (info.value.cause, info.value.limit) == ("timeout", 3)
    assert info.value.reference == "build-limit-exceeded"
    assert 3 <= elapsed < 3 + process_tree.TERMINATE_GRACE_SECONDS + 5
    assert read_log(sb).splitlines()[-1] == "wheelyard: build killed: timeout after 3 s"
    assert processes_under(sb.workdir) == []
    assert_normal_build_works(make_sandbox, normal_project)


@pytest.fixture(params=["cgroups", "rlimits"])
def limit_mechanism(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Cgroups where the host lets the worker make them; rlimits and /proc where not."""
    if request.param == "rlimits":
        monkeypatch.setattr(cgroups.Cgroup, "create", classmethod(lambda cls, limits: None))
    else:
        probe = cgroups.Cgroup.create(SMALL)
        if probe is None:
            pytest.skip("no cgroup can be made here")
        probe.remove()
    return str(request.param)


def test_fork_bomb_is_stopped_and_leaves_nothing(
    make_sandbox: Callable[..., Sandbox],
    fork_bomb: Project,
    normal_project: Project,
    limit_mechanism: str,
) -> None:
    sb = make_sandbox()
    start = time.monotonic()
    with pytest.raises(LimitExceeded) as info:
        build(sb, fork_bomb(sb.workdir))
    assert (info.value.cause, info.value.limit) == ("too-many-processes", 64)
    assert time.monotonic() - start < 30
    assert read_log(sb).count("wheelyard: build killed:") == 1
    assert marker_line("too-many-processes", 64) in read_log(sb)
    assert processes_under(sb.workdir) == []
    assert_normal_build_works(make_sandbox, normal_project)


def test_memory_hog_is_killed(
    make_sandbox: Callable[..., Sandbox],
    memory_hog: Project,
    normal_project: Project,
    limit_mechanism: str,
) -> None:
    sb = make_sandbox()
    with pytest.raises(LimitExceeded) as info:
        build(sb, memory_hog(sb.workdir))
    assert (info.value.cause, info.value.limit) == ("out-of-memory", 1024**3)
    assert marker_line("out-of-memory", 1024**3) in read_log(sb)
    assert str(8 * 1024**3) not in read_log(sb)  # the allocation never completed
    assert processes_under(sb.workdir) == []
    assert_normal_build_works(make_sandbox, normal_project)


def build_with_extra_secret(sb: Sandbox, src: Path, secret: str) -> Path:
    # build passes extra_environ through to the runner: a secret there is dropped too.
    return Path(
        ProjectBuilder(
            str(src),
            python_executable=sys.executable,
            runner=lambda cmd, cwd=None, extra_environ=None: sb.run(
                cmd, cwd, {**(extra_environ or {}), "WHEELYARD_API_TOKEN": secret}
            ),
        ).build("wheel", str(sb.workdir / "dist"))
    )


def wheel_bytes(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        return b"".join(n.encode() + z.read(n) for n in z.namelist())


@needs_bwrap
def test_secret_reader_gets_no_secret(
    make_sandbox: Callable[..., Sandbox],
    secret_reader: Callable[[Path, Path], Project],
    normal_project: Project,
    host_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    monkeypatch.setenv("WHEELYARD_INDEX_PASSWORD", secret)
    monkeypatch.setenv("SOME_API_TOKEN", secret)
    config_dir = host_dir / "etc-wheelyard"
    config_dir.mkdir()
    secret_file = config_dir / "secrets.toml"
    secret_file.write_text(f'index_password = "{secret}"\n')
    secret_file.chmod(0o600)
    data_dir = host_dir / "data"
    (data_dir / "logs").mkdir(parents=True)
    (data_dir / "logs" / "other-build.log").write_text(f"password={secret}\n")
    reader = secret_reader(secret_file, data_dir)

    sb = make_sandbox(hidden=[config_dir, data_dir])
    contents = wheel_bytes(build_with_extra_secret(sb, reader(sb.workdir), secret))
    assert b"demo/environ" in contents  # the build did run and look
    assert secret.encode() not in contents
    assert secret not in read_log(sb)

    # The control: not hidden, the world-readable log is there to read (the 0600 file is
    # still not: the build runs as nobody). So hiding is what keeps the data dir away.
    sb = make_sandbox("unhidden")
    contents = wheel_bytes(build_with_extra_secret(sb, reader(sb.workdir), secret))
    assert f"password={secret}".encode() in contents
    assert f'index_password = "{secret}"'.encode() not in contents
    assert_normal_build_works(make_sandbox, normal_project)


@needs_bwrap
def test_network_client_is_refused(
    make_sandbox: Callable[..., Sandbox], network_client: Project, normal_project: Project
) -> None:
    # Something listens on the host's 127.0.0.1:6379 (as Redis would); the build cannot reach it.
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", 6379))
        except OSError:
            pass  # something (Redis) already listens there: just as good
        else:
            server.listen()
        sb = make_sandbox()
        wheel = build(sb, network_client(sb.workdir))
    with zipfile.ZipFile(wheel) as z:
        outcome = z.read("demo/net").decode()
    assert outcome.startswith("failed"), outcome
    assert_normal_build_works(make_sandbox, normal_project)


@needs_bwrap
def test_escape_writer_writes_nothing_outside(
    make_sandbox: Callable[..., Sandbox],
    escape_writer: Callable[[list[str]], Project],
    normal_project: Project,
    tmp_path: Path,
    host_dir: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    open_dir = host_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # even a directory anyone may write to stays untouched
    token = uuid.uuid4().hex
    home_target = Path.home() / f"wheelyard-pwned-{token}"
    targets = [
        f"/tmp/..{outside}/pwned",
        str(outside / "pwned2"),
        str(open_dir / "pwned3"),
        f"/tmp/../{open_dir}/pwned4",
        str(home_target),
        f"/usr/local/wheelyard-pwned-{token}",
        f"/etc/wheelyard-pwned-{token}",
    ]
    sb = make_sandbox()
    wheel = build(sb, escape_writer(targets)(sb.workdir))
    with zipfile.ZipFile(wheel) as z:
        report = z.read("demo/writes").decode()
    assert list(outside.iterdir()) == [] and list(open_dir.iterdir()) == []
    assert f"failed {open_dir}/pwned3" in report
    for target in (
        home_target,
        Path(f"/usr/local/wheelyard-pwned-{token}"),
        Path(f"/etc/wheelyard-pwned-{token}"),
    ):
        assert not target.exists()
    # The writes that "succeeded" went to the sandbox's private /tmp and HOME, now gone.
    for line in report.splitlines():
        private = ("/tmp", str(Path.home()))
        assert line.startswith("failed") or line.split()[1].startswith(private), line
    assert_normal_build_works(make_sandbox, normal_project)


def test_log_flood_is_cut_quickly(
    make_sandbox: Callable[..., Sandbox], log_flood: Project, normal_project: Project
) -> None:
    sb = make_sandbox()
    start = time.monotonic()
    with pytest.raises(LimitExceeded) as info:
        build(sb, log_flood(sb.workdir))
    assert time.monotonic() - start < 20
    assert (info.value.cause, info.value.limit) == ("log-too-large", 1024**2)
    assert isinstance(sb.log, FileBuildLog)
    marker = marker_line("log-too-large", 1024**2)
    assert sb.log.path.stat().st_size <= 1024**2 + len(marker) + 2
    assert read_log(sb).splitlines()[-1] == marker
    assert processes_under(sb.workdir) == []
    assert_normal_build_works(make_sandbox, normal_project)


def test_disk_filler_is_stopped(make_sandbox: Callable[..., Sandbox], normal_project: Project) -> None:
    limits = Limits(**{**SMALL.__dict__, "disk_bytes": 32 * 1024**2})
    sb = make_sandbox(limits=limits)
    src = write_project(
        sb.workdir,
        """
        import time
        chunk = b"\\0" * (1024 * 1024)
        for i in range(64):
            with open(f"fill-{i}", "wb") as f:
                f.write(chunk * 4)
                f.flush()
                os.fsync(f.fileno())
        time.sleep(10**6)
    """,
    )
    with pytest.raises(LimitExceeded) as info:
        build(sb, src)
    assert (info.value.cause, info.value.limit) == ("disk-full", 32 * 1024**2)
    assert marker_line("disk-full", 32 * 1024**2) in read_log(sb)
    assert_normal_build_works(make_sandbox, normal_project)


def test_failing_hook_is_a_backend_error(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox()
    src = write_project(sb.workdir, 'raise SystemExit("the backend gave up")')
    with pytest.raises(BuildBackendException) as info:
        build(sb, src)
    assert isinstance(info.value.exception, subprocess.CalledProcessError)
    assert "the backend gave up" in read_log(sb)


def test_one_deadline_across_hook_calls(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(limits=Limits(**{**SMALL.__dict__, "wall_seconds": 3}))
    nap = [sys.executable, "-c", "import time; time.sleep(2)"]
    assert sb.run_command(nap) == 0
    with pytest.raises(LimitExceeded) as info:
        sb.run_command(nap)
    assert info.value.cause == "timeout"


def test_stdin_is_dev_null(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox()
    code = sb.run_command([sys.executable, "-c", "import sys; print(repr(sys.stdin.read()))"])
    assert code == 0
    assert "''" in read_log(sb)


def test_without_bubblewrap_limits_still_hold(
    make_sandbox: Callable[..., Sandbox],
    tree_spawner: Project,
    normal_project: Project,
    limit_mechanism: str,
) -> None:
    sb = make_sandbox(limits=Limits(**{**SMALL.__dict__, "wall_seconds": 3}), enabled=False)
    src = tree_spawner(sb.workdir)
    with pytest.raises(LimitExceeded) as info:
        build(sb, src)
    assert info.value.cause == "timeout"
    log = read_log(sb)
    assert log.startswith("wheelyard: sandbox disabled")
    assert log.splitlines()[-1] == "wheelyard: build killed: timeout after 3 s"
    assert processes_under(sb.workdir) == []
    assert_normal_build_works(make_sandbox, normal_project, enabled=False)


def test_fork_bomb_without_bubblewrap(
    make_sandbox: Callable[..., Sandbox], fork_bomb: Project, normal_project: Project
) -> None:
    sb = make_sandbox(enabled=False)
    with pytest.raises(LimitExceeded) as info:
        build(sb, fork_bomb(sb.workdir))
    assert info.value.cause == "too-many-processes"
    assert processes_under(sb.workdir) == []
    assert_normal_build_works(make_sandbox, normal_project, enabled=False)


def test_build_environment_is_made_from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHEELYARD_INDEX_PASSWORD", "x")
    monkeypatch.setenv("HARMLESS_BUT_INHERITED", "x")
    env = build_environment()
    assert env["LANG"] == "C.UTF-8" and env["TMPDIR"] == "/tmp" and env["HOME"] == "/home/build"
    assert "WHEELYARD_INDEX_PASSWORD" not in env and "HARMLESS_BUT_INHERITED" not in env
    flagged = build_environment({"CFLAGS": "-O2"})
    assert flagged["CFLAGS"] == "-O2" and flagged["CARGO_NET_OFFLINE"] == "true"
    with pytest.raises(ValueError):
        build_environment(extra={"GITHUB_TOKEN": "x"})
    for name in (
        "WHEELYARD_API_TOKEN",
        "REDIS_URL",
        "PIP_INDEX_URL",
        "MY_SECRET",
        "SSH_KEY",
        "DB_PASSWORD",
    ):
        assert is_secret_variable(name)
    assert is_secret_variable("INDEX", "https://user:pw@example.invalid/simple/")
    assert not is_secret_variable("PEP517_BUILD_BACKEND", "setuptools.build_meta")


def test_limit_exceeded_is_a_wheelyard_error() -> None:
    err = LimitExceeded("disk-full", 10)
    assert err.to_dict()["error"] == "build-limit-exceeded"
    assert err.message == "build killed: disk full (limit 10 bytes)"
    with pytest.raises(ValueError):
        LimitExceeded("bored", 1)


@needs_bwrap
def test_sandbox_available_here() -> None:
    assert sandbox_available()


# What a hook sees of its own cgroups and rlimits, printed from inside the sandbox.
SHOW_LIMITS = """\
import resource
print(open("/proc/self/cgroup").read())
for name in ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_CORE"):
    print(name, *resource.getrlimit(getattr(resource, name)))
"""


@pytest.mark.parametrize("enabled", [pytest.param(True, marks=needs_bwrap), False], ids=["bubblewrap", "plain"])
def test_hook_starts_inside_its_cgroup_and_rlimits(make_sandbox: Callable[..., Sandbox], enabled: bool) -> None:
    limits = Limits(**{**SMALL.__dict__, "cpu_seconds": 77, "disk_bytes": 123 * 1024**2})
    sb = make_sandbox(limits=limits, enabled=enabled)
    assert sb.run_command([sys.executable, "-c", SHOW_LIMITS]) == 0
    log = read_log(sb)
    assert "RLIMIT_CPU 77 82" in log
    assert f"RLIMIT_FSIZE {123 * 1024**2} {123 * 1024**2}" in log
    assert "RLIMIT_CORE 0 0" in log
    ours = cgroups.own_hierarchies()
    if ours:
        # Every hierarchy the worker can make a child in holds the hook, so the build
        # cannot fork its way out of the accounting (bubblewrap forks before the exec).
        lines = [line for line in log.splitlines() if line.count(":") >= 2 and line.split(":")[0].isdigit()]
        controllers = {c for line in lines for c in line.split(":")[1].split(",") if "wheelyard-" in line}
        assert {"memory", "pids", "cpuacct"} & set(ours) <= controllers


@needs_bwrap
def test_bubblewrap_failing_to_start_is_a_failed_hook(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox()
    make_argv = Bubblewrap.argv

    def broken(self: Bubblewrap, *args: object, **kw: object) -> list[str]:
        argv = make_argv(self, *args, **kw)  # type: ignore[arg-type]
        return [argv[0], "--no-such-option", *argv[1:]]

    monkeypatch.setattr(Bubblewrap, "argv", broken)
    # bubblewrap exits before it reports a sandbox: the hook fails, nothing waits forever.
    assert sb.run_command([sys.executable, "-c", "pass"]) != 0
    assert "no-such-option" in read_log(sb)


@needs_bwrap
def test_limits_refused_leave_no_process(make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sb = make_sandbox()
    marker = sb.workdir / "ran"

    def refuse(*args: object) -> None:
        raise PermissionError("prlimit refused")

    monkeypatch.setattr(bubblewrap.resource, "prlimit", refuse)
    with pytest.raises(PermissionError):
        sb.run_command(["/bin/sh", "-c", f"touch {marker}; sleep 60"])
    # The sandbox was killed while it waited to be released: the command never ran.
    assert not marker.exists()
    assert processes_under(sb.workdir) == []


def gone(pid: int) -> bool:
    """Whether a process has ended (a zombie waiting for a reaper counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


def test_tool_timeout_kills_everything_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "background.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        tools.run_tool(
            ["/bin/sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"],
            env={"PATH": "/usr/bin:/bin"},
            cwd=tmp_path,
            timeout=1,
        )
    background = int(pidfile.read_text())
    wait_until(lambda: gone(background), 10, "the tool's background process to be killed", interval=0.05)


def test_tool_dies_with_the_worker_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "tool.pid"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from builder.tools import run_tool; "
            f"run_tool(['/bin/sh', '-c', 'echo $$ > {pidfile}; exec sleep 300'], "
            "env={'PATH': '/usr/bin:/bin'}, cwd=sys.argv[1], timeout=600)",
            str(tmp_path),
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        tool = wait_until(
            lambda: pidfile.exists() and pidfile.read_text().strip() and int(pidfile.read_text()), 30, "the tool"
        )
        worker.kill()
        worker.wait()
        wait_until(lambda: gone(tool), 10, "the tool to die with the worker process", interval=0.05)
    finally:
        worker.kill()
        worker.wait()


def test_stale_cgroups_of_dead_worker_processes_are_removed() -> None:
    ours = cgroups.own_hierarchies()
    if not ours:
        pytest.skip("no cgroup hierarchy the worker can make children in")
    dead = subprocess.Popen(["true"])
    dead.wait()
    bases = {base for base, _ in ours.values()}
    stale = [base / f"wheelyard-{dead.pid}-{uuid.uuid4().hex[:8]}" for base in bases]
    for path in stale:
        path.mkdir()
    live = cgroups.Cgroup.create(SMALL)
    assert live is not None
    try:
        assert sandbox_mod.remove_stale_cgroups() >= len(stale)
        assert not any(path.exists() for path in stale)
        assert all(d.exists() for d in live.dirs)  # this process is alive: its cgroup stays
    finally:
        live.remove()
        for path in stale:
            with contextlib.suppress(OSError):
                path.rmdir()


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker hands parts of workdir to the build uid")
def test_only_the_writable_parts_of_workdir_are_the_builds(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox("wd")
    sb.writable = [sb.workdir / "src", sb.workdir / "out"]  # "out" is made later, by the hook's caller
    (sb.workdir / "src").mkdir()
    env = sb.workdir / "buildenv"
    env.mkdir()
    (env / "site.py").write_text("# installed by the worker\n")
    script = (
        "import sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        open(path, 'a').close()\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.errno)\n"
    )
    targets = [sb.workdir / "src" / "build.o", env / "site.py", env / "new.pth", sb.workdir / "top.txt"]
    assert sb.run_command([sys.executable, "-c", script, *map(str, targets)]) == 0
    log = read_log(sb)
    assert f"wrote {targets[0]}" in log
    # The environment is the worker's (EACCES) on a read-only workdir (EROFS).
    assert f"refused {targets[1]} " in log
    assert f"refused {targets[2]} " in log
    # workdir itself is the worker's and read-only: a build cannot plant a module next to where
    # the worker's tools run, nor rename the environment and put its own in its place.
    assert f"refused {targets[3]} 30" in log  # EROFS
    assert (env / "site.py").read_text() == "# installed by the worker\n"
    assert sb.run_command(["/bin/mv", str(env), str(sb.workdir / "moved")]) != 0
    assert env.is_dir() and not (sb.workdir / "moved").exists()
    assert os.stat(sb.workdir).st_uid == os.geteuid()


@needs_bwrap
def test_a_sandbox_that_never_reports_is_killed_not_released(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox()
    marker = sb.workdir / "ran"
    monkeypatch.setattr(bubblewrap, "RELEASE_TIMEOUT_SECONDS", 0.5)
    make_argv = Bubblewrap.argv

    # A bubblewrap that keeps its report to itself: the --info-fd option the worker adds is
    # dropped (the descriptor stays open), the rest goes to the real bubblewrap.
    quiet = sb.workdir.parent / "quiet-bwrap"
    quiet.write_text('#!/bin/sh\n[ "$1" = --info-fd ] && shift 2\nexec bwrap "$@"\n')
    quiet.chmod(0o755)

    def silent(self: Bubblewrap, *args: object, **kw: object) -> list[str]:
        return [str(quiet), *make_argv(self, *args, **kw)[1:]]  # type: ignore[arg-type]

    monkeypatch.setattr(Bubblewrap, "argv", silent)
    with pytest.raises(OSError) as info:
        sb.run_command(["/bin/sh", "-c", f"touch {marker}; sleep 60"])
    assert "did not report" in str(info.value)
    assert not marker.exists()
    assert processes_under(sb.workdir) == []


def test_the_log_and_the_probe_say_which_limits_have_no_cgroup(
    make_sandbox: Callable[..., Sandbox], limit_mechanism: str
) -> None:
    sb = make_sandbox()
    assert sb.run_command([sys.executable, "-c", "pass"]) == 0
    assert sb.run_command([sys.executable, "-c", "pass"]) == 0
    log = read_log(sb)
    mechanisms = sandbox_mod.limit_mechanisms(SMALL)
    if limit_mechanism == "rlimits":
        assert mechanisms == {
            "memory": "RLIMIT_AS per process",
            "processes": "RLIMIT_NPROC and a count of the process tree",
            "cpu": "RLIMIT_CPU per process",
        }
        # Once per build, however many hooks it runs.
        assert log.count("wheelyard: no cgroup for the build's memory limit (RLIMIT_AS per process)") == 1
    else:
        assert all(how.startswith("cgroup v") for how in mechanisms.values())
        assert "no cgroup" not in log


def test_worker_probe_reports_the_limit_mechanisms(tmp_path: Path) -> None:
    import io
    import json

    from server.cli import main

    out, err = io.StringIO(), io.StringIO()
    assert main(["--data-dir", str(tmp_path), "worker", "--probe"], stdout=out, stderr=err) == 0, err.getvalue()
    sandbox = json.loads(out.getvalue())["sandbox"]
    assert sandbox["limits"] == sandbox_mod.limit_mechanisms(Settings().limits)
    assert set(sandbox["limits"]) == {"memory", "processes", "cpu"}


@needs_bwrap
def test_a_hook_that_cannot_start_leaks_no_descriptor(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox()
    make_argv = Bubblewrap.argv
    monkeypatch.setattr(
        Bubblewrap,
        "argv",
        lambda self, *a, **kw: ["/nonexistent/bwrap", *make_argv(self, *a, **kw)[1:]],
    )
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        sb.run_command([sys.executable, "-c", "pass"])
    assert set(os.listdir("/proc/self/fd")) <= before


@pytest.mark.skipif(not HAVE_BWRAP or os.geteuid() != 0, reason="the build user differs from the worker's only as root")
def test_a_tool_under_a_directory_the_build_user_cannot_enter_still_runs(
    make_sandbox: Callable[..., Sandbox], host_dir: Path
) -> None:
    """An interpreter under a 0700 directory (pyenv in root's home, with the worker's HOME elsewhere):
    the sandbox hides that directory and binds back only what the build needs."""
    closed = host_dir / "closed"
    (closed / "tool" / "bin").mkdir(parents=True)
    (closed / "private.txt").write_text("not for the build")
    closed.chmod(0o700)
    script = closed / "tool" / "bin" / "hello"
    script.write_text(f"#!/bin/sh\necho hello from uid $(id -u)\necho listing: $(ls {closed})\n")
    script.chmod(0o755)
    sb = make_sandbox("closed")
    sb.run([str(script)], cwd=str(sb.workdir))
    log = read_log(sb)
    assert f"hello from uid {sandbox_mod.BUILD_UID}" in log, log
    assert "listing: tool" in log and "private.txt" not in log, log
