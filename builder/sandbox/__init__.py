"""Run untrusted build hooks in a sandbox, under the limits of one build.

A build runs code written by strangers (``setup.py``, build backends). Every PEP 517 hook
goes through :meth:`Sandbox.run`, which is a pyproject_hooks subprocess runner, so
``build.ProjectBuilder(srcdir, python_executable=..., runner=sandbox.run)`` puts each hook
call in the sandbox. Build requirements are installed outside it (pip needs the network).

Isolation (bubblewrap, when ``enabled``):

* no network (``--unshare-net``: only a loopback that nothing listens on);
* the system read-only (``--ro-bind / /``); ``workdir`` is the one writable host directory;
* a private ``/tmp``, ``/home`` (``HOME=/home/build``) and ``/dev/shm``: size-capped tmpfs;
* the worker's own home, ``/run`` and every path in ``hidden`` (the data and config
  directories, which hold secrets) covered by an empty tmpfs (a file: by ``/dev/null``);
  paths the build needs from under them (the interpreter, ``read_only``) are bound back
  read-only;
* a new pid namespace, a new session, ``--die-with-parent``, a fresh ``/proc`` and ``/dev``;
* an environment built from scratch (``--clearenv``; see :func:`build_environment`);
  variables whose name looks like a secret are dropped even from ``extra_environ``;
* when the worker is root, the hook runs as ``nobody`` (uid 65534) with no capabilities
  (``setpriv``), so the host's root-only files stay unreadable and ``RLIMIT_NPROC``
  applies; ``workdir`` is chowned to that uid before each hook. A non-root worker runs
  bubblewrap in a user namespace as itself.

Limits (:class:`builder.config.Limits`), checked by a monitor loop while the output streams:

* wall time: one deadline for the whole build, from the first hook call;
* CPU time: the cgroup's total CPU time when a ``cpuacct``/``cpu`` controller is available,
  and ``RLIMIT_CPU`` on every process in any case;
* memory: the cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), an OOM
  kill seen in ``memory.events``/``memory.oom_control``; without a memory cgroup,
  ``RLIMIT_AS`` per process and a ``MemoryError``/``ENOMEM`` in the failed hook's output;
* processes: the cgroup ``pids.max``, a refused fork seen in ``pids.events``; without a pids
  cgroup, ``RLIMIT_NPROC`` (effective only for a non-root uid, as in the bubblewrap case)
  and a count of the process tree;
* disk: the size of ``workdir`` (every hook's files, sdist, env, uv cache and wheel) measured
  while the build runs and after each hook, ``RLIMIT_FSIZE`` for any one file, and the size
  of each tmpfs;
* files: the inodes of ``workdir``, counted in the same walk (``builder.workdir.tree_usage``);
* log: bytes are counted as they stream to the build log, never held in memory.

A build that breaks a limit has its whole process tree terminated (SIGTERM, then SIGKILL
after a grace period; the cgroup, the pid namespace and the process group are all used), gets
one ``wheelyard: build killed: ...`` line in its log, and :class:`LimitExceeded` is raised.

The parts, one concern each:

* ``environment``: what a build's environment holds (made from scratch, no secrets);
* ``bubblewrap``: the bubblewrap command line (what the build sees of the host);
* ``cgroups``: the cgroup v1/v2 driver;
* ``process_tree``: the processes of a hook call, and how all of them are killed;
* ``limits``: the limits' markers and hints, the rlimits and every check for a breach;
* ``supervisor``: the loop that streams a hook's output and applies the checks;
* ``runner``: :class:`Sandbox`, which runs one build's hooks through all of the above.

The worker's own tools run outside the sandbox, by ``builder.tools.run_tool``; the build log
types are in ``builder.buildlog``.
"""

from builder.sandbox.bubblewrap import interpreter_paths, sandbox_available
from builder.sandbox.cgroups import limit_mechanisms, remove_stale_cgroups
from builder.sandbox.environment import BUILD_GID, BUILD_HOME, BUILD_UID, build_environment
from builder.sandbox.limits import CAUSES, LimitExceeded, marker_line
from builder.sandbox.runner import Sandbox

__all__ = [
    "BUILD_GID",
    "BUILD_HOME",
    "BUILD_UID",
    "CAUSES",
    "LimitExceeded",
    "Sandbox",
    "build_environment",
    "interpreter_paths",
    "limit_mechanisms",
    "marker_line",
    "remove_stale_cgroups",
    "sandbox_available",
]
