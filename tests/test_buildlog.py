"""What a build record keeps of a log (builder/buildlog.py): head, one marker line, tail."""

from __future__ import annotations

from pathlib import Path

from builder.buildlog import StoredLog, marker_line, stored_form


def stream(log: StoredLog, data: bytes, chunk: int) -> bytes:
    head = b"".join(log.take(data[i : i + chunk]) for i in range(0, len(data), chunk))
    return head + log.ending()


def test_a_log_that_fits_is_kept_whole() -> None:
    data = b"".join(b"line %d\n" % i for i in range(500))  # 4.4 kB
    assert stream(StoredLog(head=4000, tail=4000), data, 97) == data


def test_a_long_log_keeps_head_marker_and_tail_in_any_chunking(tmp_path: Path) -> None:
    data = b"".join(b"line %06d\n" % i for i in range(100_000))  # 1.2 MB
    expected = data[:5000] + b"\n" + marker_line(len(data) - 9000) + data[-4000:]
    for chunk in (1, 4096, 65536, len(data)):
        if chunk == 1:
            data_small = data[:20000]
            got = stream(StoredLog(head=5000, tail=4000), data_small, chunk)
            assert got == data_small[:5000] + b"\n" + marker_line(11000) + data_small[-4000:]
            continue
        assert stream(StoredLog(head=5000, tail=4000), data, chunk) == expected
    path = tmp_path / "build.log"
    path.write_bytes(data)
    # Written again from the worker's file (Redis was away): the same stored form.
    assert stored_form(path, head=5000, tail=4000) == expected
    assert expected.count(b"left out here") == 1


def test_closing_the_build_log_writes_what_the_redactor_held_back(tmp_path: Path) -> None:
    from builder.pipeline import BuildLog

    sunk: list[bytes] = []
    with BuildLog(tmp_path / "build.log", sink=sunk.append) as log:
        log.redact(["hunter2-secret"])
        log.write(b"password: hunter2-secret\nthe end: hunter2")  # may be the start of the secret
        assert not (tmp_path / "build.log").read_bytes().endswith(b"hunter2")
    log.close()  # closing again is harmless
    assert (tmp_path / "build.log").read_bytes() == b"password: ***\nthe end: hunter2"
    assert b"".join(sunk) == b"password: ***\nthe end: hunter2"
