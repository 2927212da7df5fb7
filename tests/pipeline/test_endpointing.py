"""End of turn: short silence after a final, longer while dictating; later speech extends the turn."""

from __future__ import annotations

import pytest

from esl_agent.config import PipelineSettings
from esl_agent.pipeline.endpointing import EndOfTurnDetector, end_of_turn_delay_ms, is_dictating
from esl_agent.providers.base import Transcript
from tests.pipeline.clock import ManualClock

SETTINGS = PipelineSettings(end_of_turn_ms=300, end_of_turn_digits_ms=1200)


@pytest.mark.parametrize(
    ("text", "dictating"),
    [
        ("I would like to speak to Anna.", False),
        ("My number is 0664 12", True),
        ("my number is", True),
        ("meine Nummer ist", True),
        ("it's zero six six four one two", True),
        ("null sechs sechs vier", True),
        ("max dot muster at example", True),
        ("max.muster@example", True),
        ("my email is max at", True),
        ("that's M A X", True),
        ("I'm at the office today", False),
        ("Thank you, that is all.", False),
        ("Is it 5?", True),
        ("", False),
    ],
)
def test_dictation_is_detected(text: str, dictating: bool) -> None:
    assert is_dictating(text) is dictating
    expected = SETTINGS.end_of_turn_digits_ms if dictating else SETTINGS.end_of_turn_ms
    assert end_of_turn_delay_ms(text, SETTINGS) == expected


def make() -> tuple[EndOfTurnDetector, ManualClock, list[str]]:
    clock = ManualClock()
    ended: list[str] = []
    return EndOfTurnDetector(SETTINGS, ended.append, clock), clock, ended


def test_turn_ends_after_the_short_silence() -> None:
    eot, clock, ended = make()
    eot.on_transcript(Transcript("Hello there", final=True))
    clock.advance(0.299)
    assert ended == []
    clock.advance(0.002)
    assert ended == ["Hello there"]
    assert not eot.waiting and eot.pending_text == ""


def test_digits_extend_the_end_of_turn() -> None:
    eot, clock, ended = make()
    eot.on_transcript(Transcript("my number is 0664", final=True))
    clock.advance(0.5)
    assert ended == []  # with the short silence the reply would have started here
    eot.on_transcript(Transcript("1234567", final=True))
    clock.advance(1.1)
    assert ended == []
    clock.advance(0.2)
    assert ended == ["my number is 0664 1234567"]


def test_later_interim_and_final_extend_the_turn_and_join() -> None:
    eot, clock, ended = make()
    eot.on_transcript(Transcript("I need", final=True))
    clock.advance(0.2)
    eot.on_transcript(Transcript("an appoint", final=False))
    clock.advance(0.5)
    assert ended == []  # an interim keeps the turn open
    eot.on_transcript(Transcript("an appointment", final=True))
    clock.advance(0.3)
    assert ended == ["I need an appointment"]


def test_interim_without_final_still_ends_after_the_grace() -> None:
    eot, clock, ended = make()
    eot.on_transcript(Transcript("hello", final=False))
    clock.advance(1.9)
    assert ended == []
    clock.advance(0.2)
    assert ended == ["hello"]


def test_empty_transcripts_and_cancel() -> None:
    eot, clock, ended = make()
    eot.on_transcript(Transcript("  ", final=True))
    assert not eot.waiting
    eot.on_transcript(Transcript("hi", final=True))
    eot.cancel()
    clock.advance(5)
    assert ended == []
