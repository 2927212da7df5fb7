"""Helpers to read the byte-exact FreeSWITCH captures in tests/fixtures/."""

from __future__ import annotations

import base64
import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def chunks(name: str, direction: str = "rx") -> list[bytes]:
    """The TCP chunks of a capture in one direction (rx = FreeSWITCH to controller)."""
    out = []
    for line in (FIXTURES / name).read_text().splitlines():
        record = json.loads(line)
        if record.get("dir") == direction:
            out.append(base64.b64decode(record["b64"]))
    return out
