"""Recordist identity: one id per person across spellings and archives, decided conservatively.

Archives spell one person many ways: the Tierstimmenarchiv (through Europeana) writes "Frommolt,
K.-H.", an agent record "Frommolt, Karl-Heinz", xeno-canto "Karl-Heinz Frommolt", iNaturalist a login
(`kh_frommolt`) and sometimes a name. `--split-by recordist` must keep a person in one split, or a
model is tested on a voice, a microphone and a site it trained on; the metadata column `recordist_id`
carries the identity (the `recordist` column keeps each recording's own spelling: attribution is the
archive's words). Not to be confused with `Recording.recordist_id`, the archive's reference for a
recordist it did not name (a Europeana agent URI): here that reference is one more link.

How a spelling becomes a person:
- normalised: case, diacritics ("Günter" = "Gunter"), punctuation; "Surname, Given" and "Given
  Surname" read alike; particles go with the surname ("Jaap de Vries" = "Vries, J. de");
  hyphenated and spaced given names are the same tokens ("Karl-Heinz" = "Karl Heinz");
- spellings whose given names are all written out are one person when surname and given names are
  equal. Two different given names never merge ("Karl" is not "Karl-Heinz");
- a spelling with initials ("K.-H.", "G.") joins the one written-out person of that surname whose
  given names it fits ("K.-H." fits Karl-Heinz; "K." fits Karl-Heinz and Karl); when it fits two
  people, or none, it stays apart (spellings with the very same initials share one identity);
- links the archives give join identities whatever the spellings: an iNaturalist login shown with a
  name on one observation and alone on another, a Europeana agent reference;
- a spelling that is not "given names and a surname" (a login, one word, an institution) is its own
  identity.

Limits: double surnames written without a comma ("Jacobo Ramil Millarengo" against "Ramil
Millarengo, J.") and surname-first names without a comma are not recognised as one person; German
"ue" for "ü" is not folded ("Guenter" is not "Günter", which would also make "Michael" "Michal").
Merging less is the safe side for evaluation only when a person's spellings land in one split
anyway; what is not merged can leak.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from birdgrab.models import Recording

UNKNOWN = "unknown"
_PARTICLES = frozenset(
    {
        "de",
        "da",
        "del",
        "della",
        "der",
        "den",
        "di",
        "du",
        "la",
        "le",
        "van",
        "von",
        "vom",
        "zu",
        "ten",
        "ter",
        "dos",
        "das",
    }
)
# Words that make a spelling an institution, not a person.
_INSTITUTIONS = frozenset(
    {"museum", "museu", "archive", "archiv", "archives", "tierstimmenarchiv", "institut", "institute",
     "university", "universitat", "universiteit", "society", "club", "team", "library", "foundation",
     "stiftung", "naturkunde", "collection", "sammlung", "project", "projekt", "recordist"}
)  # fmt: skip
_FOLD = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "æ": "ae", "œ": "oe", "þ": "th", "ı": "i"})


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower case, without diacritics: 'Günter Müller' -> 'gunter muller'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True)
class PersonName:
    """A spelling read as a surname and given names (each a full name, or one letter: an initial)."""

    surname: str
    given: tuple[str, ...]

    @property
    def written_out(self) -> bool:
        return all(len(token) > 1 for token in self.given)

    def fits(self, person: PersonName) -> bool:
        """Whether this (abbreviated) spelling may be `person`: the same surname, and each given name
        equal to the person's in that place, or its initial."""
        if self.surname != person.surname or len(self.given) > len(person.given):
            return False
        return all(
            mine == theirs if len(mine) > 1 else theirs.startswith(mine)
            for mine, theirs in zip(self.given, person.given, strict=False)
        )

    def slug(self) -> str:
        return f"{self.surname.replace(' ', '-')}_{'-'.join(self.given)}"


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s.\-‐–]+", text) if w]


def _given_tokens(text: str) -> list[str]:
    """'K.-H.' -> ['k', 'h']; 'Karl-Heinz' -> ['karl', 'heinz']; 'KH' (capitals) -> ['k', 'h']."""
    tokens = []
    for word in _words(text):
        if 2 <= len(word) <= 3 and word.isupper() and word.isalpha():
            tokens += list(fold(word))  # "KH Frommolt": initials run together
        else:
            tokens.append(fold(word))
    return tokens


