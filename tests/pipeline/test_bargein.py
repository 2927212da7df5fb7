"""BargeInDetector: backchannels, echo, start-of-sentence gate, min words, per-state rules."""

from __future__ import annotations

import pytest

from esl_agent.config import PipelineSettings
from esl_agent.pipeline.bargein import BargeInDetector, Decision, PlaybackView, StateTuning
from esl_agent.providers.base import Transcript

SENTENCE = "Our opening hours are Monday to Friday from nine to five."


def detector(view: PlaybackView, **settings) -> BargeInDetector:
    return BargeInDetector(PipelineSettings(**settings), lambda: view)


def speaking(elapsed_ms: float = 1000.0) -> PlaybackView:
    return PlaybackView("speaking", sentence=SENTENCE, previous="Sure.", elapsed_ms=elapsed_ms)


def interim(text: str) -> Transcript:
    return Transcript(text, final=False)


@pytest.mark.parametrize("text", ["mhm", "Okay.", "ja", "yeah yeah", "Uh-huh", "mm, okay", "genau", "ähm"])
def test_backchannels_never_interrupt(text: str) -> None:
    d = detector(speaking())
    assert d.assess(interim(text)) is Decision.IGNORE
    assert d.assess(Transcript(text, final=True)) is Decision.IGNORE
    assert d.last_reason == "backchannel"


@pytest.mark.parametrize("text", ["Monday to Friday from nine", "opening hours are", "from nine to five"])
def test_echo_of_the_sentence_being_played_does_not_interrupt(text: str) -> None:
    d = detector(speaking())
    assert d.assess(interim(text)) is Decision.IGNORE
    assert d.last_reason == "echo of our own sentence"
    assert d.assess(Transcript(text, final=True)) is Decision.IGNORE


def test_echo_of_the_previous_sentence_is_also_rejected() -> None:
    view = PlaybackView("speaking", sentence="Anything else?", previous=SENTENCE, elapsed_ms=900)
    assert detector(view).assess(interim("nine to five")) is Decision.IGNORE


def test_real_speech_interrupts_and_is_not_taken_for_echo() -> None:
    d = detector(speaking())
    assert d.assess(interim("wait I need the address")) is Decision.INTERRUPT
    assert d.assess(interim("okay stop")) is Decision.INTERRUPT  # a backchannel plus a real word


def test_start_of_sentence_gate_ignores_interims_but_not_finals() -> None:
    d = detector(speaking(elapsed_ms=100))
    assert d.assess(interim("wait a second")) is Decision.IGNORE
    assert d.last_reason == "sentence start gate"
    assert d.assess(Transcript("wait a second", final=True)) is Decision.INTERRUPT
    assert detector(speaking(elapsed_ms=400)).assess(interim("wait a second")) is Decision.INTERRUPT
    paused = PlaybackView("speaking", sentence=SENTENCE, elapsed_ms=100, paused=True)
    assert detector(paused).assess(interim("wait a second")) is Decision.INTERRUPT  # nothing plays


def test_too_few_words_pause_for_the_false_interruption_check() -> None:
    d = detector(speaking(), bargein_min_words=3)
    assert d.assess(interim("wait")) is Decision.PAUSE
    assert d.assess(interim("wait what")) is Decision.PAUSE
    assert d.assess(interim("wait what is")) is Decision.INTERRUPT
    assert d.false_interruption_ms == PipelineSettings().false_interruption_ms


def test_state_aware_rules() -> None:
    assert detector(PlaybackView("listening")).assess(interim("hello there")) is Decision.IGNORE
    thinking = detector(PlaybackView("thinking"))
    assert thinking.assess(interim("also")) is Decision.INTERRUPT  # one word takes the turn
    assert thinking.assess(interim("mhm")) is Decision.IGNORE
    strict = BargeInDetector(
        PipelineSettings(), lambda: speaking(), {"speaking": StateTuning(min_words=4, pause_below_min=False)}
    )
    assert strict.assess(interim("no no no")) is Decision.IGNORE
    assert strict.assess(interim("no no no no")) is Decision.INTERRUPT
    assert strict.assess(interim("no")) is Decision.IGNORE


def test_configured_backchannels_are_used() -> None:
    d = detector(speaking(), backchannels=["passt"])
    assert d.assess(interim("passt")) is Decision.IGNORE
    assert d.assess(interim("okay")) is Decision.PAUSE  # not configured any more, one word
    assert d.real_words("mhm passt gut") == ["gut"]
