"""What the index holds and which names are private, read from a real ``wheelyard index`` process
(with a read password) and the real Redis: over HTTP, and from the index's own wheel directory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from builder.config import Settings
from builder.errors import IndexUnavailable
from builder.publish import publish_wheel
from builder.records import BuildStore
from builder.targets import BuildTarget
from server.ensure.holdings import Holdings, private_check, private_names
from tests.conftest import REDIS_SERVER, RedisDatabases, free_port
from tests.test_index import PASSWORD, READ_PASSWORD, USER, Index, running_index
from tests.test_verify import make_wheel

CP312 = BuildTarget.parse("cp312-manylinux_x86_64")
GLIBC = (2, 28)


@pytest.fixture
def store() -> Iterator[BuildStore]:
    with RedisDatabases(REDIS_SERVER) as databases:
        yield BuildStore(redis.Redis.from_url(databases.take()))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    with running_index(tmp_path / "data", WHEELYARD_INDEX_READ_PASSWORD=READ_PASSWORD) as idx:
        for name, version, tag in [
            ("internal-lib", "1.0", "py3-none-any"),
            ("internal-lib", "2.0", "py3-none-any"),
            ("fastthing", "0.5", "cp312-cp312-manylinux_2_17_x86_64"),
        ]:
            (tmp_path / f"{name}-{version}").mkdir()
            wheel = make_wheel(tmp_path / f"{name}-{version}", name, version, tag)
            publish_wheel(wheel, index_url=idx.url, user=USER, password=PASSWORD)
        yield idx


def test_holdings_over_http_and_from_the_wheel_directory_agree(index: Index, tmp_path: Path) -> None:
    auth = ("reader", READ_PASSWORD)
    remote = Holdings(index.url, auth=auth)
    local = Holdings(index.url, wheel_dir=index.wheel_dir, auth=auth)
    # A directory that is not the index's (other projects) is not taken for it.
    (tmp_path / "elsewhere").mkdir()
    elsewhere = Holdings(index.url, wheel_dir=tmp_path / "elsewhere", auth=auth)
    for holdings in (remote, local, elsewhere):
        assert holdings.projects == {"internal-lib", "fastthing"}
        assert holdings.wheel_for("internal-lib", "2.0", CP312, GLIBC) == "internal_lib-2.0-py3-none-any.whl"
        assert holdings.wheel_for("fastthing", "0.5", CP312, GLIBC) is not None
        assert holdings.wheel_for("fastthing", "0.5", BuildTarget.parse("cp313-manylinux_x86_64"), GLIBC) is None
        assert holdings.wheel_for("absent", "1", CP312, GLIBC) is None
    assert local._local and not remote._local and not elsewhere._local
    url = remote.file_url("internal_lib-2.0-py3-none-any.whl")
    assert url == f"http://reader:{READ_PASSWORD}@127.0.0.1:{index.port}/packages/internal_lib-2.0-py3-none-any.whl"

    with pytest.raises(IndexUnavailable, match="refused to list"):
        Holdings(index.url)  # no read password


def test_a_name_is_private_until_wheelyard_has_a_build_of_it(index: Index, store: BuildStore) -> None:
    assert private_names(store, ["internal-lib", "fastthing"]) == {"internal-lib", "fastthing"}
    failed = store.create(
        name="fastthing",
        version="0.6",
        target=CP312.identifier,
        requirement="fastthing==0.6",
        from_source=False,
        queue="q",
    )
    store.update(failed.id, status="failed", finished_at=time.time())
    assert private_names(store, ["fastthing"]) == {"fastthing"}, "a failed build put nothing on the index"
    mirrored = store.create(
        name="FastThing",
        version="0.5",
        target=CP312.identifier,
        requirement="fastthing==0.5",
        from_source=False,
        queue="q",
    )
    store.update(mirrored.id, status="mirrored")
    assert private_names(store, ["internal-lib", "fastthing"]) == {"internal-lib"}

    settings = Settings(index_url=index.url, index_read_password=READ_PASSWORD)
    is_private = private_check(settings, store)
    assert is_private("Internal_Lib") and not is_private("fastthing") and not is_private("not-on-the-index")
    closed = private_check(Settings(index_url=f"http://127.0.0.1:{free_port()}"), store)
    with pytest.raises(IndexUnavailable, match="nothing was queued"):
        closed("internal-lib")
