"""One build, step by step: the director that turns a request for a target into a wheel on the index.

``BuildDirector.run()`` goes through the steps in order and returns a ``BuildOutcome``;
it never raises for a failed build. The Celery task only carries the job in and the
outcome out. Steps:

1. resolve   - the release and its files on the upstream index (Simple API)
2. mirror    - where upstream has a wheel that fits the target (and the request allows it):
               download it, hash-checked, verify it, publish it; done
3. fetch     - download the sdist, hash-checked, and unpack it safely
4. prepare   - a fresh environment of the target interpreter with the build requirements,
               installed from wheels only (no stranger's code runs outside the sandbox)
5. build     - pypa/build's ProjectBuilder, whose hook runner is the sandbox
6. repair    - auditwheel, to a manylinux/musllinux tag
7. verify    - a valid wheel whose RECORD, name, version and tags match
8. prove     - installs into a fresh environment of the interpreter and imports its modules
9. publish   - upload to the private index; a filename is never replaced
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from build import BuildBackendException, BuildException, ProjectBuilder
from packaging.utils import parse_wheel_filename

from builder.capabilities import Capabilities, Interpreter, job_environment, resolve_parallelism
from builder.config import Settings
from builder.errors import AlreadyPublished, BuildFailed, WheelyardError
from builder.proof import PROOF_SCRIPT, failed_imports, is_hollow, plan_imports, read_layout, retag_pure
from builder.publish import publish_wheel, published_sha256
from builder.sandbox import FileBuildLog, LimitExceeded, Sandbox, build_environment, run_tool
from builder.targets import BuildTarget
from builder.upstream import DistFile, Release, SimpleIndex
from builder.verify import WheelInfo, verify_wheel

Report = Callable[[str, dict[str, Any]], None]


class BuildLog(FileBuildLog):
    """Where a build's output goes: a file on the worker and, through ``sink``, the shared record."""

    def __init__(self, path: Path, sink: Callable[[bytes], object] | None = None) -> None:
        super().__init__(path)
        self._sink = sink

    def write(self, data: bytes) -> None:
        super().write(data)
        if self._sink is not None:
            self._sink(data)

    def line(self, text: str) -> None:
        self.write((text.rstrip("\n") + "\n").encode())


@dataclass(frozen=True)
class BuildJob:
    build_id: str
    name: str
    version: str
    target: BuildTarget
    from_source: bool = False


@dataclass
class BuildOutcome:
    status: str  # published, mirrored, failed
    wheel: str | None = None
    sha256: str | None = None
    source: str | None = None
    error: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    log_path: Path | None = None


class StepFailed(WheelyardError):
    """A step of the pipeline failed for a reason the build log shows."""

    reference = "build-step-failed"


class ProofFailed(StepFailed):
    """The wheel installed but some of its modules failed to import; each is named in the record."""

    reference = "proof-failed"

    def __init__(self, failures: Sequence[dict[str, str]]) -> None:
        names = "; ".join(f"{f['module']} ({f['error'][:300]})" for f in failures)
        super().__init__(
            f"the wheel installed but importing {names or 'its modules'} failed",
            "the build log shows each import error after `==> prove`",
        )
        self.failures = list(failures)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "imports": self.failures}


