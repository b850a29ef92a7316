"""Train/validation/test splits: per recording (or per recordist or site), stratified per class, stable across runs."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.people import UNKNOWN
from birdgrab.dataset.sites import places_of, site_groups
from birdgrab.models import SPLITS, Recording, Split


@dataclass
class GroupSplits:
    """Each recording's split, and the recordings that had another one before (key -> (was, now))."""

    splits: dict[str, Split] = field(default_factory=dict)
    moved: dict[str, tuple[Split, Split]] = field(default_factory=dict)


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


def split_groups(
    recordings: Iterable[Recording], options: ChunkOptions, people: Mapping[str, str]
) -> dict[str, str]:
    """Recording key -> the group it shares its split with: its person (`people`: recordist
    identities), or its site (`birdgrab.dataset.sites`). A recording without a recordist or a place is
    alone (not in the result)."""
    if options.split_by == "recordist":
        return {key: f"person:{person}" for key, person in people.items() if person != UNKNOWN}
    if options.split_by == "site":
        return site_groups(places_of(list(recordings)), options.site_km)
    return {}


def assign_group_splits(
    by_label: dict[str, list[str]],
    groups: Mapping[str, str],
    existing: Mapping[str, Split],
    weights: tuple[int, int, int],
    pinned: Mapping[str, Split] | None = None,
) -> GroupSplits:
    """Deal splits by group (no group in two splits), stratified per class as far as groups allow.

    A group with a `pinned` member (a recording a model named by --unseen-by may have trained on:
    train) takes that split. A group that has a split keeps it, and its new recordings join it; when
    a newcomer links groups that had different splits, they take the split most of their recordings
    had (the larger group's), and the others move (`moved`). New groups are taken in an order fixed
    by a hash of their name; each goes to the split whose classes are furthest below their shares,
    summed over the group's recordings.
    """
    pinned = pinned or {}
    label_of = {key: label for label, keys in by_label.items() for key in keys}
    members: dict[str, list[str]] = {}
    for key in sorted(label_of):
        members.setdefault(groups.get(key, "recording:" + key), []).append(key)
    totals = Counter(label_of.values())
    counts: dict[str, Counter] = {label: Counter() for label in by_label}
    result = GroupSplits()
    fresh = []
    for group, keys in members.items():
        forced = {pinned[k] for k in keys if k in pinned}
        kept = Counter(existing[k] for k in keys if k in existing)
        if not forced and not kept:
            fresh.append(group)
            continue
        split = min(forced) if forced else max(SPLITS, key=lambda s: (kept[s], -SPLITS.index(s)))
        for key in keys:
            result.splits[key] = split
            counts[label_of[key]][split] += 1
            if key in existing and existing[key] != split:
                result.moved[key] = (existing[key], split)
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
            result.splits[key] = split
            counts[label_of[key]][split] += 1
    return result
