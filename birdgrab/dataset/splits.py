"""Train/validation/test splits: per recording (or per recordist or site), stratified per class, stable across runs."""

from __future__ import annotations

import hashlib
from collections import Counter

from birdgrab.dataset.options import SplitBy
from birdgrab.models import SPLITS, Recording, Split


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


def split_group(recording: Recording, split_by: SplitBy) -> str:
    """The group a recording shares its split with: itself, its recordist, or its site (coordinates
    rounded to 0.01°, about 1 km; else locality and country). Without a recordist or site it is alone."""
    if split_by == "recordist" and recording.recordist and recording.recordist.strip():
        return "recordist:" + " ".join(recording.recordist.lower().split())
    if split_by == "site":
        if recording.latitude is not None and recording.longitude is not None:
            return f"site:{recording.latitude:.2f},{recording.longitude:.2f}"
        if recording.locality and recording.locality.strip():
            return "site:" + " ".join(f"{recording.locality} {recording.country or ''}".lower().split())
    return "recording:" + recording.key


def assign_group_splits(
    by_label: dict[str, list[str]],
    groups: dict[str, str],
    existing: dict[str, Split],
    weights: tuple[int, int, int],
) -> dict[str, Split]:
    """Deal splits by group (no group in two splits), stratified per class as far as groups allow.

    A group that has a split keeps it, and its new recordings join it. New groups are taken in an
    order fixed by a hash of their name; each goes to the split whose classes are furthest below
    their shares, summed over the group's recordings.
    """
    label_of = {key: label for label, keys in by_label.items() for key in keys}
    members: dict[str, list[str]] = {}
    for key in sorted(label_of):
        members.setdefault(groups.get(key, "recording:" + key), []).append(key)
    totals = Counter(label_of.values())
    counts: dict[str, Counter] = {label: Counter() for label in by_label}
    result: dict[str, Split] = {}
    fresh = []
    for group, keys in members.items():
        kept = Counter(existing[k] for k in keys if k in existing)
        if not kept:
            fresh.append(group)
            continue
        split = max(SPLITS, key=lambda s: (kept[s], -SPLITS.index(s)))
        for key in keys:
            result[key] = split
            counts[label_of[key]][split] += 1
    for group in sorted(fresh, key=lambda g: hashlib.sha256(g.encode()).hexdigest()):
        keys = members[group]

        def need(split: Split, keys: list[str] = keys) -> tuple[float, int]:
            share = weights[SPLITS.index(split)] / 100
            return (
                sum(share * totals[label_of[k]] - counts[label_of[k]][split] for k in keys),
                -SPLITS.index(split),
            )

        split = max(SPLITS, key=need)
        for key in keys:
            result[key] = split
            counts[label_of[key]][split] += 1
    return result
