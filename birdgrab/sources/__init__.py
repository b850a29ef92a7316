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
    """What archive queries list, as they list it: recordings (the first copy of a key wins), the
    items they skipped, and the listings that came up short of what the archive said it holds.
    This one keeps the recordings in memory; the catalog's (`store.StagedBatch`) writes them to
    disk page by page."""

    recordings: dict[str, Recording] = field(default_factory=dict)
    skipped: list[SkippedItem] = field(default_factory=list)
    incomplete: list[IncompleteListing] = field(default_factory=list)
    # Names read from free-text titles: a species only if its genus is a real taxon (birdgrab.taxonomy).
    free_text_names: bool = False
    # Names of recordists an archive gave only by reference (agent URI -> name), known from earlier
    # runs and filled as they are resolved: each is asked about once.
    agent_names: dict[str, str] = field(default_factory=dict)
    _skipped_seen: set[tuple[str, str, str]] = field(default_factory=set, repr=False)
    _skipped_arrived: int = field(default=0, repr=False)

    def add(self, recording: Recording) -> None:
        # Results can shift between pages: the same record may come twice; the first one wins.
        self.recordings.setdefault(recording.key, recording)

    def __contains__(self, key: object) -> bool:
        return key in self.recordings

    @property
    def count(self) -> int:
        """Recordings added (repeats counted once)."""
        return len(self.recordings)

    def names(self) -> set[str]:
        """The scientific names of the recordings added."""
        return {r.scientific_name for r in self.recordings.values()}

    def entries(self) -> list[tuple[str, str, str]]:
        """(key, scientific name, name as the archive gave it) of every recording added."""
        return [(r.key, r.scientific_name, r.original_name) for r in self.recordings.values()]

    def drop(self, key: str) -> None:
        """Take a recording out again (a later check found it is no species)."""
        self.recordings.pop(key, None)

    @property
    def arrived(self) -> int:
        """Unique records that arrived, recordings and skipped items alike: compared with the archive's count."""
        return self.count + self._skipped_arrived

    def skip(self, item: SkippedItem) -> None:
        # A repeated page repeats its skipped items too; different items may share the key "xc:?"
        # (items without an id: each one counts as arrived, they cannot be told apart).
        identity = (item.key, item.name, item.reason)
        if identity not in self._skipped_seen:
            self._skipped_seen.add(identity)
            self.skipped.append(item)
            self._skipped_arrived += 1
        elif item.key.endswith(":?"):
            self._skipped_arrived += 1

    def tally(self) -> tuple[int, int]:
        """(recordings, skipped items) so far: a listing's own numbers are the differences."""
        return self.count, len(self.skipped)

    def listed_since(self, before: tuple[int, int], noun: str = "recording") -> str:
        """What a listing added since `before` (`tally()`): '13 recordings, 3 skipped'."""
        recordings, skipped = self.count - before[0], len(self.skipped) - before[1]
        return f"{counted(recordings, noun)}, {skipped} skipped"

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


def counted(number: int, noun: str) -> str:
    """'1 page', '2 pages'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_text(value: object) -> str | None:
    """A trimmed string, or None for empty values, '?' placeholders, null and non-strings."""
    if type(value) is str and value.isprintable():  # the usual case (a catalogue has millions)
        text = value.strip()
    elif value is None or isinstance(value, (dict, list, bool)):
        return None
    else:  # control characters become spaces (isprintable is False for them, and for a few others)
        text = _CONTROL.sub(" ", value if isinstance(value, str) else str(value)).strip()
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
    for prefix in ("https://", "http://"):  # the usual case, without urlsplit (a catalogue has millions)
        if text.startswith(prefix):
            return text if text[len(prefix) : len(prefix) + 1] not in ("", "/", "?", "#") else None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return text
