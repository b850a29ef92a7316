"""Synthetic recordings and the mp3 traps of docs/audio.md, for the audio tests and bench.

Kept independent of birdgrab.audio on purpose: the frame parser here is the oracle the tests
compare birdgrab against.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import mutagen.id3
import numpy as np
import soundfile as sf

_MPEG1_LAYER3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG1_RATES = (44100, 48000, 32000)
MP3_FRAME_SAMPLES = 1152


def bird_song(seconds: float, sample_rate: int, *, seed: int) -> np.ndarray:
    """Mono float32 birdsong-like audio: phrases of downward chirps at random times over faint noise.

    Every call is the same "species" (chirps sweeping down from about 5 kHz to 2.8 kHz); `seed`
    picks the instance: phrase timings, pitch jitter, loudness and noise.
    """
    pitch_hz = 4000.0
    rng = np.random.default_rng(seed)
    samples = np.zeros(round(seconds * sample_rate), dtype=np.float64)
    chirp_s = 0.12
    chirp_t = np.arange(round(chirp_s * sample_rate)) / sample_rate
    envelope = np.hanning(len(chirp_t))
    start = rng.uniform(0.0, 0.5)
    while start + chirp_s < seconds:
        for _ in range(rng.integers(3, 7)):
            if start + chirp_s >= seconds:
                break
            high = pitch_hz * rng.uniform(1.15, 1.3)
            frequency = high * (pitch_hz * 0.7 / high) ** (chirp_t / chirp_s)
            phase = 2 * np.pi * np.cumsum(frequency) / sample_rate
            first = round(start * sample_rate)
            samples[first : first + len(chirp_t)] += rng.uniform(0.2, 0.5) * envelope * np.sin(phase)
            start += rng.uniform(0.18, 0.3)
        start += rng.uniform(0.5, 2.0)
    samples += 0.003 * rng.standard_normal(len(samples))
    return samples.astype(np.float32)


def tone(seconds: float, sample_rate: int, hz: float = 1000.0, level: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def mp3_bytes(samples: np.ndarray, sample_rate: int, bitrate_mode: str = "VARIABLE") -> bytes:
    """Encode with libsndfile's LAME, which starts the stream with a Xing tag frame.

    libsndfile applies `bitrate_mode` only together with a compression level.
    """
    buffer = io.BytesIO()
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with sf.SoundFile(
        buffer, "w", sample_rate, channels, format="MP3", compression_level=0.5, bitrate_mode=bitrate_mode
    ) as audio:
        audio.write(samples)
    return buffer.getvalue()


def _mp3_frame_length(header: bytes) -> int:
    assert header[0] == 0xFF and header[1] & 0xFE == 0xFA, f"not an MPEG-1 layer III frame: {header.hex()}"
    bitrate = _MPEG1_LAYER3_KBPS[header[2] >> 4] * 1000
    return 144 * bitrate // _MPEG1_RATES[(header[2] >> 2) & 3] + ((header[2] >> 1) & 1)


def without_first_frame(mp3: bytes) -> bytes:
    """Drop the first frame, which holds the Xing/Info tag: what is left is a header-less mp3."""
    return mp3[_mp3_frame_length(mp3[:4]) :]


def mp3_frame_count(mp3: bytes) -> int:
    position = frames = 0
    while position + 4 <= len(mp3):
        position += _mp3_frame_length(mp3[position : position + 4])
        frames += 1
    return frames


def write_vbr_mp3_without_xing(path: Path, segments: list[np.ndarray], sample_rate: int) -> float:
    """Encode each segment, strip its Xing frame and concatenate: a valid VBR mp3 libsndfile reads short.

    Returns the true length in seconds (every frame decoded).
    """
    data = b"".join(without_first_frame(mp3_bytes(segment, sample_rate)) for segment in segments)
    path.write_bytes(data)
    return mp3_frame_count(data) * MP3_FRAME_SAMPLES / sample_rate


def vbr_trap_segments(seconds: int, sample_rate: int, *, seed: int) -> list[np.ndarray]:
    """10 s segments: loud noise first (a high bitrate for libsndfile to extrapolate from), then quiet song."""
    rng = np.random.default_rng(seed)
    noise = (0.5 * rng.standard_normal(10 * sample_rate)).astype(np.float32)
    song = bird_song(seconds - 10, sample_rate, seed=seed)
    return [noise, *np.split(song, (seconds - 10) // 10)]


def add_cover_art(path: Path, size: int) -> None:
    """Prepend an ID3v2 tag holding `size` bytes of cover art, as archives' mp3s often carry."""
    tag = mutagen.id3.ID3()
    picture = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    tag.add(mutagen.id3.APIC(encoding=3, mime="image/jpeg", type=3, desc="cover", data=picture))
    tag.save(path)


def write_audio(
    path: Path, samples: np.ndarray, sample_rate: int, format: str, subtype: str | None = None
) -> None:
    """Write with soundfile one second at a time (one-shot writes of long Ogg/Vorbis can crash libsndfile)."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with sf.SoundFile(path, "w", sample_rate, channels, subtype=subtype, format=format) as audio:
        for start in range(0, len(samples), sample_rate):
            audio.write(samples[start : start + sample_rate])


def wav_format_tag(path: Path) -> int:
    """The format tag of a WAV's fmt chunk: 1 is plain PCM, 0xFFFE is WAVE_FORMAT_EXTENSIBLE."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    position = 12
    while data[position : position + 4] != b"fmt ":
        position += 8 + int.from_bytes(data[position + 4 : position + 8], "little")
    return int.from_bytes(data[position + 8 : position + 10], "little")


def write_long_wav(path: Path, seconds: int, sample_rate: int = 48000, channels: int = 2) -> None:
    """A long 16-bit WAV (an hour at 48 kHz stereo is 691 MB) written block by block, never whole in memory."""
    block = np.tile(tone(10, sample_rate, 1000.0, 0.3)[:, None], (1, channels))
    pcm = (block * 32767).astype(np.int16)
    with sf.SoundFile(path, "w", sample_rate, channels, subtype="PCM_16", format="WAV") as audio:
        for _ in range(seconds // 10):
            audio.write(pcm)


# VmHWM, not getrusage's ru_maxrss: Linux carries the forking parent's high-water mark across
# fork and exec into ru_maxrss, so a big pytest worker made the child look big (307 MB for 98).
_CHUNK_IN_CHILD = """
import re, sys
from pathlib import Path
from birdgrab.dataset.cutting import chunk_recording
result = chunk_recording(sys.argv[1], sys.argv[2], "long", gate_db=None)
status = Path("/proc/self/status").read_text()
print(len(result.chunks), re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
"""


def chunk_in_child(src: Path, out_dir: Path) -> tuple[int, float]:
    """Run chunk_recording in a fresh Python process; returns (chunks written, its peak RSS in MB)."""
    done = subprocess.run(
        [sys.executable, "-c", _CHUNK_IN_CHILD, str(src), str(out_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    chunks, max_rss_kb = done.stdout.split()
    return int(chunks), int(max_rss_kb) / 1024
