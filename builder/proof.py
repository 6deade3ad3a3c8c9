"""What the proof imports from a wheel, and whether a platform wheel holds any compiled code.

The proof installs a wheel into a fresh environment of the target interpreter and imports
its modules there (builder/pipeline.py). Which modules is decided here, from the wheel's
file layout alone: ``top_level.txt`` is a hint that setuptools gets wrong (it lists an
extension module by its bare name, ``_foo``, when the module is ``foo/_foo.*.so``), so a
name it lists that the wheel does not hold is skipped with a note, never imported.

Imported, in order:

* every top-level package (a directory with ``__init__.py``) and module (``.py``);
* below a namespace package (PEP 420: a directory without ``__init__.py``; or a
  pkg_resources/pkgutil-style ``__init__.py``, a ``*-nspkg.pth``, ``namespace_packages.txt``),
  each package and module it holds, recursively (``zope.interface``, ``google.cloud.storage``),
  never the namespace alone, which always imports;
* every compiled extension module by its dotted path (``foo._speedups``), so that an
  extension the package loads lazily is loaded too.

The functions over a file list are pure; :func:`read_layout` is the one that opens a wheel.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import parse_wheel_filename

# What marks an ``__init__.py`` as a pkg_resources- or pkgutil-style namespace package.
_NAMESPACE_INIT = re.compile(r"declare_namespace\s*\(|pkgutil\s*\.\s*extend_path\s*\(|extend_path\s*\(__path__")
# An extension module's file name: NAME, then an ABI tag or none, then its suffix.
_EXTENSION = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?P<tag>\.[\w.-]+)?\.(?:so|pyd)$")
# Magic numbers of native code: ELF, PE (MZ), Mach-O (both byte orders, 32/64) and fat Mach-O.
NATIVE_MAGIC = (b"\x7fELF", b"MZ", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")
_FAT_MACHO = b"\xca\xfe\xba\xbe"
# The .data directories whose contents install beside the top-level packages.
_LIB_SCHEMES = ("purelib", "platlib")


@dataclass(frozen=True)
class WheelLayout:
    """What the proof needs to know of a wheel: its installed paths and hints."""

    files: tuple[str, ...]  # paths as installed into site-packages, "/"-separated
    top_level: tuple[str, ...] = ()  # names listed in top_level.txt (a hint)
    namespaces: frozenset[str] = frozenset()  # dotted names declared as namespace packages
    native: frozenset[str] = frozenset()  # installed paths whose content is native code
    # Files named like an untagged extension (``foo/_bar.so``) that export no ``PyInit_``: libraries.
    libraries: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ImportPlan:
    modules: tuple[str, ...]  # dotted names of packages and modules to import, in order
    extensions: tuple[str, ...]  # dotted names of the compiled extension modules, loaded from their files
    notes: tuple[str, ...] = field(default=())  # lines for the build log
    extension_files: tuple[str, ...] = ()  # each extension's installed path, in the same order

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.modules, *self.extensions)

    @property
    def arguments(self) -> list[str]:
        """The proof script's arguments: a name to import, or NAME=PATH of an extension to load."""
        return [*self.modules, *(f"{n}={p}" for n, p in zip(self.extensions, self.extension_files, strict=True))]


def installed_path(member: str) -> str | None:
    """Where a wheel member lands relative to site-packages; None for metadata, scripts, headers, data."""
    first, _, rest = member.partition("/")
    if first.endswith(".dist-info"):
        return None
    if first.endswith(".data"):
        scheme, _, inner = rest.partition("/")
        return inner or None if scheme in _LIB_SCHEMES else None
    return member


def _identifier(name: str) -> bool:
    return name.isidentifier() and name != "__pycache__"


def extension_name(filename: str) -> str | None:
    """The module name of an extension file (``_speedups.cpython-312-x86_64-linux-gnu.so``: ``_speedups``);
    None for a shared library that is no module (``libfoo.so``, ``libfoo.so.1``)."""
    match = _EXTENSION.match(filename)
    if match is None:
        return None
    name = match.group("name")
    if match.group("tag") is None and name.startswith("lib"):
        return None  # a plain libNAME.so is a library loaded by ctypes or the linker, not a module
    return name


def _untagged_extension(filename: str) -> str | None:
    """The module name of a ``NAME.so`` without an ABI tag: it may be a module or a library."""
    match = _EXTENSION.match(filename)
    if match is None or match.group("tag") is not None:
        return None
    return extension_name(filename)


def namespace_declared(init_source: str) -> bool:
    """Whether an ``__init__.py`` declares a pkg_resources- or pkgutil-style namespace package."""
    return bool(_NAMESPACE_INIT.search(init_source))


