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
from server.ensure.holdings import Holdings, private_check
from server.private import is_private, private_projects
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


def private_names(store: BuildStore, holdings: Holdings) -> set[str]:
    return private_projects(store, holdings.projects, lambda name: [f.filename for f in holdings.files(name)])


def build(store: BuildStore, name: str, version: str, status: str, wheel: str | None = None) -> None:
    record = store.create(
        name=name,
        version=version,
        target=CP312.identifier,
        requirement=f"{name}=={version}",
        from_source=False,
        queue="q",
    )
    store.update(record.id, status=status, wheel=wheel, finished_at=time.time())


def test_a_name_is_private_until_wheelyard_made_every_file_of_it(index: Index, store: BuildStore) -> None:
    holdings = Holdings(index.url, auth=("reader", READ_PASSWORD))
    fastthing = "fastthing-0.5-cp312-cp312-manylinux_2_17_x86_64.whl"
    assert private_names(store, holdings) == {"internal-lib", "fastthing"}
    build(store, "fastthing", "0.6", "failed")
    assert private_names(store, holdings) == {"internal-lib", "fastthing"}, "a failed build put nothing there"
    build(store, "fastthing", "0.5", "building")
    assert private_names(store, holdings) == {"internal-lib"}, "a build under way may have uploaded already"
    build(store, "FastThing", "0.5", "mirrored", wheel=fastthing)
    build(store, "internal-lib", "2.0", "published", wheel="internal_lib-2.0-py3-none-any.whl")
    assert private_names(store, holdings) == {"internal-lib"}, "internal_lib-1.0 was uploaded by people"
    # The same rule where a miss is considered (server/misses) and where a request is refused (below).
    assert is_private(store, "internal-lib", [f.filename for f in holdings.files("internal-lib")])
    assert not is_private(store, "fastthing", [fastthing])
    assert not is_private(store, "not-on-the-index", None) and not is_private(store, "not-on-the-index", [])

    settings = Settings(index_url=index.url, index_read_password=READ_PASSWORD)
    refuses = private_check(settings, store)
    assert refuses("Internal_Lib") and not refuses("fastthing") and not refuses("not-on-the-index")
    closed = private_check(Settings(index_url=f"http://127.0.0.1:{free_port()}"), store)
    with pytest.raises(IndexUnavailable, match="nothing was queued"):
        closed("internal-lib")
