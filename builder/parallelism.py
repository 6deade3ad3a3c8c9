"""How many builds a worker runs at once, and how many jobs each build is told it may use:
chosen together from the host's cores and memory and the build memory limit (docs/deploy.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from builder.config import Settings

# Memory kept for the worker itself and the host besides the builds.
HOST_RESERVE_BYTES = 1024**3


@dataclass(frozen=True)
class Parallelism:
    """Builds a worker runs at once, and the jobs each build is told it may use."""

    concurrency: int
    jobs: int
    cores: int
    memory_bytes: int

    def line(self) -> str:
        return (
            f"{self.concurrency} build(s) at once, {self.jobs} job(s) each "
            f"({self.cores} cores, {self.memory_bytes / 1024**3:.1f} GiB)"
        )


def host_resources() -> tuple[int, int]:
    """(cores this process may run on, physical memory in bytes)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        memory = 0
    return max(cores, 1), max(memory, 0)


def plan_parallelism(
    cores: int,
    memory_bytes: int,
    build_memory_bytes: int,
    *,
    concurrency: int | None = None,
    jobs: int | None = None,
) -> Parallelism:
    """Choose builds-at-once and jobs-per-build together, so that the host is neither idle nor
    oversubscribed: as many builds as there are cores while their memory limits fit in the host's
    memory (most builds compile one file at a time, so builds side by side fill cores better than
    jobs within one), then the cores shared among them as jobs. Either may be fixed by the caller."""
    by_memory = max((memory_bytes - HOST_RESERVE_BYTES) // max(build_memory_bytes, 1), 1) if memory_bytes else cores
    chosen = concurrency or max(1, min(cores, by_memory))
    return Parallelism(chosen, jobs or max(1, cores // chosen), cores, memory_bytes)


def resolve_parallelism(settings: Settings) -> Parallelism:
    cores, memory = host_resources()
    return plan_parallelism(
        cores,
        memory,
        settings.limits.memory_bytes,
        concurrency=settings.worker_concurrency,
        jobs=settings.build_jobs,
    )


def job_environment(jobs: int) -> dict[str, str]:
    """What tells a build how many jobs it may run: make, CMake, numpy.distutils and cargo."""
    return {
        "MAKEFLAGS": f"-j{jobs}",
        "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs),
        "NPY_NUM_BUILD_JOBS": str(jobs),
        "CARGO_BUILD_JOBS": str(jobs),
    }
