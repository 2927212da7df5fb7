"""Conversation: the per-call conductor driven through in-process fakes of every port."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent.event
import pytest

from esl_agent.agent.tools import ToolResult
from esl_agent.config import PipelineSettings
from esl_agent.errors import ProviderError
from esl_agent.pipeline.conversation import Conversation
from esl_agent.pipeline.ports import CommandResult
from esl_agent.pipeline.speech_out import PreparedAudio
from esl_agent.providers.base import ToolCall
from tests.pipeline.clock import ManualClock
from tests.pipeline.fakes import (
    BYTES_PER_MS,
    FakeCall,
    FakeContact,
    FakeContacts,
    FakeGreetings,
    FakeLlm,
    FakeStt,
    FakeTools,
    FakeTts,
    Raise,
    Wait,
    deltas,
    tone,
    wait_until,
)

SETTINGS = PipelineSettings(
    end_of_turn_ms=1,
    end_of_turn_digits_ms=1,
    filler_after_ms=60_000,
    false_interruption_ms=60_000,
    bargein_min_words=2,
)
S1 = "Our office is open from nine in the morning until five."
S2 = "On Saturdays we are closed all day long."
FILLER = SETTINGS.filler_text
APOLOGY = "Sorry, something went wrong on our side."


@dataclasses.dataclass
class World:
    call: FakeCall
    stt: FakeStt
    llm: FakeLlm
    tts: FakeTts
    tools: FakeTools
    greetings: FakeGreetings
    conv: Conversation

    def reply_turn(self, after: int = 0) -> int:
        """The newest turn once it is newer than `after`."""
        return wait_until(
            lambda: self.conv.timings and self.conv.timings[-1].turn > after and self.conv.timings[-1].turn,
            what="a new turn",
        )

    def reply_texts(self) -> list[str]:
        return [t for t in self.tts.texts() if t not in (FILLER, APOLOGY)]


@pytest.fixture
def world_factory() -> Iterator[Any]:
    made: list[World] = []

    def make(
        scripts: list[list[Any]] | None = None,
        settings: PipelineSettings = SETTINGS,
        greeting: Path | None = Path("/greetings/generic.wav"),
        contacts: FakeContacts | None = None,
        clock: Any = None,
        **kwargs: Any,
    ) -> World:
        call, stt, tts = FakeCall(), FakeStt(), FakeTts()
        llm, tools, greetings = FakeLlm(scripts or []), FakeTools(), FakeGreetings(greeting)
        conv = Conversation(
            call, stt, llm, tts, tools, greetings,
            lambda contact: f"SYSTEM for {contact.name if contact else 'unknown'}",
            settings, 8000, clock, contacts=contacts, prepared=PreparedAudio(), **kwargs,
        )
        conv.start()
        assert stt.opened.wait(2)
        world = World(call, stt, llm, tts, tools, greetings, conv)
        made.append(world)
        return world

    yield make
    for world in made:
        world.conv.close()


def start_reply(w: World, text: str, *sentences: str) -> int:
    """Caller says `text`; wait until the reply's sentences were all sent as audio; return its turn."""
    before = w.conv.timings[-1].turn if w.conv.timings else 0
    w.stt.say(text)
    turn = w.reply_turn(after=before)
    expected = b"".join(tone(s) for s in sentences)
    wait_until(lambda: w.call.audio_of_turn(turn) == expected, what="reply audio")
    return turn


# ------------------------------------------------------------------------------ sentence streaming


def test_sentences_are_synthesised_while_the_previous_one_is_still_playing(world_factory) -> None:
    reply = "The first sentence is here. The second one follows. And a third one."
    w = world_factory([deltas(reply)])
    w.stt.say("hello")
    # Nothing has been played yet (playback is manual), so a pipeline that waits for
    # sentence n to finish before synthesising n+1 never gets here.
    wait_until(lambda: len(w.reply_texts()) == 3, what="all three sentences at TTS")
    assert w.call.played_ms == 0 and w.call.playing()
    turn = w.reply_turn()
    sentences = ["The first sentence is here.", "The second one follows.", "And a third one."]
    wait_until(lambda: w.call.audio_of_turn(turn) == b"".join(tone(s) for s in sentences))
    assert w.reply_texts() == sentences
    assert w.call.flushes.count(turn) == 3  # one flush per sentence end


