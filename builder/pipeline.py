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
5. build     - pypa/build's ProjectBuilder, whose hook runner is the sandbox; the build
               requirements are parsed as PEP 508 requirements (builder.build_requirements)
               and installed by uv in a sandbox of their own (network, no secrets)
6. repair    - the wheel is taken out of the build's reach (a copy in the worker's own
               directory), then auditwheel repairs that copy to a manylinux/musllinux tag
7. verify    - a valid wheel whose RECORD, name, version and tags match; its sha256 is kept
8. prove     - a copy installs into a fresh environment and its modules import, in the sandbox
9. publish   - the verified file, if its sha256 is still the one kept, is uploaded; the index
               must then list exactly that sha256. A filename is never replaced

Whatever a step raises ends the build with a ``failed`` outcome (``internal-error`` and the
traceback in the log, when nothing more precise applies): a record never stays ``building``.
The log and every error are redacted of the worker's secrets (builder.secrets) before they
are stored.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from build import BuildBackendException, BuildException, ProjectBuilder
from packaging.utils import parse_wheel_filename

from builder.applying import Prepared, adjust_plan, apply_changes, forced_includes, install_options, regenerate
from builder.build_changes import BuildChanges
from builder.build_job import BuildJob, BuildOutcome
from builder.build_output import BuildLog
from builder.build_requirements import parse_build_requirements
from builder.capabilities import Capabilities, Interpreter
from builder.cibuildwheel_build import build_with_cibuildwheel, uses_cibuildwheel
from builder.config import Settings
from builder.errors import (
    BuildFailed,
    HollowWheel,
    InternalError,
    NoDistribution,
    ProofFailed,
    StepFailed,
    WheelyardError,
)
from builder.installs import install_requirements, uv_binary
from builder.parallelism import job_environment, resolve_parallelism
from builder.proof import PROOF_SCRIPT, failed_imports, is_hollow, plan_imports, read_layout, retag_pure
from builder.publish import publish_verified
from builder.remedies import changes_for_build
from builder.rust_toolchain import rust_for_build
from builder.sandbox import LimitExceeded, Sandbox, build_environment
from builder.sandbox.environment import DEFAULT_PATH
from builder.sdist import UnpackLimits, unpack_sdist
from builder.secrets import secret_paths, secret_values
from builder.tools import run_tool
from builder.upstream import DistFile, Release, SimpleIndex
from builder.verify import WheelInfo, take_wheel, verify_wheel

