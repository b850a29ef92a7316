"""Benchmark of the audio core: `birdgrab chunk` against ffmpeg doing the same work, peak memory
on an hour of audio, what a soundfile-based loader (what librosa.load does) loses on VBR mp3s
without a Xing header, and the decoder choice: which candidate reads the real-encoder corpus
(tests/fixtures/audio) to FFmpeg's sample count, and how fast each decodes a plain mp3.

Speed: RECORDINGS stereo mp3s of 60 s at 44.1 kHz, fetched by `birdgrab fetch --no-chunk` from a
local file server before anything is timed, then cut into 10 s mono 16-bit WAV at 32 kHz. The
contenders take turns, round by round, each with WORKERS processes:

- birdgrab: `birdgrab chunk --jobs 2 --no-gate`, the real CLI (planning, metadata, splits included);
- ffmpeg, the same work: one ffmpeg process per worker over half the files each (so its start-up is
  paid twice, not once a file), mixing to mono and resampling with FFmpeg's soxr resampler at
  precision 20 (libsoxr's HQ, what birdgrab uses), cutting at exactly 10 s (`asetnsamples`);
- ffmpeg once per file, two at a time, with its default resampler: the comparison published
  before, kept to show what the start-up of a process per file costs.

Every round's chunk count is checked against birdgrab's, recording by recording (ffmpeg's last
piece counts when it is at least MIN_CHUNK_S long, birdgrab's rule), and the chunks of the first
recording are compared sample by sample with ffmpeg's same-work chunks. A count that differs fails
the suite: the contenders did not do the same work.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from bench.harness import (
    REPO,
    FileServer,
    Report,
    Rounds,
    Run,
    require_tool,
    run_birdgrab,
    run_parallel,
    verdict,
    write_selection,
)
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
QUICK_RECORDINGS = 10
SPECIES = ("Benchus alpha", "Benchus beta", "Benchus gamma", "Benchus delta")
RECORDING_S = 60
SOURCE_RATE = 44100
SAMPLE_RATE = 32000
CHUNK_S = 10.0
CHUNK_FRAMES = round(CHUNK_S * SAMPLE_RATE)
MIN_CHUNK_S = 3.0
WORKERS = 2
ROUNDS = 3
QUICK_ROUNDS = 2
GOAL_VS_FFMPEG = 1.0  # birdgrab / ffmpeg doing the same work, wall
VBR_RECORDINGS = 3
HOUR_S = 3600
HOUR_PEAK_GOAL_MB = 300
# FFmpeg doing birdgrab's work: mean of the two channels, soxr at precision 20 (libsoxr's HQ
# recipe, what `soxr.ResampleStream(quality="HQ")` uses), frames of exactly one chunk.
SAME_WORK_FILTER = (
    f"pan=mono|c0=0.5*c0+0.5*c1,aresample={SAMPLE_RATE}:resampler=soxr:precision=20,"
    f"asetnsamples=n={CHUNK_FRAMES}:p=0"
)


def _write_recording(path: Path, seed: int) -> None:
    """A stereo mp3 of synthetic birdsong, the two channels slightly different like a real field recording."""
    song = bird_song(RECORDING_S, SOURCE_RATE, seed=seed)
    stereo = np.stack(
        [song, 0.8 * song + 0.002 * np.random.default_rng(seed).standard_normal(len(song))], axis=1
    )
    path.write_bytes(mp3_bytes(stereo.astype(np.float32), SOURCE_RATE))


def prepare_cached_mp3s(work: Path, recordings: int) -> tuple[list[Path], Path]:
    """The mp3s, and a folder whose manifests and cache hold them as `birdgrab fetch` leaves them."""
    folder = work / "sources"
    folder.mkdir()
    sources = [folder / f"rec{seed:03d}.mp3" for seed in range(recordings)]
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(_write_recording, sources, range(recordings)))
    prepared = work / "prepared"
    with FileServer(folder) as server:
        urls: dict[str, list[str]] = {species: [] for species in SPECIES}
        for number, src in enumerate(sources):  # species in blocks: key xc:N+1 is sources[N]
            urls[SPECIES[number * len(SPECIES) // recordings]].append(server.url(src.name))
        write_selection(prepared, urls)
        fetch = ["fetch", "--no-chunk", "--jobs", "8", "--quiet"]
        run_birdgrab(fetch, {}, prepared).check("birdgrab fetch of the benchmark's mp3s")
    return sources, prepared


def _birdgrab_round(prepared: Path, work: Path, recordings: int) -> Callable[[int], Run]:
    def chunk(round_number: int) -> Run:
        root = work / "birdgrab"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(prepared / "manifests", root / "manifests")
        (root / "cache").symlink_to(prepared / "cache")  # the audio `fetch` cached, shared by every round
        args = ["chunk", "--jobs", str(WORKERS), "--no-gate", "--quiet"]
        run = run_birdgrab(args, {}, root).check("birdgrab chunk")
        with open(root / "dataset" / "metadata.csv", newline="") as handle:
            per_key = Counter(row["recording_key"] for row in csv.DictReader(handle))
        run.facts["chunks"] = sum(per_key.values())
        run.facts["per_recording"] = [per_key[f"xc:{n + 1}"] for n in range(recordings)]
        return run

    return chunk


def _segments(folder: Path, sources: list[Path]) -> list[int]:
    """Chunks ffmpeg wrote per source that birdgrab's rule keeps (a last piece of at least MIN_CHUNK_S)."""
    counts = Counter(
        path.name.rsplit("_", 1)[0]
        for path in folder.glob("*.wav")
        if sf.info(path).frames >= MIN_CHUNK_S * SAMPLE_RATE
    )
    return [counts[src.stem] for src in sources]