def test_first_sentence_is_spoken_while_the_model_is_still_generating(world_factory) -> None:
    gate = gevent.event.Event()
    w = world_factory([[*deltas("Hello there, nice to meet you. What"), Wait(gate), *deltas(" can I do?")]])
    w.stt.say("hi")
    turn = w.reply_turn()
    wait_until(lambda: w.call.audio_of_turn(turn) == tone("Hello there, nice to meet you."))
    assert w.llm.calls[0].waiting and not w.llm.calls[0].finished
    gate.set()
    wait_until(lambda: w.call.audio_of_turn(turn) == tone("Hello there, nice to meet you.") + tone("What can I do?"))


def test_without_sentence_streaming_the_whole_reply_is_synthesised_once(world_factory) -> None:
    settings = dataclasses.replace(SETTINGS, sentence_streaming=False)
    w = world_factory([deltas("Hello there, nice to meet you. What can I do?")], settings=settings)
    w.stt.say("hi")
    turn = w.reply_turn()
    whole = "Hello there, nice to meet you. What can I do?"
    wait_until(lambda: w.call.audio_of_turn(turn) == tone(whole))
    assert w.reply_texts() == [whole]
    assert w.call.sent[0].at >= w.llm.calls[0].finished_at


# ------------------------------------------------------------------------------ barge-in


def test_barge_in_cancels_llm_and_tts_stops_audio_and_keeps_only_what_was_heard(world_factory) -> None:
    llm_gate, tts_gate = gevent.event.Event(), gevent.event.Event()
    w = world_factory([[*deltas(f"{S1} {S2} And"), Wait(llm_gate), *deltas(" more.")], deltas("Sure, go ahead.")])
    w.tts.gates["Saturdays"] = tts_gate
    old = start_reply(w, "when are you open", S1)
    wait_until(lambda: any("Saturdays" in t for t in w.tts.texts()), what="TTS of sentence 2 in flight")
    w.call.advance(400)  # the caller heard 400 ms of the first sentence
    w.stt.say("wait I have another question", final=False)
    wait_until(lambda: w.call.stops == 1, what="stop_audio")
    stop_at = w.call.index("stop_audio")
    wait_until(lambda: w.llm.calls[0].closed, what="LLM stream closed")
    assert not w.llm.calls[0].finished
    wait_until(lambda: S2 in w.tts.closed, what="TTS job of the old turn closed")
    assert len(w.conv.timings) == 1  # cancelled by the barge-in itself, not by a later turn
    tts_gate.set()
    llm_gate.set()  # whatever the old turn still had is released now: none of it may go out
    w.stt.say("wait I have another question")
    new = w.reply_turn(after=old)
    assert new > old
    wait_until(lambda: w.call.audio_of_turn(new) == tone("Sure, go ahead."))
    after_stop = [e for e in w.call.events[stop_at:] if e[1] == "send_audio"]
    assert after_stop and all(turn_id == new for _, _, (turn_id, _) in after_stop)
    # History for the next LLM request: only the words the caller heard.
    said = [m for m in w.llm.calls[1].messages if m.role == "assistant"]
    assert said[-1].content.startswith("Our office is open from nine in the")
    assert "morning" not in said[-1].content
    assert all("Saturdays" not in m.content for m in w.llm.calls[1].messages)
    assert w.llm.calls[1].messages[-1].content == "wait I have another question"


@pytest.mark.parametrize("text", ["mhm", "okay", "ja", "uh-huh yeah"])
def test_backchannel_does_not_interrupt(world_factory, text: str) -> None:
    w = world_factory([deltas(f"{S1} {S2}")])
    turn = start_reply(w, "when are you open", S1, S2)
    w.call.advance(400)
    w.stt.say(text, final=False)
    w.stt.say(text, final=True)
    wait_until(lambda: w.stt.stream.queue.empty())
    assert w.call.stops == 0 and len(w.llm.calls) == 1
    assert w.conv.detector.last_reason == "backchannel"
    w.call.play_all()
    wait_until(lambda: w.call.states[-1] == ("listening", {"turn": str(turn)}))
    said = [m for m in w.conv.history.messages() if m.role == "assistant"]
    assert said[-1].content == f"{S1} {S2}"


def test_echo_of_the_agents_sentence_does_not_interrupt(world_factory) -> None:
    w = world_factory([deltas(f"{S1} {S2}")])
    start_reply(w, "when are you open", S1, S2)
    w.call.advance(400)
    w.stt.say("open from nine in the morning", final=False)
    w.stt.say("is open from nine in the morning until", final=True)
    wait_until(lambda: w.stt.stream.queue.empty())
    assert w.call.stops == 0 and len(w.llm.calls) == 1
    assert w.conv.detector.last_reason == "echo of our own sentence"


