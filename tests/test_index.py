"""The private index, for real: ``python -m server.index`` (waitress + pypiserver) on a
free port, real uploads over HTTP, and the real pip reading from it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from pypiserver.config import Config

from builder.errors import AlreadyPublished
from builder.publish import publish_wheel, published_sha256, wheel_on_index
from server.index.credentials import ensure_upload_credentials
from server.index.storage import ImmutableFileBackend
from tests.conftest import make_sdist
from tests.test_verify import make_wheel

USER = "uploader"
PASSWORD = "upload-secret"
READ_PASSWORD = "read-secret"


@dataclass
class Index:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def wheel_dir(self) -> Path:
        return self.data_dir / "wheels"

    def visible_files(self) -> list[str]:
        return sorted(p.name for p in self.wheel_dir.iterdir() if not p.name.startswith("."))

    def hidden_entries(self) -> list[str]:
        return sorted(p.name for p in self.wheel_dir.iterdir() if p.name.startswith("."))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def running_index(data_dir: Path, **settings: str) -> Iterator[Index]:
    """Run the index as its own process, configured through the environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELYARD_")}
    env.update(
        WHEELYARD_DATA_DIR=str(data_dir),
        WHEELYARD_INDEX_PORT=str(port),
        WHEELYARD_INDEX_USER=USER,
        WHEELYARD_INDEX_PASSWORD=PASSWORD,
        **settings,
    )
    log = (data_dir.parent / f"index-{port}.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "server.index"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, f"the index exited: {log.name}"
        try:
            return requests.get(url + "/health", timeout=2).text == "Ok"
        except (requests.ConnectionError, requests.Timeout):  # bound early, answering once started
            return False

    try:
        wait_until(healthy, what="the index to answer /health")
        yield Index(url, port, data_dir, process)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    with running_index(tmp_path / "data") as idx:
        yield idx


@pytest.fixture
def private_index(tmp_path: Path) -> Iterator[Index]:
    with running_index(tmp_path / "data", WHEELYARD_INDEX_READ_PASSWORD=READ_PASSWORD) as idx:
        yield idx


def upload(
    index: Index,
    data: bytes,
    filename: str,
    auth: tuple[str, str] | None = (USER, PASSWORD),
) -> requests.Response:
    """A raw twine-protocol upload, so the server's checks are what is tested."""
    return requests.post(
        index.url + "/",
        data={":action": "file_upload", "protocol_version": "1", "filetype": "bdist_wheel"},
        files={"content": (filename, data, "application/octet-stream")},
        auth=auth,
        timeout=60,
    )


def pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real pip, isolated from this machine's pip configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-cache-dir"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- serving ---------------------------------------------------------------------------


def test_health_endpoint(index: Index) -> None:
    response = requests.get(index.url + "/health", timeout=10)
    assert response.status_code == 200
    assert response.text == "Ok"


def test_pip_installs_a_published_wheel_with_hash_checked_links(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "Tiny_Pkg", "1.0")
    result = publish_wheel(wheel, index_url=index.url, user=USER, password=PASSWORD)
    assert index.visible_files() == [wheel.name]
    assert wheel_on_index(wheel.name, index_url=index.url)
    assert published_sha256(wheel.name, index_url=index.url) == result.sha256

    page = requests.get(index.url + "/simple/tiny-pkg/", timeout=10).text
    assert f"{wheel.name}#sha256={result.sha256}" in page

    simple = index.url + "/simple/"
    download = tmp_path / "download"
    done = pip(
        "download", "--no-deps", "--only-binary", ":all:", "--index-url", simple,
        "-d", str(download), "tiny-pkg==1.0", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256((download / wheel.name).read_bytes()).hexdigest() == result.sha256

    target = tmp_path / "site"
    done = pip(
        "install", "--no-deps", "--only-binary", ":all:", "--index-url", simple,
        "--target", str(target), "tiny_pkg", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (target / "tiny_pkg" / "__init__.py").read_text() == "VALUE = '1.0'\n"


def test_a_published_file_is_never_replaced(index: Index, tmp_path: Path) -> None:
    first = make_wheel(tmp_path, payload=b"first")
    publish_wheel(first, index_url=index.url, user=USER, password=PASSWORD)
    original = hashlib.sha256(first.read_bytes()).hexdigest()
    second = make_wheel(tmp_path, payload=b"second")
    with pytest.raises(AlreadyPublished):
        publish_wheel(second, index_url=index.url, user=USER, password=PASSWORD)
    response = upload(index, second.read_bytes(), second.name)
    assert response.status_code == 409
    assert "already exists" in response.text
    # twine expects pypi.org's answer to a duplicate: 400 "... already exists".
    as_twine = requests.post(
        index.url + "/",
        data={":action": "file_upload", "protocol_version": "1"},
        files={"content": (second.name, second.read_bytes())},
        auth=(USER, PASSWORD),
        headers={"User-Agent": "twine/6.0.0"},
        timeout=60,
    )
    assert as_twine.status_code == 400
    assert "already exists" in as_twine.text
    assert hashlib.sha256((index.wheel_dir / first.name).read_bytes()).hexdigest() == original


def test_removing_a_file_is_refused(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    publish_wheel(wheel, index_url=index.url, user=USER, password=PASSWORD)
    response = requests.post(
        index.url + "/",
        data={":action": "remove_pkg", "name": "tinypkg", "version": "1.0"},
        auth=(USER, PASSWORD),
        timeout=10,
    )
    assert response.status_code == 405
    assert "never removed" in response.text
    assert index.visible_files() == [wheel.name]


# --- concurrency and atomicity ---------------------------------------------------------


@pytest.fixture
def two_different_wheels_with_one_filename(tmp_path: Path) -> tuple[bytes, bytes, str]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    # Incompressible payloads, large enough that the uploads overlap in time.
    one = make_wheel(a, payload=os.urandom(3 << 20))
    two = make_wheel(b, payload=os.urandom(3 << 20))
    assert one.name == two.name
    return one.read_bytes(), two.read_bytes(), one.name


def test_concurrent_uploads_of_one_filename(
    index: Index, two_different_wheels_with_one_filename: tuple[bytes, bytes, str]
) -> None:
    one, two, filename = two_different_wheels_with_one_filename
    barrier = threading.Barrier(2)
    statuses: dict[int, int] = {}

    def send(i: int, data: bytes) -> None:
        barrier.wait()
        statuses[i] = upload(index, data, filename).status_code

    threads = [threading.Thread(target=send, args=(i, d)) for i, d in enumerate((one, two))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(statuses.values()) == [200, 409], statuses
    published = hashlib.sha256((index.wheel_dir / filename).read_bytes()).hexdigest()
    winner = one if statuses[0] == 200 else two
    assert published == hashlib.sha256(winner).hexdigest()
    assert index.visible_files() == [filename]
    assert [name for name in index.hidden_entries() if name.startswith(".upload-")] == []


class _StallingStream(io.BytesIO):
    """Gives its first chunk, then waits until released: an upload caught mid-write."""

    def __init__(self, data: bytes, release: threading.Event, stalled: threading.Event):
        super().__init__(data)
        self.release = release
        self.stalled = stalled
        self.reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        if self.reads == 2:
            self.stalled.set()
            assert self.release.wait(timeout=30)
        return super().read(size)


def test_the_loser_of_a_race_past_the_existence_check_is_refused(tmp_path: Path) -> None:
    """Both uploads pass pypiserver's exists() check; os.link decides, and the loser's
    staged file is removed."""
    root = tmp_path / "wheels"
    root.mkdir()
    backend = ImmutableFileBackend(Config.default_with_overrides(roots=[root]))
    slow_wheel = make_wheel(tmp_path, payload=os.urandom(3 << 20))
    slow = slow_wheel.read_bytes()
    fast_dir = tmp_path / "fast"
    fast_dir.mkdir()
    fast = make_wheel(fast_dir, payload=b"fast").read_bytes()
    release, stalled = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_upload() -> None:
        try:
            backend.add_package(slow_wheel.name, _StallingStream(slow, release, stalled))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=slow_upload)
    thread.start()
    assert stalled.wait(timeout=30)
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == []
    backend.add_package(slow_wheel.name, io.BytesIO(fast))
    release.set()
    thread.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], AlreadyPublished)
    assert (root / slow_wheel.name).read_bytes() == fast
    assert [p.name for p in root.iterdir()] == [slow_wheel.name]


@pytest.fixture
def half_sent_upload(index: Index, tmp_path: Path) -> Iterator[tuple[socket.socket, bytes, str]]:
    wheel = make_wheel(tmp_path, payload=os.urandom(1 << 20))
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name=":action"\r\n\r\n'
            f'file_upload\r\n--{boundary}\r\nContent-Disposition: form-data; name="content"; '
            f'filename="{wheel.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + wheel.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{index.port}\r\nAuthorization: Basic {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", index.port), timeout=60)
    sock.sendall(head + body[: len(body) // 2])
    try:
        yield sock, body[len(body) // 2 :], wheel.name
    finally:
        sock.close()


def test_a_slow_partial_upload_is_never_visible(
    index: Index, half_sent_upload: tuple[socket.socket, bytes, str]
) -> None:
    sock, rest, filename = half_sent_upload
    # The index keeps serving while the upload hangs, and shows nothing of it.
    for _ in range(5):
        assert filename not in requests.get(index.url + "/packages/", timeout=10).text
        assert requests.get(index.url + "/simple/tinypkg/", timeout=10).status_code == 404
        assert index.visible_files() == []
    sock.sendall(rest)
    reply = http.client.HTTPResponse(sock)
    reply.begin()
    assert reply.status == 200, reply.read()
    assert index.visible_files() == [filename]
    assert wheel_on_index(filename, index_url=index.url)


# --- refusals --------------------------------------------------------------------------


@pytest.fixture
def wheel_with_a_bad_record_hash(tmp_path: Path) -> Path:
    def edit(rows: list[list[str]]) -> None:
        rows[0][1] = "sha256=" + "A" * 43

    return make_wheel(tmp_path, record_edit=edit)


def test_a_wheel_with_a_bad_record_hash_is_refused(index: Index, wheel_with_a_bad_record_hash: Path) -> None:
    response = upload(index, wheel_with_a_bad_record_hash.read_bytes(), wheel_with_a_bad_record_hash.name)
    assert response.status_code == 400
    assert "tinypkg/__init__.py does not match RECORD" in response.text
    assert index.visible_files() == []
    assert [name for name in index.hidden_entries() if name.startswith(".upload-")] == []
    assert requests.get(index.url + "/simple/tinypkg/", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("../evil-1.0-py3-none-any.whl", "Bad filename"),  # pypiserver's own check
        ("..evil-1.0-py3-none-any.whl", "'..'"),
        (".hidden-1.0-py3-none-any.whl", "starts with a dot"),
        ("tinypkg-1.0.exe", "Bad filename"),
        ("tinypkg-1.0-py3-none-any.zip", "neither a wheel"),
        ("tinypkg-1.0.whl", "Bad filename: tinypkg-1.0.whl"),  # pypiserver's own check
        ("a" * 250 + "-1.0-py3-none-any.whl", "characters long"),
    ],
)
def test_bad_filenames_are_refused(index: Index, tmp_path: Path, filename: str, message: str) -> None:
    data = make_wheel(tmp_path).read_bytes()
    response = upload(index, data, filename)
    assert response.status_code == 400, response.text
    assert response.text.strip()
    assert message in response.text, response.text
    assert index.visible_files() == []


def test_a_real_sdist_is_accepted(index: Index, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "src", "tinypkg", "1.0", {"setup.py": "pass\n"}, tmp_path / "dist")
    response = upload(index, sdist.read_bytes(), sdist.name)
    assert response.status_code == 200, response.text
    assert index.visible_files() == ["tinypkg-1.0.tar.gz"]


@pytest.mark.parametrize(
    ("name", "version", "filename", "message"),
    [
        (None, None, "tinypkg-1.0.tar.gz", "is not a readable gzipped tar archive"),
        ("otherpkg", "1.0", "tinypkg-1.0.tar.gz", "outside its top-level directory tinypkg-1.0/"),
        ("tinypkg", "2.0", "tinypkg-1.0.tar.gz", "outside its top-level directory"),
        (None, None, "tinypkg-1.0.zip", "is not a readable zip archive"),
    ],
)
def test_an_sdist_that_is_not_what_its_name_says_is_refused(
    index: Index, tmp_path: Path, name: str | None, version: str | None, filename: str, message: str
) -> None:
    if name is None:
        data = b"any bytes at all"
    else:
        data = make_sdist(tmp_path / "src", name, version or "", {"setup.py": "pass\n"}, tmp_path / "dist").read_bytes()
    response = upload(index, data, filename)
    assert response.status_code == 400, response.text
    assert message in response.text
    assert index.visible_files() == []


def test_an_sdist_whose_pkg_info_names_another_version_is_refused(index: Index, tmp_path: Path) -> None:
    import tarfile

    project = tmp_path / "tinypkg-1.0"
    project.mkdir()
    (project / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.1\n")
    archive = tmp_path / "tinypkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(project, arcname=project.name)
    response = upload(index, archive.read_bytes(), archive.name)
    assert response.status_code == 400
    assert "gives the version '1.1', not '1.0'" in response.text
    assert index.visible_files() == []


def test_upload_without_credentials_is_401(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    assert upload(index, wheel.read_bytes(), wheel.name, auth=None).status_code == 401
    assert index.visible_files() == []


def test_upload_with_a_wrong_password_is_403(index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    assert upload(index, wheel.read_bytes(), wheel.name, auth=(USER, "wrong")).status_code == 403
    assert upload(index, wheel.read_bytes(), wheel.name, auth=("nobody", PASSWORD)).status_code == 403
    assert index.visible_files() == []
    # After the right password passed once (and is remembered by its fast hash), a wrong one still fails.
    assert upload(index, wheel.read_bytes(), wheel.name).status_code == 200
    (tmp_path / "other").mkdir()
    other = make_wheel(tmp_path / "other", version="2.0")
    assert upload(index, other.read_bytes(), other.name, auth=(USER, PASSWORD + "x")).status_code == 403
    assert upload(index, other.read_bytes(), other.name, auth=("nobody", PASSWORD)).status_code == 403
    assert index.visible_files() == [wheel.name]


def test_reading_is_open_without_a_read_password(index: Index) -> None:
    assert requests.get(index.url + "/simple/", timeout=10).status_code == 200


def test_read_password_guards_listing_and_download(private_index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    publish_wheel(wheel, index_url=private_index.url, user=USER, password=PASSWORD)
    assert requests.get(private_index.url + "/simple/", timeout=10).status_code == 401
    assert requests.get(private_index.url + f"/packages/{wheel.name}", timeout=10).status_code == 401
    # The read password cannot upload.
    other = tmp_path / "other"
    other.mkdir()
    second = make_wheel(other, version="2.0")
    refused = upload(private_index, second.read_bytes(), second.name, auth=("reader", READ_PASSWORD))
    assert refused.status_code == 403

    anonymous = pip(
        "download", "--no-deps", "--index-url", private_index.url + "/simple/",
        "-d", str(tmp_path / "anon"), "tinypkg", cwd=tmp_path,
    )  # fmt: skip
    assert anonymous.returncode != 0
    assert not (tmp_path / "anon" / wheel.name).exists()

    with_credentials = f"http://reader:{READ_PASSWORD}@127.0.0.1:{private_index.port}/simple/"
    done = pip(
        "download", "--no-deps", "--only-binary", ":all:", "--index-url", with_credentials,
        "-d", str(tmp_path / "ok"), "tinypkg", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ok" / wheel.name).read_bytes() == wheel.read_bytes()
    assert wheel_on_index(wheel.name, index_url=private_index.url, user="reader", password=READ_PASSWORD)


# --- credentials -----------------------------------------------------------------------


def test_generated_upload_password_is_kept_private_and_stable(tmp_path: Path) -> None:
    from builder.config import Settings

    settings = Settings(data_dir=tmp_path / "data", index_user="wy")
    user, password = ensure_upload_credentials(settings)
    stored = settings.data_dir / "index-password"
    assert user == "wy" and len(password) >= 32
    assert stored.stat().st_mode & 0o777 == 0o600
    assert (settings.data_dir / "htpasswd").stat().st_mode & 0o777 == 0o600
    assert password not in (settings.data_dir / "htpasswd").read_text()
    assert ensure_upload_credentials(settings) == (user, password)
