"""Make the corpus's logs of a CI service's time limit: a real CI system ends a real build.

A Buildbot master and worker (from PyPI, in a scratch venv in bench/.cache/corpus/ci) run on
this machine, on ports of 127.0.0.1 only. Their one builder has one ShellCommand step, a real
``pip wheel`` of a real sdist that builds slowly (numpy's C extension), with the step's own time
limit: ``maxTime`` (wall time of the step) or ``timeout`` (seconds without output). The build is
started through the REST API (the force scheduler) and the step's log is taken as a user sees
it, through the REST API's raw log (``/api/v2/logs/ID/raw``): the output of pip, with the
worker's header lines and its own words for the limit. It is stored as
``tests/corpus/own/<id>.log``, trimmed as the other logs there (make_own_logs.trim); labels are
written afterwards, by reading the log.

The case ``autopkgtest`` is a second CI system: Debian's autopkgtest (the runner of Debian's CI;
``apt-get install autopkgtest``) runs the test of a source tree made here, whose one test is a
``pip wheel`` of numpy, on this machine (its ``null`` testbed, no binaries built or installed),
with its time limit for a test (``--timeout-test``). Its output (stdout and stderr) is kept.

Run:  python tests/corpus/make_ci_logs.py CASE ID   (e.g. max-time own-951)
Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.corpus.make_own_logs import CACHE, PYENV, base_env, trim  # noqa: E402

OWN = Path(__file__).resolve().parent / "own"
BUILDBOT = "4.3.0"
VENV = CACHE / "ci" / f"buildbot-{BUILDBOT}"
PB_PORT, WWW_PORT = 19989, 18010
API = f"http://127.0.0.1:{WWW_PORT}/api/v2"
PY = "3.11.7"  # pip 23.2.1
REQ = "numpy==1.24.4"
# The step's limit, in the words of ShellCommand's arguments.
CASES: dict[str, dict[str, int]] = {"max-time": {"maxTime": 120}, "no-output": {"timeout": 40}}
VERBOSE = {"max-time": True, "no-output": False}  # pip without -v is silent while it compiles
# autopkgtest's case: numpy by pip 23.0.1 on 3.10, with a time limit for the test
DEBIAN_REQ, DEBIAN_PY, DEBIAN_TIMEOUT = "numpy==1.24.4", "3.10.13", 90
DEBIAN_FILES = {
    "control": (
        "Source: numpy-wheel\nSection: python\nPriority: optional\n"
        "Maintainer: wheelyard <wheelyard@localhost>\nStandards-Version: 4.6.2\n\n"
        "Package: numpy-wheel\nArchitecture: all\nDescription: builds a wheel of numpy from its sdist\n"
        " The test builds the wheel.\n"
    ),
    "changelog": (
        "numpy-wheel (1.24.4-1) unstable; urgency=medium\n\n  * Build numpy 1.24.4's wheel from its sdist.\n\n"
        " -- wheelyard <wheelyard@localhost>  Tue, 01 Dec 2026 19:00:00 +0000\n"
    ),
    "source/format": "3.0 (native)\n",
    "tests/control": "Test-Command: {command}\nDepends:\nRestrictions: allow-stderr, needs-internet\n",
}

MASTER_CFG = """\
from buildbot.plugins import schedulers, steps, util, worker

c = BuildmasterConfig = {{}}
c["title"] = "wheelyard wheels"
c["buildbotURL"] = "http://127.0.0.1:{www}/"
c["workers"] = [worker.Worker("wheel-worker", "wheel-worker-pass")]
c["protocols"] = {{"pb": {{"port": "tcp:{pb}:interface=127.0.0.1"}}}}
c["www"] = {{"port": "tcp:{www}:interface=127.0.0.1", "plugins": {{}}}}
c["db"] = {{"db_url": "sqlite:///state.sqlite"}}
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["{req}"])]
factory = util.BuildFactory()
factory.addStep(steps.ShellCommand(name="pip wheel", command={command!r}, {limit}))
c["builders"] = [util.BuilderConfig(name="{req}", workernames=["wheel-worker"], factory=factory)]
"""


def _api(path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return raw.decode("utf-8", "replace") if path.endswith("/raw") else json.loads(raw)


def _wait(what: str, ready: Any, seconds: float) -> Any:
    """Poll ``ready()`` until it gives something (a daemon's state has no event to wait on)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got = ready()
        except OSError:
            got = None
        if got:
            return got
        time.sleep(1)
    raise SystemExit(f"{what}: not after {seconds} s")


def buildbot_venv() -> Path:
    if not (VENV / "bin" / "buildbot").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pkgs = [f"buildbot[bundle]=={BUILDBOT}", f"buildbot-worker=={BUILDBOT}"]
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *pkgs], check=True, env=base_env())
    return VENV / "bin"


def worker_env(tmp: Path) -> dict[str, str]:
    """The worker's environment: a few variables, none of the machine's PIP_* ones."""
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "TMPDIR": str(tmp / "tmp")}
    env["PIP_CACHE_DIR"] = str(tmp / "pip-cache")
    if "PIP_CERT" in os.environ:  # the machine's CA bundle, needed to reach the index
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    return env


def step_command(case: str) -> list[str]:
    name = REQ.split("==")[0]
    command = [str(PYENV / PY / "bin" / "python"), "-m", "pip", "wheel", *(["-v"] if VERBOSE[case] else [])]
    return [*command, "--no-deps", "--no-binary", name, "-w", "wheels", REQ]