def test_false_interruption_resumes_where_the_reply_stopped(world_factory) -> None:
    settings = dataclasses.replace(SETTINGS, false_interruption_ms=20)
    w = world_factory([deltas(f"{S1} {S2}")], settings=settings)
    turn = start_reply(w, "when are you open", S1, S2)
    w.call.advance(400)
    w.stt.say("wait", final=False)  # one real word: pause, not yet an interruption
    wait_until(lambda: w.call.stops == 1)
    resumed = wait_until(lambda: [s for s in w.call.sent if s.turn_id > turn], what="resumed audio")
    full = tone(S1) + tone(S2)
    wait_until(lambda: b"".join(s.pcm for s in w.call.sent if s.turn_id > turn) == full[400 * BYTES_PER_MS:])
    assert not resumed[0].stale and len(w.llm.calls) == 1
    assert w.call.state_names()[-1] == "speaking"
    w.call.play_all()
    wait_until(lambda: w.call.state_names()[-1] == "listening")
    assert b"".join(w.call.played_total) == full  # the caller heard every word exactly once
    said = [m for m in w.conv.history.messages() if m.role == "assistant"]
    assert said[-1].content == f"{S1} {S2}"


def test_more_words_during_the_pause_interrupt(world_factory) -> None:
    w = world_factory([deltas(f"{S1} {S2}"), deltas("Yes?")])
    first = start_reply(w, "when are you open", S1, S2)
    w.call.advance(400)
    w.stt.say("wait", final=False)
    wait_until(lambda: w.call.stops == 1)
    w.stt.say("wait what about Sunday", final=False)
    w.stt.say("wait what about Sunday")
    new = w.reply_turn(after=first)
    wait_until(lambda: w.call.audio_of_turn(new) == tone("Yes?"))
    assert w.call.stops == 1 and len(w.llm.calls) == 2
    said = [m for m in w.llm.calls[1].messages if m.role == "assistant"]
    assert "Saturdays" not in said[-1].content and "morning" not in said[-1].content


# ------------------------------------------------------------------------------ filler, turn end


def test_filler_plays_when_the_first_token_is_late(world_factory) -> None:
    gate = gevent.event.Event()
    settings = dataclasses.replace(SETTINGS, filler_after_ms=10)
    w = world_factory([[Wait(gate), *deltas("Here you go.")]], settings=settings)
    w.stt.say("what is my balance")
    turn = w.reply_turn()
    wait_until(lambda: w.call.audio_of_turn(turn) == tone(FILLER), what="filler audio")
    assert w.llm.calls[0].waiting
    gate.set()
    wait_until(lambda: w.call.audio_of_turn(turn) == tone(FILLER) + tone("Here you go."))
    assert w.conv.timings[-1].filler is not None
    said = [m for m in w.conv.history.messages() if m.role == "assistant"]
    assert said[-1].content == "Here you go."  # the filler is not shown to the model


def test_no_filler_when_the_model_answers_in_time(world_factory) -> None:
    settings = dataclasses.replace(SETTINGS, filler_after_ms=0)
    w = world_factory([deltas("Right away.")], settings=settings)
    turn = start_reply(w, "hi", "Right away.")
    assert w.conv.timings[-1].filler is None and w.call.audio_of_turn(turn) == tone("Right away.")


def test_digits_extend_the_end_of_turn(world_factory) -> None:
    clock = ManualClock()
    settings = dataclasses.replace(SETTINGS, end_of_turn_ms=300, end_of_turn_digits_ms=1200)
    w = world_factory([deltas("Thanks, noted.")], settings=settings, clock=clock)
    w.stt.say("my number is 0664")
    wait_until(lambda: w.stt.stream.queue.empty() and w.conv.endpointer.waiting)
    clock.advance(0.5)
    assert w.conv.timings == []  # a plain sentence would have ended the turn by now
    w.stt.say("1234567")
    wait_until(lambda: w.stt.stream.queue.empty() and "1234567" in w.conv.endpointer.pending_text)
    clock.advance(1.1)
    assert w.conv.timings == []
    clock.advance(0.2)
    assert len(w.conv.timings) == 1
    wait_until(lambda: w.llm.calls)
    assert w.llm.calls[0].messages[-1].content == "my number is 0664 1234567"


# ------------------------------------------------------------------------------ DTMF and tools


def transfer_result(call: FakeCall, destination: str) -> ToolResult:
    return ToolResult(
        "Transfer approved. Say one short sentence.",
        ends_call=True,
        after_speech=lambda: call.transfer(destination),
    )


