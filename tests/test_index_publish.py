"""Publishing into the static tree from many threads at once, as the upload endpoint does: every
publish finds its project on the root and its file on its page the moment it returns, however the
rewrites of the root are shared among concurrent publishes; a project's record keeps what it said."""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path

from server.index.site import IndexSite
from tests.test_verify import make_wheel

PUBLISHERS = 24


def _root_lists(site: IndexSite, name: str) -> bool:
    html = (site.simple / "index.html").read_text()
    listed = json.loads((site.simple / "index.json").read_bytes())["projects"]
    zipped = gzip.decompress((site.simple / "index.json.gz").read_bytes()).decode()
    return f'href="{name}/"' in html and {"name": name} in listed and f'"name":"{name}"' in zipped


def test_concurrent_publishes_of_new_projects_each_see_their_project_on_the_root(tmp_path: Path) -> None:
    site = IndexSite(tmp_path / "data")
    site.ensure_dirs()
    names = [f"group-{i:02d}" for i in range(PUBLISHERS)]
    wheels = [make_wheel(site.files_dir, name, "1.0", payload=name.encode()) for name in names]
    start = threading.Barrier(PUBLISHERS)
    seen: dict[str, bool] = {}

    def publish(name: str, wheel: Path) -> None:
        start.wait()
        site.publish(wheel.name)
        # What a client reads once the upload is answered: the root already names the project.
        seen[name] = _root_lists(site, name) and wheel.name in (site.simple / name / "index.html").read_text()

    threads = [threading.Thread(target=publish, args=pair) for pair in zip(names, wheels, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert seen == dict.fromkeys(names, True)
    assert site.projects() == sorted(names)


def test_a_record_keeps_hash_upload_time_and_yank_across_publishes_and_a_rebuild(tmp_path: Path) -> None:
    site = IndexSite(tmp_path / "data")
    site.ensure_dirs()
    first = make_wheel(site.files_dir, "kept", "1.0")
    site.publish(first.name)
    site.set_yanked("kept", "1.0", "broken")
    before = {e.filename: e for e in site.entries("kept")}
    second = make_wheel(site.files_dir, "kept", "2.0")
    site.publish(second.name)
    record = json.loads((site.state / "kept.json").read_bytes())  # one valid JSON document
    assert sorted(record["files"]) == sorted([first.name, second.name])
    assert site.entries("kept")[0] == before[first.name]
    report = IndexSite(tmp_path / "data").rebuild(force=True)
    assert report.hashed == 0  # both known: nothing read again
    after = {e.filename: e for e in site.entries("kept")}
    assert after[first.name] == before[first.name] and after[first.name].yanked == "broken"
    assert 'data-yanked="broken"' in (site.simple / "kept" / "index.html").read_text()
