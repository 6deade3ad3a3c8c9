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
TIMEOUT = int(os.environ.get("CORPUS_TIMEOUT", "420"))  # seconds a run may take before it is dropped
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

# A second pool of old extension releases (none of them in OLD_POOL): the fresh held-out batch
# (``--fresh``) draws from this one, so its logs come from packages the rules were not written on.
FRESH_POOL = [
    "numpy==1.16.6",
    "pandas==1.5.3",
    "pandas==0.25.3",
    "scipy==1.7.3",
    "scikit-image==0.19.3",
    "astropy==4.3.1",
    "pyerfa==2.0.0",
    "cftime==1.5.1",
    "netcdf4==1.5.8",
    "pywavelets==1.1.1",
    "numexpr==2.7.3",
    "bottleneck==1.3.2",
    "pyzmq==19.0.2",
    "tornado==6.1",
    "coverage==5.5",
    "sqlalchemy==1.3.24",
    "mysqlclient==1.4.6",
    "pymongo==3.12.0",
    "ujson==5.1.0",
    "pycryptodomex==3.10.1",
    "cryptography==2.9.2",
    "cryptography==37.0.4",
    "bcrypt==3.2.0",
    "cffi==1.14.6",
    "pyyaml==5.3.1",
    "lxml==4.5.2",
    "pillow==7.2.0",
    "pillow==6.2.2",
    "matplotlib==3.5.3",
    "kiwisolver==1.4.4",
    "shapely==1.7.1",
    "rtree==0.9.7",
    "pycairo==1.21.0",
    "pyaudio==0.2.13",
    "pygame==2.1.2",
    "mpi4py==3.1.3",
    "h5py==3.1.0",
    "tables==3.7.0",
    "pyodbc==4.0.30",
    "cx-oracle==8.3.0",
    "python-ldap==3.3.1",
    "m2crypto==0.37.1",
    "evdev==1.4.0",
    "xattr==0.9.9",
    "pycosat==0.6.3",
    "jellyfish==0.8.9",
    "murmurhash==1.0.5",
    "cymem==2.0.5",
    "preshed==3.0.5",
    "srsly==2.4.1",
    "tokenizers==0.10.3",
    "orjson==3.4.0",
    "pydantic==1.8.2",
    "cython==0.29.14",
    "gevent==20.9.0",
    "greenlet==0.4.17",
    "uvloop==0.14.0",
    "httptools==0.1.1",
    "aiohttp==3.7.4",
    "yarl==1.6.3",
    "multidict==5.1.0",
    "msgpack==0.6.2",
    "zope.interface==5.4.0",
    "btrees==4.9.2",
    "typed-ast==1.4.3",
    "regex==2020.11.13",
    "ruamel.yaml.clib==0.2.2",
    "brotlipy==0.7.0",
    "lz4==2.2.1",
    "crcmod==1.7",
    "crc32c==2.2",
    "mmh3==2.5.1",
    "pysha3==1.0.2",
    "scrypt==0.8.18",
    "psutil==5.7.3",
    "setproctitle==1.1.10",
    "subprocess32==3.5.4",
    "futures==3.3.0",
    "jpype1==1.3.0",
    "reportlab==3.5.59",
    "pycurl==7.43.0.6",
    "pygit2==1.6.1",
    "pyyaml==3.13",
    "simplejson==3.16.0",
    "ujson==1.35",
    "fasttext==0.9.2",
    "annoy==1.17.0",
    "hnswlib==0.5.2",
    "pyproj==2.6.1",
    "cartopy==0.19.0",
    "rasterio==1.2.10",
    "pygeos==0.10",
    "plyvel==1.3.0",
    "lmdb==1.2.1",
    "bsddb3==6.2.9",
    "confluent-kafka==1.7.0",
    "pylibmc==1.6.1",
    "hiredis==2.0.0",
    "uwsgi==2.0.19.1",
    "mod-wsgi==4.9.0",
    "thriftpy2==0.4.14",
    "fastavro==1.4.4",
    "cytoolz==0.10.1",
    "statsmodels==0.12.2",
    "xgboost==1.4.2",
    "cvxopt==1.2.7",
    "ecos==2.0.7",
    "osqp==0.6.2",
    "gmpy2==2.0.8",
    "coincurve==15.0.1",
    "pygobject==3.40.1",
    "sip==4.19.25",
    "gnureadline==8.0.0",
    "simpleaudio==1.0.4",
    "pyalsaaudio==0.9.0",
    "python-rtmidi==1.4.9",
    "pygraphviz==1.7",
    "python-igraph==0.9.6",
    "biopython==1.79",
    "mappy==2.22",
    "numcodecs==0.9.1",
    "blosc==1.10.6",
    "pymssql==2.1.5",
    "asyncpg==0.24.0",
    "pyobjc-core==7.3",
    "pywin32-ctypes==0.2.0",
    "psycopg2==2.8.6",
    "dbus-python==1.2.16",
    "pynacl==1.3.0",
    "markupsafe==1.1.1",
    "wrapt==1.11.2",
    "frozenlist==1.2.0",
]

