"""wrk against the index's pages: wheelyard (embedded server and nginx) against pypiserver's default
and its best configuration, on the same 4,500 real-sized wheels (bench/index_corpus.py), in one run.

For ``/simple/``, the 500-file project's page and a small project's page, HTML and (wheelyard
only: pypiserver has none) JSON: requests a second, p50 and p99 from ``wrk --latency``, and the
ratio to pypiserver's best configuration. Targets (issue 11): at least 50x pypiserver's best on
every path, p99 under 25 ms, for both of wheelyard's servers.

    python bench/index_serve.py [--duration 10] [--connections 50] [--skip-default]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_corpus import (  # noqa: E402
    BIG,
    CACHE,
    fill_data_dir,
    plain_static,
    pypiserver,
    server_cpu_seconds,
    wheelyard_index,
)

JSON = "application/vnd.pypi.simple.v1+json"
PATHS = [("/simple/", "root"), (f"/simple/{BIG}/", "500 files"), ("/simple/proj-100/", "small")]
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


Result = tuple[float, float, float, str, float, float]  # req/s, p50 ms, p99 ms, errors, server CPU us/req, load


def wrk(url: str, duration: int, connections: int, accept: str | None) -> tuple[float, float, float, str, int]:
    """(req/s, p50 ms, p99 ms, errors, requests) of one wrk run."""
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if accept:
        argv += ["-H", f"Accept: {accept}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def percentile(p: str) -> float:
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")

    errors = ""
    found = re.search(r"Socket errors: (.*)", out)
    if found:
        errors = found.group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += f" non-2xx {non2xx.group(1)}"
    done = re.search(r"(\d+) requests in", out)
    return rate, percentile("50"), percentile("99"), errors.strip(), int(done.group(1)) if done else 0


def measured(base: str, path: str, duration: int, connections: int, accept: str | None) -> Result:
    """One wrk run with the server's CPU time per request and the load average at its end."""
    cpu = server_cpu_seconds(base)
    rate, p50, p99, errors, requests = wrk(base + path, duration, connections, accept)
    per_request = (server_cpu_seconds(base) - cpu) / requests * 1e6 if requests else float("nan")
    return rate, p50, p99, errors, per_request, os.getloadavg()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--skip-default", action="store_true", help="leave out pypiserver's default (slow)")
    parser.add_argument("--only", help="comma-separated words: run only the servers whose name has one")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("nginx"):
        raise SystemExit("needs wrk and nginx (apt-get install wrk nginx-light)")
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="index-serve-", dir=CACHE))
    data = work / "data"
    fill_data_dir(data)
    results: dict[tuple[str, str, str], Result] = {}
    servers = ["pypiserver best (cached-dir + gunicorn)"]
    if not args.skip_default:
        servers.insert(0, "pypiserver default (simple-dir)")
    servers += ["wheelyard embedded", "wheelyard nginx", "plain nginx (floor)"]
    if args.only:
        words = args.only.split(",")
        servers = [s for s in servers if "best" in s or any(w in s for w in words)]
    try:
        for server in servers:
            with ExitStack() as stack:
                if server.startswith("pypiserver"):
                    base = stack.enter_context(pypiserver(data / "wheels", "best" in server, work))
                    forms = [("html", None)]
                elif server == "plain nginx (floor)":
                    base = stack.enter_context(plain_static(data / "site", work / "plain"))
                    forms = [("html", None)]
                else:
                    base = stack.enter_context(wheelyard_index(data, server.split()[1]))
                    forms = [("html", None), ("json", JSON)]
                for path, label in PATHS:
                    for form, accept in forms:
                        wrk(base + path, 2, args.connections, accept)  # warm-up (caches, connections)
                        results[(server, label, form)] = result = measured(
                            base, path, args.duration, args.connections, accept
                        )
                        shown = f"{result[0]:10.1f} req/s  load {result[5]:.1f}"
                        print(f"  {server:42} {label:10} {form:5} {shown}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, servers)
    return 0


def report(results: dict[tuple[str, str, str], Result], servers: list[str]) -> None:
    best = "pypiserver best (cached-dir + gunicorn)"
    print(f"\nwrk -t2 -c50, same files, same run; ratio = req/s over {best}'s HTML on the same path")
    print("cpu: the server's processes' CPU time per request (us); load: 1-min load average at the run's end")
    head = f"{'server':42} {'path':10} {'form':5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>8}"
    print(f"{head} {'cpu us':>7} {'load':>5}  errors")
    for server in servers:
        for _, label in PATHS:
            for form in ("html", "json"):
                if (server, label, form) not in results:
                    continue
                rate, p50, p99, errors, cpu, load = results[(server, label, form)]
                base = results[(best, label, "html")][0]
                ratio = rate / base if base else float("inf")
                line = f"{server:42} {label:10} {form:5} {rate:10.1f} {p50:8.2f} {p99:8.2f} {ratio:7.1f}x"
                print(f"{line} {cpu:7.1f} {load:5.1f}  {errors}")


if __name__ == "__main__":
    raise SystemExit(main())
