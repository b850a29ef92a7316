"""One module per archive, each turning its API into the shared models (the way yt-dlp's
extractors do), and the registry of archives (`registry`), which everything downstream asks
instead of branching on an archive's name. See `birdgrab.sources.archive` for what an archive says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from birdgrab.models import Recording, SkippedItem
from birdgrab.sources.registry import registry


@dataclass
class CatalogBatch:
    """What one archive query produced: recordings (deduplicated by key) and the items it skipped."""

    recordings: dict[str, Recording] = field(default_factory=dict)
    skipped: list[SkippedItem] = field(default_factory=list)

    def add(self, recording: Recording) -> None:
        # Results can shift between pages: the same record may come twice; the first one wins.
        self.recordings.setdefault(recording.key, recording)

    _skipped_seen: set[tuple[str, str, str]] = field(default_factory=set, repr=False)

    def skip(self, item: SkippedItem) -> None:
        # A repeated page repeats its skipped items too; different items may share the key "xc:?".
        identity = (item.key, item.name, item.reason)
        if identity not in self._skipped_seen:
            self._skipped_seen.add(identity)
            self.skipped.append(item)


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
