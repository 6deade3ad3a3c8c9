"""Throughput of ``diagnose`` against ``grep -E -f`` with the rule set's own patterns.

Builds a log of about SIZE_MB (default 100) by repeating the real corpus logs (with the
sandbox marker lines removed, so every copy is a plausible build log), in a temporary
directory, then times in the same run:

* ``diagnose_file`` (one streaming pass; peak memory measured with tracemalloc in a
  second pass, and the process's peak RSS from getrusage);
* ``grep -E -c -f PATTERNS`` where PATTERNS holds every rule pattern converted from Python
  regex syntax to POSIX ERE. Patterns that ERE cannot express (look-behind, inline flags)
  are left out and counted. On the corpus-made log GNU grep spends most of its time in its
  regex matcher (its DFA gives up on these patterns there), so a second baseline is printed:
* ``grep -F -c -f KEYWORDS``, the rules' literal keywords alone (the least any scan that
  looks at the keywords' lines does).

Then the hostile case: 100,000 and 300,000 distinct error lines (every line a different
compile error, header, library or exception, so nothing is deduplicated), diagnose against the
same grep, with the peak memory of each size (flat: the 300k peak is about the 100k one).

Times are CPU seconds (this process's for diagnose, the child's for grep), with the wall-clock
time beside them: on a machine shared with other work the wall clock mostly measures the
others. grep runs with ``LC_ALL=C`` (bytes; in a UTF-8 locale GNU grep is many times slower
with these patterns, which would flatter the ratio).

    python bench/diagnose_throughput.py [SIZE_MB]
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder.diagnosis import diagnose_file, keywords, load_rules  # noqa: E402

_CLASS = {r"\d": "[:digit:]", r"\w": "[:alnum:]_", r"\s": "[:space:]"}
_OUTSIDE = {
    r"\d": "[[:digit:]]",
    r"\w": "[[:alnum:]_]",
    r"\s": "[[:space:]]",
    r"\S": "[^[:space:]]",
    r"\W": "[^[:alnum:]_]",
    r"\D": "[^[:digit:]]",
}


def to_ere(pattern: str) -> str | None:
    """Python regex -> POSIX ERE (GNU grep), or None when ERE cannot express it."""
    if "(?<" in pattern.replace("(?P<", "") or "(?i)" in pattern or "(?=" in pattern:
        return None
    p = pattern.replace("(?P<", "(?<").replace("(?:", "(")
    p = re.sub(r"\(\?<\w+>", "(", p)
    out: list[str] = []
    i = 0
    in_class = False
    while i < len(p):
        ch = p[i]
        if ch == "\\" and i + 1 < len(p):
            esc = p[i : i + 2]
            if in_class:
                if esc in _CLASS:
                    out.append(_CLASS[esc])
                elif esc in (r"\S", r"\W", r"\D"):
                    return None
                else:
                    out.append(p[i + 1] if p[i + 1] not in "\\]" else esc)
            elif esc in _OUTSIDE:
                out.append(_OUTSIDE[esc])
            else:
                out.append(esc)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            out.append(ch)
            if p[i + 1 : i + 2] == "^":
                out.append("^")
                i += 1
            if p[i + 1 : i + 2] == "]":
                out.append("]")
                i += 1
        elif ch == "]" and in_class:
            in_class = False
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def build_log(path: Path, size_mb: int) -> int:
    texts = []
    for log in sorted((ROOT / "tests" / "corpus").glob("*/*.log")):
        lines = log.read_bytes().splitlines(keepends=True)
        texts.append(b"".join(x for x in lines if b"wheelyard: build killed" not in x))
    chunk = b"".join(texts)
    target = size_mb * 1024 * 1024
    with path.open("wb") as fh:
        written = 0
        while written < target:
            fh.write(chunk)
            written += len(chunk)
    return written


def distinct_errors(path: Path, count: int) -> None:
    forms = (
        "  src/m{i}/f{i}.c:{i}:{c}: error: 'sym_{i}' undeclared (first use in this function)",
        "  src/m{i}/g{i}.c:{i}:{c}: fatal error: lib{i}/h{i}.h: No such file or directory",
        "  /usr/bin/ld: cannot find -lthing{i}: No such file or directory",
        "  ModuleNotFoundError: No module named 'mod_{i}'",
        "  ERROR: Could not find a version that satisfies the requirement pkg-{i}==1.{c} (from versions: none)",
        "  m{i}.pyx:{i}:{c}: undeclared name not builtin: name_{i}",
    )
    with path.open("w", encoding="utf-8") as fh:
        for i in range(count):
            fh.write(forms[i % len(forms)].format(i=i, c=i % 80) + "\n")


def timed(fn: object, path: Path) -> tuple[float, float, int]:
    """CPU and wall seconds of one diagnose of ``path``, and its tracemalloc peak (a second run)."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn(path)  # type: ignore[operator]
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    tracemalloc.start()
    fn(path)  # type: ignore[operator]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return cpu, wall, peak


