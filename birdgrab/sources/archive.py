"""What birdgrab needs to know about one archive of bird sounds, in one place.

An `Archive` names itself (the `--source` value and `Recording.source`), spells its key prefix
(`xc:<id>`, chunk files `xc-<id>_0000.wav`), says where its API is and which environment variables
configure it, how politely to talk to it, how it lists and searches, whether a listing is complete
(so that what is missing from it has vanished upstream), how to credit it, and which copy wins
when one recording is published in two archives. Everything downstream asks the registry
(`birdgrab.sources.registry`) instead of deciding on an archive's name.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import SecretStr

from birdgrab.errors import UsageError
from birdgrab.http_client import CheckPayload, DescribeError, ServiceClient
from birdgrab.settings import (
    ArchiveAccess,
    MediaBudget,
    ServicePolicy,
    Settings,
    check_url,
    float_env,
    tune_policy,
)

if TYPE_CHECKING:
    from birdgrab.models import Recording
    from birdgrab.sources import CatalogBatch

# Longest id kept readable in a chunk file name; longer ids are cut and get a hash.
_STEM_ID_CHARS = 120


@dataclass(frozen=True)
class QueryOption:
    """The command-line option an archive's query is given with (`--xc-query`), declared by the archive.

    `parameter` names the query in the catalog manifest's parameters, where refresh finds it again.
    """

    flag: str
    parameter: str
    help: str
    default: str | None = None  # None: the archive decides (e.g. a different default with a species file)


@dataclass(frozen=True)
class ListingRequest:
    """What one catalog run asks of an archive."""

    query: str | None  # as given with the archive's query option; None: its default
    species: list[str] | None  # canonical binomials from --species-file; None: no species list
    since: date | None  # only what is new or changed since then (an incremental listing)
    seen_at: datetime
    # Recordists earlier runs named from references (agent URI -> name): not asked about again.
    agent_names: Mapping[str, str] = field(default_factory=dict)


class RequestTally:
    """Requests made to the services, counted by the archives as they go (retries included)."""

    def __init__(self) -> None:
        self.requests = 0

    def add(self, requests: int) -> None:
        self.requests += requests


@dataclass(frozen=True)
class BirdAnswer:
    """An archive's answer to "is this species a bird?"."""

    is_bird: bool | None  # None: it could not be asked
    how: str  # how it was decided, or why it is still open
    failure: str | None = None  # a failed request, reported as a failure of the run


