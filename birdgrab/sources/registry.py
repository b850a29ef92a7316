"""The archives birdgrab knows, in order of preference for display and defaults.

Adding an archive is one module in `birdgrab.sources` and one line in `BUILT_IN`; a test (or a
plugin) can `registry.register` another at run time. Everything downstream loops over `registry`
or asks it about a recording's source or key, never decides on an archive's name itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from birdgrab.errors import UsageError
from birdgrab.sources.archive import Archive

# "<module in birdgrab.sources>:<Archive subclass>", loaded on first use (each imports its client).
BUILT_IN = (
    "xenocanto:XenoCantoArchive",
    "europeana:EuropeanaArchive",
    "inaturalist:INaturalistArchive",
)


class Registry:
    """Archives by name and by key prefix."""

    def __init__(self, built_in: tuple[str, ...] = BUILT_IN):
        self._built_in = built_in
        self._archives: dict[str, Archive] | None = None

    def _loaded(self) -> dict[str, Archive]:
        if self._archives is None:
            archives: dict[str, Archive] = {}
            for entry in self._built_in:
                module, cls = entry.split(":")
                archive = getattr(importlib.import_module(f"birdgrab.sources.{module}"), cls)()
                archives[archive.name] = archive
            self._archives = archives
        return self._archives

    def register(self, archive: Archive) -> Archive:
        """Add an archive (its name and key prefix must be new); returns it."""
        archives = self._loaded()
        if archive.name in archives or any(a.key_prefix == archive.key_prefix for a in archives.values()):
            raise ValueError(
                f"an archive named {archive.name!r} or with key prefix {archive.key_prefix!r} exists"
            )
        archives[archive.name] = archive
        return archive

    def unregister(self, name: str) -> None:
        self._loaded().pop(name, None)

    def __iter__(self) -> Iterator[Archive]:
        return iter(list(self._loaded().values()))

    def names(self) -> list[str]:
        return list(self._loaded())

    def get(self, name: str) -> Archive:
        """The archive called `name` (the --source value); a UsageError for unknown names."""
        archive = self._loaded().get(name)
        if archive is None:
            raise UsageError(f"unknown archive {name!r}: use one of {', '.join(self.names())}")
        return archive

    def of_key(self, key: str) -> Archive:
        """The archive a recording key belongs to (by its prefix)."""
        prefix = key.split(":", 1)[0]
        for archive in self._loaded().values():
            if archive.key_prefix == prefix:
                return archive
        raise KeyError(f"no archive has the key prefix of {key!r}")


registry = Registry()
