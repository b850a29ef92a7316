"""The real-encoder fixture corpus (tests/fixtures/audio): its source signal, the byte edits made at test
time, and the reference decode counts recorded when the corpus was made.

Every fixture encodes `source_signal(seed, rate, channels, seconds)`; a correctly aligned decode
correlates with it at lag 0, and a shifted one (a missed encoder delay, a wrong rate) does not.
`scripts/make_audio_fixtures.py` encodes the files with LAME, FFmpeg, flac and sox and writes
`reference.json`: for every kind (edited ones included) the sample count FFmpeg's own command-line
decode gives, which is the truth these tests hold birdgrab to.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures" / "audio"
REFERENCE = FIXTURES / "reference.json"


def source_signal(seed: int, sample_rate: int, channels: int, seconds: float) -> np.ndarray:
    """Float32 (frames, channels): downward chirps in 400 Hz..0.3 x rate over faint noise, different per channel.

    Chirps change pitch fast, so a decode shifted by a fraction of a millisecond no longer lines up.
    """
    rng = np.random.default_rng(seed)
    frames = round(seconds * sample_rate)
    out = np.zeros((frames, channels), dtype=np.float64)
    top = min(0.3 * sample_rate, 6000.0)
    t = np.arange(round(0.15 * sample_rate)) / sample_rate
    for channel in range(channels):
        start = rng.uniform(0.0, 0.1)
        while start + 0.15 < seconds:
            high = rng.uniform(0.6, 1.0) * top
            low = max(400.0, high * rng.uniform(0.2, 0.5))
            phase = 2 * np.pi * np.cumsum(high * (low / high) ** (t / t[-1])) / sample_rate
            first = round(start * sample_rate)
            out[first : first + len(t), channel] += rng.uniform(0.2, 0.4) * np.hanning(len(t)) * np.sin(phase)
            start += rng.uniform(0.17, 0.3)
        out[:, channel] += 0.01 * rng.standard_normal(frames)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- byte edits


def id3v2_tag(text: str, padding: int = 0) -> bytes:
    """A minimal ID3v2.3 tag with one TIT2 frame (and `padding` zero bytes), as tag writers make."""
    payload = b"\x03" + text.encode()
    frame = b"TIT2" + struct.pack(">I", len(payload)) + b"\x00\x00" + payload
    body = frame + bytes(padding)
    size = len(body)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + body


def id3v1_tag() -> bytes:
    return b"TAG" + b"Song".ljust(30, b"\0") + b"Recordist".ljust(30, b"\0") + bytes(30 + 4 + 30) + b"\xff"


def apev2_tag() -> bytes:
    """An APEv2 tag with header and footer holding one item, as foobar2000 and mp3gain write."""
    item = struct.pack("<II", 5, 0) + b"Title\0" + b"Chirp"
    size = len(item) + 32

    def block(flags: int) -> bytes:
        return b"APETAGEX" + struct.pack("<IIII", 2000, size, 1, flags) + bytes(8)

    return block(0xA0000000) + item + block(0x80000000)


def lyrics3v2_tag() -> bytes:
    body = b"LYRICSBEGIN" + b"IND00002" + b"00"
    return body + f"{len(body):06d}".encode() + b"LYRICS200"


def _riff_chunk(name: bytes, payload: bytes) -> bytes:
    return name + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")


def _wav_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, id, size) of each chunk of a RIFF WAVE file whose sizes are intact."""
    chunks, position = [], 12
    while position + 8 <= len(data):
        name, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        chunks.append((position, name, size))
        position += 8 + size + (size & 1)
    return chunks


def with_broadcast_chunks(data: bytes) -> bytes:
    """Insert bext, an odd-sized iXML, JUNK and LIST chunks before `data`, as field recorders write them."""
    data_offset = next(offset for offset, name, _ in _wav_chunks(data) if name == b"data")
    extra = (
        _riff_chunk(b"bext", b"Zoom F3".ljust(256, b"\0") + bytes(346))
        + _riff_chunk(b"iXML", b"<BWFXML><PROJECT>dawn</PROJECT></BWFXML>")  # 41 bytes: odd
        + _riff_chunk(b"JUNK", bytes(28))
        + _riff_chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 5) + b"sox\0\0\0")
    )
    out = data[:data_offset] + extra + data[data_offset:]
    return out[:4] + struct.pack("<I", len(out) - 8) + out[8:]


