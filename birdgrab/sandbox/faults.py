"""Fault and latency injection: which answers go wrong, decided without clocks or randomness.

Transient kinds fail a request by its attempt number for that URL, so retries get through:
with `times=n` the first n attempts fail, with `rate=r` an attempt fails when a stable hash of
(seed, kind, URL, attempt) falls below r. Permanent kinds hash (seed, kind, URL) only: the same
URL stays bad while the rule is set. `first=n` fails the first n requests of each target the rule
covers as well, so a target asked only once still meets the fault (which URL comes first can
depend on the client's concurrency; a permanent kind keeps that URL bad). `repeat_page` and
`no_range` change how an answer is made rather than failing it, and combine with one failure.

So that a test can prove what happened rather than trust it, the sandbox counts each kind by
target where it really changed an answer (`Sandbox.fault_counts`), and `RetryWaits` pairs each
refusal that carried a Retry-After with the next request for the same URL, both timestamped on the
server. `Hold` keeps one request waiting until released, so a test can act (kill the client, say)
at a known moment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TRANSIENT = frozenset({"429", "500", "503", "reset", "timeout", "truncate", "bad_json", "maxlag"})
PERMANENT = frozenset({"html", "corrupt"})
MODES = frozenset({"repeat_page", "no_range"})
KINDS = TRANSIENT | PERMANENT | MODES
# "audio" covers every audio target, "*" every target.
TARGETS = frozenset(
    {
        "xc-api", "xc-audio", "europeana-api", "europeana-audio", "inat-api", "inat-audio",
        "wiki", "wikidata", "audio", "*",
    }
)  # fmt: skip
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
    match: str | None = None  # only requests whose URL (path?sorted query, keys left out) contains this
    first: int = 0  # fail the first `first` requests of each covered target too, whatever `rate` says
    retry_after: float = 1.0  # seconds, for 429, 503 and maxlag
    delay: float = 5.0  # seconds, for timeout

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(sorted(KINDS))}")
        if self.target not in TARGETS:
            raise ValueError(f"unknown fault target {self.target!r}; known: {', '.join(sorted(TARGETS))}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if self.first < 0:
            raise ValueError("first must not be negative")

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
        self._asked: Counter[tuple[int, str]] = Counter()  # (rule, target) -> requests, for `first`
        self._condemned: set[tuple[int, str]] = set()  # (rule, URL) a permanent `first` made bad
        self._latency: dict[str, float] = {}
        self._holds: list[Hold] = []
        self._lock = threading.Lock()

    def set_rules(self, rules: Iterable[FaultRule]) -> None:
        with self._lock:
            self._rules = tuple(rules)
            self._attempts.clear()
            self._asked.clear()
            self._condemned.clear()

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

    def decide(self, target: str, url: str, applicable: frozenset[str]) -> Decision:
        """Consult every rule for one request (`url` as `request_id` gives it); `applicable` are the
        kinds this kind of answer can suffer."""
        failure: FaultRule | None = None
        modes: set[str] = set()
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.kind not in applicable or not covers(rule.target, target):
                    continue
                if rule.match and rule.match not in url:
                    continue
                self._attempts[(index, url)] += 1
                self._asked[(index, target)] += 1
                attempt = self._attempts[(index, url)]
                if rule.times is not None and attempt > rule.times:
                    continue
                forced = self._asked[(index, target)] <= rule.first or (index, url) in self._condemned
                if forced and rule.kind in PERMANENT:
                    self._condemned.add((index, url))
                salt = (url,) if rule.kind in PERMANENT else (url, attempt)
                if not forced and not _below(rule.rate, self._seed, rule.kind, *salt):
                    continue
                if rule.kind in MODES:
                    modes.add(rule.kind)
                elif failure is None:
                    failure = rule
        return Decision(failure, frozenset(modes))

    def hold(self, target: str, *, match: str | None = None, ranged: bool = False) -> Hold:
        """Hold the next request of `target` (whose URL contains `match`; with a Range header if
        `ranged`) before it is answered, until `Hold.release()` or the sandbox stops."""
        if target not in TARGETS:
            raise ValueError(f"unknown hold target {target!r}; known: {', '.join(sorted(TARGETS))}")
        hold = Hold(target, match, ranged)
        with self._lock:
            self._holds.append(hold)
        return hold

    def take_hold(self, target: str, url: str, ranged: bool) -> Hold | None:
        """The hold this request falls under, if any (each hold takes one request)."""
        with self._lock:
            for hold in self._holds:
                if covers(hold.target, target) and (hold.match or "") in url and (ranged or not hold.ranged):
                    self._holds.remove(hold)
                    return hold
        return None

    def release_holds(self) -> None:
        with self._lock:
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.release()


@dataclass
class Hold:
    """One request kept waiting: `reached` is set when it arrives, `release()` lets it be answered."""

    target: str
    match: str | None
    ranged: bool
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass(frozen=True)
class RetryWait:
    """A refusal that said Retry-After, and how long the client waited before asking that URL again
    (both instants read on the server: the refusal before it was sent, the retry as it arrived)."""

    kind: str
    target: str
    url: str
    retry_after: float
    waited: float


class RetryWaits:
    """Pairs each Retry-After refusal with the next request for the same URL. Only refused URLs are
    remembered, so this costs nothing while no refusing fault is set."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[str, str, float, float]] = {}  # url -> (kind, target, retry_after, at)
        self._done: list[RetryWait] = []
        self._lock = threading.Lock()

    def refused(self, kind: str, target: str, url: str, retry_after: float) -> None:
        with self._lock:
            self._open[url] = (kind, target, retry_after, time.monotonic())

    def asked(self, url: str) -> None:
        """A request for `url` arrived: if it was refused before, that refusal's wait is over."""
        if not self._open:
            return
        arrived = time.monotonic()
        with self._lock:
            refusal = self._open.pop(url, None)
            if refusal is not None:
                kind, target, retry_after, at = refusal
                self._done.append(RetryWait(kind, target, url, retry_after, arrived - at))

    def waits(self) -> list[RetryWait]:
        with self._lock:
            return list(self._done)

    def reset(self) -> None:
        with self._lock:
            self._open.clear()
            self._done.clear()
