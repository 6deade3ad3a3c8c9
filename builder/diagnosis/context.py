"""What a log says about itself besides its errors: the platform, the interpreter, the package
being built, the step of the build a line belongs to, and whether the log ends in success.

A :class:`Context` sees every line the keyword pass hands on that holds one of its
:meth:`Context.keywords` and votes; once a vote is settled its keywords are dropped.
"""

from __future__ import annotations

import re
from collections import Counter

from packaging.utils import canonicalize_name

# (keyword, regex, os, distro) — a line containing the keyword and matching the regex
# votes for that OS (and distro, on Linux).
_PLATFORM_SIGNALS: tuple[tuple[str, str, str, str | None], ...] = (
    (
        "linux-gnu",
        r"x86_64-linux-gnu|aarch64-linux-gnu|i686-linux-gnu|arm-linux-gnueabihf",
        "linux",
        "debian",
    ),
    ("dist-packages", r"/dist-packages/", "linux", "debian"),
    ("apt", r"\bapt(?:-get)? install\b|\bdpkg\b", "linux", "debian"),
    ("/usr/include", r"/usr/include", "linux", None),
    ("linux", r"\blinux[-_](?:x86_64|aarch64|i686|armv7l)|manylinux", "linux", None),
    ("redhat-linux", r"redhat-linux", "linux", "fedora"),
    ("dnf", r"\bdnf install\b|\byum install\b|\.fc\d\d\b|\.el[89]\b", "linux", "fedora"),
    ("musl", r"linux-musl|ld-musl|musl-gcc", "linux", "alpine"),
    ("apk", r"\bapk add\b|alpine", "linux", "alpine"),
    ("lpine", r"[Aa]lpine", "linux", "alpine"),
    (":\\", r"\b[A-Za-z]:\\", "windows", None),
    ("win32", r"\bwin32\b|win_amd64|win-amd64|win_arm64", "windows", None),
    ("MSVC", r"MSVC|cl\.exe|Visual Studio|\.vcxproj", "windows", None),
    ("macosx", r"macosx[-_]\d", "macos", None),
    (".dylib", r"\.dylib\b", "macos", None),
    ("xcrun", r"\bxcrun\b|Xcode|CommandLineTools", "macos", None),
    ("/Users/", r"^\s*/Users/|\s/Users/", "macos", None),
    ("/opt/homebrew", r"/opt/homebrew|/usr/local/Cellar", "macos", None),
    ("/private/var/folders", r"/private/var/folders", "macos", None),
    ("darwin", r"\bdarwin\b|apple-darwin", "macos", None),
    ("/home/", r"(?:^|\s)/home/", "linux", None),
)
_PLATFORM_KW = re.compile("|".join(re.escape(s[0]) for s in _PLATFORM_SIGNALS))
_PLATFORM_FREEZE = 40  # votes after which the platform guess is final

_PY_RE = re.compile(
    r"python(3\.\d{1,2})\b|cpython-3(\d{1,2})\b|\bcp3(\d{1,2})\b|Python:? v?(3\.\d{1,2})\.\d"
    r"|(?:lib|temp)\.[\w.-]+-(3\.\d{1,2})\b|\] v(3\.\d{1,2})\.\d"
)
_PY_KEYWORDS = ("python3.", "cpython-3", "cp3", "Python 3.", "Python: 3.", "] v3.", "-3.")
_PY_KW = re.compile("|".join(map(re.escape, _PY_KEYWORDS)))
_PY_FREEZE = 40

