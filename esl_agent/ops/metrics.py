"""Prometheus metrics, collected at scrape time from the controller's plain counters.

Nothing on the per-frame path touches prometheus-client: calls count frames in plain ints and
this collector sums them when /metrics is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


class MetricsSource(Protocol):
    def snapshot(self) -> dict[str, float]:
        """calls_active, calls_total, calls_rejected, commands_failed, frames_in, frames_out,
        bytes_in, bytes_out, fallbacks, draining (0/1)."""
        ...


class ControllerCollector(Collector):
    """Exposes a MetricsSource's snapshot as esl_agent_* metrics."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self._source.snapshot()
        yield GaugeMetricFamily("esl_agent_calls_active", "Calls under control now", value=s["calls_active"])
        yield GaugeMetricFamily("esl_agent_draining", "1 while shutting down", value=s["draining"])
        counters = {
            "calls": ("calls_total", "Calls accepted"),
            "calls_rejected": ("calls_rejected", "Calls turned away (capacity, draining)"),
            "commands_failed": ("commands_failed", "FreeSWITCH commands answered -ERR or timed out"),
            "fallbacks": ("fallbacks", "Calls that ended in the fallback path"),
            "audio_frames_in": ("frames_in", "Caller audio frames received from the fork"),
            "audio_frames_out": ("frames_out", "Audio frames/messages sent to the fork"),
            "audio_bytes_in": ("bytes_in", "Caller audio bytes received"),
            "audio_bytes_out": ("bytes_out", "Agent audio bytes sent"),
        }
        for name, (key, doc) in counters.items():
            yield CounterMetricFamily(f"esl_agent_{name}", doc, value=s[key])


def make_registry(source: MetricsSource) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerCollector(source))
    return registry


LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class TurnMetrics:
    """Per-turn latency histograms (seconds after the end of the caller's speech), observed at hangup."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram("esl_agent_turn_latency_seconds",
                                 "Time from the end of the caller's speech to each stage of the reply",
                                 ["stage"], buckets=LATENCY_BUCKETS, registry=registry)
        self.interrupted = Histogram("esl_agent_turn_interrupted_seconds",
                                     "Time into a turn at which the caller barged in",
                                     buckets=LATENCY_BUCKETS, registry=registry)

    def observe(self, timings: object) -> None:
        for t in timings or ():  # type: ignore[attr-defined]
            for stage in ("llm_first_token", "first_sentence", "tts_first_byte", "first_audio"):
                mark = getattr(t, stage, None)
                if mark is not None:
                    self.latency.labels(stage).observe(max(0.0, mark - t.end_of_turn))
            if getattr(t, "interrupted", None) is not None:
                self.interrupted.observe(max(0.0, t.interrupted - t.end_of_turn))
