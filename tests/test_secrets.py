"""The worker's secrets never reach a log: which values count, and their redaction from a stream."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from builder.config import Settings
from builder.secrets import Redactor, secret_paths, secret_values
from builder.tools import ToolRefused, run_tool


def test_secret_values_are_the_settings_secrets_url_passwords_and_secret_named_variables() -> None:
    settings = Settings(
        index_password="upload-pass",
        api_token="api-token-value",
        redis_url="redis://:redis-pass@127.0.0.1:6379/0",
        upstream_index="https://me:up%40stream@artifactory.example/simple/",
    )
    environ = {"GITHUB_TOKEN": "ghp_abcdef", "WHEELYARD_DATA_DIR": "/srv/data", "WHEELYARD_INDEX_PORT": "8080"}
    values = secret_values(settings, environ, ["extra-secret", None])
    for value in ("upload-pass", "api-token-value", "redis-pass", "up@stream", "up%40stream", "ghp_abcdef"):
        assert value in values
    assert "extra-secret" in values
    # Settings that only keep a variable from a build are no secret: a log may name them.
    assert "/srv/data" not in values and "8080" not in values


def test_redactor_masks_secrets_split_across_chunks() -> None:
    redactor = Redactor(["hunter2-secret", "abc"])  # "abc" is too short to redact
    chunks = [b"start hunter2-", b"secret middle hun", b"ter2-secret", b" end abc\n", b"hunter"]
    out = b"".join(redactor.feed(c) for c in chunks) + redactor.flush()
    assert out == b"start *** middle *** end abc\nhunter"
    assert redactor.text("failed: hunter2-secret") == "failed: ***"


def test_redactor_holds_back_only_a_possible_start_of_a_secret() -> None:
    redactor = Redactor(["hunter2-secret"])
    assert redactor.feed(b"line one\n") == b"line one\n"
    assert redactor.feed(b"x hu") == b"x "
    assert redactor.feed(b"h\n") == b"huh\n"


def test_secret_files_are_named_by_the_environment() -> None:
    environ = {"WHEELYARD_INDEX_PASSWORD_FILE": "/etc/wheelyard/pw", "WHEELYARD_CONFIG": "/etc/wheelyard.toml"}
    assert secret_paths({**environ, "HOME": "/root"}) == [Path("/etc/wheelyard/pw"), Path("/etc/wheelyard.toml")]


# --- the rule for the worker's tools (builder.tools.run_tool) ----------------------------------


def test_a_tool_does_not_run_in_a_directory_others_can_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ToolRefused) as info:
        run_tool(["/bin/true"], env={"PATH": "/usr/bin:/bin"}, cwd=shared, timeout=10)
    assert "writable by others" in info.value.message
    if os.geteuid() == 0:
        # A directory the build's uid owns (the old workdir): refused too.
        owned = tmp_path / "owned"
        owned.mkdir()
        os.chown(owned, 65534, 65534)
        with pytest.raises(ToolRefused, match="owned by uid 65534"):
            run_tool(["/bin/true"], env={"PATH": "/usr/bin:/bin"}, cwd=owned, timeout=10)


def test_a_tool_is_named_by_an_absolute_path_and_python_runs_isolated(tmp_path: Path) -> None:
    with pytest.raises(ToolRefused):
        run_tool(["true"], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, timeout=10)
    python = Path(sys.executable)
    with pytest.raises(ToolRefused, match="-I"):
        run_tool([str(python.parent / "python"), "-m", "auditwheel"], env={}, cwd=tmp_path, timeout=10)


def test_a_tool_sees_no_module_planted_where_it_runs_and_no_pythonpath(tmp_path: Path) -> None:
    """``python -I -m NAME`` in a directory holding ``NAME.py`` imports the real module, and
    PYTHONPATH never reaches the tool."""
    work = tmp_path / "work"
    work.mkdir(mode=0o755)
    (work / "json.py").write_text("raise SystemExit('the planted module ran')\n")
    (work / "sitecustomize.py").write_text("raise SystemExit('sitecustomize ran')\n")
    code, out = run_tool(
        [str(Path(sys.executable).parent / "python"), "-I", "-c", "import json, sys; print(json.__file__, sys.path)"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(work), "PYTHONSTARTUP": str(work / "json.py")},
        cwd=work,
        timeout=30,
    )
    assert code == 0, out
    assert str(work) not in out.decode()
    assert stat.S_IMODE(os.stat(work).st_mode) == 0o755
