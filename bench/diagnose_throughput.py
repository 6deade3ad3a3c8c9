"""Throughput of ``diagnose`` against ``grep -E -f`` with the rule set's own patterns.

Builds a log of about SIZE_MB (default 100) by repeating the real corpus logs (with the
sandbox marker lines removed, so every copy is a plausible build log), in a temporary
directory, then times in the same run:

* ``diagnose_file`` (one streaming pass; peak memory measured with tracemalloc in a
  second pass, and the process's peak RSS from getrusage);
* ``grep -E -c -f PATTERNS`` where PATTERNS holds every rule pattern converted from Python
  regex syntax to POSIX ERE. Patterns that ERE cannot express (look-behind, inline flags)
  are left out and counted.

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

from builder.diagnosis import diagnose_file, load_rules  # noqa: E402

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
        t0 = time.perf_counter()
        diag = diagnose_file(log)
        t_py = time.perf_counter() - t0

        t0 = time.perf_counter()
        g = subprocess.run(
            ["grep", "-E", "-c", "-f", str(pfile), str(log)],
            capture_output=True,
            text=True,
            env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        )
        t_grep = time.perf_counter() - t0

        tracemalloc.start()
        diagnose_file(log)
        _, peak_traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    print(
        f"log: {mb:.1f} MB, {diag.lines} lines; primary {diag.primary.category} "
        f"at line {diag.primary.line}; {len(diag.causes)} causes kept"
    )
    print(f"patterns: {len(pats)} rule patterns, {len(ere)} given to grep -E, {len(skipped)} skipped (no ERE form)")
    print(f"diagnose : {t_py:7.2f} s  {mb / t_py:8.1f} MB/s")
    print(f"grep -E  : {t_grep:7.2f} s  {mb / t_grep:8.1f} MB/s  ({g.stdout.strip()} lines matched)")
    print(f"ratio    : diagnose takes {t_py / t_grep:.2f}x grep's time (target <= 3x)")
    print(
        f"memory   : tracemalloc peak {peak_traced / 1e6:.1f} MB during diagnose; "
        f"process peak RSS {rss_kb / 1024:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
