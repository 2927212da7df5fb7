"""End of the caller's turn: a final transcript plus a short silence, longer while dictating.

The reply must not start while the caller is still reading out a number or an e-mail address:
after a final transcript the turn ends once `end_of_turn_ms` pass with nothing new, or
`end_of_turn_digits_ms` when the text so far ends in digits, number words, spelled letters or
e-mail words ("dot", "@"), or announces one ("my number is"). Any later interim or final before
the timer fires extends the turn; the finals are joined into one text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import gevent

from esl_agent.config import PipelineSettings
from esl_agent.pipeline.turns import Clock
from esl_agent.providers.base import Transcript

_NUMBER_WORDS = frozenset({
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "double", "triple", "hundred", "thousand", "null", "eins", "zwei", "zwo", "drei", "vier",
    "fünf", "sechs", "sieben", "acht", "neun", "zehn", "doppel",
})
_EMAIL_WORDS = frozenset({
    "dot", "punkt", "underscore", "unterstrich", "dash", "hyphen", "minus", "bindestrich",
    "klammeraffe", "slash",
})
_ANNOUNCING = frozenset({
    "number", "nummer", "telefonnummer", "email", "e-mail", "mail", "address", "adresse", "code",
})
_TOKEN = re.compile(r"[^\s,;!?]+")


def is_dictating(text: str) -> bool:
    """True when `text` looks like a number or an address the caller has not finished yet."""
    tokens = [t.strip(".:").lower() for t in _TOKEN.findall(text)]
    tokens = [t for t in tokens if t]
    if not tokens:
        return False
    last = tokens[-1]
    if last[-1].isdigit() or last in _NUMBER_WORDS or last in ("at", "@") or "@" in last:
        return True
    if len(tokens) >= 2 and len(last) == 1 and len(tokens[-2]) == 1 and last.isalpha():
        return True  # spelling: "M A X"
    tail = tokens[-6:]
    if any(t in _EMAIL_WORDS or "@" in t for t in tail):
        return True
    return last in ("is", "ist") and any(t in _ANNOUNCING for t in tokens[-4:-1])


def end_of_turn_delay_ms(text: str, settings: PipelineSettings) -> int:
    """Silence after a final transcript before the caller's turn counts as over."""
    return settings.end_of_turn_digits_ms if is_dictating(text) else settings.end_of_turn_ms


class EndOfTurnDetector:
    """Collects transcripts of one caller turn and calls `on_end_of_turn(text)` when it is over."""

    def __init__(
        self,
        settings: PipelineSettings,
        on_end_of_turn: Callable[[str], None],
        clock: Clock,
        interim_grace_ms: int | None = None,
    ) -> None:
        self.settings = settings
        self._on_end = on_end_of_turn
        self._clock = clock
        # An interim without its final yet: wait at least this long (the final normally comes first).
        self.interim_grace_ms = interim_grace_ms or max(2000, settings.end_of_turn_digits_ms)
        self._finals: list[str] = []
        self._interim = ""
        self._timer: gevent.Greenlet | None = None
        self.last_delay_ms = 0

    @property
    def pending_text(self) -> str:
        """The text of the turn so far (finals, then the newest interim after them)."""
        return " ".join([*self._finals, self._interim]).strip()

    @property
    def waiting(self) -> bool:
        return self._timer is not None

    def on_transcript(self, transcript: Transcript) -> None:
        """Feed every transcript of the caller (interim and final)."""
        text = transcript.text.strip()
        if not text:
            return
        if transcript.final:
            self._finals.append(text)
            self._interim = ""
            self._arm(end_of_turn_delay_ms(" ".join(self._finals), self.settings))
        else:
            self._interim = text
            joined = " ".join([*self._finals, text])
            self._arm(max(self.interim_grace_ms, end_of_turn_delay_ms(joined, self.settings)))

    def cancel(self) -> None:
        """Forget the pending turn (call ending)."""
        self._disarm()
        self._finals.clear()
        self._interim = ""

    def _arm(self, delay_ms: int) -> None:
        self._disarm()
        self.last_delay_ms = delay_ms
        self._timer = self._clock.call_later(delay_ms / 1000.0, self._fire)

    def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not gevent.getcurrent():
            timer.kill(block=False)

    def _fire(self) -> None:
        self._timer = None
        text = self.pending_text
        self._finals.clear()
        self._interim = ""
        if text:
            self._on_end(text)
