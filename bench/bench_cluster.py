"""Benchmark of the cluster seams: `chunk` on a Dask cluster and into an object store, against this
machine's process pool and a local folder, side by side in one run.

RECORDINGS stereo mp3s of 60 s (the chunk suite's), fetched once by `birdgrab fetch --no-chunk` into
a local cache and copied into a bucket, then cut into 10 s mono WAV at 32 kHz by four contenders
taking turns, round by round:

- pool, 2 processes: `chunk --jobs 2`, folders on this disk (what birdgrab always did; the baseline);
- Dask, 2 workers: `chunk --jobs 2 --scheduler local` (a `distributed.LocalCluster` the command starts);
- Dask, 1 worker: `chunk --jobs 1 --scheduler local`;
- pool, 2 processes, bucket: `chunk --jobs 2` with `--cache` and `--out` in `s3://` on a moto server
  (its own process on 127.0.0.1, sharing these cores: a real store is elsewhere, so this is a bound).

Every run's chunk count, recording by recording, must equal the first pool run's, or the suite fails.
The per-recording costs measured here (CPU seconds, bytes written) give the projection of a whole
xeno-canto build on 16, 64 and 256 cores that BENCHMARKS.md discusses.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.bench_chunk import CHUNK_S, RECORDING_S, SAMPLE_RATE, prepare_cached_mp3s
from bench.harness import FAST_RETRIES, REPO, Report, Rounds, Run, run_process, verdict

RECORDINGS = 60
QUICK_RECORDINGS = 12
ROUNDS = 3
QUICK_ROUNDS = 1
WORKERS = 2
CHUNKING = ["--sample-rate", str(SAMPLE_RATE), "--chunk-seconds", f"{CHUNK_S:g}", "--no-gate", "--quiet"]
GOAL_DASK_VS_POOL = 1.1  # wall, --scheduler local (2 workers) / the process pool (2 processes): at most
GOAL_TWO_WORKERS = 1.8  # wall, 1 worker / 2 workers: at least
GOAL_BUCKET = 1.25  # wall, dataset and cache in the bucket / on this disk: at most
BUCKET = "bench"
XENO_CANTO = 1_000_000  # recordings in a whole-archive build
PROJECTED_CORES = (16, 64, 256)
# Dummy keys for the moto server: nothing else accepts them.
STORE_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
}

_MOTO = """
import logging, threading
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.WARNING)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
threading.Event().wait()
"""


class MotoServer:
    """moto's S3 server in its own process on a free loopback port, and a boto3 client for the suite."""

    def __enter__(self) -> MotoServer:
        import boto3  # the test-cluster extra's (moto's own dependency); `make bench-tools` installs it

        self._process = subprocess.Popen(
            [sys.executable, "-c", _MOTO], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self._process.stdout is not None
        self.endpoint = f"http://127.0.0.1:{int(self._process.stdout.readline())}"
        self.env = {**STORE_ENV, "AWS_ENDPOINT_URL": self.endpoint}
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=STORE_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=STORE_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=STORE_ENV["AWS_DEFAULT_REGION"],
        )
        self.client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": STORE_ENV["AWS_DEFAULT_REGION"]}
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._process.terminate()
        self._process.wait()

    def upload(self, folder: Path, prefix: str) -> None:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_file() and not name.startswith("."):
                self.client.upload_file(str(path), BUCKET, f"{prefix}/{name}")

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def sizes(self, prefix: str) -> dict[str, int]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/"):
            found.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
        return found

    def remove(self, prefix: str) -> None:
        keys = list(self.sizes(prefix))
        for start in range(0, len(keys), 1000):
            objects = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": objects})


def _per_recording(metadata: bytes, recordings: int) -> list[int]:
    per_key = Counter(row["recording_key"] for row in csv.DictReader(io.StringIO(metadata.decode())))
    return [per_key[f"xc:{n + 1}"] for n in range(recordings)]


def _chunk(root: Path, cache: str, out: str, extra: list[str], env: dict[str, str]) -> Run:
    argv = [sys.executable, "-m", "birdgrab", "chunk", "--manifests", str(root / "manifests")]
    argv += ["--cache", cache, "--out", out, *CHUNKING, *extra]
    return run_process(argv, {**os.environ, **FAST_RETRIES, **env}, REPO)


def _on_disk(
    prepared: Path, work: Path, name: str, extra: list[str], recordings: int
) -> Callable[[int], Run]:
    def chunk(round_number: int) -> Run:
        root = work / name
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(prepared / "manifests", root / "manifests")
        run = _chunk(root, str(prepared / "cache"), str(root / "dataset"), extra, {}).check(name)
        run.facts["per_recording"] = _per_recording(
            (root / "dataset" / "metadata.csv").read_bytes(), recordings
        )
        run.facts["written_mb"] = (
            sum(p.stat().st_size for p in (root / "dataset").rglob("*") if p.is_file()) / 1e6
        )
        return run

    return chunk


def _in_bucket(prepared: Path, work: Path, store: MotoServer, recordings: int) -> Callable[[int], Run]:
    def chunk(round_number: int) -> Run:
        root = work / "bucket"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(prepared / "manifests", root / "manifests")
        prefix = f"dataset-{round_number}"
        env = {**store.env, "XDG_CACHE_HOME": str(root / "xdg")}
        out = f"s3://{BUCKET}/{prefix}"
        run = _chunk(root, f"s3://{BUCKET}/cache", out, ["--jobs", str(WORKERS)], env).check("bucket")
        run.facts["per_recording"] = _per_recording(store.read(f"{prefix}/metadata.csv"), recordings)
        run.facts["puts"] = len(store.sizes(prefix))
        store.remove(prefix)  # moto keeps every object in its memory
        return run

    return chunk


