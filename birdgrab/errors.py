"""The birdgrab exception family; the CLI maps each class to an exit code in one place.

Messages are written for the person running the command: they say what went wrong and what to
do. None of them may contain a secret (URLs are redacted before they reach an exception).
"""

from __future__ import annotations


class BirdgrabError(Exception):
    """Base class. `exit_code` follows CONTRACT.md."""

    exit_code = 1


class UsageError(BirdgrabError):
    """Bad option, configuration or input file (exit 2)."""

    exit_code = 2


class ManifestError(UsageError):
    """A manifest that cannot be read: malformed, wrong types, or written by a newer birdgrab."""


class ServiceError(BirdgrabError):
    """A service refused a request in a way that retrying will not fix (400/401/403/404)."""

    exit_code = 2

    def __init__(self, service: str, message: str, *, status: int | None = None):
        super().__init__(f"{service}: {message}")
        self.service = service
        self.status = status


class ServiceUnreachable(BirdgrabError):
    """A service could not be reached, or kept failing, after all retries."""

    exit_code = 4

    def __init__(self, service: str, message: str):
        super().__init__(f"{service}: {message}")
        self.service = service


class LockHeld(BirdgrabError):
    """Another birdgrab run holds the lock on this folder (exit 3)."""

    exit_code = 3