@lru_cache(maxsize=65536)
def parse_name(spelling: str) -> PersonName | None:
    """A person's name, or None for what cannot be read as one (a login, one word, an institution)."""
    text = " ".join(spelling.split())
    if not text or any(c.isdigit() for c in text) or "@" in text or "_" in text:
        return None
    if any(word in _INSTITUTIONS for word in _words(fold(text))):
        return None
    if text.count(",") == 1:
        surname_part, given_part = (part.strip() for part in text.split(","))
        surname = [fold(w) for w in surname_part.split()]
        given = _given_tokens(given_part)
        while given and given[-1] in _PARTICLES:  # "Vries, J. de"
            surname.insert(0, given.pop())
    elif "," not in text:
        words = text.split()
        if len(words) < 2:
            return None
        cut = len(words) - 1
        while cut > 1 and fold(words[cut - 1]) in _PARTICLES:  # "Jaap de Vries"
            cut -= 1
        surname = [fold(w) for w in words[cut:]]
        given = _given_tokens(" ".join(words[:cut]))
    else:
        return None
    surname_text = " ".join(w.strip(".") for w in surname if w.strip("."))
    if not surname_text or not given or not all(t.isalpha() for t in given):
        return None
    return PersonName(surname_text, tuple(given))


def _text_slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", fold(text)).strip("-") or UNKNOWN


class _Links:
    """Union-find over identity nodes (tuples)."""

    def __init__(self) -> None:
        self.parent: dict[tuple, tuple] = {}

    def find(self, node: tuple) -> tuple:
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: tuple, b: tuple) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def _person_nodes(spellings: Iterable[str]) -> dict[str, tuple]:
    """Each spelling's node: ('person', surname, given) for written-out names and initials that fit
    exactly one of them, ('initials', surname, given) for the others, ('text', slug) for non-names."""
    parsed = {s: parse_name(s) for s in spellings}
    people: dict[str, set[tuple[str, ...]]] = defaultdict(set)  # surname -> written-out given names
    for name in parsed.values():
        if name is not None and name.written_out:
            people[name.surname].add(name.given)
    nodes = {}
    for spelling, name in parsed.items():
        if name is None:
            nodes[spelling] = ("text", _text_slug(spelling))
        elif name.written_out:
            nodes[spelling] = ("person", name.surname, name.given)
        else:
            fitting = [g for g in people.get(name.surname, ()) if name.fits(PersonName(name.surname, g))]
            nodes[spelling] = (
                ("person", name.surname, fitting[0])
                if len(fitting) == 1
                else ("initials", name.surname, name.given)
            )
    return nodes


_KIND_RANK = {"person": 0, "initials": 1, "text": 2, "login": 3, "agent": 4}


def _identity_id(node: tuple) -> str:
    kind = node[0]
    if kind in ("person", "initials"):
        return PersonName(node[1], node[2]).slug()
    if kind == "login":
        return f"{_text_slug(node[2])}@{node[1]}"
    if kind == "agent":
        return f"agent-{_text_slug(node[1])}"
    return node[1]


def _best(nodes: list[tuple]) -> tuple:
    """The node that names a group: a written-out name before initials, a name before a login; the
    one with most given names; then the first in order (stable)."""
    return min(
        nodes, key=lambda n: (_KIND_RANK[n[0]], -len(n[2]) if n[0] in ("person", "initials") else 0, n)
    )


def recordist_ids(recordings: Iterable[Recording]) -> dict[str, str]:
    """Recording key -> its recordist's identity (`UNKNOWN` when the archive names nobody)."""
    recordings = list(recordings)
    spellings = {r.recordist.strip() for r in recordings if r.recordist and r.recordist.strip()}
    person_of = _person_nodes(spellings)
    links = _Links()
    node_of: dict[str, tuple] = {}
    for r in recordings:
        nodes = []
        spelling = r.recordist.strip() if r.recordist else ""
        login = r.recordist_login.strip() if r.recordist_login else ""
        if login:  # the archive shows this login with this name: one person
            nodes.append(("login", r.source, fold(login)))
        if spelling and fold(spelling) != fold(login):
            nodes.append(person_of[spelling])
        if r.recordist_id:  # the archive's reference (a Europeana agent): one person whatever the name
            nodes.append(("agent", r.recordist_id))
        if not nodes:
            continue
        node_of[r.key] = nodes[0]
        for other in nodes[1:]:
            links.union(nodes[0], other)
    members: dict[tuple, list[tuple]] = defaultdict(list)
    for node in list(links.parent) + list(node_of.values()):
        members[links.find(node)].append(node)
    name_of = {root: _identity_id(_best(nodes)) for root, nodes in members.items()}
    return {r.key: name_of[links.find(node_of[r.key])] if r.key in node_of else UNKNOWN for r in recordings}
