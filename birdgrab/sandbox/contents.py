"""What the sandbox archive contains: the hand-made demo, generated species, hostile names, growth.

Everything is drawn from `random.Random` instances seeded by strings built from the config's
seed, so the same config always yields the same archive (and the same audio bytes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from birdgrab.sandbox.config import RealRecording, SandboxConfig
from birdgrab.sandbox.europeana_api import UNNAMED_AGENT
from birdgrab.sandbox.holdings import (
    XC_LICENCES,
    Archive,
    EuropeanaItem,
    GeneratedXc,
    InatObservation,
    InatSound,
    Species,
    Truths,
    WikiPage,
    WikiStatus,
    XcRecording,
)
from birdgrab.sandbox.synth import SAMPLE_RATES, AudioFile, AudioFormat, AudioSpec, voice_for

# Ids on both sides of 694204, the last xeno-canto id BirdNET V2.4 trained on (--unseen-by birdnet-2.4).
FIRST_XC_ID = 600_000
# Bulk (generated) records: ids far above every stored one, uploaded long before any `grow`.
BULK_FIRST_ID = 50_000_000
BULK_PER_SPECIES = 100
BULK_UPLOADED = date(2024, 6, 1)
BULK_VARIANTS = 997  # prime: the variants do not line up with the blocks of a species
GROWN_RECORDINGS_PER_SPECIES = 5


@dataclass(frozen=True)
class DemoSpecies:
    name: str
    english: str
    xc: int = 0  # xeno-canto recordings
    countries: tuple[str, ...] = ("Germany",)  # cycled over its recordings
    subspecies: tuple[str, ...] = ("",)  # cycled too
    group: str = "birds"
    types: tuple[str, ...] = ("song", "call")
    europeana: int = 0  # Tierstimmenarchiv items
    europeana_name: str | None = None  # when Europeana's titles use a synonym or a trinomial
    europeana_title: str | None = None  # a whole title in another form (German portals)
    author: str = "Linnaeus, 1758"
    german: str | None = None  # the German Wikipedia title the name leads to
    gender: str = "Die"  # German article of `german`
    family: tuple[str, str] = ("", "")  # German and scientific family name
    kind: str = "eine Vogelart"
    wiki_de: WikiStatus = "article"  # what `german` is
    fragment: str | None = None  # section redirects
    english_article: str | None = None
    synonyms: tuple[str, ...] = ()
    restricted: bool = False


_THRUSHES = ("Drosseln", "Turdidae")
_FLYCATCHERS = ("Fliegenschnäpper", "Muscicapidae")
_TITS = ("Meisen", "Paridae")
_FINCHES = ("Finken", "Fringillidae")

DEMO_SPECIES: tuple[DemoSpecies, ...] = (
    DemoSpecies("Turdus philomelos", "Song Thrush", xc=12, europeana=4, author="C. L. Brehm, 1831",
                german="Singdrossel", family=_THRUSHES, english_article="Song thrush"),
    DemoSpecies("Turdus merula", "Common Blackbird", xc=14, europeana=3, german="Amsel", family=_THRUSHES,
                english_article="Common blackbird"),
    DemoSpecies("Erithacus rubecula", "European Robin", xc=10, europeana=3, author="(Linnaeus, 1758)",
                german="Rotkehlchen", gender="Das", family=_FLYCATCHERS, english_article="European robin"),
    DemoSpecies("Parus major", "Great Tit", xc=9, subspecies=("major", ""), europeana=3,
                europeana_name="Parus major major", german="Kohlmeise", family=_TITS, english_article="Great tit"),
    DemoSpecies("Cyanistes caeruleus", "Eurasian Blue Tit", xc=8, europeana=3, europeana_name="Parus caeruleus",
                german="Blaumeise", family=_TITS, english_article="Eurasian blue tit",
                synonyms=("Parus caeruleus",)),
    DemoSpecies("Fringilla coelebs", "Common Chaffinch", xc=11, europeana=2, german="Buchfink", gender="Der",
                family=_FINCHES, english_article="Common chaffinch"),
    DemoSpecies("Emberiza citrinella", "Yellowhammer", xc=13, europeana=2, german="Goldammer",
                family=("Ammern", "Emberizidae"), english_article="Yellowhammer"),
    DemoSpecies("Sylvia atricapilla", "Eurasian Blackcap", xc=7, countries=("Germany", "Germany", "Netherlands"),
                german="Mönchsgrasmücke", family=("Grasmückenartigen", "Sylviidae")),
    DemoSpecies("Phylloscopus collybita", "Common Chiffchaff", xc=6, german="Zilpzalp", gender="Der",
                family=("Laubsängerartigen", "Phylloscopidae")),
    DemoSpecies("Troglodytes troglodytes", "Eurasian Wren", xc=8, subspecies=("troglodytes", "", ""),
                german="Zaunkönig", gender="Der", family=("Zaunkönige", "Troglodytidae")),
    DemoSpecies("Luscinia megarhynchos", "Common Nightingale", xc=5, german="Nachtigall", family=_FLYCATCHERS,
                english_article="Common nightingale"),
    DemoSpecies("Alauda arvensis", "Eurasian Skylark", xc=9, countries=("Germany", "France", "Germany", "Poland"),
                german="Feldlerche", family=("Lerchen", "Alaudidae")),
    DemoSpecies("Sitta europaea", "Eurasian Nuthatch", xc=7, europeana=2, german="Kleiber", gender="Der",
                family=("Kleiber", "Sittidae")),
    DemoSpecies("Dendrocopos major", "Great Spotted Woodpecker", xc=6, types=("drumming", "call"),
                german="Buntspecht", gender="Der", family=("Spechte", "Picidae")),
    DemoSpecies("Regulus regulus", "Goldcrest", xc=6, german="Goldhähnchen", wiki_de="genus"),
    DemoSpecies("Acanthis flammea", "Common Redpoll", xc=5, german="Birkenzeisig", gender="Der", family=_FINCHES),
    DemoSpecies("Acanthis cabaret", "Lesser Redpoll", xc=4, german="Birkenzeisig", wiki_de="section",
                fragment="Alpenbirkenzeisig"),
    DemoSpecies("Grus grus", "Common Crane", xc=5, types=("call", "flight call"), german="Kranich",
                wiki_de="disambiguation"),
    DemoSpecies("Locustella luscinioides", "Savi's Warbler", xc=4),
    DemoSpecies("Acrocephalus palustris", "Marsh Warbler", xc=3),
    DemoSpecies("Carpodacus erythrinus", "Common Rosefinch", xc=3, countries=("Germany", "Poland")),
    DemoSpecies("Corvus corax", "Northern Raven", xc=3, types=("call",), german="Kolkrabe", gender="Der",
                family=("Rabenvögel", "Corvidae"), english_article="Common raven"),
    DemoSpecies("Tetrao urogallus", "Western Capercaillie", xc=4, restricted=True, german="Auerhuhn",
                gender="Das", family=("Fasanenartigen", "Phasianidae")),
    DemoSpecies("Vultur gryphus", "Andean Condor", xc=3, countries=("Argentina", "Peru", "Chile"), types=("call",),
                europeana=2, german="Andenkondor", gender="Der", family=("Neuweltgeier", "Cathartidae"),
                english_article="Andean condor"),
    DemoSpecies("Rana temporaria", "Common Frog", xc=2, group="frogs", types=("call",), europeana=2,
                german="Grasfrosch", gender="Der", family=("Echten Frösche", "Ranidae"), kind="ein Froschlurch",
                english_article="Common frog"),
    DemoSpecies("Gryllus campestris", "Field Cricket", xc=2, group="grasshoppers", types=("song",), europeana=2,
                german="Feldgrille", family=("Echten Grillen", "Gryllidae"), kind="eine Langfühlerschrecke",
                english_article="Field cricket"),
    DemoSpecies("Strix aluco", "Tawny Owl", xc=2, countries=("France",), types=("call", "song"), europeana=1,
                europeana_title="Waldkauz | Strix aluco - Lautfolge, Ruf", german="Waldkauz", gender="Der",
                family=("Eigentlichen Eulen", "Strigidae"), english_article="Tawny owl"),
    # xeno-canto's placeholders (docs/archives.md): no species, whatever their group says.
    DemoSpecies("Mystery mystery", "Identity unknown", xc=2),
    DemoSpecies("Sonus naturalis", "Soundscape", xc=1, group="", types=("soundscape",)),
)  # fmt: skip
PLACEHOLDERS = ("Mystery mystery", "Sonus naturalis")
_LATE = frozenset({"Strix aluco", *PLACEHOLDERS})
# Europeana items (by number: 0-3 Turdus philomelos, 7-9 Erithacus rubecula, 24-25 Rana temporaria)
# whose dcCreator is only a reference: the same agent twice (one Record API request names both), an
# agent no record names, a #tag; and items whose edmIsShownBy rotted: (status, the record lists the
# moved file). The one lost for good is a frog's, outside the default (birds only) selection.
_REFERENCED_CREATORS = {
    1: "http://data.europeana.eu/agent/85541",
    3: "http://data.europeana.eu/agent/85541",
    2: UNNAMED_AGENT,
    8: "#Frommolt_Karl-Heinz",
}
_DEAD_LINKS = {7: (404, True), 24: (403, False)}
# Titles that read as binomials whose "genus" is no taxon: a tape, and (from other collections) art.
NON_TAXON_TITLES = (
    "Vogelstimmen am Müggelsee, Tonband 3",
    "Portret van Jan Six",
    "Gedenkteken voor de gevallenen",
)

# (title, lead, is a disambiguation page): where the genus and disambiguation redirects lead.
_DE_TRAP_PAGES = (
    ("Goldhähnchen", "Die Goldhähnchen (Regulus) sind eine Gattung der Sperlingsvögel (Passeriformes) "
     "mit sechs Arten, die in Eurasien und Nordamerika verbreitet sind.", False),
    ("Kranich", "Kranich steht für: Grauer Kranich (Grus grus), eine Vogelart aus der Familie der Kraniche; "
     "Kranich (Sternbild), ein Sternbild des Südhimmels; Kranich (Familienname).", True),
)  # fmt: skip

# (species, index of its xeno-canto recording) -> the trap planted in that recording's audio.
_PLANTED: dict[tuple[str, int], dict[str, Any]] = {
    ("Turdus philomelos", 0): {"format": "mp3", "sample_rate": 44100, "channels": 1, "duration_s": 12.0},
    ("Turdus merula", 0): {"format": "flac", "sample_rate": 48000, "channels": 1, "duration_s": 15.0},
    ("Fringilla coelebs", 0): {"format": "mp3", "sample_rate": 22050, "channels": 1, "duration_s": 60.0,
                               "mp3_quirk": "vbr_no_xing"},
    ("Emberiza citrinella", 0): {"format": "mp3", "sample_rate": 44100, "channels": 1, "duration_s": 37.0,
                                 "mp3_quirk": "id3_cover"},
    ("Phylloscopus collybita", 1): {"duration_s": 2.2},
    ("Parus major", 2): {"duration_s": 1.6},
    ("Sitta europaea", 1): {"duration_s": 2.8},
    ("Troglodytes troglodytes", 1): {"duration_s": 32.0, "sound_until_s": 6.0},
    ("Alauda arvensis", 2): {"duration_s": 40.0, "sound_until_s": 9.0},
    ("Corvus corax", 0): {"duration_s": 28.0, "sound_until_s": 5.0},
}  # fmt: skip
_HOUR_LONG = ("Luscinia megarhynchos", 0)
_HOUR_LONG_AUDIO = {"format": "wav", "sample_rate": 16000, "channels": 1, "duration_s": 3600.0, "activity": 0.2}  # fmt: skip
_EXACT_DUPLICATE = "Turdus philomelos"  # its first Europeana item serves the bytes of its first xc recording
_NEAR_DUPLICATE = "Turdus merula"  # its first Europeana item is its first xc recording re-encoded

# People as each archive spells them (docs/archives.md): xeno-canto "Given Surname"; the Tierstimmenarchiv
# "Surname, Initials" (and its agent records the full name); iNaturalist a login, often with a name.
# Karl-Heinz Frommolt is on all three, spelled four ways; Andreas and Anna Schulze are two people whom
# the Tierstimmenarchiv's "Schulze, A." could each be.
ONE_PERSON = ("Frommolt, K.-H.", "Frommolt, Karl-Heinz", "Karl-Heinz Frommolt", "Karl Heinz Frommolt")
NAMESAKES = ("Andreas Schulze", "Anna Schulze")
AMBIGUOUS_INITIALS = "Schulze, A."
_RECORDISTS = (
    "Jonas Becker", "Marta Nowak", "Lena Hoffmann", "Pierre Dubois", "Anke Müller",
    "Tomás Ruiz", "Sven Lindqvist", "Jaap de Vries", "Karl-Heinz Frommolt", "Andreas Schulze",
)  # fmt: skip
_LOCALITIES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "Germany": (
        ("Müritz-Nationalpark, Mecklenburg-Vorpommern", 53.45, 12.85),
        ("Schorfheide, Brandenburg", 52.98, 13.65),
        ("Federsee, Baden-Württemberg", 48.08, 9.63),
        ("Tiergarten, Berlin", 52.514, 13.35),
        ("Kermeter, Eifel, Nordrhein-Westfalen", 50.58, 6.45),
    ),
    "France": (("Camargue, Bouches-du-Rhône", 43.5, 4.6),),
    "Poland": (("Białowieża Forest, Podlaskie", 52.7, 23.8),),
    "Netherlands": (("Oostvaardersplassen, Flevoland", 52.45, 5.35),),
    "Argentina": (("Quebrada del Condorito, Córdoba", -31.6, -64.7),),
    "Peru": (("Colca Canyon, Arequipa", -15.6, -71.9),),
    "Chile": (("Torres del Paine, Magallanes", -51.0, -73.0),),
}
_REMARKS = ("", "", "", "Filtered lightly below 1kHz.", "Natural sound, no playback.", "Several birds around.")  # fmt: skip

_TSA_RIGHTS = {
    "by-sa": "http://creativecommons.org/licenses/by-sa/3.0/",
    "cc0": "http://creativecommons.org/publicdomain/zero/1.0/",
    "by-nc-nd": "http://creativecommons.org/licenses/by-nc-nd/3.0/",
}
_TSA_CREATORS = ("Wallschläger, D.", "Frommolt, K.-H.", "Tembrock, G.", "Schulze, A.", "Bergmann, H.-H.")
_TSA_DESCRIPTIONS = ("adult; song; male", "adult; call", "juvenile; call", "adult; song", "adult; alarm call")
_TSA_CLASS = {"birds": "V", "frogs": "A", "grasshoppers": "I"}

# Generated ("scale") species: invented binomials and German names, unique per index.
_GENERA = ("Avis", "Fictornis", "Cantillus", "Trillula", "Sonorina", "Melodorix", "Sandboxia", "Chirpella")
_EPITHET_PARTS = ("sand", "box", "virid", "alb", "ruf", "mont", "palud", "silv", "noct", "aur", "cyan", "fla")
_EPITHET_ENDINGS = ("a", "us", "ensis", "ata", "icola", "oides")
_GERMAN_PREFIXES = ("", "Nord", "Süd", "Ost", "West", "Klein", "Groß", "Berg", "Tal", "Insel")
_GERMAN_STEMS = (
    "Nebel", "Pixel", "Echo", "Funkel", "Schimmer", "Dämmer", "Glimmer", "Bit", "Takt", "Flimmer",
    "Sandkasten", "Platzhalter", "Muster", "Probe", "Test", "Daten", "Modell", "Schleifen", "Puffer", "Zufalls",
)  # fmt: skip
_GERMAN_NOUNS = (
    ("fink", "Der"), ("ammer", "Die"), ("drossel", "Die"), ("meise", "Die"), ("sänger", "Der"),
    ("schnäpper", "Der"), ("pieper", "Der"), ("lerche", "Die"), ("würger", "Der"), ("zeisig", "Der"),
    ("gimpel", "Der"), ("specht", "Der"), ("taube", "Die"), ("rötel", "Der"), ("schmätzer", "Der"),
    ("stelze", "Die"), ("häher", "Der"), ("schwalbe", "Die"), ("läufer", "Der"), ("rohrsänger", "Der"),
)  # fmt: skip

# (genus, epithet, file name): names made to break paths, terminals and Unicode handling.
_HOSTILE_XC = (
    ("../../etc", "passwd", "../../etc/passwd.mp3"),
    ("Turdus", "merula/../../x", "sub/dir/XC-slash.wav"),
    ("Turdus", "philomelos\\..\\..\\windows", "..\\..\\boot.ini.flac"),
    ("Turdus", "nul\x00byte", "nul\x00byte.mp3"),
    ("Turdus", "ctrl\x1b[31m\r\nred\t", "ctrl\x1b[31m\r\n.wav"),
    ("L" + "o" * 299, "b" * 300, "c" * 300 + ".mp3"),
    ("\u0422urdus", "philomelos", "XC-\u0422urdus philomelos.mp3"),  # Cyrillic capital Te
    ("Turdus", "merul\u0430", "XC-Turdus merul\u0430.wav"),  # Cyrillic small a
    ("Hostilus", "casus", "XC-Hostilus casus.flac"),
    ("Hostilus", "Casus", "XC-Hostilus Casus.flac"),
)
_HOSTILE_TITLES = (
    "../../etc/passwd Linnaeus, 1758",
    "Turdus\x00philomelos Linnaeus, 1758",
    "\u0422urdus philomelos C. L. Brehm, 1831",
    "Turdus merula\\..\\..\\evil Linnaeus, 1758",
    "ctrl\x1b[2J\x07 Linnaeus, 1758",
    "x" * 300,
    "Hostilus casus Linnaeus, 1758",
    "Hostilus Casus Linnaeus, 1758",
)


def stable_number(text: str, low: int, high: int) -> int:
    """A number in [low, high) that depends only on `text` (page ids, Wikidata ids)."""
    return low + int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % (high - low)


def wikidata_id(name: str) -> str:
    return f"Q{stable_number(name, 1000, 99_999_999)}"


def _page(lang: str, title: str, **fields: Any) -> WikiPage:
    return WikiPage(title, stable_number(f"{lang}:{title}", 10_000, 9_999_999), **fields)


def _article(lang: str, title: str, intro: str, name: str, redirects: tuple[str, ...]) -> list[WikiPage]:
    """A species article and the redirects from its scientific names."""
    body = "== Merkmale ==\n" + intro + "\n\n== Verbreitung ==\nDie Art ist weit verbreitet."
    return [_page(lang, title, intro=intro, body=body, wikidata_id=wikidata_id(name))] + [
        _page(lang, source, redirect_to=title) for source in redirects
    ]


# -- audio and metadata draws ------------------------------------------------------------------------
def _random_audio(rng: random.Random, name: str) -> AudioSpec:
    """Mostly 4 to 15 s, up to 40 s. Encoding mp3 is what makes a first demo run slow (about 50x
    real time for 44.1 kHz mono, on one core), so mp3s are a quarter, mono, and lean to low rates."""
    audio_format: AudioFormat = rng.choices(("mp3", "wav", "flac"), weights=(25, 45, 30))[0]
    mp3 = audio_format == "mp3"
    return AudioSpec(
        format=audio_format,
        sample_rate=rng.choices(SAMPLE_RATES, weights=(40, 35, 5, 15, 5) if mp3 else (15, 30, 15, 25, 15))[0],
        channels=2 if not mp3 and rng.random() < 0.25 else 1,
        duration_s=round(4 + 36 * rng.random() ** 3.5, 1),
        voice=voice_for(name),
        variation=rng.getrandbits(32),
    )


def _short_audio(rng: random.Random, name: str, audio_bytes: int | None, index: int) -> AudioSpec:
    """Audio of generated recordings: a few seconds, or a 16 kHz mono WAV of about `audio_bytes`."""
    if audio_bytes:
        return AudioSpec(
            "wav", 16000, 1, round((audio_bytes - 44) / 32000, 3), voice_for(name), rng.getrandbits(32)
        )
    formats: tuple[AudioFormat, ...] = ("wav", "flac", "mp3")
    return AudioSpec(
        formats[index % 3], 22050, 1, round(rng.uniform(3, 8), 1), voice_for(name), rng.getrandbits(32)
    )


def _recorded(rng: random.Random) -> tuple[str, date]:
    """The `date` field (parts may be "00") and the day it stands for."""
    day = date(2008, 1, 1) + timedelta(days=rng.randrange(17 * 365))
    form = rng.random()
    if form < 0.8:
        return day.isoformat(), day
    if form < 0.9:
        return f"{day:%Y-%m}-00", day
    if form < 0.97:
        return f"{day:%Y}-00-00", day
    return "0000-00-00", day


def _time_text(rng: random.Random) -> str:
    hour, minute = rng.randrange(3, 22), rng.randrange(60)
    return rng.choices((f"{hour:02d}:{minute:02d}", "?", f"{hour}.{minute:02d}"), weights=(80, 10, 10))[0]


def _file_name(rng: random.Random, xc_id: int, recordist: str, name: str, day: date, ext: str) -> str:
    """Upload names as people make them: some tidy, some with spaces."""
    initials = "".join(word[0] for word in recordist.split()).upper()
    if rng.random() < 0.7:
        return f"XC{xc_id}-{initials}-{day:%Y%m%d}-{rng.randrange(10**6):06d}.{ext}"
    return f"XC{xc_id}-{day:%y%m%d}_{rng.randrange(1, 30):02d} {name} {rng.randrange(5, 21)}.{rng.randrange(60):02d}.{ext}"


def _xc_recording(
    rng: random.Random,
    xc_id: int,
    species: Species,
    *,
    country: str,
    subspecies: str = "",
    types: tuple[str, ...],
    audio: AudioSpec | AudioFile | None,
    uploaded: date | None = None,
    background: tuple[str, ...] = (),
) -> XcRecording:
    """One xeno-canto record with every v3 quirk drawn at random (restricted species hide the file)."""
    recordist = rng.choice(_RECORDISTS)
    loc, lat, lon = rng.choice(_LOCALITIES.get(country) or (("?", 0.0, 0.0),))
    date_text, day = _recorded(rng)
    picked = rng.sample(types, k=rng.randint(1, len(types)))
    genus, _, epithet = species.name.partition(" ")
    length_s = audio.duration_s if audio else round(rng.uniform(5, 120), 1)
    hidden = species.restricted
    file_name = (
        ""
        if hidden
        else _file_name(rng, xc_id, recordist, species.name, day, audio.format if audio else "mp3")
    )
    position_known = loc != "?" and rng.random() < 0.9
    details: dict[str, Any] = {
        "loc": loc,
        "lat": f"{lat + rng.uniform(-0.05, 0.05):.4f}" if position_known else rng.choice(("", None)),
        "lon": f"{lon + rng.uniform(-0.05, 0.05):.4f}" if position_known else rng.choice(("", None)),
        "alt": str(rng.randrange(0, 900, 10)) if rng.random() < 0.8 else "?",
        "sex": rng.choice(("", "", "male", "female")),
        "stage": rng.choice(("", "", "adult", "juvenile")),
        "method": rng.choices(("field recording", "studio recording"), weights=(95, 5))[0],
        "time": _time_text(rng),
        "date": date_text,
        "also": rng.sample(background, k=min(len(background), rng.choice((0, 0, 1, 2, 3)))),
        "rmk": "restricted species" if hidden else rng.choice(_REMARKS),
        "animal-seen": rng.choice(("yes", "no", "unknown")),
        "playback-used": rng.choice(("no", "no", "unknown", "yes")),
        "temp": rng.choice((None, "")),
        "regnr": "",
        "auto": rng.choice(("no", "unknown")),
        "dvc": "",
        "mic": "",
        "annotation-set": {} if rng.random() < 0.2 else [],
    }
    return XcRecording(
        id=xc_id,
        genus=genus,
        epithet=epithet,
        subspecies=subspecies,
        group=species.group,
        english=species.english,
        recordist=recordist,
        country=country,
        types=", ".join(sorted(picked)),
        quality=rng.choices(("A", "B", "C", "D", "E", "no score"), weights=(30, 30, 20, 10, 5, 5))[0],
        licence=rng.choices(tuple(XC_LICENCES), weights=(8, 15, 5, 55, 10, 7))[0],
        length_s=length_s,
        uploaded=uploaded or min(day + timedelta(days=rng.randrange(1, 400)), date(2024, 12, 31)),
        file_name=file_name,
        audio=None if hidden else audio,
        details=details,
        sono=None if hidden else rng.choice((("small", "med", "large", "full"), ("small",))),
        protocol_relative=rng.random() < 0.1,
    )


def _tsa_token(name: str) -> str:
    """How the Tierstimmenarchiv spells a name in ids and file names: 'Sylvia sp.' -> 'Sylvia_sp'."""
    return re.sub(r"[^A-Za-z]+", "_", name).strip("_")


def _europeana_item(
    rng: random.Random,
    number: int,
    title: str,
    token: str,
    species: str | None,
    group: str,
    audio: AudioSpec,
    rights: str | None = None,
) -> EuropeanaItem:
    """One Tierstimmenarchiv item; `number` (its position in the archive) keeps ids unique and,
    unless `rights` is given, picks its licence."""
    letter, catalogue_number = _TSA_CLASS.get(group, "V"), rng.randrange(100, 3000)
    rights = rights or ("by-nc-nd" if number % 6 == 5 else "cc0" if number % 5 == 3 else "by-sa")
    return EuropeanaItem(
        id=f"/11622/_TIERSTIMMENARCHIV_MFN_GERMANY_TSA_{token}_{letter}_{catalogue_number}_{number}_1",
        title=title,
        species=species,
        description=rng.choice(_TSA_DESCRIPTIONS),
        creator=rng.choice(_TSA_CREATORS) if rng.random() < 0.9 else None,
        year=str(rng.randrange(1958, 1999)) if rng.random() < 0.85 else None,
        rights=_TSA_RIGHTS[rights],
        media_name=f"{token}_{letter}{catalogue_number}_{number}_short.{audio.format}",
        audio=audio,
        landing_id=f"TSA:{token}_{letter}_{catalogue_number}_{number}_1",
        media_in_search=number % 8 != 5,
    )


def _tsa_audio(rng: random.Random, name: str, number: int) -> AudioSpec:
    """Tierstimmenarchiv media: short mono mp3s, now and then a WAV."""
    wav = number % 11 == 7
    return AudioSpec(
        format="wav" if wav else "mp3",
        sample_rate=48000 if wav else rng.choice((44100, 22050, 22050, 22050)),
        channels=1,
        duration_s=round(rng.uniform(3, 8), 1),
        voice=voice_for(name),
        variation=rng.getrandbits(32),
    )


def _fresh_ids(rng: random.Random, start: int, count: int) -> list[int]:
    """`count` increasing ids after `start`, with gaps like a real archive's."""
    ids, current = [], start
    for _ in range(count):
        current += rng.randint(1, 2500)
        ids.append(current)
    return ids