def run_build(case: str, tmp: Path) -> tuple[str, dict[str, Any]]:
    """Start master and worker, force one build, wait for it; the step's raw log and the build."""
    bin_dir = buildbot_venv()
    command = step_command(case)
    limit = ", ".join(f"{k}={v}" for k, v in CASES[case].items())
    master, work = tmp / "master", tmp / "worker"
    (tmp / "tmp").mkdir()
    subprocess.run([str(bin_dir / "buildbot"), "create-master", "-q", str(master)], check=True)
    cfg = MASTER_CFG.format(www=WWW_PORT, pb=PB_PORT, req=REQ, command=command, limit=limit)
    (master / "master.cfg").write_text(cfg, encoding="utf-8")
    subprocess.run(
        [str(bin_dir / "buildbot-worker"), "create-worker", "-q", str(work)]
        + [f"127.0.0.1:{PB_PORT}", "wheel-worker", "wheel-worker-pass"],
        check=True,
    )
    daemons = [
        subprocess.Popen([str(bin_dir / "buildbot"), "start", "--nodaemon", str(master)], cwd=master),
        subprocess.Popen(
            [str(bin_dir / "buildbot-worker"), "start", "--nodaemon", str(work)], cwd=work, env=worker_env(tmp)
        ),
    ]
    try:
        _wait("worker connected", lambda: _api("/workers")["workers"][0]["connected_to"], 120)
        builder = _api("/builders")["builders"][0]["builderid"]
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "force", "params": {"builderid": str(builder)}}
        _api("/forceschedulers/force", rpc)
        build = _wait("build complete", lambda: _api("/builds?complete=true")["builds"], 1800)[0]
        step = next(s for s in _api(f"/builds/{build['buildid']}/steps")["steps"] if s["name"] == "pip wheel")
        log = next(x for x in _api(f"/steps/{step['stepid']}/logs")["logs"] if x["slug"] == "stdio")
        return _api(f"/logs/{log['logid']}/raw"), build
    finally:
        for proc in daemons:  # the two daemons this run started, by their process
            proc.terminate()
            proc.wait(60)


def debian_command() -> str:
    name = DEBIAN_REQ.split("==")[0]
    python = PYENV / DEBIAN_PY / "bin" / "python"
    return f'{python} -m pip wheel -v --no-deps --no-binary {name} -w "$AUTOPKGTEST_TMP" {DEBIAN_REQ}'


def run_autopkgtest(tmp: Path) -> tuple[str, int]:
    """autopkgtest runs the test of a source tree made in ``tmp``; its output and exit status."""
    src = tmp / "src" / "debian"
    for rel, text in DEBIAN_FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text.format(command=debian_command()), encoding="utf-8")
    (tmp / "tmp").mkdir()
    env = worker_env(tmp)
    # dpkg wants the sbin directories on root's PATH
    host = {
        "HOME": env.pop("HOME"),
        "LC_ALL": env.pop("LC_ALL"),
        "PATH": "/usr/local/sbin:/usr/sbin:/sbin:" + env.pop("PATH"),
    }
    argv = ["autopkgtest", "--no-built-binaries", f"--timeout-test={DEBIAN_TIMEOUT}"]
    argv += [f"--env={k}={v}" for k, v in env.items()] + [f"{src.parent}/", "--", "null"]
    proc = subprocess.run(argv, env=host, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1800, check=False)
    return proc.stdout.decode("utf-8", "replace"), proc.returncode


def debian_run(run_id: str, text: str, rc: int) -> dict[str, Any]:
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "autopkgtest"], capture_output=True, text=True, check=True
    ).stdout
    return {
        "id": run_id,
        "req": DEBIAN_REQ,
        "front_end": "pip23-py310",
        "condition": "ci-autopkgtest",
        "exit": rc,
        "command": debian_command(),
        "ci": f"autopkgtest {version} (Debian 12), null testbed, --timeout-test={DEBIAN_TIMEOUT}",
        "lines": len(text.splitlines()),
        "trimmed": trim(text) != text,
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=[*sorted(CASES), "autopkgtest"])
    ap.add_argument("id", help="the log's name, e.g. own-951")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="corpus-") as d:
        if args.case == "autopkgtest":
            text, rc = run_autopkgtest(Path(d))
        else:
            text, build = run_build(args.case, Path(d))
        text = text.replace(d, "/tmp/corpus-XXXX")
    (OWN / "raw").mkdir(exist_ok=True)
    (OWN / "raw" / f"{args.id}.log").write_text(text, encoding="utf-8")
    (OWN / f"{args.id}.log").write_text(trim(text), encoding="utf-8")
    if args.case == "autopkgtest":
        print(json.dumps(debian_run(args.id, text, rc), indent=1))
        return 0
    limit = ", ".join(f"{k}={v}" for k, v in CASES[args.case].items())
    run = {
        "id": args.id,
        "req": REQ,
        "front_end": "pip23-py311",
        "condition": f"ci-{args.case}",
        "command": " ".join(step_command(args.case)),
        "ci": f"buildbot {BUILDBOT} (master and worker), ShellCommand({limit})",
        "build_results": build["results"],
        "state_string": build["state_string"],
        "lines": len(text.splitlines()),
        "trimmed": trim(text) != text,
    }
    print(json.dumps(run, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
