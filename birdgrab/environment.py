"""The process environment read once into `Settings`, for every archive in the registry.

It sits above both `birdgrab.settings` (the value types every client imports) and the archive registry (whose archives
declare their own variables), so neither has to import the other.
"""

from __future__ import annotations

import os

from birdgrab.settings import (
    DEFAULT_WIKIDATA_API,
    DEFAULT_WIKIPEDIA_API,
    Settings,
    check_url,
    register_secret,
    tune_policy,
)
from birdgrab.sources.registry import registry


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: the process environment) and register the keys as secrets."""
    env = dict(os.environ if env is None else env)
    archives = {archive.name: archive.load_access(env) for archive in registry}
    for access in archives.values():
        if access.key is not None:
            register_secret(access.key.get_secret_value())
    wikipedia_api = check_url(
        "BIRDGRAB_WIKIPEDIA_API", env.get("BIRDGRAB_WIKIPEDIA_API") or DEFAULT_WIKIPEDIA_API
    )
    defaults = Settings()
    return Settings(
        wikipedia_api=wikipedia_api,
        wikidata_api=check_url(
            "BIRDGRAB_WIKIDATA_API", env.get("BIRDGRAB_WIKIDATA_API") or DEFAULT_WIKIDATA_API
        ),
        contact=(env.get("BIRDGRAB_CONTACT") or "").strip() or None,
        archives=archives,
        wikipedia=tune_policy(defaults.wikipedia, env, "WIKIPEDIA"),
        wikidata=tune_policy(defaults.wikidata, env, "WIKIDATA"),
        audio=tune_policy(defaults.audio, env, "DOWNLOAD"),
    )
