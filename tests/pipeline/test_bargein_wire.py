"""Barge-in over real wires: the LLM server sees its stream closed, the TTS server its call cancelled.

The conversation drives the real OpenAI-compatible client against the loopback SSE server and the
real Google TTS client against the loopback gRPC server; only the call and the recogniser are
in-process fakes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from esl_agent.config import GoogleTtsSettings, HttpLlmSettings, PipelineSettings
from esl_agent.pipeline.conversation import Conversation
from esl_agent.pipeline.speech_out import PreparedAudio
from esl_agent.providers.google_tts import GoogleTextToSpeech
from esl_agent.providers.openai_llm import OpenAiLanguageModel
from esl_agent.sim.google_grpc import GoogleLoopbackServer, TtsScript
from esl_agent.sim.openai_sse import Faults, OpenAiSseServer, ScriptedReply
from tests.pipeline.fakes import FakeCall, FakeGreetings, FakeStt, FakeTools, wait_until

pytestmark = pytest.mark.wire

REPLY = (
    "Our office is open from nine in the morning until five. On Saturdays we are closed all day. "
    "On Sundays we are closed as well. Is there anything else I can do for you?"
)


def test_barge_in_closes_the_llm_stream_and_cancels_tts_at_the_servers() -> None:
    llm_server = OpenAiSseServer([ScriptedReply(text=REPLY), ScriptedReply(text="Sure, go ahead.")])
    llm_server.faults = Faults(chunk_delay=0.05)  # still streaming when the caller interrupts
    with llm_server, GoogleLoopbackServer(tts=TtsScript(chunk_delay=0.05)) as tts_server:
        llm = OpenAiLanguageModel(HttpLlmSettings(model="fake"), base_url=llm_server.url + "/v1")
        tts = GoogleTextToSpeech(
            GoogleTtsSettings(endpoint=tts_server.url, insecure=True, streaming=True),
            endpoint=tts_server.url, sample_rate=8000,
        )
        call, stt = FakeCall(), FakeStt()
        settings = PipelineSettings(end_of_turn_ms=1, end_of_turn_digits_ms=1, filler_after_ms=60_000)
        conv = Conversation(call, stt, llm, tts, FakeTools(), FakeGreetings(Path("/g.wav")),
                            lambda contact: "You are a receptionist.", settings, 8000, prepared=PreparedAudio())
        try:
            conv.start()
            stt.say("when are you open")
            turn = wait_until(lambda: conv.timings and conv.timings[-1].turn)
            wait_until(lambda: len(call.audio_of_turn(turn)) >= 8000 * 2 * 0.5, what="half a second of audio")
            call.advance(400)
            stt.say("wait I have another question", final=False)
            wait_until(lambda: call.stops == 1)
            stopped_at = call.index("stop_audio")

            (request, *_) = llm_server.wait_requests(1)
            assert request.done.wait(5)
            assert request.client_closed_early and not request.completed
            reply_tts = [r for r in tts_server.tts_requests if r.texts and r.texts[0].startswith("Our office")]
            assert reply_tts and reply_tts[0].done.wait(5)
            assert reply_tts[0].cancelled  # the sentence was still being synthesised
            assert len(conv.timings) == 1  # cancelled by the barge-in itself, before any new turn

            stt.say("wait I have another question")
            new = wait_until(lambda: conv.timings[-1].turn > turn and conv.timings[-1].turn)
            wait_until(lambda: call.audio_of_turn(new), what="the next reply's audio")
            late = [e for e in call.events[stopped_at:] if e[1] == "send_audio" and e[2][0] <= turn]
            assert late == []  # nothing of the interrupted turn after the stop
            messages = llm_server.wait_requests(2)[1].body["messages"]
            said = [m["content"] for m in messages if m["role"] == "assistant"]
            assert said and said[-1].startswith("Our office") and "Saturdays" not in said[-1]
        finally:
            conv.close()
