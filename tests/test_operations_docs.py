"""docs/operations.md and docs/grafana-dashboard.json name only metrics wheelyard exposes.

The names exposed are read from the metrics themselves: the counters and histograms of
builder/metrics.py, and the gauges ``StateCollector`` computes from a real Redis.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import redis

from builder.metrics import metrics
from builder.records import BuildStore
from server.metrics import StateCollector

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"\bwheelyard_[a-z_]+\b")


def exposed(redis_url: str) -> set[str]:
    names: set[str] = set()
    for metric in vars(metrics()).values():
        for family in metric.collect():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    store = BuildStore(redis.Redis.from_url(redis_url))
    names |= {family.name for family in StateCollector(store).collect()}
    return names


def test_the_dashboard_and_the_alerts_use_metrics_that_exist(redis_url: str) -> None:
    names = exposed(redis_url)
    assert {"wheelyard_builds_total", "wheelyard_queue_depth", "wheelyard_queue_wait_seconds_bucket"} <= names
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used = {n for e in exprs for n in NAME.findall(e)}
    assert used and used <= names, used - names
    documented = set(NAME.findall((ROOT / "docs" / "operations.md").read_text()))
    # The page names each metric by its family (wheelyard_queue_wait_seconds) or a sample of it.
    families = names | {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
    assert documented <= families, documented - families
    # Every metric exposed is on the page.
    assert {re.sub(r"_(bucket|sum|count)$", "", n) for n in names} <= documented
