"""Decides whether caller speech while the agent is busy is a real interruption.

Rules, tuned per agent state (`StateTuning`): backchannels ("mhm", "ja", "okay") never interrupt;
an interim transcript that matches what the agent is playing is its own echo; interim speech in
the first `gate_ms` of a sentence is ignored (echo and line noise cluster at a sentence start);
fewer real words than `min_words` only *pause* the reply, and if no more words follow within
`false_interruption_ms` the conversation resumes it; enough words interrupt. A final transcript
with a real word interrupts (the caller finished saying something), unless it is echo.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rapidfuzz import fuzz

from esl_agent.config import PipelineSettings
from esl_agent.providers.base import Transcript

# Hesitations count as backchannels whatever the configuration says.
_HESITATIONS = frozenset({"uh", "um", "hm", "hmm", "mm", "mhm", "mm-hmm", "uh-huh", "äh", "ähm", "öh"})
_WORD = re.compile(r"[\w'’-]+", re.UNICODE)


class Decision(enum.Enum):
    IGNORE = "ignore"  # not an interruption (backchannel, echo, noise, nothing to interrupt)
    PAUSE = "pause"  # maybe an interruption: stop playback, resume if no words follow
    INTERRUPT = "interrupt"  # the caller is taking the turn


@dataclass(frozen=True)
class PlaybackView:
    """What the agent is doing right now, as the detector needs it."""

    state: str  # "listening" | "thinking" | "speaking"
    sentence: str = ""  # the sentence being played
    previous: str = ""  # the one before it (echo reaches the recogniser late)
    elapsed_ms: float = 0.0  # playback position inside `sentence`
    paused: bool = False  # playback stopped for a possible interruption: no start gate


@dataclass(frozen=True)
class StateTuning:
    """Interruption rules for one agent state."""

    min_words: int = 2  # real words in an interim transcript that interrupt
    gate_ms: float = 0.0  # ignore interim speech this early in a sentence
    echo_threshold: float = 80.0  # rapidfuzz partial_ratio (0-100) from which speech is our echo
    pause_below_min: bool = True  # fewer words pause (false-interruption check) instead of ignoring


def default_tuning(settings: PipelineSettings, speaking_gate_ms: float = 300.0) -> dict[str, StateTuning]:
    """Per-state rules from the pipeline settings."""
    return {
        # Nothing plays while the model thinks (except a filler): any real word takes the turn.
        "thinking": StateTuning(min_words=1, gate_ms=0.0, echo_threshold=85.0, pause_below_min=False),
        "speaking": StateTuning(
            min_words=max(1, settings.bargein_min_words), gate_ms=speaking_gate_ms, echo_threshold=80.0
        ),
    }


class BargeInDetector:
    """Classify a transcript that arrives while the agent is thinking or speaking."""

    def __init__(
        self,
        settings: PipelineSettings,
        state: Callable[[], PlaybackView],
        tuning: Mapping[str, StateTuning] | None = None,
    ) -> None:
        self.settings = settings
        self._state = state
        self.tuning = dict(tuning) if tuning is not None else default_tuning(settings)
        self.backchannels = frozenset(_normalise(b) for b in settings.backchannels) | _HESITATIONS
        self.false_interruption_ms = settings.false_interruption_ms
        self.last_reason = ""

    def real_words(self, text: str) -> list[str]:
        """The words of `text` that are not backchannels or hesitations."""
        return [w for w in _words(text) if w not in self.backchannels]

    def assess(self, transcript: Transcript) -> Decision:
        """Decide what `transcript` means for the reply in progress (see the module docstring)."""
        view = self._state()
        tuning = self.tuning.get(view.state)
        if tuning is None:
            return self._because(Decision.IGNORE, f"nothing to interrupt while {view.state}")
        words = _words(transcript.text)
        real = [w for w in words if w not in self.backchannels]
        if not real:
            return self._because(Decision.IGNORE, "backchannel" if words else "no words")
        if self._is_echo(words, view, tuning):
            return self._because(Decision.IGNORE, "echo of our own sentence")
        if transcript.final:
            return self._because(Decision.INTERRUPT, "final transcript with real words")
        if view.sentence and not view.paused and view.elapsed_ms < tuning.gate_ms:
            return self._because(Decision.IGNORE, "sentence start gate")
        if len(words) >= tuning.min_words:
            return self._because(Decision.INTERRUPT, f"{len(words)} words")
        if tuning.pause_below_min:
            return self._because(Decision.PAUSE, "too few words yet")
        return self._because(Decision.IGNORE, "too few words")

    def _is_echo(self, words: list[str], view: PlaybackView, tuning: StateTuning) -> bool:
        played = _words(f"{view.previous} {view.sentence}")
        if not played:
            return False
        heard = " ".join(words)
        # Echo repeats a stretch of what we play; an interruption is different words.
        if len(heard) > len(" ".join(played)) + 3:
            return False
        return fuzz.partial_ratio(heard, " ".join(played)) >= tuning.echo_threshold

    def _because(self, decision: Decision, reason: str) -> Decision:
        self.last_reason = reason
        return decision


def _normalise(text: str) -> str:
    return " ".join(_words(text))


def _words(text: str) -> list[str]:
    return [w.strip("'’-") for w in _WORD.findall(text.lower()) if w.strip("'’-")]
