"""Options given for one run over the options a command saved last time (what refresh reuses)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Overrides(Generic[T]):
    """Options given for this run over a command's saved ones: only the fields named in `given`
    replace saved values (a dict field is merged key by key: one archive's query leaves the others')."""

    options: T
    given: frozenset[str] = frozenset()

    def over(self, saved: T) -> T:
        changes = {}
        for name in self.given:
            value, before = getattr(self.options, name), getattr(saved, name)
            changes[name] = (
                {**before, **value} if isinstance(value, dict) and isinstance(before, dict) else value
            )
        return replace(saved, **changes)  # type: ignore[type-var]
