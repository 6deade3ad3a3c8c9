"""The CLI's output into a pipe whose reader left early (`wheelyard config | head -1`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["config"], ["config", "--json"], ["--help"]])
def test_output_into_a_pipe_whose_reader_left_ends_quietly(command: list[str], tmp_path: Path) -> None:
    """`wheelyard config | head -1`: the pipe's reader is gone before the command writes (its
    read end closed before the command starts), so every write fails: no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "WHEELYARD_DATA_DIR": str(tmp_path), "PIP_CONFIG_FILE": os.devnull}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from server.cli import main; raise SystemExit(main())", *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr, proc.stderr.decode()
    assert proc.stderr == b""
    assert proc.returncode in (0, 141)
