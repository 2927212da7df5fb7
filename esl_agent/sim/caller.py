"""The simulated caller: a script of utterances, DTMF and a hangup, driven by what the agent does.

A `CallerScript` is a list of steps run in order once the call is answered. Each step starts
either at a fixed time after the answer (`at`), after the agent has been quiet for a while
(`after_agent_silence_ms`, which first waits for the agent to say something), or as a barge-in
(`barge_in_ms` after the agent starts its next reply). Audio comes from a WAV/PCM, from a
generator here (`tone`, `noise`, `speech_like`), or from text through a `synthesize` function.
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import gevent
import numpy as np

if TYPE_CHECKING:
    from esl_agent.sim.freeswitch import SimulatedCall

Synthesizer = Callable[[str, int], "np.ndarray | bytes"]
AudioLike = Union[np.ndarray, bytes, str, Path]  # noqa: UP007

VOICE_RMS = 120.0  # a played frame louder than this counts as the agent talking


# ----------------------------------------------------------------------------- generators


def tone(freqs: float | list[float], ms: int, rate: int = 8000, amplitude: int = 8000) -> np.ndarray:
    """A (multi-)tone of `ms` milliseconds as int16 PCM."""
    if isinstance(freqs, int | float):
        freqs = [float(freqs)]
    n = rate * ms // 1000
    t = np.arange(n) / rate
    sig = np.zeros(n)
    active = [f for f in freqs if f > 0]
    for f in active:
        sig += np.sin(2 * np.pi * f * t)
    if active:
        sig /= len(active)
    return (sig * amplitude).astype("<i2")


def noise(ms: int, rate: int = 8000, amplitude: int = 3000, seed: int | None = 0) -> np.ndarray:
    """White noise of `ms` milliseconds."""
    rng = np.random.default_rng(seed)
    n = rate * ms // 1000
    return np.clip(rng.normal(0, amplitude, n), -32768, 32767).astype("<i2")


def speech_like(ms: int, rate: int = 8000, amplitude: int = 9000, seed: int | None = 0) -> np.ndarray:
    """Voiced-sounding audio: a 120 Hz harmonic series under a 4 Hz syllable envelope."""
    rng = np.random.default_rng(seed)
    n = rate * ms // 1000
    t = np.arange(n) / rate
    f0 = 120 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    sig = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6.28))
    sig = sig * env + rng.normal(0, 0.02, n)
    sig /= max(1e-9, float(np.max(np.abs(sig))))
    return (sig * amplitude).astype("<i2")


def load_wav(path: str | Path, rate: int = 8000) -> np.ndarray:
    """A 16-bit WAV as mono int16 at `rate` (first channel, linear resampling)."""
    from esl_agent.sim.fork_client import resample

    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAV is supported")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            pcm = pcm.reshape(-1, w.getnchannels())[:, 0].copy()
        return resample(pcm, w.getframerate(), rate)


# ----------------------------------------------------------------------------- script


@dataclass
class Utterance:
    """The caller says something. Give exactly one of audio / text."""

    audio: AudioLike | None = None
    text: str | None = None
    at: float | None = None
    after_agent_silence_ms: int | None = None
    barge_in_ms: int | None = None
    max_wait_s: float = 30.0
    label: str = ""


@dataclass
class Dtmf:
    """The caller presses keys (one DTMF event per digit, `gap_s` apart)."""

    digits: str
    at: float | None = None
    after_agent_silence_ms: int | None = None
    duration: int = 2000  # samples, as in DTMF-Duration
    gap_s: float = 0.25
    max_wait_s: float = 30.0


@dataclass
class Hangup:
    """The caller hangs up at `at` seconds after the answer (before it: ORIGINATOR_CANCEL)."""

    at: float | None = None
    after_agent_silence_s: float | None = None
    cause: str | None = None
    max_wait_s: float = 60.0


Step = Union[Utterance, Dtmf, Hangup]  # noqa: UP007


@dataclass
class CallerScript:
    """What the caller does, in order. Use the builder methods or pass `steps`."""

    steps: list[Step] = field(default_factory=list)
    synthesize: Synthesizer | None = None
    hangup_before_answer_s: float | None = None  # give up ringing (ORIGINATOR_CANCEL)

    def say(self, audio: AudioLike | None = None, *, text: str | None = None,
            **when: Any) -> CallerScript:
        self.steps.append(Utterance(audio=audio, text=text, **when))
        return self

    def dtmf(self, digits: str, **when: Any) -> CallerScript:
        self.steps.append(Dtmf(digits, **when))
        return self

    def hangup(self, **when: Any) -> CallerScript:
        self.steps.append(Hangup(**when))
        return self


# ----------------------------------------------------------------------------- runtime


class CallerRuntime:
    """Runs a CallerScript against one SimulatedCall; fed by the call's media clock."""

    def __init__(self, script: CallerScript, call: SimulatedCall) -> None:
        self.script = script
        self.call = call
        self.rate = call.sample_rate
        self._answered_t: float | None = None
        self._mouth: np.ndarray | None = None
        self._mouth_pos = 0
        self._last_voice_t: float | None = None
        self._voice_count = 0
        self._voice_starts: list[float] = []
        self._quiet_since: float | None = 0.0
        self._stopped = False

    # ---- media clock hooks
    def on_answer(self) -> None:
        self._answered_t = self.call.recording.now()

    def hear(self, t: float, frame: bytes, active: bool) -> None:
        """Track whether the agent is talking (a loud played frame)."""
        if not active:
            voiced = False
        else:
            pcm = np.frombuffer(frame, dtype="<i2").astype(np.float64)
            voiced = bool(pcm.size) and float(np.sqrt(np.mean(pcm * pcm))) > VOICE_RMS
        if voiced:
            if self._last_voice_t is None or t - self._last_voice_t > 0.25:
                self._voice_starts.append(t)
            self._last_voice_t = t
            self._voice_count += 1

    def read(self, t: float, n: int) -> bytes:
        """The caller's next `n` samples (silence when not speaking)."""
        m = self._mouth
        if m is None:
            return b"\x00\x00" * n
        chunk = m[self._mouth_pos:self._mouth_pos + n]
        self._mouth_pos += n
        if self._mouth_pos >= m.size:
            self._mouth = None
        out = chunk.tobytes()
        return out + b"\x00\x00" * (n - chunk.size)

    def stop(self) -> None:
        self._stopped = True
        self._mouth = None

    # ---- script
    def run(self) -> None:
        tick = self.call.sim.frame_ms / 1000
        rec = self.call.recording
        give_up = self.script.hangup_before_answer_s
        while self._answered_t is None:
            if self._stopped:
                return
            if give_up is not None and rec.now() >= give_up:
                self.call.record("caller", what="hangup", cause="ORIGINATOR_CANCEL")
                self.call._do_hangup("ORIGINATOR_CANCEL", "recv_cancel", "caller")
                return
            gevent.sleep(tick)
        for step in self.script.steps:
            if self._stopped:
                return
            if not self._wait_trigger(step, tick):
                return
            if isinstance(step, Utterance):
                self._speak(step, tick)
            elif isinstance(step, Dtmf):
                for d in step.digits:
                    self.call.record("caller", what="dtmf", digit=d)
                    self.call.send_dtmf(d, step.duration)
                    gevent.sleep(step.gap_s)
            else:
                cause = step.cause or "NORMAL_CLEARING"
                self.call.record("caller", what="hangup", cause=cause)
                self.call._do_hangup(cause, "recv_bye", "caller")
                return

    def _wait_trigger(self, step: Step, tick: float) -> bool:
        rec = self.call.recording
        begin = rec.now()
        voice_count_at_begin = self._voice_count
        starts_at_begin = len(self._voice_starts)
        at = getattr(step, "at", None)
        silence_ms = getattr(step, "after_agent_silence_ms", None)
        if isinstance(step, Hangup) and step.after_agent_silence_s is not None:
            silence_ms = int(step.after_agent_silence_s * 1000)
        barge = getattr(step, "barge_in_ms", None)
        max_wait = getattr(step, "max_wait_s", 30.0)
        while not self._stopped:
            now = rec.now()
            if at is not None:
                if now >= (self._answered_t or 0.0) + at:
                    return True
            elif barge is not None:
                starts = self._voice_starts
                if len(starts) > starts_at_begin and now >= starts[starts_at_begin] + barge / 1000:
                    return True
            elif silence_ms is not None:
                if isinstance(step, Hangup):
                    last = self._last_voice_t if self._last_voice_t is not None else begin
                    if now - max(last, begin) >= silence_ms / 1000:
                        return True
                elif self._voice_count > voice_count_at_begin and self._last_voice_t is not None \
                        and now - self._last_voice_t >= silence_ms / 1000:
                    return True
            else:
                return True
            if now - begin >= max_wait:
                self.call.record("caller", what="trigger_timeout", step=type(step).__name__)
                return True
            gevent.sleep(tick)
        return False

    def _speak(self, step: Utterance, tick: float) -> None:
        pcm = self._audio_for(step)
        start = self.call.recording.now()
        self._mouth_pos = 0
        self._mouth = pcm
        entry = self.call.record("caller", what="utterance", label=step.label or step.text or "",
                                 start=start, end=None, seconds=round(pcm.size / self.rate, 3))
        while self._mouth is not None and not self._stopped:
            gevent.sleep(tick)
        entry["end"] = self.call.recording.now()

    def _audio_for(self, step: Utterance) -> np.ndarray:
        if step.text is not None:
            if self.script.synthesize is None:
                raise ValueError("Utterance(text=...) needs CallerScript(synthesize=...)")
            out = self.script.synthesize(step.text, self.rate)
            return np.frombuffer(out, dtype="<i2") if isinstance(out, bytes) else out
        audio = step.audio
        if audio is None:
            return speech_like(1000, self.rate)
        if isinstance(audio, np.ndarray):
            return audio.astype("<i2", copy=False)
        if isinstance(audio, bytes):
            return np.frombuffer(audio, dtype="<i2")
        return load_wav(audio, self.rate)
