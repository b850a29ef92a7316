"""Configuration from the environment: endpoints, API keys, contact, politeness limits.

Every base URL is configurable so the same code talks to the real services, a mirror or the
bundled sandbox. Each archive declares its own variables (`birdgrab.sources.archive.Archive`);
`birdgrab.environment` reads them for every archive in the registry. API keys are held as `SecretStr` and registered with `redact`, which every log
handler and every error message goes through: a key can never reach a terminal, log or file.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace

from pydantic import SecretStr

from birdgrab.errors import UsageError

DEFAULT_WIKIPEDIA_API = "https://{lang}.wikipedia.org/w/api.php"
DEFAULT_WIKIDATA_API = "https://www.wikidata.org/w/api.php"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# Query parameters that carry keys, in case a URL is printed before its key is registered.
_KEY_PARAM = re.compile(r"(?i)\b(key|wskey|api_key|apikey)=[^&\s\"']*")


def register_secret(value: str) -> None:
    """Remember `value` so that `redact` removes it from any text."""
    if value and len(value) >= 3:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Replace every registered secret and every `key=`/`wskey=` value in `text` with `***`."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return _KEY_PARAM.sub(lambda m: f"{m.group(1)}=***", text)


@dataclass(frozen=True)
class ServicePolicy:
    """Politeness and robustness limits for one service."""

    name: str
    max_concurrency: int
    requests_per_second: float | None  # None: only the concurrency bounds the rate
    timeout_s: float = 30.0
    attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class MediaBudget:
    """How many bytes of media an archive lets one client take in an hour and in a day (None: no limit)."""

    gb_per_hour: float | None = None
    gb_per_day: float | None = None


@dataclass(frozen=True)
class ArchiveAccess:
    """Where one archive's API is, its key, and how politely to ask it."""

    api: str
    key: SecretStr | None
    policy: ServicePolicy
    media_budget: MediaBudget = MediaBudget()


@dataclass(frozen=True)
class Settings:
    wikipedia_api: str = DEFAULT_WIKIPEDIA_API
    wikidata_api: str = DEFAULT_WIKIDATA_API
    contact: str | None = None
    archives: dict[str, ArchiveAccess] = field(default_factory=dict)  # archive name -> its access
    # Wikimedia (Wikipedia, Wikidata) asks for at most 3 concurrent requests.
    wikipedia: ServicePolicy = field(default_factory=lambda: ServicePolicy("Wikipedia", 3, None))
    wikidata: ServicePolicy = field(default_factory=lambda: ServicePolicy("Wikidata", 3, None))
    # Downloads: at most 6 at a time from any one host (what browsers open over HTTP/1.1).
    audio: ServicePolicy = field(
        default_factory=lambda: ServicePolicy("audio download", 6, None, timeout_s=60.0)
    )

    def wikipedia_endpoint(self, lang: str) -> str:
        return self.wikipedia_api.replace("{lang}", lang)

    def user_agent(self) -> str:
        from birdgrab import __version__

        contact = self.contact or "contact not configured; set BIRDGRAB_CONTACT"
        return f"birdgrab/{__version__} ({contact}) httpx"


def float_env(env: dict[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise UsageError(f"{name} must be greater than 0, got {raw}")
    return value


def tune_policy(policy: ServicePolicy, env: dict[str, str], prefix: str) -> ServicePolicy:
    """Apply BIRDGRAB_<PREFIX>_{RATE,CONCURRENCY,TIMEOUT} and the global retry overrides."""
    changes: dict[str, object] = {}
    if (rate := float_env(env, f"BIRDGRAB_{prefix}_RATE")) is not None:
        changes["requests_per_second"] = rate
    if (conc := float_env(env, f"BIRDGRAB_{prefix}_CONCURRENCY")) is not None:
        changes["max_concurrency"] = max(1, int(conc))
    if (timeout := float_env(env, f"BIRDGRAB_{prefix}_TIMEOUT")) is not None:
        changes["timeout_s"] = timeout
    if (attempts := float_env(env, "BIRDGRAB_RETRY_ATTEMPTS")) is not None:
        changes["attempts"] = max(1, int(attempts))
    if (base := float_env(env, "BIRDGRAB_BACKOFF_BASE")) is not None:
        changes["backoff_base_s"] = base
    if (cap := float_env(env, "BIRDGRAB_BACKOFF_MAX")) is not None:
        changes["backoff_max_s"] = cap
    return replace(policy, **changes)


def check_url(name: str, value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise UsageError(f"{name}={value!r} is not an http(s) URL")
    return value
