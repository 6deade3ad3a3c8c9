"""Time to first byte and memory of the index against the number of projects it holds.

Two trees in one run, the same but for the number of projects: a project of 5,000 files (its
HTML page is over 1 MB) and a small one of 3 files in both, and 300 or 3,000 projects in all
(small wheels: what is measured here is pages, not downloads). For each of wheelyard's servers
(embedded, nginx) on each tree: the median and p99 time to first byte of ``/simple/``, the big
project's page (HTML and JSON, gzip) and a small project's page over one keep-alive connection,
then the servers' resident memory (the static server's processes, and the upload endpoint's)
after those requests and a ``wrk`` run on each page. Printed with the ratio 3,000 / 300 projects,
and the load average beside each figure (the machine is shared).

    python bench/index_scale.py [--requests 300] [--projects 300,3000]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_corpus import CACHE, wheelyard_index, write_wheel  # noqa: E402
from index_serve import wrk  # noqa: E402

BIG, BIG_FILES = "huge-project", 5000
SMALL = "small-project"
SCALE_CORPUS = CACHE / "index-scale"
JSON = "application/vnd.pypi.simple.v1+json"
PAGES = [
    ("root", "/simple/", None),
    ("5,000 files html", f"/simple/{BIG}/", None),
    ("5,000 files json", f"/simple/{BIG}/", JSON),
    ("small html", f"/simple/{SMALL}/", None),
]


def scale_corpus(projects: int) -> Path:
    """Small wheels: the big project's 5,000, the small project's 3, one for each other project."""
    done = SCALE_CORPUS / f".complete-{projects}"
    if done.exists():
        return SCALE_CORPUS
    SCALE_CORPUS.mkdir(parents=True, exist_ok=True)
    rng = random.Random(700)
    wanted = [(BIG, f"1.{n}") for n in range(BIG_FILES)] + [(SMALL, f"1.{n}") for n in range(3)]
    wanted += [(f"scale-{i:05d}", "1.0") for i in range(projects - 2)]
    for name, version in wanted:
        if not (SCALE_CORPUS / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").exists():
            write_wheel(SCALE_CORPUS, name, version, 200, rng)
    done.write_text("")
    return SCALE_CORPUS


def tree(work: Path, projects: int) -> Path:
    """A data directory with ``projects`` projects (hard links to the corpus); its pages come at start."""
    corpus = scale_corpus(projects)
    data = work / f"data-{projects}"
    wheels = data / "wheels"
    wheels.mkdir(parents=True)
    keep = {f"scale_{i:05d}" for i in range(projects - 2)}
    for path in corpus.glob("*.whl"):
        stem = path.name.split("-", 1)[0]
        if stem in (BIG.replace("-", "_"), SMALL.replace("-", "_")) or stem in keep:
            os.link(path, wheels / path.name)
    return data


def ttfb(base: str, path: str, accept: str | None, count: int) -> tuple[float, float, int]:
    """(median ms, p99 ms, body bytes) of the time to the response's first line and headers."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Accept-Encoding": "gzip", **({"Accept": accept} if accept else {})}
    times, size = [], 0
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        times.append((time.perf_counter() - started) * 1000)
        size = len(response.read())
        assert response.status == 200, (path, response.status)
    conn.close()
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], size


def tree_rss(root_pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(pid))
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def listening_pid(port: int) -> int:
    """The pid of the wheelyard index process serving ``port`` (the parent of its upload endpoint)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if argv[1:4] == [b"-m", b"server.index", b""] and f"WHEELYARD_INDEX_PORT={port}\0".encode() in environ:
            return int(pid)
    raise SystemExit(f"no index process for port {port}")


def measure(data: Path, server: str, count: int) -> dict[str, tuple[float, ...]]:
    started = time.perf_counter()
    with wheelyard_index(data, server) as base:
        ready = time.perf_counter() - started
        out: dict[str, tuple[float, ...]] = {"start (rebuild of every page) s": (ready, os.getloadavg()[0])}
        for label, path, accept in PAGES:
            ttfb(base, path, accept, 20)  # warm: files read, connections made
            p50, p99, size = ttfb(base, path, accept, count)
            out[f"{label} TTFB p50 ms"] = (p50, os.getloadavg()[0])
            out[f"{label} TTFB p99 ms"] = (p99, os.getloadavg()[0])
            out[f"{label} bytes (gzip)"] = (size, os.getloadavg()[0])
        for label, path, accept in PAGES:
            rate = wrk(base + path, 3, 50, accept)[0]
            out[f"{label} wrk req/s"] = (rate, os.getloadavg()[0])
        index_pid = listening_pid(int(base.rsplit(":", 1)[1]))
        out["memory, whole index MB"] = (tree_rss(index_pid) / 1e6, os.getloadavg()[0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per page for the TTFB figures")
    parser.add_argument("--projects", default="300,3000", help="the two project counts to compare")
    parser.add_argument("--servers", default="embedded,nginx")
    args = parser.parse_args()
    small, large = (int(n) for n in args.projects.split(","))
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="index-scale-", dir=CACHE))
    results: dict[tuple[str, int], dict[str, tuple[float, ...]]] = {}
    try:
        trees = {n: tree(work, n) for n in (small, large)}
        for server in args.servers.split(","):
            for n, data in trees.items():
                results[(server, n)] = measure(data, server, args.requests)
                print(f"  measured {server} with {n} projects", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nthe same 5,000-file project in {small} and in {large} projects; ratio = {large} / {small}")
    print(f"{'server':9} {'figure':38} {small:>10} {'load':>5} {large:>10} {'load':>5} {'ratio':>7}")
    for server in args.servers.split(","):
        for figure, (value, load) in results[(server, small)].items():
            other, other_load = results[(server, large)][figure]
            ratio = other / value if value else float("nan")
            print(f"{server:9} {figure:38} {value:10.2f} {load:5.1f} {other:10.2f} {other_load:5.1f} {ratio:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
