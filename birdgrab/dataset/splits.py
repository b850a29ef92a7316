"""Train/validation/test splits: per recording, stratified per class, and stable across runs."""

from __future__ import annotations

import hashlib
from collections import Counter

from birdgrab.models import SPLITS, Split


def assign_splits(
    by_label: dict[str, list[str]], existing: dict[str, Split], weights: tuple[int, int, int]
) -> dict[str, Split]:
    """Per class, give each recording without a split the split furthest below its share.

    Recordings are taken in an order fixed by a hash of their key, so the outcome depends only on
    which recordings there are; a recording that has a split keeps it.
    """
    result: dict[str, Split] = {}
    for keys in by_label.values():
        counts = Counter(existing[k] for k in keys if k in existing)
        for key in keys:
            if key in existing:
                result[key] = existing[key]
        new = sorted(
            (k for k in keys if k not in existing), key=lambda k: hashlib.sha256(k.encode()).hexdigest()
        )
        for key in new:
            total = sum(counts.values()) + 1
            split = max(
                SPLITS, key=lambda s: (weights[SPLITS.index(s)] * total / 100 - counts[s], -SPLITS.index(s))
            )
            counts[split] += 1
            result[key] = split
    return result