Report = Callable[[str, dict[str, Any]], None]


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
        self._current = "start"
        self._installs = 0
        self.changes = BuildChanges()
        self._sdist: DistFile | None = None
        # The worker's own parts of workdir (see _prepare_workdir).
        self.private = self.workdir / "worker"
        self.shared = self.workdir / "shared"
        self.log.redact(secret_values(settings, os.environ, [self.upload_password]))

    # -- the steps -------------------------------------------------------------------------
    def run(self) -> BuildOutcome:
        job = self.job
        self.log.line(f"wheelyard: build {job.build_id}: {job.name}=={job.version} for {job.target}")
        try:
            self._prepare_workdir()
            self.changes = changes_for_build(self.settings, job.name, job.version, job.target.identifier, job.remedy)
            for note in self.changes.notes:
                self.log.line(note)
            release = self._step("resolve", self._resolve)
            wheel_file = (
                None if job.from_source else release.wheel_for(job.target, glibc_max=self.settings.manylinux_glibc_max)
            )
            if wheel_file is not None:
                return self._mirror(release, wheel_file)
            return self._build(release)
        except WheelyardError as exc:
            return self._failed(exc)
        except BuildBackendException as exc:
            # build wraps whatever the runner raised: a broken sandbox limit arrives inside it.
            inner = exc.exception
            if isinstance(inner, LimitExceeded):
                return self._failed(inner)
            return self._failed(BuildFailed(f"the build failed: {exc}"))
        except (BuildException, subprocess.CalledProcessError) as exc:
            return self._failed(BuildFailed(f"the build failed: {exc}"))
        except Exception as exc:  # noqa: BLE001 - every build ends with an outcome, whatever a step raised
            self.log.line(f"wheelyard: internal error in step {self._current}:\n{traceback.format_exc()}")
            return self._failed(
                InternalError(
                    f"internal error in step {self._current}: {type(exc).__name__}: {exc}",
                    "the traceback is in the build log; report it with the build id",
                )
            )

    def _prepare_workdir(self) -> None:
        """The worker's own parts of workdir, before any hook runs: ``worker/`` (0700: the current
        directory and home of its tools, and the wheel once taken from the build) and ``shared/``
        (0755: what a sandbox reads: requirements files, the copy of the wheel to prove).
        workdir itself is read-only inside the sandbox, so a build can neither write these nor
        rename them away."""
        for path, mode in ((self.private, 0o700), (self.shared, 0o755)):
            path.mkdir(exist_ok=True)
            os.chmod(path, mode)

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
            raise NoDistribution(release.name, str(release.version), job.target)
        interpreter = self.capabilities.interpreter_for(job.target)
        if interpreter is None:
            raise StepFailed(
                f"this worker has no interpreter with headers for {job.target}",
                "the worker's probe should not have subscribed to this queue; check `wheelyard worker --probe`",
            )
        archive = self._step("fetch", lambda: self.index.download(sdist, self.workdir / "dist"))
        limits = UnpackLimits(max_bytes=self.settings.limits.disk_bytes, max_files=self.settings.limits.files)
        srcdir = self._step("unpack", lambda: unpack_sdist(archive, self.workdir / "src", limits))
        self._sdist = sdist
        prepared = apply_changes(self.changes, srcdir, sdist, self._sandbox_for, self._step, self.log.line, self.shared)
        if uses_cibuildwheel(job.target):
            # macOS and Windows: the sdist passed the same checks (unpack); cibuildwheel builds and repairs
            # (delocate, delvewheel) from the archive; verify, prove and publish are the same.
            built = self._step("build", lambda: self._cibuildwheel(archive))
            return self._check_and_publish(
                release, sdist, interpreter, take_wheel(built, built.parent, self.private / "built"), repair=False
            )
        env_python = self._step("prepare", lambda: self._create_env(interpreter, self.workdir / "buildenv"))
        sandbox = self._sandbox_for()
        builder = ProjectBuilder(
            srcdir,
            python_executable=str(env_python),
            runner=self._hook_runner(sandbox, env_python.parent),
        )
        outdir = self.workdir / "out"
        outdir.mkdir(exist_ok=True)
        built = self._step("build", lambda: self._build_wheel(builder, env_python, prepared, srcdir, outdir))
        self.log.line(f"wheelyard: built {built.name}")
        # From here on only the worker's copy is read: the build's user can still write out/
        # (the proof runs as that user), but not the worker's directory.
        taken = take_wheel(built, outdir, self.private / "built")
        return self._check_and_publish(release, sdist, interpreter, taken, repair=True)

    def _build_wheel(
        self, builder: ProjectBuilder, env_python: Path, prepared: Prepared, srcdir: Path, outdir: Path
    ) -> Path:
        """The build requirements installed, then the backend's build_wheel, through the sandbox."""
        # build reports backend warnings through `warnings`: they belong in the build log.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                requires = self._requirements(builder.build_system_requires, "build-system.requires")
                requires += self._requirements(prepared.requirements, "the overrides and remedy")
                self._install(env_python, requires, build=True)
                self._regenerate(prepared, srcdir)
                extra = builder.get_requires_for_build("wheel")
                if extra:
                    self._install(
                        env_python,
                        self._requirements(extra, "the backend's get_requires_for_build_wheel"),
                        build=True,
                    )
                return Path(builder.build("wheel", outdir))
            finally:
                for warning in caught:
                    self.log.line(f"warning: {warning.message}")

    def _regenerate(self, prepared: Prepared, srcdir: Path) -> None:
        """The Cython outputs generated again, with a current Cython of an environment of its own."""
        if not prepared.generated or self.changes.regenerate_cython is None:
            return
        interpreter = self.capabilities.interpreter_for(self.job.target)
        assert interpreter is not None
        python = self._create_env(interpreter, self.workdir / "cythonenv")
        self._install(python, [self.changes.regenerate_cython])
        regenerate(prepared.generated, python, srcdir, self._sandbox_for())

    def _cibuildwheel(self, archive: Path) -> Path:
        return build_with_cibuildwheel(
            self.job.target,
            archive,
            self.private,
            base_env=self._tool_env(),
            build_env=self._toolchain_env(),
            log=self.log,
            timeout=self.settings.limits.wall_seconds,
        )

    def _check_and_publish(
        self, release: Release, sdist: DistFile, interpreter: Interpreter, taken: Path, *, repair: bool
    ) -> BuildOutcome:
        """Repair (Linux), verify, prove and publish the worker's own copy of a built wheel."""
        repaired = self._step("repair", lambda: self._repair(taken)) if repair else taken
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
        self._current = name
        self.report(name, {})
        self.log.line(f"==> {name}")
        started = time.monotonic()
        try:
            return action()
        finally:
            self.timings[name] = round(time.monotonic() - started, 3)

    def _failed(self, exc: WheelyardError) -> BuildOutcome:
        self.log.line(f"wheelyard: build failed: {exc.message}")
        if exc.hint:
            self.log.line(f"wheelyard: hint: {exc.hint}")
        return BuildOutcome(
            "failed", error=exc, timings=self.timings, log_path=self.log.path, redact=self.log.redactor.text
        )

    def _sandbox_for(self) -> Sandbox:
        if self._sandbox is None:
            rust = rust_for_build(self.settings, self.workdir / "cargo-home")
            # The directories of the builds' PATH, wherever they are (a worker's own toolchain directory).
            on_path = [Path(p) for p in (self.settings.build_path or "").split(os.pathsep) if p and Path(p).is_dir()]
            changed = {**self.changes.environment, **forced_includes(self.changes, self.shared, self.log.line)}
            self._sandbox = Sandbox(
                limits=self.settings.limits,
                workdir=self.workdir,
                log=self.log,
                enabled=self.settings.sandbox,
                read_only=[*rust.read_only, *on_path],
                env=build_environment({**self._toolchain_env(), **rust.environment, **changed}),
                hidden=[self.settings.data_dir, *secret_paths(os.environ)],
                # The sources (backends write build/ and metadata there), the wheel's output
                # directory and cargo's home; the build and prove environments stay read-only.
                writable=[self.workdir / "src", self.workdir / "out", self.workdir / "cargo-home"],
            )
        return self._sandbox

    def _toolchain_env(self) -> dict[str, str]:
        """What a build sees of the worker's toolchain (never its settings): the jobs it may run and
        a fixed SOURCE_DATE_EPOCH for reproducible zips (Rust: builder/rust_toolchain.py)."""
        env = {"SOURCE_DATE_EPOCH": "315532800"}
        # How many jobs this build may run, chosen with the worker's concurrency (docs/deploy.md).
        env.update(job_environment(self.settings.build_jobs or resolve_parallelism(self.settings).jobs))
        # The PATH whose tools the worker advertises (builder.advertised) is the one builds get.
        env["PATH"] = self.settings.build_path or DEFAULT_PATH
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
            "HOME": str(self.private),
            "UV_NO_CONFIG": "1",
            # Per build, in the worker's private part of the work directory: what a build requirement
            # unpacks is counted in the build's disk limit and goes with the work directory, never
            # into a shared cache, and the build cannot plant anything in it.
            "UV_CACHE_DIR": str(self.private / "uv-cache"),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_SYSTEM_CERTS": "1",  # trust the host's CA store, as pip does
            "PIP_CONFIG_FILE": os.devnull,
            "LANG": "C.UTF-8",
            **{k: os.environ[k] for k in ("SSL_CERT_FILE", "SSL_CERT_DIR") if k in os.environ},
        }

    def _run_tool(self, cmd: Sequence[str], timeout: float = 600) -> None:
        """A tool of the worker's, outside the sandbox: in the worker's own directory (run_tool
        states and enforces the rule)."""
        self.log.line("$ " + " ".join(str(c) for c in cmd))
        code, output = run_tool(cmd, env=self._tool_env(), cwd=self.private, timeout=timeout)
        self.log.write(output)
        self.log.flush()
        if code != 0:
            raise subprocess.CalledProcessError(code, list(cmd))

    def _create_env(self, interpreter: Interpreter, path: Path) -> Path:
        self._run_tool([uv_binary(), "venv", "--no-config", "--python", interpreter.path, str(path)])
        return path / "bin" / "python"

    def _requirements(self, entries: Any, source: str) -> list[str]:
        """A build's requirements as data: each parsed as PEP 508, or the build is refused."""
        return parse_build_requirements(
            entries, source=source, allow_direct_urls=self.settings.allow_direct_url_requirements
        )

    def _install(
        self, python: Path, requirements: Sequence[str], *, find_links: Path | None = None, build: bool = False
    ) -> None:
        """Install from wheels only, in the installer's sandbox (builder.installs). ``build``: the
        build requirements, under the constraints and upload date of the build's changes."""
        if requirements:
            self._installs += 1
            listing = self.shared / f"requirements-{self._installs}.txt"
            options: list[str] = []
            if build and self._sdist is not None:
                options = install_options(self.changes, self._sdist, self.shared, self._installs)
            install_requirements(
                self.settings, self.workdir, self.log, python, requirements, listing, find_links, options
            )

    def _repair(self, wheel: Path) -> Path:
        wheel = self._unless_hollow(wheel)
        tags = parse_wheel_filename(wheel.name)[3]
        if all(t.platform == "any" for t in tags):
            return wheel
        if self.job.target.os != "linux":
            return wheel  # delocate / delvewheel belong to macOS and Windows workers
        repaired_dir = self.private / "repaired"
        self._run_tool([sys.executable, "-I", "-m", "auditwheel", "repair", "-w", str(repaired_dir), str(wheel)])
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
            pure = retag_pure(wheel, self.private / "retagged")
            self.log.line(f"wheelyard: {what}; publishing it as {pure.name} (WHEELYARD_PUBLISH_HOLLOW_AS_PURE)")
            return pure
        raise HollowWheel(what)

    def _prove(self, interpreter: Interpreter, wheel: Path) -> None:
        """Install the wheel into a fresh environment and import its modules (builder/proof.py), in the sandbox."""
        env_python = self._create_env(interpreter, self.workdir / "proveenv")
        # A copy: what runs in the proof (the package's own import-time code) cannot reach the
        # verified file, which is the one published. Its dependencies come from upstream, as a
        # client's would.
        links = self.shared / "prove"
        links.mkdir(exist_ok=True)
        os.chmod(links, 0o755)
        copy = links / wheel.name
        shutil.copyfile(wheel, copy)
        os.chmod(copy, 0o644)
        self._install(env_python, [str(copy)], find_links=links)
        plan = adjust_plan(plan_imports(read_layout(wheel)), self.changes)
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
        """Upload the verified file; the hash the index then lists (builder.publish.publish_verified)."""
        return publish_verified(
            path,
            sha256,
            index_url=self.settings.index_url,
            user=self.settings.index_user,
            password=self.upload_password,
            say=self.log.line,
        )


def work_directory(root: Path | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix="wheelyard-build-", dir=root))