class BuildDirector:
    """Runs the steps of one build for one target."""

    def __init__(
        self,
        settings: Settings,
        capabilities: Capabilities,
        job: BuildJob,
        *,
        workdir: Path,
        log: BuildLog,
        report: Report | None = None,
        index: SimpleIndex | None = None,
        upload_password: str | None = None,
    ) -> None:
        self.settings = settings
        self.capabilities = capabilities
        self.job = job
        self.workdir = workdir
        self.log = log
        self.report = report or (lambda step, info: None)
        self.index = index or SimpleIndex(settings.upstream_index)
        self.upload_password = upload_password if upload_password is not None else settings.index_password
        self.timings: dict[str, float] = {}
        self._sandbox: Sandbox | None = None

    # -- the steps -------------------------------------------------------------------------
    def run(self) -> BuildOutcome:
        job = self.job
        self.log.line(f"wheelyard: build {job.build_id}: {job.name}=={job.version} for {job.target}")
        try:
            release = self._step("resolve", self._resolve)
            wheel_file = (
                None if job.from_source else release.wheel_for(job.target, glibc_max=self.settings.manylinux_glibc_max)
            )
            if wheel_file is not None:
                return self._mirror(release, wheel_file)
            return self._build(release)
        except LimitExceeded as exc:
            return self._failed(exc, cause=exc.cause)
        except WheelyardError as exc:
            return self._failed(exc)
        except BuildBackendException as exc:
            # build wraps whatever the runner raised: a broken sandbox limit arrives inside it.
            inner = exc.exception
            if isinstance(inner, LimitExceeded):
                return self._failed(inner, cause=inner.cause)
            return self._failed(BuildFailed(f"the build failed: {exc}", "the diagnosis below names the cause"))
        except (BuildException, subprocess.CalledProcessError) as exc:
            return self._failed(BuildFailed(f"the build failed: {exc}", "the diagnosis below names the cause"))

    def _resolve(self) -> Release:
        release = self.index.resolve(f"{self.job.name}=={self.job.version}")
        self.log.line(f"wheelyard: upstream has {len(release.files)} files for {release.name} {release.version}")
        return release

    def _mirror(self, release: Release, wheel_file: DistFile) -> BuildOutcome:
        self.log.line(f"wheelyard: upstream has a wheel for {self.job.target}: {wheel_file.filename}; mirroring it")
        path = self._step("download", lambda: self.index.download(wheel_file, self.workdir / "dist"))
        info = self._step("verify", lambda: self._verify(path, release))
        sha = self._step("publish", lambda: self._publish(path, info.sha256))
        return BuildOutcome(
            "mirrored",
            wheel=path.name,
            sha256=sha,
            source=wheel_file.filename,
            timings=self.timings,
        )

    def _build(self, release: Release) -> BuildOutcome:
        job = self.job
        sdist = release.sdist
        if sdist is None:
            raise StepFailed(
                f"{release.name} {release.version} has no sdist upstream and no wheel for {job.target}",
                "no-distribution: ask for a target upstream ships a wheel for, or another version",
                reference="no-distribution",
            )
        interpreter = self.capabilities.interpreter_for(job.target)
        if interpreter is None:
            raise StepFailed(
                f"this worker has no interpreter with headers for {job.target}",
                "the worker's probe should not have subscribed to this queue; check `wheelyard worker --probe`",
            )
        archive = self._step("fetch", lambda: self.index.download(sdist, self.workdir / "dist"))
        srcdir = self._step("unpack", lambda: unpack_sdist(archive, self.workdir / "src"))
        env_python = self._step("prepare", lambda: self._create_env(interpreter, self.workdir / "buildenv"))
        sandbox = self._sandbox_for()
        builder = ProjectBuilder(
            srcdir,
            python_executable=str(env_python),
            runner=self._hook_runner(sandbox, env_python.parent),
        )
        outdir = self.workdir / "out"
        outdir.mkdir(exist_ok=True)

        def build_wheel() -> Path:
            # build reports backend warnings through `warnings`: they belong in the build log.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    self._install(env_python, sorted(builder.build_system_requires))
                    extra = sorted(builder.get_requires_for_build("wheel"))
                    if extra:
                        self._install(env_python, extra)
                    return Path(builder.build("wheel", outdir))
                finally:
                    for warning in caught:
                        self.log.line(f"warning: {warning.message}")

        built = self._step("build", build_wheel)
        self.log.line(f"wheelyard: built {built.name}")
        repaired = self._step("repair", lambda: self._repair(built))
        info = self._step("verify", lambda: self._verify(repaired, release))
        self._step("prove", lambda: self._prove(interpreter, repaired))
        sha = self._step("publish", lambda: self._publish(repaired, info.sha256))
        return BuildOutcome(
            "published",
            wheel=repaired.name,
            sha256=sha,
            source=sdist.filename,
            timings=self.timings,
        )

    # -- helpers ---------------------------------------------------------------------------
    def _step(self, name: str, action: Callable[[], Any]) -> Any:
        self.report(name, {})
        self.log.line(f"==> {name}")
        started = time.monotonic()
        try:
            return action()
        finally:
            self.timings[name] = round(time.monotonic() - started, 3)

    def _failed(self, exc: WheelyardError, cause: str | None = None) -> BuildOutcome:
        self.log.line(f"wheelyard: build failed: {exc.message}")
        if exc.hint:
            self.log.line(f"wheelyard: hint: {exc.hint}")
        error = exc.to_dict()
        if cause:
            error["cause"] = cause
        return BuildOutcome("failed", error=error, timings=self.timings, log_path=self.log.path)

    def _sandbox_for(self) -> Sandbox:
        if self._sandbox is None:
            read_only = [Path(p) for p in (self.settings.cargo_vendor_dir,) if p is not None]
            read_only += [p for p in rust_toolchain_paths() if p.exists()]
            self._sandbox = Sandbox(
                limits=self.settings.limits,
                workdir=self.workdir,
                log=self.log,
                enabled=self.settings.sandbox,
                read_only=read_only,
                env=build_environment(self.settings, self._toolchain_env()),
                hidden=[self.settings.data_dir],
                # The sources (backends write build/ and metadata there), the wheel's output
                # directory and cargo's home; the build and prove environments stay read-only.
                writable=[self.workdir / "src", self.workdir / "out", self.workdir / "cargo-home"],
            )
        return self._sandbox

    def _toolchain_env(self) -> dict[str, str]:
        """What a build sees of the worker's toolchain (never its settings): PATH with a rustup
        toolchain first where the worker has one, and a fixed SOURCE_DATE_EPOCH for reproducible zips."""
        env = {"SOURCE_DATE_EPOCH": "315532800"}
        # How many jobs this build may run, chosen with the worker's concurrency (docs/deploy.md).
        env.update(job_environment(self.settings.build_jobs or resolve_parallelism(self.settings).jobs))
        if self.settings.cargo_vendor_dir is not None:
            # cargo reads source replacement from a config file only, not from the environment.
            cargo_home = self.workdir / "cargo-home"
            cargo_home.mkdir(exist_ok=True)
            (cargo_home / "config.toml").write_text(
                '[source.crates-io]\nreplace-with = "vendored-sources"\n\n'
                f'[source.vendored-sources]\ndirectory = "{self.settings.cargo_vendor_dir}"\n\n'
                "[net]\noffline = true\n"
            )
            env["CARGO_HOME"] = str(cargo_home)
        cargo_bin, rustup_home = rust_toolchain_paths()
        if (cargo_bin / "cargo").exists():
            env["PATH"] = f"{cargo_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            if rustup_home.exists():
                env["RUSTUP_HOME"] = str(rustup_home)
                env["RUSTUP_TOOLCHAIN"] = os.environ.get("RUSTUP_TOOLCHAIN", "stable")
        return env

    def _hook_runner(self, sandbox: Sandbox, scripts: Path) -> Callable[..., None]:
        """The ProjectBuilder runner: the sandbox, with the build environment's scripts first on PATH
        (backends such as maturin call their own executable)."""
        path = f"{scripts}{os.pathsep}{sandbox.env.get('PATH', '/usr/bin:/bin')}"

        def run(
            cmd: Sequence[str],
            cwd: str | None = None,
            extra_environ: Mapping[str, str] | None = None,
        ) -> None:
            sandbox.run(cmd, cwd=cwd, extra_environ={**(extra_environ or {}), "PATH": path})

        return run

    def _tool_env(self) -> dict[str, str]:
        """Environment for the tools the worker runs itself (uv, auditwheel): explicit, no ambient pip config."""
        venv_bin = str(Path(sys.executable).parent)
        return {
            "PATH": os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(self.workdir / "home"),
            "UV_NO_CONFIG": "1",
            "UV_CACHE_DIR": str(self.settings.data_dir / "cache" / "uv"),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_SYSTEM_CERTS": "1",  # trust the host's CA store, as pip does
            "PIP_CONFIG_FILE": os.devnull,
            "LANG": "C.UTF-8",
            **{k: os.environ[k] for k in ("SSL_CERT_FILE", "SSL_CERT_DIR") if k in os.environ},
        }

    def _run_tool(self, cmd: Sequence[str], timeout: float = 600) -> None:
        self.log.line("$ " + " ".join(str(c) for c in cmd))
        (self.workdir / "home").mkdir(exist_ok=True)
        code, output = run_tool(cmd, env=self._tool_env(), cwd=self.workdir, timeout=timeout)
        self.log.write(output)
        if code != 0:
            raise subprocess.CalledProcessError(code, list(cmd))

    def _create_env(self, interpreter: Interpreter, path: Path) -> Path:
        self._run_tool([uv_binary(), "venv", "--no-config", "--python", interpreter.path, str(path)])
        return path / "bin" / "python"

    def _install(self, python: Path, requirements: Sequence[str], *, find_links: Path | None = None) -> None:
        """Install from wheels only, from the configured upstream index (and ``find_links``)."""
        if not requirements:
            return
        links = ["--find-links", str(find_links)] if find_links is not None else []
        self._run_tool(
            [
                uv_binary(),
                "pip",
                "install",
                "--no-config",
                "--python",
                str(python),
                "--index-url",
                self.settings.upstream_index,
                *links,
                "--only-binary",
                ":all:",
                *requirements,
            ]
        )

    def _repair(self, wheel: Path) -> Path:
        wheel = self._unless_hollow(wheel)
        tags = parse_wheel_filename(wheel.name)[3]
        if all(t.platform == "any" for t in tags):
            return wheel
        if self.job.target.os != "linux":
            return wheel  # delocate / delvewheel belong to macOS and Windows workers
        repaired_dir = self.workdir / "repaired"
        self._run_tool([sys.executable, "-m", "auditwheel", "repair", "-w", str(repaired_dir), str(wheel)])
        wheels = sorted(repaired_dir.glob("*.whl"))
        if len(wheels) != 1:
            raise StepFailed(f"auditwheel wrote {len(wheels)} wheels", "see the build log")
        return wheels[0]

    def _unless_hollow(self, wheel: Path) -> Path:
        """A platform wheel with no compiled code is refused before auditwheel sees it (or, where the
        deployment allows it, published as the pure wheel it is: never under a platform tag)."""
        if not is_hollow(wheel.name, read_layout(wheel)):
            return wheel
        what = f"{wheel.name} is tagged for a platform but holds no compiled module"
        if self.settings.publish_hollow_as_pure:
            pure = retag_pure(wheel, self.workdir / "retagged")
            self.log.line(f"wheelyard: {what}; publishing it as {pure.name} (WHEELYARD_PUBLISH_HOLLOW_AS_PURE)")
            return pure
        raise StepFailed(
            f"{what}: the extension did not compile and the build fell back to pure Python",
            "the diagnosis names the compile error (often a missing library or header): fix that; or set "
            "WHEELYARD_PUBLISH_HOLLOW_AS_PURE=true to publish such wheels as py3-none-any",
            reference="hollow-wheel",
        )

    def _prove(self, interpreter: Interpreter, wheel: Path) -> None:
        """Install the wheel into a fresh environment and import its modules (builder/proof.py), in the sandbox."""
        env_python = self._create_env(interpreter, self.workdir / "proveenv")
        # Its dependencies come from upstream, as a client's would.
        self._install(env_python, [str(wheel)], find_links=wheel.parent)
        plan = plan_imports(read_layout(wheel))
        for note in plan.notes:
            self.log.line(note)
        if not plan.names:
            self.log.line("wheelyard: the wheel has no importable top-level module; nothing to import")
            return
        self.log.line(f"wheelyard: proof: importing {', '.join(plan.names)}")
        start = self.log.path.stat().st_size
        sandbox = self._sandbox_for()
        try:
            sandbox.run([str(env_python), "-I", "-c", PROOF_SCRIPT, *plan.arguments], cwd=str(self.workdir))
        except subprocess.CalledProcessError:
            with self.log.path.open("rb") as fh:
                fh.seek(start)
                failures = failed_imports(fh.read().decode(errors="replace").splitlines())
            raise ProofFailed(failures) from None

    def _verify(self, wheel: Path, release: Release) -> WheelInfo:
        """The wheel is whole and is what was asked for: this release, for this target."""
        return verify_wheel(wheel, name=release.name, version=str(release.version), target=self.job.target)

    def _publish(self, path: Path, sha256: str) -> str:
        try:
            publish_wheel(
                path,
                index_url=self.settings.index_url,
                user=self.settings.index_user,
                password=self.upload_password,
            )
        except AlreadyPublished:
            # A redelivered job (its first worker died after uploading) finds its wheel there:
            # the index keeps the first file, and that is the one this build points at, with
            # the index's hash (a rebuilt wheel need not be byte-identical).
            self.log.line(f"wheelyard: {path.name} is on the index already; it is kept as it is")
            on_index = published_sha256(
                path.name,
                index_url=self.settings.index_url,
                user=self.settings.index_user,
                password=self.upload_password,
            )
            sha256 = on_index or sha256
        self.log.line(f"wheelyard: published {path.name} sha256={sha256}")
        return sha256


def rust_toolchain_paths() -> tuple[Path, Path]:
    """Where a rustup-installed toolchain lives on the worker: its proxies, and the toolchains."""
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    return cargo_home / "bin", Path(os.environ.get("RUSTUP_HOME", Path.home() / ".rustup"))


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
        raise StepFailed("uv is not installed on this worker", "pip install uv") from None


def unpack_sdist(archive: Path, dest: Path) -> Path:
    """Unpack an sdist without letting it write outside ``dest``; return its project directory."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (dest / member).resolve()
                if not str(target).startswith(str(dest.resolve()) + os.sep):
                    raise StepFailed(f"{archive.name} has a member outside its directory: {member}", None)
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    entries = [p for p in dest.iterdir() if p.is_dir()]
    if len(entries) == 1 and any((entries[0] / f).exists() for f in ("pyproject.toml", "setup.py")):
        return entries[0]
    raise StepFailed(f"{archive.name} does not hold one project directory with pyproject.toml or setup.py", None)


def work_directory(root: Path | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix="wheelyard-build-", dir=root))
