"""One module per archive, each turning its API into the shared models (the way yt-dlp's
extractors do), and the registry of archives (`registry`), which everything downstream asks
instead of branching on an archive's name. See `birdgrab.sources.archive` for what an archive says.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from birdgrab.models import Recording, SkippedItem
from birdgrab.sources.registry import registry


class CatalogBatch:
    """What archive queries list, as they list it: recordings (the first copy of a key wins) and the
    items they skipped. This one keeps them in memory; the catalog's (`store.StagedBatch`) writes
    them to disk page by page."""

    def __init__(self) -> None:
        self.recordings: dict[str, Recording] = {}
        self.skipped: list[SkippedItem] = []
        self._skipped_seen: set[tuple[str, str, str]] = set()

    def add(self, recording: Recording) -> None:
        # Results can shift between pages: the same record may come twice; the first one wins.
        self.recordings.setdefault(recording.key, recording)

    def __contains__(self, key: object) -> bool:
        return key in self.recordings

    @property
    def count(self) -> int:
        """Recordings added (repeats counted once)."""
        return len(self.recordings)

    def skip(self, item: SkippedItem) -> None:
        # A repeated page repeats its skipped items too; different items may share the key "xc:?".
        identity = (item.key, item.name, item.reason)
        if identity not in self._skipped_seen:
            self._skipped_seen.add(identity)
            self.skipped.append(item)


def recording_key(source: str, source_id: str) -> str:
    """The key of a recording of archive `source`: `xc:254462`."""
    return registry.get(source).key(source_id)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_text(value: object) -> str | None:
    """A trimmed string, or None for empty values, '?' placeholders, null and non-strings."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
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
