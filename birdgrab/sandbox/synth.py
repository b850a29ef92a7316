"""Synthetic bird-like recordings, rendered lazily into an on-disk cache.

An `AudioSpec` describes one file completely (format, sample rate, channels, duration, the
species' voice and a per-recording variation); the same spec always renders to the same bytes.
That is how the archive plants an exact duplicate (two items share one spec) and a near
duplicate (same voice and variation, another format and sample rate).

Rendering works in fixed blocks of `BLOCK_S` seconds, so the hour-long recording never needs
more than one block in memory, and every random draw is seeded by the spec alone.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from birdgrab.files import TEMP_SUFFIX, commit_temp

# Bump whenever synthesis or encoding changes: it names the cache folder and every file in it.
RENDER_VERSION = 2
BLOCK_S = 10

AudioFormat = Literal["mp3", "wav", "flac", "m4a"]
SyllableShape = Literal["up", "down", "warble", "trill"]
# The two mp3 traps of docs/audio.md.
Mp3Quirk = Literal["", "vbr_no_xing", "id3_cover"]
# "hiss": faint white noise. "field": what a field recorder hears between calls - wind rumble in
# gusts, a stream's broadband hiss, a distant road, sometimes an insect, handling clicks - and calls
# from near and far (phrase levels over a 26 dB range).
Background = Literal["hiss", "field"]

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "m4a": "audio/mp4",  # AAC in an MPEG-4 container, as phones record it
}
SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)


@dataclass(frozen=True)
class Voice:
    """What makes a species recognisable: its syllable shape, pitch range and rhythm."""

    low_hz: float
    high_hz: float
    shape: SyllableShape
    syllable_s: float
    syllables: int  # per phrase
    gap_s: float  # between syllables
    phrase_gap_s: float


def voice_for(name: str) -> Voice:
    """A stable voice for a species name: pitch between 1.5 and 8 kHz, one syllable shape."""
    rng = random.Random(f"voice:{name}")
    low = rng.uniform(1500, 4500)
    return Voice(
        low_hz=round(low),
        high_hz=round(min(8000, low + rng.uniform(600, 3500))),
        shape=rng.choice(("up", "down", "warble", "trill")),
        syllable_s=round(rng.uniform(0.05, 0.25), 3),
        syllables=rng.randint(2, 10),
        gap_s=round(rng.uniform(0.02, 0.12), 3),
        phrase_gap_s=round(rng.uniform(0.8, 3.5), 2),
    )


@dataclass(frozen=True)
class AudioSpec:
    format: AudioFormat
    sample_rate: int
    channels: int
    duration_s: float
    voice: Voice
    variation: int  # per-recording seed: pitch, tempo, noise and timing differ between recordings
    sound_until_s: float | None = None  # after this point only background noise (a long silent tail)
    activity: float = 1.0  # share of phrases actually sung; the hour-long night recording is sparse
    mp3_quirk: Mp3Quirk = ""
    background: Background = "hiss"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{RENDER_VERSION}|{self!r}".encode()).hexdigest()[:24]

    @property
    def frames(self) -> int:
        return round(self.duration_s * self.sample_rate)


@dataclass(frozen=True)
class AudioFile:
    """A real file served as it is, instead of rendered audio: what a real encoder or a field recorder made.

    `format` is the upload's extension and `duration_s`/`sample_rate` what the archive declares; the
    bytes are the truth. The ETag follows the file's size and modification time, so replacing the
    file is an upstream change.
    """

    path: Path
    format: str
    duration_s: float
    sample_rate: int
    content_type: str = "application/octet-stream"

    @property
    def digest(self) -> str:
        stat = self.path.stat()
        return hashlib.sha256(f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]

    @classmethod
    def declared(cls, path: Path) -> AudioFile:
        """The file with the length and rate its container declares, as an archive reads them on
        upload (with PyAV, not birdgrab's own probe, so the archive's figures are independent)."""
        import av

        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = (container.duration or 0) / av.time_base
            rate = stream.codec_context.sample_rate
        extension = path.suffix.lstrip(".").lower()
        return cls(
            path, extension, round(seconds, 1), rate, CONTENT_TYPES.get(extension, "application/octet-stream")
        )


# -- synthesis -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Syllables:
    """Every syllable of a recording, sorted by start time (seconds) - the score the blocks play."""

    start: np.ndarray
    length: np.ndarray
    f0: np.ndarray
    f1: np.ndarray
    gain: np.ndarray


def _score(spec: AudioSpec) -> _Syllables:
    rng = random.Random(spec.variation)
    voice = spec.voice
    pitch = rng.uniform(0.93, 1.07)
    tempo = rng.uniform(0.9, 1.1)
    nyquist_cap = 0.45 * spec.sample_rate
    lo, hi = min(voice.low_hz * pitch, nyquist_cap), min(voice.high_hz * pitch, nyquist_cap)
    f0, f1 = (hi, lo) if voice.shape == "down" else (lo, hi)
    end = min(spec.duration_s, spec.sound_until_s or spec.duration_s)
    rows: list[tuple[float, float, float, float, float]] = []
    t = rng.uniform(0.1, 1.0)
    while t < end:
        phrase_gain = (
            rng.uniform(0.25, 0.6) if spec.background == "hiss" else 0.6 * 10 ** -rng.uniform(0, 1.3)
        )
        sung = rng.random() < spec.activity
        for _ in range(max(1, voice.syllables + rng.randint(-1, 2))):
            length = voice.syllable_s * tempo * rng.uniform(0.85, 1.15)
            if t + length > end:
                break
            if sung:
                jitter = rng.uniform(0.97, 1.03)
                rows.append((t, length, f0 * jitter, f1 * jitter, phrase_gain))
            t += length + voice.gap_s * tempo
        t += voice.phrase_gap_s * tempo * rng.uniform(0.6, 1.5)
    columns = np.array(rows, dtype=np.float64).reshape(-1, 5).T
    return _Syllables(*columns)


def planted_calls(spec: AudioSpec, join_gap_s: float = 0.3) -> list[tuple[float, float]]:
    """The calls the recording holds, in seconds: its syllables joined into phrases (gaps under
    `join_gap_s`). The truth a call detector is measured against."""
    score = _score(spec)
    calls: list[list[float]] = []
    for start, length in zip(score.start, score.length, strict=True):
        if calls and start - calls[-1][1] < join_gap_s:
            calls[-1][1] = start + length
        else:
            calls.append([start, start + length])
    return [(round(a, 4), round(b, 4)) for a, b in calls]


def _shaped_noise(
    rng: np.random.Generator, count: int, rate: int, slope: float, lo_hz: float, hi_hz: float
) -> np.ndarray:
    """Gaussian noise with power falling as f^-slope between lo_hz and hi_hz, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(count))
    hz = np.fft.rfftfreq(count, 1.0 / rate)
    shape = np.where((hz >= lo_hz) & (hz <= hi_hz), np.maximum(hz, 1.0) ** (-slope / 2), 0.0)
    noise = np.fft.irfft(spectrum * shape, count)
    return (noise / (noise.std() or 1.0)).astype(np.float32)