_PKG_RES: tuple[tuple[int, re.Pattern[str]], ...] = (
    (4, re.compile(r"Failed building wheel for (?P<name>[\w.-]+)")),
    # uv: "error: Failed to build `grpcio==1.43.0`" (a path or URL in the backticks is no name)
    (4, re.compile(r"Failed to build `(?P<name>[A-Za-z0-9][\w.-]*?)(?:\[[^\]]*\])?(?:==(?P<version>[\w.!+]+))?`")),
    (4, re.compile(r"Running setup\.py install for (?P<name>[\w.-]+)")),
    (3, re.compile(r"Building wheel for (?P<name>[\w.-]+) \(")),
    (3, re.compile(r"Running setup\.py bdist_wheel for (?P<name>[\w.-]+)")),
    (2, re.compile(r"Complete output from command python setup\.py egg_info")),
    (
        1,
        re.compile(
            r"(?:Downloading|Using cached|Processing|Downloading/unpacking)\s+(?:\S*/)?"
            r"(?P<file>(?P<name>[A-Za-z0-9][\w.]*?)-(?P<version>\d[\w.!+]*)\.(?:tar\.gz|zip|tar\.bz2))"
        ),
    ),
    (1, re.compile(r"^\s*Processing \.{0,2}/?(?:[^\s/]+/)*(?P<name>[A-Za-z0-9][\w.-]*?)/?\s*$")),
    (
        0,
        re.compile(r"Collecting (?P<name>[A-Za-z0-9][\w.-]*)(?:\[[^\]]*\])?(?:==(?P<version>[\w.!+]+))?"),
    ),
)
_BUILT_OK_RE = re.compile(
    r"Building wheel for (?P<name>[\w.-]+) \(.*finished with status 'done'"
    r"|Created wheel for (?P<name2>[\w.-]+):"
)
_PKG_KEYWORDS = (
    "Created wheel for",
    "Failed building wheel for",
    "Failed to build `",
    "Running setup.py",
    "Building wheel for",
    "Collecting ",
    "Downloading",
    "Using cached",
    "Processing ",
    "egg_info",
)
_PKG_KW = re.compile("|".join(map(re.escape, (*_PKG_KEYWORDS, "Preparing metadata"))))
_STEP_KW = re.compile(r"==> |nstall|etting|Preparing|Building")
_MAX_PACKAGES = 1000  # names remembered (a hostile log can name a million)
_SDIST_RE = re.compile(
    r"Building wheel for \S+ \((?:pyproject\.toml|setup\.py)\)"
    r"|Running setup\.py (?:install|bdist_wheel) for"
    r"|\.tar\.gz\b|\.zip\b|Preparing metadata \(pyproject\.toml\)"
    r"|Getting requirements to build wheel"
    r"|Installing build dependencies|setup\.py egg_info"
)
_ARCH_RE = re.compile(r"\b(x86_64|amd64|aarch64|arm64|i686|armv7l|ppc64le|s390x|win32|universal2)\b")

# wheelyard's own build log marks each step of builder/pipeline.py with "==> NAME"; pip marks
# the install of the build dependencies (a failure there is the index's, not the sdist's).
_STEP_RE = re.compile(r"^==> (?P<step>[\w-]+)\s*$")
_BUILD_DEPS_START = re.compile(
    r"^\s*(?:Installing build dependencies(?! ?[:.]+ ?(?:finished|done))|Installing backend dependencies"
    r"|\* Installing packages in isolated environment)"
)
_BUILD_DEPS_END = re.compile(
    r"Installing build dependencies ?[:.]+ ?(?:finished with status 'done'|done)"
    r"|Getting requirements to build|Preparing metadata|Building wheel for|Running setup\.py"
    r"|\* Getting build dependencies|Installing backend dependencies ?[:.]+ ?(?:finished|done)"
)
_STEP_KEYWORDS = (
    "==> ",
    "Installing build dependencies",
    "Installing backend dependencies",
    "Installing packages in isolated",
    "Getting requirements to build",
    "Getting build dependencies",
)

# The last words of a build or install that worked (top level, not a build environment's).
_SUCCESS_RE = re.compile(
    r"^(?:Successfully installed \S|Successfully built \S|Installed \d+ packages? in \S"
    r"|Successfully (?:created|built) wheel|Saved \S+\.whl\s*$)"
)
_SUCCESS_KEYWORDS = ("Successfully installed", "Successfully built", "Successfully created", "Installed ", "Saved ")


