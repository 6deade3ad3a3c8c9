"""Diagnose failed Python package builds: find the first real error, name its cause, fix it.

Public API::

    diagnose(lines, *, wheel_lookup=None, platform=None) -> Diagnosis
    diagnose_file(path, *, wheel_lookup=None, platform=None) -> Diagnosis
    load_rules() -> RuleSet
    RULESET_VERSION   # short sha256 of rules.toml; changes whenever the rule set does

The rule set is data (``rules.toml``); see docs/diagnosis.md.
"""

from __future__ import annotations

from .engine import (
    WheelLookup,
    diagnose,
    diagnose_file,
    diagnose_stream,
    fitting_wheels,
)
from .model import SCHEMA_VERSION, Cause, Diagnosis, Remedy
from .rules import CATEGORIES, PLATFORMS, Library, Rule, RuleSet, RuleSetError, load_rules

RULESET_VERSION: str = load_rules().version

__all__ = [
    "CATEGORIES",
    "PLATFORMS",
    "RULESET_VERSION",
    "SCHEMA_VERSION",
    "Cause",
    "Diagnosis",
    "Library",
    "Remedy",
    "Rule",
    "RuleSet",
    "RuleSetError",
    "WheelLookup",
    "diagnose",
    "diagnose_file",
    "diagnose_stream",
    "fitting_wheels",
    "load_rules",
]
