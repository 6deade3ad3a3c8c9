"""The index's commands: ``wheelyard yank`` (through the API) and ``wheelyard reindex-pages``."""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from builder.config import Settings
from server.options import setting_option


def add_parsers(sub: Any) -> None:
    yank = sub.add_parser("yank", help="yank a release on the index (PEP 592), or un-yank it with --undo")
    yank.add_argument("name")
    yank.add_argument("version")
    yank.add_argument("--reason", default="", help="why; pip shows it to whoever installs the release by pin")
    yank.add_argument("--undo", action="store_true", help="un-yank the release")
    setting_option(yank, "--api-url", "api_url")
    sub.add_parser("reindex-pages", help="write every page of the index again from its files (recovery)")


def cmd_yank(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from server.client_commands import ApiClient

    client = ApiClient(settings.api_url, settings.api_token)
    body = {"name": args.name, "version": args.version, "reason": args.reason, "yanked": not args.undo}
    result = client.call("POST", "/api/index/yank", json=body)
    what = "un-yanked" if args.undo else "yanked"
    out.write(f"{what} {result['name']} {result['version']}: {', '.join(result['files'])}\n")
    return 0


def cmd_reindex_pages(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from server.index.site import IndexSite

    started = time.perf_counter()
    report = IndexSite(settings.data_dir).rebuild(force=True)
    out.write(
        f"wrote the pages of {report.projects} projects ({report.files} files, {report.hashed} read again) "
        f"in {time.perf_counter() - started:.2f} s\n"
    )
    return 0


COMMANDS = {"yank": cmd_yank, "reindex-pages": cmd_reindex_pages}
