"""Licence URLs to short names and the permissions that matter for a dataset."""

from __future__ import annotations

import functools
import re

_CC = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z-]+)/(\d+(?:\.\d+)?)", re.I)


@functools.lru_cache(maxsize=256)  # a catalogue has millions of recordings and a few licences
def licence_name(url: str | None) -> str | None:
    """'https://creativecommons.org/licenses/by-nc-sa/4.0/' -> 'CC BY-NC-SA 4.0'; unknown URLs -> None.

    >>> licence_name("//creativecommons.org/publicdomain/zero/1.0/")
    'CC0 1.0'
    """
    if not url:
        return None
    match = _CC.search(url)
    if not match:
        return None
    kind, code, version = match.group(1).lower(), match.group(2).lower(), match.group(3)
    if kind == "publicdomain":
        return {"zero": f"CC0 {version}", "mark": f"PDM {version}"}.get(code)
    return f"CC {code.upper()} {version}"


def licence_code(name: str) -> str:
    """The version-free code used by `--licence`: 'CC BY-NC-SA 4.0' -> 'BY-NC-SA', 'CC0 1.0' -> 'CC0'."""
    name = name.strip().upper()
    if name.startswith("CC0"):
        return "CC0"
    if name.startswith("PDM"):
        return "PDM"
    name = re.sub(r"^CC[ -]", "", name)
    return re.sub(r"\s+\d+(\.\d+)?$", "", name).strip()


KNOWN_CODES = frozenset({"CC0", "PDM", "BY", "BY-SA", "BY-NC", "BY-NC-SA", "BY-ND", "BY-NC-ND"})


def is_no_derivatives(name: str | None) -> bool:
    return bool(name) and "ND" in licence_code(name).split("-")


def is_non_commercial(name: str | None) -> bool:
    return bool(name) and "NC" in licence_code(name).split("-")
