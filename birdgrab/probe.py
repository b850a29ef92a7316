"""What a file holds, from its bytes alone: is it audio, which format, where the audio is, how long it is.

Cheap enough to verify every download before it enters the cache: it reads headers and walks
frame headers, decoding nothing. The type comes from the content, never from the name (downloads
are probed while still named `.part`):

- MPEG audio of every version and layer (mp3, mp2, mp1) by frame sync: two consecutive valid
  headers, found past leading zeros, junk and any number of ID3v2 tags; ADTS AAC the same way;
- FLAC, WAV (RIFF, RF64, BW64), Ogg and MP4/M4A by their magic, also behind ID3v2 tags;
- ID3v1, APEv2, Lyrics3 and ID3v2-footer tails are cut off, so no decoder ever sees them.

`AudioInfo.audio_start`/`audio_end` say which bytes hold the audio; the decoders read only those.
Lengths are what FFmpeg's decode of those bytes gives (gapless mp3: the LAME/Info encoder delay and
padding removed), or are marked `duration_estimated` where only a decode could tell.
"""

from __future__ import annotations

import dataclasses
import functools
import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import mutagen
import mutagen.oggopus
import mutagen.oggvorbis
import numpy as np

from birdgrab.errors import BirdgrabError

AudioFormat = Literal["mp3", "mp2", "mp1", "aac", "m4a", "wav", "flac", "ogg"]

# FFmpeg's demuxer for each sniffed format: named, so FFmpeg never second-guesses the sniffer.
DEMUXERS: dict[AudioFormat, str] = {
    "mp3": "mp3",
    "mp2": "mp3",
    "mp1": "mp3",
    "aac": "aac",
    "m4a": "mov",
    "wav": "wav",
    "flac": "flac",
    "ogg": "ogg",
}

_SYNC_SCAN_BYTES = 1 << 20  # how far past the tags frame sync looks for the first frame
_CONFIRM_AT_START = 2  # consecutive frames that make a stream when they start right after the tags
_CONFIRM_AFTER_JUNK = 4  # ... and when junk had to be skipped to find them (random bytes fake two)


