"""Media budgets count what was taken over the last hour and day, across runs (from the ledger)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from birdgrab.budget import MediaBudgets
from birdgrab.environment import load_settings
from birdgrab.models import DownloadEntry

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MB = 10**6


def entry(key: str, megabytes: int, minutes_ago: int, status: str = "ok") -> DownloadEntry:
    return DownloadEntry(
        key=key, status=status, bytes=megabytes * MB, updated_at=NOW - timedelta(minutes=minutes_ago)
    )


def budgets(entries: list[DownloadEntry]) -> MediaBudgets:
    settings = load_settings(
        {"BIRDGRAB_INATURALIST_MEDIA_GB_PER_HOUR": "0.1", "BIRDGRAB_INATURALIST_MEDIA_GB_PER_DAY": "0.25"}
    )
    return MediaBudgets(settings, entries, NOW)


def test_an_hour_full_of_earlier_downloads_defers_until_the_oldest_leaves_the_window():
    full_hour = budgets([entry("inaturalist:1", 60, 50), entry("inaturalist:2", 40, 10)])
    reason = full_hour.admit("inaturalist:3", NOW)
    assert reason is not None and "0.10 of 0.1 GB in the last hour" in reason
    assert "after 2026-05-01 12:10 UTC" in reason  # when the 60 MB from 11:10 leave the hour
    assert full_hour.admit("inaturalist:3", NOW + timedelta(minutes=11)) is None
    assert full_hour.deferred() == {"iNaturalist": 1}


def test_older_downloads_count_for_the_day_failures_and_other_archives_not_at_all():
    day = budgets(
        [
            entry("inaturalist:1", 150, 300),
            entry("inaturalist:2", 90, 120),
            entry("inaturalist:3", 500, 5, "failed"),
        ]
    )
    assert day.admit("inaturalist:4", NOW) is None  # 240 MB in the day, nothing in the hour
    day.spend("inaturalist:4", 20 * MB, NOW)
    assert "in the last day" in (day.admit("inaturalist:5", NOW) or "")
    assert day.admit("xc:1", NOW) is None  # xeno-canto has no media budget
