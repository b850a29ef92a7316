"""When a catalog run may leave species.json unread: only while nothing about a species is open or
of age (the end-to-end proof, over 127.0.0.1, is in test_e2e_catalog.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from birdgrab import manifests
from birdgrab.known_species import KnownSpecies
from birdgrab.models import Species, SpeciesManifest, TaxonIds, WikiArticle

LOOKED_UP = datetime(2026, 9, 1, tzinfo=UTC)


def species(**changes) -> Species:
    settled = dict(
        scientific_name="Turdus philomelos",
        is_bird=True,
        wiki={
            "de": WikiArticle(
                lang="de", status="article", title="Singdrossel", wikidata_id="Q18811", checked_at=LOOKED_UP
            )
        },
        taxon_ids=TaxonIds(wikidata_id="Q18811", ebird="sonthr1", checked_at=LOOKED_UP + timedelta(days=5)),
    )
    return Species(**{**settled, **changes})


def noted(tmp_path, one: Species) -> KnownSpecies:
    """species.json holding `one`, and the store's note of it as a catalog run leaves it."""
    manifests.save(
        tmp_path / manifests.SPECIES,
        manifests.new_manifest(SpeciesManifest, {}, species={one.scientific_name: one}),
    )
    note = KnownSpecies(tmp_path, None).note({one.scientific_name: one}, {}, "de")
    return KnownSpecies(tmp_path, note)


@pytest.mark.parametrize(
    "open_species",
    [
        species(wiki={}),  # never looked up on de Wikipedia
        species(is_bird=None),  # bird status open
        species(taxon_ids=None),  # a Wikidata item, no taxonomy ids yet
        species(taxon_ids=TaxonIds(wikidata_id="Q1", checked_at=LOOKED_UP)),  # ids of another item
    ],
)
def test_a_species_with_something_open_is_asked_about_on_every_run(tmp_path, open_species):
    assert not noted(tmp_path, open_species).quiet("de", None, LOOKED_UP + timedelta(days=1))


def test_settled_species_are_quiet_until_their_oldest_look_up_comes_of_age(tmp_path):
    known = noted(tmp_path, species())
    assert known.quiet("de", None, LOOKED_UP + timedelta(days=3650))  # no maximum age
    assert known.quiet("de", 90, LOOKED_UP + timedelta(days=89))
    assert not known.quiet("de", 90, LOOKED_UP + timedelta(days=91))  # the article; its ids a bit later
    assert not known.quiet("en", None, LOOKED_UP + timedelta(days=1))  # another language: not looked up
    assert known.count == 1 and known.manifest is not None  # read on demand


def test_a_species_json_changed_since_the_note_is_read_at_once(tmp_path):
    known = noted(tmp_path, species())
    manifests.save(tmp_path / manifests.SPECIES, manifests.new_manifest(SpeciesManifest, {}, species={}))
    reread = KnownSpecies(tmp_path, known.note({}, {}, "de") | {"size": -1})
    assert reread.species == {} and not reread.quiet("de", None, LOOKED_UP)
