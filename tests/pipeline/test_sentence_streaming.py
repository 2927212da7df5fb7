"""Sentence streaming pays off: first audio in at most half the time of the whole-reply baseline.

The one timing test of the pipeline (issue 3 asks for it): a fake LLM streams tokens at a set
pace and a fake TTS takes a set time per sentence (a fixed part plus a part per character). The
assertion is a ratio of two runs measured here, not an absolute threshold.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from esl_agent.config import PipelineSettings
from esl_agent.pipeline.conversation import Conversation
from esl_agent.pipeline.speech_out import PreparedAudio
from tests.pipeline.fakes import FakeCall, FakeGreetings, FakeLlm, FakeStt, FakeTools, FakeTts, Sleep, wait_until

REPLY = (
    "Sure, I can help with that. Our office is open from nine to five on weekdays. "
    "On Saturdays we open at ten and close at two. Is there anything else I can do for you?"
)
TOKEN_PACE = 0.01  # seconds between streamed tokens
SETTINGS = PipelineSettings(end_of_turn_ms=1, end_of_turn_digits_ms=1, filler_after_ms=60_000)


def time_to_first_audio(sentence_streaming: bool) -> float:
    words = REPLY.split(" ")
    script: list[object] = []
    for i, word in enumerate(words):
        script += [Sleep(TOKEN_PACE), word if i == 0 else " " + word]
    call, stt, tts = FakeCall(), FakeStt(), FakeTts()
    tts.latency = lambda text: 0.05 + 0.002 * len(text)
    settings = dataclasses.replace(SETTINGS, sentence_streaming=sentence_streaming)
    conv = Conversation(
        call, stt, FakeLlm([script]), tts, FakeTools(), FakeGreetings(Path("/g.wav")),
        lambda contact: "system", settings, 8000, prepared=PreparedAudio(),
    )
    try:
        conv.start()
        stt.say("when are you open")
        wait_until(lambda: conv.timings, what="turn")
        began = time.monotonic()
        wait_until(lambda: call.sent, timeout=10, what="first audio")
        return call.sent[0].at - began
    finally:
        conv.close()


def test_first_audio_in_half_the_time_of_the_whole_reply_baseline() -> None:
    streamed = time_to_first_audio(sentence_streaming=True)
    baseline = time_to_first_audio(sentence_streaming=False)
    assert streamed <= 0.5 * baseline, f"streamed {streamed:.3f} s vs baseline {baseline:.3f} s"
