"""Regenerate tests/fixtures/audio: small files made by real encoders, and FFmpeg's decode of each kind.

    python scripts/make_audio_fixtures.py      # needs lame, flac, sox and ffmpeg (Debian: apt-get install ...)

Each file encodes `tests.real_audio.source_signal` (a few seconds at a low rate). The kinds of file
are those uploads to the archives come as (docs/audio.md): every MPEG version and
layer, gapless mp3 with CRC frames, VBR without a Xing header, WAV variants, FLAC without a total
sample count, AAC in m4a/mp4/ADTS, Ogg Vorbis and Opus. Byte edits (tags, zeros, broken sizes) are
applied at test time by `tests.real_audio.EDITS`; this script applies them too, to record FFmpeg's
decode of the edited bytes. `reference.json` holds, for every kind, the frames, rate and channels
of `ffmpeg -i FILE -f f32le -` (the truth the tests compare birdgrab with).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.real_audio import EDITS, FIXTURES, REFERENCE, lag0_correlation, source_signal

TOOLS = ("lame", "flac", "sox", "ffmpeg")
FFMPEG = ("ffmpeg", "-nostdin", "-v", "error", "-y")


@dataclass(frozen=True)
class Base:
    """One encoded fixture: its source signal and the command that encodes it (SRC, PCM16, OUT, PICTURE)."""

    file: str
    seed: int
    rate: int
    channels: int
    seconds: float
    command: tuple[str, ...]
    stdout: bool = False  # the encoder writes to a pipe, as streaming tools do


def _lame(*options: str) -> tuple[str, ...]:
    return ("lame", "--quiet", "--noreplaygain", *options, "PCM16", "OUT")


def _ffmpeg(*options: str) -> tuple[str, ...]:
    return (*FFMPEG, "-i", "SRC", "-map_metadata", "-1", *options, "OUT")


_PIPE_WAV = (*FFMPEG, "-i", "SRC", "-c:a", "pcm_s16le", "-f", "wav", "pipe:")
_PIPE_FLAC = (*FFMPEG, "-i", "SRC", "-c:a", "flac", "-f", "flac", "pipe:")
_FLAC_PICTURE = ("flac", "--silent", "--picture=PICTURE", "PCM16", "-o", "OUT")

BASES = (
    Base("mp3_mpeg1_cbr.mp3", 1, 32000, 1, 3.0, _lame("-b", "64")),
    Base("mp3_mpeg1_vbr_stereo.mp3", 2, 44100, 2, 2.0, _lame("-V", "5")),
    Base("mp3_mpeg1_crc.mp3", 3, 32000, 1, 3.0, _lame("-p", "-b", "64")),
    Base("mp3_vbr_no_xing.mp3", 4, 32000, 1, 3.0, _lame("-t", "-V", "4")),
    Base("mp3_mpeg2_22k.mp3", 5, 22050, 1, 3.0, _lame("-b", "32")),
    Base("mp3_mpeg25_8k.mp3", 6, 8000, 1, 3.0, _lame("-b", "16")),
    Base("mp3_mpeg25_11k.mp3", 7, 11025, 1, 3.0, _lame("-b", "24")),
    Base("mp3_mpeg25_12k.mp3", 8, 24000, 1, 3.0, _lame("--resample", "12", "-b", "24")),
    Base("mp3_ffmpeg_24k.mp3", 9, 24000, 1, 3.0, _ffmpeg("-c:a", "libmp3lame", "-b:a", "40k")),
    Base("mp2_mpeg1.mp2", 10, 32000, 1, 3.0, _ffmpeg("-c:a", "mp2", "-b:a", "96k")),
    Base("mp2_mpeg2_16k.mp2", 11, 16000, 1, 3.0, _ffmpeg("-c:a", "mp2", "-b:a", "48k")),
    Base("wav_pcm16.wav", 12, 8000, 1, 3.0, ("sox", "-V1", "SRC", "-b", "16", "OUT")),
    Base("wav_pcm24.wav", 13, 8000, 1, 2.0, ("sox", "-V1", "SRC", "-b", "24", "OUT")),
    Base("wav_float.wav", 14, 8000, 1, 2.0, ("sox", "-V1", "SRC", "-e", "floating-point", "-b", "32", "OUT")),
    Base("wav_u8.wav", 15, 8000, 1, 2.0, ("sox", "-V1", "SRC", "-b", "8", "OUT")),
    Base("wav_stereo_11k.wav", 16, 11025, 2, 1.5, ("sox", "-V1", "SRC", "-b", "16", "OUT")),
    Base("wav_ffmpeg_pipe.wav", 17, 8000, 1, 3.0, _PIPE_WAV, stdout=True),
    Base("wav_rf64.wav", 18, 8000, 1, 2.0, _ffmpeg("-c:a", "pcm_s16le", "-rf64", "always")),
    Base("wav_bext_ffmpeg.wav", 19, 8000, 1, 2.0, _ffmpeg("-c:a", "pcm_s16le", "-write_bext", "1")),
    Base("flac_cli.flac", 20, 16000, 1, 2.5, ("flac", "--silent", "-5", "PCM16", "-o", "OUT")),
    Base("flac_picture.flac", 21, 16000, 1, 2.0, _FLAC_PICTURE),
    Base("flac_no_total.flac", 22, 16000, 1, 2.5, _PIPE_FLAC, stdout=True),
    Base("flac_24bit_sox.flac", 23, 24000, 1, 1.0, ("sox", "-V1", "SRC", "-b", "24", "OUT")),
    Base("m4a_aac.m4a", 24, 22050, 1, 3.0, _ffmpeg("-c:a", "aac", "-b:a", "48k", "-movflags", "+faststart")),
    Base("mp4_aac_stereo.mp4", 25, 44100, 2, 2.0, _ffmpeg("-c:a", "aac", "-b:a", "64k")),
    Base("aac_adts.aac", 26, 16000, 1, 2.0, _ffmpeg("-c:a", "aac", "-b:a", "32k", "-f", "adts")),
    Base("ogg_vorbis.ogg", 27, 22050, 1, 3.0, _ffmpeg("-c:a", "libvorbis", "-q:a", "2")),
    Base("ogg_opus.opus", 28, 16000, 1, 3.0, _ffmpeg("-c:a", "libopus", "-b:a", "24k")),
)

# kind name -> (base file, byte edit): every base file as it is, plus these edits of them.
EDITED: dict[str, tuple[str, str]] = {
    "mp3_leading_zeros": ("mp3_mpeg1_cbr.mp3", "leading_zeros"),
    "mp3_leading_junk": ("mp3_mpeg1_cbr.mp3", "leading_junk"),
    "mp3_two_id3v2": ("mp3_mpeg1_cbr.mp3", "two_id3v2"),
    "mp3_big_id3v2": ("mp3_mpeg1_vbr_stereo.mp3", "id3v2_big"),
    "mp3_crc_two_id3v2": ("mp3_mpeg1_crc.mp3", "two_id3v2"),
    "mp3_id3v1": ("mp3_mpeg1_cbr.mp3", "id3v1_tail"),
    "mp3_ape_id3v1": ("mp3_mpeg2_22k.mp3", "ape_id3v1_tail"),
    "mp3_lyrics_id3v1": ("mp3_mpeg1_crc.mp3", "lyrics_id3v1_tail"),
    "mp3_no_xing_id3v1": ("mp3_vbr_no_xing.mp3", "id3v1_tail"),
    "mp3_25_two_id3v2": ("mp3_mpeg25_8k.mp3", "two_id3v2"),
    "flac_behind_id3v2": ("flac_cli.flac", "behind_id3v2"),
    "flac_no_total_behind_id3v2": ("flac_no_total.flac", "behind_id3v2"),
    "wav_bwf_chunks": ("wav_pcm16.wav", "bwf_chunks"),
    "wav_riff_size_0": ("wav_pcm16.wav", "riff_size_0"),
    "wav_sizes_0": ("wav_pcm16.wav", "sizes_0"),
    "wav_sizes_ffffffff": ("wav_stereo_11k.wav", "sizes_ffffffff"),
    "wav_bw64": ("wav_rf64.wav", "bw64"),
}


def _tiny_png() -> bytes:
    """An 8 x 8 grey PNG: flac --picture reads its size from the image."""

    def chunk(name: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + name + payload + struct.pack(">I", zlib.crc32(name + payload))
        )

    rows = b"".join(b"\0" + bytes([128] * 8) for _ in range(8))
    header = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _encode(base: Base, work: Path) -> None:
    src, pcm16, picture = work / f"{base.file}.src.wav", work / f"{base.file}.pcm16.wav", work / "cover.png"
    samples = source_signal(base.seed, base.rate, base.channels, base.seconds)
    sf.write(src, samples, base.rate, subtype="FLOAT")
    sf.write(pcm16, samples, base.rate, subtype="PCM_16")
    picture.write_bytes(_tiny_png())
    out = FIXTURES / base.file
    out.unlink(missing_ok=True)  # flac refuses to overwrite
    names = {"SRC": str(src), "PCM16": str(pcm16), "OUT": str(out), "PICTURE": str(picture)}
    command = [
        part.replace("PICTURE", names["PICTURE"]) if part.startswith("--picture") else names.get(part, part)
        for part in base.command
    ]
    if base.stdout:
        with open(out, "wb") as handle:
            subprocess.run(command, check=True, stdout=handle)
    else:
        subprocess.run(command, check=True)


def _ffmpeg_decode(data: bytes, work: Path) -> tuple[np.ndarray, int]:
    """FFmpeg's own decode of `data` (under a name without a telling suffix): (frames, channels), rate."""
    path = work / "probe.part"
    path.write_bytes(data)
    streams = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    stream = json.loads(streams.stdout)["streams"][0]
    rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    pcm = subprocess.run(
        [*FFMPEG, "-i", str(path), "-f", "f32le", "-c:a", "pcm_f32le", "pipe:"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(pcm, dtype=np.float32).reshape(-1, channels), rate


def _alignment(decoded: np.ndarray, rate: int, base: Base) -> tuple[int, float]:
    """(lag, correlation): how many samples the decode lags the source (codec delay left in), and how well
    it matches there. Tests require birdgrab's decode to match the shifted source as well."""
    source = source_signal(base.seed, base.rate, base.channels, base.seconds).mean(axis=1)
    if rate != base.rate:
        source = soxr.resample(source, base.rate, rate, quality="HQ")
    mono = decoded.mean(axis=1)
    n = min(len(mono), len(source))
    lags = np.arange(-n + 1, n)
    window = np.abs(lags) <= max(rate // 4, 2400)  # codec delays are at most a few thousand samples
    lag = int(lags[window][np.correlate(mono[:n], source[:n], "full")[window].argmax()])
    return lag, lag0_correlation(mono[max(lag, 0) :], source[max(-lag, 0) :])


def main() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        sys.exit(f"make_audio_fixtures: missing {', '.join(missing)} (apt-get install lame flac sox ffmpeg)")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bases = {base.file: base for base in BASES}
        for base in BASES:
            _encode(base, work)
        plan = {base.file.rsplit(".", 1)[0]: (base.file, None) for base in BASES} | EDITED
        for name, (file, edit) in plan.items():
            base = bases[file]
            data = (FIXTURES / file).read_bytes()
            # An edit adds no audio, so the truth is FFmpeg's decode of the unedited file; what FFmpeg
            # makes of the edited bytes is kept for comparison (it misses a LAME tag behind junk).
            decoded, rate = _ffmpeg_decode(data, work)
            lag, correlation = _alignment(decoded, rate, base)
            edited_frames = len(_ffmpeg_decode(EDITS[edit](data), work)[0]) if edit else len(decoded)
            kinds[name] = {
                "base": file,
                "edit": edit,
                "frames": len(decoded),
                "ffmpeg_frames": edited_frames,
                "sample_rate": rate,
                "channels": decoded.shape[1],
                "lag": lag,
                "correlation": round(correlation, 4),
                "seed": base.seed,
                "source_rate": base.rate,
                "source_channels": base.channels,
                "seconds": base.seconds,
            }
    versions = {tool: _version(tool) for tool in TOOLS}
    REFERENCE.write_text(json.dumps({"encoders": versions, "kinds": kinds}, indent=1) + "\n")
    total = sum((FIXTURES / base.file).stat().st_size for base in BASES)
    print(f"{len(BASES)} files ({total / 1000:.0f} kB), {len(kinds)} kinds -> {FIXTURES}")


def _version(tool: str) -> str:
    flag = "-version" if tool == "ffmpeg" else "--version"
    out = subprocess.run([tool, flag], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out else "?"


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
