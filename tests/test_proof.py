"""What the proof imports, from a wheel's layout alone (builder/proof.py), and the hollow-wheel check."""

from __future__ import annotations

import zipfile
from pathlib import Path

from builder.proof import WheelLayout, is_hollow, plan_imports, read_layout, retag_pure
from builder.targets import BuildTarget
from builder.verify import verify_wheel

SO = ".cpython-312-x86_64-linux-gnu.so"


def test_top_level_txt_is_a_hint_and_every_extension_is_imported_by_its_dotted_path() -> None:
    layout = WheelLayout(
        files=("foo/__init__.py", f"foo/_foo{SO}", "foo.libs/libz-1a2b.so.1", "six.py", "_cffi_backend.abi3.so"),
        top_level=("_foo", "foo", "six"),
    )
    plan = plan_imports(layout)
    assert plan.modules == ("six", "foo")
    assert plan.extensions == ("_cffi_backend", "foo._foo")
    # Extensions are loaded from their files, so a package above one is not run first.
    assert plan.arguments[2:] == ["_cffi_backend=_cffi_backend.abi3.so", f"foo._foo=foo/_foo{SO}"]
    assert plan.notes == (
        "wheelyard: proof: top_level.txt names '_foo', which the wheel does not hold as a top-level package "
        "or module; skipped",
    )


def test_every_package_below_a_namespace_is_imported_never_the_namespace_alone() -> None:
    layout = WheelLayout(
        files=(
            "zope/__init__.py",  # pkg_resources style: declared, so a namespace
            "zope/interface/__init__.py",
            f"zope/interface/_zope_interface_coptimizations{SO}",
            "google/cloud/storage/__init__.py",  # PEP 420: google and google.cloud have no __init__
            "google/cloud/_helpers.py",
            "jaraco/text/__init__.py",
            "jaraco/text/Lorem ipsum.txt",
        ),
        namespaces=frozenset({"zope"}),
    )
    assert plan_imports(layout).names == (
        "google.cloud._helpers",
        "google.cloud.storage",
        "jaraco.text",
        "zope.interface",
        "zope.interface._zope_interface_coptimizations",
    )


def test_libraries_data_and_metadata_are_not_imported() -> None:
    layout = WheelLayout(
        files=("pkg/__init__.py", "pkg/lib/libopenblas.so", "pkg/lib/blas.so", "pkg/data-files/x.py", "pkg/py.typed"),
        libraries=frozenset({"pkg/lib/blas.so"}),
    )
    assert plan_imports(layout).modules == ("pkg",)


def _wheel(path: Path, files: dict[str, bytes], tag: str) -> Path:
    import base64
    import hashlib

    dist_info = "demo-1.0.dist-info"
    files = {
        **files,
        f"{dist_info}/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n".encode(),
    }
    record = [
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
        for n, d in files.items()
    ]
    wheel = path / f"demo-1.0-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist_info}/RECORD", "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n")
    return wheel


def test_a_platform_wheel_without_native_code_is_hollow_and_can_be_retagged_pure(tmp_path: Path) -> None:
    hollow = _wheel(tmp_path, {"demo/__init__.py": b"x = 1\n"}, "cp312-cp312-linux_x86_64")
    assert is_hollow(hollow.name, read_layout(hollow))
    compiled = _wheel(tmp_path, {"demo/_c" + SO: b"\x7fELF\x02\x01\x01 PyInit__c"}, "cp312-cp312-linux_x86_64")
    assert not is_hollow(compiled.name, read_layout(compiled))
    pure = retag_pure(hollow, tmp_path / "pure")
    assert pure.name == "demo-1.0-py3-none-any.whl"
    # A whole wheel (RECORD hashes) that a cp312 manylinux client accepts, tagged for no platform.
    info = verify_wheel(pure, name="demo", version="1.0", target=BuildTarget.parse("cp312-manylinux_x86_64"))
    assert {str(t) for t in info.tags} == {"py3-none-any"}
    with zipfile.ZipFile(pure) as zf:
        assert "Root-Is-Purelib: true" in zf.read("demo-1.0.dist-info/WHEEL").decode()


def test_concurrency_and_jobs_are_chosen_together_from_cores_and_memory() -> None:
    from builder.parallelism import plan_parallelism

    gib = 1024**3
    # 2 cores, 24 GiB, 4 GiB a build: two builds side by side, one job each.
    assert (plan_parallelism(2, 24 * gib, 4 * gib).concurrency, plan_parallelism(2, 24 * gib, 4 * gib).jobs) == (2, 1)
    # 16 cores but memory for 3 builds: 3 builds, the cores shared among them as jobs.
    many = plan_parallelism(16, 13 * gib, 4 * gib)
    assert (many.concurrency, many.jobs) == (3, 5)
    # A fixed concurrency still gets the cores shared among its builds; fixed jobs are kept.
    assert plan_parallelism(8, 64 * gib, 4 * gib, concurrency=2).jobs == 4
    assert plan_parallelism(8, 64 * gib, 4 * gib, jobs=1).concurrency == 8
    # Less memory than one build's limit: one build still runs.
    assert plan_parallelism(4, 2 * gib, 4 * gib).concurrency == 1