def _ffmpeg_same_work(sources: list[Path], work: Path, ffmpeg: str) -> Callable[[int], Run]:
    def chunk(round_number: int) -> Run:
        out = work / "ffmpeg"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        commands = []
        for worker in range(WORKERS):
            mine = sources[worker::WORKERS]
            argv = [ffmpeg, "-v", "error", "-nostdin"]
            for src in mine:
                argv += ["-i", str(src)]
            for number, src in enumerate(mine):
                argv += ["-map", f"{number}:a", "-af", SAME_WORK_FILTER, "-f", "segment"]
                argv += ["-segment_time", f"{CHUNK_S:g}", str(out / f"{src.stem}_%04d.wav")]
            commands.append(argv)
        run = run_parallel(commands, WORKERS, {}, REPO).check("ffmpeg, one process per worker")
        run.facts["per_recording"] = _segments(out, sources)
        run.facts["chunks"] = sum(run.facts["per_recording"])
        return run

    return chunk


def _ffmpeg_per_file(sources: list[Path], work: Path, ffmpeg: str) -> Callable[[int], Run]:
    def chunk(round_number: int) -> Run:
        out = work / "ffmpeg-per-file"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        commands = [
            [ffmpeg, "-v", "error", "-nostdin", "-i", str(src), "-ac", "1", "-ar", str(SAMPLE_RATE),
             "-f", "segment", "-segment_time", f"{CHUNK_S:g}", str(out / f"{src.stem}_%04d.wav")]
            for src in sources
        ]  # fmt: skip
        run = run_parallel(commands, WORKERS, {}, REPO).check("ffmpeg, once per file")
        run.facts["per_recording"] = _segments(out, sources)
        run.facts["chunks"] = sum(run.facts["per_recording"])
        return run

    return chunk


