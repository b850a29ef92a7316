"""What a file holds, from its headers alone: is it audio, which format, how long, what rate.

Cheap enough to verify every download before it enters the cache, and light to import (mutagen
only): `fetch` needs this, not the decoders. The type comes from the first bytes, never the name.
"""

from __future__ import annotations

import functools
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import mutagen
import mutagen.flac
import mutagen.mp3
import mutagen.oggopus
import mutagen.oggvorbis
import mutagen.wave

from birdgrab.errors import BirdgrabError

AudioFormat = Literal["mp3", "wav", "flac", "ogg"]

_HEAD_BYTES = 512
_MUTAGEN_TYPES: dict[AudioFormat, list[type[mutagen.FileType]]] = {
    "mp3": [mutagen.mp3.MP3],
    "wav": [mutagen.wave.WAVE],
    "flac": [mutagen.flac.FLAC],
    "ogg": [mutagen.oggvorbis.OggVorbis, mutagen.oggopus.OggOpus],
}


class AudioError(BirdgrabError):
    """A file is not audio, or not decodable audio; `reason` says why in a few words."""

    def __init__(self, reason: str, path: Path | str | None = None):
        super().__init__(f"{path}: {reason}" if path is not None else reason)
        self.reason = reason
        self.path = path


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its headers without decoding it."""

    format: AudioFormat
    duration_s: float
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class _MpegFrame:
    length: int  # bytes, header included
    samples: int  # per channel
    sample_rate: int


# Bitrates in kbit/s by (is MPEG-1, layer), indexed by the header's 4-bit bitrate field (0 = free format).
_MPEG_KBPS: dict[tuple[bool, int], tuple[int, ...]] = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG1_RATES = (44100, 48000, 32000)
_RATE_DIVISOR = {3: 1, 2: 2, 0: 4}  # version field: MPEG-1, MPEG-2, MPEG-2.5
_VBR_TAGS = (b"Xing", b"Info", b"VBRI")


@functools.lru_cache(maxsize=512)  # a file repeats a handful of headers thousands of times
def _mpeg_frame(header: bytes) -> _MpegFrame | None:
    """Decode a 4-byte MPEG audio frame header; None if it is not one (or is free format, which has no length)."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer, mpeg1 = 4 - layer_bits, version == 3
    samples = 384 if layer == 1 else 1152 if layer == 2 or mpeg1 else 576
    sample_rate = _MPEG1_RATES[rate_index] // _RATE_DIVISOR[version]
    bitrate = _MPEG_KBPS[(mpeg1, layer)][bitrate_index] * 1000
    slot = 4 if layer == 1 else 1
    return _MpegFrame(samples // 8 * bitrate // sample_rate + padding * slot, samples, sample_rate)


def sniff_format(first_bytes: bytes) -> AudioFormat | None:
    """The audio format a file's first bytes announce (16 are enough), or None.

    >>> sniff_format(b"fLaC\\x00\\x00\\x00\\x22")
    'flac'
    >>> sniff_format(b"<!DOCTYPE html>") is None
    True
    """
    if first_bytes.startswith(b"ID3") or _mpeg_frame(first_bytes[:4]) is not None:
        return "mp3"
    if first_bytes[:4] in (b"RIFF", b"RF64") and first_bytes[8:12] == b"WAVE":
        return "wav"
    if first_bytes.startswith(b"fLaC"):
        return "flac"
    if first_bytes.startswith(b"OggS"):
        return "ogg"
    return None


def _not_audio_reason(first_bytes: bytes) -> str:
    """A few words on what a non-audio file looks like, for the person reading the error."""
    text = first_bytes.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not first_bytes:
        return "not audio: empty file"
    if any(marker in text for marker in (b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not audio: looks like an HTML page"
    if text.startswith(b"<"):
        return "not audio: looks like an XML document"
    if text[:1] in (b"{", b"["):
        return "not audio: looks like a JSON document"
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in text):
        return "not audio: looks like plain text"
    return f"not audio: unknown file type (starts with {first_bytes[:8].hex()})"


def _mp3_duration_s(path: Path, first_frame_offset: int) -> float:
    """Length from walking the frame headers: exact where mutagen guesses (no Xing header), no decoding.

    A leading Xing/Info/VBRI tag frame holds no audio and is not counted; the encoder's delay and
    padding (a few hundredths of a second) are. The walk stops at the first byte that is not a frame
    (an ID3v1 tag, junk, a truncated frame).
    """
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        position, samples, sample_rate = first_frame_offset, 0, 0
        while (frame := _mpeg_frame(data[position : position + 4])) is not None:
            if position + frame.length > len(data):
                break
            is_tag_frame = samples == 0 and any(tag in data[position : position + 64] for tag in _VBR_TAGS)
            if not is_tag_frame:
                samples += frame.samples
            sample_rate = frame.sample_rate
            position += frame.length
    return samples / sample_rate if sample_rate else 0.0


def probe(path: Path | str) -> AudioInfo:
    """Check that `path` is audio and read its format, duration, sample rate and channels from headers.

    Cheap enough to verify every download before it enters the cache: it reads headers (and, for
    mp3, walks the frame headers for an exact length) but decodes nothing. Raises `AudioError`
    for anything else, e.g. "not audio: looks like an HTML page" or "corrupt mp3: no valid frames".

    >>> probe("XC123456.mp3")  # doctest: +SKIP
    AudioInfo(format='mp3', duration_s=61.2, sample_rate=44100, channels=2)
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    audio_format = sniff_format(head)
    if audio_format is None:
        raise AudioError(_not_audio_reason(head), path)
    try:
        tagged = mutagen.File(path, options=_MUTAGEN_TYPES[audio_format])
    except mutagen.mp3.HeaderNotFoundError as exc:
        raise AudioError("corrupt mp3: no valid frames", path) from exc
    except (mutagen.MutagenError, ValueError, EOFError) as exc:
        raise AudioError(f"corrupt {audio_format}: unreadable header ({exc})", path) from exc
    if tagged is None:
        raise AudioError(f"unsupported {audio_format} stream (not Vorbis or Opus)", path)
    info = tagged.info
    # Opus always decodes at 48 kHz, so mutagen does not report a rate for it.
    sample_rate = int(getattr(info, "sample_rate", 48000))
    duration_s = float(info.length)
    if audio_format == "mp3":
        # Free-format streams have no frame lengths to walk; mutagen's estimate is all there is.
        duration_s = _mp3_duration_s(path, info.frame_offset) or duration_s
    if sample_rate <= 0 or info.channels <= 0:
        raise AudioError(
            f"corrupt {audio_format}: header says {sample_rate} Hz, {info.channels} channels", path
        )
    return AudioInfo(audio_format, duration_s, sample_rate, int(info.channels))
