"""The cluster end to end, with real parts on 127.0.0.1: the sandbox as the archive, moto's S3 server
(behind a counting, faulting proxy) as the bucket, and `dask scheduler` + `dask worker` (2 processes).

The planted truth is a local build of the same selection: chunk files, metadata.csv and export rows
built in a bucket on the cluster must be byte-identical to it, also after a worker or the command
itself is SIGKILLed mid-run, and a store that throttles or drops connections must not change the
result of the run that follows. `make test-cluster` runs these.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from typer.testing import CliRunner, Result

from birdgrab.cli import app
from birdgrab.sandbox import Sandbox, SandboxConfig
from tests.conftest import FAST_RETRIES, Birdgrab
from tests.object_store import SECRET_KEY, Fault, dask_cluster, object_store

# moto and distributed are imported plainly where the store and the cluster start (tests/object_store.py):
# under `make test-cluster` a broken install fails these tests instead of skipping them; `make test`
# deselects them.
pytestmark = [pytest.mark.cluster]

BUCKET = "birds"
SPECIES = "Turdus merula\nFringilla coelebs\nParus major\n"
CHUNKING = ("--sample-rate", "16000", "--chunk-seconds", "5")


@pytest.fixture(scope="module")
def store():
    with object_store() as running:
        yield running


@pytest.fixture(scope="module")
def archive():
    with Sandbox(SandboxConfig(hour_long=False)) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(store, tmp_path_factory):
    # allowed-failures=1: a task that kills its worker twice raises KilledWorker (3 by default: slower).
    env = {**store.env, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    with dask_cluster(tmp_path_factory.mktemp("dask"), env) as running:
        yield running


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory, store):
    """The planted truth: the same selection built on this machine, into folders."""
    root = tmp_path_factory.mktemp("reference")
    run = Birdgrab(archive, root, {**archive.env(), **FAST_RETRIES})
    (root / "species.txt").write_text(SPECIES)
    assert run("catalog", "--species-file", str(root / "species.txt")).exit_code == 0
    assert run("filter", "--min-files", "1", "--max-files", "4").exit_code == 0
    shutil.copytree(run.manifests, root / "selected")  # the manifests before any fetch, for the bucket runs
    fetched = run("fetch", "--jobs", "2", *CHUNKING)
    assert fetched.exit_code == 0, fetched.output
    exported = run("export", "--dataset", str(run.out), "--out", str(root / "export"))
    assert exported.exit_code == 0, exported.output
    return root


@pytest.fixture(scope="module")
def bucket_cache(store, archive, reference, tmp_path_factory):
    """Manifests that fetched the selection into s3://birds/cache (no chunking): the cache every
    chunk test below cuts from."""
    store.reset()
    store.make_bucket(BUCKET)
    root = tmp_path_factory.mktemp("bucket-cache")
    shutil.copytree(reference / "selected", root / "manifests")
    run = cli(archive, root, store)
    fetched = run(
        "fetch", "--manifests", str(root / "manifests"), "--no-chunk", "--cache", f"s3://{BUCKET}/cache"
    )
    assert fetched.exit_code == 0, fetched.output
    return root / "manifests"


class BucketRun(Birdgrab):
    """The CLI in-process with the storage environment; every folder or URL given by the test."""

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = CliRunner().invoke(app, list(args), env={**self.env, **(env or {})}, catch_exceptions=False)
        assert "Traceback" not in result.output, result.output
        return result


def cli(archive: Sandbox, root: Path, store) -> BucketRun:
    return BucketRun(
        archive,
        root,
        {**archive.env(), **FAST_RETRIES, **store.env, "XDG_CACHE_HOME": str(root / "xdg")},
    )


def chunk_in_bucket(run: Birdgrab, manifests: Path, prefix: str, scheduler: str, *extra: str):
    return run(
        "chunk",
        "--manifests", str(manifests),
        "--cache", f"s3://{BUCKET}/cache",
        "--out", f"s3://{BUCKET}/{prefix}",
        "--scheduler", scheduler,
        *CHUNKING,
        *extra,
    )  # fmt: skip


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_same_dataset(store, prefix: str, reference: Path) -> None:
    """Every chunk file byte-identical, the same metadata.csv, classes.json and credits; nothing else."""
    ours = store.list(BUCKET, prefix)
    theirs = {k: v for k, v in local_files(reference / "dataset").items() if not k.startswith(".")}
    assert sorted(ours) == sorted(theirs), "the bucket holds exactly the dataset's files"
    for name, data in theirs.items():
        if name != "dataset.json":  # it says when it was made
            assert ours[name] == data, name
    assert any(name.endswith(".wav") for name in ours)


def copy_manifests(source: Path, root: Path) -> Path:
    target = root / "manifests"
    shutil.copytree(source, target)
    return target


def worker_on_port(cluster, port: int) -> int | None:
    """The worker process (under `dask worker`: its nannies' children) whose connection comes from `port`."""
    for process in psutil.Process(cluster.workers.pid).children(recursive=True):
        try:
            if any(c.laddr and c.laddr.port == port for c in process.net_connections(kind="tcp")):
                return process.pid
        except psutil.Error:
            continue
    return None


def dataset_put(prefix: str):
    return lambda method, path: method == "PUT" and path.startswith(f"/{BUCKET}/{prefix}/")


def test_fetch_chunk_and_export_in_a_bucket_on_the_cluster_match_a_local_build(
    store, archive, reference, cluster, tmp_path
):
    store.reset()
    store.make_bucket(BUCKET)
    manifests = copy_manifests(reference / "selected", tmp_path)
    run = cli(archive, tmp_path, store)
    fetched = run(
        "fetch", "--manifests", str(manifests), "--cache", f"s3://{BUCKET}/cache",
        "--out", f"s3://{BUCKET}/dataset", "--scheduler", cluster.address, "--jobs", "2", *CHUNKING,
    )  # fmt: skip
    assert fetched.exit_code == 0, fetched.output
    assert_same_dataset(store, "dataset", reference)
    cache = store.list(BUCKET, "cache")
    assert cache and all(name.count("/") == 1 and not name.startswith(".") for name in cache)
    assert sorted(cache) == sorted(k for k in local_files(reference / "cache") if not k.startswith(".")), (
        "the same content-addressed files, and no partial transfer in the bucket"
    )

    exported = run(
        "export", "--dataset", f"s3://{BUCKET}/dataset", "--out", f"s3://{BUCKET}/export",
        "--scheduler", cluster.address,
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    files = store.list(BUCKET, "export")
    card = yaml.safe_load(files["README.md"].decode().split("---")[1])
    ours = export_rows(files, [entry["path"] for entry in card["configs"][0]["data_files"]])
    local = local_files(reference / "export")
    theirs = export_rows(local, [f"data/{split}-*" for split in ("train", "validation", "test")])
    pd.testing.assert_frame_equal(ours, theirs)
    assert files["CREDITS.csv"] == local["CREDITS.csv"] and files["classes.json"] == local["classes.json"]

    again = run(
        "export", "--dataset", f"s3://{BUCKET}/dataset", "--out", f"s3://{BUCKET}/export",
        "--scheduler", cluster.address,
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    files_again = store.list(BUCKET, "export")
    card_again = yaml.safe_load(files_again["README.md"].decode().split("---")[1])
    assert card_again != card, "the new card names the new generation of shards"
    assert {n.split("/")[1] for n in files_again if n.startswith("data/")} == {
        card_again["configs"][0]["data_files"][0]["path"].split("/")[1]
    }, "the previous generation's shards are gone once the card names the new ones"

    # Nothing the run wrote or said holds the secret key: manifests, output, the task payloads.
    texts = [fetched.output, exported.output, *(p.read_bytes().decode(errors="replace") for p in
             manifests.rglob("*") if p.is_file())]  # fmt: skip
    assert not [text for text in texts if SECRET_KEY in text]


def export_rows(files: dict[str, bytes], patterns: list[str]) -> pd.DataFrame:
    """Every shard's rows (audio bytes included), in file-name order."""
    import fnmatch

    frames = [
        pd.read_parquet(io.BytesIO(data))
        for name, data in sorted(files.items())
        if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
    ]
    rows = pd.concat(frames).sort_values("file_name").reset_index(drop=True)
    rows["audio"] = rows["audio"].map(lambda audio: audio["bytes"])
    return rows


def test_a_worker_sigkilled_mid_batch_changes_nothing(
    store, archive, reference, bucket_cache, cluster, tmp_path
):
    run = cli(archive, tmp_path, store)
    manifests = copy_manifests(bucket_cache, tmp_path)
    killed: list[int] = []

    def kill_the_uploader(method: str, path: str, client: tuple[str, int]) -> None:
        if not killed and dataset_put("killed-worker")(method, path):
            pid = worker_on_port(cluster, client[1])
            assert pid is not None, "the first chunk comes from one of the workers"
            os.kill(pid, signal.SIGKILL)  # before its upload is answered: mid-batch
            killed.append(pid)

    store.proxy.hook = kill_the_uploader
    result = chunk_in_bucket(run, manifests, "killed-worker", cluster.address)
    store.proxy.hook = None
    assert killed, "a worker was killed"
    assert result.exit_code == 0, result.output
    assert "KilledWorker" not in result.output
    assert_same_dataset(store, "killed-worker", reference)
    cluster.wait_for_workers(2)


def test_the_command_sigkilled_mid_run_then_run_again_gives_the_same_dataset(
    store, archive, reference, bucket_cache, cluster, tmp_path
):
    manifests = copy_manifests(bucket_cache, tmp_path)
    env = {**os.environ, **cli(archive, tmp_path, store).env}
    argv = [
        str(Path(sys.executable).parent / "birdgrab"), "chunk", "--manifests", str(manifests),
        "--cache", f"s3://{BUCKET}/cache", "--out", f"s3://{BUCKET}/killed-command",
        "--scheduler", cluster.address, *CHUNKING,
    ]  # fmt: skip
    command = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    puts: list[str] = []

    def kill_the_command(method: str, path: str, client: tuple[str, int]) -> None:
        if dataset_put("killed-command")(method, path):
            puts.append(path)
            if len(puts) == 3:
                command.send_signal(signal.SIGKILL)

    store.proxy.hook = kill_the_command
    command.communicate(timeout=300)
    store.proxy.hook = None
    assert command.returncode == -signal.SIGKILL, "killed mid-run, after the third chunk arrived"
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    assert_same_dataset(store, "killed-command", reference)


def test_a_throttled_store_is_waited_out_and_a_failing_one_fails_items_then_a_rerun_completes(
    store, archive, reference, bucket_cache, cluster, tmp_path
):
    run = cli(archive, tmp_path, store)
    manifests = copy_manifests(bucket_cache, tmp_path)
    store.proxy.faults = [Fault(dataset_put("throttled"), "503", times=2)]  # SlowDown, twice
    throttled = chunk_in_bucket(run, manifests, "throttled", cluster.address)
    assert store.proxy.faults[0].fired == 2
    assert throttled.exit_code == 0, throttled.output
    assert_same_dataset(store, "throttled", reference)

    # Every upload of one recording drops its connection. (One recording, not a whole class: a class
    # that first appears in a later run takes the next class id, by the stable-ids promise.)
    manifests = copy_manifests(bucket_cache, tmp_path / "failing")
    stem = min(k for k in local_files(reference / "dataset") if k.startswith("Parus_major/")).split("/")[1]
    stem = stem.rsplit("_", 1)[0]
    parus = lambda method, path: dataset_put("failing")(method, path) and f"/{stem}_" in path  # noqa: E731
    store.proxy.faults = [Fault(parus, "drop")]
    failing = chunk_in_bucket(run, manifests, "failing", cluster.address)
    store.proxy.faults = []
    assert failing.exit_code == 1, failing.output
    assert "failed:" in failing.output and "cannot write chunks" in failing.output
    assert "Traceback" not in failing.output
    listed = store.list(BUCKET, "failing")
    assert not [name for name in listed if f"/{stem}_" in f"/{name}"], "no half recording is left"
    assert any(name.startswith("Parus_major/") for name in listed), "the class's other recordings were cut"
    again = chunk_in_bucket(run, manifests, "failing", cluster.address)
    assert again.exit_code == 0, again.output
    assert_same_dataset(store, "failing", reference)


def test_a_recording_that_kills_its_worker_fails_alone_with_a_reason(
    store, archive, reference, bucket_cache, cluster, tmp_path
):
    run = cli(archive, tmp_path, store)
    manifests = copy_manifests(bucket_cache, tmp_path)
    chunks = Birdgrab(archive, reference).manifest("chunks.json")["entries"]
    poison_key, poison = next((k, e) for k, e in sorted(chunks.items()) if e["status"] == "ok")
    stem = poison["chunks"][0]["file_name"].split("/")[1].rsplit("_", 1)[0]
    kills: list[int] = []

    def out_of_memory(method: str, path: str, client: tuple[str, int]) -> None:
        # As a recording too big for its worker: whichever worker cuts it dies, every time.
        if dataset_put("poisoned")(method, path) and f"/{stem}_" in path:
            pid = worker_on_port(cluster, client[1])
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)

    store.proxy.hook = out_of_memory
    try:
        result = chunk_in_bucket(run, manifests, "poisoned", cluster.address)
    finally:
        store.proxy.hook = None
    assert kills, "the recording killed its workers"
    assert result.exit_code == 1, result.output
    assert f"failed: {poison_key}: its worker died" in result.output
    assert "KilledWorker" not in result.output and "Traceback" not in result.output
    listed = store.list(BUCKET, "poisoned")
    expected = {k for k in local_files(reference / "dataset") if k.endswith(".wav") and f"/{stem}_" not in k}
    assert {k for k in listed if k.endswith(".wav")} == expected, "everything else was cut"
    cluster.wait_for_workers(2)


def test_a_refresh_on_the_cluster_that_finds_nothing_new_uploads_nothing(
    store, archive, reference, bucket_cache, cluster, tmp_path
):
    run = cli(archive, tmp_path, store)
    manifests = copy_manifests(bucket_cache, tmp_path)
    where = ("--cache", f"s3://{BUCKET}/cache", "--out", f"s3://{BUCKET}/refreshed")
    first = run("refresh", "--manifests", str(manifests), *where, "--scheduler", cluster.address, *CHUNKING)
    assert first.exit_code == 0, first.output
    assert_same_dataset(store, "refreshed", reference)
    store.proxy.reset()
    second = run("refresh", "--manifests", str(manifests), *where, "--scheduler", cluster.address, *CHUNKING)
    assert second.exit_code == 0, second.output
    assert store.proxy.writes() == [], "no PUT, POST or DELETE"
    assert store.proxy.requests["GET"] > 0, "it did look"


def test_the_scheduler_going_away_stops_the_run_cleanly_and_a_rerun_completes(
    store, archive, reference, bucket_cache, tmp_path
):
    run = cli(archive, tmp_path, store)
    manifests = copy_manifests(bucket_cache, tmp_path)
    with dask_cluster(tmp_path / "dask", store.env) as doomed:

        def stop_the_scheduler(method: str, path: str, client: tuple[str, int]) -> None:
            if dataset_put("orphaned")(method, path) and doomed.scheduler.poll() is None:
                doomed.scheduler.kill()

        store.proxy.hook = stop_the_scheduler
        try:
            stopped = chunk_in_bucket(run, manifests, "orphaned", doomed.address)
        finally:
            store.proxy.hook = None
        assert stopped.exit_code == 1, stopped.output
        assert "went away" in stopped.output and "Traceback" not in stopped.output
    with dask_cluster(tmp_path / "dask-again", store.env) as fresh:
        again = chunk_in_bucket(run, manifests, "orphaned", fresh.address)
    assert again.exit_code == 0, again.output
    assert_same_dataset(store, "orphaned", reference)


def test_bad_input_is_one_line_exit_2_and_writes_nothing(store, archive, reference, tmp_path):
    store.make_bucket(BUCKET)
    run = cli(archive, tmp_path, store)
    manifests = copy_manifests(reference / "selected", tmp_path)
    before = local_files(manifests)
    cases = {
        "unknown scheme": (["--cache", "nosuch://bucket/cache"], {}, "unknown storage scheme"),
        "missing bucket": (["--cache", "s3://no-such-bucket/cache"], {}, "does not exist"),
        "missing credentials": (
            ["--cache", f"s3://{BUCKET}/bad-input"],
            {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
            "s3://birds/bad-input",
        ),
        "secret in options": (
            ["--cache", f"s3://{BUCKET}/bad-input"],
            {"BIRDGRAB_STORAGE_OPTIONS": '{"secret": "x"}'},
            "must not hold credentials",
        ),
        "silent scheduler": (["--scheduler", "tcp://127.0.0.1:9"], {}, "does not answer"),
        "not a scheduler": (["--scheduler", "sometimes"], {}, "Dask scheduler address"),
    }
    for name, (args, env, says) in cases.items():
        where = ["--manifests", str(manifests), "--out", str(tmp_path / "dataset")]
        result = run("fetch", *where, "--cache", str(tmp_path / "cache"), *args, env=env)
        assert result.exit_code == 2, (name, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and says in lines[0], (name, result.output)
        assert SECRET_KEY not in result.output
    assert local_files(manifests) == before
    assert not (tmp_path / "dataset").exists() and not (tmp_path / "cache").exists()
    assert store.list(BUCKET, "bad-input") == {}


def test_a_chunk_task_payload_holds_no_secret(store, monkeypatch):
    from birdgrab.dataset.tasks import ChunkBatch, ChunkItem
    from birdgrab.storage import open_storage

    for name, value in store.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BIRDGRAB_STORAGE_OPTIONS", '{"client_kwargs": {"region_name": "eu-west-1"}}')
    batch = ChunkBatch(
        open_storage(f"s3://{BUCKET}/cache"),
        open_storage(f"s3://{BUCKET}/dataset"),
        (ChunkItem("xc:1", "ab/abc.mp3", "Turdus_merula", "xc-1"),),
    )
    payload = pickle.dumps(batch)
    assert SECRET_KEY.encode() not in payload and b"AKIA" not in payload
    assert pickle.loads(payload).dataset.url == f"s3://{BUCKET}/dataset"
