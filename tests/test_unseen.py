"""The `--unseen-by` table (birdgrab.dataset.unseen) against the cut-offs its sources state."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from birdgrab.dataset.unseen import MODELS, training_data_of
from birdgrab.errors import UsageError
from birdgrab.models import Recording

SEEN = datetime(2026, 12, 1, tzinfo=UTC)
_PREFIX = {"xeno-canto": "xc", "europeana": "europeana", "inaturalist": "inaturalist"}


def _recording(source: str, source_id: str, uploaded: date | None = None, provider: str | None = None):
    return Recording(
        key=f"{_PREFIX[source]}:{source_id}", source=source, source_id=source_id, scientific_name="Turdus merula",
        original_name="Turdus merula", uploaded=uploaded, data_provider=provider, first_seen=SEEN, last_seen=SEEN,
    )  # fmt: skip


def test_birdnet_24_may_have_heard_xeno_canto_up_to_xc694204_and_nothing_else():
    seen = training_data_of("birdnet-2.4").seen()
    assert seen(_recording("xeno-canto", "694204")) and seen(_recording("xeno-canto", "1"))
    assert not seen(_recording("xeno-canto", "694205"))
    assert not seen(_recording("inaturalist", "5"))  # BirdNET's makers name no iNaturalist sounds
    assert not seen(_recording("europeana", "2048128_ Tierstimmenarchiv_x"))


def test_perch_20_heard_uploads_before_may_2025_and_the_tierstimmenarchiv():
    seen = training_data_of("perch-2.0").seen()
    assert seen(_recording("xeno-canto", "999999", uploaded=date(2025, 4, 30)))
    assert not seen(_recording("xeno-canto", "999999", uploaded=date(2025, 5, 1)))
    assert seen(_recording("inaturalist", "7", uploaded=None))  # no upload date: the safe side
    assert seen(_recording("europeana", "a", provider="Museum für Naturkunde Berlin"))
    assert not seen(_recording("europeana", "b", provider="Naturalis Biodiversity Center"))


def test_every_model_names_its_source_and_an_unknown_one_is_a_usage_error():
    assert all(entry.source.startswith("https://github.com/") and entry.rules for entry in MODELS)
    with pytest.raises(UsageError, match=r"birdnet-2\.4"):
        training_data_of("birdnet-9")