# -- the demo ----------------------------------------------------------------------------------------
def _demo_species(entry: DemoSpecies) -> Species:
    return Species(
        name=entry.name,
        english=entry.english,
        group=entry.group,
        german=entry.german,
        wiki_de=entry.wiki_de if entry.german else "missing",
        english_article=entry.english_article,
        synonyms=entry.synonyms,
        restricted=entry.restricted,
    )


def _demo_wiki(entry: DemoSpecies) -> dict[str, list[WikiPage]]:
    pages: dict[str, list[WikiPage]] = {"de": [], "en": []}
    if entry.german and entry.wiki_de == "article":
        named = ", Syn.: ".join((entry.name, *entry.synonyms))
        intro = (
            f"{entry.gender} {entry.german} ({named}) ist {entry.kind} "
            f"aus der Familie der {entry.family[0]} ({entry.family[1]})."
        )
        pages["de"] += _article("de", entry.german, intro, entry.name, (entry.name, *entry.synonyms))
    elif entry.german:  # a trap: the name leads to a genus, a section or a disambiguation page
        pages["de"].append(_page("de", entry.name, redirect_to=entry.german, fragment=entry.fragment))
    if entry.english_article:
        noun = {"birds": "bird", "frogs": "frog", "grasshoppers": "cricket"}[entry.group]
        intro = (
            f"The {entry.english_article[0].lower()}{entry.english_article[1:]} ({entry.name}) "
            f"is a species of {noun} in the family {entry.family[1]}."
        )
        pages["en"] += _article("en", entry.english_article, intro, entry.name, (entry.name,))
    return pages


