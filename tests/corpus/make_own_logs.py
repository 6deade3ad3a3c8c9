"""Make the large corpus: real failed builds of sdists drawn at random, recorded as logs.

Each run is one real front end (pip 18 to current on the pyenv Pythons, uv, ``python -m build``)
building one sdist from PyPI under one condition that takes something away (a compiler hidden
from PATH by a directory of symlinks, pkg-config or cmake hidden, cargo hidden or offline,
``ulimit -v`` / ``ulimit -f``, an index that refuses connections for the build dependencies) or
none (an old sdist on a new Python fails by itself). Packages are drawn with a fixed seed from
the list of PyPI's most downloaded projects and from a pool of old releases of extension
packages. The combined stdout+stderr is kept as ``tests/corpus/own/raw/<id>.log`` with what was
run in ``runs.jsonl``; labels are written afterwards, by reading the logs (``labels.json``).

Run:  python tests/corpus/make_own_logs.py COUNT [--seed N] [--jobs 2]
      python tests/corpus/make_own_logs.py 0 --finalize   (trimmed copies into tests/corpus/own)
Downloads and scratch environments live in bench/.cache/corpus (git-ignored).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "own" / "raw"
CACHE = ROOT / "bench" / ".cache" / "corpus"
PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
PYPI_LIST = Path("/work/.library/env/packages/pypi.tsv")
MAX_LINES = 4000  # longer logs keep their first 1000 and last 3000 lines (and say so)
TIMEOUT = 420
_lock = threading.Lock()
UV = shutil.which("uv") or str(ROOT / ".venv" / "bin" / "uv")

# Old releases of extension packages (C, C++, Cython, Rust): the pool the random draw mixes in.
OLD_POOL = [
    "numpy==1.21.6",
    "numpy==1.19.5",
    "numpy==1.24.4",
    "pandas==1.3.5",
    "scipy==1.5.4",
    "scipy==1.9.3",
    "yarl==1.8.2",
    "multidict==6.0.2",
    "frozenlist==1.3.0",
    "aiohttp==3.8.4",
    "pyyaml==5.4.1",
    "pyyaml==6.0",
    "greenlet==1.1.3",
    "greenlet==2.0.2",
    "lxml==4.6.3",
    "lxml==4.9.2",
    "cffi==1.15.0",
    "markupsafe==2.0.1",
    "ujson==4.0.2",
    "cython==0.29.21",
    "pillow==8.4.0",
    "pillow==9.5.0",
    "psutil==5.8.0",
    "gevent==21.12.0",
    "regex==2021.11.10",
    "simplejson==3.17.6",
    "msgpack==1.0.2",
    "pyzmq==22.3.0",
    "netifaces==0.11.0",
    "pycryptodome==3.10.1",
    "bitarray==2.3.0",
    "cytoolz==0.11.2",
    "kiwisolver==1.3.2",
    "matplotlib==3.3.4",
    "zstandard==0.15.2",
    "lz4==3.1.3",
    "brotli==1.0.9",
    "mmh3==3.0.0",
    "xxhash==2.0.2",
    "wrapt==1.12.1",
    "ruamel.yaml.clib==0.2.6",
    "pyrsistent==0.18.0",
    "uvloop==0.16.0",
    "httptools==0.2.0",
    "websockets==9.1",
    "sqlalchemy==1.4.27",
    "orjson==3.6.0",
    "cryptography==3.4.8",
    "cryptography==41.0.7",
    "bcrypt==4.0.1",
    "pydantic-core==2.14.5",
    "rpds-py==0.10.0",
    "tokenizers==0.13.3",
    "h5py==3.6.0",
    "pycairo==1.20.1",
    "pygobject==3.42.0",
    "dbus-python==1.2.18",
    "python-ldap==3.4.0",
    "mysqlclient==2.1.0",
    "pyaudio==0.2.11",
    "pyodbc==4.0.32",
    "python-snappy==0.6.0",
    "pycurl==7.44.1",
    "m2crypto==0.38.0",
    "psycopg2==2.9.3",
    "gssapi==1.7.2",
    "pykerberos==1.2.1",
    "pyfuse3==3.2.1",
    "llvmlite==0.36.0",
    "dlib==19.22.1",
    "shapely==1.8.0",
    "pyproj==3.2.1",
    "fiona==1.8.20",
    "gdal==3.4.1",
    "pysam==0.18.0",
    "pycups==2.0.1",
    "beautifulsoup==3.2.2",
    "mysql-python==1.2.5",
    "pycrypto==2.6.1",
    "pysqlite==2.8.3",
    "scikit-learn==0.24.2",
    "statsmodels==0.13.1",
    "cchardet==2.1.7",
    "editdistance==0.6.0",
    "pystemmer==2.0.1",
    "levenshtein==0.12.0",
    "python-levenshtein==0.12.2",
    "rapidfuzz==1.8.0",
    "pyarrow==6.0.1",
    "grpcio==1.43.0",
    "setproctitle==1.2.2",
    "pyinotify==0.9.6",
    "twisted==21.7.0",
    "numba==0.54.1",
    "tables==3.6.1",
    "pymssql==2.2.2",
    "lupa==1.10",
    "python-rapidjson==1.5",
    "pynacl==1.4.0",
    "argon2-cffi==21.1.0",
    "ckzg==0.4.0",
    "pyjq==2.6.0",
    "jq==1.2.1",
]

# (front end id, Python version, how)
FRONT_ENDS = [
    ("pip18-py36", "3.6.15", "pip"),
    ("pip22-py37", "3.7.16", "pip"),
    ("pip23-py38", "3.8.18", "pip"),
    ("pip23-py310", "3.10.13", "pip"),
    ("pip23-py311", "3.11.7", "pip"),
    ("pip23-py312", "3.12.1", "pip"),
    ("pip24-py313", "3.13.0", "pip"),
    ("pipnew-py312", "3.12.1", "pipnew"),
    ("pip25-py313", "3.13.0", "pip25"),
    ("uv-py312", "3.12.1", "uv"),
    ("uv-py313", "3.13.0", "uv"),
    ("uv-py311", "3.11.7", "uv"),
    ("build-py312", "3.12.1", "build"),
    ("build-py311", "3.11.7", "build"),
]

CONDITIONS = [
    ("plain", 3),
    ("no-cc", 6),
    ("no-cxx", 3),
    ("no-compilers", 2),
    ("no-pkg-config", 2),
    ("no-cmake", 1),
    ("no-cargo", 2),
    ("cargo-offline", 2),
    ("ulimit-v", 2),
    ("ulimit-f", 1),
    ("bad-index", 3),
]

HIDE = {
    "no-cc": {"gcc", "cc", "c89", "c99", "gcc-12", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-gcc-12", "clang"},
    "no-cxx": {"g++", "c++", "g++-12", "x86_64-linux-gnu-g++", "x86_64-linux-gnu-g++-12", "clang++"},
    "no-pkg-config": {"pkg-config", "x86_64-linux-gnu-pkg-config", "pkgconf"},
    "no-cmake": {"cmake", "ctest", "cpack"},
}
HIDE["no-compilers"] = HIDE["no-cc"] | HIDE["no-cxx"]


def popular(rng: random.Random, n: int) -> list[str]:
    """``n`` requirements drawn from the most downloaded projects of the PyPI list."""
    rows = []
    with PYPI_LIST.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row.get("rank_among_15000_most_downloaded") and row["version"]:
                rows.append(f"{row['name']}=={row['version']}")
    return rng.sample(rows, n)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    if "PIP_CERT" in os.environ:  # the machine's CA bundle, needed to reach the index
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    env["UV_SYSTEM_CERTS"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_CACHE_DIR"] = str(CACHE / "pip-cache")
    env["UV_CACHE_DIR"] = str(CACHE / "uv-cache")
    env["UV_NO_CONFIG"] = "1"
    env["LC_ALL"] = "C.UTF-8"
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if "pyenv" not in p)
    return env


def shadow_path(tmp: Path, hide: set[str], cargo: bool) -> str:
    d = tmp / "bin"
    d.mkdir()
    for p in Path("/usr/bin").iterdir():
        if p.name not in hide:
            (d / p.name).symlink_to(p)
    return (str(Path.home() / ".cargo" / "bin") + ":" if cargo else "") + f"/usr/local/bin:{d}"


def scratch_venv(kind: str, py: str) -> Path:
    """A cached venv holding the front end (newest pip, pip 25, uv's target, build)."""
    venv = CACHE / "fe" / f"{kind}-{py}"
    with _lock:
        if not (venv / "bin" / "python").exists():
            subprocess.run([str(PYENV / py / "bin" / "python"), "-m", "venv", str(venv)], check=True)
            pkgs = {"pipnew": ["pip"], "pip25": ["pip==25.0.1"], "build": ["pip", "build"], "uv": []}[kind]
            if pkgs:
                subprocess.run(
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-U", *pkgs],
                    check=True,
                    env=base_env(),
                )
    return venv


def fetch_sdist(req: str, env: dict[str, str]) -> Path | None:
    """The sdist of ``req`` in bench/.cache/corpus/sdists (pip download, cached)."""
    dest = CACHE / "sdists" / req.replace("==", "-")
    if not dest.is_dir() or not any(dest.iterdir()):
        dest.mkdir(parents=True, exist_ok=True)
        name = req.split("==")[0]
        subprocess.run(
            [
                str(PYENV / "3.11.7" / "bin" / "python"),
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                name,
                "--ignore-requires-python",
                "-q",
                "-d",
                str(dest),
                req,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
            check=False,
        )
    files = [p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip", ".tar.bz2"))]
    return files[0] if files else None


def command(
    fe: tuple[str, str, str], req: str, cond: str, tmp: Path, env: dict[str, str], pep517_seed: int
) -> list[str] | None:
    fe_id, py, how = fe
    name = req.split("==")[0]
    bad = ["--index-url", "http://127.0.0.1:9/simple/"] if cond == "bad-index" else []
    target: str = req
    if cond == "bad-index" or how == "build":
        sdist = fetch_sdist(req, env)
        if sdist is None:
            return None
        target = str(sdist)
    if how == "build":
        src = tmp / "src"
        shutil.unpack_archive(str(sdist), str(src))
        dirs = [p for p in src.iterdir() if p.is_dir()]
        if len(dirs) != 1:
            return None
        venv = scratch_venv("build", py)
        return (
            [
                str(venv / "bin" / "python"),
                "-m",
                "build",
                "--wheel",
                "--outdir",
                str(tmp / "out"),
                str(dirs[0]),
                *(["--installer", "pip"] if not bad else []),
            ]
            if not bad
            else None
        )
    if how == "uv":
        venv = tmp / "venv"
        subprocess.run(
            [UV, "venv", "-q", "--python", str(PYENV / py / "bin" / "python"), str(venv)], env=env, check=True
        )
        return [
            UV,
            "pip",
            "install",
            "--python",
            str(venv / "bin" / "python"),
            "--no-deps",
            "--no-binary",
            name,
            *bad,
            target,
        ]
    python = str(PYENV / py / "bin" / "python") if how == "pip" else str(scratch_venv(how, py) / "bin" / "python")
    # two runs in three build in an isolated environment even where pip would not (setup.py only)
    pep517 = ["--use-pep517"] if pep517_seed % 3 and fe_id != "pip18-py36" else []
    return [
        python,
        "-m",
        "pip",
        "wheel",
        "-v",
        *pep517,
        "--no-deps",
        "--no-binary",
        name,
        "-w",
        str(tmp / "out"),
        *bad,
        *(["--retries", "1", "--timeout", "3"] if bad else []),
        target,
    ]


def run_one(idx: int, req: str, fe: tuple[str, str, str], cond: str) -> dict[str, object] | None:
    rid = f"own-{idx:03d}"
    if (OUT / f"{rid}.log").exists():
        return None
    env = base_env()
    with tempfile.TemporaryDirectory(prefix="corpus-") as d:
        tmp = Path(d)
        env["TMPDIR"] = str(tmp)
        hide = HIDE.get(cond, set())
        env["PATH"] = shadow_path(tmp, hide, cargo=cond != "no-cargo")
        if cond == "cargo-offline":
            env["CARGO_NET_OFFLINE"] = "true"
            env["CARGO_HOME"] = str(tmp / "cargo-home")
        try:
            argv = command(fe, req, cond, tmp, env, idx)
        except (subprocess.SubprocessError, OSError, shutil.ReadError) as exc:
            print(f"[{rid}] skipped: {exc}", flush=True)
            return None
        if argv is None:
            print(f"[{rid}] skipped: no sdist for {req} / {fe[0]} {cond}", flush=True)
            return None
        limit = {"ulimit-v": "ulimit -v 900000; ", "ulimit-f": "ulimit -f 4000; "}.get(cond, "")
        shell = limit + " ".join(_quote(a) for a in argv)
        try:
            proc = subprocess.run(
                ["bash", "-c", shell],
                cwd=tmp,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT,
            )
            out, rc = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired:
            print(f"[{rid}] timed out: {req} {fe[0]} {cond}", flush=True)
            return None
    text = out.decode("utf-8", "replace").replace(str(tmp), "/tmp/corpus-XXXX")
    lines = text.splitlines(keepends=True)
    trimmed = len(lines) > MAX_LINES
    if trimmed:
        lines = lines[:1000] + [f"[... {len(lines) - MAX_LINES} lines cut from this log ...]\n"] + lines[-3000:]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{rid}.log").write_text("".join(lines), encoding="utf-8")
    meta = {
        "id": rid,
        "req": req,
        "front_end": fe[0],
        "condition": cond,
        "exit": rc,
        "command": " ".join(argv).replace(str(tmp), "/tmp/corpus-XXXX"),
        "lines": len(lines),
        "trimmed": trimmed,
    }
    with _lock, (OUT / "runs.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(meta) + "\n")
    print(f"[{rid}] {req} {fe[0]} {cond}: exit {rc}, {len(lines)} lines", flush=True)
    return meta


def _quote(a: str) -> str:
    return "'" + a.replace("'", "'\\''") + "'"


def plan(count: int, seed: int) -> list[tuple[str, tuple[str, str, str], str]]:
    rng = random.Random(seed)
    reqs = popular(rng, count // 6) + [rng.choice(OLD_POOL) for _ in range(count - count // 6)]
    rng.shuffle(reqs)
    conds = [c for c, w in CONDITIONS for _ in range(w)]
    return [(r, rng.choice(FRONT_ENDS), rng.choice(conds)) for r in reqs]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("count", type=int)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--start", type=int, default=1, help="number of the first log")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--finalize", action="store_true", help="copy the raw logs into tests/corpus/own, trimmed")
    args = ap.parse_args(argv)
    if args.finalize:
        kept = finalize(args.seed)
        (OUT.parent / "runs.json").write_text(json.dumps(kept, indent=1) + "\n", encoding="utf-8")
        print(f"{len(kept)} logs kept in {OUT.parent}")
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    runs = plan(args.count, args.seed)
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, args.start + i, *r) for i, r in enumerate(runs)]
        for f in futures:
            f.result()
    return 0


# -- after the runs: the logs kept in the repository ----------------------------------------

KEEP_LINES = (400, 1600)  # a longer log keeps its first and last lines, and says how many were cut
MAX_WIDTH = 600  # a longer line (pip 18's lists of links) keeps its start, and says so
MAX_SUCCESSES = 30  # logs that did not fail: a few, drawn at random


def _collapse(lines: list[str]) -> list[str]:
    """A run of more than 30 lines that start alike (or pip's "Skipping link ...") keeps its first
    and last 10, and says how many were cut."""

    def kind(line: str) -> str:  # pip's link evaluation says one of several things per file
        return "link" if "https://files.pythonhosted.org/packages/" in line else " ".join(line.split()[:2])

    out: list[str] = []
    i = 0
    while i < len(lines):
        key = kind(lines[i])
        j = i
        while j < len(lines) and key and kind(lines[j]) == key:
            j += 1
        run = lines[i : max(j, i + 1)]
        if len(run) > 30:
            run = [*run[:10], f"[... {len(run) - 20} similar lines cut from this log ...]", *run[-10:]]
        out.extend(run)
        i = max(j, i + 1)
    return out


def trim(text: str) -> str:
    lines = [
        ln if len(ln) <= MAX_WIDTH else f"{ln[:MAX_WIDTH]} [... {len(ln) - MAX_WIDTH} characters cut]"
        for ln in text.split("\n")
    ]
    lines = _collapse(lines)
    head, tail = KEEP_LINES
    if len(lines) > head + tail + 1:
        lines = [*lines[:head], f"[... {len(lines) - head - tail} lines cut from this log ...]", *lines[-tail:]]
    return "\n".join(lines)


def finalize(seed: int) -> list[dict[str, object]]:
    """Copy the raw logs into tests/corpus/own (trimmed; at most MAX_SUCCESSES that did not fail)."""
    by_id = {}
    for x in (OUT / "runs.jsonl").read_text("utf-8").splitlines():
        if x.strip():
            run = json.loads(x)
            by_id[run["id"]] = run  # a run made again replaces the first
    runs = [r for _, r in sorted(by_id.items()) if (OUT / f"{r['id']}.log").is_file()]
    ok = [r for r in runs if r["exit"] == 0]
    keep_ok = {str(r["id"]) for r in random.Random(seed).sample(ok, min(MAX_SUCCESSES, len(ok)))}
    kept = [r for r in runs if r["exit"] != 0 or r["id"] in keep_ok]
    dest = OUT.parent
    for r in kept:
        text = (OUT / f"{r['id']}.log").read_text("utf-8", errors="replace")
        (dest / f"{r['id']}.log").write_text(trim(text), encoding="utf-8")
    return kept


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