# A third pool, for the batch that replaces held-out logs moved to the development part.
FRESH_POOL_2 = [
    "pycapnp==1.1.0",
    "thrift==0.13.0",
    "uwsgitop==0.11",
    "scikit-learn==0.22.2.post1",
    "lightgbm==3.2.1",
    "scs==2.1.4",
    "cvxpy==1.1.15",
    "pyemd==0.5.1",
    "pyfftw==0.12.0",
    "pyopencl==2021.2.9",
    "pycuda==2021.1",
    "sentencepiece==0.1.96",
    "pymupdf==1.18.19",
    "python-igraph==0.8.3",
    "leidenalg==0.8.8",
    "pybigwig==0.3.18",
    "edlib==1.3.8.post2",
    "parasail==1.2.4",
    "pyfaidx==0.6.3.1",
    "apsw==3.36.0",
    "pysqlite3==0.4.6",
    "python-rocksdb==0.7.0",
    "pyhash==0.9.3",
    "cityhash==0.2.3.post9",
    "bitstruct==8.11.1",
    "cbor2==5.4.1",
    "pyrsistent==0.16.1",
    "immutables==0.15",
    "sortedcollection==0.0.0",
    "pyroaring==0.3.3",
    "datrie==0.8.2",
    "marisa-trie==0.7.7",
    "pyahocorasick==1.4.2",
    "pycld2==0.41",
    "pyicu==2.7.4",
    "python-crfsuite==0.9.7",
    "nmslib==2.1.1",
    "spacy==2.3.7",
    "thinc==7.4.5",
    "blis==0.4.1",
    "pyinstaller==4.5.1",
    "pyxattr==0.7.2",
    "pyudev==0.22.0",
    "systemd-python==234",
    "python-prctl==1.8.1",
    "pyroute2==0.6.5",
    "pycares==4.0.0",
    "aiodns==3.0.0",
    "gevent-websocket==0.10.1",
    "wsaccel==0.6.3",
    "ujson==3.2.0",
    "rapidjson==1.0.0",
    "pysimdjson==4.0.2",
    "cysimdjson==21.11",
    "sasl==0.3.1",
    "pure-sasl==0.6.2",
    "pyhive==0.6.4",
    "python-pam==1.8.4",
    "pykcs11==1.5.12",
    "pyscard==2.0.2",
    "pyusb==1.2.1",
    "hidapi==0.11.0.post2",
    "pyserial-asyncio==0.6",
    "smbus2==0.4.1",
    "rpi.gpio==0.7.0",
    "spidev==3.5",
    "pyopengl-accelerate==3.1.5",
    "glfw==2.5.0",
    "pyglet==1.5.21",
    "kivy==2.0.0",
    "pyside2==5.15.2",
    "pyqt5==5.15.4",
    "wxpython==4.1.1",
    "vtk==9.0.3",
    "open3d==0.13.0",
    "pymunk==6.2.0",
    "box2d-py==2.3.8",
    "pybullet==3.2.0",
    "mujoco-py==2.1.2.14",
    "gym==0.21.0",
    "atari-py==0.2.9",
    "numpy==1.14.6",
    "scipy==1.2.3",
    "pandas==1.1.5",
    "matplotlib==2.2.5",
    "pillow==5.4.1",
    "lxml==3.8.0",
    "cryptography==3.3.2",
    "psycopg2==2.7.7",
    "pyzmq==17.1.2",
    "gevent==1.4.0",
    "greenlet==0.4.15",
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

# ``tiny-tmpdir`` (a TMPDIR that fills up) and ``no-libpython-so`` (the interpreter's library
# without the name the linker looks for) are only run when asked for, not drawn: drawing them
# would change the runs that the seeds above give.
TINY_TMPDIR = 8 * 1024**2

HIDE = {
    "no-cc": {"gcc", "cc", "c89", "c99", "gcc-12", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-gcc-12", "clang"},
    "no-cxx": {"g++", "c++", "g++-12", "x86_64-linux-gnu-g++", "x86_64-linux-gnu-g++-12", "clang++"},
    "no-pkg-config": {"pkg-config", "x86_64-linux-gnu-pkg-config", "pkgconf"},
    "no-cmake": {"cmake", "ctest", "cpack"},
    # asked for by name only, like tiny-tmpdir: the JDK's programs (JAVA_HOME is not set here)
    "no-java": {"java", "javac", "jar", "javadoc", "javap", "jshell", "jlink", "keytool", "jarsigner"},
}
HIDE["no-compilers"] = HIDE["no-cc"] | HIDE["no-cxx"]

# Conditions asked for by name, never drawn: pip builds with ``--no-build-isolation`` in a venv
# that holds these build packages (its bin first on PATH, as when it is activated), as users do
# to build against what they installed themselves. ``old-meson``: a meson older than a
# meson-python sdist asks for (meson-python 0.13.1 accepts it: it asks for meson >= 0.63.3).
# ``system-cmake``: scikit-build-core without the cmake package, so it has the system's CMake
# (3.25.1 here) and nothing newer.
NO_ISOLATION = {
    "old-meson": ["meson==0.64.1", "meson-python==0.13.1"],
    "system-cmake": ["scikit-build-core==1.1.2"],
}


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


def condition_venv(cond: str, py: str) -> Path:
    """A cached venv holding NO_ISOLATION[cond] (and pip), for builds without isolation."""
    venv = CACHE / "fe" / f"{cond}-{py}"
    with _lock:
        if not (venv / "bin" / "python").exists():
            subprocess.run([str(PYENV / py / "bin" / "python"), "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *NO_ISOLATION[cond]],
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
    if cond in NO_ISOLATION:
        venv = condition_venv(cond, py)
        python = str(venv / "bin" / "python")
        env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
        pep517 = ["--no-build-isolation"]
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
        if cond == "tiny-tmpdir":
            shell = tiny_tmpdir(tmp, env, shell)
        if cond == "no-libpython-so":
            shell = without_libpython_link(fe[1], shell)
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


def tiny_tmpdir(tmp: Path, env: dict[str, str], shell: str) -> str:
    """``shell`` with TMPDIR on a tmpfs of TINY_TMPDIR bytes: mounted by bubblewrap in a mount
    namespace of the run's own (the machine's mounts are left as they are)."""
    tiny = tmp / "tiny"
    tiny.mkdir()
    env["TMPDIR"] = str(tiny)
    bwrap = ["bwrap", "--dev-bind", "/", "/", "--size", str(TINY_TMPDIR), "--tmpfs", str(tiny)]
    return " ".join(bwrap) + " bash -c " + _quote(shell)


def without_libpython_link(py: str, shell: str) -> str:
    """``shell`` with the interpreter's ``libpythonX.Y.so`` (the name the linker looks for)
    hidden and its runtime library (``.so.1.0``) kept, as a distro's libpython without its -dev
    package: bubblewrap lays a tmpfs over the lib directory, in a mount namespace of the run's
    own, and binds the rest back."""
    lib = PYENV / py / "lib"
    link_name = f"libpython{'.'.join(py.split('.')[:2])}.so"
    binds = [a for p in sorted(lib.iterdir()) if p.name != link_name for a in ("--ro-bind", str(p), str(p))]
    return " ".join(["bwrap", "--dev-bind", "/", "/", "--tmpfs", str(lib), *binds]) + " bash -c " + _quote(shell)


def _quote(a: str) -> str:
    return "'" + a.replace("'", "'\\''") + "'"


def seen_names() -> set[str]:
    """Names of the projects already built for the corpus (runs.json and the raw runs)."""
    runs: list[dict[str, object]] = []
    if (OUT.parent / "runs.json").is_file():
        runs += json.loads((OUT.parent / "runs.json").read_text("utf-8"))
    if (OUT / "runs.jsonl").is_file():
        runs += [json.loads(x) for x in (OUT / "runs.jsonl").read_text("utf-8").splitlines() if x.strip()]
    return {str(r["req"]).split("==")[0].lower() for r in runs}


def plan(count: int, seed: int, fresh: int = 0) -> list[tuple[str, tuple[str, str, str], str]]:
    rng = random.Random(seed)
    seen = seen_names() if fresh else set()
    pool = OLD_POOL
    if fresh:
        pool = [r for r in (FRESH_POOL, FRESH_POOL_2)[fresh - 1] if r.split("==")[0] not in seen]
    n_popular = count // 6
    drawn = [r for r in popular(rng, n_popular * 3) if r.split("==")[0].lower() not in seen][:n_popular]
    rest = count - n_popular
    # the fresh batch builds each project once while the pool lasts
    reqs = drawn + (rng.sample(pool, rest) if fresh and rest <= len(pool) else [rng.choice(pool) for _ in range(rest)])
    rng.shuffle(reqs)
    conds = [c for c, w in CONDITIONS for _ in range(w)]
    return [(r, rng.choice(FRONT_ENDS), rng.choice(conds)) for r in reqs]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("count", type=int)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--start", type=int, default=1, help="number of the first log")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--fresh", type=int, default=0, choices=(0, 1, 2), help="projects not built before, from FRESH_POOL or _2"
    )
    ap.add_argument("--finalize", action="store_true", help="copy the raw logs into tests/corpus/own, trimmed")
    args = ap.parse_args(argv)
    if args.finalize:
        kept = finalize(args.seed, args.start)
        index = OUT.parent / "runs.json"
        earlier = json.loads(index.read_text("utf-8")) if index.is_file() else []
        new_ids = {r["id"] for r in kept}
        merged = [r for r in earlier if r["id"] not in new_ids] + kept
        index.write_text(json.dumps(sorted(merged, key=lambda r: str(r["id"])), indent=1) + "\n", encoding="utf-8")
        print(f"{len(kept)} logs kept in {OUT.parent}")
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    runs = plan(args.count, args.seed, args.fresh)
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


def finalize(seed: int, start: int = 1) -> list[dict[str, object]]:
    """Copy the raw logs numbered from ``start`` on into tests/corpus/own (trimmed; at most
    MAX_SUCCESSES that did not fail)."""
    by_id = {}
    for x in (OUT / "runs.jsonl").read_text("utf-8").splitlines():
        if x.strip():
            run = json.loads(x)
            by_id[run["id"]] = run  # a run made again replaces the first
    runs = [
        r
        for _, r in sorted(by_id.items())
        if (OUT / f"{r['id']}.log").is_file() and int(str(r["id"]).split("-")[1]) >= start
    ]
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
