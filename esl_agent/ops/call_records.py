"""One JSON line per finished call: timing, outcome, traffic and cost per call minute."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from esl_agent.logs import redact_number
from esl_agent.ops.cost import Rates, cost_per_minute

log = logging.getLogger("esl_agent.ops.cdr")


class CdrLog:
    """Appends a call detail record for every call the controller ran.

    Caller numbers are redacted (FreeSWITCH's own CDR keeps the full number for billing).
    """

    def __init__(self, path: str | Path, rates: Rates | None = None) -> None:
        self.path = Path(path)
        self.rates = rates or Rates()
        self.total_seconds = 0.0
        self.total_cost = 0.0

    def record(self, call: Any) -> dict[str, Any]:
        """Write the record of a finished `Call`; returns it. Never raises."""
        end = call.ended_at or time.monotonic()
        talk = end - call.answered_at if call.answered_at else 0.0
        cost = self.rates.call_cost(talk, direction="in")
        self.total_seconds += talk
        self.total_cost += cost
        entry = {
            "time": time.time(),
            "uuid": call.uuid,
            "caller": redact_number(call.caller.number),
            "destination": call.caller.destination,
            "seconds": round(talk, 3),
            "hangup_cause": call.hangup_cause or "",
            "fallback": call.fallback_reason or "",
            "final_state": call.state,
            "turns": call.turn_id,
            "frames_in": call.stats.frames_in,
            "bytes_out": call.stats.bytes_out,
            "commands_failed": call.stats.commands_failed,
            "cost": round(cost, 5),
            "currency": self.rates.currency,
            "cost_per_minute": round(cost_per_minute(cost, talk), 5),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
        except OSError as exc:
            log.warning("[%s] could not write the call record: %s", call.uuid, exc)
        return entry

    def average_cost_per_minute(self) -> float:
        return cost_per_minute(self.total_cost, self.total_seconds)
