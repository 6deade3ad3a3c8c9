"""``wheelyard diagnose FILE|- [--json] [--platform P]``.

Exit codes: 0 a cause was found, 1 nothing matched (the best excerpt is still printed),
2 bad input (unreadable file, bad arguments), 3 the log shows no failure (it ends in a
successful build or install).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO, TextIO

from .engine import diagnose_blocks, diagnose_file, diagnose_stream
from .reading import blocks_from_text
from .render import render_json, render_text, use_color
from .rules import PLATFORMS, RuleSetError


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgError(message)


def _parser() -> _Parser:
    p = _Parser(
        prog="wheelyard diagnose",
        description="Find the first real error in a failed Python package build log, "
        "name its cause and say how to fix it.",
    )
    p.add_argument("file", help="build log to read, or - for standard input")
    p.add_argument("--json", action="store_true", help="print the stable JSON document")
    p.add_argument(
        "--platform",
        choices=PLATFORMS,
        help="give remedies for this platform first (default: detect from the log)",
    )
    return p


def main(
    argv: list[str] | None = None,
    stdin: TextIO | BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    wheel_lookup: Callable[[str, str], list[str]] | None = None,
) -> int:
    """``wheel_lookup(name, version)`` lists the wheel filenames upstream has, for the advice
    that pip could have installed a wheel instead of building; without it that advice is left out."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except _ArgError as exc:
        err.write(parser.format_usage())
        err.write(f"wheelyard diagnose: error: {exc}\n")
        return 2
    except SystemExit as exc:  # --help
        return 0 if exc.code in (0, None) else 2
    try:
        if args.file == "-":
            src = stdin if stdin is not None else sys.stdin
            buf = getattr(src, "buffer", None)
            if buf is not None:
                d = diagnose_stream(buf, platform=args.platform, wheel_lookup=wheel_lookup)
            elif isinstance(src.read(0), bytes):
                d = diagnose_stream(src, platform=args.platform, wheel_lookup=wheel_lookup)  # type: ignore[arg-type]
            else:
                text_src: TextIO = src  # type: ignore[assignment]
                d = diagnose_blocks(_text_blocks(text_src), platform=args.platform)
        else:
            d = diagnose_file(args.file, platform=args.platform, wheel_lookup=wheel_lookup)
    except IsADirectoryError:
        err.write(f"wheelyard diagnose: {args.file}: is a directory, not a build log\n")
        return 2
    except FileNotFoundError:
        err.write(f"wheelyard diagnose: {args.file}: no such file\n")
        return 2
    except PermissionError:
        err.write(f"wheelyard diagnose: {args.file}: permission denied\n")
        return 2
    except OSError as exc:
        err.write(f"wheelyard diagnose: {args.file}: cannot read: {exc.strerror or exc}\n")
        return 2
    except RuleSetError as exc:
        err.write(f"wheelyard diagnose: the rule set is invalid: {exc}\n")
        return 2
    if args.json:
        out.write(render_json(d))
    else:
        out.write(render_text(d, color=use_color(out)))
    if not d.failed:
        return 3
    return 0 if d.diagnosed else 1


def _text_blocks(src: TextIO) -> Iterator[str]:
    return blocks_from_text(iter(lambda: src.read(1 << 20), ""))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
