"""Sites for `--split-by site` (birdgrab.dataset.sites) against planted places: distances, chains,
localities, and what a newcomer that links two sites does to their splits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from birdgrab.dataset.sites import EARTH_RADIUS_KM, Place, cluster_positions, site_groups
from birdgrab.dataset.splits import assign_group_splits

M_PER_DEG_LAT = math.pi * EARTH_RADIUS_KM * 1000 / 180


def _north(latitude: float, metres: float) -> float:
    return latitude + metres / M_PER_DEG_LAT


def test_two_recordings_50_m_apart_across_a_grid_line_share_a_split():
    """200 pairs, each 50 m apart on either side of a 0.01° line (the old grid's cells), pairs 5 km
    apart from each other: every pair is one site and one split, and the pairs are dealt over all
    three splits."""
    places, by_label = [], {"Turdus_merula": []}
    for pair in range(200):
        line = 47.005 + pair * 0.05  # where the old 0.01° cells met (it rounded), 5.5 km from the next
        for side, latitude in enumerate((_north(line, -25), _north(line, 25))):
            key = f"xc:{pair * 2 + side}"
            places.append(Place(key, latitude, 11.0, None, None))
            by_label["Turdus_merula"].append(key)
    assert f"{places[0].latitude:.2f}" != f"{places[1].latitude:.2f}"  # two cells of the old grid
    sites = site_groups(places, 1.0)
    splits = assign_group_splits(by_label, sites, {}, (60, 20, 20)).splits
    for pair in range(200):
        a, b = f"xc:{pair * 2}", f"xc:{pair * 2 + 1}"
        assert sites[a] == sites[b] and splits[a] == splits[b]
    assert len(set(sites.values())) == 200
    assert set(splits.values()) == {"train", "val", "test"}


def test_sites_are_chains_within_the_distance_and_nothing_farther():
    # a chain of 900 m steps is one site; 1.1 km further on is another; --site-km 2 joins them
    lat = [_north(52.0, 900 * i) for i in range(5)] + [_north(52.0, 900 * 4 + 1100)]
    lon = [13.0] * 6
    assert cluster_positions(np.array(lat), np.array(lon), 1.0).tolist() == [0, 0, 0, 0, 0, 5]
    assert cluster_positions(np.array(lat), np.array(lon), 2.0).tolist() == [0] * 6


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ((89.999, 0.0), (89.999, 180.0), True),  # across the pole: 220 m
        ((10.0, 179.9995), (10.0, -179.9995), True),  # across the date line: 110 m
        ((0.0, 0.0), (0.0, 0.0095), False),  # 1.06 km on the equator
        ((0.0, 0.0), (0.0, 0.0085), True),  # 0.95 km
    ],
)
def test_distance_is_on_the_sphere_at_the_poles_and_the_date_line(a, b, same):
    label = cluster_positions(np.array([a[0], b[0]]), np.array([a[1], b[1]]), 1.0)
    assert bool(label[0] == label[1]) is same


def test_a_recording_with_only_a_locality_joins_the_site_that_shares_its_locality_and_country():
    sites = site_groups(
        [
            Place("xc:1", 52.5, 13.4, "Müggelsee", "Germany"),
            Place("xc:2", 52.5001, 13.4, None, None),
            Place("europeana:3", None, None, "Muggelsee ", "germany"),  # case, diacritics, spaces
            Place("europeana:4", None, None, "Müggelsee", "Austria"),  # another country
            Place("xc:5", 48.0, 11.0, "Müggelsee", "Austria"),  # joins 4 by locality, far from 1
            Place("xc:6", None, None, None, None),  # nowhere: alone (no group)
        ],
        1.0,
    )
    assert sites["xc:1"] == sites["xc:2"] == sites["europeana:3"]
    assert sites["europeana:4"] == sites["xc:5"] != sites["xc:1"]
    assert "xc:6" not in sites


def test_a_newcomer_linking_two_sites_puts_both_in_the_split_of_the_larger_and_says_who_moved():
    places = [Place(f"xc:{i}", _north(50.0, 300 * i), 8.0, None, None) for i in range(3)]  # one site
    places += [Place("xc:10", _north(50.0, 300 * 2 + 1600), 8.0, None, None)]  # another, 1.6 km on
    by_label = {"Turdus_merula": [p.key for p in places]}
    before = {"xc:0": "train", "xc:1": "train", "xc:2": "train", "xc:10": "test"}
    assert site_groups(places, 1.0)["xc:10"] != site_groups(places, 1.0)["xc:0"]
    newcomer = Place("xc:20", _north(50.0, 300 * 2 + 800), 8.0, None, None)  # 800 m from both
    by_label["Turdus_merula"].append("xc:20")
    dealt = assign_group_splits(by_label, site_groups([*places, newcomer], 1.0), before, (80, 10, 10))
    assert {dealt.splits[p.key] for p in [*places, newcomer]} == {"train"}
    assert dealt.moved == {"xc:10": ("test", "train")}