def _agreement(work: Path, sources: list[Path], ffmpeg_folder: str) -> str:
    """birdgrab's chunks against an ffmpeg contender's chunks of the last round, sample by sample:
    how many are identical, and the lowest signal-to-difference ratio of the others."""
    with open(work / "birdgrab" / "dataset" / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    identical, worst = 0, float("inf")
    for row in rows:
        src = sources[int(row["recording_key"].removeprefix("xc:")) - 1]
        ours = sf.read(work / "birdgrab" / "dataset" / row["file_name"], dtype="int16")[0].astype(np.float64)
        theirs = sf.read(
            work / ffmpeg_folder / f"{src.stem}_{int(row['chunk_index']):04d}.wav", dtype="int16"
        )[0]
        length = min(len(ours), len(theirs))  # birdgrab pads a last piece; ffmpeg does not
        difference = np.sum((ours[:length] - theirs[:length]) ** 2)
        if difference == 0:
            identical += 1
        else:
            worst = min(worst, 10 * np.log10(np.sum(ours[:length] ** 2) / difference))
    others = f" (the least alike: signal over difference {worst:.0f} dB)" if identical < len(rows) else ""
    return f"{identical} of {len(rows)} chunks sample for sample identical{others}"


def _ffmpeg_with_soxr() -> str:
    """ffmpeg built with libsoxr: without it the same-work baseline would resample differently
    (or not run), so the suite fails here, naming the cause, before preparing anything."""
    ffmpeg = require_tool("ffmpeg", "ffmpeg")
    build = subprocess.run([ffmpeg, "-hide_banner", "-buildconf"], capture_output=True, text=True)
    if "--enable-libsoxr" not in build.stdout + build.stderr:
        raise RuntimeError(
            f"{ffmpeg} is built without libsoxr: the same-work baseline needs FFmpeg's soxr resampler"
        )
    return ffmpeg


def _speed(work: Path, report: Report, recordings: int, rounds: int) -> None:
    ffmpeg = _ffmpeg_with_soxr()
    sources, prepared = prepare_cached_mp3s(work, recordings)
    contenders = {
        "birdgrab chunk": _birdgrab_round(prepared, work, len(sources)),
        "ffmpeg, same work": _ffmpeg_same_work(sources, work, ffmpeg),
        "ffmpeg once per file": _ffmpeg_per_file(sources, work, ffmpeg),
    }
    runs = report.contest("speed", contenders, rounds)
    expected = runs["birdgrab chunk"][0].facts["per_recording"]
    for name, rounds_of in runs.items():
        for run in rounds_of:
            if run.facts["per_recording"] != expected:
                raise RuntimeError(
                    f"{name} wrote {run.facts['chunks']} chunks where birdgrab wrote {sum(expected)}"
                    f" (per recording: {run.facts['per_recording']} against {expected}): not the same work"
                )
    same_samples = _agreement(work, sources, "ffmpeg")
    old_samples = _agreement(work, sources, "ffmpeg-per-file")
    birdgrab, same, per_file = runs["birdgrab chunk"], runs["ffmpeg, same work"], runs["ffmpeg once per file"]
    ratio = birdgrab.best.wall_s / same.best.wall_s
    old_ratio = birdgrab.best.wall_s / per_file.best.wall_s
    report.line(
        f"chunking {recordings} x {RECORDING_S} s stereo mp3 at 44.1 kHz -> {SAMPLE_RATE} Hz mono {CHUNK_S:g} s"
        f" 16-bit WAV, {WORKERS} workers each, {rounds} rounds taking turns"
    )

    def row(name: str, runs_of: Rounds, what: str) -> list[str]:
        return [
            name, what, f"{runs_of.best.wall_s:.2f} s", f"{runs_of.median_wall_s:.2f} s",
            f"{runs_of.median_cpu_s:.2f} s", f"{runs_of.best.facts['chunks']}",
        ]  # fmt: skip

    rows = [
        row("birdgrab chunk", birdgrab, f"`chunk --jobs {WORKERS} --no-gate`, soxr HQ"),
        row("ffmpeg, same work", same, f"{WORKERS} processes over {recordings // WORKERS} files each, soxr precision 20"),
        row("ffmpeg once per file", per_file, f"{recordings} processes, {WORKERS} at a time, default resampler"),
    ]  # fmt: skip
    for cells in rows:
        report.line(f"  {cells[0]:22s} best {cells[2]}, median {cells[3]}, CPU {cells[4]}, {cells[5]} chunks")
    report.table(
        "speed",
        ["run", "what", "wall, best", "wall, median", "CPU, median", "chunks"],
        rows,
        note="Chunk counts equal recording by recording in every round. Against birdgrab's chunks,"
        f" ffmpeg doing the same work: {same_samples}; ffmpeg once per file: {old_samples}. CPU is every"
        " process's own (birdgrab's includes its worker processes).",
    )
    goals = [
        ["wall, birdgrab / ffmpeg doing the same work", f"{ratio:.2f}", f"<= {GOAL_VS_FFMPEG:g}", verdict(ratio, GOAL_VS_FFMPEG)],
        ["wall, birdgrab / ffmpeg once per file (the old comparison)", f"{old_ratio:.2f}", "", ""],
    ]  # fmt: skip
    report.table("goals", ["figure", "value", "goal", "verdict"], goals)
    report.line(f"  ratio birdgrab / ffmpeg same work {ratio:.2f} (goal <= {GOAL_VS_FFMPEG:g}) {verdict(ratio, GOAL_VS_FFMPEG)};"
                f" / ffmpeg once per file {old_ratio:.2f}")  # fmt: skip
    report.line(
        f"  chunks against birdgrab's: ffmpeg same work {same_samples}; ffmpeg once per file {old_samples}"
    )


def _memory(work: Path, report: Report) -> None:
    """Peak memory of chunking one hour of audio in a fresh process: it streams, so it stays flat."""
    src = work / "hour.wav"
    write_long_wav(src, HOUR_S)
    start = time.perf_counter()
    chunks, peak_rss_mb = chunk_in_child(src, work / "hour")
    elapsed = time.perf_counter() - start
    size_mb = src.stat().st_size / 1e6
    report.line(
        f"one hour of 48 kHz stereo WAV ({size_mb:.0f} MB): peak RSS {peak_rss_mb:.0f} MB"
        f" (goal < {HOUR_PEAK_GOAL_MB} MB) {verdict(peak_rss_mb, HOUR_PEAK_GOAL_MB)}, {chunks} chunks in {elapsed:.1f} s"
    )
    report.table(
        "memory",
        ["input", "chunks", "wall", "peak RSS", "goal", "verdict"],
        [[f"one hour of 48 kHz stereo WAV, {size_mb:.0f} MB", str(chunks), f"{elapsed:.1f} s",
          f"{peak_rss_mb:.0f} MB", f"< {HOUR_PEAK_GOAL_MB} MB", verdict(peak_rss_mb, HOUR_PEAK_GOAL_MB)]],
    )  # fmt: skip


def _soundfile_loop_chunks(src: Path) -> tuple[float, int]:
    """What a librosa-style loader gets: soundfile decode, mono, resample; then the same chunk rule."""
    samples, rate = sf.read(src, dtype="float32", always_2d=True)
    mono = soxr.resample(samples.mean(axis=1), rate, SAMPLE_RATE, quality="HQ")
    return len(samples) / rate, _chunk_count(len(mono))


def _librosa_chunks(src: Path) -> tuple[float, int]:
    import librosa  # the bench extra's; slow to import, and only this comparison uses it

    samples, _ = librosa.load(src, sr=SAMPLE_RATE, mono=True)
    return len(samples) / SAMPLE_RATE, _chunk_count(len(samples))


def _chunk_count(samples: int) -> int:
    chunk = round(CHUNK_S * SAMPLE_RATE)
    return samples // chunk + (samples % chunk >= MIN_CHUNK_S * SAMPLE_RATE)


def _vbr_correctness(work: Path, report: Report) -> None:
    """Chunks written and seconds decoded from VBR mp3s without a Xing header, by each loader."""
    loaders: dict[str, list[str]] = {"soundfile read loop": [], "librosa.load": [], "birdgrab": []}
    for seed in range(VBR_RECORDINGS):
        src = work / f"vbr{seed}.mp3"
        true_s = write_vbr_mp3_without_xing(
            src, vbr_trap_segments(RECORDING_S, SOURCE_RATE, seed=seed), SOURCE_RATE
        )
        decoded_s, chunks = _soundfile_loop_chunks(src)
        loaders["soundfile read loop"].append(f"{chunks} ({decoded_s:.1f} s)")
        decoded_s, chunks = _librosa_chunks(src)
        loaders["librosa.load"].append(f"{chunks} ({decoded_s:.1f} s)")
        result = chunk_recording(src, work / "vbr" / src.stem, src.stem, gate_db=None)
        loaders["birdgrab"].append(f"{len(result.chunks)} ({result.decoded_s:.1f} s of {true_s:.1f} s)")
    report.line(
        f"VBR mp3 without Xing header ({VBR_RECORDINGS} x {RECORDING_S} s): chunks written (decoded seconds)"
    )
    for name, counts in loaders.items():
        report.line(f"  {name:20s} " + ", ".join(counts))
    report.table(
        "vbr",
        ["loader", *(f"recording {n + 1}: chunks (decoded)" for n in range(VBR_RECORDINGS))],
        [[name, *counts] for name, counts in loaders.items()],
    )


def _birdgrab_frames(src: Path) -> tuple[int, int]:
    blocks = list(decode_blocks(src))
    return sum(len(block) for block in blocks), blocks[0].shape[1]


def _soundfile_frames(src: Path) -> tuple[int, int]:
    samples = sf.read(src, dtype="float32", always_2d=True)[0]
    return samples.shape


def _miniaudio_frames(src: Path) -> tuple[int, int]:
    import miniaudio  # the bench extra's: only this comparison uses it

    native = miniaudio.get_file_info(str(src))  # decode_file converts to 2 channels at 44.1 kHz unless told
    decoded = miniaudio.decode_file(
        str(src), miniaudio.SampleFormat.FLOAT32, nchannels=native.nchannels, sample_rate=native.sample_rate
    )
    return decoded.num_frames, decoded.nchannels


def _decoder_choice(work: Path, report: Report) -> None:
    """Kinds of the real-encoder corpus each candidate decodes to FFmpeg's count (within 1 ms), and
    decode-only wall time of one 60 s stereo mp3 (best of 5, in this process)."""
    candidates: dict[str, Callable[[Path], tuple[int, int]]] = {
        "PyAV, through birdgrab (probe + decode + float blocks)": _birdgrab_frames,
        "soundfile": _soundfile_frames,
        "miniaudio": _miniaudio_frames,
    }
    kinds = corpus()
    folder = work / "corpus"
    folder.mkdir()
    mp3 = work / "decode-me.mp3"
    _write_recording(mp3, seed=0)
    rows = []
    for name, decode in candidates.items():
        right = 0
        for kind in kinds.values():
            try:
                # Named with the true extension: miniaudio picks its decoder by the name.
                frames, channels = decode(kind.write(folder, f"{kind.name}.{kind.base.rsplit('.', 1)[1]}"))
            except Exception:  # every decoder raises its own types; a refusal is a wrong answer
                continue
            right += abs(frames - kind.frames) <= kind.sample_rate / 1000 and channels == kind.channels
        best = min(_wall(decode, mp3) for _ in range(5))
        rows.append([name, f"{right}/{len(kinds)}", f"{best * 1000:.0f} ms"])
        report.line(
            f"  {name:56s} {right:2d}/{len(kinds)} kinds right, a 60 s stereo mp3 in {best * 1000:.0f} ms"
        )
    report.table(
        "decoders",
        ["decoder", "kinds decoded to FFmpeg's sample count", "one 60 s stereo mp3, best of 5"],
        rows,
    )


def _wall(job: Callable[[Path], object], src: Path) -> float:
    start = time.perf_counter()
    job(src)
    return time.perf_counter() - start


def run(quick: bool = False) -> Report:
    """Every measurement in a temporary folder; `quick` chunks 10 recordings instead of 100."""
    report = Report("chunk", quick=quick)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-chunk-") as tmp:
        work = Path(tmp)
        _speed(work, report, QUICK_RECORDINGS if quick else RECORDINGS, QUICK_ROUNDS if quick else ROUNDS)
        report.line(
            f"decoders on the real-encoder corpus ({len(corpus())} kinds) and on one 60 s stereo mp3:"
        )
        _decoder_choice(work, report)
        _memory(work, report)
        _vbr_correctness(work, report)
    return report.finish()
