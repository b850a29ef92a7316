"""Media byte budgets: an archive that asks each client to take at most so many bytes of media an
hour and a day (`Archive.media_budget`; iNaturalist: 5 GB and 24 GB) gets no more from a fetch.

What was taken is read from downloads.json (the size and time of every file fetched), so the budget
holds across runs: an hourly cron job does not get a fresh 5 GB each time. Once a window is full,
no new download from that archive starts; the recordings left wait for a later run (they are not
failures). A download already under way finishes, so a window can end up over by the files in
flight (at most `--jobs` of them).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from birdgrab.models import DownloadEntry
from birdgrab.settings import MediaBudget, Settings
from birdgrab.sources.registry import registry

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
GB = 1e9


@dataclass
class _Window:
    """Bytes taken in the last `span`, from (time, bytes) events in time order."""

    span: timedelta
    limit_bytes: float
    events: deque[tuple[datetime, int]] = field(default_factory=deque)
    total: int = 0

    def add(self, at: datetime, size: int) -> None:
        self.events.append((at, size))
        self.total += size

    def used(self, now: datetime) -> int:
        while self.events and self.events[0][0] <= now - self.span:
            self.total -= self.events.popleft()[1]
        return self.total

    def free_from(self, now: datetime) -> datetime:
        """When enough bytes will have left the window for it to be under its limit again."""
        over = self.used(now) - self.limit_bytes
        for at, size in self.events:
            over -= size
            if over < 0:
                return at + self.span
        return now

    def describe(self, now: datetime) -> str:
        label = "hour" if self.span == HOUR else "day"
        return f"{self.used(now) / GB:.2f} of {self.limit_bytes / GB:g} GB in the last {label}"


@dataclass
class ArchiveBudget:
    """One archive's windows (an hour, a day) and what this run left for later because of them."""

    title: str
    windows: list[_Window]
    deferred: int = 0

    def refusal(self, now: datetime) -> str | None:
        """None while every window has room; else why no new download starts."""
        for window in self.windows:
            if window.used(now) >= window.limit_bytes:
                free = window.free_from(now)
                return (
                    f"{self.title} media budget reached ({window.describe(now)}); "
                    f"left for a run after {free:%Y-%m-%d %H:%M} UTC"
                )
        return None

    def describe(self, now: datetime) -> str:
        return f"{self.title} media budget: " + ", ".join(w.describe(now) for w in self.windows)


class MediaBudgets:
    """The budgets of every archive that has one, filled from the download ledger's entries."""

    def __init__(self, settings: Settings, entries: Iterable[DownloadEntry], now: datetime):
        self._by_archive: dict[str, ArchiveBudget] = {}
        for archive in registry:
            budget: MediaBudget = archive.access(settings).media_budget
            windows = [
                _Window(span, limit * GB)
                for span, limit in ((HOUR, budget.gb_per_hour), (DAY, budget.gb_per_day))
                if limit is not None
            ]
            if windows:
                self._by_archive[archive.name] = ArchiveBudget(archive.title, windows)
        if not self._by_archive:
            return
        taken = sorted(
            (e.updated_at, e.bytes, budget)
            for e in entries
            if e.status != "failed"
            and e.bytes
            and now - e.updated_at < DAY
            and (budget := self.of(e.key)) is not None
        )
        for at, size, budget in taken:
            for window in budget.windows:
                window.add(at, size)

    def of(self, key: str) -> ArchiveBudget | None:
        """The budget the download of recording `key` draws on, if its archive has one."""
        if not self._by_archive:
            return None
        return self._by_archive.get(registry.of_key(key).name)

    def admit(self, key: str, now: datetime) -> str | None:
        """None when the download of `key` may start; else the reason it waits for a later run."""
        budget = self.of(key)
        if budget is None:
            return None
        reason = budget.refusal(now)
        if reason is not None:
            if budget.deferred == 0:
                log.warning("%s", reason, extra={"event": "fetch.budget.reached", "archive": budget.title})
            budget.deferred += 1
        return reason

    def spend(self, key: str, size: int, now: datetime) -> None:
        if (budget := self.of(key)) is not None:
            for window in budget.windows:
                window.add(now, size)

    def announce(self, keys: Iterable[str], now: datetime) -> None:
        """Log each budget that the downloads to come draw on, with what is used of it already."""
        for budget in {id(b): b for key in keys if (b := self.of(key)) is not None}.values():
            log.info("%s", budget.describe(now), extra={"event": "fetch.budget"})

    def deferred(self) -> dict[str, int]:
        """Archive title -> recordings left for a later run by its budget."""
        return {b.title: b.deferred for b in self._by_archive.values() if b.deferred}
