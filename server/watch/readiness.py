"""Readiness of the watch lists: per list and target, the share of its closure on the index.

Each run of a list (``server.watch.run``) keeps what its ensure found for each target: how
many wheels the closure needs, how many the index had, and every missing one with its build
(``wheelyard:watch:readiness``, a hash by list name). What the dashboard shows is that, made
current by reading the builds of the missing wheels (``current_readiness``): one HGETALL and
one MGET of those builds, so its cost is the number of missing wheels, never the number of
builds. A wheel on the index stays there (the index never removes a file), so a wheel once
present needs no second look.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from builder.records import PREFIX
from server.ensure.report import ON_INDEX

READINESS = f"{PREFIX}watch:readiness"


def readiness_of(name: str, report: Any) -> dict[str, Any]:
    """What one ensure ``report`` of list ``name`` says of each of its targets."""
    targets: dict[str, dict[str, Any]] = {}
    for target in report.targets:
        error = next((e for e in report.errors if e.get("target") == target), None)
        items = [i for i in report.items if target in i.serves]
        missing = [_missing(i) for i in items if i.outcome not in ON_INDEX]
        targets[target] = {
            "total": len(items),
            "on_index": len(items) - len(missing),
            "missing": missing,
            "error": None if error is None else {k: error.get(k) for k in ("error", "message", "hint")},
        }
    return {"name": name, "at": time.time(), "targets": targets}


def _missing(item: Any) -> dict[str, Any]:
    primary = (item.diagnosis or {}).get("primary") or {}
    return {
        "name": item.name,
        "version": item.version,
        "wheel_target": item.target,
        "outcome": item.outcome,
        "build_id": item.build_id,
        "category": primary.get("category"),
        "explanation": primary.get("explanation") or (item.error or {}).get("message"),
        "capability": primary.get("capability") or None,
    }


def save_readiness(client: redis.Redis, readiness: dict[str, Any]) -> None:
    client.hset(READINESS, readiness["name"], json.dumps(readiness))


def current_readiness(client: redis.Redis, served: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every list's readiness, its missing wheels as their builds are now; by list name."""
    lists = sorted((json.loads(v) for v in client.hgetall(READINESS).values()), key=lambda r: str(r["name"]))
    ids = sorted({m["build_id"] for r in lists for t in r["targets"].values() for m in t["missing"] if m["build_id"]})
    builds = dict(zip(ids, client.mget([f"{PREFIX}build:{i}" for i in ids]), strict=True)) if ids else {}
    records = {i: json.loads(raw) for i, raw in builds.items() if raw}
    for readiness in lists:
        for target, state in readiness["targets"].items():
            still = [_now(m, records.get(m["build_id"] or ""), served) for m in state["missing"]]
            missing = [m for m in still if m["outcome"] not in ON_INDEX]
            state["on_index"] += len(still) - len(missing)
            state["missing"] = missing
            state["share"] = state["on_index"] / state["total"] if state["total"] else (0.0 if state["error"] else 1.0)
            state["target"] = target
    return lists


def _now(missing: dict[str, Any], record: dict[str, Any] | None, served: dict[str, list[str]]) -> dict[str, Any]:
    """A missing wheel as its build is now (the API's shown status; why it is not on the index)."""
    if record is None:
        return {**missing, "why": why(missing)}
    status = str(record.get("status"))
    if status == "queued" and record.get("queue") not in served:
        status = "waiting-for-worker"
    primary = (record.get("diagnosis") or {}).get("primary") or {}
    now = {
        **missing,
        "outcome": status,
        "category": primary.get("category") or missing["category"],
        "explanation": primary.get("explanation") or (record.get("error") or {}).get("message"),
        "capability": record.get("missing_capability") or primary.get("capability") or missing["capability"],
    }
    return {**now, "why": why(now)}


def why(missing: dict[str, Any]) -> str:
    """Why a wheel of a closure is not on the index, in a few words."""
    outcome = missing["outcome"]
    if outcome == "waiting-for-capability" or (outcome == "failed" and missing.get("capability")):
        return f"needs {missing['capability']}"
    if outcome == "failed":
        category = f"{missing['category']}: " if missing.get("category") else ""
        return f"failed: {category}{missing.get('explanation') or 'see its build log'}"
    if outcome == "waiting-for-worker":
        return f"no live worker builds {missing['wheel_target']}"
    return str(outcome)
