"""Call-aware windows with planted truth: sandbox recordings whose calls are known to the millisecond,
over field noise (wind in gusts, a stream, a road, insects, clicks), rendered to real files."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from birdgrab.dataset.cutting import cut_recording
from birdgrab.dataset.events import EventDetector
from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.windows import clock_windows, windowing_for
from birdgrab.decoders import mono_blocks, open_decoder
from birdgrab.sandbox.synth import AudioSpec, planted_calls, render, voice_for
from birdgrab.storage import LocalStorage

RATE = 32000


def _recording(
    tmp_path: Path, seed: int, seconds: float = 60.0, activity: float = 0.5
) -> tuple[Path, AudioSpec]:
    spec = AudioSpec(
        "flac",
        44100,
        2,
        seconds,
        voice_for(f"species {seed % 3}"),
        seed,
        activity=activity,
        background="field",
    )
    path = tmp_path / f"rec{seed}.flac"
    render(spec, path)
    return path, spec


def _cut(tmp_path: Path, src: Path, **options) -> tuple[list, object]:
    chosen = ChunkOptions(**options)
    result = cut_recording(
        src, LocalStorage(tmp_path / "out"), src.stem, src.stem, windowing_for(chosen), sample_rate=RATE,
        chunk_frames=chosen.chunk_frames, noise_folder="noise",
    )  # fmt: skip
    return result.chunks, result


def _held(call: tuple[float, float], chunk) -> bool:
    start, end = chunk.offset_s, chunk.offset_s + chunk.duration_s - chunk.padded_s
    overlap = min(end, call[1]) - max(start, call[0])
    return overlap >= min(1.0, call[1] - call[0]) - 1e-3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_detector_finds_every_planted_call_and_little_else(tmp_path, seed):
    src, spec = _recording(tmp_path, seed, seconds=30.0)
    detector = EventDetector(RATE)
    decoder = open_decoder(src)
    for block in mono_blocks(decoder, RATE):
        detector.feed(block)
    events, calls = detector.events(), planted_calls(spec)
    found = [c for c in calls if any(e.start_s < c[1] and e.end_s > c[0] for e in events)]
    real = [e for e in events if any(e.start_s < c[1] and e.end_s > c[0] for c in calls)]
    assert len(found) >= 0.95 * len(calls) and len(real) >= 0.9 * len(events)


def test_event_windows_hold_the_calls_and_leave_field_noise_out(tmp_path):
    src, spec = _recording(tmp_path, 4, seconds=60.0, activity=0.25)
    chunks, result = _cut(tmp_path, src, windows="events")
    calls = planted_calls(spec)
    assert all(any(_held(c, chunk) for chunk in chunks) for c in calls)  # every call in a window
    assert all(any(_held(c, chunk) for c in calls) for chunk in chunks)  # every window on a call
    fixed, _ = _cut(tmp_path, src)  # the clock and the gate keep windows of noise
    assert len(chunks) < len(fixed) and result.dropped["no_event"] > 0
    for chunk in chunks:
        info = sf.info(tmp_path / "out" / src.stem / chunk.file_name)
        assert (info.frames, info.samplerate, info.channels) == (10 * RATE, RATE, 1)


def test_a_recording_of_field_noise_alone_gives_no_window_but_a_noise_chunk(tmp_path):
    src, _ = _recording(tmp_path, 5, seconds=40.0, activity=0.0)
    chunks, result = _cut(tmp_path, src, windows="events", noise_class=True)
    assert [c.noise for c in chunks] == [True]  # one call-free window for the noise class
    assert (tmp_path / "out" / "noise" / chunks[0].file_name).is_file()
    assert result.dropped["no_event"] == 4


def _calling_s(calls: list[tuple[float, float]], chunk) -> float:
    """Seconds of planted calls inside a chunk's audio (the truth, not what the detector measured)."""
    start, end = chunk.offset_s, chunk.offset_s + chunk.duration_s - chunk.padded_s
    return sum(max(0.0, min(end, call_end) - max(start, call_start)) for call_start, call_end in calls)


def test_the_cap_keeps_a_recordings_most_active_windows(tmp_path):
    src, spec = _recording(tmp_path, 6, seconds=60.0, activity=0.8)
    every, _ = _cut(tmp_path, src, windows="events")
    capped, result = _cut(tmp_path, src, windows="events", max_chunks_per_recording=2)
    calling = {c.file_name: _calling_s(planted_calls(spec), c) for c in every}
    best = sorted(calling, key=calling.__getitem__, reverse=True)[:2]
    # a clear choice: the two best hold a quarter second more calling than any other window
    assert min(calling[name] for name in best) > max(calling[n] for n in calling if n not in best) + 0.25
    assert [c.file_name for c in capped] == sorted(best)
    assert result.dropped["capped"] == len(every) - 2


def test_hop_makes_fixed_windows_overlap():
    windows, short = clock_windows(total=25 * RATE, chunk=10 * RATE, hop=5 * RATE, min_frames=3 * RATE)
    assert [w.start / RATE for w in windows] == [0, 5, 10, 15] and short == 0
    assert [w.frames / RATE for w in windows] == [10, 10, 10, 10]
    windows, short = clock_windows(total=21 * RATE, chunk=10 * RATE, hop=10 * RATE, min_frames=3 * RATE)
    assert len(windows) == 2 and short == 1  # the 1 s rest is dropped, as before
