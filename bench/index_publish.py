"""What a publish costs: upload to page-updated latency on the 500-file project, and upload
throughput with 8 concurrent clients, for wheelyard (embedded server and nginx) against
pypiserver's default and best configurations on the same 4,500 files, in one run.

Latency: each of ``--uploads`` new wheels of ``big-project`` is uploaded, then its page is read
until it lists the file; printed are the upload's own time and the time from the end of the
upload to the first page that lists it (medians, p90). Throughput: ``--burst`` small wheels of
new projects, 8 clients at once. Targets (issue 11): page updated within 50 ms of the upload's
end; at least 20 uploads a second.

    python bench/index_publish.py [--uploads 20] [--burst 160] [--only embedded,nginx]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_corpus import (  # noqa: E402
    BIG,
    CACHE,
    fill_data_dir,
    pypiserver,
    server_cpu_seconds,
    wheelyard_index,
    write_wheel,
)

AUTH = ("wheelyard", "bench-upload-secret")


def upload(session: requests.Session, base: str, wheel: Path) -> None:
    with wheel.open("rb") as fh:
        response = session.post(
            base + "/",
            data={":action": "file_upload", "protocol_version": "1"},
            files={"content": (wheel.name, fh, "application/octet-stream")},
            auth=AUTH,
            timeout=300,
        )
    if response.status_code != 200:
        raise SystemExit(f"upload of {wheel.name} to {base}: {response.status_code} {response.text[:300]}")


def latency(base: str, wheels: list[Path]) -> tuple[list[float], list[float]]:
    session = requests.Session()
    upload_times, visible_after = [], []
    for wheel in wheels:
        started = time.perf_counter()
        upload(session, base, wheel)
        ended = time.perf_counter()
        while wheel.name not in session.get(f"{base}/simple/{BIG}/", timeout=300).text:
            pass
        visible_after.append(time.perf_counter() - ended)
        upload_times.append(ended - started)
    return upload_times, visible_after


def throughput(base: str, wheels: list[Path], clients: int = 8) -> float:
    batches = [wheels[i::clients] for i in range(clients)]

    def run(batch: list[Path]) -> None:
        session = requests.Session()
        for wheel in batch:
            upload(session, base, wheel)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(wheels) / (time.perf_counter() - started)


def _p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--burst", type=int, default=160)
    parser.add_argument("--only", help="comma-separated words: run only the servers whose name has one")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="index-publish-", dir=CACHE))
    servers = [
        "pypiserver default (simple-dir)",
        "pypiserver best (cached-dir + gunicorn)",
        "wheelyard embedded",
        "wheelyard nginx",
    ]
    if args.only:
        servers = [s for s in servers if any(w in s for w in args.only.split(","))]
    rows = []
    rng = random.Random(700)
    try:
        for n, server in enumerate(servers):
            data = work / f"data-{n}"
            fill_data_dir(data)
            new = work / f"new-{n}"
            new.mkdir()
            big = [write_wheel(new, BIG, f"2.{i}", 200_000, rng) for i in range(args.uploads)]
            burst = [write_wheel(new, f"burst-{i:04d}", "1.0", 20_000, rng) for i in range(args.burst)]
            with ExitStack() as stack:
                if server.startswith("pypiserver"):
                    base = stack.enter_context(pypiserver(data / "wheels", "best" in server, work))
                else:
                    base = stack.enter_context(wheelyard_index(data, server.split()[1]))
                cpu = server_cpu_seconds(base)
                uploads, visible = latency(base, big)
                big_cpu = (server_cpu_seconds(base) - cpu) / len(big)
                load_big = os.getloadavg()[0]
                cpu = server_cpu_seconds(base)
                rate = throughput(base, burst)
                burst_cpu = (server_cpu_seconds(base) - cpu) / len(burst)
                load_burst = os.getloadavg()[0]
            rows.append((server, uploads, visible, rate, big_cpu, burst_cpu, load_big, load_burst))
            print(f"  {server}: done (load average {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.uploads} uploads to the {BIG} page (500 files), then {args.burst} small uploads by 8 clients")
    print("cpu: the server's processes' CPU time per upload (the big page's includes its reads); load: 1-min average")
    print(
        f"{'server':42} {'upload p50':>11} {'page-after p50':>15} {'p90':>8} {'cpu':>8} {'load':>5}"
        f" {'uploads/s':>10} {'cpu':>8} {'load':>5}"
    )
    for server, uploads, visible, rate, big_cpu, burst_cpu, load_big, load_burst in rows:
        print(
            f"{server:42} {statistics.median(uploads) * 1000:9.1f}ms {statistics.median(visible) * 1000:13.1f}ms"
            f" {_p90(visible) * 1000:6.1f}ms {big_cpu * 1000:6.1f}ms {load_big:5.1f}"
            f" {rate:10.1f} {burst_cpu * 1000:6.1f}ms {load_burst:5.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
