"""The error catalogue: one class per reference, checked when defined, listed in docs/errors.md;
errors keep their class from where they are raised to where a decision is made on them."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from builder.build_job import BuildOutcome
from builder.config import load_settings
from builder.errors import (
    REFERENCE_FORM,
    BuildNotFound,
    InternalError,
    NotOnIndex,
    ProofFailed,
    UpstreamUnavailable,
    WheelyardError,
    answered,
    catalogue,
)
from builder.errors.catalogue import AREAS, OUTSIDE, all_errors, defined_in, markdown
from builder.records import BuildStore
from tests.conftest import REDIS_SERVER, RedisDatabases

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for top in ("builder", "server") for p in (ROOT / top).rglob("*.py"))


def test_docs_list_every_error_as_the_classes_declare_it() -> None:
    docs = (ROOT / "docs" / "errors.md").read_text()
    assert docs == markdown(), "docs/errors.md is stale: python -m builder.errors > docs/errors.md"
    for cls in all_errors():
        assert f"| `{cls.reference}` |" in docs


def test_every_reference_is_kebab_case_and_its_classes_own() -> None:
    errors = all_errors()
    assert len(errors) >= 50
    for cls in errors:
        assert REFERENCE_FORM.fullmatch(cls.reference), cls
        assert "reference" in cls.__dict__ and cls.__dict__["form"], cls
        assert cls.__doc__, f"{cls.__qualname__} says in its docstring when it happens"
        assert any(defined_in(cls, m) for m in [*AREAS, *OUTSIDE]), f"{cls.__qualname__} belongs in builder/errors/"
    assert len({cls.reference for cls in errors}) == len(errors)


@pytest.mark.parametrize("reference", ["Not-Kebab", "two--hyphens", "trailing-", "under_score", "", "-lead"])
def test_a_reference_not_in_kebab_case_is_refused_when_its_class_is_defined(reference: str) -> None:
    with pytest.raises(TypeError, match="kebab-case"):
        type("Bad", (WheelyardError,), {"reference": reference, "form": "x", "__doc__": "x"})
    assert reference not in catalogue()


def test_a_reference_another_class_has_is_refused() -> None:
    with pytest.raises(TypeError, match="BuildNotFound's already"):
        type("Again", (WheelyardError,), {"reference": "build-not-found", "form": "x"})
    assert catalogue()["build-not-found"] is BuildNotFound


def test_a_class_without_a_reference_or_form_of_its_own_is_refused() -> None:
    with pytest.raises(TypeError, match="declares no reference"):
        type("Inherits", (BuildNotFound,), {"form": "x"})
    with pytest.raises(TypeError, match="declares no form"):
        type("Formless", (WheelyardError,), {"reference": "formless-error"})
    assert "formless-error" not in catalogue()


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def test_no_error_is_made_with_an_ad_hoc_reference_or_as_the_bare_base_class() -> None:
    found = []
    for path in SOURCES:
        for call in _calls(ast.parse(path.read_text())):
            name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
            if any(k.arg == "reference" for k in call.keywords) or name == "WheelyardError":
                found.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert found == []


def test_error_classes_are_defined_in_the_catalogue() -> None:
    names = {cls.__name__ for cls in all_errors()} | {"WheelyardError"}
    outside = tuple(module.replace(".", "/") for module in OUTSIDE)
    found = []
    for path in SOURCES:
        relative = str(path.relative_to(ROOT))
        if relative.startswith(("builder/errors/", *outside)):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) in names for b in node.bases):
                found.append(f"{relative}:{node.lineno} {node.name}")
    assert found == [], "add error classes to builder/errors/ (one class per reference)"


def test_a_client_gets_the_apis_error_back_as_its_class() -> None:
    error = answered(404, BuildNotFound("abc").to_dict())
    assert type(error) is BuildNotFound
    assert (error.reference, error.message) == ("build-not-found", "there is no build 'abc'")
    assert error.hint == BuildNotFound.hint
    other = answered(404, NotOnIndex("no such project", None).to_dict())
    assert isinstance(other, NotOnIndex) and other.hint is None
    # An answer that is not the catalogue's keeps its reference, or says the status.
    assert answered(409, {"error": "from-a-newer-api", "message": "m", "hint": "h"}).to_dict() == {
        "error": "from-a-newer-api",
        "message": "m",
        "hint": "h",
    }
    assert answered(502, {}).to_dict() == {"error": "http-502", "message": "the API answered 502", "hint": None}


def test_a_failed_outcome_carries_its_exception_and_writes_it_redacted() -> None:
    error = ProofFailed([{"module": "pkg", "error": "ImportError: token s3cret"}])
    outcome = BuildOutcome("failed", error=error, redact=lambda text: text.replace("s3cret", "***"))
    assert outcome.error is error
    fields = outcome.error_fields()
    assert fields is not None
    assert fields["error"] == "proof-failed" and "***" in fields["message"] and "s3cret" not in fields["message"]
    assert fields["imports"] == error.failures
    assert BuildOutcome("published").error_fields() is None


# -- retries, decided on the class, by Celery's autoretry_for ------------------------------------


@pytest.fixture
def store() -> Iterator[BuildStore]:
    with RedisDatabases(REDIS_SERVER) as databases:
        yield BuildStore(redis.Redis.from_url(databases.take()))


def _record(store: BuildStore, name: str) -> Any:
    return store.create(
        name=name, version="1", target="py3-none-any", requirement=f"{name}==1", from_source=False, queue="q"
    )


def _build_task(store: BuildStore, tmp_path: Path, outcomes: list[BuildOutcome], calls: list[str]) -> Any:
    """The real build task, its director replaced by ``outcomes`` in turn (the task decides; the
    build itself is tested elsewhere). Run eagerly: Celery's retry runs the task again at once."""
    import builder.worker
    from builder.tasks import BUILD_TASK, create_celery_app, register_tasks

    settings = load_settings({"WHEELYARD_DATA_DIR": str(tmp_path)})
    url = store.redis.connection_pool.connection_kwargs
    redis_url = f"redis://{url['host']}:{url['port']}/{url['db']}"
    app = create_celery_app(settings, redis_url)

    def run_build(settings: Any, store: BuildStore, capabilities: Any, build_id: str, **kwargs: Any) -> BuildOutcome:
        calls.append(build_id)
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        store.update(build_id, status=outcome.status, error=outcome.error_fields())
        return outcome

    original = builder.worker.run_build
    builder.worker.run_build = run_build  # type: ignore[assignment]
    try:
        register_tasks(app, settings, redis_url, capabilities=None, worker_name="w", upload_password=None)  # type: ignore[arg-type]
    finally:
        builder.worker.run_build = original
    return app.tasks[BUILD_TASK]