def _plant_record_trap(item: EuropeanaItem, number: int, truths: Truths) -> EuropeanaItem:
    """Creators given only by reference, and media links that rotted (by the item's number)."""
    if (creator := _REFERENCED_CREATORS.get(number)) is not None:
        item = dataclasses.replace(item, creator=creator)
        truths.agent_creators.append(item.key)
    if (rot := _DEAD_LINKS.get(number)) is not None:
        item = dataclasses.replace(item, dead_link=rot[0], media_moved=rot[1])
        truths.dead_links.append(item.key)
    return item


def _build_demo(archive: Archive, config: SandboxConfig) -> None:
    rng = random.Random(f"{config.seed}:demo")
    slots = [(entry, index) for entry in DEMO_SPECIES if entry.name not in _LATE for index in range(entry.xc)]
    ids = _fresh_ids(rng, FIRST_XC_ID, len(slots))
    rng.shuffle(ids)  # species interleave in id order, as on the real site
    # Species added to the demo later draw their ids after the others, which keep theirs.
    late = [(entry, index) for entry in DEMO_SPECIES if entry.name in _LATE for index in range(entry.xc)]
    ids += _fresh_ids(random.Random(f"{config.seed}:demo-late"), max(ids), len(late))
    slots += late
    birds = tuple(e.name for e in DEMO_SPECIES if e.group == "birds" and e.name not in PLACEHOLDERS)
    truths = archive.truths
    species = {entry.name: _demo_species(entry) for entry in DEMO_SPECIES}
    recordings: dict[tuple[str, int], XcRecording] = {}
    for (entry, index), xc_id in zip(slots, ids, strict=True):
        draw = random.Random(f"{config.seed}:xc:{entry.name}:{index}")
        hour_long = config.hour_long and (entry.name, index) == _HOUR_LONG
        planted = _HOUR_LONG_AUDIO if hour_long else _PLANTED.get((entry.name, index), {})
        audio = dataclasses.replace(_random_audio(draw, entry.name), **planted)
        record = _xc_recording(
            draw,
            xc_id,
            species[entry.name],
            country=entry.countries[index % len(entry.countries)],
            subspecies=entry.subspecies[index % len(entry.subspecies)],
            types=entry.types,
            audio=audio,
            background=tuple(b for b in birds if b != entry.name) if entry.group == "birds" else (),
        )
        recordings[(entry.name, index)] = record
        if hour_long:
            truths.hour_long = record.key
        elif audio.mp3_quirk == "vbr_no_xing":
            truths.vbr_no_xing = record.key
        elif audio.mp3_quirk == "id3_cover":
            truths.id3_cover = record.key
        elif audio.sound_until_s is not None:
            truths.silent_tail.append(record.key)
        elif audio.duration_s < 3:
            truths.short.append(record.key)

    items: list[EuropeanaItem] = []
    for entry in DEMO_SPECIES:
        for index in range(entry.europeana):
            draw = random.Random(f"{config.seed}:europeana:{entry.name}:{index}")
            audio = _tsa_audio(draw, entry.name, len(items))
            first_xc = recordings[(entry.name, 0)]
            if index == 0 and entry.name == _EXACT_DUPLICATE and first_xc.audio:
                audio = first_xc.audio
            if index == 0 and entry.name == _NEAR_DUPLICATE and first_xc.audio:
                audio = dataclasses.replace(first_xc.audio, format="mp3", sample_rate=22050)
            named = entry.europeana_name or entry.name
            title = entry.europeana_title or f"{named} {entry.author}"
            item = _europeana_item(draw, len(items), title, _tsa_token(named), entry.name, entry.group, audio)
            item = _plant_record_trap(item, len(items), truths)
            items.append(item)
            if index == 0 and entry.name in (_EXACT_DUPLICATE, _NEAR_DUPLICATE):
                pairs = truths.exact_duplicates if entry.name == _EXACT_DUPLICATE else truths.near_duplicates
                pairs.append((first_xc.key, item.key))
    for title in ("Sylvia sp.", "Vogelstimmen", *NON_TAXON_TITLES):
        draw = random.Random(f"{config.seed}:europeana:{title}")
        audio = _tsa_audio(draw, title, len(items))
        # open, so that the default listing (reusability=open) meets every trap
        item = _europeana_item(draw, len(items), title, _tsa_token(title)[:40], None, "birds", audio, "by-sa")
        items.append(item)
        truths.unnamed_items.append(item.key)
        if title in NON_TAXON_TITLES:
            truths.non_taxon_titles.append(item.key)

    wiki: dict[str, list[WikiPage]] = {"de": [], "en": []}
    for title, intro, disambiguation in _DE_TRAP_PAGES:
        wiki["de"].append(
            _page("de", title, intro=intro, wikidata_id=wikidata_id(title), disambiguation=disambiguation)
        )
    for entry in DEMO_SPECIES:
        for lang, pages in _demo_wiki(entry).items():
            wiki[lang] += pages
    archive.add(species=species.values(), xc=recordings.values(), europeana=items, wiki=wiki)
    truths.restricted_species = [e.name for e in DEMO_SPECIES if e.restricted]
    truths.europeana_only_species = [
        e.name for e in DEMO_SPECIES if e.europeana and e.group == "birds" and "Germany" not in e.countries
    ]
    truths.non_birds = [e.name for e in DEMO_SPECIES if e.group != "birds" and e.name not in PLACEHOLDERS]
    truths.placeholders = [r.key for (name, _), r in recordings.items() if name in PLACEHOLDERS]
    truths.synonyms = {s: e.name for e in DEMO_SPECIES for s in e.synonyms}


