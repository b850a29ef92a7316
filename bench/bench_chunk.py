"""Benchmark of the audio core: chunking speed against ffmpeg, peak memory on an hour of audio,
what a soundfile-based loader (what librosa.load does) loses on VBR mp3s without a Xing header, and
the decoder choice: which candidate reads the real-encoder corpus (tests/fixtures/audio) to
FFmpeg's sample count, and how fast each decodes a plain mp3.

Run with `python -m bench.bench_chunk` from the repository root; `run()` returns the report lines.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from birdgrab.dataset.cutting import chunk_recording
from birdgrab.decoders import decode_blocks
from tests.audio_fixtures import (
    bird_song,
    chunk_in_child,
    mp3_bytes,
    vbr_trap_segments,
    write_long_wav,
    write_vbr_mp3_without_xing,
)
from tests.real_audio import corpus

RECORDINGS = 100
RECORDING_S = 60
SOURCE_RATE = 44100
SAMPLE_RATE = 32000
CHUNK_S = 10.0
MIN_CHUNK_S = 3.0
WORKERS = 2
ROUNDS = 2
VBR_RECORDINGS = 3
HOUR_S = 3600


def _write_recording(path: Path, seed: int) -> None:
    """A stereo mp3 of synthetic birdsong, the two channels slightly different like a real field recording."""
    song = bird_song(RECORDING_S, SOURCE_RATE, seed=seed)
    stereo = np.stack(
        [song, 0.8 * song + 0.002 * np.random.default_rng(seed).standard_normal(len(song))], axis=1
    )
    path.write_bytes(mp3_bytes(stereo.astype(np.float32), SOURCE_RATE))


def _birdgrab_chunk(src: Path, out_dir: Path) -> int:
    result = chunk_recording(src, out_dir, src.stem, sample_rate=SAMPLE_RATE, chunk_s=CHUNK_S, gate_db=None)
    return len(result.chunks)


def _ffmpeg_chunk(src: Path, out_dir: Path) -> int:
    out_dir.mkdir(parents=True)
    pattern = out_dir / f"{src.stem}_%04d.wav"
    command = ["ffmpeg", "-v", "error", "-i", src, "-ac", "1", "-ar", str(SAMPLE_RATE)]
    subprocess.run([*command, "-f", "segment", "-segment_time", str(CHUNK_S), pattern], check=True)
    return len(list(out_dir.iterdir()))


def _timed_map(
    executor: Executor, job: Callable[[Path, Path], int], sources: list[Path], out_dir: Path
) -> tuple[float, int]:
    """Wall time of running `job` over every source (executor start-up included) and the chunks it wrote."""
    start = time.perf_counter()
    with executor:
        chunks = sum(executor.map(job, sources, [out_dir / src.stem for src in sources]))
    return time.perf_counter() - start, chunks


def _soundfile_loop_chunks(src: Path) -> tuple[float, int]:
    """What a librosa-style loader gets: soundfile decode, mono, resample; then the same chunk rule."""
    samples, rate = sf.read(src, dtype="float32", always_2d=True)
    mono = soxr.resample(samples.mean(axis=1), rate, SAMPLE_RATE, quality="HQ")
    return len(samples) / rate, _chunk_count(len(mono))


def _librosa_chunks(src: Path) -> tuple[float, int] | None:
    try:
        import librosa
    except ImportError:
        return None
    samples, _ = librosa.load(src, sr=SAMPLE_RATE, mono=True)
    return len(samples) / SAMPLE_RATE, _chunk_count(len(samples))


def _chunk_count(samples: int) -> int:
    chunk = round(CHUNK_S * SAMPLE_RATE)
    return samples // chunk + (samples % chunk >= MIN_CHUNK_S * SAMPLE_RATE)


def _speed(work: Path) -> list[str]:
    """Best of `ROUNDS` wall times each, the two tools taking turns so that other load hits both alike."""
    sources = [work / f"rec{seed:03d}.mp3" for seed in range(RECORDINGS)]
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(_write_recording, sources, range(RECORDINGS)))
    have_ffmpeg = shutil.which("ffmpeg") is not None
    birdgrab_runs, ffmpeg_runs = [], []
    for round_number in range(ROUNDS):
        pool = ProcessPoolExecutor(WORKERS)
        birdgrab_runs.append(_timed_map(pool, _birdgrab_chunk, sources, work / f"birdgrab{round_number}"))
        if have_ffmpeg:
            threads = ThreadPoolExecutor(WORKERS)
            ffmpeg_runs.append(_timed_map(threads, _ffmpeg_chunk, sources, work / f"ffmpeg{round_number}"))
    birdgrab_s, birdgrab_chunks = min(birdgrab_runs)
    lines = [
        f"chunking {RECORDINGS} x {RECORDING_S} s stereo mp3 at 44.1 kHz -> {SAMPLE_RATE} Hz mono 10 s WAV"
        f" (best of {ROUNDS})",
        f"  birdgrab ({WORKERS} processes): {birdgrab_s:6.2f} s, {birdgrab_chunks} chunks",
    ]
    if not have_ffmpeg:
        return [*lines, "  ffmpeg not installed: skipped"]
    ffmpeg_s, ffmpeg_chunks = min(ffmpeg_runs)
    return [
        *lines,
        f"  ffmpeg   ({WORKERS} at a time):  {ffmpeg_s:6.2f} s, {ffmpeg_chunks} chunks (its last piece unpadded)",
        f"  ratio birdgrab/ffmpeg: {birdgrab_s / ffmpeg_s:.2f} (goal <= 1.0)",
    ]


def _memory(work: Path) -> list[str]:
    src = work / "hour.wav"
    write_long_wav(src, HOUR_S)
    start = time.perf_counter()
    chunks, peak_rss_mb = chunk_in_child(src, work / "hour")
    elapsed = time.perf_counter() - start
    size_mb = src.stat().st_size / 1e6
    return [
        f"one hour of 48 kHz stereo WAV ({size_mb:.0f} MB): peak RSS {peak_rss_mb:.0f} MB (limit 300), "
        f"{chunks} chunks in {elapsed:.1f} s"
    ]


def _vbr_correctness(work: Path) -> list[str]:
    lines = [
        f"VBR mp3 without Xing header ({VBR_RECORDINGS} x {RECORDING_S} s): chunks written (decoded seconds)"
    ]
    loaders: dict[str, list[str]] = {"soundfile read": [], "librosa.load": [], "birdgrab": []}
    for seed in range(VBR_RECORDINGS):
        src = work / f"vbr{seed}.mp3"
        true_s = write_vbr_mp3_without_xing(
            src, vbr_trap_segments(RECORDING_S, SOURCE_RATE, seed=seed), SOURCE_RATE
        )
        decoded_s, chunks = _soundfile_loop_chunks(src)
        loaders["soundfile read"].append(f"{chunks} ({decoded_s:.1f} s)")
        librosa_result = _librosa_chunks(src)
        if librosa_result is not None:
            loaders["librosa.load"].append(f"{librosa_result[1]} ({librosa_result[0]:.1f} s)")
        result = chunk_recording(src, work / "vbr" / src.stem, src.stem, gate_db=None)
        loaders["birdgrab"].append(f"{len(result.chunks)} ({result.decoded_s:.1f} s of {true_s:.1f} s)")
    for name, counts in loaders.items():
        lines.append(f"  {name:15s} " + (", ".join(counts) if counts else "not installed: skipped"))
    return lines


def _birdgrab_frames(src: Path) -> tuple[int, int]:
    blocks = list(decode_blocks(src))
    return sum(len(block) for block in blocks), blocks[0].shape[1]


def _soundfile_frames(src: Path) -> tuple[int, int]:
    samples = sf.read(src, dtype="float32", always_2d=True)[0]
    return samples.shape


def _miniaudio_frames(src: Path) -> tuple[int, int]:
    import miniaudio

    native = miniaudio.get_file_info(str(src))  # decode_file converts to 2 channels at 44.1 kHz unless told
    decoded = miniaudio.decode_file(
        str(src), miniaudio.SampleFormat.FLOAT32, nchannels=native.nchannels, sample_rate=native.sample_rate
    )
    return decoded.num_frames, decoded.nchannels


def _decoder_choice(work: Path) -> list[str]:
    """Kinds of the real-encoder corpus each candidate decodes to FFmpeg's count (within 1 ms), and
    decode-only wall time on the 60 s stereo mp3 of the speed run (best of 5)."""
    candidates: dict[str, Callable[[Path], tuple[int, int]]] = {
        "PyAV (birdgrab)": _birdgrab_frames,
        "soundfile": _soundfile_frames,
        "miniaudio": _miniaudio_frames,
    }
    kinds = corpus()
    folder = work / "corpus"
    folder.mkdir()
    lines = [f"decoders on the real-encoder corpus ({len(kinds)} kinds) and on one 60 s stereo mp3:"]
    mp3 = work / "rec000.mp3"
    for name, decode in candidates.items():
        try:
            decode(mp3)
        except ImportError:
            lines.append(f"  {name:16s} not installed: skipped")
            continue
        right = 0
        for kind in kinds.values():
            try:
                # Named with the true extension: miniaudio picks its decoder by the name.
                frames, channels = decode(kind.write(folder, f"{kind.name}.{kind.base.rsplit('.', 1)[1]}"))
            except Exception:  # every decoder raises its own types; a refusal is a wrong answer
                continue
            right += abs(frames - kind.frames) <= kind.sample_rate / 1000 and channels == kind.channels
        best = min(_wall(decode, mp3) for _ in range(5))
        lines.append(f"  {name:16s} {right:2d}/{len(kinds)} right, plain mp3 decoded in {best * 1000:.0f} ms")
    return lines


def _wall(job: Callable[[Path], object], src: Path) -> float:
    start = time.perf_counter()
    job(src)
    return time.perf_counter() - start


def run() -> list[str]:
    """Run every measurement in a temporary folder and return the report, one line per fact."""
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-chunk-") as tmp:
        work = Path(tmp)
        return _speed(work) + _decoder_choice(work) + _memory(work) + _vbr_correctness(work)


if __name__ == "__main__":
    print("\n".join(run()))