def _projection(report: Report, pool: Rounds, one: Rounds, two: Rounds, recordings: int) -> None:
    """A whole-xeno-canto build from the measured per-recording costs, at the measured 2-worker efficiency."""
    cpu_per_recording = pool.median_cpu_s / recordings
    efficiency = min(1.0, one.best.wall_s / two.best.wall_s / 2)
    written_mb = pool.best.facts["written_mb"] / recordings
    chunks = sum(pool.best.facts["per_recording"]) / recordings
    report.line(
        f"per recording ({RECORDING_S} s of audio): {cpu_per_recording:.2f} CPU s, {chunks:.1f} chunks,"
        f" {written_mb:.2f} MB written; 2 workers run at {efficiency:.0%} of twice 1 worker"
    )
    rows = []
    for cores in PROJECTED_CORES:
        rate = cores * efficiency / cpu_per_recording  # recordings a second
        hours = XENO_CANTO / rate / 3600
        rows.append(
            [
                str(cores),
                f"{hours:.1f} h",
                f"{rate:.0f}",
                f"{rate * chunks:.0f}",
                f"{rate * written_mb:.0f} MB/s",
            ]
        )
        report.line(
            f"  {cores:3d} cores: {hours:5.1f} h of cutting, {rate:.0f} recordings/s settled, {rate * chunks:.0f} PUT/s"
        )
    report.table(
        "projection",
        ["cores", "cutting 1M recordings", "recordings settled / s", "chunk PUTs / s", "written"],
        rows,
        note=f"From this run: {cpu_per_recording:.2f} CPU s per {RECORDING_S} s recording (the pool's median, command"
        f" and workers), {chunks:.1f} chunks and {written_mb:.2f} MB written per recording, 2-worker efficiency"
        f" {efficiency:.0%} carried to every core count. Downloads are not in it: they stay on the command's machine.",
    )


def run(quick: bool = False) -> Report:
    recordings = QUICK_RECORDINGS if quick else RECORDINGS
    rounds = QUICK_ROUNDS if quick else ROUNDS
    report = Report("cluster", quick=quick)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-cluster-") as tmp, MotoServer() as store:
        work = Path(tmp)
        _sources, prepared = prepare_cached_mp3s(work, recordings)
        store.upload(prepared / "cache", "cache")
        jobs = ["--jobs", str(WORKERS)]
        contenders = {
            "pool, 2 processes": _on_disk(prepared, work, "pool", jobs, recordings),
            "Dask, 2 workers": _on_disk(
                prepared, work, "dask-2", [*jobs, "--scheduler", "local"], recordings
            ),
            "Dask, 1 worker": _on_disk(
                prepared, work, "dask-1", ["--jobs", "1", "--scheduler", "local"], recordings
            ),
            "pool, 2 processes, bucket": _in_bucket(prepared, work, store, recordings),
        }
        runs = report.contest("chunk", contenders, rounds)
        expected = runs["pool, 2 processes"][0].facts["per_recording"]
        for name, rounds_of in runs.items():
            for measured in rounds_of:
                if measured.facts["per_recording"] != expected:
                    raise RuntimeError(f"{name} cut {measured.facts['per_recording']} chunks per recording, "
                                       f"the pool {expected}: not the same work")  # fmt: skip
    pool, two, one, bucket = (runs[name] for name in contenders)
    report.line(
        f"chunking {recordings} x {RECORDING_S} s stereo mp3 -> {SAMPLE_RATE} Hz mono {CHUNK_S:g} s WAV"
        f" ({sum(expected)} chunks), {rounds} rounds taking turns"
    )
    rows = []
    for name, rounds_of in runs.items():
        rows.append([name, f"{rounds_of.best.wall_s:.2f} s", f"{rounds_of.median_wall_s:.2f} s",
                     f"{rounds_of.median_cpu_s:.2f} s", f"{rounds_of.peak_mb:.0f} MB"])  # fmt: skip
        report.line(f"  {name:26s} best {rows[-1][1]}, median {rows[-1][2]}, CPU {rows[-1][3]}")
    report.table(
        "speed",
        ["run", "wall, best", "wall, median", "CPU, median", "peak RSS (command)"],
        rows,
        note="Chunk counts equal recording by recording in every run. CPU includes the worker processes"
        " (and the LocalCluster's), not the moto server's.",
    )
    dask_ratio = two.best.wall_s / pool.best.wall_s
    scaling = one.best.wall_s / two.best.wall_s
    bucket_ratio = bucket.best.wall_s / pool.best.wall_s
    goals = [
        ["wall, Dask 2 workers / pool 2 processes", f"{dask_ratio:.2f}", f"<= {GOAL_DASK_VS_POOL:g}",
         verdict(dask_ratio, GOAL_DASK_VS_POOL)],
        ["wall, Dask 1 worker / Dask 2 workers", f"{scaling:.2f}", f">= {GOAL_TWO_WORKERS:g}",
         verdict(scaling, GOAL_TWO_WORKERS, at_least=True)],
        ["wall, bucket / local folder (pool, 2 processes)", f"{bucket_ratio:.2f}", f"<= {GOAL_BUCKET:g}",
         verdict(bucket_ratio, GOAL_BUCKET)],
    ]  # fmt: skip
    for figure, value, goal, met in goals:
        report.line(f"  {figure}: {value} (goal {goal}) {met}")
    report.table("goals", ["figure", "value", "goal", "verdict"], goals)
    _projection(report, pool, one, two, recordings)
    return report.finish()