class AudioError(BirdgrabError):
    """A file is not audio, or not decodable audio; `reason` says why in a few words."""

    def __init__(self, reason: str, path: Path | str | None = None):
        super().__init__(f"{path}: {reason}" if path is not None else reason)
        self.reason = reason
        self.path = path

    def __reduce__(self) -> tuple:
        return (type(self), (self.reason, self.path))


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its bytes without decoding it.

    `duration_s` is the length a decode gives, unless `duration_estimated` (then it is the
    container's figure). The audio is in bytes [`audio_start`, `audio_end`) (None: to the end).
    """

    format: AudioFormat
    duration_s: float
    sample_rate: int
    channels: int
    duration_estimated: bool = False
    audio_start: int = 0
    audio_end: int | None = None


# --------------------------------------------------------------------------- tags


def _id3v2_size(data: bytes | mmap.mmap, position: int) -> int:
    """Total size of an ID3v2 tag at `position` (footer included), or 0 if there is none."""
    head = data[position : position + 10]
    if len(head) < 10 or head[:3] != b"ID3" or head[3] == 0xFF or any(b & 0x80 for b in head[6:10]):
        return 0
    size = head[6] << 21 | head[7] << 14 | head[8] << 7 | head[9]
    return 10 + size + (10 if head[5] & 0x10 else 0)


def _after_leading_tags(data: bytes | mmap.mmap, position: int = 0) -> int:
    """The first byte after any number of ID3v2 tags at `position`."""
    while size := _id3v2_size(data, position):
        position += size
    return position


def _before_trailing_tags(data: bytes | mmap.mmap, start: int, end: int) -> int:
    """The end of the audio once ID3v1, APEv2, Lyrics3 and ID3v2 tags at the end are cut off."""
    while True:
        if end - start >= 128 and data[end - 128 : end - 125] == b"TAG":
            end -= 128
        elif end - start >= 32 and data[end - 32 : end - 24] == b"APETAGEX":
            size, flags = struct.unpack("<I4xI", data[end - 20 : end - 8])  # size counts the footer only
            end -= size + (32 if flags & 0x80000000 else 0)
        elif end - start >= 15 and data[end - 9 : end] == b"LYRICS200" and data[end - 15 : end - 9].isdigit():
            end -= int(data[end - 15 : end - 9]) + 15
        elif end - start >= 10 and data[end - 10 : end - 7] == b"3DI":
            footer = data[end - 10 : end]
            end -= 20 + (footer[6] << 21 | footer[7] << 14 | footer[8] << 7 | footer[9])
        else:
            return max(end, start)


# --------------------------------------------------------------------------- MPEG audio and ADTS


@dataclass(frozen=True)
class _Frame:
    """One MPEG audio (or ADTS) frame header."""

    length: int  # bytes, header included
    samples: int  # per channel
    sample_rate: int
    channels: int
    stream: int  # the header bits every frame of one stream shares (version, layer, rate)
    layer: int  # 1-3; 0 for ADTS
    mpeg1: bool


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
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _mpeg_frame(header: bytes) -> _Frame | None:
    """Decode an MPEG audio frame header (its first 4 bytes); None if it is not one, or is free format
    (which has no frame length)."""
    return _mpeg_header(header[:4])


@functools.lru_cache(maxsize=1024)  # a file repeats a handful of headers thousands of times
def _mpeg_header(header: bytes) -> _Frame | None:
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3 or header[3] & 3 == 2:
        return None
    layer, mpeg1 = 4 - layer_bits, version == 3
    samples = 384 if layer == 1 else 1152 if layer == 2 or mpeg1 else 576
    sample_rate = _MPEG1_RATES[rate_index] // _RATE_DIVISOR[version]
    bitrate = _MPEG_KBPS[(mpeg1, layer)][bitrate_index] * 1000
    if layer == 1:
        length = (12 * bitrate // sample_rate + padding) * 4
    else:
        length = samples // 8 * bitrate // sample_rate + padding
    channels = 1 if header[3] >> 6 == 3 else 2
    return _Frame(
        length, samples, sample_rate, channels, (header[1] & 0xFE) << 8 | header[2] & 0x0C, layer, mpeg1
    )


@functools.lru_cache(maxsize=1024)
def _adts_frame(header: bytes) -> _Frame | None:
    """Decode the first 6 bytes of an ADTS (raw AAC) frame header; None if it is not one."""
    if len(header) < 6 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0:
        return None
    rate_index, channel_config = (header[2] >> 2) & 0xF, (header[2] & 1) << 2 | header[3] >> 6
    length = (header[3] & 3) << 11 | header[4] << 3 | header[5] >> 5
    if rate_index >= len(_ADTS_RATES) or length < 7:
        return None
    stream = header[1] << 8 | header[2] & 0xFC
    return _Frame(length, 1024, _ADTS_RATES[rate_index], channel_config or 2, stream, 0, False)


_FrameParser = Callable[[bytes], "_Frame | None"]


def _confirmed(data: mmap.mmap, position: int, end: int, parse: _FrameParser, needed: int) -> bool:
    """Whether `needed` consecutive frames of one stream start at `position` (or fill the audio to `end`)."""
    first = parse(data[position : position + 6])
    if first is None:
        return False
    for _ in range(needed):
        frame = parse(data[position : position + 6])
        if frame is None or frame.stream != first.stream:
            return False
        position += frame.length
        if position >= end:
            return position == end
    return True


def _frame_sync(data: mmap.mmap, start: int, end: int, parse: _FrameParser) -> int | None:
    """Offset of the first frame of a stream at or after `start`, scanning at most `_SYNC_SCAN_BYTES`."""
    if _confirmed(data, start, end, parse, _CONFIRM_AT_START):
        return start
    if end - start < 2:
        return None
    window = np.frombuffer(
        data, dtype=np.uint8, count=min(end, start + _SYNC_SCAN_BYTES) - start, offset=start
    )
    candidates = np.flatnonzero((window[:-1] == 0xFF) & (window[1:] >= 0xE0)) + start
    del window  # a view of the mapping: it must be gone before the mapping closes
    return next(
        (int(c) for c in candidates if _confirmed(data, int(c), end, parse, _CONFIRM_AFTER_JUNK)), None
    )


def _walk(data: mmap.mmap, start: int, end: int, parse: _FrameParser) -> tuple[int, _Frame, _Frame, int]:
    """Walk the frames in [start, end), resyncing past junk as decoders do.

    Returns (frames, first frame, last frame, samples); a truncated last frame is not counted.
    """
    first = parse(data[start : start + 6])
    assert first is not None
    position, frames, samples, last = start, 0, 0, first
    while position < end:
        frame = parse(data[position : position + 6])
        if frame is None or frame.stream != first.stream:
            found = _frame_sync(data, position + 1, end, parse)
            if found is None:
                break
            position = found
            continue
        if position + frame.length > end:
            break
        frames, samples, last = frames + 1, samples + frame.samples, frame
        position += frame.length
    return frames, first, last, samples


_XING_OFFSET = {(True, 2): 32, (True, 1): 17, (False, 2): 17, (False, 1): 9}  # side info: (MPEG-1, channels)
_GAPLESS_ENCODERS = (b"LAME", b"Lavf", b"Lavc")
_DECODER_DELAY = 529  # samples an MPEG layer III decoder outputs before the encoder's first sample


@dataclass(frozen=True)
class _InfoTag:
    """A Xing/Info or VBRI frame: it holds no audio; LAME's extension says how much to trim."""

    frames: int  # audio frames the tag counts (0: not given)
    start_pad: int
    end_pad: int
    gapless: bool


def _info_tag(frame_bytes: bytes, frame: _Frame) -> _InfoTag | None:
    """Read the Xing/Info (with LAME extension) or VBRI tag of a first layer III frame, as FFmpeg does."""
    if frame.layer != 3:
        return None
    at = 4 + _XING_OFFSET[(frame.mpeg1, frame.channels)]
    if frame_bytes[at : at + 4] in (b"Xing", b"Info"):
        flags = int.from_bytes(frame_bytes[at + 4 : at + 8], "big")
        position, frames = at + 8, 0
        if flags & 1:
            frames = int.from_bytes(frame_bytes[position : position + 4], "big")
            position += 4
        position += (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
        encoder = frame_bytes[position : position + 4]
        delays = int.from_bytes(frame_bytes[position + 21 : position + 24], "big")
        gapless = encoder in _GAPLESS_ENCODERS and len(frame_bytes) >= position + 24
        return _InfoTag(frames, delays >> 12 if gapless else 0, delays & 0xFFF if gapless else 0, gapless)
    if frame_bytes[36:40] == b"VBRI" and frame_bytes[40:42] == b"\x00\x01":
        return _InfoTag(int.from_bytes(frame_bytes[50:54], "big"), 0, 0, False)
    return None


def _decoded_mpeg_samples(tag: _InfoTag | None, decoded: int, samples_per_frame: int) -> int:
    """Samples FFmpeg keeps of `decoded`: the encoder delay skipped, the padding inside the counted frames cut."""
    if tag is None or not tag.gapless:
        return decoded
    skip = min(tag.start_pad + _DECODER_DELAY, decoded)
    if not tag.frames:
        return decoded - skip
    discard_from = tag.frames * samples_per_frame - tag.end_pad + _DECODER_DELAY
    discard_to = tag.frames * samples_per_frame
    discarded = max(0, min(discard_to, decoded) - max(discard_from, skip))
    return decoded - skip - discarded


def _mpeg_info(path: Path, data: mmap.mmap, start: int, end: int, parse: _FrameParser) -> AudioInfo:
    first = parse(data[start : start + 6])
    assert first is not None
    tag = _info_tag(data[start : start + first.length], first) if parse is _mpeg_frame else None
    audio_start = start + first.length if tag is not None else start
    frames, _, _, decoded = _walk(data, audio_start, end, parse)
    if parse is _adts_frame:
        audio_format: AudioFormat = "aac"
    else:
        audio_format = {1: "mp1", 2: "mp2", 3: "mp3"}[first.layer]  # type: ignore[assignment]
    if frames == 0:
        raise AudioError(f"corrupt {audio_format}: no valid frames")
    seconds = _decoded_mpeg_samples(tag, decoded, first.samples) / first.sample_rate
    if audio_format == "aac":
        # HE-AAC decodes at twice the rate its headers name: FFmpeg knows once it has looked.
        declared = _container_info(path, "aac", start, end)
        return dataclasses.replace(declared, duration_s=seconds)
    return AudioInfo(
        audio_format, seconds, first.sample_rate, first.channels, audio_start=start, audio_end=end
    )


# --------------------------------------------------------------------------- WAV


_EXACT_WAV_CODECS = {1, 3, 6, 7}  # PCM, IEEE float, A-law, mu-law: frames are data bytes / block align
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers and recorders that lost power leave these


def _wav_info(data: mmap.mmap) -> AudioInfo:
    """Walk the chunks of a RIFF, RF64 or BW64 WAVE file (odd sizes padded, as the spec says)."""
    size = len(data)
    ds64_data_size: int | None = None
    fmt: tuple[int, int, int, int, int] | None = None  # codec, channels, rate, byte rate, block align
    position = 12
    while position + 8 <= size:
        chunk, length = (
            data[position : position + 4],
            struct.unpack("<I", data[position + 4 : position + 8])[0],
        )
        body = position + 8
        if chunk == b"ds64" and length >= 16:
            ds64_data_size = struct.unpack("<Q", data[body + 8 : body + 16])[0]
        elif chunk == b"fmt " and length >= 16:
            codec, channels, rate, byte_rate, block_align = struct.unpack("<HHIIH", data[body : body + 14])
            if codec == 0xFFFE and length >= 40:
                codec = struct.unpack("<H", data[body + 24 : body + 26])[0]
            fmt = (codec, channels, rate, byte_rate, block_align)
        elif chunk == b"data":
            if fmt is None:
                raise AudioError("corrupt wav: no fmt chunk before the audio")
            if length == 0xFFFFFFFF and ds64_data_size is not None:
                length = ds64_data_size
            if length in _UNKNOWN_SIZES or body + length > size:
                length = size - body  # the data runs to the end of the file
            return _wav_audio(fmt, length, body)
        position = body + length + (length & 1)
        if length in _UNKNOWN_SIZES and chunk != b"fmt ":
            break
    raise AudioError("corrupt wav: no data chunk" if fmt else "corrupt wav: no fmt chunk")


def _wav_audio(fmt: tuple[int, int, int, int, int], data_bytes: int, data_start: int) -> AudioInfo:
    codec, channels, rate, byte_rate, block_align = fmt
    if channels == 0 or rate == 0 or block_align == 0:
        raise AudioError(f"corrupt wav: header says {rate} Hz, {channels} channels")
    if codec in _EXACT_WAV_CODECS:
        return AudioInfo("wav", data_bytes // block_align / rate, rate, channels, audio_start=0)
    seconds = data_bytes / byte_rate if byte_rate else 0.0
    return AudioInfo("wav", seconds, rate, channels, duration_estimated=True)


# --------------------------------------------------------------------------- FLAC, Ogg, MP4


def _flac_info(path: Path, data: mmap.mmap, start: int, end: int) -> AudioInfo:
    """STREAMINFO's rate, channels and total samples; a stream that left the total out is counted frame by frame."""
    block = data[start + 4 : start + 8]
    if len(data) < start + 42 or block[0] & 0x7F != 0 or int.from_bytes(block[1:4], "big") < 34:
        raise AudioError("corrupt flac: unreadable header (no STREAMINFO)")
    info = int.from_bytes(data[start + 18 : start + 26], "big")
    rate, channels, total = info >> 44, ((info >> 41) & 7) + 1, info & 0xF_FFFF_FFFF
    if rate == 0:
        raise AudioError("corrupt flac: unreadable header (0 Hz)")
    if total == 0:
        total = _counted_samples(path, start, end)
    return AudioInfo("flac", total / rate, rate, channels, audio_start=start, audio_end=end)


def _counted_samples(path: Path, start: int, end: int) -> int:
    """Samples in a stream, from its packets' durations: demuxing only, no decoding."""
    from birdgrab.containers import open_container  # PyAV loads only for the files that need it

    try:
        with open_container(path, start, end, DEMUXERS["flac"]) as container:
            stream = container.streams.audio[0]
            return sum(packet.duration or 0 for packet in container.demux(stream))
    except Exception as exc:  # PyAV raises its own error types for every kind of bad data
        raise AudioError(f"corrupt flac: unreadable frames ({exc})") from exc


def _ogg_info(path: Path) -> AudioInfo:
    try:
        tagged = mutagen.File(path, options=[mutagen.oggvorbis.OggVorbis, mutagen.oggopus.OggOpus])
    except (mutagen.MutagenError, ValueError, EOFError) as exc:
        raise AudioError(f"corrupt ogg: unreadable header ({exc})") from exc
    if tagged is None:
        return _container_info(path, "ogg")  # FLAC or Speex in Ogg: FFmpeg reads them
    # Opus always decodes at 48 kHz, so mutagen does not report a rate for it.
    rate = int(getattr(tagged.info, "sample_rate", 48000))
    if rate <= 0 or tagged.info.channels <= 0:
        raise AudioError(f"corrupt ogg: header says {rate} Hz, {tagged.info.channels} channels")
    return AudioInfo("ogg", float(tagged.info.length), rate, int(tagged.info.channels))


def _container_info(
    path: Path, audio_format: AudioFormat, start: int = 0, end: int | None = None
) -> AudioInfo:
    """Rate, channels and the container's declared length (an estimate: AAC's padding is decoded too)."""
    from birdgrab.containers import open_container

    try:
        with open_container(path, start, end, DEMUXERS[audio_format]) as container:
            if not container.streams.audio:
                raise AudioError(f"not audio: {audio_format} file without an audio track")
            stream = container.streams.audio[0]
            duration = (
                float(stream.duration * stream.time_base)
                if stream.duration and stream.time_base
                else (container.duration or 0) / 1e6
            )
            rate, channels = stream.rate, stream.channels
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"corrupt {audio_format}: unreadable header ({exc})") from exc
    if not rate or not channels:
        raise AudioError(f"corrupt {audio_format}: header says {rate} Hz, {channels} channels")
    return AudioInfo(
        audio_format, duration, rate, channels, duration_estimated=True, audio_start=start, audio_end=end
    )


# --------------------------------------------------------------------------- sniffing


def _container_at(head: bytes) -> AudioFormat | None:
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":
        return "m4a"
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


def _probe_bytes(path: Path, data: mmap.mmap) -> AudioInfo:
    start = _after_leading_tags(data)
    container = _container_at(data[start : start + 12])
    if container == "wav" and start == 0:
        return _wav_info(data)
    if container == "flac":
        return _flac_info(path, data, start, _before_trailing_tags(data, start, len(data)))
    if container == "ogg" and start == 0:
        return _ogg_info(path)
    if container == "m4a" and start == 0:
        return _container_info(path, "m4a")
    end = _before_trailing_tags(data, start, len(data))
    for parse in (_mpeg_frame, _adts_frame):
        first = _frame_sync(data, start, end, parse)
        if first is not None:
            return _mpeg_info(path, data, first, end, parse)
    if start:
        raise AudioError("corrupt mp3: no valid frames")  # an ID3 tag announces MPEG audio
    raise AudioError(_not_audio_reason(data[:512]))


def probe(path: Path | str) -> AudioInfo:
    """Check that `path` is audio; read its format, length, sample rate, channels and where the audio is.

    Cheap enough to verify every download before it enters the cache: it reads headers and walks
    frame headers but decodes nothing. Raises `AudioError` for anything else, e.g.
    "not audio: looks like an HTML page" or "corrupt mp3: no valid frames".

    >>> probe("XC123456.mp3")  # doctest: +SKIP
    AudioInfo(format='mp3', duration_s=61.2, sample_rate=44100, channels=2, duration_estimated=False, ...)
    """
    path = Path(path)
    with open(path, "rb") as handle:
        if handle.seek(0, 2) == 0:
            raise AudioError("not audio: empty file", path)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                info = _probe_bytes(path, data)
            except AudioError as exc:
                raise AudioError(exc.reason, path) from exc
            if info.audio_end == len(data):
                info = dataclasses.replace(info, audio_end=None)  # no tail: decoders read the file itself
    if info.duration_s <= 0 and not info.duration_estimated:
        raise AudioError(f"no audio: the {info.format} file holds 0 samples", path)
    return info