class Archive(ABC):
    """One archive: its identity, configuration, politeness, listing and attribution.

    Subclasses set the class attributes and implement `catalog`; see `birdgrab.sources.xenocanto`.
    """

    name: ClassVar[str]  # the --source value and Recording.source, e.g. "xeno-canto"
    key_prefix: ClassVar[str]  # keys are "<prefix>:<source id>"; chunk files "<prefix>-<id>_nnnn.wav"
    title: ClassVar[str]  # for people, e.g. "Europeana"
    home_url: ClassVar[str]  # credited in ATTRIBUTION.md
    api_variable: ClassVar[str]  # BIRDGRAB_..._API
    default_api: ClassVar[str]
    key_variable: ClassVar[str | None] = None  # BIRDGRAB_..._KEY; None: no key needed
    key_help: ClassVar[str] = ""  # how to get a key, said whenever one is missing or rejected
    tuning_prefix: ClassVar[str]  # BIRDGRAB_<prefix>_{RATE,CONCURRENCY,TIMEOUT}
    policy: ClassVar[ServicePolicy]
    # Media bytes the archive lets one client take; BIRDGRAB_<prefix>_MEDIA_GB_PER_{HOUR,DAY} change it.
    media_budget: ClassVar[MediaBudget] = MediaBudget()
    default_on: ClassVar[bool] = True  # catalogued without --source when its key is configured
    names_classes: ClassVar[bool] = False  # a merged species takes the name this archive uses
    preference: ClassVar[int] = 100  # lower wins when one recording is in two archives
    query_option: ClassVar[QueryOption | None] = None
    checks_birds: ClassVar[bool] = False  # can say whether a species is a bird (`check_birds`)

    # -- identity ---------------------------------------------------------------------------------
    def key(self, source_id: str) -> str:
        """The recording key: `xc:254462`."""
        return f"{self.key_prefix}:{source_id}"

    def file_stem(self, source_id: str) -> str:
        """`<prefix>-<id>` made safe for a file name: 'xc-254462', 'europeana-11622_TIERSTIMMENARCHIV_...'.

        Characters other than letters, digits, '_' and '-' become '_'; if that (or trimming a very long
        id) changed more than the leading '/', a short hash of the real id keeps names unique.
        """
        raw = source_id.lstrip("/")
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", raw)[:_STEM_ID_CHARS]
        if safe != raw.replace("/", "_") or len(raw) > _STEM_ID_CHARS:
            safe = f"{safe}-{hashlib.sha1(source_id.encode()).hexdigest()[:8]}"
        return f"{self.key_prefix}-{safe}"

    # -- configuration ----------------------------------------------------------------------------
    def load_access(self, env: dict[str, str]) -> ArchiveAccess:
        """Endpoint, key and tuned policy from the environment (the key is not yet registered as a secret)."""
        key = env.get(self.key_variable) if self.key_variable else None
        hour = float_env(env, f"BIRDGRAB_{self.tuning_prefix}_MEDIA_GB_PER_HOUR")
        day = float_env(env, f"BIRDGRAB_{self.tuning_prefix}_MEDIA_GB_PER_DAY")
        return ArchiveAccess(
            api=check_url(self.api_variable, env.get(self.api_variable) or self.default_api),
            key=SecretStr(key) if key else None,
            policy=tune_policy(self.policy, env, self.tuning_prefix),
            media_budget=MediaBudget(
                gb_per_hour=hour if hour is not None else self.media_budget.gb_per_hour,
                gb_per_day=day if day is not None else self.media_budget.gb_per_day,
            ),
        )

    def access(self, settings: Settings) -> ArchiveAccess:
        """This archive's endpoint, key and policy in `settings` (defaults when not configured)."""
        found = settings.archives.get(self.name)
        return found if found is not None else self.load_access({})

    def api_key(self, settings: Settings) -> str | None:
        """The key, or None when none is needed; a UsageError (exit 2) when one is needed and missing."""
        if self.key_variable is None:
            return None
        key = self.access(settings).key
        if key is None:
            raise UsageError(f"{self.name} needs an API key: {self.key_help}")
        return key.get_secret_value()

    def configured(self, settings: Settings) -> bool:
        """Whether a catalog can ask this archive (its key, if it needs one, is set)."""
        return self.key_variable is None or self.access(settings).key is not None

    def policy_in(self, settings: Settings) -> ServicePolicy:
        return self.access(settings).policy

    # -- listing ----------------------------------------------------------------------------------
    def queries(self, request: ListingRequest) -> list[str]:
        """The queries a catalog run lists (each recording's `found_by` is one of them)."""
        query = request.query if request.query is not None else self.default_query()
        return [query] if query is not None else []

    def default_query(self) -> str | None:
        return self.query_option.default if self.query_option else None

    def complete_listings(self, request: ListingRequest) -> set[str]:
        """Queries this run lists completely: a known recording missing from one has vanished upstream.
        An incremental listing (`since`) says nothing about what vanished."""
        return set(self.queries(request)) if request.since is None else set()

    @abstractmethod
    async def catalog(
        self, settings: Settings, request: ListingRequest, tally: RequestTally, batch: CatalogBatch
    ) -> CatalogBatch:
        """Every recording the request's queries list, with the items skipped and why, put into
        `batch` as it arrives (the catalog's batch writes them to disk page by page); returns it."""

    async def check_birds(
        self, settings: Settings, names: list[str], tally: RequestTally
    ) -> dict[str, BirdAnswer]:
        """Whether each species is a bird, for archives that can say (`checks_birds`)."""
        raise NotImplementedError(f"{self.name} cannot say whether a species is a bird")

    async def other_media(self, settings: Settings, recording: Recording, tally: RequestTally) -> list[str]:
        """Other addresses of a recording's audio, best first, for when its media link rots (403,
        404): what the archive's own record of it lists. None by default."""
        return []

    # -- attribution --------------------------------------------------------------------------------
    def credit(self) -> str:
        """'xeno-canto (https://xeno-canto.org)', for ATTRIBUTION.md."""
        return f"{self.title} ({self.home_url})"


class ArchiveClient:
    """An open connection to one archive's API: its endpoint, its key (when it needs one) and a
    `ServiceClient` with its politeness policy. Use as an async context manager."""

    def __init__(
        self,
        archive: Archive,
        settings: Settings,
        *,
        describe_error: DescribeError,
        check_payload: CheckPayload,
    ):
        self._api = archive.access(settings).api
        self._key = archive.api_key(settings)
        self.client = ServiceClient(
            archive.policy_in(settings), settings, describe_error=describe_error, check_payload=check_payload
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.client.aclose()

    async def list_each(
        self,
        queries: list[str],
        batch: CatalogBatch,
        tally: RequestTally,
        search: Callable[[str, CatalogBatch], Awaitable[object]],
    ) -> CatalogBatch:
        """Each query listed into `batch` by `search`, then the client closed; the requests it made
        are counted in `tally` even when a listing fails."""
        async with self:
            try:
                for query in queries:
                    await search(query, batch)
                return batch
            finally:
                tally.add(self.client.requests_made)
