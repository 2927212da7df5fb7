"""The per-call conductor: caller audio -> STT -> end of turn -> LLM -> sentences -> TTS -> caller.

It stays thin and pushes decisions into small modules: `endpointing` (when the caller's turn is
over), `bargein` (whether speech during a reply interrupts it), `turns` (ids and cancellation),
`generation` (LLM rounds into sentences), `tool_rounds` (the tools), `speech_out` (synthesis,
sending, pause and resume), `records` (timings and usage) and `agent.history` (what the model
sees as said).

One reply = one `Turn` with its own greenlet group: a generator greenlet (LLM stream, sentence
splitting, tools), a TTS greenlet per sentence (synthesis of sentence n+1 overlaps the playback of
sentence n), a speaker greenlet that sends the audio in order with the turn id, and a filler
watcher. Barge-in bumps the turn id, stops playback at once, kills the turn's greenlets (provider
code closes its streams in `finally`) and cuts the reply in the history to what was heard.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import gevent.pool

from esl_agent import logs
from esl_agent.agent.history import ConversationHistory
from esl_agent.config import PipelineSettings
from esl_agent.errors import ProviderError
from esl_agent.pipeline.bargein import BargeInDetector, Decision, PlaybackView, StateTuning
from esl_agent.pipeline.endpointing import EndOfTurnDetector
from esl_agent.pipeline.generation import ReplyWriter
from esl_agent.pipeline.ports import CallControl
from esl_agent.pipeline.records import CallUsage, TurnTiming
from esl_agent.pipeline.speech_out import SHARED_PREPARED, PreparedAudio, Reply, Speaker
from esl_agent.pipeline.tool_rounds import ToolOutcome, ToolRunner, Tools
from esl_agent.pipeline.turns import Clock, GeventClock, TurnClock
from esl_agent.providers.base import (
    LanguageModel,
    SpeechToText,
    SttStream,
    TextToSpeech,
    ToolCall,
    Transcript,
)

# ------------------------------------------------------------------------------ collaborators


class Greetings(Protocol):
    """Pre-rendered greetings (esl_agent.pipeline.greetings.GreetingCache)."""

    def lookup(self, caller_number: str) -> Any: ...  # a path or None

    def text_for(self, contact: Any) -> str: ...

    def miss(self, caller_number: str) -> Any: ...


class Contacts(Protocol):
    """Caller-ID lookup (esl_agent.agent.contacts.ContactStore)."""

    def by_number(self, caller_id: str | None) -> Any: ...


# ------------------------------------------------------------------------------ the conductor


class Conversation:
    """Runs the conversation of one call over its `CallControl` port.

    Args:
        call: the call (the controller's `Call`, or a fake in tests).
        stt, llm, tts: the providers (the llm is usually a failover chain).
        tools: `specs()` and `execute(ToolCall)` (agent.tools.AgentTools).
        greetings: `lookup(number)`, `text_for(contact)`, `miss(number)` (pipeline.greetings).
        prompt_builder: contact (or None) -> system prompt, e.g.
            `lambda c: prompt.build_system_prompt(settings.agent, c, greeting=cache.text_for(c))`.
        settings: turn taking, barge-in, sentence streaming, filler, DTMF.
        sample_rate: the fork's sample rate (audio to and from the call).
        clock: time source (tests may inject one).
        contacts: caller-ID lookup for the greeting and the prompt; None = unknown caller.
        language: STT language and the language for spelling digits in TTS text.
        apology_text: spoken when a provider fails; `apology_file` is played if even that fails.
        human_contact: contact name `transfer_call` uses for the DTMF transfer key; empty = the
            key press goes to the model as a request to be transferred.
        prepared: cache of filler/apology audio (default: shared by the process).
        bargein_tuning: per-state barge-in rules (default from settings).
        llm_turn_timeout: a reply (one LLM round) must be complete within this (llm.turn_timeout).
        tts_timeout: the longest wait for the next audio chunk of a sentence.
    """

    def __init__(
        self,
        call: CallControl,
        stt: SpeechToText,
        llm: LanguageModel,
        tts: TextToSpeech,
        tools: Tools,
        greetings: Greetings,
        prompt_builder: Callable[[Any], str],
        settings: PipelineSettings,
        sample_rate: int = 8000,
        clock: Clock | None = None,
        *,
        contacts: Contacts | None = None,
        language: str = "en-US",
        apology_text: str = "Sorry, something went wrong on our side.",
        apology_file: str | None = None,
        human_contact: str = "",
        transfer_text: str = "Connecting you to a colleague now.",
        prepared: PreparedAudio | None = None,
        bargein_tuning: Mapping[str, StateTuning] | None = None,
        max_tool_rounds: int = 3,
        history_messages: int = 40,
        max_stt_restarts: int = 5,
        llm_turn_timeout: float = 20.0,
        tts_timeout: float = 10.0,
    ) -> None:
        self.call = call
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self.tools = tools
        self.greetings = greetings
        self.prompt_builder = prompt_builder
        self.settings = settings
        self.sample_rate = sample_rate
        self.clock: Clock = clock or GeventClock()
        self.contacts = contacts
        self.language = language
        self.apology_text = apology_text
        self.apology_file = apology_file
        self.human_contact = human_contact
        self.transfer_text = transfer_text
        self.prepared = prepared or SHARED_PREPARED
        self.max_tool_rounds = max_tool_rounds
        self.max_stt_restarts = max_stt_restarts
        self.llm_turn_timeout = llm_turn_timeout
        self.log = logs.call_logger(call.caller.uuid, "esl_agent.pipeline")
        self.turns = TurnClock()
        self.history = ConversationHistory("", history_messages)
        self.detector = BargeInDetector(settings, self._playback_view, bargein_tuning)
        self.endpointer = EndOfTurnDetector(settings, self._on_end_of_turn, self.clock)
        self.timings: list[TurnTiming] = []
        self.usage = CallUsage()
        self.contact: Any = None
        self._group = gevent.pool.Group()
        self._stream: SttStream | None = None
        self._reply: Reply | None = None
        self._closed = False
        self._ending = False
        self._state: tuple[str, int] = ("", -1)
        self._dtmf_ids = itertools.count(1)
        self._tools = ToolRunner(tools, self._group, self.log)
        self._speaker = Speaker(
            call, tts, self.clock, self.turns, settings, self.usage, self.log,
            publish=self._publish, on_heard=self._complete,
            current=lambda: self._reply, closed=lambda: self._closed,
            sample_rate=sample_rate, language=language, prepared=self.prepared, tts_timeout=tts_timeout,
            apology_text=apology_text, apology_file=apology_file,
        )
        self._writer = ReplyWriter(
            llm, self._tools, lambda: self.history.messages(), self._speaker.enqueue, settings,
            self.clock, self.usage, self.log,
            apology_text=apology_text, max_tool_rounds=max_tool_rounds, llm_turn_timeout=llm_turn_timeout,
        )

    @property
    def tts_timeout(self) -> float:
        """The longest wait for the next audio chunk of a sentence."""
        return self._speaker.tts_timeout

    @tts_timeout.setter
    def tts_timeout(self, seconds: float) -> None:
        self._speaker.tts_timeout = seconds

    # ============================================================== the port the Call drives

    def start(self) -> None:
        """Greet the caller (a prepared file, else live TTS) and start listening."""
        number = self.call.caller.number
        try:
            self.contact = self.contacts.by_number(number) if self.contacts and number else None
        except Exception:  # an unknown caller is a fine fallback
            self.log.exception("contact lookup failed")
        greeting = self.greetings.text_for(self.contact)
        self.history = ConversationHistory(self.prompt_builder(self.contact), self.history.max_messages)
        self._group.spawn(self._listen)
        path = None
        try:
            path = self.greetings.lookup(number)
        except Exception:
            self.log.exception("greeting lookup failed")
        if path is not None and self._play_greeting_file(str(path), greeting):
            return
        with contextlib.suppress(Exception):
            self.greetings.miss(number)
        self.log.info("greeting from live TTS")
        self._begin_reply(None, fixed=greeting)

    def on_caller_audio(self, pcm: bytes) -> None:
        """Every fork frame from the caller: push to the recogniser (cheap, never blocks long)."""
        stream = self._stream
        if stream is None:
            return
        self.usage.stt_seconds += len(pcm) / (2.0 * self.sample_rate)
        try:
            stream.push(pcm)
        except ProviderError:
            pass  # the listener notices the broken stream and reopens it

    def on_dtmf(self, digit: str) -> None:
        """A key press: the transfer key goes to a human, other keys reach the model as text."""
        if self._closed or self._ending:
            return
        self.log.info("dtmf", extra={"digit": digit if digit.isdigit() else "?"})
        if digit == self.settings.dtmf_transfer_key:
            self._group.spawn(self._dtmf_transfer, digit)
        else:
            self._group.spawn(self._begin_reply, f"The caller pressed {digit}.")

    def on_playback_stop(self, path: str | None = None, status: str | None = None) -> None:
        """FreeSWITCH finished or broke a file playback (informational)."""
        self.log.debug("playback stop %s", status or "-")

    def close(self) -> None:
        """Hangup or end: cancel everything once, close the STT stream."""
        if self._closed:
            return
        self._closed = True
        self.endpointer.cancel()
        reply = self._reply
        if reply is not None and reply.pause_timer is not None:
            reply.pause_timer.kill(block=False)
        self.turns.interrupt("call closed")
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        self._group.kill(block=False)
        self.log.info("conversation closed", extra={"turns": len(self.timings)})

    # ============================================================== listening

    def _listen(self) -> None:
        """Read transcripts; reopen a dropped recognition stream (bounded)."""
        failures = 0
        while not self._closed:
            try:
                stream = self.stt.open_stream(sample_rate=self.sample_rate, language=self.language)
            except ProviderError as exc:
                self.log.warning("speech recognition failed to open: %s", type(exc).__name__)
                stream = None
            if stream is not None:
                self._stream = stream
                try:
                    for transcript in stream:
                        failures = 0
                        try:
                            self._on_transcript(transcript)
                        except Exception:  # one bad decision must not deafen the call
                            self.log.exception("transcript handling failed")
                        if self._closed:
                            return
                except ProviderError as exc:
                    self.log.warning("speech recognition stream failed: %s", type(exc).__name__)
                except Exception:
                    self.log.exception("speech recognition stream raised")
                finally:
                    if self._stream is stream:
                        self._stream = None
                    with contextlib.suppress(Exception):
                        stream.close()
            if self._closed:
                return
            failures += 1
            if failures > self.max_stt_restarts:
                self.log.error("speech recognition keeps failing; ending the call politely")
                self._give_up()
                return
            self.log.info("reopening speech recognition (attempt %d)", failures)
            self.clock.sleep(min(2.0, 0.1 * failures))

    def _on_transcript(self, transcript: Transcript) -> None:
        reply = self._reply
        if reply is not None and not reply.finished.is_set() and self._speaker.heard_all(reply):
            self._complete(reply)  # heard in full a moment ago: speech now is a new turn
        if self._closed or self._ending:
            return
        if reply is not None and self._speaker.busy(reply):
            decision = self.detector.assess(transcript)
            if decision is Decision.IGNORE:
                self.log.debug("caller speech ignored: %s", self.detector.last_reason)
                return
            if decision is Decision.PAUSE:
                self._speaker.pause(
                    reply, len(self.detector.real_words(transcript.text)),
                    self.detector.false_interruption_ms / 1000.0,
                )
                return
            self.log.info("barge-in: %s", self.detector.last_reason,
                          extra={"turn": reply.turn.id, "text": logs.redact_text(transcript.text)})
            self._interrupt("barge-in")
        self.endpointer.on_transcript(transcript)

    def _on_end_of_turn(self, text: str) -> None:
        self.log.info("caller turn over", extra={"text": logs.redact_text(text)})
        try:
            self._begin_reply(text)
        except Exception:  # runs in a timer greenlet: never let a bug end it silently
            self.log.exception("could not start the reply")

    # ============================================================== replies

    def _begin_reply(
        self,
        user_text: str | None,
        *,
        fixed: str | None = None,
        tool: tuple[ToolCall, ToolOutcome] | None = None,
    ) -> Reply | None:
        """Start a turn: the LLM's answer to `user_text`, or a fixed text (greeting, DTMF)."""
        if self._closed or self._ending:
            return None
        old = self._reply
        if old is not None and self._speaker.busy(old):
            self._interrupt("new turn")
        if user_text is not None:
            self.history.add_user(user_text)
        turn = self.turns.begin()
        timing = TurnTiming(turn.id, self.clock.now())
        self.timings.append(timing)
        reply = Reply(turn, self.history.begin_reply(), timing)
        self._reply = reply
        if tool is not None:
            self._tools.adopt(reply, *tool)
        self._publish("thinking", turn.id, user_text)
        turn.spawn(self._speaker.speak, reply)
        reply.worker = turn.spawn(self._writer.generate, reply, fixed)
        if fixed is None:
            self._speaker.prepare_phrases()  # while the model thinks; a fixed text warms after its audio
            turn.spawn(self._speaker.filler_watch, reply)
        return reply

    def _complete(self, reply: Reply) -> None:
        """The reply was heard: run its tool actions (transfer, hang-up) or listen again. Once."""
        if reply.finished.is_set() or reply.turn.cancelled or self._closed:
            return
        reply.finished.set()
        if reply.after_speech or reply.ends_call:
            self._ending = reply.ends_call
            callbacks = list(reply.after_speech)
            self._group.spawn(self._run_after_speech, callbacks, reply.ends_call)
            return
        self._publish("listening", reply.turn.id)

    def _run_after_speech(self, callbacks: list[Callable[[], Any]], ends_call: bool) -> None:
        """Transfer / hang up once the confirmation was heard. Not interruptible once started."""
        failed = False
        for callback in callbacks:
            try:
                result = callback()
            except Exception:
                self.log.exception("after-speech action raised")
                failed = True
                continue
            if getattr(result, "ok", True) is False:
                self.log.warning("after-speech action failed: %s", getattr(result, "reply", "")[:80])
                failed = True
        if ends_call and not callbacks:
            self.call.hangup("NORMAL_CLEARING")
            return
        if failed and not self._closed:
            self._ending = False
            self._begin_reply("(The last action did not work. Tell the caller briefly and offer another way to help.)")

    # ============================================================== barge-in

    def _playback_view(self) -> PlaybackView:
        return self._speaker.view(self._reply)

    def _interrupt(self, reason: str) -> None:
        """Cancel the current reply: new turn id, silence at once, history cut to what was heard."""
        reply = self._reply
        heard = self._speaker.position(reply) if reply is not None else 0.0
        was_playing = reply is not None and reply.paused_at is None and (
            reply.origin_ms is not None or reply.file_text != ""
        )  # a paused reply was already stopped
        self.turns.interrupt(reason)
        if was_playing or self.call.playing():
            self.call.stop_audio()
        if reply is None:
            return
        if reply.pause_timer is not None:
            reply.pause_timer.kill(block=False)
        reply.timing.interrupted = self.clock.now()
        if reply.after_speech and not reply.finished.is_set():
            self._tools.speech_cancelled()
        if reply.record is not None:
            reply.record.cut(heard)
        reply.finished.set()
        reply.paused_at = None
        self._reply = None
        self.log.info("reply interrupted (%s)", reason, extra={"turn": reply.turn.id, "heard_ms": int(heard)})
        self._publish("listening", self.turns.current)

    # ============================================================== greeting, DTMF, fallbacks

    def _play_greeting_file(self, path: str, text: str) -> bool:
        turn = self.turns.begin()
        timing = TurnTiming(turn.id, self.clock.now(), first_audio=self.clock.now())
        reply = Reply(turn, None, timing, file_text=text)
        result = self.call.play_file(path)
        if not getattr(result, "ok", False):
            self.log.warning("greeting file did not play: %s", getattr(result, "reply", "")[:80])
            return False
        self._reply = reply
        reply.origin_ms = 0.0
        reply.finished.set()  # busy only while the file plays (call.playing())
        self.history.add_assistant(text)
        self.log.info("greeting from file")
        self._publish("speaking", turn.id)
        return True

    def _dtmf_transfer(self, digit: str) -> None:
        request = f"The caller pressed {digit} to talk to a person."
        if not self.human_contact:
            self._begin_reply(request + " Transfer them to a colleague.")
            return
        tool_call = ToolCall(f"dtmf-{next(self._dtmf_ids)}", "transfer_call", {"name": self.human_contact})
        outcome = self._tools.execute(tool_call)
        if outcome.after_speech is None:
            self.log.warning("dtmf transfer refused by the tools; asking the model")
            self._begin_reply(request)
            return
        self._begin_reply(request, fixed=self.transfer_text, tool=(tool_call, outcome))

    def _give_up(self) -> None:
        """The recogniser cannot be reopened: apologise and hang up (never silent dead air)."""
        reply = self._begin_reply(None, fixed=self.apology_text)
        if reply is not None:
            reply.ends_call = True

    def _publish(self, state: str, turn_id: int, text: str | None = None) -> None:
        """Publish the call state (channel variables and an event), once per change."""
        if self._state == (state, turn_id) and text is None:
            return
        self._state = (state, turn_id)
        fields = {"turn": str(turn_id)}
        if text:
            fields["transcript"] = logs.redact_text(text)
        try:
            self.call.set_state(state, **fields)
        except Exception:  # publishing state must never break the conversation
            self.log.exception("set_state failed")

