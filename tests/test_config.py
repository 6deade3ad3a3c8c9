"""The one table of settings: loading, validation, help, docs, and what `wheelyard up` hands its children."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.config import SETTINGS, Settings, load_settings, markdown_table, to_environ
from builder.config_table import Setting
from builder.errors import ConfigurationError
from builder.rust_toolchain import find_rust_toolchain
from server.cli import main
from tests.conftest import (
    REDIS_SERVER,
    RedisDatabases,
    free_port,
    start_up,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent


def _other_value(s: Setting, tmp: Path) -> Any:
    """A valid value of ``s`` that is not its default, so that reading it back proves where it came from."""
    if s.kind is bool:
        return not s.default
    if s.kind is int:
        return (s.default or 0) + 1  # an unset (auto) integer: 1
    if s.kind == tuple[int, int]:
        return (s.default[0], s.default[1] + 1)
    if s.kind == tuple[Path, ...]:
        return (Path(sys.executable),)
    if s.kind is Path:
        return tmp / s.name
    return f"{s.name}-from-the-file"


def file_settings(tmp: Path, **fixed: Any) -> dict[str, Any]:
    """A value for every declared setting (``fixed`` for those a running stack needs real)."""
    return {s.key: fixed.get(s.key, _other_value(s, tmp)) for s in SETTINGS}


def write_toml(path: Path, values: dict[str, Any]) -> Path:
    def literal(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, tuple):
            return "[" + ", ".join(literal(v) for v in value) + "]"
        return json.dumps(str(value))  # a JSON string is a TOML basic string

    top = [f"{k} = {literal(v)}" for k, v in values.items() if "." not in k]
    limits = [f"{k.split('.', 1)[1]} = {literal(v)}" for k, v in values.items() if k.startswith("limits.")]
    path.write_text("\n".join(["[wheelyard]", *top, "", "[wheelyard.limits]", *limits, ""]))
    return path


def as_loaded(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as the loader stores them (paths resolved, version as a tuple)."""
    out = dict(values)
    for s in SETTINGS:
        if s.kind is Path:
            out[s.key] = Path(out[s.key]).resolve()
    return out


def read_back(settings: Settings) -> dict[str, Any]:
    return {s.key: s.get(settings) for s in SETTINGS}


# -- the loader and its validation --------------------------------------------------------------
def test_every_setting_is_read_from_the_file_and_survives_the_childrens_environment(tmp_path: Path) -> None:
    values = file_settings(tmp_path)
    path = write_toml(tmp_path / "wheelyard.toml", values)
    from_file = load_settings({}, path)
    assert read_back(from_file) == as_loaded(values)
    # What a child process is given makes it load exactly the same settings.
    assert load_settings(to_environ(from_file)) == from_file


