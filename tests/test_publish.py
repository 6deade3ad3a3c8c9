"""publish_wheel and the index queries, against the real index process."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from builder.errors import AlreadyPublished, WheelRejected
from builder.publish import (
    IndexAuthenticationFailed,
    IndexUnavailable,
    PublishFailed,
    publish_wheel,
    published_sha256,
    redact_url,
    wheel_on_index,
)
from tests.test_index import PASSWORD, USER, Index, free_port, running_index
from tests.test_verify import make_wheel


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    with running_index(tmp_path / "data") as idx:
        yield idx


def test_publish_returns_what_was_published(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "Tiny.Pkg", "2.0")
    with requests.Session() as session:
        result = publish_wheel(wheel, index_url=index.url + "/simple/", user=USER, password=PASSWORD, session=session)
    assert result.filename == wheel.name
    assert (result.name, result.version) == ("tiny-pkg", "2.0")
    assert result.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert result.size == wheel.stat().st_size
    assert wheel_on_index(wheel.name, index_url=index.url)
    assert published_sha256(wheel.name, index_url=index.url) == result.sha256


def test_publishing_twice_is_already_published(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    publish_wheel(wheel, index_url=index.url, user=USER, password=PASSWORD)
    with pytest.raises(AlreadyPublished) as info:
        publish_wheel(wheel, index_url=index.url, user=USER, password=PASSWORD)
    assert wheel.name in info.value.message


def test_wrong_password_is_a_credentials_error_that_hides_the_password(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    with pytest.raises(IndexAuthenticationFailed) as info:
        publish_wheel(wheel, index_url=index.url, user=USER, password="hunter2-wrong")
    assert "HTTP 403" in info.value.message
    assert info.value.hint is not None and "password" in info.value.hint
    assert "hunter2-wrong" not in str(info.value)
    assert not wheel_on_index(wheel.name, index_url=index.url)


def test_no_password_is_a_credentials_error(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    with pytest.raises(IndexAuthenticationFailed) as info:
        publish_wheel(wheel, index_url=index.url, user=USER, password=None)
    assert "HTTP 401" in info.value.message and "no credentials" in info.value.message


def test_a_refused_upload_reports_status_and_first_line(index: Index, tmp_path: Path) -> None:
    # A valid wheel whose filename is longer than the index accepts.
    wheel = make_wheel(tmp_path, "a" * 190)
    with pytest.raises(PublishFailed) as info:
        publish_wheel(wheel, index_url=index.url, user=USER, password=PASSWORD)
    assert "HTTP 400: the filename is 211 characters long; at most 200" in info.value.message


def test_a_broken_wheel_is_refused_before_upload(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, unlisted={"tinypkg/extra.py": b""})
    with pytest.raises(WheelRejected):
        publish_wheel(wheel, index_url=index.url, user=USER, password=PASSWORD)
    assert not wheel_on_index(wheel.name, index_url=index.url)


def test_an_unreachable_index_is_index_unavailable(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    url = f"http://{USER}:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(IndexUnavailable) as info:
        publish_wheel(wheel, index_url=url, user=USER, password=PASSWORD)
    assert "s3cret" not in str(info.value)
    assert PASSWORD not in str(info.value)


def test_published_sha256_of_a_missing_file(index: Index) -> None:
    assert not wheel_on_index("nothing-1.0-py3-none-any.whl", index_url=index.url)
    with pytest.raises(LookupError):
        published_sha256("nothing-1.0-py3-none-any.whl", index_url=index.url)


def test_redact_url() -> None:
    assert redact_url("http://u:p@h:1/x") == "http://u:***@h:1/x"
    assert redact_url("http://h/x") == "http://h/x"


def test_a_wheel_changed_after_verification_is_not_uploaded(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    verified = hashlib.sha256(wheel.read_bytes()).hexdigest()
    make_wheel(tmp_path, payload=b"# substituted\n")  # same filename, other bytes
    with pytest.raises(PublishFailed) as info:
        publish_wheel(wheel, index_url=index.url, user=USER, password=PASSWORD, sha256=verified)
    assert info.value.reference == "wheel-changed"
    assert not wheel_on_index(wheel.name, index_url=index.url)


def test_an_upload_never_replaces_a_published_file(index: Index, tmp_path: Path) -> None:
    """The verified upload lands with its hash; another file under the same name is refused and
    the index keeps serving the first file's bytes."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_wheel(tmp_path / "a")
    first_bytes = first.read_bytes()
    result = publish_wheel(
        first, index_url=index.url, user=USER, password=PASSWORD, sha256=hashlib.sha256(first_bytes).hexdigest()
    )
    second = make_wheel(tmp_path / "b", payload=b"# a replacement\n")
    assert second.name == first.name and second.read_bytes() != first_bytes
    with pytest.raises(AlreadyPublished):
        publish_wheel(
            second,
            index_url=index.url,
            user=USER,
            password=PASSWORD,
            sha256=hashlib.sha256(second.read_bytes()).hexdigest(),
        )
    assert published_sha256(first.name, index_url=index.url) == result.sha256
    served = requests.get(f"{index.url}/packages/{first.name}", timeout=30)
    assert served.status_code == 200 and served.content == first_bytes