def grep_time(pfile: Path, path: Path, mode: str = "-E") -> tuple[float, float, str]:
    """CPU and wall seconds of ``grep MODE -c -f pfile path``, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        ["grep", mode, "-c", "-f", str(pfile), str(path)],
        capture_output=True,
        text=True,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, out


def hostile(d: Path, pfile: Path) -> None:
    print("distinct error lines (CPU seconds; wall clock in brackets):")
    for count in (100_000, 300_000):
        path = d / f"distinct-{count}.log"
        distinct_errors(path, count)
        cpu, wall, peak = timed(diagnose_file, path)
        g_cpu, g_wall, _ = grep_time(pfile, path)
        print(
            f"  {count:7,} lines: diagnose {cpu:6.2f} s [{wall:6.2f}] ({cpu / (count / 1e5):.2f} s per 100k lines), "
            f"grep -E {g_cpu:6.2f} s [{g_wall:6.2f}], ratio {cpu / max(g_cpu, 1e-3):.2f}x; "
            f"tracemalloc peak {peak / 1e6:.1f} MB"
        )


def main() -> int:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    if shutil.which("grep") is None:
        print("grep not found")
        return 1
    rules = load_rules()
    with tempfile.TemporaryDirectory(prefix="wy-bench-") as d:
        log = Path(d) / "big.log"
        size = build_log(log, size_mb)
        mb = size / 1e6
        pats = [p.pattern for r in rules.rules for p in r.patterns]
        ere, skipped = [], []
        for src in pats:
            conv = to_ere(src)
            ok = conv is not None and subprocess.run(
                ["grep", "-E", "-e", conv, "/dev/null"], capture_output=True
            ).returncode in (0, 1)
            (ere if ok else skipped).append(conv if ok else src)
        pfile = Path(d) / "patterns.ere"
        pfile.write_text("\n".join(x for x in ere if x) + "\n")

        subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)  # warm cache
        c0, t0 = time.process_time(), time.perf_counter()
        diag = diagnose_file(log)
        c_py, t_py = time.process_time() - c0, time.perf_counter() - t0
        c_grep, t_grep, matched = grep_time(pfile, log)
        kfile = Path(d) / "keywords.txt"
        kfile.write_text("\n".join(sorted({k for r in rules.rules for k in r.keywords})) + "\n")
        c_grepf, t_grepf, matched_f = grep_time(kfile, log, "-F")

        tracemalloc.start()
        diagnose_file(log)
        _, peak_traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        log.unlink()
        hostile(Path(d), pfile)

    print(
        f"log: {mb:.1f} MB, {diag.lines} lines; primary {diag.primary.category} "
        f"at line {diag.primary.line}; {len(diag.causes)} causes kept"
    )
    print(f"patterns: {len(pats)} rule patterns, {len(ere)} given to grep -E, {len(skipped)} skipped (no ERE form)")
    finder = "ahocorasick_rs (native)"
    if not keywords.NATIVE:
        finder = "the regex (ahocorasick_rs is not installed: pip install '.[fast-diagnosis]')"
    print(f"keywords: found by {finder}")
    print(f"diagnose : {c_py:7.2f} s CPU [{t_py:7.2f} wall]  {mb / c_py:8.1f} MB/s")
    print(f"grep -E  : {c_grep:7.2f} s CPU [{t_grep:7.2f} wall]  {mb / c_grep:8.1f} MB/s  ({matched} lines matched)")
    print(f"ratio    : diagnose takes {c_py / c_grep:.2f}x grep's CPU time (target <= 3x)")
    print(
        f"grep -F  : {c_grepf:7.2f} s CPU [{t_grepf:7.2f} wall]  {mb / c_grepf:8.1f} MB/s  "
        f"({matched_f} lines hold a keyword); diagnose takes {c_py / c_grepf:.2f}x its CPU time"
    )
    print(
        f"memory   : tracemalloc peak {peak_traced / 1e6:.1f} MB during diagnose; "
        f"process peak RSS {rss_kb / 1024:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