def test_dtmf_transfer_key_transfers_after_the_confirmation(world_factory) -> None:
    w = world_factory(human_contact="Reception")
    w.tools.results["transfer_call"] = transfer_result(w.call, "1000")
    w.conv.on_dtmf("0")
    turn = w.reply_turn()
    text = "Connecting you to a colleague now."
    wait_until(lambda: w.call.audio_of_turn(turn) == tone(text))
    assert w.tools.executed[0].name == "transfer_call"
    assert w.tools.executed[0].arguments == {"name": "Reception"}
    assert w.call.transfers == [] and w.llm.calls == []
    w.call.play_all()
    wait_until(lambda: w.call.transfers == ["1000"])


def test_other_dtmf_keys_reach_the_model_as_text(world_factory) -> None:
    w = world_factory([deltas("You pressed five.")])
    w.conv.on_dtmf("5")
    wait_until(lambda: w.llm.calls)
    assert w.llm.calls[0].messages[-1].content == "The caller pressed 5."
    assert w.call.transfers == []


def test_tool_transfer_happens_only_after_the_confirmation_was_heard(world_factory) -> None:
    call_tool = ToolCall("t1", "transfer_call", {"name": "Anna"})
    w = world_factory([["Let me check. ", call_tool], deltas("Connecting you to Anna now.")])
    w.tools.results["transfer_call"] = transfer_result(w.call, "+43123456789")
    turn = start_reply(w, "put me through to Anna", "Let me check.", "Connecting you to Anna now.")
    assert w.tools.executed == [call_tool]
    messages = w.llm.calls[1].messages
    assert messages[-2].tool_calls == (call_tool,) and messages[-2].content == "Let me check."
    assert messages[-1].role == "tool" and messages[-1].tool_call_id == "t1"
    w.call.advance(200)  # of 400 ms
    assert w.call.playing() and w.call.transfers == []
    w.call.play_all()
    wait_until(lambda: w.call.transfers == ["+43123456789"])
    assert w.call.index("transfer") > w.call.index("played")
    w.stt.say("hello?")  # the call is ending: nothing more is started
    wait_until(lambda: w.stt.stream.queue.empty())
    assert len(w.llm.calls) == 2 and w.conv.timings[-1].turn == turn


def test_barge_in_during_the_confirmation_cancels_the_transfer(world_factory) -> None:
    call_tool = ToolCall("t1", "transfer_call", {"name": "Anna"})
    w = world_factory([[call_tool], deltas("Connecting you to Anna right now, please hold the line."),
                       deltas("Okay, I will not transfer you.")])
    w.tools.results["transfer_call"] = transfer_result(w.call, "+43123456789")
    first = start_reply(w, "put me through to Anna", "Connecting you to Anna right now, please hold the line.")
    w.call.advance(400)
    w.stt.say("no wait do not transfer me")
    new = w.reply_turn(after=first)
    wait_until(lambda: w.call.audio_of_turn(new) == tone("Okay, I will not transfer you."))
    w.call.play_all()
    wait_until(lambda: w.call.state_names()[-1] == "listening")
    assert w.call.transfers == []
    assert w.tools.cancelled == 1  # the tools were told the transfer will not happen


# ------------------------------------------------------------------------------ failures


def test_llm_failure_apologises_and_keeps_listening(world_factory) -> None:
    w = world_factory([[Raise(ProviderError("HTTP 500"))], deltas("Second try works.")])
    turn = start_reply(w, "hello", APOLOGY)
    assert w.llm.calls[0].closed
    w.call.play_all()
    wait_until(lambda: w.call.states[-1][0] == "listening")
    second = start_reply(w, "hello again", "Second try works.")
    assert second > turn


def test_tts_failure_apologises_and_drops_the_rest_of_the_reply(world_factory) -> None:
    gate = gevent.event.Event()
    w = world_factory([[*deltas("This sentence is broken. Next one"), Wait(gate), *deltas(" here.")]])
    w.tts.fail.add("broken")
    turn = start_reply(w, "hello", APOLOGY)
    wait_until(lambda: w.llm.calls[0].closed, what="LLM stream closed after the TTS failure")
    gate.set()
    w.call.play_all()
    wait_until(lambda: w.call.states[-1][0] == "listening")
    assert w.call.audio_of_turn(turn) == tone(APOLOGY)
    said = [m for m in w.conv.history.messages() if m.role == "assistant"]
    assert "Next one" not in said[-1].content


def test_stt_stream_dropped_is_reopened(world_factory) -> None:
    w = world_factory([deltas("Still here.")])
    first = w.stt.stream
    w.stt.drop()
    wait_until(lambda: len(w.stt.streams) == 2 and first.closed)
    w.conv.on_caller_audio(b"\x01\x00" * 160)
    assert bytes(w.stt.streams[1].pushed) == b"\x01\x00" * 160
    start_reply(w, "are you there", "Still here.")