def test_an_upstream_that_did_not_answer_is_retried_and_other_failures_are_not(
    store: BuildStore, tmp_path: Path
) -> None:
    unavailable = BuildOutcome("failed", error=UpstreamUnavailable("the upstream index did not answer: timeout"))
    calls: list[str] = []
    record = _record(store, "p")
    task = _build_task(store, tmp_path, [unavailable, unavailable, BuildOutcome("published")], calls)
    assert task.autoretry_for == (UpstreamUnavailable,) and task.retry_jitter and task.max_retries == 3
    assert task.apply(args=[record.id]).get() == "published"
    assert len(calls) == 3
    assert store.get(record.id).status == "published"  # type: ignore[union-attr]

    other = _record(store, "q")
    calls.clear()
    failing = BuildOutcome("failed", error=InternalError("boom"))
    task = _build_task(store, tmp_path, [failing], calls)
    assert task.apply(args=[other.id]).get() == "failed"
    assert calls == [other.id]


def test_an_upstream_that_never_answers_ends_failed_after_the_last_retry(store: BuildStore, tmp_path: Path) -> None:
    unavailable = BuildOutcome("failed", error=UpstreamUnavailable("the upstream index did not answer: timeout"))
    calls: list[str] = []
    record = _record(store, "p")
    task = _build_task(store, tmp_path, [unavailable], calls)
    assert task.apply(args=[record.id]).get() == "failed"
    assert len(calls) == 4  # the first run and max_retries retries
    stored = store.get(record.id)
    assert stored is not None and stored.status == "failed" and stored.error["error"] == "upstream-unavailable"  # type: ignore[index]
