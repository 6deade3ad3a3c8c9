"""What a worker can build: found out once, at start.

A worker looks for interpreters (pyenv versions, ``/opt/python/*`` as in the manylinux
images, ``pythonX.Y`` on PATH, and configured extras), checks that each one has its C
headers, reads the libc it runs on, and looks for the toolchain. From that it derives
the build identifiers it serves, and so the Celery queues it subscribes to.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from builder.advertised import EXTRA_TOOLS, advertised, probe_libraries, run_probe
from builder.config import Settings
from builder.errors import NoBuildableTarget
from builder.rust_toolchain import TOOLS as RUST_TOOLS
from builder.rust_toolchain import find_rust_toolchain
from builder.targets import PURE, SUPPORTED_MINORS, BuildTarget, known_identifiers

logger = logging.getLogger(__name__)

TOOLS = (
    "cc",
    "c++",
    "gcc",
    "g++",
    "clang",
    "cargo",
    "rustc",
    "cmake",
    "ninja",
    "pkg-config",
    "gfortran",
    "patchelf",
    "bwrap",
)

_INTERPRETER_PROBE = r"""
import json, os, sys, sysconfig
inc = sysconfig.get_paths().get("include") or ""
print(json.dumps({
    "version": list(sys.version_info[:2]),
    "implementation": sys.implementation.name,
    "headers": os.path.exists(os.path.join(inc, "Python.h")),
    "include": inc,
    "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
}))
"""


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple[int, int]
    implementation: str
    headers: bool

    @property
    def tag(self) -> str:
        return f"cp{self.version[0]}{self.version[1]}"


@dataclass(frozen=True)
class UnusableInterpreter:
    """An interpreter that runs on the host but not in the build sandbox as the build user: why, and what to do."""

    path: str
    version: tuple[int, int]
    reason: str
    hint: str

    def line(self) -> str:
        return (
            f"wheelyard: interpreter {self.path} (Python {self.version[0]}.{self.version[1]}) is not served: "
            f"{self.reason}; {self.hint}"
        )


@dataclass(frozen=True)
class Capabilities:
    os: str  # linux, macos, windows
    arch: str  # x86_64, aarch64, arm64, AMD64
    libc: str | None  # glibc, musl, or None off Linux
    libc_version: str | None
    interpreters: tuple[Interpreter, ...]
    tools: dict[str, str] = field(default_factory=dict)  # name -> version line
    # Interpreters found on the host that failed the check in the build sandbox: not served.
    unusable: tuple[UnusableInterpreter, ...] = ()
    # Libraries with development files (builder.advertised.probe_libraries).
    libraries: tuple[str, ...] = ()

    def interpreter_for(self, target: BuildTarget) -> Interpreter | None:
        if target.is_pure:
            # Any CPython 3 builds a pure wheel; the newest one is the best bet for modern backends.
            usable = [i for i in self.interpreters if i.version[0] == 3]
            return max(usable, key=lambda i: i.version) if usable else None
        for interpreter in self.interpreters:
            if interpreter.version == target.python and interpreter.headers:
                return interpreter
        return None

    @property
    def platforms(self) -> list[str]:
        """The platform ids of the build identifiers this host builds for."""
        if self.os == "linux":
            family = {"glibc": "manylinux", "musl": "musllinux"}.get(self.libc or "")
            return [f"{family}_{self.arch}"] if family else []
        if self.os == "macos":
            return [f"macosx_{self.arch}"]
        if self.os == "windows" and self.arch.lower() in {"amd64", "x86_64"}:
            return ["win_amd64"]
        return []

    def targets(self) -> list[BuildTarget]:
        """Every build identifier this worker can build: native code needs a compiler and headers."""
        out: list[BuildTarget] = []
        has_cc = "cc" in self.tools or "gcc" in self.tools or "clang" in self.tools
        if has_cc:
            for interpreter in self.interpreters:
                if interpreter.implementation != "cpython" or not interpreter.headers:
                    continue
                if interpreter.version[0] != 3 or interpreter.version[1] not in SUPPORTED_MINORS:
                    continue
                for plat in self.platforms:
                    if f"{interpreter.tag}-{plat}" not in known_identifiers():
                        continue  # cibuildwheel has no such identifier (e.g. an old CPython on riscv64)
                    target = BuildTarget.parse(f"{interpreter.tag}-{plat}")
                    if target not in out:
                        out.append(target)
        if any(i.version[0] == 3 for i in self.interpreters):
            out.append(BuildTarget.parse(PURE))
        return sorted(out, key=lambda t: (t.python or (99, 99), t.platform))

    def queues(self) -> list[str]:
        return [t.queue for t in self.targets()]

    def without(self, unusable: Sequence[UnusableInterpreter]) -> Capabilities:
        """These capabilities less the interpreters that failed the sandbox check."""
        bad = {u.path for u in unusable}
        return replace(
            self,
            interpreters=tuple(i for i in self.interpreters if i.path not in bad),
            unusable=(*self.unusable, *unusable),
        )

    def capability_set(self) -> set[str]:
        """Capability names as the diagnosis rules speak of them (``tool:cc``, ``headers:cp312``)."""
        caps = {f"tool:{name}" for name in self.tools}
        if "tool:gcc" in caps or "tool:clang" in caps:
            caps.add("tool:cc")
        if "tool:g++" in caps:
            caps.add("tool:c++")
        if "tool:cargo" in caps:
            caps.add("tool:rust")
        caps |= {f"headers:{i.tag}" for i in self.interpreters if i.headers}
        return caps

    def advertised(self) -> list[str]:
        """What the worker registers as its ``capabilities``: tools and libraries, as diagnoses name them."""
        return advertised(self.tools, self.libraries)

    def fingerprint(self) -> str:
        """Stable summary used to decide whether a failed build deserves another try."""
        return ",".join(sorted(self.capability_set()))

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["targets"] = [t.identifier for t in self.targets()]
        data["queues"] = self.queues()
        return data


def _version_line(tool: str, path: str) -> str:
    out = run_probe([path, "--version"], timeout=10)
    if out is None:
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def probe_tools(path: str | None = None, names: Sequence[str] = TOOLS) -> dict[str, str]:
    found = {}
    for name in names:
        location = shutil.which(name, path=path)
        if location:
            found[name] = _version_line(name, location)
    return found


def probe_rust(configured: Path | None = None, path: str | None = None) -> dict[str, str]:
    """cargo and rustc as builds get them (builder/rust_toolchain.py), by their version lines: a
    rustup proxy on PATH that cannot choose a toolchain is not a Rust toolchain."""
    environ = os.environ if path is None else {**os.environ, "PATH": path}
    toolchain = find_rust_toolchain(configured, environ)
    if toolchain is None:
        return {}
    return {name: _version_line(name, str(toolchain.executable(name))) for name in RUST_TOOLS}


def candidate_interpreters(extra: Iterable[Path] = (), path: str | None = None) -> list[str]:
    """Paths of interpreters to probe, without duplicates, in a stable order."""
    candidates: list[str] = [str(p) for p in extra]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "*", "bin", "python3")))
    candidates += sorted(glob.glob("/opt/python/cp3*/bin/python3"))
    search = path if path is not None else os.environ.get("PATH", "")
    for directory in search.split(os.pathsep):
        for candidate in sorted(glob.glob(os.path.join(directory, "python3.[0-9]*"))):
            if re.search(r"python3\.\d+$", candidate):
                candidates.append(candidate)
    seen: set[str] = set()
    unique = []
    for candidate in candidates:
        try:
            real = os.path.realpath(candidate)
        except OSError:
            continue
        if real in seen or not os.access(real, os.X_OK):
            continue
        seen.add(real)
        unique.append(candidate)
    return unique


def probe_interpreter(path: str) -> Interpreter | None:
    try:
        out = subprocess.run(
            [path, "-I", "-c", _INTERPRETER_PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        data = json.loads(out.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if data.get("free_threaded"):
        return None  # free-threaded builds have their own identifiers (cp313t); not served yet
    return Interpreter(
        path=path,
        version=(int(data["version"][0]), int(data["version"][1])),
        implementation=str(data["implementation"]),
        headers=bool(data["headers"]),
    )


def host_libc() -> tuple[str | None, str | None]:
    if sys.platform != "linux":
        return None, None
    name, version = platform.libc_ver()
    if name == "glibc":
        return "glibc", version
    # musl has no libc_ver; its loader names itself.
    for loader in glob.glob("/lib/ld-musl-*.so.1"):
        try:
            out = subprocess.run([loader], capture_output=True, text=True, timeout=5, check=False)
        except OSError:
            continue
        match = re.search(r"Version ([\d.]+)", out.stderr)
        return "musl", match.group(1) if match else None
    return name or None, version or None


def host_os() -> tuple[str, str]:
    machine = platform.machine()
    if sys.platform.startswith("linux"):
        return "linux", machine
    if sys.platform == "darwin":
        return "macos", "arm64" if machine == "arm64" else "x86_64"
    if sys.platform == "win32":
        return "windows", machine
    return sys.platform, machine


def probe(
    extra_interpreters: Iterable[Path] = (),
    path: str | None = None,
    rust_toolchain: Path | None = None,
    tools_path: str | None = None,
) -> Capabilities:
    """Find out what this host can build; tools and libraries are looked for on ``tools_path``
    (the builds' PATH) where given, else on ``path``."""
    osname, arch = host_os()
    libc, libc_version = host_libc()
    # Per version, the first interpreter with headers wins (extras and pyenv are probed first);
    # one without headers is kept only so that --probe can show why its version is not served.
    chosen: dict[tuple[int, int], Interpreter] = {}
    for candidate in candidate_interpreters(extra_interpreters, path):
        interpreter = probe_interpreter(candidate)
        if interpreter is None:
            continue
        current = chosen.get(interpreter.version)
        if current is None or (interpreter.headers and not current.headers):
            chosen[interpreter.version] = interpreter
    interpreters = list(chosen.values())
    interpreters.sort(key=lambda i: i.version)
    return Capabilities(
        os=osname,
        arch=arch,
        libc=libc,
        libc_version=libc_version,
        interpreters=tuple(interpreters),
        tools={
            **probe_tools(tools_path or path, [t for t in (*TOOLS, *EXTRA_TOOLS) if t not in RUST_TOOLS]),
            **probe_rust(rust_toolchain, tools_path or path),
        },
        libraries=probe_libraries(tools_path or path),
    )


# -- the check in the build sandbox ---------------------------------------------------------

# Runs in the sandbox, as the build user: the interpreter starts, imports sysconfig and finds its
# headers where the build will look for them.
_SANDBOX_CHECK = r"""
import os, sys, sysconfig
include = sysconfig.get_paths().get("include") or ""
if sys.argv[1] == "headers" and not os.path.isfile(os.path.join(include, "Python.h")):
    sys.exit("Python.h is not readable in %s" % include)
print("wheelyard: the interpreter runs in the sandbox")
"""


def checked_capabilities(settings: Settings) -> Capabilities:
    """What this host can build, less the interpreters that fail in the build sandbox.

    Raises ``no-buildable-target`` when no target is left, with each interpreter's reason.
    """
    from builder.sandbox import sandbox_available

    capabilities = probe(
        settings.extra_interpreters, rust_toolchain=settings.rust_toolchain, tools_path=settings.build_path
    )
    if not settings.sandbox or sandbox_available():  # else the worker refuses to start, and says why
        capabilities = check_in_sandbox(capabilities, settings)
    if not capabilities.targets():
        raise NoBuildableTarget("".join("\n" + u.line() for u in capabilities.unusable))
    return capabilities


def check_in_sandbox(capabilities: Capabilities, settings: Settings) -> Capabilities:
    """Run each interpreter found as the builds run it: in the bubblewrap sandbox, as the build user,
    under the build limits. One that fails is not served (a build with it could only fail)."""
    found = [_check_one(i, settings) for i in capabilities.interpreters if i.version[0] == 3]
    return _rust_checked(capabilities.without([u for u in found if u is not None]), settings)


def _run_checked(settings: Settings, argv: Sequence[str], read_only: Sequence[Path] = ()) -> tuple[int, str]:
    """Run ``argv`` in the build sandbox under the build limits, in a work directory of its own:
    its exit code and what it printed."""
    from builder.buildlog import FileBuildLog
    from builder.sandbox import LimitExceeded, Sandbox, build_environment

    root = settings.data_dir / "work"
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="wheelyard-check-", dir=root))
    try:
        with FileBuildLog(workdir / "check.log") as log:
            sandbox = Sandbox(
                limits=replace(settings.limits, wall_seconds=min(settings.limits.wall_seconds, 60)),
                workdir=workdir,
                log=log,
                enabled=settings.sandbox,
                read_only=read_only,
                hidden=[settings.data_dir],
                env=build_environment(),
            )
            code = sandbox.run_command(argv, cwd=str(workdir))
        output = (workdir / "check.log").read_text(errors="replace")
    except (OSError, LimitExceeded) as exc:
        code, output = -1, str(exc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return code, output


def _failure(code: int, output: str) -> str:
    """What a failed check said: its last lines, else its exit status."""
    said = [line.strip() for line in output.splitlines() if line.strip() and not line.startswith("wheelyard:")]
    return " | ".join(said[-2:])[:400] or f"it exited with status {code}"


def _rust_checked(capabilities: Capabilities, settings: Settings) -> Capabilities:
    """cargo and rustc are advertised only if rustc compiles as builds run it: as the build user, in
    the sandbox, its toolchain bound read-only. Else the worker's log says why, and builds that
    need Rust go to a worker that has it."""
    toolchain = find_rust_toolchain(settings.rust_toolchain) if "rustc" in capabilities.tools else None
    if toolchain is None:
        return capabilities
    rustc = str(toolchain.executable("rustc"))
    # An empty library crate (the source is stdin, /dev/null) still loads the standard library.
    check = [rustc, "--crate-type=lib", "--crate-name=check", "--emit=metadata", "--out-dir=.", "-"]
    code, output = _run_checked(settings, check, toolchain.paths())
    if code == 0:
        return capabilities
    logger.warning(
        "wheelyard: Rust (%s) is not served: it does not run in the build sandbox as the build user (%s)",
        rustc,
        _failure(code, output),
    )
    return replace(capabilities, tools={k: v for k, v in capabilities.tools.items() if k not in RUST_TOOLS})


def _check_one(interpreter: Interpreter, settings: Settings) -> UnusableInterpreter | None:
    what = "headers" if interpreter.headers else "runs"
    code, output = _run_checked(settings, [interpreter.path, "-I", "-c", _SANDBOX_CHECK, what])
    if code == 0:
        return None
    reason = _failure(code, output)
    return UnusableInterpreter(
        interpreter.path,
        interpreter.version,
        f"it does not run in the build sandbox as the build user ({reason})",
        _access_hint(interpreter.path, settings.sandbox),
    )


def _access_hint(path: str, sandboxed: bool) -> str:
    """What to change: the first directory on the interpreter's way the build user cannot enter."""
    from builder.sandbox import BUILD_GID, BUILD_UID

    if sandboxed and os.geteuid() == 0:
        candidates = [Path(path), Path(os.path.realpath(path))]
        for exe in candidates:
            for directory in reversed(exe.parents):
                try:
                    st = directory.stat()
                except OSError:
                    continue
                others = st.st_mode & 0o001
                group = st.st_gid == BUILD_GID and st.st_mode & 0o010
                if not (others or group or st.st_uid == BUILD_UID):
                    return (
                        f"it lives under {directory} (mode {st.st_mode & 0o777:04o}), which the build user "
                        f"(uid {BUILD_UID}) cannot enter; give that user access (chmod o+x {directory}) or install "
                        "the interpreters elsewhere (/opt/python, /usr/local) and name them in WHEELYARD_INTERPRETERS "
                        "(the sandbox covers a closed directory above the interpreter, such as a 0700 home, and "
                        "binds the interpreter back; it cannot open the interpreter's own directories)"
                    )
        for exe in candidates:
            with contextlib.suppress(OSError):
                mode = exe.stat().st_mode
                if not mode & 0o001:
                    return (
                        f"the interpreter {exe} (mode {mode & 0o777:04o}) cannot be run by the build user "
                        f"(uid {BUILD_UID}); chmod o+rx {exe}, or install the interpreters elsewhere and name them "
                        "in WHEELYARD_INTERPRETERS"
                    )
    return (
        "make the interpreter, its shared library (libpythonX.Y.so) and its headers readable by the build user, "
        "or install it elsewhere and name it in WHEELYARD_INTERPRETERS"
    )
