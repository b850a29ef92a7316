"""`export --embeddings birdnet`: BirdNET's embedding of every chunk in the Parquet and WebDataset exports,
and the README's linear probe on them, over real great tit and storm-petrel recordings."""

from __future__ import annotations

import io
import json
import re
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from birdgrab.dataset.options import verification_sentence
from birdgrab.sandbox import Sandbox, SandboxConfig
from birdgrab.verify import model as birdnet
from tests.conftest import FAST_RETRIES, Birdgrab
from tests.package_audio import CLIPS
from tests.snippets import run_snippet
from tests.test_verify_e2e import CHUNK, keep_only, upload

# Plain imports, no importorskip: under `make test-birdnet` a broken install of the extra fails these
# tests instead of skipping them; `make test` deselects them (-m "not birdnet").
pytestmark = [pytest.mark.birdnet, pytest.mark.slow]

SPECIES = {
    "Parus major": [n for n, c in CLIPS.items() if c.species == "Parus major"],
    "Hydrobates pelagicus": ["XC663885.wav", "XC46092.wav"],
}


def _halves(name: str, folder) -> list:
    """A long recording as two recordings (its first and second half), so each split can have one."""
    audio, rate = sf.read(CLIPS[name].path(), dtype="int16")
    paths = []
    for k, part in enumerate((audio[: len(audio) // 2], audio[len(audio) // 2 :])):
        path = folder / f"{name.removesuffix('.wav')}-{k}.wav"
        sf.write(path, part, rate, subtype="PCM_16")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def verified(tmp_path_factory) -> Birdgrab:
    """A dataset of real recordings chunked with --verify (3 s chunks, half of the recordings in test)."""
    root = tmp_path_factory.mktemp("verified")
    with Sandbox(SandboxConfig(hour_long=False)) as sandbox:
        run = Birdgrab(sandbox, root, {**sandbox.env(), **FAST_RETRIES})
        keys = [upload(sandbox, CLIPS[name].path(), "Parus major") for name in SPECIES["Parus major"]]
        for name in SPECIES["Hydrobates pelagicus"]:
            keys += [upload(sandbox, half, "Hydrobates pelagicus") for half in _halves(name, root)]
        (root / "species.txt").write_text("\n".join(SPECIES) + "\n")
        assert (
            run("catalog", "--source", "xeno-canto", "--species-file", str(root / "species.txt")).exit_code
            == 0
        )
        assert run("filter", "--min-files", "1", "--no-wiki").exit_code == 0
        keep_only(run, set(keys))
        fetched = run("fetch", *CHUNK, "--verify", "birdnet", "--split", "50/0/50")
        assert fetched.exit_code == 0, fetched.output
    return run


def _export(run: Birdgrab, out: str, *args: str, manifests=None):
    result = run(
        "export", "--dataset", str(run.out), "--out", str(run.root / out),
        "--manifests", str(manifests or run.manifests), "--embeddings", "birdnet", "--allow-nd", *args,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result


def test_parquet_export_carries_each_chunks_embedding(verified):
    result = _export(verified, "export")
    table = pq.read_table(sorted((verified.root / "export" / "data").glob("*.parquet")))
    embeddings = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert embeddings.shape == (table.num_rows, 1024) and embeddings.dtype == np.float32
    assert f"{table.num_rows} stored by --verify, 0 computed" in result.output
    # the same as the model gives for the chunk file now, up to the float16 the store keeps
    model = birdnet.load()
    for row in range(0, table.num_rows, 7):
        audio, rate = sf.read(io.BytesIO(table.column("audio")[row]["bytes"].as_py()), dtype="float32")
        fresh = model.run(birdnet.frames_of(birdnet.to_model_rate(audio, rate))).embeddings.mean(axis=0)
        assert np.allclose(embeddings[row], fresh, rtol=2e-3, atol=2e-3)
    card = (verified.root / "export" / "README.md").read_text()
    assert "## Embeddings" in card and "`embedding`" in card
    # what --verify did is dataset.json's account, said in the card's "How it was made"
    made = json.loads((verified.out / "dataset.json").read_text())
    said = verification_sentence(made)
    assert said is not None and f"- {said}" in card.split("## How it was made", 1)[1]
    assert "BirdNET V2.4" in said and "`confirmed` at 0.3 or more" in said and "CC BY-NC-SA 4.0" in said


def test_embeddings_without_the_store_are_computed_and_equal(verified, tmp_path):
    stored = _export(verified, "export-stored")
    computed = _export(verified, "export-computed", manifests=tmp_path)
    assert " 0 stored by --verify" in computed.output and " 0 computed" in stored.output

    def column(out):
        files = sorted((verified.root / out / "data").glob("*.parquet"))
        return np.stack(pq.read_table(files).column("embedding").to_numpy(zero_copy_only=False))

    assert np.array_equal(column("export-stored"), column("export-computed"))


def test_dask_workers_compute_the_embeddings_the_store_holds(verified, tmp_path):
    stored = _export(verified, "export-stored-for-dask")
    on_dask = _export(verified, "export-dask", "--scheduler", "local", manifests=tmp_path)
    rows = int(re.search(r"(\d+) stored by --verify, 0 computed", stored.output).group(1))
    assert f"0 stored by --verify, {rows} computed" in on_dask.output  # the workers ran the model

    def column(out):
        files = sorted((verified.root / out / "data").glob("*.parquet"))
        return np.stack(pq.read_table(files).column("embedding").to_numpy(zero_copy_only=False))

    assert np.array_equal(column("export-stored-for-dask"), column("export-dask"))


def test_webdataset_shards_get_an_embedding_file_in_tar_order(verified):
    _export(verified, "export-wds", "--format", "webdataset")
    _export(verified, "export-wds-parquet")  # its own: tests of this module may run on other workers
    shards = sorted((verified.root / "export-wds" / "data").glob("*.tar"))
    parquet = pq.read_table(sorted((verified.root / "export-wds-parquet" / "data").glob("*.parquet")))
    by_file = dict(
        zip(
            parquet.column("file_name").to_pylist(),
            parquet.column("embedding").to_numpy(zero_copy_only=False),
            strict=True,
        )
    )
    assert shards
    for shard in shards:
        with tarfile.open(shard) as tar:
            keys = [m.name.removesuffix(".wav") for m in tar.getmembers() if m.name.endswith(".wav")]
        vectors = np.load(shard.with_name(f"{shard.stem}.embedding.npy"))
        assert vectors.shape == (len(keys), 1024)
        for key, vector in zip(keys, vectors, strict=True):
            assert np.array_equal(vector, by_file[f"{key}.wav"])


def test_readme_linear_probe_tells_great_tits_from_storm_petrels(verified, monkeypatch, capsys):
    _export(verified, "export")
    monkeypatch.chdir(verified.root)
    found = run_snippet("linear-probe")
    probe, x_test, y_test = found["probe"], found["x_test"], found["y_test"]
    classes = sorted(SPECIES)  # class ids in label order: Hydrobates_pelagicus 0, Parus_major 1
    assert set(y_test) == {0, 1} and len(y_test) >= 6, "both species in the test split"
    assert (probe.predict(x_test) == y_test).mean() >= 0.9, classes
    assert "test accuracy" in capsys.readouterr().out
