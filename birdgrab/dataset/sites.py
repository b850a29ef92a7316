"""Sites for `--split-by site`: recordings within `--site-km` of each other, linked in chains.

A site is a cluster, not a grid cell: two recordings 50 m apart on either side of a grid line are
one site, and so is a chain of recordings each within the distance of the next (single linkage).
A recording with a locality but no coordinates joins the sites of the recordings that share its
locality and country (all of them: the locality may name a larger place than one site, and merging
is the side that keeps a place out of two splits); with no such recording, the recordings of that
locality are a site of their own.

How it stays near-linear (a million recordings in seconds, `bench/bench_split.py`): positions become
points on a sphere of the earth's radius, and the distance test becomes a chord length (monotonic in
the great-circle distance, so the test is exact, with no trouble at the poles or the date line).
Space is cut into cubes whose diagonal is that chord, so all points in one cube are one site
without a comparison; only cubes up to two apart can hold points within reach, found for all cubes
at once by sorted lookups. Pairs of cubes holding one point each (most of them, outside hotspots)
are tested together in numpy; the rest one pair of cubes at a time, skipped once the two are
already one site. Recordings at the very same position count once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from birdgrab.dataset.people import fold

EARTH_RADIUS_KM = 6371.0088
MIN_SITE_KM = 0.05  # cube coordinates must fit 21 bits (positions finer than GPS need no clustering)
_BIAS = 1 << 20
_FACING = 64  # points of each crowded cube tried first against the other's
_SMALL = 16  # cube pairs with at most this many point pairs are tested in bulk
_BATCH = 250_000  # cube pairs tested in one go (at most 16 point pairs each: about 100 MB of arrays)
_OFFSETS = [d for d in itertools.product(range(-2, 3), repeat=3) if d > (0, 0, 0)]  # one of each +-pair


@dataclass(frozen=True)
class Place:
    """Where a recording was made, as far as its archive says."""

    key: str
    latitude: float | None
    longitude: float | None
    locality: str | None
    country: str | None

    @property
    def has_position(self) -> bool:
        return (
            self.latitude is not None
            and self.longitude is not None
            and -90 <= self.latitude <= 90
            and -180 <= self.longitude <= 360
        )


def chord_km(km: float) -> float:
    """The straight-line distance between two points `km` apart on the earth's surface."""
    return 2 * EARTH_RADIUS_KM * math.sin(km / (2 * EARTH_RADIUS_KM))


def _points(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    phi, lam = np.radians(latitude), np.radians(longitude)
    cos_phi = np.cos(phi)
    return EARTH_RADIUS_KM * np.stack([cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)], axis=1)


