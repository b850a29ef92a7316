"""Logging set-up shared by every command: text or JSON lines, to stderr and optionally a file.

Every record passes a redaction filter, so a secret can reach no handler. httpx's own request log
(which prints full URLs, keys included) is kept at WARNING.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from birdgrab.settings import redact

# Attributes every LogRecord has; anything else passed in `extra=` is an event field.
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and k != "event"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, event, message and the event's fields (counts...)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.name),
            "message": record.getMessage(),
        }
        data.update(event_fields(record))
        if record.exc_text:
            data["traceback"] = record.exc_text
        return redact(json.dumps(data, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"{prefix}{record.getMessage()}"
        if record.exc_text:
            text += "\n" + record.exc_text
        return redact(text)


class FileTextFormatter(TextFormatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{stamp} {record.levelname:<7} {super().format(record)}"


class ConsoleHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted, not to the stream it was created with.

    A handler that kept the stream of one run would write into a closed stream once that run's
    stderr is gone (an embedding program or a test runner swapping it), and every later log call,
    even a library's at import, would print "Logging error" instead.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(
    *, quiet: bool = False, verbose: bool = False, log_format: str = "text", log_file: Path | None = None
) -> None:
    """Configure the root logger for one CLI run (idempotent: replaces earlier handlers)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root.setLevel(logging.DEBUG if log_file else level)
    # Libraries that narrate their own steps at INFO ("Found credentials in environment variables.").
    for noisy in (
        "httpx",
        "httpcore",
        "hpack",
        "asyncio",
        "botocore",
        "aiobotocore",
        "s3fs",
        "fsspec",
        "gcsfs",
        "google",
        "urllib3",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    console = ConsoleHandler()
    console.setLevel(level)
    console.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    console.addFilter(RedactingFilter())
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        file_handler.setFormatter(JsonFormatter() if log_format == "json" else FileTextFormatter())
        file_handler.addFilter(RedactingFilter())
        root.addHandler(file_handler)
