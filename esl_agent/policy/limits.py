"""Outbound limits like the trusted carriers have: calls per minute, concurrent calls, daily spend.

`OutboundLimits.admit(number)` is asked after the dial policy allowed a number; it returns None
(go, and the call is counted) or the reason for refusing. `finished(number, seconds)` ends a call
and books its estimated cost against the daily cap; `cancel(number)` undoes an admit whose call
never started. One instance per controller process; gevent-safe (no blocking inside except the
small state write). With `state_path` the day's spend survives a restart of the controller, so
restarting cannot reset the cap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from esl_agent.errors import ConfigError
from esl_agent.ops.cost import Rates
from esl_agent.policy.dialing import DialPolicy


class OutboundLimits:
    """Calls per minute, concurrent outbound calls and a daily spend cap."""

    def __init__(
        self,
        calls_per_minute: int,
        concurrent: int,
        daily_spend_cap: float,
        rates: Rates,
        state_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if calls_per_minute < 1 or concurrent < 1 or daily_spend_cap < 0:
            raise ConfigError("limits: calls_per_minute and concurrent_outbound must be >= 1, cap >= 0")
        self.calls_per_minute = calls_per_minute
        self.concurrent = concurrent
        self.daily_spend_cap = daily_spend_cap
        self.rates = rates
        self._starts: deque[float] = deque()
        self._active = 0
        self._spent = 0.0
        self._day = ""
        self._lock = threading.Lock()
        self.state_path = state_path
        if state_path is not None:
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                saved = json.loads(open(state_path, encoding="utf-8").read())  # noqa: SIM115
                self._day, self._spent = str(saved["day"]), float(saved["spent"])

    @classmethod
    def from_policy(cls, policy: DialPolicy, state_path: str | os.PathLike[str] | None = None) -> OutboundLimits:
        raw: Mapping[str, Any] = policy.raw.get("limits") or {}
        return cls(
            int(raw.get("calls_per_minute", 6)),
            int(raw.get("concurrent_outbound", 2)),
            float(raw.get("daily_spend_cap", 20.0)),
            Rates.from_policy(policy),
            state_path,
        )

    def _roll(self, now: float) -> None:
        day = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
        if day != self._day:
            self._day, self._spent = day, 0.0
        while self._starts and self._starts[0] <= now - 60.0:
            self._starts.popleft()

    def admit(self, number: str, now: float | None = None) -> str | None:
        """None to go ahead (the call is counted), else why not."""
        now = time.time() if now is None else now
        with self._lock:
            self._roll(now)
            if self._spent >= self.daily_spend_cap:
                return f"daily spend cap {self.daily_spend_cap:.2f} {self.rates.currency} reached"
            if self._active >= self.concurrent:
                return f"{self.concurrent} concurrent outbound calls"
            if len(self._starts) >= self.calls_per_minute:
                return f"{self.calls_per_minute} calls per minute"
            self._starts.append(now)
            self._active += 1
            return None

    def cancel(self, number: str) -> None:
        """Undo an admit whose call never started."""
        with self._lock:
            self._active = max(0, self._active - 1)

    def finished(self, number: str, seconds: float, now: float | None = None) -> float:
        """End a call; book and return its estimated carrier cost."""
        now = time.time() if now is None else now
        cost = self.rates.outbound_cost(number, seconds)
        with self._lock:
            self._roll(now)
            self._active = max(0, self._active - 1)
            self._spent += cost
            self._save()
        return cost

    def _save(self) -> None:
        if self.state_path is None:
            return
        tmp = f"{self.state_path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"day": self._day, "spent": self._spent}, fh)
            os.replace(tmp, self.state_path)
        except OSError as exc:  # the in-memory cap still holds for this process
            logging.getLogger("esl_agent.policy.limits").warning(
                "cannot save the day's spend to %s: %s", self.state_path, exc.strerror
            )

    @property
    def spent_today(self) -> float:
        return self._spent
