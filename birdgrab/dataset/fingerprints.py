"""Near-duplicate scores: the acoustic fingerprints the planner's pairs need, computed once per pair."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from birdgrab.dataset.plan import Pair
from birdgrab.storage import Storage

if TYPE_CHECKING:
    from birdgrab.audio import Fingerprint


def score_pairs(
    pairs_by_label: Mapping[str, list[Pair]], known: dict[str, float], cache: Storage
) -> dict[str, float]:
    """Add the similarity of every pair not in `known` (returned, updated), reading the files from
    `cache`. A file that does not decode gets no score: chunking reports it.

    Fingerprints (a few hundred kB each) are kept per class and freed class by class.
    """
    if all(pair.check in known for pairs in pairs_by_label.values() for pair in pairs):
        return known  # a refresh with nothing new: no decoder loaded
    from birdgrab.audio import AudioError, pcm_fingerprint, similarity

    for pairs in pairs_by_label.values():
        fingerprints: dict[str, Fingerprint] = {}
        for pair in pairs:
            if pair.check in known:
                continue
            try:
                for u in (pair.first, pair.second):
                    if u.recording.key not in fingerprints:
                        with cache.local_copy(u.source) as path:
                            fingerprints[u.recording.key] = pcm_fingerprint(path)
            except AudioError:
                continue
            a, b = fingerprints[pair.first.recording.key], fingerprints[pair.second.recording.key]
            known[pair.check] = round(similarity(a, b), 4)
    return known