class _Tree:
    """Directories of installed paths: children, modules and markers per package path."""

    def __init__(self, files: Iterable[str]) -> None:
        self.dirs: dict[tuple[str, ...], set[str]] = {(): set()}
        self.modules: dict[tuple[str, ...], set[str]] = {}
        self.extensions: dict[tuple[str, ...], set[str]] = {}
        self.extension_files: dict[str, str] = {}  # dotted name -> installed path
        self.inits: set[tuple[str, ...]] = set()
        for path in files:
            parts = tuple(path.split("/"))
            if not parts[-1]:
                continue
            parent, leaf = parts[:-1], parts[-1]
            if not all(_identifier(p) for p in parent):
                continue  # under a directory that is no package name (foo.libs/, data/ with a dash...)
            for i in range(len(parent)):
                self.dirs.setdefault(parent[:i], set()).add(parent[i])
                self.dirs.setdefault(parent[: i + 1], set())
            if leaf == "__init__.py":
                self.inits.add(parent)
            elif leaf.endswith(".py") and _identifier(leaf[:-3]):
                self.modules.setdefault(parent, set()).add(leaf[:-3])
            elif (ext := extension_name(leaf)) is not None:
                self.extensions.setdefault(parent, set()).add(ext)
                self.extension_files.setdefault(".".join((*parent, ext)), path)

    def holds_code(self, path: tuple[str, ...]) -> bool:
        """Whether a directory holds any Python module or extension, at any depth."""
        if path in self.inits or self.modules.get(path) or self.extensions.get(path):
            return True
        return any(self.holds_code((*path, child)) for child in self.dirs.get(path, ()))


def plan_imports(layout: WheelLayout) -> ImportPlan:
    """The modules the proof imports (see the module docstring), and notes for the build log."""
    tree = _Tree(f for f in layout.files if f not in layout.libraries)
    notes: list[str] = []
    modules: list[str] = []

    def is_namespace(path: tuple[str, ...]) -> bool:
        return path not in tree.inits or ".".join(path) in layout.namespaces

    def visit(path: tuple[str, ...]) -> None:
        # ``path`` is a namespace (or the root): import what it holds, and look below namespaces.
        for name in sorted(tree.modules.get(path, set())):
            modules.append(".".join((*path, name)))
        for child in sorted(tree.dirs.get(path, ())):
            sub = (*path, child)
            if not tree.holds_code(sub):
                continue
            if is_namespace(sub):
                visit(sub)
            else:
                modules.append(".".join(sub))

    visit(())
    # Extensions are loaded from their files, without importing the packages above them first:
    # a test package's __init__ may need test-only requirements (greenlet.tests imports psutil).
    extensions = sorted(tree.extension_files)
    modules = [m for m in modules if m not in tree.extension_files]
    held = {m.split(".", 1)[0] for m in (*modules, *extensions)}
    for hint in layout.top_level:
        top = hint.replace("/", ".").split(".", 1)[0]
        if top not in held:
            notes.append(
                f"wheelyard: proof: top_level.txt names {hint!r}, which the wheel does not hold "
                "as a top-level package or module; skipped"
            )
    files = tuple(tree.extension_files[e] for e in extensions)
    return ImportPlan(tuple(dict.fromkeys(modules)), tuple(extensions), tuple(notes), files)


def is_platform_wheel(filename: str) -> bool:
    return any(t.platform != "any" for t in parse_wheel_filename(filename)[3])


def is_hollow(filename: str, layout: WheelLayout) -> bool:
    """A platform-tagged wheel that holds no native code at all: its extension did not compile and
    the build fell back to pure Python (a wheel that ships only an executable is not hollow)."""
    return is_platform_wheel(filename) and not layout.native


def _is_native(head: bytes) -> bool:
    return head.startswith(NATIVE_MAGIC) or head.startswith(_FAT_MACHO)


def read_layout(wheel: Path) -> WheelLayout:
    """The layout of a wheel file: installed paths, the top_level.txt hint, declared namespaces,
    and which files are native code (by their first bytes)."""
    files: list[str] = []
    native: set[str] = set()
    top_level: list[str] = []
    namespaces: set[str] = set()
    libraries: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            member = info.filename
            if member.endswith(".dist-info/top_level.txt"):
                top_level += _lines(zf.read(info))
            elif member.endswith(".dist-info/namespace_packages.txt"):
                namespaces.update(_lines(zf.read(info)))
            path = installed_path(member)
            if path is None:
                continue
            files.append(path)
            if path.endswith("-nspkg.pth"):
                namespaces.update(_nspkg_names(zf.read(info).decode(errors="replace")))
            elif (
                path.endswith("/__init__.py")
                and info.file_size < 64 * 1024
                and namespace_declared(zf.read(info).decode(errors="replace"))
            ):
                namespaces.add(path[: -len("/__init__.py")].replace("/", "."))
            with zf.open(info) as fh:
                if _is_native(fh.read(4)):
                    native.add(path)
            untagged = _untagged_extension(path.rsplit("/", 1)[-1])
            if untagged is not None and f"PyInit_{untagged}".encode() not in zf.read(info):
                libraries.add(path)
    return WheelLayout(tuple(files), tuple(top_level), frozenset(namespaces), frozenset(native), frozenset(libraries))


