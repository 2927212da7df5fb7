"""The record of every finished call, in SQLite: timing, outcome, per-turn latency, usage, transcript, cost.

One row per call in table `calls`; `turns`, `usage` and `transcript` are JSON columns. Caller
numbers are redacted (FreeSWITCH's own CDR keeps the full number for billing); the transcript is
what the caller and the agent actually said (for `take_message` follow-ups and quality review),
so the database file is created with mode 0600.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from esl_agent.logs import redact_number
from esl_agent.ops.cost import Rates, cost_per_minute

log = logging.getLogger("esl_agent.ops.call_records")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    uuid TEXT PRIMARY KEY,
    ended REAL NOT NULL,
    caller TEXT NOT NULL,
    destination TEXT NOT NULL,
    seconds REAL NOT NULL,
    hangup_cause TEXT NOT NULL,
    fallback TEXT NOT NULL,
    final_state TEXT NOT NULL,
    frames_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    commands_failed INTEGER NOT NULL,
    cost REAL NOT NULL,
    currency TEXT NOT NULL,
    cost_per_minute REAL NOT NULL,
    turns TEXT NOT NULL,
    usage TEXT NOT NULL,
    transcript TEXT NOT NULL
)
"""


class CallRecords:
    """Writes one row per finished call (never raises: a full disk must not touch calls)."""

    def __init__(self, path: str | Path, rates: Rates | None = None) -> None:
        self.path = Path(path)
        self.rates = rates or Rates()
        self.total_seconds = 0.0
        self.total_cost = 0.0
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(self.path)
            self._db.execute(_SCHEMA)
        return self._db

    def record(self, call: Any) -> dict[str, Any]:
        """Build and store the record of a finished `Call`; returns it."""
        end = call.ended_at or time.monotonic()
        talk = end - call.answered_at if call.answered_at else 0.0
        cost = self.rates.call_cost(talk, direction="in")
        self.total_seconds += talk
        self.total_cost += cost
        handler = call.handler
        history = getattr(handler, "history", None)
        transcript = [{"role": m.role, "text": m.content} for m in (history.messages() if history else ())
                      if m.role in ("user", "assistant") and m.content]
        usage = getattr(handler, "usage", None)
        entry = {
            "uuid": call.uuid,
            "ended": time.time(),
            "caller": redact_number(call.caller.number),
            "destination": call.caller.destination,
            "seconds": round(talk, 3),
            "hangup_cause": call.hangup_cause or "",
            "fallback": call.fallback_reason or "",
            "final_state": call.state,
            "frames_in": call.stats.frames_in,
            "bytes_out": call.stats.bytes_out,
            "commands_failed": call.stats.commands_failed,
            "cost": round(cost, 5),
            "currency": self.rates.currency,
            "cost_per_minute": round(cost_per_minute(cost, talk), 5),
            "turns": [turn_latencies(t) for t in getattr(handler, "timings", ())],
            "usage": dataclasses.asdict(usage) if dataclasses.is_dataclass(usage) else {},
            "transcript": transcript,
        }
        try:
            db = self._connect()
            row = {k: json.dumps(v) if k in ("turns", "usage", "transcript") else v for k, v in entry.items()}
            db.execute(f"INSERT OR REPLACE INTO calls ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       list(row.values()))
            db.commit()
        except (OSError, sqlite3.Error) as exc:
            log.warning("[%s] could not store the call record: %s", call.uuid, exc)
        return entry

    def get(self, call_uuid: str) -> dict[str, Any] | None:
        db = self._connect()
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM calls WHERE uuid = ?", (call_uuid,)).fetchone()
        db.row_factory = None
        if row is None:
            return None
        out = dict(row)
        for key in ("turns", "usage", "transcript"):
            out[key] = json.loads(out[key])
        return out

    def average_cost_per_minute(self) -> float:
        return cost_per_minute(self.total_cost, self.total_seconds)


STAGES = ("llm_first_token", "first_sentence", "tts_first_byte", "first_audio")


def turn_latencies(timing: Any) -> dict[str, Any]:
    """One turn's marks as milliseconds after the end of the caller's speech, plus its usage."""
    out: dict[str, Any] = {"turn": timing.turn}
    for stage in (*STAGES, "filler", "interrupted"):
        mark = getattr(timing, stage, None)
        out[f"{stage}_ms"] = None if mark is None else round(1000.0 * (mark - timing.end_of_turn), 1)
    out.update(tokens_in=timing.tokens_in, tokens_out=timing.tokens_out, tts_chars=timing.tts_chars)
    return out
