"""The dataset's account of how it was made, derived from the declarations of `ChunkOptions`' fields.

Every field of `ChunkOptions` says, in its `dataclasses.field` metadata, whether it is a *choice*
(`choice(...)`: it changes a byte of a chunk file or a row of the dataset, so a reader must know it)
or a *setting* (`setting()`: how the work runs, e.g. how many processes; it changes nothing in the
result). A choice names its command-line flag, what it changes (`bytes`: what the cutter writes, so
it is part of `ChunkOptions.signature()`; `rows`: which chunks are kept or what their rows say), where
it sits in `dataset.json`, and how to say it in a sentence. Everything here is read from those
declarations, so a field added to `ChunkOptions` with a `choice(...)` appears in dataset.json, in
`birdgrab stats`, in the export's dataset card and in `chunk --like` without an edit to this module.
The account in words (sentences, a command line) is `birdgrab.dataset.account`.

    >>> from birdgrab.dataset import ChunkOptions
    >>> account(ChunkOptions(windows="events"))["windows"]
    'events'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from birdgrab.errors import UsageError

Effect = Literal["bytes", "rows"]
CHOICE = "birdgrab.choice"  # the metadata key of a ChunkOptions field
# What dataset.json holds besides the choices (and never reads back as one).
CONTEXT_KEYS = frozenset({"birdgrab_version", "made_at", "made_from", "unseen_by", "verification"})


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _same(value: Any) -> Any:
    return value


def _flag_tokens(flag: str, value: Any) -> list[str]:
    """The usual way a value goes back on a command line: `--x 5`, `--flag` for True, nothing for
    False or None (the default of every optional option)."""
    if value is None or value is False:
        return []
    if value is True:
        return [flag]
    return [flag, f"{value:g}" if isinstance(value, float) else str(value)]


@dataclass(frozen=True)
class Choice:
    """How one `ChunkOptions` field is part of the dataset's account."""

    flag: str  # the command-line option that sets it, e.g. "--sample-rate"
    effect: Effect  # bytes: the chunk files (in signature()); rows: which chunks, or what rows say
    key: str  # where dataset.json keeps it; "split.by" is the key "by" inside "split"
    # One sentence for people (the card, stats), from the value and the whole account; None: nothing to say.
    says: Callable[[Any, Mapping[str, Any]], str | None] | None = None
    to_json: Callable[[Any], Any] = _plain
    from_json: Callable[[Any], Any] = _same
    tokens: Callable[[str, Any], list[str]] = _flag_tokens  # (flag, value) -> command-line words
    also_flags: tuple[str, ...] = ()  # other flags that set the same field (e.g. --no-gate)

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, *self.also_flags)


def choice(
    flag: str,
    effect: Effect,
    key: str,
    says: Callable[[Any, Mapping[str, Any]], str | None] | None = None,
    **how: Any,
) -> dict[str, Choice]:
    """Field metadata: this option is a choice the dataset's account records (see the module doc)."""
    return {CHOICE: Choice(flag, effect, key, says, **how)}


def setting() -> dict[str, None]:
    """Field metadata: this option decides how the work runs, not what it makes (not in the account)."""
    return {CHOICE: None}


def choices(options_type: type) -> list[tuple[str, Choice]]:
    """(field name, choice) of every field of a dataclass that is declared a choice, in field order."""
    return [
        (f.name, f.metadata[CHOICE])
        for f in dataclasses.fields(options_type)
        if f.metadata.get(CHOICE) is not None
    ]


def undeclared(options_type: type) -> list[str]:
    """Fields declared neither a choice nor a setting (a test keeps this empty)."""
    return [f.name for f in dataclasses.fields(options_type) if CHOICE not in f.metadata]


def lookup(account: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """(found, value) of a dotted key ('split.train') in an account."""
    node: Any = account
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _put(account: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = account
    for part in parents:
        node = node.setdefault(part, {})
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        node[last] = {**value, **node[last]}  # "split" after "split.by": both kept
    else:
        node[last] = value


def account(options: Any) -> dict[str, Any]:
    """Every choice of `options` (a ChunkOptions), as dataset.json keeps it."""
    result: dict[str, Any] = {}
    for name, declared in choices(type(options)):
        _put(result, declared.key, declared.to_json(getattr(options, name)))
    return result


def options_from_account(
    options_type: type, made: Mapping[str, Any], source: str
) -> tuple[dict[str, Any], list[str]]:
    """The field values an account records (what `chunk --like` starts from), and the flags it does
    not record (an older birdgrab wrote it: they keep their defaults). A choice this birdgrab does
    not know is a UsageError: rebuilding without it would not make the same dataset."""
    known = {declared.key for _, declared in choices(options_type)}
    for key in _leaf_keys(made):
        if key not in known and key.split(".")[0] not in CONTEXT_KEYS and not _inside_known(key, known):
            raise UsageError(
                f"{source} records the choice {key!r}, which this birdgrab does not know: upgrade it"
            )
    values: dict[str, Any] = {}
    missing: list[str] = []
    annotations = {f.name: str(f.type) for f in dataclasses.fields(options_type)}
    for name, declared in choices(options_type):
        found, value = lookup(made, declared.key)
        if found:
            try:
                values[name] = _typed(annotations[name], declared.from_json(value))
            except (TypeError, ValueError, KeyError) as exc:
                raise UsageError(
                    f"{source}: {declared.key} = {value!r} is not a {declared.flag} value ({exc})"
                ) from None
        else:
            missing.append(declared.flag)
    return values, missing


_KINDS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _typed(annotation: str, value: Any) -> Any:
    """`value` as the field's plain type ('float | None': a number or None), or a ValueError: a JSON
    file may hold anything, and `validated()` compares numbers. Other types (tuples, literals) are
    checked by their `from_json` and by `validated()`."""
    if value is None and "None" in annotation:
        return None
    kind = _KINDS.get(annotation.split("|")[0].strip())
    if kind is None:
        return value
    if kind is bool or isinstance(value, bool):
        if not (kind is bool and isinstance(value, bool)):
            raise ValueError(f"expected {annotation}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"expected {annotation}")
        return value
    if not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise ValueError(f"expected {annotation}")
    return kind(value)


def _leaf_keys(made: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in made.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path.split(".")[0] not in CONTEXT_KEYS:
            keys += _leaf_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def _inside_known(key: str, known: set[str]) -> bool:
    """'split.train' lies inside the choice 'split' (a value that is itself an object)."""
    return any(key.startswith(k + ".") for k in known)


def recorded(made: Mapping[str, Any]) -> bool:
    """Whether an account was written by a birdgrab that records every choice (older ones wrote only
    sample rate, chunk length, gate, windows and split, and "fixed" windows whatever was used)."""
    return "made_from" in made