@pytest.mark.parametrize(
    ("text", "wrong", "hint"),
    [
        ('sandbox = "false"', "sandbox in {path} = 'false' is not a boolean", "without quotes"),
        ('index_port = "abc"', "index_port in {path} = 'abc' is not a whole number", "without quotes"),
        ("index_port = 70000", "index_port in {path} = 70000 is out of range", "between 1 and 65535"),
        ("worker_concurency = 2", "unknown setting 'worker_concurency' in {path}", "did you mean 'worker_concurrency'"),
        ("[wheelyard.limits]\nwall_second = 3", "unknown setting 'limits.wall_second'", "'limits.wall_seconds'"),
        ('manylinux_glibc_max = "2"', "is not a version X.Y", '"2.28"'),
    ],
)
def test_a_wrong_value_in_the_file_is_refused_with_what_and_how(
    tmp_path: Path, text: str, wrong: str, hint: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[wheelyard]\n{text}\n")
    err = io.StringIO()
    assert main(["--config", str(path), "config"], stdout=io.StringIO(), stderr=err) == 1
    message = err.getvalue()
    assert wrong.format(path=path) in message and "[invalid-configuration]" in message, message
    assert hint in message and "Traceback" not in message


def test_settings_outside_the_wheelyard_table_are_refused_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "flat.toml"
    path.write_text("sandbox = false\n")
    with pytest.raises(ConfigurationError, match="outside the \\[wheelyard\\] table"):
        load_settings({}, path)


def test_the_environment_is_checked_as_the_file_is() -> None:
    with pytest.raises(ConfigurationError, match="WHEELYARD_INDEX_PORT='abc' is not a whole number"):
        load_settings({"WHEELYARD_INDEX_PORT": "abc"})
    with pytest.raises(ConfigurationError, match="WHEELYARD_SANDBOX='maybe' is not a boolean"):
        load_settings({"WHEELYARD_SANDBOX": "maybe"})
    assert load_settings({"WHEELYARD_SANDBOX": "false"}).sandbox is False


def test_layers_win_in_order_and_urls_follow_their_port(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "w.toml", {"api_port": 9001, "worker_concurrency": 3})
    settings = load_settings({"WHEELYARD_API_PORT": "9002"}, path)
    assert (settings.api_port, settings.api_url, settings.worker_concurrency) == (9002, "http://127.0.0.1:9002", 3)
    settings = load_settings({"WHEELYARD_API_PORT": "9002"}, path, api_port=9003)
    assert settings.api_url == "http://127.0.0.1:9003"
    # A URL set on its own is kept (a proxy in front of the API).
    assert load_settings({"WHEELYARD_API_URL": "https://api.example"}, path).api_url == "https://api.example"


def test_options_of_every_command_are_accepted_after_the_command(tmp_path: Path) -> None:
    for argv in (
        ["--data-dir", str(tmp_path / "a"), "config", "--json"],
        ["config", "--json", "--data-dir", str(tmp_path / "a")],
    ):
        out = io.StringIO()
        assert main(argv, stdout=out, stderr=io.StringIO()) == 0
        assert json.loads(out.getvalue())["data_dir"] == str(tmp_path / "a")
    # Given on both sides, the one after the command wins, as a later option does.
    out = io.StringIO()
    assert main(["--data-dir", "/nowhere", "config", "--json", "--data-dir", str(tmp_path)], stdout=out) == 0
    assert json.loads(out.getvalue())["data_dir"] == str(tmp_path)


def test_a_bad_option_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--index-port", "abc"], stdout=io.StringIO(), stderr=io.StringIO()) == 2
    assert "--index-port='abc' is not a whole number" in capsys.readouterr().err  # argparse's own stderr


def test_help_and_docs_list_every_setting_from_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    for s in SETTINGS:
        assert s.env in out and s.key in out, s.key
    docs = (ROOT / "docs" / "configuration.md").read_text()
    assert markdown_table() in docs, "docs/configuration.md is stale: python -m builder.config prints its table"


# -- `wheelyard --config f.toml up` -------------------------------------------------------------
@pytest.fixture
def leased_redis() -> Iterator[str]:
    with RedisDatabases(REDIS_SERVER) as databases:
        yield databases.take()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _child_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _command_of(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""  # gone already (up's short-lived checks of the interpreters)
    return argv[3].decode() if len(argv) > 3 and argv[1:3] == [b"-m", b"server.cli"] else ""


def test_up_gives_each_child_every_setting_only_the_file_sets(tmp_path: Path, leased_redis: str) -> None:
    index_port, api_port = free_port(), free_port()
    rust = find_rust_toolchain()
    values = file_settings(
        tmp_path,
        redis_url=leased_redis,
        # 127.0.0.2 is loopback too, and not the default: the children must have it from the file.
        index_host="127.0.0.2",
        index_port=index_port,
        index_url=f"http://127.0.0.2:{index_port}",
        api_host="127.0.0.2",
        api_port=api_port,
        api_url=f"http://127.0.0.2:{api_port}",
        worker_concurrency=2,
        # The index's static server and its upload endpoint must be ones that can start.
        index_server="embedded",
        index_upload_host="127.0.0.2",
        index_upload_port=free_port(),
        metrics_host="127.0.0.2",
        worker_metrics_port=free_port(),
        index_metrics_port=free_port(),
        log_format="json",
        # The worker refuses to start with a Rust toolchain directory that holds none.
        rust_toolchain=rust.bin_dir if rust is not None else None,
    )
    values = {k: v for k, v in values.items() if v is not None}
    (tmp_path / "overrides").mkdir()  # a worker refuses to start with overrides that do not exist
    config = write_toml(tmp_path / "wheelyard.toml", values)
    up = start_up(config, log=tmp_path / "up.log")
    try:

        def all_children() -> dict[str, int] | None:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            found = {_command_of(pid): pid for pid in _children(up.pid)}
            return found if {"index", "api", "worker"} <= set(found) else None

        children = wait_until(all_children, 120, "the index, API and worker of `wheelyard up`")
        expected = as_loaded(values)
        for name in ("index", "api", "worker"):
            loaded = read_back(load_settings(_child_environ(children[name])))
            assert loaded == {**read_back(Settings()), **expected}, name
        # The worker really runs with the file's concurrency: two pool processes.
        wait_until(lambda: len(_children(children["worker"])) == 2, 120, "the worker's two pool processes")
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=60)


def test_diagnose_after_global_options_is_still_the_diagnosis_tool(tmp_path: Path) -> None:
    log = tmp_path / "pip.log"
    log.write_text("error: command 'gcc' failed: No such file or directory\n")
    out = io.StringIO()
    assert main(["--data-dir", str(tmp_path), "diagnose", "--json", str(log)], stdout=out, stderr=io.StringIO()) in (
        0,
        1,
    )
    assert json.loads(out.getvalue())["primary"], out.getvalue()
