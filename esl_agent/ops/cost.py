"""Cost per call minute: carrier rates from conf/policy.yaml plus the platform's own per-minute cost.

Carrier minutes are billed per started minute by most trunks (`billing_increment_s`, default 60);
the platform cost (STT + TTS + LLM, `rates.platform_per_minute` or the agent config's
`ops.cost_per_minute` parts) is charged on the exact duration. Money is kept as float in the
policy's currency and rounded only when printed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from esl_agent.errors import ConfigError


@dataclass(frozen=True)
class Rates:
    """Per-minute rates by destination country (ISO code) and the platform's own cost."""

    currency: str = "EUR"
    per_minute: Mapping[str, float] = field(default_factory=dict)
    inbound_per_minute: float = 0.0
    platform_per_minute: float = 0.0
    billing_increment_s: int = 60

    @classmethod
    def from_policy(cls, policy: Any, platform: Mapping[str, float] | None = None) -> Rates:
        """Rates from a DialPolicy's `rates` section; `platform` (ops.cost_per_minute) overrides."""
        raw = policy.raw.get("rates") or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{policy.source}: rates: expected a mapping")
        per_minute = {}
        for iso, value in (raw.get("per_minute") or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{policy.source}: rates.per_minute.{iso}: expected a number >= 0")
            per_minute[str(iso)] = float(value)
        platform_rate = float(raw.get("platform_per_minute", 0.0))
        if platform:
            platform_rate = float(sum(platform.values()))
        return cls(
            currency=str(raw.get("currency", "EUR")),
            per_minute=per_minute,
            inbound_per_minute=float(raw.get("inbound_per_minute", 0.0)),
            platform_per_minute=platform_rate,
            billing_increment_s=int(raw.get("billing_increment_s", 60)),
        )

    def billed_minutes(self, seconds: float) -> float:
        """Carrier minutes for a call of `seconds` (rounded up to the billing increment)."""
        if seconds <= 0:
            return 0.0
        step = max(1, self.billing_increment_s)
        return math.ceil(seconds / step) * step / 60.0

    def outbound_cost(self, number: str, seconds: float) -> float:
        """Carrier cost of an outbound call to E.164 `number` lasting `seconds`."""
        from esl_agent.policy.dialing import country_of

        rate = self.per_minute.get(country_of(number), max(self.per_minute.values(), default=0.0))
        return rate * self.billed_minutes(seconds)

    def call_cost(self, seconds: float, *, direction: str, number: str = "") -> float:
        """Carrier plus platform cost of one call."""
        carrier = (
            self.outbound_cost(number, seconds)
            if direction == "out"
            else self.inbound_per_minute * self.billed_minutes(seconds)
        )
        return carrier + self.platform_per_minute * max(0.0, seconds) / 60.0


def cost_per_minute(total_cost: float, total_seconds: float) -> float:
    """Average cost per call minute (0 when there were no minutes)."""
    if total_seconds <= 0:
        return 0.0
    return total_cost / (total_seconds / 60.0)
