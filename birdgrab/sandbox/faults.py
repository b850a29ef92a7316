"""Fault and latency injection: which answers go wrong, decided without clocks or randomness.

Transient kinds fail a request by its attempt number for that URL, so retries get through:
with `times=n` the first n attempts fail, with `rate=r` an attempt fails when a stable hash of
(seed, kind, URL, attempt) falls below r. Permanent kinds hash (seed, kind, URL) only: the same
URL stays bad while the rule is set. `repeat_page` and `no_range` change how an answer is made
rather than failing it, and combine with one failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TRANSIENT = frozenset({"429", "500", "503", "reset", "timeout", "truncate", "bad_json", "maxlag"})
PERMANENT = frozenset({"html", "corrupt"})
MODES = frozenset({"repeat_page", "no_range"})
KINDS = TRANSIENT | PERMANENT | MODES
# "audio" covers both audio targets, "*" every target.
TARGETS = frozenset(
    {"xc-api", "xc-audio", "europeana-api", "europeana-audio", "wiki", "wikidata", "audio", "*"}
)
# Parameters that carry keys: a retry with another key is still the same request.
_KEY_PARAMS = frozenset({"key", "wskey"})


@dataclass(frozen=True)
class FaultRule:
    """One kind of failure for one target; see the module docstring for how requests are picked.

    >>> FaultRule("429", target="xc-api", times=1, retry_after=0.1)  # doctest: +ELLIPSIS
    FaultRule(kind='429', ...)
    """

    kind: str
    target: str = "*"
    rate: float = 1.0
    times: int | None = None  # fail only the first `times` attempts of each URL
    match: str | None = None  # only paths containing this
    retry_after: float = 1.0  # seconds, for 429, 503 and maxlag
    delay: float = 5.0  # seconds, for timeout

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(sorted(KINDS))}")
        if self.target not in TARGETS:
            raise ValueError(f"unknown fault target {self.target!r}; known: {', '.join(sorted(TARGETS))}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault rule fields: {', '.join(sorted(unknown))}")
        return cls(**data)


def covers(rule_target: str, target: str) -> bool:
    """Whether a rule (or latency) set for `rule_target` applies to a request of `target`."""
    return rule_target in ("*", target) or (rule_target == "audio" and target.endswith("-audio"))


@dataclass(frozen=True)
class Decision:
    """What to do to one answer: at most one failure, plus the modes that shape it."""

    failure: FaultRule | None = None
    modes: frozenset[str] = frozenset()


def _below(rate: float, *parts: object) -> bool:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def request_id(path: str, params: Iterable[tuple[str, str]]) -> str:
    """The URL a request is counted under: path plus sorted parameters, keys left out."""
    kept = sorted((name, value) for name, value in params if name not in _KEY_PARAMS)
    return path + ("?" + "&".join(f"{name}={value}" for name, value in kept) if kept else "")


class FaultPlan:
    """The faults and latencies in force. Thread-safe; setting rules restarts their attempt counts."""

    def __init__(self, seed: int):
        self._seed = seed
        self._rules: tuple[FaultRule, ...] = ()
        self._attempts: Counter[tuple[int, str]] = Counter()
        self._latency: dict[str, float] = {}
        self._lock = threading.Lock()

    def set_rules(self, rules: Iterable[FaultRule]) -> None:
        with self._lock:
            self._rules = tuple(rules)
            self._attempts.clear()

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def set_latency(self, target: str, seconds: float) -> None:
        if target not in TARGETS:
            raise ValueError(f"unknown latency target {target!r}; known: {', '.join(sorted(TARGETS))}")
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self._latency = {**self._latency, target: seconds}

    def latency(self, target: str) -> float:
        """Seconds to add to an answer: the sum of every latency that covers `target`."""
        return sum(seconds for rule_target, seconds in self._latency.items() if covers(rule_target, target))

    def decide(
        self, target: str, path: str, params: Iterable[tuple[str, str]], applicable: frozenset[str]
    ) -> Decision:
        """Consult every rule for one request; `applicable` are the kinds this kind of answer can suffer."""
        url = request_id(path, params)
        failure: FaultRule | None = None
        modes: set[str] = set()
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.kind not in applicable or not covers(rule.target, target):
                    continue
                if rule.match and rule.match not in path:
                    continue
                self._attempts[(index, url)] += 1
                attempt = self._attempts[(index, url)]
                if rule.times is not None and attempt > rule.times:
                    continue
                salt = (url,) if rule.kind in PERMANENT else (url, attempt)
                if not _below(rule.rate, self._seed, rule.kind, *salt):
                    continue
                if rule.kind in MODES:
                    modes.add(rule.kind)
                elif failure is None:
                    failure = rule
        return Decision(failure, frozenset(modes))