def with_wav_sizes(data: bytes, riff: int | None, data_size: int | None) -> bytes:
    """Overwrite the RIFF and/or data chunk size fields (None: leave it)."""
    out = bytearray(data)
    if riff is not None:
        out[4:8] = struct.pack("<I", riff)
    if data_size is not None:
        offset = next(offset for offset, name, _ in _wav_chunks(data) if name == b"data")
        out[offset + 4 : offset + 8] = struct.pack("<I", data_size)
    return bytes(out)


def _first_frame(data: bytes) -> int:
    position = 0
    while data.startswith(b"ID3", position):
        size = data[position + 6 : position + 10]
        position += 10 + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])
    return position


def without_leading_tags(data: bytes) -> bytes:
    return data[_first_frame(data) :]


Edit = Callable[[bytes], bytes]

EDITS: dict[str, Edit] = {
    "leading_zeros": lambda data: bytes(2048) + without_leading_tags(data),
    "leading_junk": lambda data: (
        np.random.default_rng(7).integers(0, 0xE0, 1500, dtype=np.uint8).tobytes()
        + without_leading_tags(data)
    ),
    "two_id3v2": lambda data: id3v2_tag("first", 100) + id3v2_tag("second", 300) + without_leading_tags(data),
    "id3v2_big": lambda data: id3v2_tag("cover", 60_000) + without_leading_tags(data),
    "id3v1_tail": lambda data: data + id3v1_tag(),
    "ape_id3v1_tail": lambda data: data + apev2_tag() + id3v1_tag(),
    "lyrics_id3v1_tail": lambda data: data + lyrics3v2_tag() + id3v1_tag(),
    "behind_id3v2": lambda data: id3v2_tag("flac with a tag", 500) + data,
    "bwf_chunks": with_broadcast_chunks,
    "riff_size_0": lambda data: with_wav_sizes(data, 0, None),
    "sizes_0": lambda data: with_wav_sizes(data, 0, 0),
    "sizes_ffffffff": lambda data: with_wav_sizes(data, 0xFFFFFFFF, 0xFFFFFFFF),
    "bw64": lambda data: b"BW64" + data[4:],
}


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Kind:
    """One kind of file: the encoded fixture it starts from and the byte edit made at test time."""

    name: str
    base: str  # file name under tests/fixtures/audio
    edit: str | None
    frames: int  # FFmpeg's decode of the unedited file: frames per channel
    ffmpeg_frames: int  # FFmpeg's decode of the edited bytes (differs where FFmpeg misses a LAME tag)
    sample_rate: int
    channels: int
    lag: int  # samples the reference decode lags the source by (codec delay no header declares)
    correlation: float  # the reference decode's lag-0 correlation with the source shifted by `lag`
    seed: int  # the source signal
    source_rate: int
    source_channels: int
    seconds: float

    def data(self) -> bytes:
        raw = (FIXTURES / self.base).read_bytes()
        return EDITS[self.edit](raw) if self.edit else raw

    def write(self, folder: Path, name: str | None = None) -> Path:
        path = folder / (name or f"{self.name}.part")
        path.write_bytes(self.data())
        return path

    def source(self) -> np.ndarray:
        return source_signal(self.seed, self.source_rate, self.source_channels, self.seconds)


def corpus() -> dict[str, Kind]:
    """Every kind in reference.json, by name."""
    reference = json.loads(REFERENCE.read_text())
    return {name: Kind(name=name, **fields) for name, fields in reference["kinds"].items()}


def lag0_correlation(decoded: np.ndarray, reference: np.ndarray) -> float:
    """Pearson correlation of two mono signals over their common length, without shifting either."""
    n = min(len(decoded), len(reference))
    a, b = decoded[:n].astype(np.float64), reference[:n].astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))
