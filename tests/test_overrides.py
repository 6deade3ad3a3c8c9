"""Per-package overrides: validated at load (unknown keys refused with the closest name), matched
per package, version and target selector; their patches are checked against the sdist's tree as
a malicious package author would plant it, and applied by the real GNU patch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder.applying import adjust_plan, apply_patches
from builder.overrides import OverridesInvalid, load_overrides, overrides_for
from builder.patches import PatchRefused, check_patch, patched_files
from builder.proof import ImportPlan

PATCH = """\
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,2 +1,2 @@
 A = 1
-B = 2
+B = 3
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> Path:
    load_overrides.cache_clear()
    return write(tmp_path / "overrides" / "main.toml", text)


def test_a_directory_of_overrides_is_loaded_and_matched_by_package_version_and_target(tmp_path: Path) -> None:
    write(tmp_path / "overrides" / "fix.patch", PATCH)
    write(
        tmp_path / "overrides" / "a.toml",
        '[[override]]\npackage = "PyYAML"\nversions = "<6.0.2"\ntargets = "cp313-*"\n'
        'environment = { CFLAGS = "-O1" }\nconstraints = ["cython<3"]\nrequirements = ["cffi>=1.15"]\n'
        'patches = ["fix.patch"]\nproof_skip = ["yaml.cyaml"]\nproof_import = ["yaml._yaml"]\n',
    )
    write(tmp_path / "overrides" / "b.toml", '[[override]]\npackage = "pyyaml"\nenvironment = { A = "1" }\n')
    load_overrides.cache_clear()
    where = tmp_path / "overrides"
    changes = overrides_for(where, "pyyaml", "6.0", "cp313-manylinux_x86_64")
    assert changes.environment == {"CFLAGS": "-O1", "A": "1"}
    assert changes.constraints == ("cython<3",) and changes.requirements == ("cffi>=1.15",)
    assert [p.name for p in changes.patches] == ["fix.patch"]
    assert changes.notes[0].startswith("wheelyard: override a.toml#1 applies: environment CFLAGS; constraints cython<3")
    assert changes.notes[1] == "wheelyard: override b.toml#1 applies: environment A"
    # Another target, version or package: only what applies to all targets and versions.
    assert overrides_for(where, "pyyaml", "6.0", "cp312-manylinux_x86_64").environment == {"A": "1"}
    assert overrides_for(where, "pyyaml", "6.0.2", "cp313-manylinux_x86_64").environment == {"A": "1"}
    assert overrides_for(where, "ujson", "5.0", "cp313-manylinux_x86_64").empty


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            '[[override]]\npackage = "x"\nenviroment = { A = "1" }\n',
            "unknown key 'enviroment'; did you mean 'environment'?",
        ),
        ('[[override]]\npackage = "x"\nproof-skip = ["a"]\n', "did you mean 'proof_skip'"),
        ('[[overide]]\npackage = "x"\n', "did you mean 'override'"),
        ('[[override]]\nenvironment = { A = "1" }\n', "'package'"),
        ('[[override]]\npackage = "x"\nversions = "~=bad"\n', "PEP 440"),
        ('[[override]]\npackage = "x"\nconstraints = ["cython <<< 3"]\n', "PEP 508"),
        ('[[override]]\npackage = "x"\nrequirements = ["evil @ https://example.invalid/x.whl"]\n', "URL"),
        ('[[override]]\npackage = "x"\nenvironment = { AWS_SECRET_ACCESS_KEY = "k" }\n', "secret"),
        ('[[override]]\npackage = "x"\npatches = ["missing.patch"]\n', "not a file"),
        ('[[override]]\npackage = "x"\nproof_import = ["not a module"]\n', "dotted module name"),
        ("[[override]\n", "not a readable TOML file"),
    ],
)
def test_invalid_overrides_are_refused_at_load_with_what_to_fix(tmp_path: Path, text: str, says: str) -> None:
    path = load(tmp_path, text)
    with pytest.raises(OverridesInvalid) as caught:
        load_overrides(path)
    shown = f"{caught.value.message} {caught.value.hint}"
    assert says in shown, shown
    assert caught.value.reference == "invalid-overrides"


def test_a_patch_that_escapes_or_is_no_source_fix_is_refused_before_it_is_applied() -> None:
    for header, says in [
        ("--- a/../x\n+++ b/../x\n", "'..'"),
        ("--- /etc/passwd\n+++ /etc/passwd\n", "a/PATH"),
        ("--- a/x\n+++ /dev/null\n", "may not delete"),
        ("--- a/x\n+++ b/y\n", "moves"),
        ("diff --git a/x b/y\nrename from x\nrename to y\n", "refused"),
        ("diff --git a/x b/x\nnew file mode 120000\n--- /dev/null\n+++ b/x\n", "refused"),
        ("diff --git a/x b/x\nGIT binary patch\n", "refused"),
        ("nothing here\n", "not a unified diff"),
    ]:
        with pytest.raises(PatchRefused, match=says):
            patched_files(header + "@@ -1 +1 @@\n-a\n+b\n")


def test_a_patch_never_writes_through_a_symlink_the_sdist_planted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    target = write(tmp_path / "outside" / "mod.py", "A = 1\nB = 2\n")
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").symlink_to(target)
    with pytest.raises(PatchRefused, match="through the symlink 'pkg/mod.py'"):
        check_patch(PATCH, src)
    (src / "pkg" / "mod.py").unlink()
    (src / "pkg").rmdir()
    (src / "pkg").symlink_to(target.parent)
    with pytest.raises(PatchRefused, match="through the symlink 'pkg'"):
        check_patch(PATCH, src)
    assert target.read_text() == "A = 1\nB = 2\n"


def test_a_checked_patch_is_applied_by_gnu_patch_and_one_that_does_not_apply_fails(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "pkg" / "mod.py", "A = 1\nB = 2\n")
    patch = write(tmp_path / "fix.patch", PATCH)
    said: list[str] = []

    class Direct:  # the sandbox's interface; the pipeline runs GNU patch in bubblewrap
        def run(self, cmd: list[str], cwd: str | None = None) -> None:
            subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)

    apply_patches([patch], src, Direct(), said.append, tmp_path)
    assert (src / "pkg" / "mod.py").read_text() == "A = 1\nB = 3\n"
    assert said == ["wheelyard: override: patch fix.patch changes pkg/mod.py"]
    assert sorted(os.listdir(src / "pkg")) == ["mod.py"]  # no backup or reject files
    with pytest.raises(subprocess.CalledProcessError):  # applied already: the dry run refuses it
        apply_patches([patch], src, Direct(), said.append, tmp_path)
    assert (src / "pkg" / "mod.py").read_text() == "A = 1\nB = 3\n"


def test_the_proof_skips_and_imports_what_the_overrides_say(tmp_path: Path) -> None:
    path = load(tmp_path, '[[override]]\npackage = "demo"\nproof_skip = ["demo.tests"]\nproof_import = ["demo._c"]\n')
    changes = overrides_for(path, "demo", "1.0", "cp313-manylinux_x86_64")
    plan = ImportPlan(("demo", "demo.tests"), ("demo.tests._t", "demo._c"), (), ("demo/tests/_t.so", "demo/_c.so"))
    adjusted = adjust_plan(plan, changes)
    assert adjusted.modules == ("demo",)
    assert adjusted.extensions == ("demo._c",) and adjusted.extension_files == ("demo/_c.so",)
    assert "wheelyard: override: the proof skips demo.tests" in adjusted.notes
    plain = adjust_plan(ImportPlan(("demo",), (), ()), changes)
    assert plain.modules == ("demo", "demo._c")
