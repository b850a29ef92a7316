"""One module per archive, each turning its API into the shared models (the way yt-dlp's
extractors do), and the registry of archives (`registry`), which everything downstream asks
instead of branching on an archive's name. See `birdgrab.sources.archive` for what an archive says.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from birdgrab.models import IncompleteListing, Recording, SkippedItem
from birdgrab.sources.registry import registry

log = logging.getLogger(__name__)


@dataclass
class CatalogBatch:
    """What one archive query produced: recordings (deduplicated by key), the items it skipped,
    and the listings that came up short of what the archive said it holds."""

    recordings: dict[str, Recording] = field(default_factory=dict)
    skipped: list[SkippedItem] = field(default_factory=list)
    incomplete: list[IncompleteListing] = field(default_factory=list)
    # Unique records that arrived, recordings and skipped items alike: compared with the archive's count.
    arrived: int = 0
    # Names read from free-text titles: a species only if its genus is a real taxon (birdgrab.taxonomy).
    free_text_names: bool = False
    # Names of recordists an archive gave only by reference (agent URI -> name), known from earlier
    # runs and filled as they are resolved: each is asked about once.
    agent_names: dict[str, str] = field(default_factory=dict)

    def add(self, recording: Recording) -> None:
        # Results can shift between pages: the same record may come twice; the first one wins.
        if recording.key not in self.recordings:
            self.recordings[recording.key] = recording
            self.arrived += 1

    _skipped_seen: set[tuple[str, str, str]] = field(default_factory=set, repr=False)

    def skip(self, item: SkippedItem) -> None:
        # A repeated page repeats its skipped items too; different items may share the key "xc:?"
        # (items without an id: each one counts as arrived, they cannot be told apart).
        identity = (item.key, item.name, item.reason)
        if identity not in self._skipped_seen:
            self._skipped_seen.add(identity)
            self.skipped.append(item)
            self.arrived += 1
        elif item.key.endswith(":?"):
            self.arrived += 1

    def check_complete(self, source: str, query: str, expected: int | None, arrived: int) -> None:
        """Record the listing as incomplete (with a warning) when fewer unique records arrived than
        the archive counted; `expected` None means the archive gave no count to compare with."""
        if expected is None or arrived >= expected:
            return
        listing = IncompleteListing(source=source, query=query, expected=expected, arrived=arrived)
        self.incomplete.append(listing)
        log.warning(
            "%s listed %d of the %d records it counts for %r: the listing is incomplete "
            "(nothing is marked vanished from it; it is asked again next run)",
            source,
            arrived,
            expected,
            query,
            extra={"event": "catalog.listing.incomplete", **listing.model_dump()},
        )


def count_field(value: object) -> int | None:
    """A record count as archives send it (a string on xeno-canto, a number elsewhere); None if absent or bad."""
    if isinstance(value, bool):
        return None
    try:
        count = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return count if count >= 0 else None


def recording_key(source: str, source_id: str) -> str:
    """The key of a recording of archive `source`: `xc:254462`."""
    return registry.get(source).key(source_id)


def clean_text(value: object) -> str | None:
    """A trimmed string, or None for empty values, '?' placeholders, null and non-strings."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = re.sub(r"[\x00-\x1f\x7f]", " ", str(value)).strip()
    return None if text in ("", "?") else text


def to_float(value: object) -> float | None:
    text = clean_text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def absolute_url(value: object, scheme: str) -> str | None:
    """Normalise protocol-relative URLs ('//host/path') and reject anything that is not http(s)."""
    text = clean_text(value)
    if text is None:
        return None
    if text.startswith("//"):
        text = f"{scheme}:{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return text
