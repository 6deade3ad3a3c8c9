"""What a worker advertises, and whether it meets what a diagnosis names (builder/advertised.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.advertised import _library_names, advertised, probe_libraries, routable, satisfies, satisfies_all
from builder.capabilities import TOOLS, probe, probe_tools

GCC_LINE = "gcc (Debian 12.2.0-14+deb12u1) 12.2.0"


def test_tools_are_advertised_with_their_version_and_family() -> None:
    names = advertised({"gcc": GCC_LINE, "gfortran": "GNU Fortran (Debian 12.2.0-14) 12.2.0", "cargo": "cargo 1.83.0"})
    assert {"tool:gcc", "tool:gcc==12.2.0", "tool:cc", "tool:gfortran", "tool:fortran", "tool:rust"} <= set(names)
    assert "tool:rust==1.83.0" in names and names == sorted(names)
    assert advertised({"bwrap": "unknown"}) == ["tool:bwrap"]  # no version line: no version


def test_a_bound_is_met_by_an_advertised_version_only() -> None:
    have = advertised({"cargo": "cargo 1.83.0 (5ffbef321 2024-10-29)", "cmake": "cmake version 3.25.1"})
    assert satisfies(have, "tool:rust>=1.70")
    assert not satisfies(have, "tool:rust>=1.90")
    assert satisfies(have, "tool:cmake<4") and not satisfies(have, "tool:cmake>=4")
    assert not satisfies(have, "tool:fortran") and not satisfies(have, "tool:ninja>=1")
    assert not satisfies(have, "tool:rust>=not-a-version")
    assert satisfies_all(have, ["tool:rust", "tool:cmake<4"]) and not satisfies_all(have, ["tool:rust", "lib:blas"])
    assert satisfies_all(have, [])


@pytest.mark.parametrize(
    ("needed", "expected"),
    [
        ("tool:fortran", True),
        ("tool:gfortran", True),
        ("tool:rust>=1.70", True),
        ("tool:swig", True),
        ("tool:pg_config", True),
        ("lib:portaudio", True),
        ("lib:blas", True),
        # Not what another worker has: memory, another Python, a build requirement, a platform's compiler.
        ("mem:more", False),
        ("python:<3.13", False),
        ("tool:setuptools<58", False),
        ("pydep:numpy", False),
        ("crates:vendored", False),
        ("header:foo.h", False),
        ("", False),
        ("tool:", False),
    ],
)
def test_only_tools_workers_look_for_and_libraries_route(needed: str, expected: bool) -> None:
    assert routable(needed, TOOLS) is expected


def test_library_names_drop_versions_and_the_lib_prefix() -> None:
    assert _library_names("portaudio-2.0") == {"portaudio-2.0", "portaudio"}
    assert {"libxml-2.0", "libxml", "xml", "xml-2.0"} <= _library_names("libxml-2.0")
    assert _library_names("z") == {"z"}


def test_this_host_advertises_the_libraries_and_tools_it_has() -> None:
    """Real probes of this machine: zlib's development link and pkg-config's modules are there."""
    libraries = probe_libraries()
    if Path("/usr/lib/x86_64-linux-gnu/libz.so").exists():
        assert "z" in libraries
    assert "portaudio" not in libraries  # no libportaudio-dev here
    capabilities = probe()
    assert "tool:cc" in capabilities.advertised() and capabilities.libraries == libraries


def test_tools_are_looked_for_on_the_builds_path(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    assert gcc is not None
    (tmp_path / "gcc").symlink_to(gcc)
    assert set(probe_tools(str(tmp_path), ("gcc", "gfortran"))) == {"gcc"}
    capabilities = probe(tools_path=str(tmp_path))
    assert "tool:cc" in capabilities.advertised() and "tool:fortran" not in capabilities.advertised()
