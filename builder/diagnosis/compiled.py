"""What a scan needs from a rule set besides its rules, built once per rule set and kept."""

from __future__ import annotations

import re

from .keywords import required_factors
from .rules import RuleSet

MIN_FACTOR = 8  # characters of the shortest factor of a rule for its factors to be searched for


class Compiled:
    """What a scan needs from a rule set besides its rules, built once per rule set: which rules
    each keyword leads to, what else a line must hold for each rule's patterns to match, the
    noise regex, and the words to look for while only the rules above a priority can add a cause."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        words = {k for r in rules.rules for k in r.keywords}
        # keyword -> indexes of the rules a line holding it must be tried against
        self.kw_rules = {kw: frozenset(i for i, r in enumerate(rules.rules) if kw in r.keywords) for kw in words}
        # per rule, strings one of which a line must hold for any of its patterns to match
        # (keywords.required_factors), searched for with the keywords; None when a pattern has
        # none known or one too short to be rare (each occurrence costs a little): its keywords decide
        self.factors: list[frozenset[str] | None] = []
        for r in rules.rules:
            found = frozenset[str]().union(*(required_factors(p) or {""} for p in r.patterns))
            self.factors.append(found if min(map(len, found)) >= MIN_FACTOR else None)
        self.priorities = [r.priority for r in rules.rules]
        self.noise = re.compile("|".join(f"(?:{p.pattern})" for p in rules.noise) or "(?!)")
        self._above: dict[int, frozenset[str]] = {}
        self._kw_above: dict[int, frozenset[str]] = {}

    def keywords_above(self, floor: int) -> frozenset[str]:
        """The keywords of the rules whose priority is above ``floor``."""
        kws = self._kw_above.get(floor)
        if kws is None:
            kws = frozenset(k for r in self.rules.rules if r.priority > floor for k in r.keywords)
            self._kw_above[floor] = kws
        return kws

    def words_above(self, floor: int) -> frozenset[str]:
        """The keywords and factors of the rules whose priority is above ``floor``."""
        kws = self._above.get(floor)
        if kws is None:
            above = [(r, f) for r, f in zip(self.rules.rules, self.factors, strict=True) if r.priority > floor]
            kws = frozenset(k for r, _ in above for k in r.keywords).union(*(f for _, f in above if f))
            self._above[floor] = kws
        return kws


_COMPILED: dict[str, Compiled] = {}


def compiled(rules: RuleSet) -> Compiled:
    c = _COMPILED.get(rules.version)
    if c is None or c.rules is not rules:
        if len(_COMPILED) >= 16:  # rule sets made by tests: keep a few
            _COMPILED.clear()
        c = _COMPILED[rules.version] = Compiled(rules)
    return c