def _components(count: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of `count` nodes under edges (a[i], b[i]): each node's smallest member."""
    label = np.arange(count)
    while len(a):
        low = np.minimum(label[a], label[b])
        np.minimum.at(label, label[a], low)
        np.minimum.at(label, label[b], low)
        while True:  # pointer jumping until every node points at its root
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
        apart = label[a] != label[b]
        a, b = a[apart], b[apart]
    return label


def cluster_positions(latitude: np.ndarray, longitude: np.ndarray, km: float) -> np.ndarray:
    """For each position, the smallest index of its site: positions within `km` (great-circle),
    linked in chains, share one."""
    count = len(latitude)
    if count == 0:
        return np.empty(0, dtype=np.int64)
    reach = chord_km(max(km, MIN_SITE_KM))
    positions = np.stack([np.asarray(latitude, float), np.asarray(longitude, float)], axis=1)
    unique, point_of = np.unique(positions, axis=0, return_inverse=True)
    point_of = point_of.reshape(-1)
    points = _points(unique[:, 0], unique[:, 1])
    cube = np.floor(points / (reach / math.sqrt(3))).astype(np.int64) + _BIAS
    codes = (cube[:, 0] << 42) | (cube[:, 1] << 21) | cube[:, 2]
    cubes, cube_of = np.unique(codes, return_inverse=True)
    members = np.argsort(cube_of, kind="stable")  # points grouped by cube
    sizes = np.bincount(cube_of, minlength=len(cubes))
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))

    near_a, near_b = [], []
    for dx, dy, dz in _OFFSETS:
        target = cubes + ((dx << 42) + (dy << 21) + dz)
        found = np.minimum(np.searchsorted(cubes, target), len(cubes) - 1)
        hit = cubes[found] == target
        near_a.append(np.nonzero(hit)[0])
        near_b.append(found[hit])
    pair_a, pair_b = np.concatenate(near_a), np.concatenate(near_b)

    work = sizes[pair_a] * sizes[pair_b]
    small = work <= _SMALL
    edges = _close_in_bulk(points, members, first, sizes, pair_a[small], pair_b[small], reach)
    label = _components(len(cubes), *edges)
    big_a, big_b = pair_a[~small], pair_b[~small]
    apart = label[big_a] != label[big_b]
    if apart.any():
        label = _join_big(points, members, first, sizes, label, big_a[apart], big_b[apart], reach)
    site_of_point = label[cube_of]
    # each position's site, named by the smallest position index in it
    site = site_of_point[point_of]
    smallest = np.full(len(cubes), count, dtype=np.int64)
    np.minimum.at(smallest, site, np.arange(count))
    return smallest[site]


