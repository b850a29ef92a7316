"""What archive a sandbox serves, and with which keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Profile = Literal["demo", "scale"]


@dataclass(frozen=True)
class RealRecording:
    """A real recording the sandbox lists as a xeno-canto upload, with the metadata its source gives:
    field recordings through catalog -> fetch -> chunk, as any recording goes.

    `licence` is the licence URL xeno-canto would serve (`https://creativecommons.org/licenses/by-nc-nd/2.5/`,
    any URL, or a key of the sandbox's own licences such as "BY-SA"; "" when the source states none);
    `remarks` is served as the recording's remarks (`rmk`): say where the file comes from.
    """

    path: Path
    species: str  # the scientific name it is filed under
    recordist: str
    licence: str
    remarks: str = ""

    def __post_init__(self) -> None:
        if not Path(self.path).is_file():
            raise ValueError(f"real recording {self.path} is not a file")
        if len(self.species.split()) < 2:
            raise ValueError(
                f"real recording {self.path}: species must be a scientific name, got {self.species!r}"
            )


@dataclass(frozen=True)
class PageSize:
    """A server that decides its page size (docs/archives.md): at most `records` a page
    whatever `per_page` or `rows` asks. With `counted_as_asked` it pages as if it served what was
    asked (xeno-canto's numPages, Europeana's next cursor), so records are lost between pages."""

    records: int
    counted_as_asked: bool = False

    def __post_init__(self) -> None:
        if self.records < 1:
            raise ValueError("a page holds at least 1 record")


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox's archive and keys; the same config (and seed) always gives the same archive.

    `profile="demo"` is the hand-made archive of about 25 species with every planted trap;
    `"scale"` starts empty. In both, the knobs add generated content on top:
    `extra_species` x `recordings_per_species` xeno-canto recordings of short audio (WAV files of
    about `audio_bytes` when set), `xc_bulk_recordings` metadata-only records (their audio 404s),
    made on request and never stored, so a million of them cost the sandbox only their species, and
    `inat_bulk_observations` metadata-only iNaturalist observations (one sound each).
    `real_recordings` are real files listed as xeno-canto recordings with their own species,
    recordist and licence (`RealRecording`), in the order given.

    >>> SandboxConfig(profile="scale", extra_species=50, recordings_per_species=20)  # doctest: +ELLIPSIS
    SandboxConfig(...)
    """

    data_dir: Path | None = None  # rendered audio; None: a per-user cache folder
    xc_key: str = "sandbox-xc-key"
    europeana_key: str = "sandbox-europeana-key"
    profile: Profile = "demo"
    extra_species: int = 0
    recordings_per_species: int = 0
    xc_bulk_recordings: int = 0
    inat_bulk_observations: int = 0
    inat_per_page_max: int = (
        200  # iNaturalist's silent cap on per_page; lower it to test clients trust the answer
    )
    audio_bytes: int | None = None
    hour_long: bool = True  # the demo's hour-long WAV (115 MB once rendered)
    hostile: bool = False  # names made to break paths, terminals and Unicode handling
    real_recordings: tuple[RealRecording, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.profile not in ("demo", "scale"):
            raise ValueError(f"unknown sandbox profile {self.profile!r}: use 'demo' or 'scale'")
        for name in (
            "extra_species",
            "recordings_per_species",
            "xc_bulk_recordings",
            "inat_bulk_observations",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.audio_bytes is not None and self.audio_bytes < 1000:
            raise ValueError("audio_bytes must be at least 1000")
