"""Logging with the call UUID (and turn id) on every line, and a redactor for personal data.

Use `call_logger(uuid)` inside a call; pass transcripts and phone numbers only as structured
fields through `redact_number()` / `redact_text()`, never raw in the message.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(call)s] %(message)s"


class _CallFieldDefault(logging.Filter):
    """Gives records without a call UUID a dash, so the format never fails."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call"):
            record.call = "-"
        return True


def setup(level: str = "INFO", stream: Any = None) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_CallFieldDefault())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class CallLogger(logging.LoggerAdapter):
    """A logger adapter that stamps every record with the call UUID (and turn id if set)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def call_logger(call_uuid: str, name: str = "esl_agent.call") -> CallLogger:
    """Return a logger whose lines all carry `call_uuid`."""
    logger = logging.getLogger(name)
    logger.addFilter(_CallFieldDefault())
    return CallLogger(logger, {"call": call_uuid})


def redact_number(number: str | None) -> str:
    """Keep the country prefix and the last two digits: +43******67."""
    if not number:
        return "-"
    if len(number) <= 5:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


def redact_text(text: str | None) -> str:
    """Describe a transcript without its content: its length in words."""
    if not text:
        return "<empty>"
    return f"<{len(text.split())} words>"
