"""Ensure: every wheel of every target's closure on the index, through the build service.

``Ensurer.ensure(sources, targets)`` resolves each target's closure, looks up what the index
holds, and asks the ``BuildService`` for each (name, version, target) it lacks: mirrored where
upstream has a wheel that fits, built where not, shared with any build of the same thing already
under way. A distribution whose fitting upstream wheel is pure Python is asked for once, as
``py3-none-any``, for every target. Private names are taken from the index, never from upstream.
With ``wait`` it follows the builds until they end (or ``timeout``), reporting progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from packaging.tags import Tag
from packaging.utils import parse_wheel_filename
from packaging.version import InvalidVersion, Version

from builder.errors import InvalidEnsureInput, PrivateProjectWithoutWheel, WheelyardError
from builder.records import BuildRecord
from builder.targets import PURE, BuildTarget
from builder.upstream import Release
from server.ensure.holdings import Holdings, IndexFile
from server.ensure.inputs import Pin, Sources
from server.ensure.report import PENDING, Item, Report
from server.ensure.resolve import Resolver
from server.ensure.targets import expand_targets
from server.private import private_projects
from server.service import BuildService, shown_status

Progress = Callable[[Report], None]
POLL_SECONDS = 1.0
_THREADS = 8
_PURE = BuildTarget.parse(PURE)


@dataclass
class Ensurer:
    service: BuildService
    resolver: Resolver
    holdings: Callable[[], Holdings]  # a fresh look at the index, per run

    def ensure(
        self,
        sources: Sources,
        selectors: Iterable[str],
        *,
        wait: bool = False,
        timeout: float = 3600.0,
        retry: bool = False,
        progress: Progress | None = None,
    ) -> Report:
        started = time.monotonic()
        if not sources:
            raise InvalidEnsureInput(
                "nothing to ensure: no requirement and no lock was given",
                "give -r requirements.txt, --lock pylock.toml or uv.lock, --project pyproject.toml or PKG==V",
            )
        targets = expand_targets(selectors)
        report = Report([t.identifier for t in targets])
        holdings = self.holdings()
        private = private_projects(
            self.service.store, holdings.projects, lambda name: [f.filename for f in holdings.files(name)]
        )
        closures = self._closures(sources, targets, holdings, private, report)
        named_private = sorted({p.name for pins in closures.values() for p in pins} & private)
        report.private = named_private
        self._plan(closures, holdings, private, report, retry)
        if progress is not None:
            progress(report)
        if wait:
            self._follow(report, started + timeout, progress, retry)
        report.elapsed = time.monotonic() - started
        return report

    # -- closures ------------------------------------------------------------------------------
    def _closures(
        self,
        sources: Sources,
        targets: list[BuildTarget],
        holdings: Holdings,
        private: set[str],
        report: Report,
    ) -> dict[BuildTarget, list[Pin]]:
        def one(target: BuildTarget) -> list[Pin] | WheelyardError:
            try:
                return self.resolver.closure(sources, target, self._overrides(holdings, private, target))
            except WheelyardError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=min(_THREADS, len(targets))) as pool:
            results = dict(zip(targets, pool.map(one, targets), strict=True))
        closures: dict[BuildTarget, list[Pin]] = {}
        for target, result in results.items():
            if isinstance(result, WheelyardError):
                report.errors.append({"target": target.identifier, **result.to_dict()})
            else:
                closures[target] = result
                report.closures[target.identifier] = [p.requirement for p in result]
        return closures

    def _overrides(self, holdings: Holdings, private: set[str], target: BuildTarget) -> dict[str, str]:
        """Private name -> the URL of its newest wheel on the index for ``target`` (else its newest wheel):
        the resolver takes the private project from there and never asks upstream for it."""
        glibc = self.service.glibc_max
        out = {}
        for name in sorted(private):
            wheels = [f for f in holdings.files(name) if f.filename.endswith(".whl")]
            if not wheels:
                continue
            fitting = [f for f in wheels if f.fits(target, glibc)] or wheels
            out[name] = holdings.file_url(max(fitting, key=_version_key).filename)
        return out

    # -- plan and submit -----------------------------------------------------------------------
    def _plan(
        self,
        closures: Mapping[BuildTarget, list[Pin]],
        holdings: Holdings,
        private: set[str],
        report: Report,
        retry: bool,
    ) -> None:
        glibc = self.service.glibc_max
        items: dict[tuple[str, str, str], Item] = {}
        missing: dict[Pin, list[BuildTarget]] = {}
        for target, pins in closures.items():
            for pin in pins:
                wheel = holdings.wheel_for(pin.name, pin.version, target, glibc)
                if wheel is not None:
                    wheel_target = PURE if _PURE.accepts(_tags(wheel)) else target.identifier
                    outcome = "private" if pin.name in private else "present"
                    _add(items, Item(pin.name, pin.version, wheel_target, [], outcome, wheel=wheel), target)
                elif pin.name in private:
                    _add(items, _private_without_wheel(pin, target), target)
                else:
                    missing.setdefault(pin, []).append(target)
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            planned = list(pool.map(lambda entry: self._requests(*entry), missing.items()))
        wanted: list[Item] = []
        for groups in planned:
            for item, serves in groups:
                for target in serves:
                    _add(items, item, target)
                if item.outcome == "queued" and item.after is None and item is items[item.key]:
                    wanted.append(item)
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            list(pool.map(lambda item: self._submit(item, retry), wanted))
        report.items = sorted(items.values(), key=lambda i: i.key)
        self._settle(report.items, retry)

    def _requests(self, pin: Pin, targets: list[BuildTarget]) -> list[tuple[Item, list[BuildTarget]]]:
        """What to ask the service for, for one missing release: one item per wheel target."""
        try:
            release = self.service.index.resolve(pin.requirement)
        except WheelyardError as exc:
            item = Item(pin.name, pin.version, targets[0].identifier, [], "failed", error=exc.to_dict())
            return [(item, targets)] + [(_copy(item, t), [t]) for t in targets[1:]]
        groups: dict[str, list[BuildTarget]] = {}
        for target in targets:
            groups.setdefault(self._wheel_target(release, target), []).append(target)
        out = [(Item(pin.name, pin.version, wheel, [], "queued"), serves) for wheel, serves in groups.items()]
        # Built from the sdist for several targets: the first build goes ahead, the others wait for
        # it (its wheel may be pure Python, and then serves them all).
        built = [item for item, serves in out if self._from_sdist(release, serves[0])]
        for item in built[1:]:
            item.after = built[0].target
        return out

    def _from_sdist(self, release: Release, target: BuildTarget) -> bool:
        if self.service.from_source_default:
            return release.sdist is not None
        return release.wheel_for(target, glibc_max=self.service.glibc_max) is None and release.sdist is not None

    def _wheel_target(self, release: Release, target: BuildTarget) -> str:
        """py3-none-any where the wheel upstream has for ``target`` is pure: one mirror serves all targets."""
        if self.service.from_source_default:
            return target.identifier
        upstream = release.wheel_for(target, glibc_max=self.service.glibc_max)
        if upstream is not None and _PURE.accepts(upstream.wheel_tags()):
            return PURE
        return target.identifier

    def _submit(self, item: Item, retry: bool) -> None:
        try:
            submission = self.service.submit(f"{item.name}=={item.version}", [item.target], retry=retry)[0]
        except WheelyardError as exc:
            item.outcome, item.error = "failed", exc.to_dict()
            return
        _update(item, submission.record, self.service.store.served_queues())

    def _settle(self, items: list[Item], retry: bool) -> None:
        """Each item waiting for another build of its release: served by that build's pure wheel,
        or asked for itself once that build ended otherwise."""
        by_key = {i.key: i for i in items}
        for item in items:
            if item.after is None or item.outcome != "queued":
                continue
            leader = by_key[(item.name, item.version, item.after)]
            # A build waiting for a capability failed to compile: its wheel will not be pure, so
            # the other targets need builds of their own, now.
            if leader.outcome in PENDING and leader.outcome != "waiting-for-capability":
                continue
            item.after = None
            if leader.outcome in ("mirrored", "published") and leader.wheel and _PURE.accepts(_tags(leader.wheel)):
                item.outcome, item.wheel, item.build_id = leader.outcome, leader.wheel, leader.build_id
            else:
                self._submit(item, retry)

    # -- follow ----------------------------------------------------------------------------------
    def _follow(self, report: Report, deadline: float, progress: Progress | None, retry: bool) -> None:
        """Poll the builds until none is pending or the deadline passes; progress on every change."""
        store = self.service.store
        last = report.counts()
        while not report.done and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            served = store.served_queues()
            for item in report.items:
                if item.outcome in PENDING and item.build_id is not None:
                    record = store.get(item.build_id)
                    if record is not None:
                        _update(item, record, served)
            self._settle(report.items, retry)
            counts = report.counts()
            if counts != last and progress is not None:
                progress(report)
            last = counts


def _add(items: dict[tuple[str, str, str], Item], item: Item, target: BuildTarget) -> None:
    kept = items.setdefault(item.key, item)
    if target.identifier not in kept.serves:
        kept.serves.append(target.identifier)


def _copy(item: Item, target: BuildTarget) -> Item:
    return Item(item.name, item.version, target.identifier, [], item.outcome, error=item.error)


def _update(item: Item, record: BuildRecord, served: dict[str, list[str]]) -> None:
    item.build_id = record.id
    item.outcome = shown_status(record, served)
    item.wheel = record.wheel
    if record.status in ("failed", "waiting-for-capability"):
        item.error = record.error
        item.diagnosis = record.diagnosis
        item.missing_capability = record.missing_capability


def _private_without_wheel(pin: Pin, target: BuildTarget) -> Item:
    return Item(
        pin.name,
        pin.version,
        target.identifier,
        [],
        "failed",
        error=PrivateProjectWithoutWheel(pin.name, pin.version, str(target)).to_dict(),
    )


def _tags(filename: str) -> frozenset[Tag]:
    return parse_wheel_filename(filename)[3]


def _version_key(f: IndexFile) -> tuple[int, Version | str]:
    try:
        return (1, Version(f.version))
    except InvalidVersion:
        return (0, f.version)
