"""Command-line options that set a setting, and the options every command accepts.

A command's module adds its setting options with ``setting_option``; ``server.cli.main``
collects them all (``setting_values``) into the command-line layer of ``load_settings``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from builder.config import SETTINGS_BY_KEY
from builder.config_table import SettingError


def setting_option(parser: argparse.ArgumentParser, flag: str, key: str, **kwargs: Any) -> None:
    """An option that sets a setting of builder/config.py: its type and help come from there.

    ``main`` hands every such option to ``load_settings`` as the command-line layer, so a
    value given here is checked, and what derives from it (the URLs from a port) follows.
    """
    declared = SETTINGS_BY_KEY[key]

    def parse(text: str) -> Any:
        try:
            return declared.from_text(text, flag)
        except SettingError as exc:
            raise argparse.ArgumentTypeError(f"{exc.message}: {exc.hint}") from None

    kwargs.setdefault("help", f"{declared.help} ({declared.env})")
    parser.add_argument(flag, dest=f"{_SETTING_DEST}{key}", type=parse, metavar=key.rsplit(".")[-1].upper(), **kwargs)


_SETTING_DEST = "setting:"
# Options of every command, accepted before the command and after it: (flag, setting key).
GLOBAL_SETTING_OPTIONS = (("--data-dir", "data_dir"), ("--redis-url", "redis_url"))


def add_global_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    # After the command the defaults are SUPPRESS, so an option given before it is not reset.
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if after_command else {}
    parser.add_argument(
        "--config", type=Path, help="a TOML file of settings, [wheelyard] (WHEELYARD_CONFIG)", **default
    )
    for flag, key in GLOBAL_SETTING_OPTIONS:
        setting_option(parser, flag, key, **default)


def setting_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as options, by setting key, for ``load_settings``."""
    return {k[len(_SETTING_DEST) :]: v for k, v in vars(args).items() if k.startswith(_SETTING_DEST)}
