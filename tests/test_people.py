"""Recordist identity (birdgrab.dataset.people) against planted people: who is one person, who is not.

The end-to-end proofs (one person across the sandbox's three archives in one split, namesakes kept
apart in metadata.csv) are in tests/test_truth.py; here each rule of the module doc is planted alone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from birdgrab.dataset.people import UNKNOWN, recordist_ids
from birdgrab.dataset.splits import assign_group_splits
from birdgrab.models import Recording

SEEN = datetime(2026, 12, 1, tzinfo=UTC)
_PREFIX = {"xeno-canto": "xc", "europeana": "europeana", "inaturalist": "inaturalist"}


def _recording(
    number: int, source: str, recordist: str | None, login: str | None = None, agent=None
) -> Recording:
    return Recording(
        key=f"{_PREFIX[source]}:{number}",
        source=source,
        source_id=str(number),
        scientific_name="Turdus merula",
        original_name="Turdus merula",
        recordist=recordist,
        recordist_login=login,
        recordist_id=agent,
        first_seen=SEEN,
        last_seen=SEEN,
    )


def _people(*recordings: Recording) -> dict[str, str]:
    return recordist_ids(recordings)


def test_one_person_spelled_four_ways_across_three_archives_is_one_identity():
    spellings = [
        _recording(1, "europeana", "Frommolt, K.-H."),
        _recording(2, "europeana", "Frommolt, Karl-Heinz"),
        _recording(3, "xeno-canto", "Karl-Heinz Frommolt"),
        _recording(4, "inaturalist", "Karl Heinz Frommolt", login="kh_frommolt"),
        _recording(5, "inaturalist", None, login="kh_frommolt"),  # the login alone, on another observation
        _recording(6, "xeno-canto", "KARL-HEINZ FRÖMMOLT"),  # case and a diacritic
    ]
    people = _people(*spellings, _recording(7, "xeno-canto", "Jonas Becker"))
    assert len({people[r.key] for r in spellings}) == 1
    assert people["xc:7"] != people["xc:3"]


def test_different_given_names_never_merge_and_an_initial_fitting_two_people_merges_with_neither():
    people = _people(
        _recording(1, "xeno-canto", "Andreas Schulze"),
        _recording(2, "xeno-canto", "Anna Schulze"),
        _recording(3, "europeana", "Schulze, A."),  # could be either
        _recording(4, "europeana", "Schulze, A."),
        _recording(5, "xeno-canto", "Karl Frommolt"),  # not Karl-Heinz
        _recording(6, "xeno-canto", "Karl-Heinz Frommolt"),
        _recording(7, "europeana", "Frommolt, K."),  # fits Karl and Karl-Heinz: neither
        _recording(8, "europeana", "Frommolt, K.-H."),  # fits Karl-Heinz only
    )
    assert len({people["xc:1"], people["xc:2"], people["europeana:3"]}) == 3
    assert people["europeana:3"] == people["europeana:4"]  # the very same initials: one identity
    assert people["xc:5"] != people["xc:6"]
    assert people["europeana:7"] not in (people["xc:5"], people["xc:6"])
    assert people["europeana:8"] == people["xc:6"]


def test_particles_surname_first_and_agent_references_join_a_person():
    people = _people(
        _recording(1, "xeno-canto", "Jaap de Vries"),
        _recording(2, "europeana", "Vries, J. de"),
        _recording(3, "europeana", "Tembrock, Günter", agent="http://data.europeana.eu/agent/85541"),
        _recording(4, "europeana", "Tembrock, G."),
        _recording(5, "europeana", None, agent="http://data.europeana.eu/agent/85541"),
    )
    assert people["xc:1"] == people["europeana:2"]
    assert people["europeana:3"] == people["europeana:4"] == people["europeana:5"]


def test_logins_institutions_and_nobody_stay_apart():
    people = _people(
        _recording(1, "inaturalist", "vogelfreund", login="vogelfreund"),
        _recording(2, "inaturalist", None, login="birder42"),
        _recording(3, "europeana", "Tierstimmenarchiv Berlin"),
        _recording(4, "xeno-canto", None),
        _recording(5, "xeno-canto", "   "),
    )
    assert len({people["inaturalist:1"], people["inaturalist:2"], people["europeana:3"]}) == 3
    assert people["xc:4"] == people["xc:5"] == UNKNOWN


def test_split_by_person_keeps_every_spelling_in_one_split():
    """Twenty people, each spelled three ways across archives: no person is in two splits."""
    recordings, by_label = [], {"Turdus_merula": []}
    givens = ["Karl-Heinz", "Maria", "Jonas", "Ingrid", "Tomás"]
    for person in range(20):
        surname = f"Vogel{chr(97 + person)}"
        given = givens[person % len(givens)]
        for number, (source, spelling) in enumerate(
            [
                ("xeno-canto", f"{given} {surname}"),
                ("europeana", f"{surname}, {'.-'.join(w[0] for w in given.split('-'))}."),
                ("inaturalist", f"{given.replace('-', ' ')} {surname}"),
            ]
        ):
            recordings.append(_recording(person * 10 + number, source, spelling))
    people = recordist_ids(recordings)
    by_label["Turdus_merula"] = [r.key for r in recordings]
    groups = {key: f"person:{person}" for key, person in people.items()}
    splits = assign_group_splits(by_label, groups, {}, (60, 20, 20)).splits
    for person in range(20):
        keys = [r.key for r in recordings[person * 3 : person * 3 + 3]]
        assert len({people[k] for k in keys}) == 1, keys
        assert len({splits[k] for k in keys}) == 1, keys
    assert set(splits.values()) == {"train", "val", "test"}  # people were dealt, not all put in one split
