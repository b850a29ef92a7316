"""The archive seam: an archive registered by this test alone goes through catalog, filter, fetch and
chunk, and nothing outside `birdgrab.sources` had to learn its name."""

from __future__ import annotations

import csv

import pytest

from birdgrab.models import Recording
from birdgrab.settings import ServicePolicy
from birdgrab.sources import CatalogBatch
from birdgrab.sources.archive import Archive, ListingRequest, RequestTally
from birdgrab.sources.registry import registry


class TinyArchive(Archive):
    """A made-up archive: it 'lists' a few of the sandbox's song thrush uploads under its own ids."""

    name = "tiny"
    key_prefix = "tny"
    title = "Tiny Sound Archive"
    home_url = "https://tiny.example"
    api_variable = "BIRDGRAB_TINY_API"
    default_api = "https://tiny.example/api"
    tuning_prefix = "TINY"
    policy = ServicePolicy("Tiny", 2, None)
    default_on = False

    def __init__(self, uploads: list[tuple[str, str]]):
        self.uploads = uploads  # (audio URL, licence URL)

    async def catalog(
        self, settings, request: ListingRequest, tally: RequestTally, batch: CatalogBatch
    ) -> CatalogBatch:
        for number, (url, licence_url) in enumerate(self.uploads, 1):
            batch.add(
                Recording(
                    key=self.key(f"T{number}"),
                    source=self.name,
                    source_id=f"T{number}",
                    scientific_name="Turdus philomelos",
                    original_name="Turdus philomelos",
                    recordist=f"Tiny recordist {number}",
                    licence_url=licence_url,
                    licence="CC BY 4.0",
                    page_url=f"{self.home_url}/T{number}",
                    audio_url=url,
                    first_seen=request.seen_at,
                    last_seen=request.seen_at,
                    found_by="all",
                )
            )
        return batch


@pytest.fixture
def tiny(sandbox):
    thrushes = [r for r in sandbox.archive.xc.values() if r.name == "Turdus philomelos" and r.audio][:3]
    archive = registry.register(
        TinyArchive([(f"{sandbox.base_url}/xeno-canto/{r.id}/download", r.licence_url) for r in thrushes])
    )
    yield archive
    registry.unregister(archive.name)


@pytest.mark.slow
def test_an_archive_registered_in_a_test_alone_reaches_the_dataset(birdgrab, tiny):
    assert birdgrab("catalog", "--source", "tiny").exit_code == 0
    recordings = birdgrab.recordings()
    assert set(recordings) == {"tny:T1", "tny:T2", "tny:T3"}
    assert birdgrab("filter", "--min-files", "1", "--source", "tiny").exit_code == 0
    result = birdgrab("fetch", "--chunk-seconds", "5")
    assert result.exit_code == 0, result.output

    wavs = sorted(p.name for p in (birdgrab.out / "Turdus_philomelos").glob("*.wav"))
    assert wavs and all(name.startswith("tny-T") for name in wavs)
    with open(birdgrab.out / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["source"] for r in rows} == {"tiny"}
    assert {r["recording_key"] for r in rows} <= {"tny:T1", "tny:T2", "tny:T3"}
    attribution = (birdgrab.out / "ATTRIBUTION.md").read_text()
    assert "Tiny Sound Archive (https://tiny.example)" in attribution
    assert "Tiny recordist 1, Tiny Sound Archive, CC BY 4.0" in attribution


def test_source_option_lists_registered_archives_and_refuses_others(birdgrab):
    result = birdgrab("catalog", "--source", "nowhere")
    assert result.exit_code == 2
    assert "'nowhere' is not an archive" in result.output
    assert "xeno-canto" in result.output and "europeana" in result.output


def test_a_new_archive_needs_a_new_name_and_key_prefix(tiny):
    with pytest.raises(ValueError, match="key prefix"):
        registry.register(TinyArchive([]))
