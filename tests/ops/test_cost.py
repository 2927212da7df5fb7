"""Cost per call minute."""

from __future__ import annotations

from pathlib import Path

import pytest

from esl_agent.errors import ConfigError
from esl_agent.ops.cost import Rates, cost_per_minute
from esl_agent.policy.dialing import DialPolicy

ROOT = Path(__file__).resolve().parents[2]
POLICY = DialPolicy.from_file(ROOT / "conf" / "policy.yaml")


@pytest.mark.parametrize(
    ("seconds", "minutes"),
    [(0, 0.0), (-5, 0.0), (1, 1.0), (59, 1.0), (60, 1.0), (61, 2.0), (3600, 60.0)],
)
def test_billed_minutes_round_up(seconds: float, minutes: float) -> None:
    assert Rates(billing_increment_s=60).billed_minutes(seconds) == minutes


def test_per_second_billing() -> None:
    assert Rates(billing_increment_s=1).billed_minutes(90) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("number", "seconds", "cost"),
    [
        ("+436641234567", 60, 0.02),
        ("+49301234567", 61, 0.04),
        ("+41446681800", 180, 0.15),
        ("+390612345678", 30, 0.03),
        ("+33123456789", 60, 0.05),  # unknown rate: the most expensive known one
    ],
)
def test_outbound_cost(number: str, seconds: float, cost: float) -> None:
    assert Rates.from_policy(POLICY).outbound_cost(number, seconds) == pytest.approx(cost)


def test_call_cost_adds_platform() -> None:
    rates = Rates.from_policy(POLICY)
    assert rates.platform_per_minute == pytest.approx(0.012)
    assert rates.call_cost(90, direction="in") == pytest.approx(0.018)
    assert rates.call_cost(90, direction="out", number="+436641234567") == pytest.approx(0.04 + 0.018)


def test_platform_from_agent_config_overrides() -> None:
    rates = Rates.from_policy(POLICY, platform={"stt": 0.016, "tts": 0.004})
    assert rates.platform_per_minute == pytest.approx(0.02)


def test_cost_per_minute() -> None:
    assert cost_per_minute(0.3, 600) == pytest.approx(0.03)
    assert cost_per_minute(1.0, 0) == 0.0


def test_bad_rate_is_config_error() -> None:
    raw = dict(POLICY.raw)
    raw["rates"] = {"per_minute": {"AT": "cheap"}}
    with pytest.raises(ConfigError, match=r"rates\.per_minute\.AT"):
        Rates.from_policy(DialPolicy.from_mapping(raw))