def _close_in_bulk(
    points: np.ndarray,
    members: np.ndarray,
    first: np.ndarray,
    sizes: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    reach: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The cube pairs among (a, b) with two points within `reach`, every point pair of a batch of
    cube pairs tested at once (batches bound the memory: a million recordings make tens of
    millions of point pairs)."""
    if len(a) > _BATCH:
        found = [
            _close_in_bulk(
                points, members, first, sizes, a[start : start + _BATCH], b[start : start + _BATCH], reach
            )
            for start in range(0, len(a), _BATCH)
        ]
        return np.concatenate([x for x, _ in found]), np.concatenate([y for _, y in found])
    if not len(a):
        return a, b
    per_pair = sizes[a] * sizes[b]
    pair = np.repeat(np.arange(len(a)), per_pair)
    local = np.arange(len(pair)) - np.repeat(np.cumsum(per_pair) - per_pair, per_pair)
    across = sizes[b][pair]
    one = members[first[a][pair] + local // across]
    other = members[first[b][pair] + local % across]
    close = ((points[one] - points[other]) ** 2).sum(axis=1) <= reach * reach * (1 + 1e-12)
    linked = np.unique(pair[close])
    return a[linked], b[linked]


def _any_within(these: np.ndarray, those: np.ndarray, reach: float) -> bool:
    """Whether some point of `these` is within `reach` of some point of `those` (two crowded cubes).

    The points facing each other are tried first (most pairs of crowded neighbours are settled
    there); then only points close enough along the line between the cubes to matter, in blocks.
    """
    origin = these[0]
    these, those = these - origin, those - origin  # small numbers: exact enough for the dot products
    direction = those[0] - these.mean(axis=0)
    direction /= float(np.sqrt(direction @ direction)) or 1.0
    along_these, along_those = these @ direction, those @ direction
    facing = _FACING
    if len(these) > facing:
        these_first = np.argpartition(-along_these, facing)[:facing]
    else:
        these_first = np.arange(len(these))
    those_first = (
        np.argpartition(along_those, facing)[:facing] if len(those) > facing else np.arange(len(those))
    )
    if _within(these[these_first], those[those_first], reach):
        return True
    # a pair within reach is within reach along the line too
    these = these[along_these >= along_those.min() - reach]
    those = those[along_those <= along_these.max() + reach]
    step = max(1, 1_000_000 // max(len(those), 1))
    return any(_within(these[start : start + step], those, reach) for start in range(0, len(these), step))


def _within(these: np.ndarray, those: np.ndarray, reach: float) -> bool:
    squared = (these**2).sum(axis=1)[:, None] + (those**2).sum(axis=1)[None, :] - 2 * these @ those.T
    return bool((squared <= reach * reach * (1 + 1e-9)).any())


def _join_big(
    points: np.ndarray,
    members: np.ndarray,
    first: np.ndarray,
    sizes: np.ndarray,
    label: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    reach: float,
) -> np.ndarray:
    """Join, one pair of crowded cubes at a time, those with two points within `reach`; a pair already
    one site is skipped, so a dense area costs a few tests per cube, not one per point pair."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        while parent.get(node, node) != node:
            node = parent[node]
        return node

    for cube_a, cube_b in zip(a.tolist(), b.tolist(), strict=True):
        ra, rb = root(int(label[cube_a])), root(int(label[cube_b]))
        if ra == rb:
            continue
        these = points[members[first[cube_a] : first[cube_a] + sizes[cube_a]]]
        those = points[members[first[cube_b] : first[cube_b] + sizes[cube_b]]]
        if _any_within(these, those, reach):
            parent[max(ra, rb)] = min(ra, rb)
    if parent:
        roots = np.array([root(node) for node in range(len(label))])
        label = roots[label]
    return label


def site_groups(places: Iterable[Place], km: float) -> dict[str, str]:
    """Recording key -> its site ('site:<smallest key>'); a recording with neither coordinates nor a
    locality has none (it is not in the result).

    Nodes are numbers: a positioned recording is the cluster `cluster_positions` gives it (the
    smallest position index in it), a locality of unplaced recordings one number after them all;
    only the few joins between the two go through a union-find.
    """
    places = list(places)
    positioned = [i for i, p in enumerate(places) if p.has_position]
    cluster = cluster_positions(
        np.fromiter((places[i].latitude for i in positioned), float, len(positioned)),
        np.fromiter((places[i].longitude for i in positioned), float, len(positioned)),
        km,
    ).tolist()
    node_of: list[int | None] = [None] * len(places)
    for index, site in zip(positioned, cluster, strict=True):
        node_of[index] = site
    folded: dict[tuple[str | None, str | None], tuple[str, str] | None] = {}  # archives repeat places

    def locality_of(place: Place) -> tuple[str, str] | None:
        """Locality and country, folded (case, diacritics, spaces); None without a locality."""
        raw = (place.locality, place.country)
        if raw not in folded:
            words = " ".join(fold(place.locality or "").split())
            folded[raw] = (words, " ".join(fold(place.country or "").split())) if words else None
        return folded[raw]

    localities: dict[tuple[str, str], int] = {}  # localities of recordings without coordinates
    for index, place in enumerate(places):
        if node_of[index] is None and (locality := locality_of(place)) is not None:
            node_of[index] = localities.setdefault(locality, len(positioned) + len(localities))
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        while parent.get(node, node) != node:
            node = parent[node]
        return node

    if localities:  # a positioned recording naming such a locality joins the two
        for index in positioned:
            if (locality := locality_of(places[index])) in localities:
                a, b = root(node_of[index]), root(localities[locality])  # type: ignore[arg-type]
                if a != b:
                    parent[max(a, b)] = min(a, b)
    site_of = {node: root(node) for node in parent}  # the few joined nodes; every other is its own site
    first_key: dict[int, str] = {}
    for place, node in zip(places, node_of, strict=True):
        if node is not None:
            site = site_of.get(node, node)
            if site not in first_key or place.key < first_key[site]:
                first_key[site] = place.key
    name = {site: f"site:{key}" for site, key in first_key.items()}
    return {
        place.key: name[site_of.get(node, node)]
        for place, node in zip(places, node_of, strict=True)
        if node is not None
    }


def places_of(recordings: Sequence) -> list[Place]:
    """The `Place` of each recording (anything with key, latitude, longitude, locality, country)."""
    return [Place(r.key, r.latitude, r.longitude, r.locality, r.country) for r in recordings]