def _lines(data: bytes) -> list[str]:
    return [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]


def _nspkg_names(text: str) -> set[str]:
    # setuptools writes one line per namespace: ...('zope',)... or ('google', 'cloud')
    names: set[str] = set()
    for match in re.finditer(r"types\.ModuleType\('([\w.]+)'\)|new_module\('([\w.]+)'\)", text):
        names.add(match.group(1) or match.group(2))
    return names


# -- publishing a hollow wheel as what it is ----------------------------------------------


def retag_pure(wheel: Path, dest: Path) -> Path:
    """A copy of ``wheel`` tagged ``py3-none-any`` (WHEEL's tags and Root-Is-Purelib, RECORD's hash
    of WHEEL): for a deployment that publishes a hollow wheel as the pure wheel it is."""
    name, version, build, _ = parse_wheel_filename(wheel.name)
    parts = wheel.name[: -len(".whl")].split("-")
    stem = "-".join(parts[: 3 if build else 2])
    target = dest / f"{stem}-py3-none-any.whl"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        members = src.infolist()
        wheel_meta = next(m.filename for m in members if m.filename.endswith(".dist-info/WHEEL"))
        record = next(m.filename for m in members if m.filename.endswith(".dist-info/RECORD"))
        new_meta = _pure_wheel_metadata(src.read(wheel_meta).decode())
        for info in members:
            if info.filename == record:
                continue
            data = new_meta if info.filename == wheel_meta else src.read(info)
            out.writestr(info, data)
        out.writestr(src.getinfo(record), _record_with(src.read(record).decode(), wheel_meta, new_meta))
    return target


def _pure_wheel_metadata(text: str) -> bytes:
    lines = [line for line in text.splitlines() if not line.startswith(("Tag:", "Root-Is-Purelib:"))]
    lines += ["Root-Is-Purelib: true", "Tag: py3-none-any"]
    return ("\n".join(lines).strip("\n") + "\n\n").encode()


def _record_with(record: str, path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    out: list[str] = []
    for line in record.splitlines():
        if line.split(",", 1)[0] == path:
            line = f"{path},sha256={digest},{len(data)}"
        out.append(line)
    return "\n".join(out) + "\n"


def failed_imports(log_lines: Sequence[str]) -> list[dict[str, str]]:
    """The failures the proof script reported (``PROOF_FAILED`` lines), as (module, error) records."""
    out: list[dict[str, str]] = []
    for line in log_lines:
        if line.startswith(PROOF_FAILED):
            module, _, error = line[len(PROOF_FAILED) :].partition(": ")
            out.append({"module": module.strip(), "error": error.strip()})
    return out


PROOF_FAILED = "wheelyard: proof: import failed: "

# Runs in the proof environment, in the sandbox: imports each module given, reports each failure
# with the module's name and the exception's whole message on one line, and exits 1 if any failed.
PROOF_SCRIPT = r"""
import importlib, importlib.util, os, sys, sysconfig, traceback
paths = sysconfig.get_paths()
failed = 0
for arg in sys.argv[1:]:
    name, _, rel = arg.partition("=")
    try:
        if rel and name in sys.modules:
            pass  # its package imported it already; a second load would initialise it twice (PyO3 refuses)
        elif rel:
            # An extension by its file: its packages' __init__ files are not run first. It is kept in
            # sys.modules, so that a later import of it by name does not initialise it a second time.
            where = [os.path.join(paths[k], rel) for k in ("platlib", "purelib")]
            spec = importlib.util.spec_from_file_location(name, next((w for w in where if os.path.exists(w)), where[0]))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(name)
    except BaseException as exc:
        failed += 1
        traceback.print_exc()
        message = " ".join(str(exc).split()) or "(no message)"
        print("%s%s: %s: %s" % (PREFIX, name, type(exc).__name__, message), flush=True)
    else:
        print("wheelyard: proof: imported", name, flush=True)
sys.exit(1 if failed else 0)
""".replace("PREFIX", repr(PROOF_FAILED))
