"""A cheaper media clock for the scale test: one ticker for all calls, prebuilt caller frames.

The simulator's own media clock runs one greenlet per call and mixes, resamples and records
every 20 ms frame, which is right for the latency figures but would make the load process, not
the controller, the bottleneck at hundreds of calls on two cores. `LightSim` keeps the whole
ESL side and the fork client of the simulator (commands, events, playback, streamed playout,
killAudio) and only replaces the per-call media clock: one ticker greenlet walks every call each
20 ms, plays out what FreeSWITCH would play (`_write_side`, not recorded) and sends the caller's
next frame as prebuilt, already masked WebSocket bytes (speech for `utterance_s` every
`period_s`, silence otherwise, as mod_audio_fork sends a frame every 20 ms either way).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

import gevent
import numpy as np

from benchmarks.servers import MAGIC
from esl_agent.sim.caller import CallerScript, speech_like
from esl_agent.sim.fork_client import ForkClient
from esl_agent.sim.freeswitch import Faults, FreeSwitchSimulator, SimulatedCall

FRAME_MS = 20
_MARKS: list[tuple[float, str, int]] | None = None


def install_mark_probe() -> list[tuple[float, str, int]]:
    """Record (arrival, call uuid, chunk id) for every marked agent-audio frame at the simulator."""
    global _MARKS
    if _MARKS is None:
        _MARKS = []
        original: Callable[[ForkClient, bytes], None] = ForkClient._on_binary

        def probe(self: ForkClient, data: bytes) -> None:
            if _MARKS is not None and data[:2] == MAGIC:
                _MARKS.append((time.monotonic(), self.call.uuid, int.from_bytes(data[2:6], "little")))
            original(self, data)

        ForkClient._on_binary = probe  # type: ignore[method-assign]
    return _MARKS


def masked_frame(payload: bytes) -> bytes:
    """One client-to-server binary WebSocket frame (FIN, masked), ready for sendall."""
    mask = os.urandom(4)
    data = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), len(payload))
    n = len(payload)
    header = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    return header + mask + data.tobytes()


class Ticker:
    """The shared 20 ms media clock of every light call."""

    def __init__(self, sample_rate: int = 8000, utterance_s: float = 1.2, period_s: float = 6.0) -> None:
        self.n = sample_rate * FRAME_MS // 1000
        speech = speech_like(int(utterance_s * 1000), sample_rate, seed=3).tobytes()
        step = self.n * 2
        self.speech = [masked_frame(speech[i:i + step]) for i in range(0, len(speech) - step + 1, step)]
        self.silence = masked_frame(b"\x00" * step)
        self.period = int(period_s * 1000 / FRAME_MS)
        self.calls: dict[SimulatedCall, int] = {}  # call -> tick it starts talking from
        self.tick = 0
        self._late: list[float] = []
        self._rng = random.Random(11)
        self._greenlet = gevent.spawn(self._run)

    def add(self, call: SimulatedCall) -> None:
        # first question 2-4 s after the fork is up (after the greeting), then every period
        self.calls[call] = self.tick + 100 + self._rng.randrange(100)

    def reset_stats(self) -> None:
        self._late = []

    def lateness(self) -> float | None:
        return round(float(np.percentile(self._late, 99)) * 1000, 3) if self._late else None

    def stop(self) -> None:
        self._greenlet.kill(block=False)

    def _run(self) -> None:
        frame_s = FRAME_MS / 1000
        start = time.monotonic()
        while True:
            self.tick += 1
            target = start + self.tick * frame_s
            delay = target - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            self._late.append(max(0.0, time.monotonic() - target))
            for call, talk_from in list(self.calls.items()):
                if call._finished or call._hung_up.is_set():
                    self.calls.pop(call, None)
                    continue
                self._step(call, talk_from)

    def _step(self, call: SimulatedCall, talk_from: int) -> None:
        call._write_side(self.n, call.recording.now())
        k = self.tick - talk_from
        frame = self.silence
        if k >= 0:
            pos = k % self.period
            if pos < len(self.speech):
                frame = self.speech[pos]
        for fork in list(call.forks.values()):
            sock = fork._sock
            if fork.connected and not fork.closed and not fork.paused and sock is not None:
                try:
                    sock.sendall(frame)
                except OSError:
                    pass


class LightCall(SimulatedCall):
    """A simulated call whose media runs on the shared ticker (nothing recorded per frame)."""

    def _media_clock(self) -> None:
        self.sim.ticker.add(self)  # type: ignore[attr-defined]


class LightSim(FreeSwitchSimulator):
    """FreeSwitchSimulator whose calls share one cheap media clock (see the module docstring)."""

    def __init__(self, esl_address: tuple[str, int], *, period_s: float = 6.0, **kw: Any) -> None:
        super().__init__(esl_address, **kw)
        self.ticker = Ticker(self.sample_rate, period_s=period_s)

    def place_call(self, caller_number: str = "+4366412345", caller_name: str = "",
                   destination: str = "+43720123456", script: CallerScript | None = None,
                   sip_headers: dict[str, str] | None = None, faults: Faults | None = None) -> SimulatedCall:
        call = LightCall(self, caller_number=caller_number, caller_name=caller_name,
                         destination=destination, script=script, sip_headers=sip_headers,
                         faults=faults or self.faults)
        self.calls.append(call)
        self.calls_by_uuid[call.uuid] = call
        call.start()
        return call

    def shutdown(self) -> None:
        super().shutdown()
        self.ticker.stop()