def _field_noise(spec: AudioSpec, index: int, first: int, count: int) -> np.ndarray:
    """One block of field background (see `Background`), seeded by the recording and the block."""
    rate = spec.sample_rate
    level = random.Random(f"field:{spec.variation}")
    rumble_db, hiss_db = level.uniform(-36, -24), level.uniform(-52, -40)
    insect_hz = level.choice((0.0, 0.0, level.uniform(4000, min(7000, 0.4 * rate))))
    rng = np.random.default_rng([spec.variation, index, 7])
    seconds = (first + np.arange(count)) / rate
    gusts = 1.0 + 0.8 * np.sin(2 * np.pi * seconds / level.uniform(3, 9) + level.uniform(0, 6)) ** 2
    noise = 10 ** (rumble_db / 20) * gusts * _shaped_noise(rng, count, rate, 2.0, 20.0, 2000.0)
    noise += 10 ** (hiss_db / 20) * _shaped_noise(rng, count, rate, 1.0, 200.0, 0.45 * rate)
    noise += 10 ** (level.uniform(-40, -30) / 20) * np.sin(2 * np.pi * level.uniform(90, 160) * seconds)
    if insect_hz:
        pulses = (np.sin(2 * np.pi * 25.0 * seconds) > 0).astype(np.float32)
        noise += 10 ** (hiss_db / 20) * pulses * np.sin(2 * np.pi * insect_hz * seconds)
    for click in rng.integers(0, count, size=rng.poisson(0.3 * count / rate)):
        noise[click : click + rate // 500] += rng.uniform(0.02, 0.1) * rng.standard_normal(
            len(noise[click : click + rate // 500])
        )
    return noise.astype(np.float32)


def _syllable(shape: SyllableShape, tau: np.ndarray, length: float, f0: float, f1: float) -> np.ndarray:
    """One syllable at local times `tau` (seconds); phases are closed-form so a block can start mid-syllable."""
    if shape == "warble":
        centre, depth, rate = (f0 + f1) / 2, abs(f1 - f0) / 2, 3.0 / length
        phase = 2 * np.pi * (centre * tau - depth / (2 * np.pi * rate) * np.cos(2 * np.pi * rate * tau))
    else:
        phase = 2 * np.pi * (f0 * tau + (f1 - f0) * tau**2 / (2 * length))
    wave = np.sin(phase) + 0.2 * np.sin(2 * phase)
    envelope = np.sin(np.pi * tau / length) ** 2
    if shape == "trill":
        envelope *= 0.55 + 0.45 * np.sin(2 * np.pi * 55.0 * tau)
    return wave * envelope


def blocks(spec: AudioSpec) -> Iterator[np.ndarray]:
    """The recording as float32 blocks of shape (frames, channels), `BLOCK_S` seconds each."""
    score = _score(spec)
    rate = spec.sample_rate
    noise_level = random.Random(f"noise:{spec.variation}").uniform(0.003, 0.015)
    gains = np.array([1.0, 0.8][: spec.channels], dtype=np.float32)
    longest = float(score.length.max()) if len(score.length) else 0.0
    block = BLOCK_S * rate
    for index, first in enumerate(range(0, spec.frames, block)):
        count = min(block, spec.frames - first)
        begin, stop = first / rate, (first + count) / rate
        mono = np.zeros(count, dtype=np.float32)
        lo, hi = np.searchsorted(score.start, [begin - longest, stop])
        for k in range(lo, hi):
            start, length = score.start[k], score.length[k]
            i0 = max(0, int(np.ceil((start - begin) * rate)))
            i1 = min(count, int(np.ceil((start + length - begin) * rate)))
            if i1 > i0:
                tau = (first + np.arange(i0, i1)) / rate - start  # seconds into the syllable
                mono[i0:i1] += score.gain[k] * _syllable(
                    spec.voice.shape, tau, length, score.f0[k], score.f1[k]
                )
        rng = np.random.default_rng([spec.variation, index])
        if spec.mp3_quirk == "vbr_no_xing" and index == 0:
            # Handling noise at the start: the first mp3 frames get a high bitrate, so libsndfile's
            # size/first-frame estimate of the length comes out far too short once Xing is gone.
            burst = min(count, rate // 2)
            mono[:burst] += 0.5 * rng.standard_normal(burst)
        if spec.background == "field":
            noise = np.tile(_field_noise(spec, index, first, count)[:, None], (1, spec.channels))
        else:
            noise = (rng.random((count, spec.channels), dtype=np.float32) - 0.5) * (2 * noise_level)
        yield np.clip(mono[:, None] * gains + noise, -1.0, 1.0)


# -- encoding --------------------------------------------------------------------------------------
_MP3_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MP3_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mp3_frame_length(header: bytes) -> int:
    """Bytes in the MPEG layer III frame that starts with `header` (4 bytes)."""
    word = int.from_bytes(header[:4], "big")
    if word >> 21 != 0x7FF:
        raise ValueError("not at an mp3 frame")
    version, bitrate_index = (word >> 19) & 3, (word >> 12) & 15
    rate, padding = _MP3_RATES[version][(word >> 10) & 3], (word >> 9) & 1
    if version == 3:
        return 144 * _MP3_BITRATES_V1[bitrate_index] * 1000 // rate + padding
    return 72 * _MP3_BITRATES_V2[bitrate_index] * 1000 // rate + padding


def _encode_mp3(spec: AudioSpec, audio: Iterable[np.ndarray], *, constant: bool = False) -> bytes:
    buffer = io.BytesIO()
    options = {"compression_level": 0.5, "bitrate_mode": "CONSTANT"} if constant else {}
    with sf.SoundFile(
        buffer, "w", spec.sample_rate, spec.channels, format="MP3", subtype="MPEG_LAYER_III", **options
    ) as out:
        for block in audio:
            out.write(block)
    return buffer.getvalue()


def _without_first_frame(mp3: bytes) -> bytes:
    """Drop the first frame, which is the one LAME fills with the Xing/Info tag."""
    return mp3[mp3_frame_length(mp3) :]


def _id3_cover_tag(spec: AudioSpec) -> bytes:
    """An ID3v2.3 tag with a title and ~200 KB of (pseudo-JPEG) cover art, as phones and DAWs write."""

    def frame(frame_id: str, payload: bytes) -> bytes:
        return frame_id.encode() + len(payload).to_bytes(4, "big") + b"\0\0" + payload

    art = random.Random(f"cover:{spec.variation}").randbytes(200_000)
    picture = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + art + b"\xff\xd9"
    frames = frame("TIT2", b"\0Sandbox recording") + frame("APIC", b"\0image/jpeg\0\x03cover\0" + picture)
    size = len(frames)
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe + frames


def _mp3_bytes(spec: AudioSpec) -> bytes:
    if spec.mp3_quirk == "vbr_no_xing":
        # docs/audio.md: VBR segments, each without its Xing frame, concatenated.
        return b"".join(_without_first_frame(_encode_mp3(spec, [block])) for block in blocks(spec))
    if spec.mp3_quirk == "id3_cover":
        return _id3_cover_tag(spec) + _without_first_frame(_encode_mp3(spec, blocks(spec), constant=True))
    return _encode_mp3(spec, blocks(spec))


def _m4a_bytes(spec: AudioSpec) -> bytes:
    """AAC in an .m4a container, encoded by FFmpeg's AAC encoder (through PyAV), as a phone app uploads it."""
    import av  # imported here: only the iNaturalist sounds are AAC

    buffer = io.BytesIO()
    layout = "mono" if spec.channels == 1 else "stereo"
    with av.open(buffer, "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=spec.sample_rate, layout=layout)
        for block in blocks(spec):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.T), format="fltp", layout=layout)
            frame.sample_rate = spec.sample_rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def render(spec: AudioSpec, path: Path) -> None:
    """Write the file `spec` describes to `path` (wav and flac block by block, mp3 and m4a in memory:
    they are small)."""
    if spec.format == "mp3":
        path.write_bytes(_mp3_bytes(spec))
        return
    if spec.format == "m4a":
        path.write_bytes(_m4a_bytes(spec))
        return
    with sf.SoundFile(
        path, "w", spec.sample_rate, spec.channels, format=spec.format.upper(), subtype="PCM_16"
    ) as out:
        for block in blocks(spec):
            out.write(block)


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/birdgrab-sandbox/<tag>`: the tag changes with anything that changes the bytes."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = hashlib.sha256(f"{RENDER_VERSION}|{sf.__libsndfile_version__}|{np.__version__}".encode())
    return root / "birdgrab-sandbox" / tag.hexdigest()[:12]


class AudioCache:
    """Rendered files under `root`, one per spec, made on first use.

    Thread-safe (one lock per file, so different files render in parallel) and atomic across
    processes (rendered to a temporary file, then renamed into place).
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def path(self, spec: AudioSpec | AudioFile) -> Path:
        """The file to serve for `spec`: an `AudioFile` is its own, a synthetic spec is rendered once."""
        if isinstance(spec, AudioFile):
            return spec.path
        target = self.root / f"{spec.digest}.{spec.format}"
        if target.exists():
            return target
        with self._locks_guard:
            lock = self._locks.setdefault(spec.digest, threading.Lock())
        with lock:
            if not target.exists():
                self.root.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=self.root)
                os.close(fd)
                temp = Path(name)
                try:
                    render(spec, temp)
                    commit_temp(temp, target)
                finally:
                    temp.unlink(missing_ok=True)
        return target