class Context:
    """Votes on platform, interpreter and package; the current step; success markers."""

    def __init__(self) -> None:
        self.platform_on = True
        self.py_on = True
        self.platform_res = tuple((kw, re.compile(rx), os_, d) for kw, rx, os_, d in _PLATFORM_SIGNALS)
        self.os_votes: Counter[str] = Counter()
        self.distro_votes: Counter[str] = Counter()
        self.py_votes: Counter[str] = Counter()
        self.arch_votes: Counter[str] = Counter()
        # package name -> (rank, name as written); names whose wheel was built fine
        self.packages: dict[str, tuple[tuple[int, int, int], str]] = {}
        self.built_ok: set[str] = set()
        self.versions: dict[str, str] = {}
        self.sdist = False
        self.step = ""  # "build-deps" while pip installs build dependencies; else wheelyard's step
        self.success_line = 0
        self.success_text = ""

    def keywords(self) -> set[str]:
        kws = set(_PKG_KEYWORDS) | set(_STEP_KEYWORDS) | set(_SUCCESS_KEYWORDS)
        kws.add("Preparing metadata")
        if self.platform_on:
            kws |= {s[0] for s in _PLATFORM_SIGNALS}
        if self.py_on:
            kws |= set(_PY_KEYWORDS)
        return kws

    def observe(self, line: str, lineno: int) -> bool:
        """Take ``line`` into account; True when :meth:`keywords` changed."""
        changed = self._platform(line) | self._python(line)
        if _STEP_KW.search(line):
            self._step(line)
        if line[:1] in "SI" and _SUCCESS_RE.match(line):
            self.success_line = lineno
            self.success_text = line
        if _PKG_KW.search(line):
            self._package(line, lineno)
        return changed

    def _step(self, line: str) -> None:
        m = _STEP_RE.match(line)
        if m:
            self.step = m.group("step")
        elif _BUILD_DEPS_START.search(line):
            self.step = "build-deps"
        elif self.step == "build-deps" and _BUILD_DEPS_END.search(line):
            self.step = ""

    def _platform(self, line: str) -> bool:
        if not self.platform_on or _PLATFORM_KW.search(line) is None:
            return False
        for kw, rx, os_, distro in self.platform_res:
            if kw in line and rx.search(line):
                self.os_votes[os_] += 1
                if distro:
                    self.distro_votes[distro] += 1
                m = _ARCH_RE.search(line)
                if m:
                    self.arch_votes[m.group(1)] += 1
        if sum(self.os_votes.values()) >= _PLATFORM_FREEZE:
            self.platform_on = False
            return True
        return False

    def _python(self, line: str) -> bool:
        if not self.py_on or _PY_KW.search(line) is None:
            return False
        for m in _PY_RE.finditer(line):
            v = next(g for g in m.groups() if g is not None)
            self.py_votes[v if "." in v else f"3.{v}"] += 1
        if sum(self.py_votes.values()) >= _PY_FREEZE:
            self.py_on = False
            return True
        return False

    def _package(self, line: str, lineno: int) -> None:
        if _SDIST_RE.search(line):
            self.sdist = True
        ok = _BUILT_OK_RE.search(line)
        if ok:
            if len(self.built_ok) < _MAX_PACKAGES:
                self.built_ok.add(canonicalize_name(ok.group("name") or ok.group("name2")))
            return
        for level, rx in _PKG_RES:
            m = rx.search(line)
            if m is None:
                continue
            gd = m.groupdict()
            name = gd.get("name")
            if not name:
                break
            key = canonicalize_name(name)
            if gd.get("version") and (key in self.versions or len(self.versions) < _MAX_PACKAGES):
                self.versions[key] = gd["version"].rstrip(".")
            indent = len(line) - len(line.lstrip())
            # higher level first, then less indented; among equals the latest "build"
            # event, but the first download/collect
            rank = (level, -indent, lineno if level >= 3 else -lineno)
            old = self.packages.get(key)
            if (old is None or rank > old[0]) and (old is not None or len(self.packages) < _MAX_PACKAGES):
                self.packages[key] = (rank, name)
            break

    # -- what was voted ----------------------------------------------------------------
    def os_name(self) -> str:
        return self.os_votes.most_common(1)[0][0] if self.os_votes else "unknown"

    def distro(self) -> str:
        return self.distro_votes.most_common(1)[0][0] if self.distro_votes else "debian"

    def python(self) -> str | None:
        return self.py_votes.most_common(1)[0][0] if self.py_votes else None

    def arch(self) -> str | None:
        return self.arch_votes.most_common(1)[0][0] if self.arch_votes else None

    def package(self) -> tuple[str | None, str | None]:
        cands = [v for k, v in self.packages.items() if k not in self.built_ok]
        package = max(cands)[1] if cands else None
        version = self.versions.get(canonicalize_name(package)) if package else None
        return package, version
