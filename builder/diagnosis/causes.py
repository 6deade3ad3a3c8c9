"""Causes as reported: a matched line (a :class:`Hit`) made into a :class:`Cause` with its
detail, explanation and remedies per platform, and the advice that goes with the primary one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .context import Context
from .model import Cause, Remedy
from .rules import LOOKUP_GROUPS, PLATFORMS, Library, Rule, RuleSet
from .wheels import fitting_wheels

WheelLookup = Callable[[str, str], list[str]]


@dataclass
class Hit:
    rule: Rule | None
    line: int
    text: str
    groups: dict[str, str]
    before: list[tuple[int, str]]
    after: list[tuple[int, str]] = field(default_factory=list)
    orphan: bool = False  # a "refines" rule with no earlier error to refine

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Causes with the same rule and the same extracted values are kept once."""
        return (self.rule.id if self.rule else "", tuple(sorted(self.groups.items())))

    @property
    def priority(self) -> int:
        if self.rule is None:
            return -1
        return self.rule.priority - 1 if self.orphan else self.rule.priority


class CauseWriter:
    """Writes the causes of one log: its rule set and what the log said about itself."""

    def __init__(self, rs: RuleSet, ctx: Context) -> None:
        self.rs = rs
        self.ctx = ctx

    def succeeded(self) -> Cause:
        no = self.ctx.success_line
        return Cause(
            category="no-failure",
            rule="no-failure",
            line=no,
            text=self.ctx.success_text,
            detail="the log ends in a successful build or install",
            explanation="Nothing failed: the log ends in a successful build or install.",
            excerpt=self.ctx.success_text,
            excerpt_start=no,
            remedies=(),
            capability="",
            priority=0,
        )

    def _excerpt(self, h: Hit) -> tuple[str, int]:
        rows = [*h.before, (h.line, h.text), *h.after]
        return "\n".join(t for _, t in rows), rows[0][0]

    def unknown(self, h: Hit | None) -> Cause:
        if h is None:
            return Cause(
                "unknown",
                "unknown",
                0,
                "",
                "",
                "No known build failure was found in the log.",
                "",
                0,
                (),
                "",
                0,
            )
        excerpt, start = self._excerpt(h)
        return Cause(
            category="unknown",
            rule="unknown",
            line=h.line,
            text=h.text,
            detail="",
            explanation="No rule matched; this is the first line that looks like an error.",
            excerpt=excerpt,
            excerpt_start=start,
            remedies=(),
            capability="",
            priority=0,
        )

    def cause(self, h: Hit, plat: str, ctx: dict[str, str]) -> Cause:
        rule = h.rule
        assert rule is not None
        values: dict[str, str] = {**ctx, **rule.defaults, **h.groups}
        if "tool" in h.groups:  # a program by the name it is installed and advertised under (CMake's FindSWIG: swig)
            values["tool"] = values["tool"].lower()
        lib: Library | None = None
        if rule.lookup:
            for g in LOOKUP_GROUPS:
                if g in values:
                    lib = self.rs.find_library(g, values[g])
                    if lib is not None:
                        break
            lookup_value = next((values[g] for g in LOOKUP_GROUPS if g in values), "")
        remedies_src = rule.remedies
        capability_t = rule.capability
        if rule.lookup and lib is None:
            values["lib"] = lookup_value
            values["pkg"] = "package unknown"
            if rule.fallback_remedies:
                remedies_src = rule.fallback_remedies
            if rule.fallback_capability:
                capability_t = rule.fallback_capability
        elif lib is not None:
            values["lib"] = lib.name
            values["pkg"] = lib.packages.get(plat, lib.packages["debian"])

        def fill(t: str, extra: Mapping[str, str] | None = None) -> str:
            return t.format_map({**values, **(extra or {})})

        remedies: list[Remedy] = []
        order = [plat, *[p for p in PLATFORMS if p != plat], "rust", "any"]
        for p in order:
            if p in remedies_src:
                extra = {"pkg": lib.packages[p]} if lib is not None and p in PLATFORMS else None
                remedies.append(Remedy(p, fill(remedies_src[p], extra)))
        excerpt, start = self._excerpt(h)
        return Cause(
            category=rule.category,
            rule=rule.id,
            line=h.line,
            text=h.text,
            detail=fill(rule.detail),
            explanation=fill(rule.explanation),
            excerpt=excerpt,
            excerpt_start=start,
            remedies=tuple(remedies),
            capability=fill(capability_t),
            priority=h.priority,
            groups=dict(h.groups),
        )

    def advice(
        self,
        primary: Cause,
        package: str | None,
        version: str | None,
        python: str | None,
        plat: str,
        os_name: str,
        wheel_lookup: WheelLookup | None,
    ) -> list[str]:
        out: list[str] = []
        # pip could not get the package itself: no sdist was built, so no wheel advice (unless the
        # rule says the fetch that failed was the build's own, as cargo's crates are).
        fetch = primary.category in ("network-failure", "no-distribution") and not self.rs.rule(primary.rule).in_build
        if self.ctx.sdist and package and not fetch:
            out.append(
                f"pip built {package} from source (an sdist): no wheel it could use was "
                "found for this interpreter and platform."
            )
            if wheel_lookup is not None and version:
                try:
                    files = wheel_lookup(package, version)
                except Exception as exc:  # the lookup is the caller's; never fail on it
                    out.append(f"Could not ask upstream for wheels ({exc.__class__.__name__}).")
                    files = []
                fits = fitting_wheels(files, python, os_name, self.ctx.arch())
                if fits:
                    out.append(
                        f"Upstream has a wheel that fits: {fits[0]}. An older pip may not know "
                        "its platform tag: python -m pip install --upgrade pip, then retry."
                    )
                elif files:
                    out.append(
                        f"Upstream has {len(files)} wheel(s) for {package} {version}, "
                        "none for this interpreter/platform."
                    )
        target = package or "<package>"
        if package and version:
            target = f"{package}=={version}"
        out.append(f"Re-run to confirm: python -m pip install --no-cache-dir -v {target}")
        return out