# ------------------------------------------------------------------------------ greeting, lifecycle


def test_greeting_cache_hit_plays_the_file_without_tts(world_factory) -> None:
    w = world_factory(greeting=Path("/greetings/anna.wav"))
    assert w.call.files == ["/greetings/anna.wav"]
    assert w.tts.requests == [] and w.call.sent == []
    assert w.greetings.missed == []
    assert w.conv.history.messages()[-1].content == "Hello, may I have your name?"


def test_greeting_cache_miss_falls_back_to_live_tts(world_factory) -> None:
    contacts = FakeContacts({"+43664123456": FakeContact("Anna")})
    w = world_factory(greeting=None, contacts=contacts)
    greeting = "Hello Anna, how can I help?"
    turn = w.reply_turn()
    wait_until(lambda: w.call.audio_of_turn(turn) == tone(greeting))
    assert w.call.files == [] and w.greetings.missed == ["+43664123456"]
    assert w.tts.texts()[0] == greeting
    assert w.conv.history.messages()[0].content == "SYSTEM for Anna"


def test_state_is_published_without_raw_transcript(world_factory) -> None:
    w = world_factory([deltas("Fine.")])
    turn = start_reply(w, "secret words here", "Fine.")
    w.call.play_all()
    wait_until(lambda: w.call.state_names()[-1] == "listening")
    assert ("thinking", {"turn": str(turn), "transcript": "<3 words>"}) in w.call.states
    assert "speaking" in w.call.state_names()
    assert all("secret" not in str(fields) for _, fields in w.call.states)


def test_close_cancels_the_reply_and_closes_the_stt_stream(world_factory) -> None:
    gate = gevent.event.Event()
    w = world_factory([[*deltas("One moment"), Wait(gate), *deltas(" more.")]])
    w.stt.say("hi")
    wait_until(lambda: w.llm.calls and w.llm.calls[0].waiting)
    stream = w.stt.streams[-1]
    w.conv.close()
    w.conv.close()  # idempotent
    wait_until(lambda: w.llm.calls[0].closed and stream.closed)
    gate.set()
    w.conv.on_caller_audio(b"\x00\x00")
    assert w.call.sent == [] and len(w.stt.streams) == 1


def test_failed_after_speech_action_is_spoken_about(world_factory) -> None:
    call_tool = ToolCall("t1", "transfer_call", {"name": "Anna"})
    w = world_factory([[call_tool], deltas("Connecting you."), deltas("Sorry, that did not work.")])
    w.tools.results["transfer_call"] = ToolResult(
        "ok", ends_call=True, after_speech=lambda: CommandResult(False, "-ERR NO_ROUTE")
    )
    first = start_reply(w, "transfer me", "Connecting you.")
    w.call.play_all()
    turn = w.reply_turn(after=first)
    wait_until(lambda: w.call.audio_of_turn(turn) == tone("Sorry, that did not work."))


def test_speech_right_after_the_confirmation_does_not_cancel_the_transfer(world_factory) -> None:
    call_tool = ToolCall("t1", "transfer_call", {"name": "Anna"})
    w = world_factory([[call_tool], deltas("Connecting you to Anna now.")])
    w.tools.results["transfer_call"] = transfer_result(w.call, "+43123456789")
    start_reply(w, "put me through to Anna", "Connecting you to Anna now.")
    w.call.play_all()
    w.stt.say("thank you so much", final=False)
    w.stt.say("thank you so much")
    wait_until(lambda: w.call.transfers == ["+43123456789"])
    wait_until(lambda: w.stt.stream.queue.empty())
    assert w.call.stops == 0 and len(w.llm.calls) == 2


def test_stalled_model_and_stalled_tts_end_in_an_apology(world_factory) -> None:
    never = gevent.event.Event()
    w = world_factory([[*deltas("Hello"), Wait(never)]], llm_turn_timeout=0.05)
    turn = start_reply(w, "hi", APOLOGY)
    assert w.llm.calls[0].closed and not w.llm.calls[0].finished
    w.call.play_all()
    wait_until(lambda: w.call.states[-1][0] == "listening")
    w.tts.gates["stuck"] = never
    w.llm.scripts.append(deltas("This is stuck forever. Next."))
    w.conv.tts_timeout = 0.05
    second = start_reply(w, "again", APOLOGY)
    assert second > turn
    wait_until(lambda: "This is stuck forever." in w.tts.closed, what="stuck TTS job closed")