# -- generated species ---------------------------------------------------------------------------------
def _generated_name(index: int) -> tuple[str, str, str]:
    """The `index`-th invented species: (binomial, German name, German article), unique per index."""
    genus, number = _GENERA[index % len(_GENERA)], index // len(_GENERA)
    digits = [number % len(_EPITHET_PARTS)]
    number //= len(_EPITHET_PARTS)
    while number:
        digits.append(number % len(_EPITHET_PARTS))
        number //= len(_EPITHET_PARTS)
    epithet = "".join(_EPITHET_PARTS[d] for d in digits) + _EPITHET_ENDINGS[index % len(_EPITHET_ENDINGS)]
    noun, gender = _GERMAN_NOUNS[index % len(_GERMAN_NOUNS)]
    rest = index // len(_GERMAN_NOUNS)
    stem = _GERMAN_STEMS[rest % len(_GERMAN_STEMS)]
    prefix = _GERMAN_PREFIXES[(rest // len(_GERMAN_STEMS)) % len(_GERMAN_PREFIXES)]
    german = f"{prefix}{stem.lower()}{noun}" if prefix else f"{stem}{noun}"
    cycle = index // (len(_GERMAN_NOUNS) * len(_GERMAN_STEMS) * len(_GERMAN_PREFIXES))
    return f"{genus} {epithet}", f"{german} {cycle + 1}" if cycle else german, gender


def _generated_species(archive: Archive, count: int) -> list[tuple[Species, list[WikiPage]]]:
    """`count` new invented bird species, each with a German article, after those already there."""
    found: list[tuple[Species, list[WikiPage]]] = []
    index = 0
    while len(found) < count:
        name, german, gender = _generated_name(index)
        index += 1
        if name in archive.species:
            continue
        intro = (
            f"{gender} {german} ({name}) ist eine Vogelart aus der Familie der Sandkastenvögel (Sandboxidae)."
        )
        species = Species(name, f"Synthetic Songbird {index}", german=german, wiki_de="article")
        found.append((species, _article("de", german, intro, name, (name,))))
    return found


def _add_generated(
    archive: Archive,
    config: SandboxConfig,
    *,
    species: int,
    recordings: int,
    label: str,
    uploaded: date | None = None,
    with_audio: bool = True,
) -> list[str]:
    """`species` new species sharing `recordings` new xeno-canto recordings (in blocks, by id)."""
    new_species = _generated_species(archive, species)
    rng = random.Random(f"{config.seed}:{label}")
    per_species = -(-recordings // species) if species else 0
    records = []
    for number, xc_id in enumerate(_fresh_ids(rng, max(archive.xc, default=FIRST_XC_ID), recordings)):
        entry = new_species[number // per_species][0]
        audio = _short_audio(rng, entry.name, config.audio_bytes, number) if with_audio else None
        records.append(
            _xc_recording(
                rng, xc_id, entry, country="Germany", types=("song", "call"), audio=audio, uploaded=uploaded
            )
        )
    archive.add(
        species=[entry for entry, _ in new_species],
        xc=records,
        wiki={"de": [page for _, pages in new_species for page in pages]},
    )
    return [r.key for r in records]


def _add_hostile(archive: Archive, config: SandboxConfig) -> None:
    rng = random.Random(f"{config.seed}:hostile")
    ids = _fresh_ids(rng, max(archive.xc, default=FIRST_XC_ID), len(_HOSTILE_XC))
    records, species = [], []
    for xc_id, (genus, epithet, file_name) in zip(ids, _HOSTILE_XC, strict=True):
        entry = Species(f"{genus} {epithet}", "Hostile Test Bird")
        audio_format: AudioFormat = file_name.rsplit(".", 1)[1]  # type: ignore[assignment]
        audio = AudioSpec(audio_format, 22050, 1, 4.0, voice_for(entry.name), rng.getrandbits(32))
        record = _xc_recording(rng, xc_id, entry, country="Germany", types=("song",), audio=audio)
        records.append(dataclasses.replace(record, file_name=file_name))
        species.append(entry)
    first = len(archive.europeana)
    items = [
        _europeana_item(rng, first + k, title, f"Hostile_{k}", None, "birds", _tsa_audio(rng, "hostile", k))
        for k, title in enumerate(_HOSTILE_TITLES)
    ]
    archive.add(species=species, xc=records, europeana=items)
    archive.truths.hostile = [r.key for r in records] + [i.key for i in items]


def _add_bulk(archive: Archive, config: SandboxConfig) -> None:
    """Metadata-only records (their audio 404s), 100 per generated species, made on request: a
    catalogue of a million recordings costs the sandbox its species and nothing per record.
    Each is one of `BULK_VARIANTS` records drawn at random, given its own id, species and file."""
    count = config.xc_bulk_recordings
    species = _generated_species(archive, -(-count // BULK_PER_SPECIES))
    entries = [entry for entry, _ in species]
    variants = [
        _xc_recording(
            random.Random(f"{config.seed}:bulk:{k}"),
            BULK_FIRST_ID,
            entries[0],
            country="Germany",
            types=("song", "call"),
            audio=None,
            uploaded=BULK_UPLOADED,
        )
        for k in range(min(count, BULK_VARIANTS))
    ]

    def make(index: int) -> XcRecording:
        variant, entry = variants[index % len(variants)], entries[index // BULK_PER_SPECIES]
        genus, _, epithet = entry.name.partition(" ")
        xc_id = BULK_FIRST_ID + index
        return dataclasses.replace(
            variant,
            id=xc_id,
            genus=genus,
            epithet=epithet,
            english=entry.english,
            file_name=f"XC{xc_id}-{variant.file_name.split('-', 1)[1]}",
        )

    archive.add(species=entries, wiki={"de": [page for _, pages in species for page in pages]})
    names = tuple(entry.name.lower() for entry in entries)
    archive.generated = GeneratedXc(BULK_FIRST_ID, count, BULK_PER_SPECIES, names, make)


# -- iNaturalist ------------------------------------------------------------------------------------
FIRST_INAT_OBSERVATION = 150_000_000
FIRST_INAT_SOUND = 500_000
INAT_GERMANY = 7207
INAT_EUROPE = 97391
INAT_TAXA = {"Aves": 3, "Amphibia": 20978}  # iconic taxon -> its id
_INAT_LICENCES = ("cc-by-nc", "cc-by", "cc0", "cc-by-nc-sa", "cc-by-sa")
_INAT_LAST_EDIT = datetime(2024, 12, 31, tzinfo=UTC)  # the demo's observations were last edited before this
_INAT_USERS = (
    ("kh_frommolt", "Karl Heinz Frommolt"),
    ("vogelfreund", None),
    ("birder42", ""),
    ("anna_s", "Anna Schulze"),
)


@dataclass(frozen=True)
class DemoObservation:
    """A hand-made observation; `sounds` are kinds: m4a, mp3, wav, x-m4a (m4a served as audio/x-m4a),
    reserved (an m4a without a licence) and soundcloud (no file)."""

    taxon_name: str
    rank: str
    species: str | None
    sounds: tuple[str, ...] = ("m4a",)
    iconic: str = "Aves"
    quality_grade: str = "research"
    country: str = "Germany"


INAT_DEMO: tuple[DemoObservation, ...] = (
    DemoObservation("Turdus philomelos", "species", "Turdus philomelos"),
    DemoObservation("Turdus philomelos", "species", "Turdus philomelos", ("m4a", "mp3")),
    DemoObservation("Turdus philomelos", "species", "Turdus philomelos", ("x-m4a",)),
    DemoObservation("Turdus merula", "species", "Turdus merula"),
    DemoObservation("Turdus merula", "species", "Turdus merula", ("reserved",)),
    DemoObservation("Turdus merula", "species", "Turdus merula", ("m4a",)),
    DemoObservation("Erithacus rubecula", "species", "Erithacus rubecula", ("soundcloud", "m4a")),
    DemoObservation("Erithacus rubecula", "species", "Erithacus rubecula", ("wav",)),
    DemoObservation("Parus major major", "subspecies", "Parus major"),
    DemoObservation("Parus major", "species", "Parus major"),
    DemoObservation("Fringilla coelebs", "species", "Fringilla coelebs", ("mp3",)),
    DemoObservation("Fringilla coelebs", "species", "Fringilla coelebs", country="France"),
    DemoObservation("Turdus", "genus", None),
    DemoObservation("Anas platyrhynchos × acuta", "hybrid", None),
    DemoObservation("Turdus philomelos", "species", "Turdus philomelos", quality_grade="needs_id"),
    DemoObservation("Rana temporaria", "species", "Rana temporaria", iconic="Amphibia"),
)  # fmt: skip


def _inat_audio(rng: random.Random, kind: str, name: str) -> AudioSpec:
    """Phone-made sounds: a few seconds, mono, mostly AAC in m4a."""
    audio_format: AudioFormat = kind if kind in ("mp3", "wav") else "m4a"  # type: ignore[assignment]
    return AudioSpec(
        audio_format,
        rng.choice((22050, 44100, 16000)),
        1,
        round(rng.uniform(4, 8), 1),
        voice_for(name),
        rng.getrandbits(32),
    )


def _inat_observation(
    rng: random.Random,
    obs_id: int,
    sound_ids: list[int],
    entry: DemoObservation,
    *,
    with_audio: bool = True,
    created: datetime | None = None,
) -> InatObservation:
    login, user_name = rng.choice(_INAT_USERS)
    created = created or datetime(2019, 1, 1, tzinfo=UTC) + timedelta(
        minutes=rng.randrange(5 * 365 * 24 * 60)
    )
    loc, lat, lon = rng.choice(_LOCALITIES.get(entry.country) or (("?", 0.0, 0.0),))
    sounds = []
    for sound_id, kind in zip(sound_ids, entry.sounds, strict=True):
        audio = _inat_audio(rng, kind, entry.species or entry.taxon_name) if with_audio else None
        sounds.append(
            InatSound(
                id=sound_id,
                license_code=None if kind == "reserved" else rng.choice(_INAT_LICENCES),
                audio=None if kind == "soundcloud" else audio,
                soundcloud=kind == "soundcloud",
                content_type="audio/x-m4a" if kind == "x-m4a" else None,
            )
        )
    return InatObservation(
        id=obs_id,
        taxon_id=stable_number(f"inat:{entry.taxon_name}", 10_000, 1_000_000),
        taxon_name=entry.taxon_name,
        rank=entry.rank,
        species=entry.species,
        ancestor_ids=(48460, 1, 2, 355675, INAT_TAXA[entry.iconic]),
        iconic=entry.iconic,
        common_name=None if entry.species is None else _inat_common_name(entry),
        user_id=stable_number(f"inat-user:{login}", 1000, 9_999_999),
        login=login,
        user_name=user_name,
        observed_on=created.date() - timedelta(days=rng.randrange(0, 3)) if rng.random() < 0.95 else None,
        created_at=created,
        updated_at=min(created + timedelta(days=rng.randrange(0, 30)), max(created, _INAT_LAST_EDIT)),
        quality_grade=entry.quality_grade,
        place_guess=loc,
        latitude=round(lat + rng.uniform(-0.05, 0.05), 5),
        longitude=round(lon + rng.uniform(-0.05, 0.05), 5),
        place_ids=(INAT_GERMANY, INAT_EUROPE) if entry.country == "Germany" else (INAT_EUROPE,),
        sounds=tuple(sounds),
    )


def _inat_common_name(entry: DemoObservation) -> str | None:
    """iNaturalist's common name of a demo taxon: the demo species' English name."""
    return next((d.english for d in DEMO_SPECIES if d.name == entry.species), None)


def _add_inaturalist(archive: Archive, config: SandboxConfig) -> None:
    """The hand-made observations, with every trap planted (recorded in the truths)."""
    rng = random.Random(f"{config.seed}:inaturalist")
    obs_ids = _fresh_ids(rng, FIRST_INAT_OBSERVATION, len(INAT_DEMO))
    sound_ids = iter(_fresh_ids(rng, FIRST_INAT_SOUND, sum(len(e.sounds) for e in INAT_DEMO)))
    observations = []
    truths = archive.truths
    for obs_id, entry in zip(obs_ids, INAT_DEMO, strict=True):
        draw = random.Random(f"{config.seed}:inaturalist:{obs_id}")
        observation = _inat_observation(draw, obs_id, [next(sound_ids) for _ in entry.sounds], entry)
        observations.append(observation)
        for sound, kind in zip(observation.sounds, entry.sounds, strict=True):
            if entry.species is None:
                truths.inat_not_species.append(sound.key)
            elif kind == "reserved":
                truths.inat_all_rights_reserved.append(sound.key)
            elif kind == "soundcloud":
                truths.inat_soundcloud.append(sound.key)
            if sound.audio is not None and sound.audio.format == "m4a":
                truths.inat_m4a.append(sound.key)
            if entry.rank == "subspecies":
                truths.inat_subspecies.append(sound.key)
            if not observation.user_name:
                truths.inat_login_only.append(sound.key)
    archive.add(inaturalist=observations)


def _add_observations(
    archive: Archive,
    config: SandboxConfig,
    count: int,
    label: str,
    *,
    with_audio: bool = True,
    created: datetime | None = None,
) -> list[str]:
    """`count` research-grade observations of demo birds in Germany, one m4a sound each, after those
    already there; returns their sound keys."""
    rng = random.Random(f"{config.seed}:{label}")
    birds = [
        d.name for d in DEMO_SPECIES if d.group == "birds" and not d.restricted and d.name not in PLACEHOLDERS
    ]
    sounds = (s.id for o in archive.inaturalist.values() for s in o.sounds)
    obs_ids = _fresh_ids(rng, max(archive.inaturalist, default=FIRST_INAT_OBSERVATION), count)
    sound_ids = _fresh_ids(rng, max(sounds, default=FIRST_INAT_SOUND), count)
    observations = [
        _inat_observation(
            rng,
            obs_id,
            [sound_id],
            DemoObservation(birds[k % len(birds)], "species", birds[k % len(birds)]),
            with_audio=with_audio,
            created=created,
        )
        for k, (obs_id, sound_id) in enumerate(zip(obs_ids, sound_ids, strict=True))
    ]
    archive.add(inaturalist=observations)
    return [s.key for o in observations for s in o.sounds]


def build_archive(config: SandboxConfig) -> Archive:
    """The archive a config describes: the demo (or nothing, for "scale") plus the generated extras."""
    archive = Archive()
    if config.profile == "demo":
        _build_demo(archive, config)
        _add_inaturalist(archive, config)
    if config.extra_species and config.recordings_per_species:
        _add_generated(
            archive,
            config,
            species=config.extra_species,
            recordings=config.extra_species * config.recordings_per_species,
            label="scale",
        )
    if config.xc_bulk_recordings:
        _add_bulk(archive, config)
    if config.inat_bulk_observations:
        # Metadata only (their files 404), for paging past the API's result window.
        _add_observations(archive, config, config.inat_bulk_observations, "inat-bulk", with_audio=False)
    if config.hostile:
        _add_hostile(archive, config)
    if config.real_recordings:
        _add_real(archive, config)
    return archive


def grow(
    archive: Archive,
    config: SandboxConfig,
    *,
    recordings: int = 0,
    species: int = 0,
    inat_observations: int = 0,
) -> list[str]:
    """New uploads "today": `recordings` for bird species already there, `species` new species
    (each with `GROWN_RECORDINGS_PER_SPECIES` recordings and a German article), and
    `inat_observations` iNaturalist observations of demo birds. Returns the new keys."""
    archive.grown += 1
    label = f"grow:{archive.grown}"
    today = date.today()
    hostile = set(archive.truths.hostile)
    known = sorted(
        {
            r.name
            for r in archive.xc_sorted()
            if r.audio
            and r.group == "birds"
            and r.country == "Germany"
            and r.key not in hostile
            and r.name not in PLACEHOLDERS
        }
    )
    if recordings and not known:
        raise ValueError("the archive has no species to add recordings to; grow species first")
    added = _add_generated(
        archive,
        config,
        species=species,
        recordings=species * GROWN_RECORDINGS_PER_SPECIES,
        label=label,
        uploaded=today,
    )
    rng = random.Random(f"{config.seed}:{label}:existing")
    records = []
    for k, xc_id in enumerate(_fresh_ids(rng, max(archive.xc, default=FIRST_XC_ID), recordings)):
        name = known[(archive.grown + k) % len(known)]
        audio = _short_audio(rng, name, config.audio_bytes, k)
        records.append(
            _xc_recording(
                rng,
                xc_id,
                archive.species[name],
                country="Germany",
                types=("song", "call"),
                audio=audio,
                uploaded=today,
            )
        )
    archive.add(xc=records)
    observed = _add_observations(
        archive, config, inat_observations, f"{label}:inaturalist", created=datetime.now(UTC)
    )
    return added + [r.key for r in records] + observed


def upload(archive: Archive, config: SandboxConfig, audio: AudioFile, species: str) -> str:
    """A xeno-canto upload of a real file as a recording of `species` (a bird added, without any
    Wikipedia article, if the archive does not know it). Returns its key."""
    return _upload(archive, config, audio, species).key


def _upload(
    archive: Archive, config: SandboxConfig, audio: AudioFile, species: str, real: RealRecording | None = None
) -> XcRecording:
    if species not in archive.species:
        archive.add(species=[Species(name=species, english=f"{species} (uploaded)")])
    rng = random.Random(f"{config.seed}:upload:{audio.path.name}:{len(archive.xc)}")
    (xc_id,) = _fresh_ids(rng, max(archive.xc, default=FIRST_XC_ID), 1)
    record = _xc_recording(
        rng,
        xc_id,
        archive.species[species],
        country="Germany",
        types=("song",),
        audio=audio,
        uploaded=date.today(),
    )
    if real is not None:  # what the source says about it, not drawn at random
        record = dataclasses.replace(
            record,
            recordist=real.recordist,
            licence=real.licence,
            details={**record.details, "rmk": real.remarks},
        )
    archive.add(xc=[record])
    return record


def _add_real(archive: Archive, config: SandboxConfig) -> None:
    """`config.real_recordings` as xeno-canto uploads carrying their own recordist, licence and remarks."""
    for real in config.real_recordings:
        _upload(archive, config, AudioFile.declared(Path(real.path)), real.species, real)
